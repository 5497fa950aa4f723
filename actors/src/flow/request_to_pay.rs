//! The request-to-pay flow (the tenant as the payee's DFSP): a tenant's
//! customer (a merchant, a biller) asks a payer at another DFSP to pay it.
//!
//! ```text
//! LookingUpPayer -> RequestingPayment -> AwaitingPayment -> Committed (paid)
//!        |                |                     |
//!        v                v                     v
//!     Aborted          Aborted               Aborted (declined, failed, expired unpaid)
//!
//! AwaitingPayment --(the payer's DFSP asks for the payer's password)--> AwaitingAuthorization
//! AwaitingAuthorization --(entered, refused or resend asked at the device)--> AwaitingPayment
//! ```
//!
//! The flow finds the payer's DFSP, sends it the request
//! (FSPIOP `POST /transactionRequests`, its id the transaction's) and waits:
//! the payer's DFSP answers where the request stands
//! (`PUT /transactionRequests/{ID}`), and if the payer approves, it pays as
//! any payment, quoting and transferring to this tenant, whose payee side
//! credits the customer and tells this flow ([`Input::PaymentReceived`]).
//! No funds are held by this flow: the money arrives through the payee side,
//! which books it. A payment that arrives after the flow gave up (or a
//! second payment of the same request) is money the customer received
//! that the channel was not told of: the transaction is flagged
//! `reconciliation_required` for operators.
//!
//! A request may ask that the payer approve it by a one-time password
//! ([`Authentication::Otp`]): the payer's DFSP gives its customer the
//! password and asks this side to have it entered at the tenant's
//! customer's device (`GET /authorizations/{ID}`); the tenant's channel
//! reports what the payer did ([`Input::AuthorizationEntered`]) and the flow
//! returns it (`PUT /authorizations/{ID}`). The payer's DFSP checks it and
//! counts the tries.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::io::{
    Authentication, AuthorizationResponse, Effect, FlowKind, FlowLimits, Input, OperatorDecision, Phase,
    Reason, RequestState, TransferState,
};
use crate::model::{Amount, Party, TenantId, TransactionId};

/// A step of the request-to-pay flow.
pub type Transition = super::Transition<RtpState>;

/// What the channel asked for: that `payer` pay `payee` (the tenant's
/// customer) `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpRequest {
    pub tenant: TenantId,
    /// The FSPIOP id of the tenant's DFSP (the payee DFSP).
    pub payee_fsp: String,
    pub payee: Party,
    pub payer: Party,
    pub amount: Amount,
    /// FSPIOP `transactionType.scenario` (`PAYMENT`, `TRANSFER`, ...).
    pub scenario: String,
    /// FSPIOP `transactionType.initiatorType` (`BUSINESS`, `CONSUMER`, ...).
    pub initiator_type: String,
    /// How long the payer has to pay, from the request's creation.
    pub expiry_ms: u64,
    /// How the payer is to approve it: as its DFSP decides (None), or by a
    /// one-time password entered at the tenant's customer's device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

/// The payer DFSP's latest request for its customer's password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationAsk {
    /// Tries the payer has left (1: the last).
    pub retries_left: u32,
    /// What the payer will pay.
    pub amount: Amount,
    /// What the payer did, once the channel reported it.
    pub response: Option<AuthorizationResponse>,
}

/// The payment that paid a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub transfer_id: Uuid,
    /// What the payee was credited.
    pub amount: Amount,
}

/// The whole replicated state of one request to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpState {
    pub id: TransactionId,
    pub request: RtpRequest,
    pub limits: FlowLimits,
    pub phase: Phase,
    /// Attempt number of the current phase's request, from 0.
    pub attempt: u32,
    /// When the current wait times out, if the flow is waiting.
    pub deadline_ms: Option<u64>,
    pub payer_fsp: Option<String>,
    /// What the payer's DFSP last said of the request.
    pub request_state: Option<RequestState>,
    /// The payer DFSP's transaction for it, once it names one.
    pub payer_transaction_id: Option<String>,
    pub payment: Option<Payment>,
    /// Why the request failed.
    pub reason: Option<Reason>,
    /// Set when a payment arrived that the channel was not told of (after
    /// the flow gave up, or a second one): operators reconcile it.
    pub reconciliation_required: bool,
    /// The payer DFSP's request for the payer's password, if it made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationAsk>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl RtpState {
    /// When the request lapses (FSPIOP `expiration`): its creation plus
    /// `request.expiry_ms`.
    pub fn expiration_ms(&self) -> u64 {
        self.created_at_ms + self.request.expiry_ms
    }

    pub fn transfer_state(&self) -> TransferState {
        self.phase.transfer_state()
    }

    /// Why the payer's DFSP may not ask for the payer's password now (a
    /// request that asked for none, one that is over, an ask in another
    /// currency), or None when it may: the flow takes only such asks, and
    /// the node answers the others with the reason's error callback.
    pub fn refuses_authorization_ask(&self, amount: &Amount) -> Option<Reason> {
        let request = &self.request;
        if request.authentication.is_none() {
            return Some(Reason::new(
                "3100",
                format!("request to pay {} asked for no authorization", self.id),
            ));
        }
        if !matches!(
            self.phase,
            Phase::RequestingPayment | Phase::AwaitingPayment | Phase::AwaitingAuthorization
        ) {
            return Some(Reason::new(
                "3301",
                format!("request to pay {} is over ({})", self.id, self.phase.as_str()),
            ));
        }
        if amount.currency != request.amount.currency {
            return Some(Reason::new(
                "3100",
                format!(
                    "request to pay {} is in {}, not {}",
                    self.id, request.amount.currency, amount.currency
                ),
            ));
        }
        None
    }

    /// Only the acknowledgement of a reconciliation applies: this flow holds
    /// no funds to book or release.
    pub fn accepts(&self, decision: OperatorDecision) -> bool {
        decision == OperatorDecision::Acknowledge && self.phase.is_final() && self.reconciliation_required
    }

    /// The requests the current phase makes (and re-makes on retry or after
    /// a failover), and its timer.
    pub fn phase_effects(&self) -> Vec<Effect> {
        let request = &self.request;
        let tenant = request.tenant.clone();
        let mut effects = match self.phase {
            Phase::LookingUpPayer => vec![Effect::LookupParty { tenant, party: request.payer.clone() }],
            Phase::RequestingPayment => vec![Effect::RequestPayment {
                tenant,
                request_id: self.id,
                payer_fsp: self.payer_fsp.clone().unwrap_or_default(),
                payee_fsp: request.payee_fsp.clone(),
                payer: request.payer.clone(),
                payee: request.payee.clone(),
                amount: request.amount,
                scenario: request.scenario.clone(),
                initiator_type: request.initiator_type.clone(),
                authentication: request.authentication,
                expiration_ms: self.expiration_ms(),
            }],
            Phase::Committed | Phase::Aborted => vec![Effect::NotifyChannel {
                tenant,
                transaction_id: self.id,
                flow: FlowKind::RequestToPay,
                state: self.transfer_state(),
            }],
            _ => Vec::new(),
        };
        if let Some(at_ms) = self.deadline_ms {
            effects.push(Effect::ArmTimer { at_ms, phase: self.phase, attempt: self.attempt });
        }
        effects
    }
}

/// Creates a request to pay and starts looking up the payer.
pub fn start(id: TransactionId, request: RtpRequest, limits: FlowLimits, now_ms: u64) -> Transition {
    let state = RtpState {
        id,
        request,
        limits,
        phase: Phase::LookingUpPayer,
        attempt: 0,
        deadline_ms: None,
        payer_fsp: None,
        request_state: None,
        payer_transaction_id: None,
        payment: None,
        reason: None,
        reconciliation_required: false,
        authorization: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    enter(state, Phase::LookingUpPayer, 0, now_ms)
}

/// The effects to re-run when an actor takes over an unfinished request.
pub fn resume(state: &RtpState) -> Vec<Effect> {
    if state.phase.is_active() {
        state.phase_effects()
    } else {
        Vec::new()
    }
}

fn enter(mut state: RtpState, phase: Phase, attempt: u32, now_ms: u64) -> Transition {
    state.phase = phase;
    state.attempt = attempt;
    state.updated_at_ms = now_ms;
    let limits = &state.limits;
    state.deadline_ms = match phase {
        Phase::LookingUpPayer => Some(now_ms + limits.lookup_timeout_ms),
        Phase::RequestingPayment => Some(now_ms + limits.quote_timeout_ms),
        // A payment begun just before the request lapses may still be
        // under way: wait for it as long as a transfer may take.
        Phase::AwaitingPayment | Phase::AwaitingAuthorization => {
            Some(state.expiration_ms() + limits.transfer_expiry_ms + limits.transfer_grace_ms)
        }
        _ => None,
    };
    let effects = state.phase_effects();
    Transition { state, effects }
}

fn abort(mut state: RtpState, reason: Reason, now_ms: u64) -> Transition {
    state.reason = Some(reason);
    enter(state, Phase::Aborted, 0, now_ms)
}

fn unchanged(state: &RtpState) -> Transition {
    Transition { state: state.clone(), effects: Vec::new() }
}

/// Retries the current phase's request if the budget allows, else `give_up`.
fn retry_or(state: RtpState, now_ms: u64, give_up: impl FnOnce(RtpState) -> Transition) -> Transition {
    if state.attempt < state.limits.retry_count_max {
        let (phase, attempt) = (state.phase, state.attempt + 1);
        enter(state, phase, attempt, now_ms)
    } else {
        give_up(state)
    }
}

fn paid(mut state: RtpState, transfer_id: Uuid, amount: Amount, now_ms: u64) -> Transition {
    state.payment = Some(Payment { transfer_id, amount });
    enter(state, Phase::Committed, 0, now_ms)
}

/// Applies one committed input to a request to pay.
pub fn step(state: &RtpState, input: Input, now_ms: u64) -> Transition {
    let current = state.clone();
    match (state.phase, input) {
        (phase, Input::Timeout { phase: timer_phase, attempt })
            if phase != timer_phase || attempt != state.attempt || !phase.is_active() =>
        {
            unchanged(state)
        }

        (Phase::LookingUpPayer, Input::PartyFound { fsp_id }) => {
            let mut next = current;
            next.payer_fsp = Some(fsp_id);
            enter(next, Phase::RequestingPayment, 0, now_ms)
        }
        (Phase::LookingUpPayer, Input::PartyLookupFailed { reason }) => abort(current, reason, now_ms),
        (Phase::LookingUpPayer, Input::Timeout { .. }) => {
            retry_or(current, now_ms, |s| abort(s, Reason::new("2004", "payer lookup timed out"), now_ms))
        }

        // The payer's DFSP has the request (or has decided it already).
        (
            Phase::RequestingPayment | Phase::AwaitingPayment | Phase::AwaitingAuthorization,
            Input::RequestAnswered { state: answer, transaction_id },
        ) if answer != RequestState::Rejected => {
            let mut next = current;
            next.request_state = Some(answer);
            next.payer_transaction_id = transaction_id.or(next.payer_transaction_id);
            if next.phase == Phase::RequestingPayment {
                return enter(next, Phase::AwaitingPayment, 0, now_ms);
            }
            next.updated_at_ms = now_ms;
            Transition { state: next, effects: Vec::new() }
        }
        (
            Phase::RequestingPayment | Phase::AwaitingPayment | Phase::AwaitingAuthorization,
            Input::RequestAnswered { transaction_id, .. },
        ) => {
            let mut next = current;
            next.request_state = Some(RequestState::Rejected);
            next.payer_transaction_id = transaction_id.or(next.payer_transaction_id);
            abort(next, Reason::new("4101", "the payer rejected the request to pay"), now_ms)
        }
        (
            Phase::RequestingPayment | Phase::AwaitingPayment | Phase::AwaitingAuthorization,
            Input::RequestFailed { reason },
        ) => abort(current, reason, now_ms),

        // The payer's DFSP asks for its customer's password (again, after a
        // wrong one): the tenant's customer's device asks the payer.
        (_, Input::AuthorizationAsked { retries_left, amount })
            if state.refuses_authorization_ask(&amount).is_none() =>
        {
            let mut next = current;
            next.authorization = Some(AuthorizationAsk { retries_left, amount, response: None });
            next.request_state = next.request_state.or(Some(RequestState::Received));
            enter(next, Phase::AwaitingAuthorization, 0, now_ms)
        }
        (Phase::AwaitingAuthorization, Input::AuthorizationEntered { response }) => {
            let mut next = current;
            let Some(ask) = next.authorization.as_mut() else { return unchanged(state) };
            ask.response = Some(response.clone());
            let answer = Effect::AnswerAuthorization {
                tenant: next.request.tenant.clone(),
                request_id: next.id,
                payer_fsp: next.payer_fsp.clone().unwrap_or_default(),
                response,
            };
            let mut transition = enter(next, Phase::AwaitingPayment, 0, now_ms);
            transition.effects.push(answer);
            transition
        }
        // Not heard of: send the request again (its id makes it the same
        // request), and in the end give up; a payment that still comes is
        // flagged (see the module's documentation).
        (Phase::RequestingPayment, Input::Timeout { .. }) => retry_or(current, now_ms, |s| {
            abort(s, Reason::new("2004", "the payer's DFSP did not acknowledge the request to pay"), now_ms)
        }),
        (Phase::AwaitingPayment | Phase::AwaitingAuthorization, Input::Timeout { .. }) => {
            abort(current, Reason::new("3301", "the request to pay expired unpaid"), now_ms)
        }

        // The payment can overtake the acknowledgement of the request.
        (
            Phase::LookingUpPayer
            | Phase::RequestingPayment
            | Phase::AwaitingPayment
            | Phase::AwaitingAuthorization,
            Input::PaymentReceived { transfer_id, amount },
        ) => paid(current, transfer_id, amount, now_ms),
        (Phase::Committed, Input::PaymentReceived { transfer_id, .. })
            if state.payment.as_ref().is_some_and(|p| p.transfer_id == transfer_id) =>
        {
            unchanged(state)
        }
        // Paid after the flow gave up, or paid twice: the customer has money
        // the channel was not told of.
        (Phase::Committed | Phase::Aborted, Input::PaymentReceived { .. }) => {
            let mut next = current;
            next.reconciliation_required = true;
            next.updated_at_ms = now_ms;
            Transition { state: next, effects: Vec::new() }
        }

        (_, Input::OperatorDecided { decision, operator, note }) if state.accepts(decision) => {
            let mut next = current;
            let note = format!("{operator} reconciled it: {note}");
            next.reason = Some(match next.reason.take() {
                Some(reason) => Reason::new(&reason.code, format!("{}; {note}", reason.message)),
                None => Reason::new("OPERATOR", note),
            });
            next.reconciliation_required = false;
            next.updated_at_ms = now_ms;
            Transition { state: next, effects: Vec::new() }
        }

        // Late, duplicated, or another flow's input: nothing changes.
        _ => unchanged(state),
    }
}

#[cfg(test)]
#[path = "request_to_pay_tests.rs"]
mod tests;
