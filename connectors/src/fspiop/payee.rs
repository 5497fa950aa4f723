//! The payee side of a DFSP: answers party lookups and quotes from the
//! tenant's AMS, and transfers by crediting the payee once the transfer has
//! been checked against the ILP packet and condition of the quote it came
//! from.
//!
//! Every answer is a callback through the switch, in the API version the
//! request negotiated. Quotes and transfers are answered once: the answer is
//! stored (durably, before it is sent) under the FSPIOP id, so a resent
//! request gets the very same callback, `GET /quotes/{id}` and
//! `GET /transfers/{id}` send it again, and a request that reuses an id with
//! different content is refused with 3106 (modified request). Nothing is
//! ever credited twice: the AMS operations are idempotent by the transfer id.
//!
//! A transfer is answered `COMMITTED` (the credit booked before the
//! fulfilment is released), or, with `reserve_notification`, `RESERVED`
//! (the credit pending) and booked or released when the switch's
//! `PATCH /transfers/{id}` says how it ended.
//!
//! The stored answers live in this node's database, so on a cluster a
//! resent request or a GET that reaches another node than the first is not
//! answered from them (see the interoperability issue's notes).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use actors::model::{Amount, Party, PartyIdType, TenantId};
use storage::Kv;

use super::client::{FspiopClient, Message};
use super::codes;
use super::headers;
use super::ilp::{Ilp, IlpError, IlpVersion};
use super::inbound::Envelope;
use super::types::{
    BulkQuotesPost, BulkQuotesPut, BulkTransfersPost, BulkTransfersPut, ErrorBody, IndividualQuoteResult,
    IndividualTransferResult, Money, PartiesPut, Party as WireParty, PartyIdInfo, QuotesPost, QuotesPut,
    TransactionsPut, TransfersPatch, TransfersPost, TransfersPut,
};
use crate::ams::Ams;
use crate::fees::{AmountType, FeeError, FeeRule};
use crate::ledger::{HoldState, LedgerError};
use crate::tenants::{Tenant, Tenants};

/// How the payee side answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayeeOptions {
    /// How long a quote this side gives stays valid.
    pub quote_expiry_ms: u64,
    /// The ILP packet format of the scheme.
    pub ilp_version: IlpVersion,
    /// Answer transfers `RESERVED` and book them on the switch's `PATCH`
    /// (the scheme must send it); otherwise answer `COMMITTED`.
    pub reserve_notification: bool,
}

impl Default for PayeeOptions {
    fn default() -> Self {
        PayeeOptions {
            quote_expiry_ms: 60_000,
            ilp_version: IlpVersion::default(),
            reserve_notification: false,
        }
    }
}

/// The payee-side service of all tenants of a node.
#[derive(Debug, Clone)]
pub struct PayeeService {
    ams: Arc<dyn Ams>,
    client: FspiopClient,
    answers: Answers,
    options: PayeeOptions,
    paid: Arc<dyn RequestsPaid>,
}

/// Told when a transfer that pays one of the tenant's requests to pay (its
/// quote named the request's `transactionRequestId`) is booked to its
/// payee: the request's flow learns it was paid.
#[async_trait::async_trait]
pub trait RequestsPaid: Send + Sync + std::fmt::Debug + 'static {
    async fn paid(&self, tenant: &TenantId, request_id: Uuid, transfer_id: Uuid, credited: Amount);
    /// Which request to pay transaction `transaction_id` pays, as another
    /// node of a cluster learned it from the transaction's quote (each
    /// node's payee side keeps its own index of the quotes it answered).
    async fn request_of(&self, tenant: &TenantId, transaction_id: &str) -> Option<Uuid>;
    /// The switch's final word on a transfer this node did not answer (a
    /// `PATCH` that a load balancer brought here rather than to the node
    /// that answered the transfer `RESERVED`): passed on to the other nodes,
    /// so that the one holding it pending settles it now and tells the
    /// request to pay it paid, instead of asking the switch after the
    /// transfer's expiration.
    async fn settled_elsewhere(&self, tenant: &TenantId, transfer_id: Uuid, word: TransfersPut);
}

/// Whether the payee initiated the transaction of an ILP transaction
/// object (a payment of a request to pay says so in its transaction type).
fn initiated_by_payee(transaction: &serde_json::Value) -> bool {
    transaction.pointer("/transactionType/initiator").and_then(|i| i.as_str()) == Some("PAYEE")
}

/// A booked transfer that pays a request to pay: which, and what the payee
/// was credited (kept from the reservation of a `RESERVED` transfer until
/// the switch's word books it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PaidRequest {
    request_id: Uuid,
    credited: Amount,
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// A wire party to the domain party it names.
pub fn domain_party(party: &WireParty) -> Result<Party, String> {
    let info = &party.party_id_info;
    let id_type: PartyIdType = info.party_id_type.parse().map_err(|e| format!("{e}"))?;
    Party::with_sub_id(id_type, &info.party_identifier, info.party_sub_id_or_type.as_deref())
        .map_err(|e| e.to_string())
}

/// A wire amount to a validated amount.
pub fn domain_amount(money: &Money) -> Result<Amount, String> {
    Amount::parse_positive(&money.amount, &money.currency).map_err(|e| e.to_string())
}

/// What the payee side answered to one quote or transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Answer {
    Quote(QuotesPut),
    Transfer(TransfersPut),
    BulkQuote(BulkQuotesPut),
    BulkTransfer(BulkTransfersPut),
    Error(ErrorBody),
}

/// A stored answer and the digest of the request it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Answered {
    /// SHA-256 of the request body as canonical JSON (keys sorted), so a
    /// resend with its keys in another order is the same request.
    request: String,
    answer: Answer,
}

/// A transfer this side answered `RESERVED` whose outcome it has not yet
/// heard: its pending credit waits for the switch's word (a `PATCH`, a
/// `PUT /transfers/{id}` or its error), and after its expiration this side
/// asks for it (`GET /transfers/{id}`) until it hears. It never releases a
/// credit on silence: the switch may have committed the transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    /// The tenant's FSP id, which asks.
    fsp: String,
    /// The payer DFSP (the request's `FSPIOP-Source`).
    payer: String,
    expiration_ms: u64,
    /// The API version the transfer came in.
    version: headers::ApiVersion,
}

/// What this side knows of a transaction (by its `transactionId`): the
/// quote it gave for it and, once one came, its transfer. Answers
/// `GET /transactions/{ID}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Transaction {
    quote_id: Option<String>,
    transfer_id: Option<String>,
    /// The request to pay the transaction pays, as its quote named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transaction_request_id: Option<String>,
}

/// The kinds of stored answers.
#[derive(Debug, Clone, Copy)]
enum Resource {
    Quotes,
    Transfers,
    BulkQuotes,
    BulkTransfers,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Quotes => "quotes",
            Resource::Transfers => "transfers",
            Resource::BulkQuotes => "bulkQuotes",
            Resource::BulkTransfers => "bulkTransfers",
        }
    }
}

/// The payee side's stored answers, in its own key-value space:
/// `{resource}/{tenant}/{id}` to [`Answered`].
#[derive(Debug, Clone)]
struct Answers {
    kv: Kv,
    /// Serialises the answering of one id (striped by its hash), so two
    /// copies of a request arriving together get one answer.
    stripes: Arc<[tokio::sync::Mutex<()>]>,
    /// Serialises updates of the transaction index: held only across
    /// synchronous reads and writes, never while a stripe is awaited (a
    /// transfer is indexed while its stripe is held).
    index: Arc<std::sync::Mutex<()>>,
}

impl Answers {
    const STRIPES: usize = 64;

    fn new(kv: Kv) -> Result<Self, storage::Error> {
        let stripes = (0..Self::STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        // The sweeper scans the pending transfers twice a second.
        let kv = kv.mirroring(Self::PENDING.as_bytes())?;
        Ok(Answers { kv, stripes, index: Arc::default() })
    }

    fn key(resource: Resource, tenant: &Tenant, id: &str) -> Vec<u8> {
        format!("{}/{}/{id}", resource.name(), tenant.id).into_bytes()
    }

    /// The key of a [`Pending`] transfer: `pending/{tenant}/{id}`.
    fn pending_key(tenant: &TenantId, id: &str) -> Vec<u8> {
        format!("{}{tenant}/{id}", Self::PENDING).into_bytes()
    }

    const PENDING: &'static str = "pending/";

    /// The key of a reserved transfer's [`PaidRequest`]:
    /// `paid-requests/{tenant}/{transfer id}`.
    fn paid_request_key(tenant: &TenantId, transfer_id: Uuid) -> Vec<u8> {
        format!("paid-requests/{tenant}/{transfer_id}").into_bytes()
    }

    /// The key of a [`Transaction`]: `transactions/{tenant}/{id}`.
    fn transaction_key(tenant: &TenantId, id: &str) -> Vec<u8> {
        format!("transactions/{tenant}/{id}").into_bytes()
    }

    fn transaction(&self, tenant: &TenantId, id: &str) -> Result<Option<Transaction>, ErrorBody> {
        let stored = self
            .kv
            .get(&Self::transaction_key(tenant, id))
            .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))?;
        stored
            .map(|bytes| actors::command::decode(&bytes))
            .transpose()
            .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))
    }

    /// Records what `update` learns of transaction `id`. Not waited to be
    /// durable (it only informs `GET /transactions/{ID}`): the next durable
    /// write of the space takes it along.
    fn note_transaction(&self, tenant: &TenantId, id: &str, update: impl FnOnce(&mut Transaction)) {
        let key = Self::transaction_key(tenant, id);
        let _turn = self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut known = self.transaction(tenant, id).ok().flatten().unwrap_or_default();
        update(&mut known);
        if let Err(error) = self.kv.apply(vec![(key, Some(actors::command::encode(&known)))]) {
            tracing::warn!(%tenant, transaction = %id, ?error, "transaction not indexed; GET /transactions will not know it");
        }
    }

    fn stripe(&self, key: &[u8]) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % Self::STRIPES as u64).unwrap_or(0);
        &self.stripes[index]
    }

    fn get(&self, key: &[u8]) -> Result<Option<Answered>, ErrorBody> {
        let stored = self.kv.get(key).map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))?;
        stored
            .map(|bytes| actors::command::decode(&bytes))
            .transpose()
            .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))
    }

    /// Writes a batch atomically and durably.
    async fn write(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), ErrorBody> {
        let server_error = |e: storage::Error| ErrorBody::new(codes::SERVER_ERROR, e.to_string());
        self.kv.apply(batch).map_err(server_error)?;
        self.kv.durable().await.map_err(server_error)
    }

    fn pending(&self, key: &[u8]) -> Result<Option<Pending>, ErrorBody> {
        let stored = self.kv.get(key).map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))?;
        stored
            .map(|bytes| actors::command::decode(&bytes))
            .transpose()
            .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))
    }
}

/// The [`Pending`] record of a transfer answered `RESERVED`.
fn pending_of(
    envelope: &Envelope,
    tenant: &Tenant,
    request: &serde_json::Value,
    answer: &Answer,
) -> Option<Pending> {
    match answer {
        Answer::Transfer(put) if put.transfer_state == "RESERVED" => Some(Pending {
            fsp: tenant.fsp_id.clone(),
            payer: envelope.source.clone(),
            // Validated before the credit was reserved.
            expiration_ms: request
                .get("expiration")
                .and_then(|e| e.as_str())
                .and_then(headers::parse_timestamp)
                .unwrap_or(0),
            version: envelope.version,
        }),
        _ => None,
    }
}

/// The digest of a request body, as [`Answered::request`] keeps it.
fn digest(body: &serde_json::Value) -> String {
    // A `Value` serializes with its keys sorted (serde_json's map is ordered).
    actors::command::sha256_hex(serde_json::to_vec(body).unwrap_or_default())
}

impl PayeeService {
    pub fn new(
        ams: Arc<dyn Ams>,
        client: FspiopClient,
        answers: Kv,
        options: PayeeOptions,
        paid: Arc<dyn RequestsPaid>,
    ) -> Result<Self, storage::Error> {
        Ok(PayeeService { ams, client, answers: Answers::new(answers)?, options, paid })
    }

    /// Sends `body` as the tenant's callback (`PUT path`) to the sender of
    /// the request `envelope` describes, in the version it negotiated.
    pub async fn callback<B: serde::Serialize>(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        resource: &str,
        path: String,
        body: &B,
    ) {
        let message = Message {
            method: Method::PUT,
            path,
            resource,
            version: envelope.version,
            source: &tenant.fsp_id,
            destination: Some(&envelope.source),
            body: Some(body),
        };
        if let Err(error) = self.client.send(message).await {
            tracing::warn!(tenant = %tenant.id, %error, "payee callback not delivered");
        }
    }

    /// Sends a stored answer (or an error) as the callback of `resource/id`.
    async fn answer(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        resource: Resource,
        id: &str,
        answer: &Answer,
    ) {
        let path = format!("/{}/{id}", resource.name());
        let name = resource.name();
        match answer {
            Answer::Quote(body) => self.callback(tenant, envelope, name, path, body).await,
            Answer::Transfer(body) => self.callback(tenant, envelope, name, path, body).await,
            Answer::BulkQuote(body) => self.callback(tenant, envelope, name, path, body).await,
            Answer::BulkTransfer(body) => self.callback(tenant, envelope, name, path, body).await,
            Answer::Error(body) => self.callback(tenant, envelope, name, format!("{path}/error"), body).await,
        }
    }

    /// `GET /parties/{type}/{id}[/{subId}]`: answers from the tenant's AMS,
    /// where a party with a sub-id has an account of its own.
    pub async fn lookup(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        id_type: PartyIdType,
        id: &str,
        sub_id: Option<&str>,
    ) {
        let path = match sub_id {
            Some(sub_id) => format!("/parties/{id_type}/{id}/{sub_id}"),
            None => format!("/parties/{id_type}/{id}"),
        };
        let found = match Party::with_sub_id(id_type, id, sub_id) {
            Ok(party) => Some(self.ams.balance(&tenant.id, &party).await.map(|b| b.map(|_| party))),
            Err(_) => None,
        };
        match found {
            Some(Ok(Some(party))) => {
                let body = PartiesPut {
                    party: WireParty {
                        party_id_info: PartyIdInfo {
                            party_id_type: party.id_type.to_string(),
                            party_identifier: party.identifier.clone(),
                            party_sub_id_or_type: party.sub_id.clone(),
                            fsp_id: Some(tenant.fsp_id.clone()),
                        },
                        name: None,
                    },
                };
                self.callback(tenant, envelope, "parties", path, &body).await;
            }
            Some(Err(error)) => {
                let body = ErrorBody::new(codes::SERVER_ERROR, format!("payee AMS unavailable: {error}"));
                self.callback(tenant, envelope, "parties", format!("{path}/error"), &body).await;
            }
            _ => {
                let body = ErrorBody::new(
                    codes::PARTY_NOT_FOUND,
                    format!("party {} not found", path.trim_start_matches("/parties/")),
                );
                self.callback(tenant, envelope, "parties", format!("{path}/error"), &body).await;
            }
        }
    }

    /// Answers a quote or transfer request once: a request seen before gets
    /// the stored answer again (or 3106 when its content differs), a new one
    /// gets `decide`'s answer, stored durably before it is sent.
    async fn answer_once<F>(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        resource: Resource,
        id: &str,
        body: &serde_json::Value,
        decide: F,
    ) where
        F: std::future::Future<Output = Answer>,
    {
        let key = Answers::key(resource, tenant, id);
        let request = digest(body);
        let answer = {
            let _turn = self.answers.stripe(&key).lock().await;
            match self.answers.get(&key) {
                Ok(Some(answered)) if answered.request == request => answered.answer,
                Ok(Some(_)) => Answer::Error(ErrorBody::new(
                    codes::MODIFIED_REQUEST,
                    format!("{} {id} was answered before for a request with other content", resource.name()),
                )),
                Err(error) => Answer::Error(error),
                Ok(None) => {
                    let answer = decide.await;
                    let answered = Answered { request, answer: answer.clone() };
                    let mut batch = vec![(key, Some(actors::command::encode(&answered)))];
                    if let Some(pending) = pending_of(envelope, tenant, body, &answer) {
                        let pending_key = Answers::pending_key(&tenant.id, id);
                        batch.push((pending_key, Some(actors::command::encode(&pending))));
                    }
                    match self.answers.write(batch).await {
                        Ok(()) => answer,
                        Err(error) => {
                            tracing::error!(tenant = %tenant.id, %id, "payee answer not stored; not sent");
                            Answer::Error(error)
                        }
                    }
                }
            }
        };
        self.answer(tenant, envelope, resource, id, &answer).await;
    }

    /// `GET /quotes/{id}` or `GET /transfers/{id}`: the stored answer again,
    /// or 3205 / 3208 when there is none.
    async fn resend(&self, tenant: &Tenant, envelope: &Envelope, resource: Resource, id: &str) {
        let answer = match self.answers.get(&Answers::key(resource, tenant, id)) {
            Ok(Some(answered)) => answered.answer,
            Ok(None) => {
                let (code, what) = match resource {
                    Resource::Quotes => (codes::QUOTE_ID_NOT_FOUND, "quote"),
                    Resource::Transfers => (codes::TRANSFER_ID_NOT_FOUND, "transfer"),
                    Resource::BulkQuotes => (codes::QUOTE_ID_NOT_FOUND, "bulk quote"),
                    Resource::BulkTransfers => (codes::TRANSFER_ID_NOT_FOUND, "bulk transfer"),
                };
                Answer::Error(ErrorBody::new(code, format!("{what} {id} is not known to this DFSP")))
            }
            Err(error) => Answer::Error(error),
        };
        self.answer(tenant, envelope, resource, id, &answer).await;
    }

    /// `POST /quotes`. `raw` is the request as received: the ILP transaction
    /// object carries its parties with every element they came with.
    pub async fn quote(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        request: QuotesPost,
        raw: serde_json::Value,
    ) {
        let id = request.quote_id.clone();
        let quote_id = id.clone();
        let transaction_request_id = request.transaction_request_id.clone();
        self.answers.note_transaction(&tenant.id, &request.transaction_id, |known| {
            known.quote_id = Some(quote_id);
            known.transaction_request_id = transaction_request_id;
        });
        let decide = async {
            match self.price(tenant, &request, &raw).await {
                Ok(body) => Answer::Quote(body),
                Err(body) => Answer::Error(body),
            }
        };
        self.answer_once(tenant, envelope, Resource::Quotes, &id, &raw, decide).await;
    }

    /// `GET /quotes/{id}`.
    pub async fn get_quote(&self, tenant: &Tenant, envelope: &Envelope, id: Uuid) {
        self.resend(tenant, envelope, Resource::Quotes, &id.to_string()).await;
    }

    /// Prices a quote: the payee bears no fee, so the transfer amount is the
    /// amount asked and the payee receives all of it.
    async fn price(
        &self,
        tenant: &Tenant,
        request: &QuotesPost,
        raw: &serde_json::Value,
    ) -> Result<QuotesPut, ErrorBody> {
        let invalid = |m: String| ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, m);
        let kind = match request.amount_type.as_str() {
            "SEND" => AmountType::Send,
            "RECEIVE" => AmountType::Receive,
            other => return Err(invalid(format!("amountType {other:?} is not SEND or RECEIVE"))),
        };
        let payee = domain_party(&request.payee).map_err(invalid)?;
        let amount = domain_amount(&request.amount).map_err(invalid)?;
        let account = self
            .ams
            .balance(&tenant.id, &payee)
            .await
            .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))?
            .ok_or_else(|| ErrorBody::new(codes::PARTY_NOT_FOUND, format!("party {payee} not found")))?;
        if account.currency != amount.currency {
            return Err(ErrorBody::new(
                codes::PAYEE_UNSUPPORTED_CURRENCY,
                format!("payee account holds {}, not {}", account.currency, amount.currency),
            ));
        }
        let amounts = tenant.fees.quote(kind, &amount).map_err(|error| match error {
            FeeError::AmountTooSmall { .. } => {
                ErrorBody::new(codes::PAYEE_FSP_REJECTED_QUOTE, error.to_string())
            }
            FeeError::Amount(reason) => invalid(reason),
        })?;
        let transfer_amount = Money::from(&amounts.transfer);
        let expiration = headers::timestamp(now_ms() + self.options.quote_expiry_ms);
        let ilp = Ilp::new(self.options.ilp_version, &tenant.ilp_secret);
        let note = raw.get("note").and_then(|n| n.as_str());
        let packet = ilp
            .quote_response(raw, &transfer_amount, &expiration, note)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(QuotesPut {
            transfer_amount,
            payee_receive_amount: Some(Money::from(&amounts.receive)),
            payee_fsp_fee: Some(Money {
                amount: amounts.fee.to_string(),
                currency: amount.currency.to_string(),
            }),
            payee_fsp_commission: None,
            expiration,
            ilp_packet: packet.ilp_packet,
            condition: packet.condition,
        })
    }

    /// `POST /transfers`: checks the transfer against its ILP packet and
    /// condition, credits the payee, and answers with the fulfilment.
    pub async fn transfer(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        request: TransfersPost,
        raw: serde_json::Value,
    ) {
        let id = request.transfer_id.clone();
        let decide = async {
            match self.accept(tenant, &request, &raw, self.options.reserve_notification).await {
                Ok(body) => Answer::Transfer(body),
                Err(body) => Answer::Error(body),
            }
        };
        self.answer_once(tenant, envelope, Resource::Transfers, &id, &raw, decide).await;
    }

    /// `GET /transactions/{ID}`: the state of a transaction this side was
    /// quoted for, from its transfer's answer: RECEIVED (quoted, no transfer
    /// yet), PENDING (credit reserved), COMPLETED or REJECTED; 3207 for one
    /// it does not know.
    pub async fn get_transaction(&self, tenant: &Tenant, envelope: &Envelope, id: Uuid) {
        let id = id.to_string();
        let path = format!("/transactions/{id}");
        let state = match self.answers.transaction(&tenant.id, &id) {
            Ok(Some(known)) => match known.transfer_id {
                Some(transfer) => {
                    match self.answers.get(&Answers::key(Resource::Transfers, tenant, &transfer)) {
                        Ok(Some(Answered { answer: Answer::Transfer(put), .. })) => Ok(TransactionsPut {
                            transaction_state: match put.transfer_state.as_str() {
                                "COMMITTED" => "COMPLETED",
                                "ABORTED" => "REJECTED",
                                _ => "PENDING",
                            }
                            .into(),
                            completed_timestamp: (put.transfer_state != "RESERVED")
                                .then_some(put.completed_timestamp)
                                .flatten(),
                            code: None,
                        }),
                        Ok(Some(_)) => Ok(TransactionsPut {
                            transaction_state: "REJECTED".into(),
                            completed_timestamp: None,
                            code: None,
                        }),
                        // The transfer came and is being answered.
                        Ok(None) => Ok(TransactionsPut {
                            transaction_state: "RECEIVED".into(),
                            completed_timestamp: None,
                            code: None,
                        }),
                        Err(error) => Err(error),
                    }
                }
                None => Ok(TransactionsPut {
                    transaction_state: "RECEIVED".into(),
                    completed_timestamp: None,
                    code: None,
                }),
            },
            Ok(None) => Err(ErrorBody::new(
                codes::TRANSACTION_ID_NOT_FOUND,
                format!("transaction {id} is not known to this DFSP"),
            )),
            Err(error) => Err(error),
        };
        match state {
            Ok(body) => self.callback(tenant, envelope, "transactions", path, &body).await,
            Err(body) => {
                self.callback(tenant, envelope, "transactions", format!("{path}/error"), &body).await
            }
        }
    }

    /// `GET /transfers/{id}`.
    pub async fn get_transfer(&self, tenant: &Tenant, envelope: &Envelope, id: Uuid) {
        self.resend(tenant, envelope, Resource::Transfers, &id.to_string()).await;
    }

    /// `POST /bulkQuotes`: each individual quote is priced as a `POST
    /// /quotes` with the bulk's payer (and expiration) would be, and stored
    /// as such, so its transfer finds the terms; one that cannot be quoted
    /// carries its error in the results. The bulk is answered once, as a
    /// quote is.
    pub async fn bulk_quote(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        request: BulkQuotesPost,
        raw: serde_json::Value,
    ) {
        let decide = async {
            let mut results = Vec::with_capacity(request.individual_quotes.len());
            let mut answered = Vec::with_capacity(request.individual_quotes.len());
            for individual in &request.individual_quotes {
                let mut single = individual.clone();
                for shared in ["payer", "expiration", "geoCode"] {
                    if let Some(value) = raw.get(shared) {
                        single[shared] = value.clone();
                    }
                }
                let quote_id =
                    individual.get("quoteId").and_then(|q| q.as_str()).unwrap_or_default().to_owned();
                let quoted = match QuotesPost::deserialize(&single) {
                    Ok(quote) => {
                        let (quote_id, transaction_id) =
                            (quote.quote_id.clone(), quote.transaction_id.clone());
                        self.answers.note_transaction(&tenant.id, &transaction_id, |known| {
                            known.quote_id = Some(quote_id)
                        });
                        self.price(tenant, &quote, &single).await
                    }
                    Err(error) => Err(ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, error.to_string())),
                };
                if let Ok(quote) = &quoted {
                    let stored = Answered { request: digest(&single), answer: Answer::Quote(quote.clone()) };
                    let key = Answers::key(Resource::Quotes, tenant, &quote_id);
                    answered.push((key, Some(actors::command::encode(&stored))));
                }
                let payee = individual.get("payee").cloned().and_then(|p| serde_json::from_value(p).ok());
                results.push(IndividualQuoteResult::new(quote_id, payee, quoted));
            }
            // The individual quotes are stored before the bulk's answer
            // that announces them.
            if let Err(error) = self.answers.write(answered).await {
                return Answer::Error(error);
            }
            Answer::BulkQuote(BulkQuotesPut {
                individual_quote_results: results,
                expiration: headers::timestamp(now_ms() + self.options.quote_expiry_ms),
            })
        };
        let id = request.bulk_quote_id.clone();
        self.answer_once(tenant, envelope, Resource::BulkQuotes, &id, &raw, decide).await;
    }

    /// `GET /bulkQuotes/{id}`.
    pub async fn get_bulk_quote(&self, tenant: &Tenant, envelope: &Envelope, id: Uuid) {
        self.resend(tenant, envelope, Resource::BulkQuotes, &id.to_string()).await;
    }

    /// `POST /bulkTransfers`: each individual transfer is checked against
    /// its ILP packet and condition and credited as a `POST /transfers`
    /// would be, and booked at once (the API has no notification of a bulk
    /// reserved); one that fails carries its error in the results. The
    /// bulk is `COMPLETED` when any transfer was credited, `REJECTED` when
    /// none was; an expired bulk gets 3303 and credits nothing.
    pub async fn bulk_transfer(
        &self,
        tenant: &Tenant,
        envelope: &Envelope,
        request: BulkTransfersPost,
        raw: serde_json::Value,
    ) {
        let decide = async {
            let expired = headers::parse_timestamp(&request.expiration).is_none_or(|at| at <= now_ms());
            if expired {
                return Answer::Error(ErrorBody::new(
                    codes::TRANSFER_EXPIRED,
                    "bulk transfer expired before the payee received it",
                ));
            }
            let mut results = Vec::with_capacity(request.individual_transfers.len());
            for individual in &request.individual_transfers {
                let single = TransfersPost {
                    transfer_id: individual.transfer_id.clone(),
                    payee_fsp: request.payee_fsp.clone(),
                    payer_fsp: request.payer_fsp.clone(),
                    amount: individual.transfer_amount.clone(),
                    ilp_packet: individual.ilp_packet.clone(),
                    condition: individual.condition.clone(),
                    expiration: request.expiration.clone(),
                };
                let single_raw = serde_json::to_value(&single).unwrap_or_default();
                let (fulfilment, error_information) =
                    match self.accept(tenant, &single, &single_raw, false).await {
                        Ok(put) => (put.fulfilment, None),
                        Err(error) => (None, Some(error.error_information)),
                    };
                results.push(IndividualTransferResult {
                    transfer_id: individual.transfer_id.clone(),
                    fulfilment,
                    error_information,
                });
            }
            let credited = results.iter().any(|r| r.fulfilment.is_some());
            Answer::BulkTransfer(BulkTransfersPut {
                completed_timestamp: Some(headers::timestamp(now_ms())),
                individual_transfer_results: results,
                bulk_transfer_state: if credited { "COMPLETED" } else { "REJECTED" }.into(),
            })
        };
        let id = request.bulk_transfer_id.clone();
        self.answer_once(tenant, envelope, Resource::BulkTransfers, &id, &raw, decide).await;
    }

    /// `GET /bulkTransfers/{id}`.
    pub async fn get_bulk_transfer(&self, tenant: &Tenant, envelope: &Envelope, id: Uuid) {
        self.resend(tenant, envelope, Resource::BulkTransfers, &id.to_string()).await;
    }

    /// Checks a transfer and credits its payee: booked, or (`reserve`) a
    /// pending credit the switch's word settles.
    async fn accept(
        &self,
        tenant: &Tenant,
        request: &TransfersPost,
        raw: &serde_json::Value,
        reserve: bool,
    ) -> Result<TransfersPut, ErrorBody> {
        let invalid = |m: String| ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, m);
        let transfer_id = Uuid::parse_str(&request.transfer_id).map_err(|e| invalid(e.to_string()))?;
        let now = now_ms();
        let expiration = headers::parse_timestamp(&request.expiration)
            .ok_or_else(|| invalid(format!("expiration {:?} is not a date-time", request.expiration)))?;
        if expiration <= now {
            return Err(ErrorBody::new(
                codes::TRANSFER_EXPIRED,
                "transfer expired before the payee received it",
            ));
        }
        let ilp = Ilp::new(self.options.ilp_version, &tenant.ilp_secret);
        ilp.validate_transfer(raw).map_err(|error| match error {
            IlpError::ConditionMismatch => {
                ErrorBody::new(codes::INVALID_FULFILMENT, "condition does not match the ILP packet")
            }
            other => invalid(other.to_string()),
        })?;
        let transaction = ilp.transaction_object(&request.ilp_packet).map_err(|e| invalid(e.to_string()))?;
        let mut pays_request = None;
        if let Some(transaction_id) = transaction.get("transactionId").and_then(|t| t.as_str()) {
            let transfer = request.transfer_id.clone();
            self.answers.note_transaction(&tenant.id, transaction_id, |known| {
                known.transfer_id = Some(transfer);
                pays_request =
                    known.transaction_request_id.as_deref().and_then(|id| Uuid::parse_str(id).ok());
            });
        }
        let quote_expiry =
            transaction.get("expiration").and_then(|e| e.as_str()).and_then(headers::parse_timestamp);
        if quote_expiry.is_some_and(|quote_expiry| quote_expiry <= now) {
            return Err(ErrorBody::new(codes::QUOTE_EXPIRED, "the quote of this transfer has expired"));
        }
        let payee: WireParty = transaction
            .get("payee")
            .cloned()
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or_else(|| invalid("the ILP packet's transaction names no payee".into()))?;
        let payee = domain_party(&payee).map_err(invalid)?;
        let amount = domain_amount(&request.amount).map_err(invalid)?;
        let quote_id = transaction.get("quoteId").and_then(|q| q.as_str()).unwrap_or_default();
        let (receive, fee) = self.agreed_split(tenant, quote_id, &amount)?;
        let fulfilment = ilp.fulfilment_of_packet(&request.ilp_packet).map_err(|e| invalid(e.to_string()))?;
        self.credit(tenant, transfer_id, &payee, receive, fee, reserve).await?;
        // Quoted by another node of a cluster: ask the others, for a payment
        // the payee initiated only (the others are ordinary payments).
        let transaction_id = transaction.get("transactionId").and_then(|t| t.as_str());
        let pays_request = match (pays_request, transaction_id) {
            (None, Some(transaction_id)) if initiated_by_payee(&transaction) => {
                let found = self.paid.request_of(&tenant.id, transaction_id).await;
                if found.is_none() {
                    // Its quote was answered by a node that cannot say now
                    // (down, or lost), or it names no request: the request,
                    // if there is one, lapses although paid.
                    tracing::warn!(
                        tenant = %tenant.id, %transfer_id, transaction = transaction_id,
                        "a payee-initiated transfer was credited, but no node knows which request to pay it pays; reconcile it"
                    );
                    metrics::counter!("payhub_payee_request_unknown_total", "tenant" => tenant.id.to_string())
                        .increment(1);
                }
                found
            }
            (known, _) => known,
        };
        if let Some(request_id) = pays_request {
            let paid = PaidRequest { request_id, credited: receive };
            if reserve {
                // Told once the switch's word books it (`conclude`).
                let key = Answers::paid_request_key(&tenant.id, transfer_id);
                if let Err(error) = self.answers.kv.apply(vec![(key, Some(actors::command::encode(&paid)))]) {
                    tracing::warn!(tenant = %tenant.id, %transfer_id, %error, "the request to pay this transfer pays will not learn it");
                }
            } else {
                self.paid.paid(&tenant.id, paid.request_id, transfer_id, paid.credited).await;
            }
        }
        Ok(TransfersPut {
            fulfilment: Some(fulfilment),
            completed_timestamp: Some(headers::timestamp(now_ms())),
            transfer_state: if reserve { "RESERVED" } else { "COMMITTED" }.into(),
        })
    }

    /// How a transfer's amount splits into the payee's credit and this
    /// side's fee: as the quote this side gave for it said. Without a stored
    /// quote (answered by another node of a cluster: payee answers are
    /// node-local), the payee is credited the whole amount and the fee is
    /// forgone, which is counted for operators.
    fn agreed_split(
        &self,
        tenant: &Tenant,
        quote_id: &str,
        amount: &Amount,
    ) -> Result<(Amount, Option<Amount>), ErrorBody> {
        if !tenant.fees.charges() {
            return Ok((*amount, None));
        }
        let quote = match self.answers.get(&Answers::key(Resource::Quotes, tenant, quote_id))? {
            Some(Answered { answer: Answer::Quote(quote), .. }) => quote,
            _ => {
                tracing::warn!(tenant = %tenant.id, %quote_id, "no quote of this payee for a transfer; no fee taken");
                metrics::counter!("payhub_payee_fee_forgone_total", "tenant" => tenant.id.to_string())
                    .increment(1);
                return Ok((*amount, None));
            }
        };
        let invalid = |m: String| ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, m);
        let quoted = domain_amount(&quote.transfer_amount).map_err(invalid)?;
        if quoted != *amount {
            return Err(invalid(format!("transfer amount {amount} differs from the quote's {quoted}")));
        }
        let receive = quote.payee_receive_amount.as_ref().map(domain_amount).transpose().map_err(invalid)?;
        let receive = receive.unwrap_or(*amount);
        let fee = Amount::positive(amount.value - receive.value, amount.currency).ok();
        Ok((receive, fee))
    }

    /// Credits the payee (`receive`, held under the transfer id) and books
    /// this side's fee on its income account (held under
    /// [`FeeRule::hold`]); commits both unless `reserve` (the switch's word
    /// settles them).
    async fn credit(
        &self,
        tenant: &Tenant,
        transfer_id: Uuid,
        payee: &Party,
        receive: Amount,
        fee: Option<Amount>,
        reserve: bool,
    ) -> Result<(), ErrorBody> {
        let mut result = self.ams.reserve_credit(&tenant.id, transfer_id, payee, receive).await;
        if let (Ok(()), Some(fee)) = (&result, fee) {
            let account = tenant.fees.account(fee.currency);
            if let Err(error) =
                self.ams.reserve_credit(&tenant.id, FeeRule::hold(transfer_id), &account, fee).await
            {
                tracing::error!(tenant = %tenant.id, %transfer_id, %error, "cannot book a fee on {account}");
                self.release_unanswered(tenant, transfer_id).await;
                return Err(ErrorBody::new(codes::SERVER_ERROR, format!("fee account {account}: {error}")));
            }
        }
        if result.is_ok() && !reserve {
            result = self.settle_holds(tenant, transfer_id, Outcome::Committed).await;
        }
        match result {
            Ok(()) => Ok(()),
            Err(LedgerError::UnknownAccount(account)) => {
                Err(ErrorBody::new(codes::PARTY_NOT_FOUND, format!("payee account {account} not found")))
            }
            Err(error @ LedgerError::CurrencyMismatch { .. }) => {
                Err(ErrorBody::new(codes::PAYEE_UNSUPPORTED_CURRENCY, error.to_string()))
            }
            Err(error @ (LedgerError::HoldConflict(_) | LedgerError::HoldClosed { .. })) => {
                Err(ErrorBody::new(codes::PAYEE_REJECTED, error.to_string()))
            }
            Err(error) => {
                // The credit may have been taken even though no answer came:
                // release it (a release before the hold exists leaves a
                // tombstone, so a late reservation cannot take effect either)
                // before telling the switch no, which it will not follow up.
                // A credit already booked cannot be released; that error is
                // logged for reconciliation.
                self.release_unanswered(tenant, transfer_id).await;
                Err(ErrorBody::new(codes::SERVER_ERROR, error.to_string()))
            }
        }
    }

    /// Commits or releases a transfer's holds: the payee's credit and, when
    /// this side charges fees, the fee's (a transfer without a fee has no
    /// fee hold; a release of it leaves a tombstone, so none comes late).
    async fn settle_holds(
        &self,
        tenant: &Tenant,
        transfer_id: Uuid,
        outcome: Outcome,
    ) -> Result<(), LedgerError> {
        match outcome {
            Outcome::Committed => self.ams.commit(&tenant.id, transfer_id).await?,
            Outcome::Aborted => self.ams.release(&tenant.id, transfer_id).await?,
        }
        if !tenant.fees.charges() {
            return Ok(());
        }
        let fee = FeeRule::hold(transfer_id);
        match outcome {
            Outcome::Committed => match self.ams.commit(&tenant.id, fee).await {
                Err(LedgerError::UnknownHold(_)) => Ok(()),
                other => other,
            },
            Outcome::Aborted => self.ams.release(&tenant.id, fee).await,
        }
    }

    /// Releases a pending credit whose reservation went unanswered.
    async fn release_unanswered(&self, tenant: &Tenant, transfer_id: Uuid) {
        for attempt in 1..=3 {
            match self.settle_holds(tenant, transfer_id, Outcome::Aborted).await {
                Ok(()) => return,
                Err(error) if attempt == 3 => tracing::error!(
                    tenant = %tenant.id, %transfer_id, %error,
                    "a pending credit may remain on the payee's account; reconcile it with the AMS"
                ),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }

    /// `PATCH /transfers/{id}`: the switch's final word on a transfer this
    /// side answered RESERVED. Answered synchronously (200) only once the
    /// AMS has booked it, so the switch resends it until it is done. The
    /// stored answer then carries the final state, for `GET /transfers/{id}`.
    /// The switch's `PATCH /transfers/{id}` to a transfer this side
    /// answered: `COMMITTED` books the pending credit, `ABORTED` releases it.
    pub async fn patch(
        &self,
        tenant: &Tenant,
        transfer_id: Uuid,
        patch: &TransfersPatch,
    ) -> Result<(), ErrorBody> {
        let outcome = match patch.transfer_state.as_str() {
            "COMMITTED" => Outcome::Committed,
            "ABORTED" => Outcome::Aborted,
            other => {
                return Err(ErrorBody::new(
                    codes::GENERIC_VALIDATION_ERROR,
                    format!("transferState {other:?} is not COMMITTED or ABORTED"),
                ))
            }
        };
        self.conclude(tenant, transfer_id, outcome, &patch.completed_timestamp).await
    }

    /// Which request to pay transaction `transaction_id` pays, as the quote
    /// this node answered for it named it.
    pub fn request_of(&self, tenant: &TenantId, transaction_id: &str) -> Option<Uuid> {
        let known = self.answers.transaction(tenant, transaction_id).ok().flatten()?;
        known.transaction_request_id.as_deref().and_then(|id| Uuid::parse_str(id).ok())
    }

    /// Whether `transfer_id` is a transfer of `tenant`'s this side answered
    /// `RESERVED` and has not settled: a `PUT /transfers/{id}` (or its
    /// error) for it is the switch's word on it ([`PayeeService::settle`]).
    pub fn is_pending(&self, tenant: &Tenant, transfer_id: Uuid) -> bool {
        let key = Answers::pending_key(&tenant.id, &transfer_id.to_string());
        matches!(self.answers.pending(&key), Ok(Some(_)))
    }

    /// The switch's `PUT /transfers/{id}` or `PUT /transfers/{id}/error`
    /// on a pending transfer (its notification, or its answer to this
    /// side's `GET`): a final state settles it; an error of the transfer
    /// (3xxx to 5xxx: expired, unknown, refused) releases it, as the switch
    /// cannot commit it; a communication or server error (1xxx, 2xxx) says
    /// nothing of the transfer, and it stays pending.
    pub async fn settle(&self, tenant: &Tenant, transfer_id: Uuid, word: Result<TransfersPut, ErrorBody>) {
        let (outcome, completed) = match &word {
            Ok(put) if put.transfer_state == "COMMITTED" => {
                (Outcome::Committed, put.completed_timestamp.clone())
            }
            Ok(put) if put.transfer_state == "ABORTED" => (Outcome::Aborted, put.completed_timestamp.clone()),
            Ok(put) => {
                tracing::debug!(tenant = %tenant.id, %transfer_id, state = %put.transfer_state, "transfer not final yet");
                return;
            }
            Err(error) if matches!(error.error_information.error_code.chars().next(), Some('3'..='5')) => {
                tracing::info!(
                    tenant = %tenant.id, %transfer_id, code = %error.error_information.error_code,
                    "the switch did not commit a reserved transfer; releasing its credit"
                );
                (Outcome::Aborted, None)
            }
            Err(error) => {
                tracing::warn!(
                    tenant = %tenant.id, %transfer_id, code = %error.error_information.error_code,
                    "the switch's answer on a reserved transfer says nothing of it; asking again later"
                );
                return;
            }
        };
        let completed = completed.unwrap_or_else(|| headers::timestamp(now_ms()));
        if let Err(error) = self.conclude(tenant, transfer_id, outcome, &completed).await {
            tracing::error!(tenant = %tenant.id, %transfer_id, ?error, "payee could not settle a reserved transfer");
        }
    }

    /// Books (`Committed`) or releases (`Aborted`) a transfer's credit and
    /// records it: the stored answer takes the final state, and the
    /// transfer is no longer pending. A transfer this node did not answer
    /// (the switch's word reached another node than the one that answered
    /// it) is passed on to the other nodes as well.
    async fn conclude(
        &self,
        tenant: &Tenant,
        transfer_id: Uuid,
        outcome: Outcome,
        completed: &str,
    ) -> Result<(), ErrorBody> {
        let key = Answers::key(Resource::Transfers, tenant, &transfer_id.to_string());
        let answered = self.answers.get(&key)?;
        let booked = matches!(
            &answered,
            Some(Answered { answer: Answer::Transfer(put), .. }) if put.transfer_state == "COMMITTED"
        );
        if booked && outcome == Outcome::Aborted {
            // This side answered COMMITTED and booked the credit, and the
            // switch aborted anyway (the fulfilment came too late). A booked
            // credit is not taken back automatically: operators reconcile
            // it. The switch is answered 200, so it stops resending.
            tracing::error!(
                tenant = %tenant.id, %transfer_id,
                "the switch aborted a transfer this payee had already credited; reconcile it with the AMS"
            );
            metrics::counter!("payhub_payee_reconciliation_total", "tenant" => tenant.id.to_string())
                .increment(1);
            return Ok(());
        }
        self.settle_holds(tenant, transfer_id, outcome).await.map_err(|error| {
            tracing::error!(tenant = %tenant.id, %transfer_id, %error, "payee could not settle a transfer");
            ErrorBody::new(codes::SERVER_ERROR, error.to_string())
        })?;
        if answered.is_none() {
            let word = TransfersPut {
                fulfilment: None,
                completed_timestamp: Some(completed.to_owned()),
                transfer_state: outcome.state().into(),
            };
            self.paid.settled_elsewhere(&tenant.id, transfer_id, word).await;
        }
        let paid_key = Answers::paid_request_key(&tenant.id, transfer_id);
        let paid = self.answers.kv.get(&paid_key).ok().flatten();
        if let Some(paid) = paid.and_then(|bytes| actors::command::decode::<PaidRequest>(&bytes).ok()) {
            if outcome == Outcome::Committed {
                self.paid.paid(&tenant.id, paid.request_id, transfer_id, paid.credited).await;
            }
        }
        let _turn = self.answers.stripe(&key).lock().await;
        let mut batch =
            vec![(Answers::pending_key(&tenant.id, &transfer_id.to_string()), None), (paid_key, None)];
        if let Some(mut answered) = self.answers.get(&key)? {
            if let Answer::Transfer(put) = &mut answered.answer {
                put.transfer_state = outcome.state().into();
                put.completed_timestamp = Some(completed.to_owned());
                batch.push((key, Some(actors::command::encode(&answered))));
            }
        }
        self.answers.write(batch).await
    }

    /// How soon a pending transfer past its expiration is asked after
    /// again, at first; each unanswered ask doubles it, up to
    /// [`PayeeService::QUERY_INTERVAL_MAX_MS`].
    pub const QUERY_INTERVAL_MS: u64 = 2_000;
    pub const QUERY_INTERVAL_MAX_MS: u64 = 300_000;

    /// Settles every pending transfer whose expiration has passed: one whose
    /// credit the AMS already booked or released (the switch's word reached
    /// another node of a cluster, which settled it) is recorded so; for the
    /// others the switch is asked (`GET /transfers/{id}`), backing off per
    /// transfer (see [`PayeeService::QUERY_INTERVAL_MS`]), and its answer
    /// comes back as `PUT /transfers/{id}` ([`PayeeService::settle`]).
    pub fn spawn_sweeper(&self, tenants: Arc<Tenants>) -> tokio::task::JoinHandle<()> {
        let payee = self.clone();
        tokio::spawn(async move {
            // Per pending transfer: when to ask next, and the interval after that.
            let mut asked: std::collections::HashMap<Vec<u8>, (u64, u64)> = std::collections::HashMap::new();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let started = std::time::Instant::now();
                let scanned = payee.answers.kv.scan_prefix(Answers::PENDING.as_bytes());
                metrics::histogram!("payhub_sweep_scan_seconds", "sweeper" => "payee")
                    .record(started.elapsed().as_secs_f64());
                let pending = match scanned {
                    Ok(pending) => pending,
                    Err(error) => {
                        tracing::error!(%error, "payee cannot scan its pending transfers");
                        continue;
                    }
                };
                let now = now_ms();
                asked.retain(|key, _| pending.iter().any(|(k, _)| k == key));
                for (key, value) in pending {
                    let Ok(record) = actors::command::decode::<Pending>(&value) else { continue };
                    let (next, interval) = asked.get(&key).copied().unwrap_or((0, Self::QUERY_INTERVAL_MS));
                    if record.expiration_ms > now || now < next {
                        continue;
                    }
                    asked.insert(
                        key.clone(),
                        (now + interval, (interval * 2).min(Self::QUERY_INTERVAL_MAX_MS)),
                    );
                    let name = String::from_utf8_lossy(&key[Answers::PENDING.len()..]).into_owned();
                    let Some((tenant, id)) = name.split_once('/') else { continue };
                    let tenant =
                        TenantId::try_from(tenant.to_owned()).ok().and_then(|t| tenants.get(&t).cloned());
                    let (Some(tenant), Ok(transfer_id)) = (tenant, Uuid::parse_str(id)) else { continue };
                    if !payee.settled_in_the_ams(&tenant, transfer_id).await {
                        payee.ask(&record, id).await;
                    }
                }
            }
        })
    }

    /// Whether the AMS already booked or released a pending transfer's
    /// credit; if so, it is recorded as settled here too.
    async fn settled_in_the_ams(&self, tenant: &Tenant, transfer_id: Uuid) -> bool {
        let outcome = match self.ams.hold_state(&tenant.id, transfer_id).await {
            Ok(Some(HoldState::Committed)) => Outcome::Committed,
            Ok(Some(HoldState::Released)) => Outcome::Aborted,
            Ok(_) => return false,
            Err(error) => {
                tracing::debug!(tenant = %tenant.id, %transfer_id, %error, "cannot read a pending credit's hold");
                return false;
            }
        };
        match self.conclude(tenant, transfer_id, outcome, &headers::timestamp(now_ms())).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(tenant = %tenant.id, %transfer_id, ?error, "cannot record a settled transfer");
                false
            }
        }
    }

    async fn ask(&self, pending: &Pending, id: &str) {
        let message: Message<'_, ()> = Message {
            method: Method::GET,
            path: format!("/transfers/{id}"),
            resource: "transfers",
            version: pending.version,
            source: &pending.fsp,
            destination: Some(&pending.payer),
            body: None,
        };
        metrics::counter!("payhub_payee_transfer_queries_total", "fsp" => pending.fsp.clone()).increment(1);
        tracing::info!(fsp = %pending.fsp, transfer = %id, "a reserved transfer expired unsettled; asking the switch");
        if let Err(error) = self.client.send(message).await {
            tracing::warn!(fsp = %pending.fsp, transfer = %id, %error, "cannot ask the switch about a transfer");
        }
    }
}

/// How the switch settled a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Aborted,
}

impl Outcome {
    fn state(self) -> &'static str {
        match self {
            Outcome::Committed => "COMMITTED",
            Outcome::Aborted => "ABORTED",
        }
    }
}
