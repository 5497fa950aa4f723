//! A Mojaloop switch simulator: routes FSPIOP messages between DFSPs so the
//! demo and the tests have a real counterpart over HTTP.
//!
//! It keeps an oracle (party -> DFSP) and an endpoint table (DFSP -> the base
//! URLs of the nodes serving it, tried in turn when one is unreachable),
//! forwards parties and quotes as they come, and, like the real switch,
//! is the authority on transfers: it records each transfer durably, decides
//! it (COMMITTED when the payee's fulfilment matches the condition before
//! expiry, ABORTED otherwise), tells the payer (`PUT`) and the payee (`PATCH`),
//! and answers `GET /transfers/{id}` from its record. Decisions and pending
//! notifications survive a restart; a sweeper resends what was not delivered
//! and aborts what expired.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

use actors::model::{Party, PartyIdType};
use storage::Kv;

use crate::fspiop::client::{FspiopClient, Message, RawMessage, SendError};
use crate::fspiop::codes;
use crate::fspiop::headers;
use crate::fspiop::ilp;
use crate::fspiop::inbound::{check_headers, parse_body, parse_uuid, Envelope, FspiopError, Kind};
use crate::fspiop::jws::{self, Signer};
use crate::fspiop::participants::ParticipantsPost;
use crate::fspiop::types::{ErrorBody, TransfersPatch, TransfersPost, TransfersPut};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Decision {
    Received,
    Committed,
    Aborted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TransferRecord {
    request: TransfersPost,
    expiration_ms: u64,
    decision: Decision,
    fulfilment: Option<String>,
    completed_ms: Option<u64>,
    error: Option<ErrorBody>,
    /// The payee answered RESERVED and must hear the outcome by PATCH.
    payee_must_be_told: bool,
    payer_told: bool,
    payee_told: bool,
    /// The transfer as the payer sent it, to pass on again unchanged (its
    /// signature covers the bytes); absent in records of earlier versions.
    #[serde(default)]
    received: Option<Received>,
}

/// A DFSP's message as the switch received it: what passing it on must
/// keep byte for byte, because its JWS signature covers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Received {
    /// The body (JSON text).
    body: String,
    /// `Date`, protected by the signature.
    date: Option<String>,
    /// `FSPIOP-Signature`, `FSPIOP-URI`, `FSPIOP-HTTP-Method`, when signed.
    signature: Vec<(String, String)>,
}

impl Received {
    fn new(headers: &HeaderMap, body: &Bytes) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let signature = [jws::SIGNATURE, jws::URI, jws::HTTP_METHOD]
            .into_iter()
            .filter_map(|name| text(name).map(|value| (name.to_owned(), value)))
            .collect();
        Received { body: String::from_utf8_lossy(body).into_owned(), date: text("date"), signature }
    }
}

/// What a forwarded message carries.
#[derive(Debug, Clone)]
enum Body {
    /// Nothing (a GET).
    Empty,
    /// A message of the switch's own: signed with its key, if it has one.
    Own(serde_json::Value),
    /// A DFSP's message, passed on as received.
    Received(Received),
}

impl Body {
    fn own(body: Option<serde_json::Value>) -> Body {
        body.map_or(Body::Empty, Body::Own)
    }
}

impl TransferRecord {
    fn settled(&self) -> bool {
        self.decision != Decision::Received
            && self.payer_told
            && (self.payee_told || !self.payee_must_be_told)
    }
}

/// Limits of the simulator.
#[derive(Debug, Clone, Copy)]
pub struct SwitchLimits {
    /// How often undelivered notifications are resent and expiries checked.
    pub sweep_interval_ms: u64,
    /// Deliver each message to a DFSP's next endpoint URL in turn (as a
    /// load balancer in front of its nodes would) instead of to the last
    /// that answered.
    pub spread: bool,
}

impl Default for SwitchLimits {
    fn default() -> Self {
        SwitchLimits { sweep_interval_ms: 1_000, spread: false }
    }
}

const LOCK_STRIPES: usize = 64;

struct Inner {
    kv: Kv,
    endpoints: BTreeMap<String, FspiopClient>,
    /// Serialises decisions on the same transfer.
    locks: Vec<Mutex<()>>,
    limits: SwitchLimits,
}

/// The switch simulator.
#[derive(Clone)]
pub struct Switch {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch").field("dfsps", &self.inner.endpoints.keys().collect::<Vec<_>>()).finish()
    }
}

/// The switch's own FSP id, the source of the errors it raises itself.
pub const SWITCH_FSP_ID: &str = "switch";

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

fn oracle_key(party: &Party) -> Vec<u8> {
    format!("oracle/{}/{}", party.id_type, party.identifier).into_bytes()
}

fn transfer_key(id: Uuid) -> Vec<u8> {
    format!("transfer/{id}").into_bytes()
}

/// The transfers not settled yet: `pending/{id}`, each empty.
const PENDING: &str = "pending/";

fn pending_key(id: Uuid) -> Vec<u8> {
    format!("{PENDING}{id}").into_bytes()
}

impl Switch {
    /// `endpoints`: each DFSP's FSPIOP base URLs, one per node serving it; a
    /// message that cannot be delivered to one is sent to the next.
    /// `signer`: the switch's JWS key, for the messages it sends as itself
    /// (a DFSP's messages are passed on with the DFSP's signature).
    pub fn new(
        kv: Kv,
        http: reqwest::Client,
        endpoints: BTreeMap<String, Vec<String>>,
        signer: Option<Signer>,
        limits: SwitchLimits,
    ) -> Result<Self, storage::Error> {
        // The sweeper scans the pending transfers every second.
        let kv = kv.mirroring(PENDING.as_bytes())?;
        let signers: Arc<BTreeMap<String, Signer>> =
            Arc::new(signer.into_iter().map(|signer| (SWITCH_FSP_ID.to_owned(), signer)).collect());
        let endpoints = endpoints
            .into_iter()
            .map(|(fsp, urls)| {
                let client = FspiopClient::with_http_urls(http.clone(), &urls).spreading(limits.spread);
                (fsp, client.with_signers(signers.clone()))
            })
            .collect();
        let locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Ok(Switch { inner: Arc::new(Inner { kv, endpoints, locks, limits }) })
    }

    /// Registers a party with the oracle (what `POST /participants` does in a
    /// real scheme).
    pub fn register_party(&self, party: &Party, fsp_id: &str) -> Result<(), storage::Error> {
        self.inner.kv.write(vec![(oracle_key(party), Some(fsp_id.as_bytes().to_vec()))])
    }

    fn deregister_party(&self, party: &Party) -> Result<(), storage::Error> {
        self.inner.kv.write(vec![(oracle_key(party), None)])
    }

    fn oracle(&self, party: &Party) -> Option<String> {
        match self.inner.kv.get(&oracle_key(party)) {
            Ok(found) => found.map(|b| String::from_utf8_lossy(&b).into_owned()),
            Err(error) => {
                tracing::error!(%error, "switch oracle unavailable");
                None
            }
        }
    }

    fn lock(&self, id: Uuid) -> &Mutex<()> {
        let stripe = usize::from(id.as_bytes()[15]) % LOCK_STRIPES;
        &self.inner.locks[stripe]
    }

    fn read(&self, id: Uuid) -> Option<TransferRecord> {
        let bytes = self.inner.kv.get(&transfer_key(id)).ok()??;
        actors::command::decode(&bytes).ok()
    }

    /// Records `record` (visible at once; on disk after `durable`, which
    /// callers await outside the transfer's lock: group commit).
    fn write(&self, id: Uuid, record: &TransferRecord) -> Result<(), storage::Error> {
        let pending = if record.settled() { None } else { Some(Vec::new()) };
        self.inner.kv.apply(vec![
            (transfer_key(id), Some(actors::command::encode(record))),
            (pending_key(id), pending),
        ])
    }

    fn endpoint(&self, fsp: &str) -> Result<&FspiopClient, FspiopError> {
        self.inner.endpoints.get(fsp).ok_or_else(|| {
            FspiopError::new(
                StatusCode::BAD_REQUEST,
                codes::DESTINATION_FSP_ERROR,
                format!("DFSP {fsp:?} is not known to the switch"),
            )
        })
    }

    /// Sends `body` to `destination` as `source` would.
    async fn forward(
        &self,
        destination: &str,
        method: Method,
        path: String,
        resource: &str,
        source: &str,
        body: &Body,
    ) -> Result<(), SendError> {
        let client =
            self.endpoint(destination).map_err(|e| SendError::Rejected { status: 400, body: e.body })?;
        // The simulator speaks one version; a real switch passes the
        // sender's headers through.
        let version = crate::fspiop::headers::VERSION;
        let destination = Some(destination);
        match body {
            Body::Empty => {
                let message =
                    Message::<()> { method, path, resource, version, source, destination, body: None };
                client.send(message).await
            }
            Body::Own(body) => {
                let message =
                    Message { method, path, resource, version, source, destination, body: Some(body) };
                client.send(message).await
            }
            Body::Received(received) => {
                let message = RawMessage {
                    method,
                    path,
                    resource,
                    version,
                    source,
                    destination,
                    date: received.date.clone().unwrap_or_else(crate::fspiop::headers::date_now),
                    headers: received
                        .signature
                        .iter()
                        .filter_map(|(name, value)| {
                            [jws::SIGNATURE, jws::URI, jws::HTTP_METHOD]
                                .into_iter()
                                .find(|known| known == name)
                                .map(|known| (known, value.clone()))
                        })
                        .collect(),
                    body: Some(received.body.clone().into_bytes()),
                };
                client.send_raw(message).await
            }
        }
    }

    /// The simulator's routes, under `/switch`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/switch/parties/{id_type}/{id}", passed_put("parties").get(get_party))
            .route("/switch/parties/{id_type}/{id}/error", passed_put("parties"))
            .route("/switch/parties/{id_type}/{id}/{sub_id}", passed_put("parties").get(get_sub_party))
            .route("/switch/parties/{id_type}/{id}/{sub_id}/error", passed_put("parties"))
            .route("/switch/quotes", passed_post("quotes"))
            .route("/switch/quotes/{id}", passed_put("quotes"))
            .route("/switch/quotes/{id}/error", passed_put("quotes"))
            .route("/switch/transfers", post(post_transfer))
            .route("/switch/transfers/{id}", put(put_transfer).get(get_transfer))
            .route("/switch/transfers/{id}/error", put(put_transfer_error))
            .route(
                "/switch/participants/{id_type}/{id}",
                post(post_participant).get(get_participant).delete(delete_participant),
            )
            .route("/switch/transactions/{id}", passed_put("transactions").merge(passed_get("transactions")))
            .route("/switch/transactions/{id}/error", passed_put("transactions"))
            // Requests to pay, their authorizations and bulks pass through as
            // they come; the simulator keeps no state of its own for them.
            .route("/switch/transactionRequests", passed_post("transactionRequests"))
            .route(
                "/switch/transactionRequests/{id}",
                passed_put("transactionRequests").merge(passed_get("transactionRequests")),
            )
            .route("/switch/transactionRequests/{id}/error", passed_put("transactionRequests"))
            .route(
                "/switch/authorizations/{id}",
                passed_put("authorizations").merge(passed_get("authorizations")),
            )
            .route("/switch/authorizations/{id}/error", passed_put("authorizations"))
            .route("/switch/bulkQuotes", passed_post("bulkQuotes"))
            .route("/switch/bulkQuotes/{id}", passed_put("bulkQuotes"))
            .route("/switch/bulkQuotes/{id}/error", passed_put("bulkQuotes"))
            .route("/switch/bulkTransfers", passed_post("bulkTransfers"))
            .route("/switch/bulkTransfers/{id}", passed_put("bulkTransfers"))
            .route("/switch/bulkTransfers/{id}/error", passed_put("bulkTransfers"))
            .with_state(self.clone())
    }

    /// Resends undelivered outcomes, re-forwards undecided transfers and
    /// aborts expired ones, now and then every `sweep_interval_ms`.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let switch = self.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                switch.sweep(first).await;
                first = false;
                tokio::time::sleep(Duration::from_millis(switch.inner.limits.sweep_interval_ms)).await;
            }
        })
    }

    async fn sweep(&self, after_restart: bool) {
        let started = std::time::Instant::now();
        let scanned = self.inner.kv.scan_prefix(PENDING.as_bytes());
        metrics::histogram!("payhub_sweep_scan_seconds", "sweeper" => "switch")
            .record(started.elapsed().as_secs_f64());
        let pending = match scanned {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "switch cannot scan pending transfers");
                return;
            }
        };
        for (key, _) in pending {
            let Some(id) =
                std::str::from_utf8(&key[PENDING.len()..]).ok().and_then(|s| Uuid::parse_str(s).ok())
            else {
                continue;
            };
            let Some(record) = self.read(id) else { continue };
            match record.decision {
                Decision::Received if record.expiration_ms <= now_ms() => {
                    let error = ErrorBody::new(
                        codes::TRANSFER_EXPIRED,
                        "transfer expired before the payee fulfilled it",
                    );
                    self.decide(id, Err(error), true).await;
                }
                Decision::Received if after_restart => {
                    // The payee may never have received it: it answers a
                    // resent transfer idempotently.
                    let body = match &record.received {
                        Some(received) => Body::Received(received.clone()),
                        None => Body::own(serde_json::to_value(&record.request).ok()),
                    };
                    let request = &record.request;
                    let _ = self
                        .forward(
                            &request.payee_fsp,
                            Method::POST,
                            "/transfers".into(),
                            "transfers",
                            &request.payer_fsp,
                            &body,
                        )
                        .await;
                }
                Decision::Received => {}
                _ => self.notify(id).await,
            }
        }
    }

    /// Records the outcome of a transfer that is still undecided, then tells
    /// both sides. `tell_payee`: the payee may hold a pending credit.
    async fn decide(&self, id: Uuid, outcome: Result<String, ErrorBody>, tell_payee: bool) {
        {
            let _guard = self.lock(id).lock().await;
            let Some(mut record) = self.read(id) else { return };
            if record.decision != Decision::Received {
                return;
            }
            match outcome {
                Ok(fulfilment) => {
                    record.decision = Decision::Committed;
                    record.fulfilment = Some(fulfilment);
                }
                Err(error) => {
                    record.decision = Decision::Aborted;
                    record.error = Some(error);
                }
            }
            record.completed_ms = Some(now_ms());
            record.payee_must_be_told = record.payee_must_be_told || tell_payee;
            if let Err(error) = self.write(id, &record) {
                tracing::error!(transfer = %id, %error, "switch cannot record a decision");
                return;
            }
        }
        // Nobody hears of a decision before it is on disk.
        if let Err(error) = self.inner.kv.durable().await {
            tracing::error!(transfer = %id, %error, "switch cannot record a decision");
            return;
        }
        self.notify(id).await;
    }

    /// Delivers a decided transfer's outcome to whichever side has not had it.
    async fn notify(&self, id: Uuid) {
        let Some(record) = self.read(id) else { return };
        let request = &record.request;
        let mut payer_told = record.payer_told;
        let mut payee_told = record.payee_told;
        if !payer_told {
            let delivered = match (&record.decision, &record.error) {
                (Decision::Committed, _) => {
                    let body = TransfersPut {
                        fulfilment: record.fulfilment.clone(),
                        completed_timestamp: record.completed_ms.map(headers::timestamp),
                        transfer_state: "COMMITTED".into(),
                    };
                    let body = serde_json::to_value(body).ok();
                    self.forward(
                        &request.payer_fsp,
                        Method::PUT,
                        format!("/transfers/{id}"),
                        "transfers",
                        SWITCH_FSP_ID,
                        &Body::own(body),
                    )
                    .await
                }
                (_, error) => {
                    let error = error
                        .clone()
                        .unwrap_or_else(|| ErrorBody::new(codes::SERVER_ERROR, "transfer aborted"));
                    let body = serde_json::to_value(error).ok();
                    self.forward(
                        &request.payer_fsp,
                        Method::PUT,
                        format!("/transfers/{id}/error"),
                        "transfers",
                        SWITCH_FSP_ID,
                        &Body::own(body),
                    )
                    .await
                }
            };
            payer_told = delivered.is_ok();
        }
        if record.payee_must_be_told && !payee_told {
            let state = if record.decision == Decision::Committed { "COMMITTED" } else { "ABORTED" };
            let body = TransfersPatch {
                completed_timestamp: headers::timestamp(record.completed_ms.unwrap_or_else(now_ms)),
                transfer_state: state.into(),
            };
            let body = serde_json::to_value(body).ok();
            payee_told = self
                .forward(
                    &request.payee_fsp,
                    Method::PATCH,
                    format!("/transfers/{id}"),
                    "transfers",
                    SWITCH_FSP_ID,
                    &Body::own(body),
                )
                .await
                .is_ok();
        }
        if payer_told != record.payer_told || payee_told != record.payee_told {
            let _guard = self.lock(id).lock().await;
            if let Some(mut latest) = self.read(id) {
                latest.payer_told |= payer_told;
                latest.payee_told |= payee_told;
                if let Err(error) = self.write(id, &latest) {
                    tracing::error!(transfer = %id, %error, "switch cannot record a delivery");
                }
            }
        }
    }
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// A DFSP's message to pass on, once its body is known to be JSON.
fn received(headers: &HeaderMap, body: &Bytes) -> Result<Body, FspiopError> {
    parse_body::<serde_json::Value>(body)?;
    Ok(Body::Received(Received::new(headers, body)))
}

fn destination(envelope: &Envelope) -> Result<String, FspiopError> {
    envelope.destination.clone().ok_or_else(|| {
        FspiopError::new(
            StatusCode::BAD_REQUEST,
            codes::MISSING_ELEMENT,
            "FSPIOP-Destination header is missing",
        )
    })
}

/// A DFSP's callback (`PUT`) of `resource`, passed on as received to its
/// `FSPIOP-Destination`.
fn pass_callback(
    switch: &Switch,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
    resource: &'static str,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(headers, resource, Kind::Callback)?;
    let to = destination(&envelope)?;
    switch.endpoint(&to)?;
    let path = uri.path().trim_start_matches("/switch").to_owned();
    forward_later(switch, to, Method::PUT, path, resource, envelope.source, received(headers, body)?);
    Ok(accepted())
}

/// Forwards in the background after answering 202, as the switch does.
fn forward_later(
    switch: &Switch,
    to: String,
    method: Method,
    path: String,
    resource: &'static str,
    source: String,
    body: Body,
) {
    let switch = switch.clone();
    tokio::spawn(async move {
        if let Err(error) = switch.forward(&to, method, path, resource, &source, &body).await {
            tracing::warn!(%error, to, resource, "switch could not forward a message");
        }
    });
}

async fn get_party(
    State(switch): State<Switch>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    lookup(&switch, &headers, &id_type, &id, None)
}

async fn get_sub_party(
    State(switch): State<Switch>,
    Path((id_type, id, sub_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    lookup(&switch, &headers, &id_type, &id, Some(&sub_id))
}

/// Forwards a party lookup to the DFSP the oracle names for the identifier
/// (a sub-id is the DFSP's business: the oracle maps identifiers).
fn lookup(
    switch: &Switch,
    headers: &HeaderMap,
    id_type: &str,
    id: &str,
    sub_id: Option<&str>,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(headers, "parties", Kind::Request)?;
    let named = match sub_id {
        Some(sub_id) => format!("{id_type}/{id}/{sub_id}"),
        None => format!("{id_type}/{id}"),
    };
    let path = format!("/parties/{named}");
    let party = id_type.parse::<PartyIdType>().ok().and_then(|t| Party::new(t, id).ok());
    let switch = switch.clone();
    match party.and_then(|p| switch.oracle(&p)) {
        Some(fsp) => forward_later(&switch, fsp, Method::GET, path, "parties", envelope.source, Body::Empty),
        None => {
            let error = ErrorBody::new(codes::PARTY_NOT_FOUND, format!("no DFSP serves party {named}"));
            let body = serde_json::to_value(error).ok();
            forward_later(
                &switch,
                envelope.source,
                Method::PUT,
                format!("{path}/error"),
                "parties",
                SWITCH_FSP_ID.into(),
                Body::own(body),
            );
        }
    }
    Ok(accepted())
}

/// The route of a DFSP's callbacks (`PUT`) of `resource`: [`pass_callback`].
fn passed_put(resource: &'static str) -> MethodRouter<Switch> {
    put(
        move |State(switch): State<Switch>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| async move {
            pass_callback(&switch, &uri, &headers, &body, resource)
        },
    )
}

/// The route of a DFSP's requests (`POST`) of `resource`: [`pass_request`].
fn passed_post(resource: &'static str) -> MethodRouter<Switch> {
    post(move |State(switch): State<Switch>, headers: HeaderMap, body: Bytes| async move {
        pass_request(&switch, &headers, &body, resource)
    })
}

/// The route of a DFSP's `GET`s of `resource`: [`pass_get`].
fn passed_get(resource: &'static str) -> MethodRouter<Switch> {
    get(move |State(switch): State<Switch>, uri: axum::http::Uri, headers: HeaderMap| async move {
        pass_get(&switch, &uri, &headers, resource)
    })
}

/// A DFSP's request (`POST`) of `resource`, passed on as received to its
/// `FSPIOP-Destination`.
fn pass_request(
    switch: &Switch,
    headers: &HeaderMap,
    body: &Bytes,
    resource: &'static str,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(headers, resource, Kind::Request)?;
    let to = destination(&envelope)?;
    switch.endpoint(&to)?;
    let path = format!("/{resource}");
    forward_later(switch, to, Method::POST, path, resource, envelope.source, received(headers, body)?);
    Ok(accepted())
}

/// The oracle's answer to a DFSP's `/participants` request, sent back to
/// it: `PUT /participants/{Type}/{ID}` naming `fsp`, or its error.
fn oracle_answer(switch: &Switch, to: String, path: String, answer: Result<String, ErrorBody>) {
    let (path, body) = match answer {
        Ok(fsp) => (path, serde_json::json!({ "fspId": fsp })),
        Err(error) => (format!("{path}/error"), serde_json::to_value(error).unwrap_or_default()),
    };
    forward_later(switch, to, Method::PUT, path, "participants", SWITCH_FSP_ID.into(), Body::Own(body));
}

fn oracle_party(id_type: &str, id: &str) -> Result<Party, ErrorBody> {
    let id_type: PartyIdType = id_type.parse().map_err(|e: actors::model::ModelError| {
        ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, e.to_string())
    })?;
    Party::new(id_type, id).map_err(|e| ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, e.to_string()))
}

/// `POST /participants/{Type}/{ID}`: registers the party as its sender's,
/// unless another DFSP has it (3003).
async fn post_participant(
    State(switch): State<Switch>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(&headers, "participants", Kind::Request)?;
    let request: ParticipantsPost = parse_body(&body)?;
    let path = format!("/participants/{id_type}/{id}");
    let answer = oracle_party(&id_type, &id).and_then(|party| {
        if request.fsp_id != envelope.source {
            return Err(ErrorBody::new(
                codes::GENERIC_VALIDATION_ERROR,
                "a DFSP registers parties for itself only",
            ));
        }
        match switch.oracle(&party) {
            Some(owner) if owner != envelope.source => {
                Err(ErrorBody::new(codes::ADD_PARTY_ERROR, format!("{party} is registered to another DFSP")))
            }
            _ => switch
                .register_party(&party, &envelope.source)
                .map(|()| envelope.source.clone())
                .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string())),
        }
    });
    oracle_answer(&switch, envelope.source, path, answer);
    Ok(accepted())
}

/// `GET /participants/{Type}/{ID}`: which DFSP serves the party (3204 none).
async fn get_participant(
    State(switch): State<Switch>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(&headers, "participants", Kind::Request)?;
    let path = format!("/participants/{id_type}/{id}");
    let answer = oracle_party(&id_type, &id).and_then(|party| {
        switch
            .oracle(&party)
            .ok_or_else(|| ErrorBody::new(codes::PARTY_NOT_FOUND, format!("no DFSP serves {party}")))
    });
    oracle_answer(&switch, envelope.source, path, answer);
    Ok(accepted())
}

/// `DELETE /participants/{Type}/{ID}`: removes its sender's registration
/// (3204 when the party is not registered to it).
async fn delete_participant(
    State(switch): State<Switch>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(&headers, "participants", Kind::Request)?;
    let path = format!("/participants/{id_type}/{id}");
    let answer = oracle_party(&id_type, &id).and_then(|party| match switch.oracle(&party) {
        Some(owner) if owner == envelope.source => switch
            .deregister_party(&party)
            .map(|()| owner)
            .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string())),
        _ => Err(ErrorBody::new(
            codes::PARTY_NOT_FOUND,
            format!("{party} is not registered to {}", envelope.source),
        )),
    });
    oracle_answer(&switch, envelope.source, path, answer);
    Ok(accepted())
}

/// A DFSP's `GET` of `resource` (its query included), passed on to its
/// `FSPIOP-Destination`.
fn pass_get(
    switch: &Switch,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    resource: &'static str,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(headers, resource, Kind::Request)?;
    let to = destination(&envelope)?;
    switch.endpoint(&to)?;
    let path =
        uri.path_and_query().map(|p| p.as_str()).unwrap_or_default().trim_start_matches("/switch").to_owned();
    forward_later(switch, to, Method::GET, path, resource, envelope.source, Body::Empty);
    Ok(accepted())
}

async fn post_transfer(
    State(switch): State<Switch>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(&headers, "transfers", Kind::Request)?;
    let request: TransfersPost = parse_body(&body)?;
    let id = parse_uuid(&request.transfer_id, "transferId")?;
    let invalid =
        |m: &str| FspiopError::new(StatusCode::BAD_REQUEST, codes::GENERIC_VALIDATION_ERROR, m.to_owned());
    if envelope.source != request.payer_fsp {
        return Err(invalid("FSPIOP-Source must be the payerFsp"));
    }
    switch.endpoint(&request.payee_fsp)?;
    let expiration_ms = headers::parse_timestamp(&request.expiration)
        .ok_or_else(|| invalid("expiration is not a date-time"))?;
    let fresh = {
        let _guard = switch.lock(id).lock().await;
        // Duplicates first, as Mojaloop's prepare handler does: a resent
        // transfer (say, by a payer whose leader failed over) must learn the
        // outcome of the first, even once it has expired.
        match switch.read(id) {
            Some(existing) if existing.request != request => {
                return Err(FspiopError::new(
                    StatusCode::BAD_REQUEST,
                    codes::GENERIC_VALIDATION_ERROR,
                    "transferId reused with a different transfer",
                ));
            }
            // A resent transfer: its outcome is resent once it is decided.
            Some(_) => false,
            None if expiration_ms <= now_ms() => {
                return Err(FspiopError::new(
                    StatusCode::BAD_REQUEST,
                    codes::TRANSFER_EXPIRED,
                    "transfer expired on arrival",
                ));
            }
            None => {
                let record = TransferRecord {
                    request: request.clone(),
                    expiration_ms,
                    decision: Decision::Received,
                    fulfilment: None,
                    completed_ms: None,
                    error: None,
                    payee_must_be_told: false,
                    payer_told: false,
                    payee_told: false,
                    received: Some(Received::new(&headers, &body)),
                };
                switch.write(id, &record).map_err(|e| {
                    FspiopError::new(StatusCode::SERVICE_UNAVAILABLE, codes::SERVER_ERROR, e.to_string())
                })?;
                true
            }
        }
    };
    // Accepted only once on disk (a duplicate too: the first may not be yet).
    switch
        .inner
        .kv
        .durable()
        .await
        .map_err(|e| FspiopError::new(StatusCode::SERVICE_UNAVAILABLE, codes::SERVER_ERROR, e.to_string()))?;
    if !fresh {
        return Ok(accepted());
    }
    let to = request.payee_fsp.clone();
    forward_later(
        &switch,
        to,
        Method::POST,
        "/transfers".into(),
        "transfers",
        envelope.source,
        received(&headers, &body)?,
    );
    Ok(accepted())
}

async fn put_transfer(
    State(switch): State<Switch>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    check_headers(&headers, "transfers", Kind::Callback)?;
    let id = parse_uuid(&id, "ID")?;
    let answer: TransfersPut = parse_body(&body)?;
    let Some(record) = switch.read(id) else {
        return Err(FspiopError::new(
            StatusCode::NOT_FOUND,
            codes::TRANSFER_ID_NOT_FOUND,
            format!("transfer {id} not found"),
        ));
    };
    let reserved = answer.transfer_state == "RESERVED";
    let outcome = match answer.fulfilment {
        _ if record.expiration_ms <= now_ms() => {
            Err(ErrorBody::new(codes::TRANSFER_EXPIRED, "payee fulfilled the transfer after it expired"))
        }
        Some(fulfilment) if ilp::fulfilment_matches(&fulfilment, &record.request.condition) => Ok(fulfilment),
        _ => Err(ErrorBody::new(
            codes::INVALID_FULFILMENT,
            "fulfilment does not match the transfer's condition",
        )),
    };
    // A payee that answered RESERVED holds a pending credit; on an abort it
    // must hear of it too.
    let tell_payee = reserved || outcome.is_err();
    let switch = switch.clone();
    tokio::spawn(async move { switch.decide(id, outcome, tell_payee).await });
    Ok(accepted())
}

async fn put_transfer_error(
    State(switch): State<Switch>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    check_headers(&headers, "transfers", Kind::Callback)?;
    let id = parse_uuid(&id, "ID")?;
    let error: ErrorBody = parse_body(&body)?;
    let switch = switch.clone();
    tokio::spawn(async move { switch.decide(id, Err(error), false).await });
    Ok(accepted())
}

async fn get_transfer(
    State(switch): State<Switch>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let envelope = check_headers(&headers, "transfers", Kind::Request)?;
    let id = parse_uuid(&id, "ID")?;
    let to = envelope.source;
    match switch.read(id) {
        None => {
            let body = serde_json::to_value(ErrorBody::new(
                codes::TRANSFER_ID_NOT_FOUND,
                format!("transfer {id} not found"),
            ))
            .ok();
            forward_later(
                &switch,
                to,
                Method::PUT,
                format!("/transfers/{id}/error"),
                "transfers",
                SWITCH_FSP_ID.into(),
                Body::own(body),
            );
        }
        Some(record) => {
            if record.request.payer_fsp != to && record.request.payee_fsp != to {
                return Err(FspiopError::new(
                    StatusCode::FORBIDDEN,
                    codes::GENERIC_VALIDATION_ERROR,
                    "only the transfer's DFSPs may query it",
                ));
            }
            let (path, body) = match record.decision {
                Decision::Aborted => (
                    format!("/transfers/{id}/error"),
                    serde_json::to_value(
                        record
                            .error
                            .unwrap_or_else(|| ErrorBody::new(codes::SERVER_ERROR, "transfer aborted")),
                    )
                    .ok(),
                ),
                decision => (
                    format!("/transfers/{id}"),
                    serde_json::to_value(TransfersPut {
                        fulfilment: record.fulfilment,
                        completed_timestamp: record.completed_ms.map(headers::timestamp),
                        transfer_state: if decision == Decision::Committed {
                            "COMMITTED"
                        } else {
                            "RECEIVED"
                        }
                        .into(),
                    })
                    .ok(),
                ),
            };
            forward_later(&switch, to, Method::PUT, path, "transfers", SWITCH_FSP_ID.into(), Body::own(body));
        }
    }
    Ok(accepted())
}
