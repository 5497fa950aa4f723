//! Runs the flows' effects against the connectors and turns their answers
//! (immediate results, FSPIOP callbacks, the payee side's word that a
//! request to pay was paid) into flow inputs.
//!
//! This is translation only: which input an answer means. What the flow then
//! does with it is decided in `actors::flow`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use reqwest::Method;
use uuid::Uuid;

use actors::flow::{AuthorizationResponse, Effect, Input, QuoteTerms, Reason, RequestState, State};
use actors::model::{self, TenantId, TransactionId};
use actors::runtime::{EffectRunner, Reroute, Transactions};
use connectors::ams::Ams;
use connectors::fspiop::client::{FspiopClient, Message, SendError};
use connectors::fspiop::codes;
use connectors::fspiop::headers;
use connectors::fspiop::inbound::PayerCallbacks;
use connectors::fspiop::parties::PartyLookups;
use connectors::fspiop::payee::{domain_amount, RequestsPaid};
use connectors::fspiop::types::{
    AuthenticationInfo, AuthorizationsPut, ErrorBody, Money, PartiesPut, Party, PartyIdInfo, QuotesPost,
    QuotesPut, TransactionRequestsPost, TransactionRequestsPut, TransactionType, TransfersPost, TransfersPut,
};
use connectors::fspiop::waiters::AskError;
use connectors::ledger::LedgerError;
use connectors::tenants::Tenants;

use crate::engine::Engine;
use crate::forward::{Answer, ForwardError, Forwarded};

/// Runs effects for every tenant of the node.
#[derive(Debug)]
pub struct Runner {
    pub tenants: Arc<Tenants>,
    /// The payer's AMS: the built-in ledger, or an external one over HTTP.
    pub ams: Arc<dyn Ams>,
    pub switch: FspiopClient,
    /// Party lookups awaiting their answers (shared with [`Callbacks`]).
    pub lookups: PartyLookups,
    pub finished: Arc<Finished>,
}

/// Who waits, on this node, for which transaction to reach a final state:
/// channel reads that asked to wait (`Prefer: wait=N`). The leader's actor
/// tells it when a transaction finishes (the `NotifyChannel` effect, which
/// runs once the final step is applied), so a waiter that subscribed before
/// it read a non-final state cannot miss the end. Memory only: a waiter on
/// a node that loses the lead simply waits out its time and reads again.
#[derive(Debug, Default)]
pub struct Finished {
    waiting: Mutex<HashMap<TransactionId, Vec<tokio::sync::oneshot::Sender<()>>>>,
}

/// A wait for one transaction's end; dropping it unsubscribes.
pub struct Subscription<'a> {
    finished: &'a Finished,
    id: TransactionId,
    receiver: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Finished {
    pub fn subscribe(&self, id: TransactionId) -> Subscription<'_> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default().push(sender);
        Subscription { finished: self, id, receiver: Some(receiver) }
    }

    /// Wakes everyone waiting for `id`.
    fn notify(&self, id: &TransactionId) {
        let senders = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(());
        }
    }

    /// Transactions somebody waits for (a gauge; bounded by the waits).
    pub fn waited_for(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Subscription<'_> {
    /// Returns when the transaction finishes or `limit` passes.
    pub async fn wait(&mut self, limit: Duration) {
        if let Some(receiver) = self.receiver.as_mut() {
            let _ = tokio::time::timeout(limit, receiver).await;
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        // Closing the receiver marks this waiter's sender; drop it and any
        // other abandoned one of the same transaction.
        self.receiver.take();
        let mut waiting = self.finished.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(senders) = waiting.get_mut(&self.id) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiting.remove(&self.id);
            }
        }
    }
}

fn reason_of(body: &ErrorBody) -> Reason {
    Reason::new(&body.error_information.error_code, body.error_information.error_description.clone())
}

fn wire_party(party: &model::Party, fsp_id: Option<&str>) -> Party {
    Party {
        party_id_info: PartyIdInfo {
            party_id_type: party.id_type.to_string(),
            party_identifier: party.identifier.clone(),
            party_sub_id_or_type: party.sub_id.clone(),
            fsp_id: fsp_id.map(str::to_owned),
        },
        name: None,
    }
}

fn money(amount: &actors::model::Amount) -> Money {
    Money { amount: amount.value_string(), currency: amount.currency.to_string() }
}

impl Runner {
    fn fsp_id(&self, tenant: &TenantId) -> String {
        self.tenants.get(tenant).map(|t| t.fsp_id.clone()).unwrap_or_default()
    }

    /// A rejection the scheme answered synchronously becomes `rejected`; a
    /// message that may not have arrived is left to the phase's timeout,
    /// which resends it.
    fn sent(&self, result: Result<(), SendError>, rejected: impl FnOnce(Reason) -> Input) -> Option<Input> {
        match result {
            Ok(()) => None,
            Err(SendError::Rejected { body, .. }) => Some(rejected(reason_of(&body))),
            Err(error @ SendError::Transport(_)) => {
                tracing::warn!(%error, "scheme request not delivered; the timeout will resend it");
                None
            }
        }
    }

    /// Which DFSP serves `party`, or the input a failed lookup leads to:
    /// a refusal aborts the flow; no answer (or none delivered) is left
    /// to the phase's timeout, which asks again.
    async fn fsp_of(&self, tenant: &TenantId, party: &model::Party) -> Result<String, Option<Input>> {
        match self.lookups.fsp_of(tenant, &self.fsp_id(tenant), party).await {
            Ok(fsp_id) => Ok(fsp_id),
            Err(AskError::Refused(body)) => Err(Some(Input::PartyLookupFailed { reason: reason_of(&body) })),
            Err(error) => {
                tracing::warn!(%tenant, %error, "party lookup not answered; the timeout will ask again");
                Err(None)
            }
        }
    }

    /// The input a refused hold of the payer's funds leads to: none if the
    /// AMS could not be reached (nothing was sent; the phase's timeout takes
    /// over), else the refusal with its FSPIOP code.
    fn ledger_refusal(&self, error: LedgerError, refused: impl FnOnce(Reason) -> Input) -> Option<Input> {
        match error {
            error if error.is_retryable() => {
                tracing::error!(%error, "payer AMS unavailable; nothing sent, the timeout will follow up");
                None
            }
            LedgerError::InsufficientFunds(account) => {
                Some(refused(Reason::new("4001", format!("payer {account} has insufficient funds"))))
            }
            error @ LedgerError::UnknownAccount(_) => {
                Some(refused(Reason::new("3200", format!("payer {error}"))))
            }
            // The AMS refused the request as outside its API, so it did
            // nothing: refuse rather than repeat a request that cannot pass.
            error @ LedgerError::Protocol(_) => {
                tracing::error!(%error, "payer AMS refused a request it should understand");
                Some(refused(Reason::new("2001", format!("payer AMS: {error}"))))
            }
            error => Some(refused(Reason::new("4000", error.to_string()))),
        }
    }
}

#[async_trait::async_trait]
impl EffectRunner for Runner {
    async fn run(&self, id: TransactionId, effect: Effect) -> Option<Input> {
        match effect {
            Effect::LookupParty { tenant, party } => match self.fsp_of(&tenant, &party).await {
                Ok(fsp_id) => Some(Input::PartyFound { fsp_id }),
                Err(input) => input,
            },
            Effect::RequestQuote {
                tenant,
                quote_id,
                transaction_id,
                payee_fsp,
                payer_fsp,
                payer,
                payee,
                amount,
                transaction_request,
            } => {
                // The payee's DFSP: looked up first unless known.
                let payee_fsp = match payee_fsp {
                    Some(fsp_id) => fsp_id,
                    None => match self.fsp_of(&tenant, &payee).await {
                        Ok(fsp_id) => fsp_id,
                        Err(input) => return input,
                    },
                };
                // A payment the payee asked for names its request and says
                // the payee initiated it; the payer pays what was asked.
                let transaction_type = match &transaction_request {
                    Some(request) => TransactionType {
                        scenario: request.scenario.clone(),
                        initiator: "PAYEE".into(),
                        initiator_type: request.initiator_type.clone(),
                    },
                    None => TransactionType {
                        scenario: "TRANSFER".into(),
                        initiator: "PAYER".into(),
                        initiator_type: "CONSUMER".into(),
                    },
                };
                let body = QuotesPost {
                    quote_id: quote_id.to_string(),
                    transaction_id: transaction_id.to_string(),
                    payee: wire_party(&payee, Some(&payee_fsp)),
                    payer: wire_party(&payer, Some(&payer_fsp)),
                    amount_type: "SEND".into(),
                    amount: money(&amount),
                    transaction_type,
                    expiration: None,
                    transaction_request_id: transaction_request.map(|request| request.id.to_string()),
                };
                let source = self.fsp_id(&tenant);
                let message = Message {
                    method: Method::POST,
                    path: "/quotes".into(),
                    resource: "quotes",
                    version: headers::VERSION,
                    source: &source,
                    destination: Some(&payee_fsp),
                    body: Some(&body),
                };
                self.sent(self.switch.send(message).await, |reason| Input::QuoteFailed { reason })
            }
            Effect::ReserveAndTransfer {
                tenant,
                transfer_id,
                payer_account,
                payee_fsp,
                payer_fsp,
                amount,
                ilp_packet,
                condition,
                expiration_ms,
            } => {
                // The funds first: nothing is sent unless they are held.
                let held = self.ams.reserve(&tenant, transfer_id.0, &payer_account, amount).await;
                if let Err(error) = held {
                    return self.ledger_refusal(error, |reason| Input::ReserveRefused { reason });
                }
                let body = TransfersPost {
                    transfer_id: transfer_id.to_string(),
                    payee_fsp: payee_fsp.clone(),
                    payer_fsp,
                    amount: money(&amount),
                    ilp_packet,
                    condition,
                    expiration: headers::timestamp(expiration_ms),
                };
                let source = self.fsp_id(&tenant);
                let message = Message {
                    method: Method::POST,
                    path: "/transfers".into(),
                    resource: "transfers",
                    version: headers::VERSION,
                    source: &source,
                    destination: Some(&payee_fsp),
                    body: Some(&body),
                };
                self.sent(self.switch.send(message).await, |reason| Input::TransferRejected { reason })
            }
            Effect::QueryTransfer { tenant, transfer_id, payee_fsp } => {
                let source = self.fsp_id(&tenant);
                let message = Message::<()> {
                    method: Method::GET,
                    path: format!("/transfers/{transfer_id}"),
                    resource: "transfers",
                    version: headers::VERSION,
                    source: &source,
                    destination: Some(&payee_fsp),
                    body: None,
                };
                // A refused query tells nothing about the transfer: keep asking.
                if let Err(error) = self.switch.send(message).await {
                    tracing::warn!(transaction = %id, %error, "transfer query not answered");
                }
                None
            }
            Effect::CommitFunds { tenant, reservation } => {
                let result = self.ams.commit(&tenant, reservation.0).await;
                match result {
                    Ok(()) => Some(Input::FundsCommitted),
                    Err(error) => {
                        tracing::error!(transaction = %id, %error, "payer AMS did not book a committed transfer");
                        None
                    }
                }
            }
            Effect::ReleaseFunds { tenant, reservation } => {
                let result = self.ams.release(&tenant, reservation.0).await;
                match result {
                    Ok(()) => Some(Input::FundsReleased),
                    Err(error) => {
                        tracing::error!(transaction = %id, %error, "payer AMS did not release reserved funds");
                        None
                    }
                }
            }
            Effect::NotifyChannel { tenant, transaction_id, flow, state } => {
                let outcome = format!("{state:?}").to_uppercase();
                metrics::counter!("payhub_payments_finished_total", "flow" => flow.as_str(), "tenant" => tenant.to_string(), "outcome" => outcome.clone())
                    .increment(1);
                tracing::info!(transaction = %transaction_id, %tenant, flow = flow.as_str(), outcome, "transaction finished");
                self.finished.notify(&transaction_id);
                None
            }
            Effect::RequestPayment {
                tenant,
                request_id,
                payer_fsp,
                payee_fsp,
                payer,
                payee,
                amount,
                scenario,
                initiator_type,
                authentication,
                expiration_ms,
            } => {
                let body = TransactionRequestsPost {
                    transaction_request_id: request_id.to_string(),
                    payee: wire_party(&payee, Some(&payee_fsp)),
                    payer: wire_party(&payer, Some(&payer_fsp)).party_id_info,
                    amount: money(&amount),
                    transaction_type: TransactionType { scenario, initiator: "PAYEE".into(), initiator_type },
                    authentication_type: authentication.map(|a| a.as_str().to_owned()),
                    expiration: Some(headers::timestamp(expiration_ms)),
                };
                let source = self.fsp_id(&tenant);
                let message = Message {
                    method: Method::POST,
                    path: "/transactionRequests".into(),
                    resource: "transactionRequests",
                    version: headers::VERSION,
                    source: &source,
                    destination: Some(&payer_fsp),
                    body: Some(&body),
                };
                self.sent(self.switch.send(message).await, |reason| Input::RequestFailed { reason })
            }
            Effect::AnswerTransactionRequest { tenant, request_id, payee_fsp, transaction_id, state } => {
                let body = TransactionRequestsPut {
                    transaction_id: Some(transaction_id.to_string()),
                    transaction_request_state: state.as_str().into(),
                };
                let source = self.fsp_id(&tenant);
                let message = Message {
                    method: Method::PUT,
                    path: format!("/transactionRequests/{request_id}"),
                    resource: "transactionRequests",
                    version: headers::VERSION,
                    source: &source,
                    destination: Some(&payee_fsp),
                    body: Some(&body),
                };
                // The payee's DFSP can ask again (GET /transactionRequests).
                if let Err(error) = self.switch.send(message).await {
                    tracing::warn!(transaction = %id, %error, "answer to a request to be paid not delivered");
                }
                None
            }
            Effect::RequestAuthorization {
                tenant,
                request_id,
                payee_fsp,
                transaction_id,
                issue,
                retries_left,
                amount,
            } => {
                let source = self.fsp_id(&tenant);
                let message: Message<'_, ()> = Message {
                    method: Method::GET,
                    path: format!(
                        "/authorizations/{request_id}?authenticationType=OTP&retriesLeft={retries_left}&amount={}&currency={}",
                        amount.value_string(),
                        amount.currency
                    ),
                    resource: "authorizations",
                    version: headers::VERSION,
                    source: &source,
                    destination: Some(&payee_fsp),
                    body: None,
                };
                tracing::info!(transaction = %transaction_id, %tenant, issue, retries_left, "the payer's password is asked at the payee's device");
                self.sent(self.switch.send(message).await, |reason| Input::AuthorizationFailed { reason })
            }
            Effect::AnswerAuthorization { tenant, request_id, payer_fsp, response } => {
                let (response_type, authentication_info) = match response {
                    AuthorizationResponse::Entered { value } => (
                        "ENTERED",
                        Some(AuthenticationInfo {
                            authentication: "OTP".into(),
                            authentication_value: value,
                        }),
                    ),
                    AuthorizationResponse::Rejected => ("REJECTED", None),
                    AuthorizationResponse::Resend => ("RESEND", None),
                };
                let body = AuthorizationsPut { authentication_info, response_type: response_type.into() };
                let source = self.fsp_id(&tenant);
                let message = Message {
                    method: Method::PUT,
                    path: format!("/authorizations/{request_id}"),
                    resource: "authorizations",
                    version: headers::VERSION,
                    source: &source,
                    destination: Some(&payer_fsp),
                    body: Some(&body),
                };
                // Not resent: the payer's DFSP asks again when its own wait
                // for the payer is over, or refuses the request.
                if let Err(error) = self.switch.send(message).await {
                    tracing::warn!(transaction = %id, %error, "the payer's answer at the device not delivered");
                }
                None
            }
            Effect::ArmTimer { .. } => None,
        }
    }
}

/// Which tenant a transaction belongs to, if it exists.
pub type OwnerOf = Arc<dyn Fn(&TransactionId) -> Option<TenantId> + Send + Sync>;

/// Turns the payer side's FSPIOP callbacks into flow inputs.
///
/// A callback may arrive on any node of a cluster: inputs go to the leader
/// of the transaction's shard (through [`Engine::handle`]); a quote's
/// answer names its transaction, and a lookup answer no transaction here
/// waits for is offered to the other nodes, one of which sent the request.
pub struct Callbacks {
    /// Party lookups awaiting their answers (shared with [`Runner`]).
    pub lookups: PartyLookups,
    pub transactions: Transactions,
    /// A callback reaches a transaction only through its own tenant's
    /// endpoint: one DFSP's endpoint can never step another's payment.
    pub owner_of: OwnerOf,
    pub router: OnceLock<Weak<Engine>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks").field("lookups", &self.lookups).finish_non_exhaustive()
    }
}

impl Callbacks {
    /// How long an input from a callback is retried while its shard elects a
    /// leader; longer than any election, shorter than the flow's timeouts.
    const DELIVERY_RETRY_FOR: Duration = Duration::from_secs(8);

    pub fn attach(&self, engine: &Arc<Engine>) {
        let _ = self.router.set(Arc::downgrade(engine));
    }

    fn engine(&self) -> Option<Arc<Engine>> {
        self.router.get().and_then(Weak::upgrade)
    }

    /// Steps `id` with `input` on its shard's leader.
    pub(crate) async fn deliver(&self, tenant: &TenantId, id: TransactionId, input: Input) {
        let Some(engine) = self.engine() else {
            return self.deliver_here(tenant, id, input).await;
        };
        let request = Forwarded::Deliver { tenant: tenant.clone(), id, input };
        match handle_boxed(engine.clone(), request.clone()).await {
            Ok(_) => {}
            Err(ForwardError::Unavailable(error)) => {
                // The shard is between leaders: keep trying in the background
                // for a while (the callback itself is answered at once).
                tracing::debug!(transaction = %id, %error, "callback input waits for a leader");
                tokio::spawn(async move {
                    let deadline = Instant::now() + Self::DELIVERY_RETRY_FOR;
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        match handle_boxed(engine.clone(), request.clone()).await {
                            Ok(_) => break,
                            Err(error) if Instant::now() >= deadline => {
                                // The flow's timeout asks again.
                                tracing::warn!(transaction = %id, %error, "callback input not delivered");
                                break;
                            }
                            Err(_) => {}
                        }
                    }
                });
            }
            Err(error) => tracing::warn!(transaction = %id, %error, "callback input not delivered"),
        }
    }

    /// Steps `id` with `input` here, this node leading its shard.
    pub async fn deliver_here(&self, tenant: &TenantId, id: TransactionId, input: Input) {
        let mut owner = (self.owner_of)(&id);
        if owner.is_none() {
            // A leader new to the shard may not have applied the entry that
            // created the transaction yet.
            if let Some(engine) = self.engine() {
                engine.applied_for(&id).await;
                owner = (self.owner_of)(&id);
            }
        }
        match owner {
            Some(owner) if owner == *tenant => self.transactions.deliver(id, input).await,
            Some(_) => {
                tracing::warn!(transaction = %id, %tenant, "callback for another tenant's transaction ignored")
            }
            None => tracing::warn!(transaction = %id, %tenant, "callback for an unknown transaction ignored"),
        }
    }

    fn offer_elsewhere(&self, request: Forwarded) {
        if let Some(engine) = self.engine() {
            engine.forwarder.broadcast(request);
        }
    }

    /// A party answer, for the lookups waiting here only. Returns how many
    /// were waiting.
    pub fn party_here(
        &self,
        tenant: &TenantId,
        party: &model::Party,
        result: Result<PartiesPut, ErrorBody>,
    ) -> usize {
        self.lookups.answered(tenant, party, result)
    }
}

#[async_trait::async_trait]
impl PayerCallbacks for Callbacks {
    async fn party(&self, tenant: &TenantId, party: &model::Party, result: Result<PartiesPut, ErrorBody>) {
        if self.party_here(tenant, party, result.clone()) == 0 {
            let request = Forwarded::Party { tenant: tenant.clone(), party: party.clone(), result };
            self.offer_elsewhere(request);
        }
    }

    /// A quote's id names its transaction ([`TransactionId::of_quote`]):
    /// its answer goes to the transaction's shard leader at once, wherever
    /// the request was sent from.
    async fn quote(
        &self,
        tenant: &TenantId,
        source: &str,
        quote_id: Uuid,
        result: Result<QuotesPut, ErrorBody>,
    ) {
        let input = match result {
            Ok(put) => match quote_terms(&put) {
                Ok(terms) => Input::QuoteReceived { terms, payee_fsp: source.to_owned() },
                Err(reason) => Input::QuoteFailed { reason },
            },
            Err(error) => Input::QuoteFailed { reason: reason_of(&error) },
        };
        self.deliver(tenant, TransactionId::of_quote(quote_id), input).await;
    }

    async fn transfer(&self, tenant: &TenantId, transfer_id: Uuid, result: Result<TransfersPut, ErrorBody>) {
        let input = match result {
            Ok(put) => match (put.transfer_state.as_str(), put.fulfilment) {
                ("COMMITTED", Some(fulfilment)) => Input::TransferFulfilled { fulfilment },
                ("ABORTED", _) => {
                    Input::TransferRejected { reason: Reason::new("5000", "the scheme aborted the transfer") }
                }
                _ => Input::TransferPending,
            },
            Err(error) => Input::TransferRejected { reason: reason_of(&error) },
        };
        self.deliver(tenant, TransactionId(transfer_id), input).await;
    }

    /// A request to pay's id is its transaction's: the answer goes to the
    /// transaction's shard leader. FSPIOP's `PENDING` (there, undecided)
    /// is read as `RECEIVED`.
    async fn transaction_request(
        &self,
        tenant: &TenantId,
        request_id: Uuid,
        result: Result<TransactionRequestsPut, ErrorBody>,
    ) {
        let input = match result {
            Ok(put) => {
                let state = match put.transaction_request_state.as_str() {
                    "RECEIVED" | "PENDING" => RequestState::Received,
                    "ACCEPTED" => RequestState::Accepted,
                    "REJECTED" => RequestState::Rejected,
                    other => {
                        tracing::warn!(%tenant, %request_id, state = other, "unknown state of a request to pay ignored");
                        return;
                    }
                };
                Input::RequestAnswered { state, transaction_id: put.transaction_id }
            }
            Err(error) => Input::RequestFailed { reason: reason_of(&error) },
        };
        self.deliver(tenant, TransactionId(request_id), input).await;
    }

    /// Read on the request's shard leader; stepped there. The flow takes
    /// the ask only while the request waits for its payment.
    async fn authorization_asked(
        &self,
        tenant: &TenantId,
        request_id: Uuid,
        retries_left: u32,
        amount: model::Amount,
    ) -> Result<(), ErrorBody> {
        let Some(engine) = self.engine() else {
            return Err(ErrorBody::new(codes::SERVICE_UNAVAILABLE, "the node is starting; ask again"));
        };
        let id = TransactionId(request_id);
        let state = engine
            .read(&id, Duration::ZERO)
            .await
            .map_err(|error| {
                ErrorBody::new(codes::SERVICE_UNAVAILABLE, format!("cannot read the request now: {error}"))
            })?
            .0;
        let not_found = || {
            ErrorBody::new(
                codes::TRANSACTION_REQUEST_ID_NOT_FOUND,
                format!("no request to pay {request_id} here"),
            )
        };
        let request = match &state {
            Some(State::RequestToPay(request)) if request.request.tenant == *tenant => request,
            _ => return Err(not_found()),
        };
        if let Some(reason) = request.refuses_authorization_ask(&amount) {
            return Err(ErrorBody::new(&reason.code, reason.message));
        }
        self.deliver(tenant, id, Input::AuthorizationAsked { retries_left, amount }).await;
        Ok(())
    }
}

/// An input that reached this node's actor after the node lost the lead of
/// its transaction's shard (a callback routed here a moment before, or
/// queued behind a commit that found the node deposed) goes to the new
/// leader like any callback. While this node still says it leads (a
/// hand-over under way), it waits a moment for the election first.
#[async_trait::async_trait]
impl Reroute for Callbacks {
    async fn reroute(&self, id: TransactionId, input: Input) {
        let Some(tenant) = (self.owner_of)(&id) else {
            tracing::warn!(transaction = %id, input = input.name(), "an input of a transaction unknown here not rerouted");
            return;
        };
        if let Some(engine) = self.engine() {
            engine.until_not_leading(&id, Duration::from_secs(1)).await;
        }
        tracing::debug!(transaction = %id, input = input.name(), "input rerouted to the shard's new leader");
        self.deliver(&tenant, id, input).await;
    }
}

/// The payee side's word that a transfer paid one of the tenant's requests
/// to pay: an input of the request's flow (its id is the request's).
#[async_trait::async_trait]
impl RequestsPaid for Callbacks {
    async fn paid(&self, tenant: &TenantId, request_id: Uuid, transfer_id: Uuid, credited: model::Amount) {
        let input = Input::PaymentReceived { transfer_id, amount: credited };
        self.deliver(tenant, TransactionId(request_id), input).await;
    }

    async fn settled_elsewhere(&self, tenant: &TenantId, transfer_id: Uuid, word: TransfersPut) {
        self.offer_elsewhere(Forwarded::TransferSettled { tenant: tenant.clone(), transfer_id, word });
    }

    /// Asks every other member at once; the first that knows answers (a
    /// member that is down does not hold up the answer of one that is up).
    async fn request_of(&self, tenant: &TenantId, transaction_id: &str) -> Option<Uuid> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let engine = self.engine()?;
        let request =
            Forwarded::RequestOf { tenant: tenant.clone(), transaction_id: transaction_id.to_owned() };
        let mut asked: FuturesUnordered<_> = engine
            .others()
            .into_iter()
            .map(|member| {
                let (engine, request) = (&engine, &request);
                async move { (member, engine.forwarder.send(member, request, 0).await) }
            })
            .collect();
        while let Some((member, answer)) = asked.next().await {
            match answer {
                Ok(Answer::RequestOf(Some(request_id))) => {
                    tracing::debug!(%tenant, transaction = transaction_id, %member, %request_id, "request to pay found on another node");
                    return Some(request_id);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%tenant, %member, %error, "a member did not say which request to pay a transfer pays")
                }
            }
        }
        None
    }
}

/// [`Engine::handle`] as a boxed `Send` future: handling a forwarded
/// callback may deliver inputs in turn, and the box ends that recursion for
/// the compiler.
fn handle_boxed(
    engine: Arc<Engine>,
    request: Forwarded,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answer, ForwardError>> + Send>> {
    Box::pin(async move { engine.handle(request, 0).await })
}

fn quote_terms(put: &QuotesPut) -> Result<QuoteTerms, Reason> {
    let invalid = |message: String| Reason::new("3100", format!("invalid quote: {message}"));
    let optional = |money: &Option<Money>| money.as_ref().map(domain_amount).transpose();
    Ok(QuoteTerms {
        transfer_amount: domain_amount(&put.transfer_amount).map_err(invalid)?,
        payee_fsp_fee: optional(&put.payee_fsp_fee).ok().flatten(),
        payee_fsp_commission: optional(&put.payee_fsp_commission).ok().flatten(),
        expiration_ms: headers::parse_timestamp(&put.expiration)
            .ok_or_else(|| invalid(format!("expiration {:?} is not a date-time", put.expiration)))?,
        ilp_packet: put.ilp_packet.clone(),
        condition: put.condition.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use actors::command::{Command, Response};
    use actors::runtime::{Commit, CommitError, RuntimeLimits, SystemClock};

    use super::*;

    #[derive(Default)]
    struct RecordingCommit(Mutex<Vec<Command>>);

    #[async_trait::async_trait]
    impl Commit for RecordingCommit {
        async fn commit(&self, command: Command) -> Result<Response, CommitError> {
            let id = command.transaction_id().unwrap_or_else(TransactionId::new_random);
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(command);
            Ok(Response::UnknownTransaction { id })
        }
    }

    struct NoEffects;

    #[async_trait::async_trait]
    impl EffectRunner for NoEffects {
        async fn run(&self, _id: TransactionId, _effect: Effect) -> Option<Input> {
            None
        }
    }

    #[tokio::test]
    async fn a_callback_through_another_tenants_endpoint_steps_nothing() {
        let commit = Arc::new(RecordingCommit::default());
        let transactions = Transactions::new(
            commit.clone(),
            Arc::new(NoEffects),
            Arc::new(SystemClock),
            RuntimeLimits::default(),
        );
        let blue: TenantId = "bluebank".parse().expect("valid tenant");
        let green: TenantId = "greenbank".parse().expect("valid tenant");
        let owner = blue.clone();
        let callbacks = Callbacks {
            lookups: PartyLookups::new(FspiopClient::new("http://127.0.0.1:9").expect("valid URL"), 1_000),
            transactions,
            owner_of: Arc::new(move |_: &TransactionId| Some(owner.clone())),
            router: OnceLock::new(),
        };
        let id = TransactionId::new_random();
        let error = || Err(ErrorBody::new("5100", "rejected"));

        callbacks.transfer(&green, id.0, error()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            commit.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty(),
            "another tenant stepped the payment"
        );

        callbacks.transfer(&blue, id.0, error()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let committed = commit.0.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert_eq!(committed, 1, "the owning tenant's callback must be committed");
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_its_transaction_finishes_and_leaves_nothing_behind() {
        let finished = Finished::default();
        let (id, other) = (TransactionId::new_random(), TransactionId::new_random());
        let mut waiter = finished.subscribe(id);
        let mut bystander = finished.subscribe(other);
        assert_eq!(finished.waited_for(), 2);

        finished.notify(&id);
        let started = Instant::now();
        waiter.wait(Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(5), "the end of {id} did not wake its waiter");
        drop(waiter);
        assert_eq!(finished.waited_for(), 1);

        // A waiter whose transaction does not end waits out its limit.
        let started = Instant::now();
        bystander.wait(Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(bystander);
        assert_eq!(finished.waited_for(), 0, "an abandoned wait stays registered");
    }
}
