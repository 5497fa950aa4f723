//! The P2P flow (outbound payment): initiated by the payer, or by the payee
//! through a request to pay (FSPIOP `POST /transactionRequests`), which the
//! payer approves or rejects first.
//!
//! ```text
//! AwaitingApproval --(approved)--> Quoting  (the payee DFSP is known)
//!        |--(rejected, expired)--> Aborted
//! Quoting --(a request that asked for a one-time password)--> AwaitingAuthorization
//! AwaitingAuthorization --(the right password)--> Transferring
//!        |--(wrong, tries left; or a new password asked)--> AwaitingAuthorization
//!        |--(no tries left, refused, expired)--> Aborted
//! Quoting (payee looked up first) -> Transferring -> Committing -> Committed
//!    |                                  |   |  \
//!    |                                  |   |   QueryingTransfer -> Committing / Releasing
//!    v                                  v   v
//! Aborted <---------------------------+  Releasing -> Aborted
//!                    (funds refused)
//!                                     (any phase that cannot finish) -> NeedsOperator
//!                               NeedsOperator -(an operator's decision)-> Committing / Releasing
//! ```
//!
//! Every wait has a deadline. A timeout retries the phase's request with the
//! same idempotency key up to the phase's retry limit; then the flow gives up
//! in the safest state for that phase: before funds are reserved it aborts;
//! while funds are reserved it releases them (after asking the scheme what
//! became of a transfer it sent); when the outcome cannot be established it
//! stops in `NeedsOperator` with the funds still reserved, where operators see
//! it and decide (`Input::OperatorDecided`: book or release the funds, or
//! acknowledge the reconciliation of a late success).
//!
//! A request to be paid that asks for a one-time password (FSPIOP
//! `authenticationType` OTP) is not approved in the payer's channel: it is
//! quoted at once, and the payer approves it by entering, at the payee's
//! device, the password its DFSP gave it (the channel shows it, see
//! [`Authorization`]); the payee's DFSP returns what was entered
//! (`GET`/`PUT /authorizations/{ID}`). Wrong passwords use up the payer's
//! [`OTP_TRIES`]; the last one refuses the request.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::io::{
    Authentication, AuthorizationReply, Effect, FlowKind, FlowLimits, Input, OperatorDecision, Phase,
    QuoteTerms, Reason, RequestState, TransferState,
};
use crate::model::{Amount, Party, TenantId, TransactionId};

/// A step of the P2P flow.
pub type Transition = super::Transition<P2pState>;

/// What the channel asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pRequest {
    pub tenant: TenantId,
    /// The FSPIOP id of the tenant's DFSP (the payer DFSP).
    pub payer_fsp: String,
    pub payer: Party,
    pub payee: Party,
    pub amount: Amount,
    /// The payee's request to be paid, when the payee initiated the payment
    /// (boxed: most payments have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_request: Option<Box<TransactionRequest>>,
}

/// A payee's request to be paid (FSPIOP `POST /transactionRequests`), which
/// the payer (through the tenant's channel) approves or rejects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRequest {
    /// The FSPIOP `transactionRequestId`.
    pub id: Uuid,
    /// The DFSP that asked (the payee's).
    pub payee_fsp: String,
    /// When the request lapses if the payer has not decided.
    pub expiration_ms: u64,
    /// The request's `transactionType.scenario` (`PAYMENT`, `TRANSFER`, ...).
    pub scenario: String,
    /// The request's `transactionType.initiatorType` (`BUSINESS`, ...).
    pub initiator_type: String,
    /// How the payer approves it: in the tenant's channel (None), or by a
    /// one-time password entered at the payee's device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

/// How many passwords a payer may enter for a request to be paid before it
/// is refused.
pub const OTP_TRIES: u32 = 3;

/// How long the payer's DFSP waits for the payee's DFSP to return what the
/// payer entered before it asks again (the same password, the same tries):
/// time for a person to type, and a recovery of a lost ask or answer.
pub const AUTHORIZATION_ASK_INTERVAL_MS: u64 = 60_000;

/// Where the payer's approval by one-time password stands. The password is
/// never in the replicated state: the node derives it from the tenant's
/// secret, the transaction and `issue`, shows it to the payer's channel, and
/// checks what the payee's DFSP returns against it
/// ([`Input::AuthorizationAnswered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// Which password is current, from 1: each resend the payer asks for
    /// issues the next.
    pub issue: u32,
    /// Tries the payer has left (1: the last).
    pub retries_left: u32,
    /// The payer entered the current password.
    pub authorized: bool,
}

/// The whole replicated state of one P2P transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pState {
    pub id: TransactionId,
    pub request: P2pRequest,
    pub limits: FlowLimits,
    pub phase: Phase,
    /// Attempt number of the current phase's request, from 0.
    pub attempt: u32,
    /// When the current wait times out, if the flow is waiting.
    pub deadline_ms: Option<u64>,
    pub payee_fsp: Option<String>,
    pub quote: Option<QuoteTerms>,
    pub transfer_expiration_ms: Option<u64>,
    pub fulfilment: Option<String>,
    /// Why the transaction aborted or needs an operator.
    pub reason: Option<Reason>,
    /// Set when the scheme reported success after the funds were released:
    /// money moved on the scheme but not in the AMS, and someone must reconcile.
    pub reconciliation_required: bool,
    /// The payer's password, for a request to be paid that asked for one,
    /// once the payee's DFSP has quoted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl P2pState {
    /// Whether an operator must look at it: its flow stopped for one, or the
    /// scheme reported a success after it released the funds.
    pub fn needs_attention(&self) -> bool {
        self.phase == Phase::NeedsOperator || self.reconciliation_required
    }

    /// Whether an operator's `decision` applies: booking or releasing the
    /// funds of a transaction stopped for an operator (booking only once a
    /// transfer was sent, so that funds are held), acknowledging the
    /// reconciliation of a final one flagged for it.
    pub fn accepts(&self, decision: OperatorDecision) -> bool {
        match decision {
            OperatorDecision::Commit => {
                self.phase == Phase::NeedsOperator && self.transfer_expiration_ms.is_some()
            }
            OperatorDecision::Release => self.phase == Phase::NeedsOperator,
            OperatorDecision::Acknowledge => self.phase.is_final() && self.reconciliation_required,
        }
    }

    pub fn transfer_state(&self) -> TransferState {
        self.phase.transfer_state()
    }

    fn timeout_ms(&self, phase: Phase) -> u64 {
        let limits = &self.limits;
        match phase {
            // Wait until the request's own expiration; see `enter`.
            Phase::AwaitingApproval | Phase::AwaitingAuthorization => 0,
            // The payee's lookup and the quote are one wait when the
            // payee's DFSP is not known yet.
            Phase::Quoting if self.payee_fsp.is_none() => limits.lookup_timeout_ms + limits.quote_timeout_ms,
            Phase::Quoting => limits.quote_timeout_ms,
            Phase::Committing | Phase::Releasing => limits.ams_timeout_ms,
            Phase::QueryingTransfer => limits.query_timeout_ms,
            // Transferring waits for the transfer's own expiration plus grace;
            // see `enter`.
            Phase::Transferring => limits.transfer_expiry_ms + limits.transfer_grace_ms,
            Phase::Committed | Phase::Aborted | Phase::NeedsOperator => 0,
            // Phases of a request to pay the tenant sends: not this flow's.
            Phase::LookingUpPayer | Phase::RequestingPayment | Phase::AwaitingPayment => 0,
        }
    }

    /// The requests the current phase makes (and re-makes on retry or after a
    /// failover): one mechanism for first attempts, retries and recovery.
    pub fn phase_effects(&self) -> Vec<Effect> {
        let tenant = self.request.tenant.clone();
        let mut effects = match self.phase {
            Phase::AwaitingApproval => self.answer_request(RequestState::Received).into_iter().collect(),
            Phase::Quoting => vec![Effect::RequestQuote {
                tenant,
                quote_id: self.id.quote_id(),
                transaction_id: self.id,
                payee_fsp: self.payee_fsp.clone(),
                payer_fsp: self.request.payer_fsp.clone(),
                payer: self.request.payer.clone(),
                payee: self.request.payee.clone(),
                amount: self.request.amount,
                transaction_request: self.request.transaction_request.as_deref().cloned(),
            }],
            Phase::Transferring => match (&self.quote, self.transfer_expiration_ms) {
                (Some(quote), Some(expiration_ms)) => vec![Effect::ReserveAndTransfer {
                    tenant,
                    transfer_id: self.id,
                    payer_account: self.request.payer.clone(),
                    payee_fsp: self.payee_fsp.clone().unwrap_or_default(),
                    payer_fsp: self.request.payer_fsp.clone(),
                    amount: quote.transfer_amount,
                    ilp_packet: quote.ilp_packet.clone(),
                    condition: quote.condition.clone(),
                    expiration_ms,
                }],
                _ => Vec::new(),
            },
            Phase::QueryingTransfer => vec![Effect::QueryTransfer {
                tenant,
                transfer_id: self.id,
                payee_fsp: self.payee_fsp.clone().unwrap_or_default(),
            }],
            Phase::AwaitingAuthorization => {
                match (&self.request.transaction_request, &self.quote, self.authorization) {
                    (Some(request), Some(quote), Some(authorization)) => vec![Effect::RequestAuthorization {
                        tenant,
                        request_id: request.id,
                        payee_fsp: request.payee_fsp.clone(),
                        transaction_id: self.id,
                        issue: authorization.issue,
                        retries_left: authorization.retries_left,
                        amount: quote.transfer_amount,
                    }],
                    _ => Vec::new(),
                }
            }
            Phase::Committing => vec![Effect::CommitFunds { tenant, reservation: self.id }],
            Phase::Releasing => vec![Effect::ReleaseFunds { tenant, reservation: self.id }],
            Phase::Committed | Phase::Aborted => {
                vec![Effect::NotifyChannel {
                    tenant,
                    transaction_id: self.id,
                    flow: FlowKind::P2p,
                    state: self.transfer_state(),
                }]
            }
            Phase::NeedsOperator
            | Phase::LookingUpPayer
            | Phase::RequestingPayment
            | Phase::AwaitingPayment => Vec::new(),
        };
        if let Some(at_ms) = self.deadline_ms {
            effects.push(Effect::ArmTimer { at_ms, phase: self.phase, attempt: self.attempt });
        }
        effects
    }
}

impl P2pState {
    /// Where the payee's request to be paid stands, as its DFSP is told
    /// (None for a payment the payer initiated): waiting for the payer,
    /// refused by the payer (or lapsed) before anything was quoted, or
    /// accepted and being paid (or paid, or failed later in the payment).
    pub fn request_state(&self) -> Option<RequestState> {
        let request = self.request.transaction_request.as_ref()?;
        let accepted = match request.authentication {
            // Approved in the channel: the payee's DFSP became the payment's.
            None => self.payee_fsp.is_some(),
            Some(Authentication::Otp) => self.authorization.is_some_and(|a| a.authorized),
        };
        Some(match (accepted, self.phase.is_final()) {
            (true, _) => RequestState::Accepted,
            (false, false) => RequestState::Received,
            (false, true) => RequestState::Rejected,
        })
    }

    /// Whether a request to be paid waits for its payer: to decide it in the
    /// channel, or to enter its password at the payee's device.
    pub fn awaits_payer(&self) -> bool {
        self.phase.is_active() && self.request_state() == Some(RequestState::Received)
    }

    /// Whether the payer approves by a one-time password it has yet to
    /// enter (its channel cannot approve it).
    pub fn awaits_password(&self) -> bool {
        self.request
            .transaction_request
            .as_ref()
            .is_some_and(|r| r.authentication == Some(Authentication::Otp))
            && !self.authorization.is_some_and(|a| a.authorized)
    }

    /// The answer to the payee's request to be paid, if the payee asked.
    fn answer_request(&self, state: RequestState) -> Option<Effect> {
        self.request.transaction_request.as_ref().map(|request| Effect::AnswerTransactionRequest {
            tenant: self.request.tenant.clone(),
            request_id: request.id,
            payee_fsp: request.payee_fsp.clone(),
            transaction_id: self.id,
            state,
        })
    }
}

/// Creates a transaction for a channel request (or a payee's request to be
/// paid, which first waits for the payer's approval) and makes its first
/// request.
pub fn start(id: TransactionId, request: P2pRequest, limits: FlowLimits, now_ms: u64) -> Transition {
    let first = match request.transaction_request.as_deref() {
        // The payee is looked up as the quote is asked for.
        None => Phase::Quoting,
        Some(TransactionRequest { authentication: None, .. }) => Phase::AwaitingApproval,
        // Quoted first: the payer sees what it will pay when it enters the
        // password.
        Some(TransactionRequest { authentication: Some(Authentication::Otp), .. }) => Phase::Quoting,
    };
    // A payee that asked to be paid is served by the DFSP that asked.
    let payee_fsp = match first {
        Phase::Quoting => request.transaction_request.as_ref().map(|r| r.payee_fsp.clone()),
        _ => None,
    };
    let state = P2pState {
        id,
        request,
        limits,
        phase: first,
        attempt: 0,
        deadline_ms: None,
        payee_fsp,
        quote: None,
        transfer_expiration_ms: None,
        fulfilment: None,
        reason: None,
        reconciliation_required: false,
        authorization: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    let received = (first == Phase::Quoting).then(|| state.answer_request(RequestState::Received)).flatten();
    let mut transition = enter(state, first, 0, now_ms);
    transition.effects.extend(received);
    transition
}

/// The effects to re-run when an actor takes over an unfinished transaction
/// (start-up, leader change): the current phase's requests and its timer.
pub fn resume(state: &P2pState) -> Vec<Effect> {
    if state.phase.is_active() {
        state.phase_effects()
    } else {
        Vec::new()
    }
}

/// Moves to `phase` (attempt `attempt`), sets the wait's deadline and emits the
/// phase's requests.
fn enter(mut state: P2pState, phase: Phase, attempt: u32, now_ms: u64) -> Transition {
    state.phase = phase;
    state.attempt = attempt;
    state.updated_at_ms = now_ms;
    state.deadline_ms = match phase {
        Phase::Committed | Phase::Aborted | Phase::NeedsOperator => None,
        Phase::Transferring => {
            state.transfer_expiration_ms.map(|expiration| expiration + state.limits.transfer_grace_ms)
        }
        Phase::AwaitingApproval => state.request.transaction_request.as_ref().map(|r| r.expiration_ms),
        // Asked again now and then, in case the ask or its answer was lost.
        Phase::AwaitingAuthorization => state
            .request
            .transaction_request
            .as_ref()
            .map(|r| r.expiration_ms.min(now_ms + AUTHORIZATION_ASK_INTERVAL_MS)),
        _ => Some(now_ms + state.timeout_ms(phase)),
    };
    let effects = state.phase_effects();
    Transition { state, effects }
}

/// The reason a transaction needed an operator, with the operator's decision
/// after it.
fn with_decision(reason: Option<Reason>, decision: &str) -> Reason {
    match reason {
        Some(reason) => Reason::new(&reason.code, format!("{}; {decision}", reason.message)),
        None => Reason::new("OPERATOR", decision),
    }
}

fn abort(mut state: P2pState, reason: Reason, now_ms: u64) -> Transition {
    state.reason = Some(reason);
    enter(state, Phase::Aborted, 0, now_ms)
}

fn release(mut state: P2pState, reason: Reason, now_ms: u64) -> Transition {
    state.reason = Some(reason);
    enter(state, Phase::Releasing, 0, now_ms)
}

fn needs_operator(mut state: P2pState, reason: Reason, now_ms: u64) -> Transition {
    state.reason = Some(reason);
    enter(state, Phase::NeedsOperator, 0, now_ms)
}

/// Aborts a request to be paid that the payer did not approve, and tells
/// the payee DFSP so.
fn refuse_request(state: P2pState, reason: Reason, now_ms: u64) -> Transition {
    let answer = state.answer_request(RequestState::Rejected);
    let mut transition = abort(state, reason, now_ms);
    transition.effects.extend(answer);
    transition
}

/// Gives up on a transaction before its funds are held: a request to be
/// paid the payer has not accepted yet is refused (its DFSP is told), any
/// other aborts.
fn give_up(state: P2pState, reason: Reason, now_ms: u64) -> Transition {
    if state.request_state() == Some(RequestState::Received) {
        refuse_request(state, reason, now_ms)
    } else {
        abort(state, reason, now_ms)
    }
}

fn unchanged(state: &P2pState) -> Transition {
    Transition { state: state.clone(), effects: Vec::new() }
}

/// A quote counts only from the DFSP that was asked: the one serving the
/// payee that asked to be paid, or (a payee looked up in the quote's
/// effect) the one the quote went to, whose answer names it.
fn quoted_by(state: &P2pState, payee_fsp: &str) -> Result<(), Reason> {
    match state.payee_fsp.as_deref() {
        Some(asked) if asked != payee_fsp => Err(Reason::new(
            "3100",
            format!("quote answered by {payee_fsp}, not by the payee's DFSP {asked}"),
        )),
        _ if payee_fsp.is_empty() => Err(Reason::new("3100", "quote answer names no DFSP")),
        _ => Ok(()),
    }
}

/// Checks the payee DFSP's quote against what was asked.
fn validate_quote(state: &P2pState, terms: &QuoteTerms, now_ms: u64) -> Result<(), Reason> {
    let asked = &state.request.amount;
    if terms.transfer_amount.currency != asked.currency {
        return Err(Reason::new(
            "3300",
            format!(
                "quote currency {} differs from the requested {}",
                terms.transfer_amount.currency, asked.currency
            ),
        ));
    }
    // The payer sends the amount it asked for; a payee fee may only lower what
    // the payee receives, never raise what the payer pays in this flow (payee
    // bears fees). A quote that asks the payer for more is refused.
    if terms.transfer_amount.value != asked.value {
        return Err(Reason::new(
            "3300",
            format!("quote transfer amount {} differs from the requested {}", terms.transfer_amount, asked),
        ));
    }
    if terms.expiration_ms <= now_ms {
        return Err(Reason::new("3302", "quote expired before it was received"));
    }
    if terms.condition.is_empty() || terms.ilp_packet.is_empty() {
        return Err(Reason::new("3100", "quote has no ILP condition or packet"));
    }
    Ok(())
}

/// FSPIOP: the condition is the base64url SHA-256 of the fulfilment's bytes.
pub fn fulfilment_matches(fulfilment: &str, condition: &str) -> bool {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Ok(preimage) = engine.decode(fulfilment.trim_end_matches('=')) else {
        return false;
    };
    if preimage.len() != 32 {
        return false;
    }
    engine.encode(Sha256::digest(&preimage)) == condition.trim_end_matches('=')
}

/// FSPIOP refusals of a transfer that a resend of an accepted transfer can
/// draw: 3303 transfer expired, 3106 modified request (duplicate).
const RESEND_REFUSALS: [&str; 2] = ["3303", "3106"];

/// Applies one committed input to a transaction.
pub fn step(state: &P2pState, input: Input, now_ms: u64) -> Transition {
    let current = state.clone();
    match (state.phase, input) {
        // A timer of a wait the flow has left changes nothing.
        (phase, Input::Timeout { phase: timer_phase, attempt })
            if phase != timer_phase || attempt != state.attempt || !phase.is_active() =>
        {
            unchanged(state)
        }

        (Phase::AwaitingApproval, Input::RequestApproved) => {
            let mut next = current;
            next.payee_fsp = next.request.transaction_request.as_ref().map(|r| r.payee_fsp.clone());
            let answer = next.answer_request(RequestState::Accepted);
            let mut transition = enter(next, Phase::Quoting, 0, now_ms);
            transition.effects.extend(answer);
            transition
        }
        (Phase::AwaitingApproval, Input::RequestRejected { reason }) => {
            refuse_request(current, reason, now_ms)
        }
        (Phase::AwaitingApproval, Input::Timeout { .. }) => refuse_request(
            current,
            Reason::new("3301", "the request to be paid expired before the payer decided"),
            now_ms,
        ),

        // The payee's lookup found no DFSP (nothing was quoted).
        (Phase::Quoting, Input::PartyLookupFailed { reason }) if state.payee_fsp.is_none() => {
            abort(current, reason, now_ms)
        }
        (Phase::Quoting, Input::QuoteReceived { terms, payee_fsp }) => {
            match validate_quote(state, &terms, now_ms).and_then(|()| quoted_by(state, &payee_fsp)) {
                Ok(()) if state.awaits_password() => {
                    let mut next = current;
                    next.quote = Some(terms);
                    next.authorization =
                        Some(Authorization { issue: 1, retries_left: OTP_TRIES, authorized: false });
                    enter(next, Phase::AwaitingAuthorization, 0, now_ms)
                }
                Ok(()) => {
                    let mut next = current;
                    next.quote = Some(terms);
                    next.payee_fsp = Some(payee_fsp);
                    transfer(next, now_ms)
                }
                Err(reason) => give_up(current, reason, now_ms),
            }
        }
        (Phase::Quoting, Input::QuoteFailed { reason }) => give_up(current, reason, now_ms),
        (Phase::Quoting, Input::Timeout { .. }) => {
            let what = if state.payee_fsp.is_none() { "payee lookup and quote" } else { "quote request" };
            retry_or(current, now_ms, |s| {
                give_up(s, Reason::new("2004", format!("{what} timed out")), now_ms)
            })
        }

        // What the payer did at the payee's device, for the current password.
        (Phase::AwaitingAuthorization, Input::AuthorizationAnswered { issue, reply })
            if state.authorization.is_some_and(|a| a.issue == issue) =>
        {
            authorize(current, reply, now_ms)
        }
        (Phase::AwaitingAuthorization, Input::AuthorizationFailed { reason }) => {
            refuse_request(current, reason, now_ms)
        }
        // The payer can still decline in its own channel.
        (Phase::AwaitingAuthorization, Input::RequestRejected { reason }) => {
            refuse_request(current, reason, now_ms)
        }
        (Phase::AwaitingAuthorization, Input::Timeout { .. })
            if state.request.transaction_request.as_ref().is_some_and(|r| now_ms < r.expiration_ms) =>
        {
            let again = state.attempt + 1;
            enter(current, Phase::AwaitingAuthorization, again, now_ms)
        }
        (Phase::AwaitingAuthorization, Input::Timeout { .. }) => refuse_request(
            current,
            Reason::new("3301", "the request to be paid expired before the payer entered its password"),
            now_ms,
        ),

        // The AMS refused to hold the funds, so the transfer was not sent
        // (a repeated hold of funds already held would have succeeded).
        (Phase::Transferring, Input::ReserveRefused { reason }) => abort(current, reason, now_ms),

        (Phase::Transferring | Phase::QueryingTransfer, Input::TransferFulfilled { fulfilment }) => {
            let condition = state.quote.as_ref().map(|q| q.condition.as_str()).unwrap_or("");
            let mut next = current;
            if !fulfilment_matches(&fulfilment, condition) {
                return needs_operator(
                    next,
                    Reason::new(
                        "5105",
                        "scheme committed the transfer with a fulfilment that does not match the condition",
                    ),
                    now_ms,
                );
            }
            next.fulfilment = Some(fulfilment);
            enter(next, Phase::Committing, 0, now_ms)
        }
        // A resent transfer (after a timeout, or by a new leader after a
        // failover) can be refused as expired or as a duplicate although the
        // first one went through: ask the scheme for its outcome first.
        (Phase::Transferring, Input::TransferRejected { reason })
            if RESEND_REFUSALS.contains(&reason.code.as_str()) =>
        {
            enter(current, Phase::QueryingTransfer, 0, now_ms)
        }
        (Phase::Transferring | Phase::QueryingTransfer, Input::TransferRejected { reason }) => {
            release(current, reason, now_ms)
        }
        (Phase::Transferring, Input::TransferPending) => unchanged(state),
        (Phase::Transferring, Input::Timeout { .. }) => enter(current, Phase::QueryingTransfer, 0, now_ms),
        // The scheme has not decided yet: keep asking within the same budget.
        (Phase::QueryingTransfer, Input::TransferPending) => unchanged(state),
        (Phase::QueryingTransfer, Input::Timeout { .. }) => retry_or(current, now_ms, |s| {
            needs_operator(
                s,
                Reason::new("2004", "transfer outcome unknown: the scheme did not answer"),
                now_ms,
            )
        }),

        (Phase::Committing, Input::FundsCommitted) => enter(current, Phase::Committed, 0, now_ms),
        (Phase::Committing, Input::Timeout { .. }) => retry_or(current, now_ms, |s| {
            needs_operator(
                s,
                Reason::new("2004", "transfer committed in the scheme but the payer AMS did not book it"),
                now_ms,
            )
        }),

        (Phase::Releasing, Input::FundsReleased) => enter(current, Phase::Aborted, 0, now_ms),
        (Phase::Releasing, Input::Timeout { .. }) => retry_or(current, now_ms, |s| {
            needs_operator(s, Reason::new("2004", "payer AMS did not release the reserved funds"), now_ms)
        }),

        // Success reported after the funds were released (or while they are
        // being released): the scheme moved money the AMS did not book.
        (Phase::Releasing | Phase::Aborted, Input::TransferFulfilled { .. })
            if state.transfer_expiration_ms.is_some() =>
        {
            let mut next = current;
            next.reconciliation_required = true;
            next.updated_at_ms = now_ms;
            Transition { state: next, effects: Vec::new() }
        }

        (_, Input::OperatorDecided { decision, operator, note }) if state.accepts(decision) => {
            let mut next = current;
            let (phase, what) = match decision {
                OperatorDecision::Commit => (Phase::Committing, "decided to commit"),
                OperatorDecision::Release => (Phase::Releasing, "decided to release"),
                OperatorDecision::Acknowledge => (next.phase, "reconciled it"),
            };
            next.reason = Some(with_decision(next.reason.take(), &format!("{operator} {what}: {note}")));
            if decision == OperatorDecision::Acknowledge {
                next.reconciliation_required = false;
                next.updated_at_ms = now_ms;
                return Transition { state: next, effects: Vec::new() };
            }
            enter(next, phase, 0, now_ms)
        }

        // Anything else is late or duplicated (a second callback, a resent
        // AMS answer, a decision that does not apply): already accounted
        // for, so nothing changes.
        _ => unchanged(state),
    }
}

/// Holds the payer's funds and sends the transfer (one effect), the
/// transfer to expire `transfer_expiry_ms` from now.
fn transfer(mut state: P2pState, now_ms: u64) -> Transition {
    state.transfer_expiration_ms = Some(now_ms + state.limits.transfer_expiry_ms);
    enter(state, Phase::Transferring, 0, now_ms)
}

/// Steps the payer's approval by password on the payee DFSP's answer.
fn authorize(mut state: P2pState, reply: AuthorizationReply, now_ms: u64) -> Transition {
    let Some(mut authorization) = state.authorization else { return unchanged(&state) };
    // Each answer asks again (a new attempt re-arms the same deadline).
    let again = state.attempt + 1;
    match reply {
        AuthorizationReply::Valid if state.quote.as_ref().is_some_and(|q| q.expiration_ms <= now_ms) => {
            refuse_request(
                state,
                Reason::new("3302", "the quote expired before the payer entered the right password"),
                now_ms,
            )
        }
        AuthorizationReply::Valid => {
            authorization.authorized = true;
            state.authorization = Some(authorization);
            let answer = state.answer_request(RequestState::Accepted);
            let mut transition = transfer(state, now_ms);
            transition.effects.extend(answer);
            transition
        }
        AuthorizationReply::Invalid if authorization.retries_left <= 1 => refuse_request(
            state,
            Reason::new("4101", format!("the payer entered a wrong password {OTP_TRIES} times")),
            now_ms,
        ),
        AuthorizationReply::Invalid => {
            authorization.retries_left -= 1;
            state.authorization = Some(authorization);
            enter(state, Phase::AwaitingAuthorization, again, now_ms)
        }
        AuthorizationReply::Resend => {
            authorization.issue += 1;
            state.authorization = Some(authorization);
            enter(state, Phase::AwaitingAuthorization, again, now_ms)
        }
        AuthorizationReply::Rejected => refuse_request(
            state,
            Reason::new("4101", "the payer refused the request at the payee's device"),
            now_ms,
        ),
    }
}

/// Retries the current phase's request if the budget allows, else `give_up`.
fn retry_or(state: P2pState, now_ms: u64, give_up: impl FnOnce(P2pState) -> Transition) -> Transition {
    if state.attempt < state.limits.retry_count_max {
        let (phase, attempt) = (state.phase, state.attempt + 1);
        enter(state, phase, attempt, now_ms)
    } else {
        give_up(state)
    }
}

#[cfg(test)]
#[path = "p2p_tests.rs"]
mod tests;
