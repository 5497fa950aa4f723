//! The vocabulary every flow shares: the phases a transaction goes
//! through, the inputs that step it, the effects it asks for, and its
//! limits. Flows differ in their state and their rules (`p2p`,
//! `request_to_pay`); the runtime, the log and the node see only these.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::p2p::TransactionRequest;
use super::State;
use crate::model::{Amount, Party, TenantId, TransactionId};

/// Where a request to pay stands, as the payer DFSP tells the payee DFSP
/// (`PUT /transactionRequests/{ID}`; FSPIOP's `PENDING` is read as
/// `Received`: the request is there, undecided).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestState {
    Received,
    Accepted,
    Rejected,
}

impl RequestState {
    /// FSPIOP's `TransactionRequestState`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "RECEIVED",
            RequestState::Accepted => "ACCEPTED",
            RequestState::Rejected => "REJECTED",
        }
    }
}

/// How a payer approves a request to pay (FSPIOP `AuthenticationType`).
/// Only a one-time password is supported: `QRCODE` and `U2F` requests are
/// refused when they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Authentication {
    /// The payer's DFSP gives its customer a one-time password, which the
    /// customer enters at the payee's device (POS, ATM); the payee's DFSP
    /// returns it (`GET` and `PUT /authorizations/{ID}`).
    Otp,
}

impl Authentication {
    pub fn as_str(self) -> &'static str {
        match self {
            Authentication::Otp => "OTP",
        }
    }
}

/// What the payer did at the payee's device when asked for the password
/// (FSPIOP `AuthorizationResponse`), as the payee's DFSP reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationResponse {
    /// The payer entered this value.
    Entered { value: String },
    /// The payer refused to pay.
    Rejected,
    /// The payer asked for a new password.
    Resend,
}

/// The payer DFSP's reading of an [`AuthorizationResponse`]: an entered
/// value is checked against the password it issued before the answer is
/// committed, so the flow never sees the password itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationReply {
    Valid,
    Invalid,
    Rejected,
    Resend,
}

/// Timeouts and retry limits, fixed into the transaction when it is created so
/// that every replica steps it with the same limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLimits {
    pub lookup_timeout_ms: u64,
    pub quote_timeout_ms: u64,
    pub ams_timeout_ms: u64,
    /// How long the transfer may take before it expires (FSPIOP `expiration`).
    pub transfer_expiry_ms: u64,
    /// How long after the transfer's expiration the payer waits for its
    /// outcome before asking the scheme.
    pub transfer_grace_ms: u64,
    pub query_timeout_ms: u64,
    /// Retries after the first attempt, for each request of the flow.
    pub retry_count_max: u32,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            lookup_timeout_ms: 10_000,
            quote_timeout_ms: 10_000,
            ams_timeout_ms: 5_000,
            transfer_expiry_ms: 30_000,
            transfer_grace_ms: 5_000,
            query_timeout_ms: 5_000,
            retry_count_max: 3,
        }
    }
}

/// Where a transaction is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// A payee's request to be paid waits for the payer's decision.
    AwaitingApproval,
    /// Request to pay sent by the tenant's customer (the payee): finding
    /// the payer's DFSP.
    LookingUpPayer,
    /// The request to pay went to the payer's DFSP, which has not said it
    /// has it yet.
    RequestingPayment,
    /// The payer's DFSP has the request; the payer's payment is awaited.
    AwaitingPayment,
    /// The payer must enter a one-time password at the payee's device:
    /// asked of the payee's DFSP (a request to be paid that asked for one),
    /// or asked by the payer's DFSP (a request to pay the tenant sent).
    AwaitingAuthorization,
    /// The quote is asked of the payee's DFSP and awaited; a payment the
    /// payer initiated looks its payee up first, in the same effect.
    Quoting,
    /// The payer's funds are being held and the transfer sent
    /// ([`Effect::ReserveAndTransfer`]); its outcome is awaited.
    Transferring,
    QueryingTransfer,
    Committing,
    Releasing,
    Committed,
    Aborted,
    /// Automatic recovery is exhausted; an operator must resolve it.
    NeedsOperator,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Committed | Phase::Aborted)
    }

    /// Whether the flow still has work to do by itself (an actor must drive it).
    pub fn is_active(self) -> bool {
        !matches!(self, Phase::Committed | Phase::Aborted | Phase::NeedsOperator)
    }

    /// What the channel is told of a transaction in this phase.
    pub fn transfer_state(self) -> TransferState {
        match self {
            Phase::Committed => TransferState::Committed,
            Phase::Aborted => TransferState::Aborted,
            _ => TransferState::Received,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::AwaitingApproval => "AWAITING_APPROVAL",
            Phase::LookingUpPayer => "LOOKING_UP_PAYER",
            Phase::RequestingPayment => "REQUESTING_PAYMENT",
            Phase::AwaitingPayment => "AWAITING_PAYMENT",
            Phase::AwaitingAuthorization => "AWAITING_AUTHORIZATION",
            Phase::Quoting => "QUOTING",
            Phase::Transferring => "TRANSFERRING",
            Phase::QueryingTransfer => "QUERYING_TRANSFER",
            Phase::Committing => "COMMITTING",
            Phase::Releasing => "RELEASING",
            Phase::Committed => "COMMITTED",
            Phase::Aborted => "ABORTED",
            Phase::NeedsOperator => "NEEDS_OPERATOR",
        }
    }
}

/// The channel-facing state, as Payment Hub EE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransferState {
    Received,
    Committed,
    Aborted,
}

/// Why a transaction failed or stopped: a stable code and a message for people.
/// Codes of the scheme's errors are FSPIOP error codes (e.g. "3204").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Reason {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Reason { code: code.to_owned(), message: message.into() }
    }
}

/// The payee DFSP's quote, as the payer needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteTerms {
    /// What the payer DFSP sends through the scheme.
    pub transfer_amount: Amount,
    pub payee_fsp_fee: Option<Amount>,
    pub payee_fsp_commission: Option<Amount>,
    pub expiration_ms: u64,
    pub ilp_packet: String,
    pub condition: String,
}

/// Something that happened to a transaction, committed through Raft before the
/// flow steps on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    PartyFound {
        fsp_id: String,
    },
    PartyLookupFailed {
        reason: Reason,
    },
    /// The payee DFSP's quote; `payee_fsp` is the DFSP that answered
    /// (its `FSPIOP-Source`), which a payment whose payee was looked up in
    /// the same effect learns here ([`Effect::RequestQuote`]).
    QuoteReceived {
        terms: QuoteTerms,
        payee_fsp: String,
    },
    QuoteFailed {
        reason: Reason,
    },
    /// The AMS refused to hold the payer's funds (a business rejection,
    /// e.g. no funds), so the transfer was not sent.
    ReserveRefused {
        reason: Reason,
    },
    /// The scheme says the transfer is committed, with the payee's fulfilment.
    TransferFulfilled {
        fulfilment: String,
    },
    /// The scheme says the transfer is aborted.
    TransferRejected {
        reason: Reason,
    },
    /// The scheme has the transfer but has not decided it yet.
    TransferPending,
    FundsCommitted,
    FundsReleased,
    /// A wait's deadline passed. `phase` and `attempt` name the wait, so a
    /// timer that fires after the flow has moved on changes nothing.
    Timeout {
        phase: Phase,
        attempt: u32,
    },
    /// The payer approved the payee's request to be paid.
    RequestApproved,
    /// The payer refused it.
    RequestRejected {
        reason: Reason,
    },
    /// The payer's DFSP says where a request to pay the tenant sent stands
    /// (`PUT /transactionRequests/{ID}`), naming the payer's transaction
    /// when it has one.
    RequestAnswered {
        state: RequestState,
        transaction_id: Option<String>,
    },
    /// The payer's DFSP or the scheme refused the request to pay
    /// (`PUT /transactionRequests/{ID}/error`, or refused on sending).
    RequestFailed {
        reason: Reason,
    },
    /// The payee's DFSP answered the request for the payer's password
    /// (`PUT /authorizations/{ID}`), read against password `issue`.
    AuthorizationAnswered {
        issue: u32,
        reply: AuthorizationReply,
    },
    /// The payee's DFSP could not ask the payer for the password
    /// (`PUT /authorizations/{ID}/error`).
    AuthorizationFailed {
        reason: Reason,
    },
    /// The payer's DFSP asks that its customer enter the password at the
    /// tenant's customer's device (`GET /authorizations/{ID}`): `amount` is
    /// what the payer will pay, `retries_left` its tries before the request
    /// is refused (1: the last).
    AuthorizationAsked {
        retries_left: u32,
        amount: Amount,
    },
    /// What the payer did at the tenant's customer's device, as its channel
    /// reports it.
    AuthorizationEntered {
        response: AuthorizationResponse,
    },
    /// A transfer that pays a request to pay the tenant sent was credited to
    /// its payee: the tenant's payee side booked it.
    PaymentReceived {
        transfer_id: Uuid,
        amount: Amount,
    },
    /// An operator resolved a transaction that needed one (see
    /// [`OperatorDecision`]), having checked the scheme's and the AMS's
    /// records; who and why are kept in the transaction's reason.
    OperatorDecided {
        decision: OperatorDecision,
        operator: String,
        note: String,
    },
}

/// What an operator decides about a transaction that needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperatorDecision {
    /// The scheme committed the transfer: book the held funds
    /// (`NEEDS_OPERATOR` after a transfer was sent, so the funds are held).
    Commit,
    /// The scheme did not commit it: release the held funds
    /// (`NEEDS_OPERATOR`).
    Release,
    /// The reconciliation a late success called for is done (a final
    /// transaction with `reconciliationRequired`).
    Acknowledge,
}

impl Input {
    pub fn name(&self) -> &'static str {
        match self {
            Input::PartyFound { .. } => "PartyFound",
            Input::PartyLookupFailed { .. } => "PartyLookupFailed",
            Input::QuoteReceived { .. } => "QuoteReceived",
            Input::QuoteFailed { .. } => "QuoteFailed",
            Input::ReserveRefused { .. } => "ReserveRefused",
            Input::TransferFulfilled { .. } => "TransferFulfilled",
            Input::TransferRejected { .. } => "TransferRejected",
            Input::TransferPending => "TransferPending",
            Input::FundsCommitted => "FundsCommitted",
            Input::FundsReleased => "FundsReleased",
            Input::Timeout { .. } => "Timeout",
            Input::RequestApproved => "RequestApproved",
            Input::RequestRejected { .. } => "RequestRejected",
            Input::RequestAnswered { state: RequestState::Received, .. } => "RequestReceived",
            Input::RequestAnswered { state: RequestState::Accepted, .. } => "RequestAccepted",
            Input::RequestAnswered { state: RequestState::Rejected, .. } => "RequestDeclined",
            Input::RequestFailed { .. } => "RequestFailed",
            Input::PaymentReceived { .. } => "PaymentReceived",
            Input::AuthorizationAnswered { reply: AuthorizationReply::Valid, .. } => "AuthorizationValid",
            Input::AuthorizationAnswered { reply: AuthorizationReply::Invalid, .. } => "AuthorizationInvalid",
            Input::AuthorizationAnswered { reply: AuthorizationReply::Rejected, .. } => {
                "AuthorizationRejected"
            }
            Input::AuthorizationAnswered { reply: AuthorizationReply::Resend, .. } => "AuthorizationResend",
            Input::AuthorizationFailed { .. } => "AuthorizationFailed",
            Input::AuthorizationAsked { .. } => "AuthorizationAsked",
            Input::AuthorizationEntered { .. } => "AuthorizationEntered",
            Input::OperatorDecided { decision: OperatorDecision::Commit, .. } => "OperatorCommitted",
            Input::OperatorDecided { decision: OperatorDecision::Release, .. } => "OperatorReleased",
            Input::OperatorDecided { decision: OperatorDecision::Acknowledge, .. } => "OperatorAcknowledged",
        }
    }
}

/// What a flow asks the outside world to do. Each request carries what makes
/// it idempotent: the transaction id (also the reservation id, the FSPIOP
/// transfer id and the id of a request to pay the tenant sends) or the
/// derived quote id; repeating one is always safe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// FSPIOP `GET /parties/{type}/{id}` through the scheme: which DFSP
    /// serves `party` (a payment's payee, a request to pay's payer).
    LookupParty { tenant: TenantId, party: Party },
    /// FSPIOP `POST /quotes` to the payee DFSP. When the payee's DFSP is
    /// not known yet (`payee_fsp` None, a payment the payer initiated), the
    /// payee is looked up first (`GET /parties`, its answer awaited in
    /// memory, not committed) and the quote goes to the DFSP found; a
    /// lookup refused becomes [`Input::PartyLookupFailed`]. Nothing of the
    /// lookup needs to survive a crash: the repeat looks up again.
    RequestQuote {
        tenant: TenantId,
        quote_id: Uuid,
        transaction_id: TransactionId,
        payee_fsp: Option<String>,
        payer_fsp: String,
        payer: Party,
        payee: Party,
        amount: Amount,
        /// The payee's request this payment answers, if it initiated it.
        transaction_request: Option<TransactionRequest>,
    },
    /// FSPIOP `POST /transactionRequests` to the payer's DFSP: the tenant's
    /// customer (the payee) asks to be paid. Its id is the transaction's.
    RequestPayment {
        tenant: TenantId,
        request_id: TransactionId,
        payer_fsp: String,
        payee_fsp: String,
        payer: Party,
        payee: Party,
        amount: Amount,
        scenario: String,
        initiator_type: String,
        /// How the payer is to approve it, if the request says.
        authentication: Option<Authentication>,
        expiration_ms: u64,
    },
    /// FSPIOP `PUT /transactionRequests/{ID}`: tell the payee DFSP where its
    /// request to be paid stands.
    AnswerTransactionRequest {
        tenant: TenantId,
        request_id: Uuid,
        payee_fsp: String,
        transaction_id: TransactionId,
        state: RequestState,
    },
    /// FSPIOP `GET /authorizations/{ID}` to the payee's DFSP: have the
    /// payer enter the password (issue `issue`, which the effect runner
    /// derives and the payer's channel shows) at the payee's device.
    RequestAuthorization {
        tenant: TenantId,
        request_id: Uuid,
        payee_fsp: String,
        transaction_id: TransactionId,
        issue: u32,
        retries_left: u32,
        amount: Amount,
    },
    /// FSPIOP `PUT /authorizations/{ID}` to the payer's DFSP: what the payer
    /// did at the tenant's customer's device.
    AnswerAuthorization {
        tenant: TenantId,
        request_id: TransactionId,
        payer_fsp: String,
        response: AuthorizationResponse,
    },
    /// Hold `amount` on the payer's account in the AMS (the hold's id is
    /// the transfer's), and once it is held, FSPIOP `POST /transfers` to
    /// the payee DFSP. One effect, so that holding the funds costs no Raft
    /// entry of its own: repeating it (a failover's resume) holds nothing
    /// twice, since the AMS answers a hold it already has (open or booked)
    /// with success, and the scheme answers a resent transfer with the
    /// first one's outcome. Answered by `ReserveRefused` (nothing held,
    /// nothing sent) or by the transfer's outcome; if the AMS cannot be
    /// reached, nothing is sent and the phase's timeout asks the scheme.
    ReserveAndTransfer {
        tenant: TenantId,
        transfer_id: TransactionId,
        payer_account: Party,
        payee_fsp: String,
        payer_fsp: String,
        amount: Amount,
        ilp_packet: String,
        condition: String,
        expiration_ms: u64,
    },
    /// FSPIOP `GET /transfers/{id}`: ask the scheme for a transfer's outcome.
    QueryTransfer { tenant: TenantId, transfer_id: TransactionId, payee_fsp: String },
    /// Book the reserved funds (the reservation becomes a debit).
    CommitFunds { tenant: TenantId, reservation: TransactionId },
    /// Unblock the reserved funds.
    ReleaseFunds { tenant: TenantId, reservation: TransactionId },
    /// Feed `Input::Timeout { phase, attempt }` back at `at_ms` unless the
    /// flow has moved on.
    ArmTimer { at_ms: u64, phase: Phase, attempt: u32 },
    /// Tell the channel the transaction reached a final state.
    NotifyChannel { tenant: TenantId, transaction_id: TransactionId, flow: FlowKind, state: TransferState },
}

/// Which flow a transaction follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowKind {
    /// A payment from the tenant's customer (`flow::p2p`).
    P2p,
    /// A request to pay from the tenant's customer to a payer elsewhere
    /// (`flow::request_to_pay`).
    RequestToPay,
}

impl FlowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::P2p => "p2p",
            FlowKind::RequestToPay => "request_to_pay",
        }
    }
}

/// The result of one step: the next state (of a flow, or [`State`] of any
/// flow) and the effects to run once it is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition<S = State> {
    pub state: S,
    pub effects: Vec<Effect>,
}
