//! Transaction flows: pure, deterministic state machines.
//!
//! A flow is `step(&State, Input, now_ms) -> Transition { state, effects }`. It
//! reads no clock, draws no randomness and does no I/O: the time comes in as an
//! argument (stamped on the replicated command by its proposer), so every
//! replica that applies the same commands reaches the same state, and replay
//! after a failover is exact.
//!
//! Two flows exist: `p2p` (a payment the tenant's customer makes, or
//! approves when a payee asked for it) and `request_to_pay` (the tenant's
//! customer asks a payer elsewhere to pay it). They share one vocabulary
//! (`io`: phases, inputs, effects); a transaction's [`State`] says which
//! flow it follows, and [`start`], [`step`] and [`resume`] hand it to that
//! flow's rules.

pub mod io;
pub mod p2p;
pub mod request_to_pay;

use serde::{Deserialize, Serialize};

pub use io::{
    Authentication, AuthorizationReply, AuthorizationResponse, Effect, FlowKind, FlowLimits, Input,
    OperatorDecision, Phase, QuoteTerms, Reason, RequestState, TransferState, Transition,
};
pub use p2p::{P2pRequest, P2pState, TransactionRequest};
pub use request_to_pay::{RtpRequest, RtpState};

use crate::model::{Amount, Party, TenantId, TransactionId};

/// What creates a transaction, by flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    P2p(P2pRequest),
    RequestToPay(RtpRequest),
}

impl Request {
    pub fn tenant(&self) -> &TenantId {
        match self {
            Request::P2p(request) => &request.tenant,
            Request::RequestToPay(request) => &request.tenant,
        }
    }

    /// Whether the transaction it creates is a request to pay, either way
    /// (see [`State::waits_for_a_person`]).
    pub fn is_request_to_pay(&self) -> bool {
        match self {
            Request::P2p(request) => request.transaction_request.is_some(),
            Request::RequestToPay(_) => true,
        }
    }
}

/// The whole replicated state of one transaction, of whichever flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    P2p(P2pState),
    RequestToPay(RtpState),
}

impl State {
    pub fn kind(&self) -> FlowKind {
        match self {
            State::P2p(_) => FlowKind::P2p,
            State::RequestToPay(_) => FlowKind::RequestToPay,
        }
    }

    pub fn id(&self) -> TransactionId {
        match self {
            State::P2p(state) => state.id,
            State::RequestToPay(state) => state.id,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        match self {
            State::P2p(state) => &state.request.tenant,
            State::RequestToPay(state) => &state.request.tenant,
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            State::P2p(state) => state.phase,
            State::RequestToPay(state) => state.phase,
        }
    }

    /// The request that created it.
    pub fn request(&self) -> Request {
        match self {
            State::P2p(state) => Request::P2p(state.request.clone()),
            State::RequestToPay(state) => Request::RequestToPay(state.request.clone()),
        }
    }

    /// Whether the request that created it is `request` (a repeated
    /// creation is answered the existing transaction, a different one a
    /// conflict).
    pub fn created_by(&self, request: &Request) -> bool {
        match (self, request) {
            (State::P2p(state), Request::P2p(request)) => state.request == *request,
            (State::RequestToPay(state), Request::RequestToPay(request)) => state.request == *request,
            _ => false,
        }
    }

    /// Who pays: the tenant's customer in a payment, the party asked in a
    /// request to pay.
    pub fn payer(&self) -> &Party {
        match self {
            State::P2p(state) => &state.request.payer,
            State::RequestToPay(state) => &state.request.payer,
        }
    }

    /// Who is paid.
    pub fn payee(&self) -> &Party {
        match self {
            State::P2p(state) => &state.request.payee,
            State::RequestToPay(state) => &state.request.payee,
        }
    }

    /// The amount asked for.
    pub fn amount(&self) -> &Amount {
        match self {
            State::P2p(state) => &state.request.amount,
            State::RequestToPay(state) => &state.request.amount,
        }
    }

    /// The other DFSP, once known: the payee's in a payment, the payer's in
    /// a request to pay.
    pub fn counterpart_fsp(&self) -> Option<&str> {
        match self {
            State::P2p(state) => state.payee_fsp.as_deref(),
            State::RequestToPay(state) => state.payer_fsp.as_deref(),
        }
    }

    pub fn transfer_state(&self) -> TransferState {
        match self {
            State::P2p(state) => state.transfer_state(),
            State::RequestToPay(state) => state.transfer_state(),
        }
    }

    pub fn reason(&self) -> Option<&Reason> {
        match self {
            State::P2p(state) => state.reason.as_ref(),
            State::RequestToPay(state) => state.reason.as_ref(),
        }
    }

    pub fn reconciliation_required(&self) -> bool {
        match self {
            State::P2p(state) => state.reconciliation_required,
            State::RequestToPay(state) => state.reconciliation_required,
        }
    }

    /// Whether it waits on a person rather than on systems: a request to
    /// pay, either way, until its payer has decided (a payee's request the
    /// tenant's payer has not approved yet; a request the tenant's customer
    /// sent, until paid or given up). Such waits last minutes, so admission
    /// counts them apart from the payments in flight.
    pub fn waits_for_a_person(&self) -> bool {
        match self {
            State::P2p(state) => state.awaits_payer(),
            State::RequestToPay(state) => state.phase.is_active(),
        }
    }

    /// Whether an operator must look at it: its flow stopped for one, or
    /// money moved that the channel was not told of.
    pub fn needs_attention(&self) -> bool {
        self.phase() == Phase::NeedsOperator || self.reconciliation_required()
    }

    /// Whether nothing more will happen to it: its flow ended and no
    /// operator needs to look at it. Only such transactions are archived.
    pub fn is_finished(&self) -> bool {
        self.phase().is_final() && !self.needs_attention()
    }

    /// Whether an operator's `decision` applies to it now.
    pub fn accepts(&self, decision: OperatorDecision) -> bool {
        match self {
            State::P2p(state) => state.accepts(decision),
            State::RequestToPay(state) => state.accepts(decision),
        }
    }

    /// When the current wait times out, if the flow is waiting.
    pub fn deadline_ms(&self) -> Option<u64> {
        match self {
            State::P2p(state) => state.deadline_ms,
            State::RequestToPay(state) => state.deadline_ms,
        }
    }

    pub fn created_at_ms(&self) -> u64 {
        match self {
            State::P2p(state) => state.created_at_ms,
            State::RequestToPay(state) => state.created_at_ms,
        }
    }

    pub fn updated_at_ms(&self) -> u64 {
        match self {
            State::P2p(state) => state.updated_at_ms,
            State::RequestToPay(state) => state.updated_at_ms,
        }
    }

    pub fn as_p2p(&self) -> Option<&P2pState> {
        match self {
            State::P2p(state) => Some(state),
            State::RequestToPay(_) => None,
        }
    }
}

fn wrap<S>(transition: Transition<S>, into: impl FnOnce(S) -> State) -> Transition {
    Transition { state: into(transition.state), effects: transition.effects }
}

/// Creates a transaction of the request's flow and makes its first request.
pub fn start(id: TransactionId, request: Request, limits: FlowLimits, now_ms: u64) -> Transition {
    match request {
        Request::P2p(request) => wrap(p2p::start(id, request, limits, now_ms), State::P2p),
        Request::RequestToPay(request) => {
            wrap(request_to_pay::start(id, request, limits, now_ms), State::RequestToPay)
        }
    }
}

/// Applies one committed input to a transaction, by its flow's rules.
pub fn step(state: &State, input: Input, now_ms: u64) -> Transition {
    match state {
        State::P2p(state) => wrap(p2p::step(state, input, now_ms), State::P2p),
        State::RequestToPay(state) => wrap(request_to_pay::step(state, input, now_ms), State::RequestToPay),
    }
}

/// The effects to re-run when an actor takes over an unfinished transaction
/// (start-up, leader change): the current phase's requests and its timer.
pub fn resume(state: &State) -> Vec<Effect> {
    match state {
        State::P2p(state) => p2p::resume(state),
        State::RequestToPay(state) => request_to_pay::resume(state),
    }
}
