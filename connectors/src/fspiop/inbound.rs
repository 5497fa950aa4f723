//! The inbound FSPIOP server of the hub's DFSPs: `/fspiop/{tenant}/...`.
//!
//! Every message is validated synchronously (headers, then body) and answered
//! 202 before any work; invalid ones get an FSPIOP error body and change
//! nothing. Callbacks for the payer side go to [`PayerCallbacks`]; requests to
//! the payee side go to [`super::payee::PayeeService`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use actors::model::{Amount, Party, PartyIdType, TenantId};

use super::codes;
use super::headers::{self, ApiVersion, MediaTypeError};
use super::jws::Verifier;
use super::participants::{Participants, ParticipantsPut};
use super::payee::PayeeService;
use super::schema;
use super::transactions::TransactionQueries;
use super::types::{
    AuthorizationsPut, BulkQuotesPost, BulkTransfersPost, ErrorBody, PartiesPut, QuotesPost, QuotesPut,
    TransactionRequestsPost, TransactionRequestsPut, TransfersPatch, TransfersPost, TransfersPut,
};
use crate::tenants::{Tenant, Tenants};

/// An FSPIOP error answered synchronously.
#[derive(Debug, Clone)]
pub struct FspiopError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl FspiopError {
    pub fn new(status: StatusCode, code: &str, description: impl Into<String>) -> Self {
        FspiopError { status, body: ErrorBody::new(code, description) }
    }
}

impl IntoResponse for FspiopError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// What an inbound message's headers say.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub source: String,
    pub destination: Option<String>,
    /// The API version of the message: for a request, the one its `Accept`
    /// negotiated (its callback is sent in it); for a callback, its
    /// `Content-Type`'s.
    pub version: ApiVersion,
}

/// Whether an inbound message starts an exchange (GET, POST: it carries
/// `Accept`) or answers one (PUT, PATCH: it must not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Callback,
}

fn media_type_error(header: &str, error: MediaTypeError) -> FspiopError {
    match error {
        MediaTypeError::Missing => FspiopError::new(
            StatusCode::BAD_REQUEST,
            codes::MISSING_ELEMENT,
            format!("{header} header is missing"),
        ),
        MediaTypeError::Malformed(problem) => {
            FspiopError::new(StatusCode::BAD_REQUEST, codes::MALFORMED_SYNTAX, problem)
        }
        MediaTypeError::Unsupported(problem) => FspiopError {
            status: StatusCode::NOT_ACCEPTABLE,
            body: ErrorBody::unacceptable_version(format!(
                "{problem}; see the extension list for the supported versions"
            )),
        },
    }
}

/// Checks the FSPIOP headers of an inbound message (API Definition 3.2.2):
/// `Content-Type` of the resource in a version payhub speaks, `Accept` on a
/// request (which negotiates its callback's version), `Date` and
/// `FSPIOP-Source`.
pub fn check_headers(headers: &HeaderMap, resource: &str, kind: Kind) -> Result<Envelope, FspiopError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_version = headers::check_content_type(text("content-type").as_deref(), resource)
        .map_err(|e| media_type_error("Content-Type", e))?;
    let version = match kind {
        Kind::Request => headers::negotiate(text("accept").as_deref(), resource)
            .map_err(|e| media_type_error("Accept", e))?,
        Kind::Callback => content_version,
    };
    match text("date") {
        None => {
            return Err(FspiopError::new(
                StatusCode::BAD_REQUEST,
                codes::MISSING_ELEMENT,
                "Date header is missing",
            ))
        }
        Some(date) if httpdate::parse_http_date(&date).is_err() => {
            return Err(FspiopError::new(
                StatusCode::BAD_REQUEST,
                codes::MALFORMED_SYNTAX,
                format!("Date header {date:?} is not an HTTP date (RFC 7231)"),
            ))
        }
        Some(_) => {}
    }
    let Some(source) = text(headers::SOURCE).filter(|s| !s.is_empty()) else {
        return Err(FspiopError::new(
            StatusCode::BAD_REQUEST,
            codes::MISSING_ELEMENT,
            "FSPIOP-Source header is missing",
        ));
    };
    Ok(Envelope { source, destination: text(headers::DESTINATION), version })
}

/// Parses a JSON body into an FSPIOP message, with the 31xx code that fits.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FspiopError> {
    serde_json::from_slice(bytes).map_err(|error| {
        let message = error.to_string();
        if error.is_syntax() || error.is_eof() {
            FspiopError::new(
                StatusCode::BAD_REQUEST,
                codes::MALFORMED_SYNTAX,
                format!("malformed JSON: {message}"),
            )
        } else if message.starts_with("missing field") {
            FspiopError::new(StatusCode::BAD_REQUEST, codes::MISSING_ELEMENT, message)
        } else {
            FspiopError::new(StatusCode::BAD_REQUEST, codes::GENERIC_VALIDATION_ERROR, message)
        }
    })
}

/// Parses an inbound message and validates it against its FSPIOP v1.1
/// definition ([`schema`]) before anything is done with it: 3101 for
/// malformed JSON, 3102 for a missing mandatory element and 3100 for an
/// invalid one, naming it. Answers the typed message and the body as it
/// came (with the elements the typed message does not keep).
pub fn parse_checked<T: DeserializeOwned>(
    bytes: &[u8],
    message: schema::Message,
) -> Result<(T, serde_json::Value), FspiopError> {
    let raw: serde_json::Value = parse_body(bytes)?;
    schema::check(message, &raw).map_err(|violation| {
        FspiopError::new(StatusCode::BAD_REQUEST, violation.code, violation.to_string())
    })?;
    let typed = T::deserialize(&raw).map_err(|error| {
        FspiopError::new(StatusCode::BAD_REQUEST, codes::GENERIC_VALIDATION_ERROR, error.to_string())
    })?;
    Ok((typed, raw))
}

pub fn parse_uuid(value: &str, field: &str) -> Result<Uuid, FspiopError> {
    Uuid::parse_str(value).map_err(|_| {
        FspiopError::new(
            StatusCode::BAD_REQUEST,
            codes::GENERIC_VALIDATION_ERROR,
            format!("{field} must be a UUID"),
        )
    })
}

/// Receives the answers to the requests the tenants' flows send.
#[async_trait::async_trait]
pub trait PayerCallbacks: Send + Sync + 'static {
    /// The answer to a lookup of `party` (with its sub-id, if it has one).
    async fn party(&self, tenant: &TenantId, party: &Party, result: Result<PartiesPut, ErrorBody>);
    /// The answer to a quote request, from `source` (its `FSPIOP-Source`:
    /// the payee's DFSP).
    async fn quote(
        &self,
        tenant: &TenantId,
        source: &str,
        quote_id: Uuid,
        result: Result<QuotesPut, ErrorBody>,
    );
    async fn transfer(&self, tenant: &TenantId, transfer_id: Uuid, result: Result<TransfersPut, ErrorBody>);
    /// Where a request to pay the tenant sent stands, as the payer's DFSP
    /// says (or its refusal).
    async fn transaction_request(
        &self,
        tenant: &TenantId,
        request_id: Uuid,
        result: Result<TransactionRequestsPut, ErrorBody>,
    );
    /// The payer's DFSP asks that its customer enter a one-time password at
    /// the device of the tenant's customer who sent request to pay
    /// `request_id` (`GET /authorizations/{ID}`). An error is sent back as
    /// the request's error callback: an unknown request, one that asked for
    /// no password, one that is over.
    async fn authorization_asked(
        &self,
        tenant: &TenantId,
        request_id: Uuid,
        retries_left: u32,
        amount: Amount,
    ) -> Result<(), ErrorBody>;
}

/// Receives payees' requests to be paid (`POST /transactionRequests`),
/// which the tenant's payers approve or reject, and answers where one
/// stands (`GET /transactionRequests/{ID}`). Each answer is a callback.
#[async_trait::async_trait]
pub trait RequestsToPay: Send + Sync + 'static {
    async fn request(&self, tenant: &Tenant, envelope: &Envelope, request: TransactionRequestsPost);
    async fn state(&self, tenant: &Tenant, envelope: &Envelope, id: Uuid);
    /// What the payer entered at the payee's device for request `id`, as
    /// the payee's DFSP reports it (`PUT /authorizations/{ID}`), or its
    /// error.
    async fn authorization(&self, tenant: &Tenant, id: Uuid, result: Result<AuthorizationsPut, ErrorBody>);
}

/// Everything the inbound server needs.
pub struct Inbound {
    pub tenants: Arc<Tenants>,
    pub payee: PayeeService,
    pub payer: Arc<dyn PayerCallbacks>,
    /// The payer side of requests to pay.
    pub requests: Arc<dyn RequestsToPay>,
    /// The tenants' requests to the oracle, waiting for its answers.
    pub participants: Participants,
    /// The tenants' questions to payee DFSPs about transactions.
    pub transactions: TransactionQueries,
    /// The peers' JWS public keys, when inbound signatures are verified.
    pub verifiers: Option<Arc<Verifiers>>,
}

/// The JWS public keys of the DFSPs (and the switch) that send to this
/// hub, by FSP id.
#[derive(Debug, Default)]
pub struct Verifiers {
    keys: BTreeMap<String, Verifier>,
}

impl Verifiers {
    pub fn new(keys: BTreeMap<String, Verifier>) -> Self {
        Verifiers { keys }
    }

    /// Verifies a message's signature by its source's key: 3105 when it
    /// does not verify, is missing, or the source has no key here.
    pub fn verify(&self, source: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), FspiopError> {
        let invalid = |reason: String| {
            FspiopError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_SIGNATURE,
                format!("Invalid signature: {reason}"),
            )
        };
        let Some(key) = self.keys.get(source) else {
            return Err(invalid(format!("no public key of FSPIOP-Source {source:?} is configured")));
        };
        key.verify(headers, body).map_err(|error| {
            metrics::counter!("payhub_fspiop_signature_refusals_total", "source" => source.to_owned())
                .increment(1);
            invalid(error.to_string())
        })
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

type Shared = Arc<Inbound>;

/// The most bytes of headers a message may have (API Definition 3.2.1).
pub const HEADER_BYTES_MAX: usize = 65_536;
/// The most bytes of body a message may have (API Definition 3.2.2,
/// `Content-Length`).
pub const BODY_BYTES_MAX: usize = 5_242_880;

/// The API's size limits, answered as FSPIOP errors (3104): headers of more
/// than [`HEADER_BYTES_MAX`] bytes get 431, a body of more than
/// [`BODY_BYTES_MAX`] 413, before anything is read or done.
async fn size_limits(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let header_bytes: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if header_bytes > HEADER_BYTES_MAX {
        let description =
            format!("headers of {header_bytes} bytes exceed the {HEADER_BYTES_MAX} the API allows");
        return FspiopError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            codes::TOO_LARGE_PAYLOAD,
            description,
        )
        .into_response();
    }
    let too_large = || {
        let description = format!("the body exceeds the {BODY_BYTES_MAX} bytes the API allows");
        FspiopError::new(StatusCode::PAYLOAD_TOO_LARGE, codes::TOO_LARGE_PAYLOAD, description).into_response()
    };
    let declared =
        request.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > BODY_BYTES_MAX) {
        return too_large();
    }
    let response = next.run(request).await;
    // A body without a declared length stops at the limit while it is read.
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    response
}

/// The route of a callback `PUT /{resource}/{ID}` (`error` false) or of
/// its `PUT /{resource}/{ID}/error` (true), handled by
/// `$answer(inbound, tenant name, id, headers, body, error)`.
macro_rules! answered {
    ($answer:ident, $error:expr) => {
        put(
            |State(inbound): State<Shared>,
             Path((name, id)): Path<(String, String)>,
             headers: HeaderMap,
             body: Bytes| async move { $answer(&inbound, &name, &id, &headers, &body, $error).await },
        )
    };
}

/// The routes of every tenant's FSPIOP endpoint.
pub fn router(inbound: Arc<Inbound>) -> Router {
    Router::new()
        .route("/fspiop/{tenant}/parties/{id_type}/{id}", get(get_party).put(put_party))
        .route("/fspiop/{tenant}/parties/{id_type}/{id}/error", put(put_party_error))
        .route(
            "/fspiop/{tenant}/parties/{id_type}/{id}/{sub_id}",
            get(get_party_with_sub_id).put(put_sub_party),
        )
        .route("/fspiop/{tenant}/parties/{id_type}/{id}/{sub_id}/error", put(put_sub_party_error))
        .route("/fspiop/{tenant}/quotes", axum::routing::post(post_quote))
        .route("/fspiop/{tenant}/quotes/{id}", get(get_quote).merge(answered!(quote_answer, false)))
        .route("/fspiop/{tenant}/quotes/{id}/error", answered!(quote_answer, true))
        .route("/fspiop/{tenant}/transfers", axum::routing::post(post_transfer))
        .route(
            "/fspiop/{tenant}/transfers/{id}",
            get(get_transfer).patch(patch_transfer).merge(answered!(transfer_answer, false)),
        )
        .route("/fspiop/{tenant}/transfers/{id}/error", answered!(transfer_answer, true))
        .route("/fspiop/{tenant}/participants/{id_type}/{id}", put(put_participant))
        .route("/fspiop/{tenant}/participants/{id_type}/{id}/error", put(put_participant_error))
        .route(
            "/fspiop/{tenant}/transactions/{id}",
            get(get_transaction).merge(answered!(transaction_answer, false)),
        )
        .route("/fspiop/{tenant}/transactions/{id}/error", answered!(transaction_answer, true))
        .route("/fspiop/{tenant}/transactionRequests", axum::routing::post(post_transaction_request))
        .route(
            "/fspiop/{tenant}/transactionRequests/{id}",
            get(get_transaction_request).merge(answered!(transaction_request_answer, false)),
        )
        .route("/fspiop/{tenant}/transactionRequests/{id}/error", answered!(transaction_request_answer, true))
        .route(
            "/fspiop/{tenant}/authorizations/{id}",
            get(get_authorization).merge(answered!(authorization_answer, false)),
        )
        .route("/fspiop/{tenant}/authorizations/{id}/error", answered!(authorization_answer, true))
        .route("/fspiop/{tenant}/bulkQuotes", axum::routing::post(post_bulk_quote))
        .route(
            "/fspiop/{tenant}/bulkQuotes/{id}",
            logged_put("bulkQuotes", schema::Message::BulkQuotesPut).get(get_bulk_quote),
        )
        .route("/fspiop/{tenant}/bulkQuotes/{id}/error", logged_put("bulkQuotes", schema::Message::Error))
        .route("/fspiop/{tenant}/bulkTransfers", axum::routing::post(post_bulk_transfer))
        .route(
            "/fspiop/{tenant}/bulkTransfers/{id}",
            logged_put("bulkTransfers", schema::Message::BulkTransfersPut).get(get_bulk_transfer),
        )
        .route(
            "/fspiop/{tenant}/bulkTransfers/{id}/error",
            logged_put("bulkTransfers", schema::Message::Error),
        )
        .with_state(inbound)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(size_limits))
}

/// Admits an inbound message: its headers ([`check_headers`]), the tenant
/// it is for, and, when signatures are verified, its JWS by the public key
/// of its `FSPIOP-Source` (a message without a body is not signed).
fn admit(
    inbound: &Inbound,
    headers: &HeaderMap,
    resource: &str,
    kind: Kind,
    name: &str,
    body: Option<&[u8]>,
) -> Result<(Envelope, Tenant), FspiopError> {
    let envelope = check_headers(headers, resource, kind)?;
    let tenant = tenant(inbound, name, &envelope)?;
    if let (Some(verifiers), Some(body)) = (&inbound.verifiers, body) {
        verifiers.verify(&envelope.source, headers, body)?;
    }
    Ok((envelope, tenant))
}

fn tenant(inbound: &Inbound, name: &str, envelope: &Envelope) -> Result<Tenant, FspiopError> {
    let Some(tenant) = inbound.tenants.find(name) else {
        return Err(FspiopError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_URI,
            format!("no DFSP {name:?} is served here"),
        ));
    };
    if let Some(destination) = &envelope.destination {
        if destination != &tenant.fsp_id {
            return Err(FspiopError::new(
                StatusCode::BAD_REQUEST,
                codes::DESTINATION_FSP_ERROR,
                format!("FSPIOP-Destination {destination:?} is not this endpoint's DFSP {:?}", tenant.fsp_id),
            ));
        }
    }
    Ok(tenant.clone())
}

fn party_type(value: &str) -> Result<PartyIdType, FspiopError> {
    value.parse().map_err(|e: actors::model::ModelError| {
        FspiopError::new(StatusCode::BAD_REQUEST, codes::GENERIC_VALIDATION_ERROR, e.to_string())
    })
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

async fn get_party(
    State(inbound): State<Shared>,
    Path((name, id_type, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    lookup(inbound, name, id_type, id, None, &headers)
}

async fn get_party_with_sub_id(
    State(inbound): State<Shared>,
    Path((name, id_type, id, sub_id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    lookup(inbound, name, id_type, id, Some(sub_id), &headers)
}

fn lookup(
    inbound: Shared,
    name: String,
    id_type: String,
    id: String,
    sub_id: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, headers, "parties", Kind::Request, &name, None)?;
    let id_type = party_type(&id_type)?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.lookup(&tenant, &envelope, id_type, &id, sub_id.as_deref()).await });
    Ok(accepted())
}

async fn put_party(
    State(inbound): State<Shared>,
    Path((name, id_type, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    party_answer(&inbound, &name, (&id_type, &id, None), &headers, &body, false).await
}

async fn put_party_error(
    State(inbound): State<Shared>,
    Path((name, id_type, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    party_answer(&inbound, &name, (&id_type, &id, None), &headers, &body, true).await
}

async fn put_sub_party(
    State(inbound): State<Shared>,
    Path((name, id_type, id, sub_id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    party_answer(&inbound, &name, (&id_type, &id, Some(&sub_id)), &headers, &body, false).await
}

async fn put_sub_party_error(
    State(inbound): State<Shared>,
    Path((name, id_type, id, sub_id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    party_answer(&inbound, &name, (&id_type, &id, Some(&sub_id)), &headers, &body, true).await
}

/// `PUT /parties/{Type}/{ID}[/{SubId}][/error]`: the answer to one of the
/// tenant's lookups, for the payer side.
async fn party_answer(
    inbound: &Inbound,
    name: &str,
    (id_type, id, sub_id): (&str, &str, Option<&str>),
    headers: &HeaderMap,
    body: &[u8],
    error: bool,
) -> Result<Response, FspiopError> {
    let (_, tenant) = admit(inbound, headers, "parties", Kind::Callback, name, Some(body))?;
    let party = Party::with_sub_id(party_type(id_type)?, id, sub_id).map_err(|e| {
        FspiopError::new(StatusCode::BAD_REQUEST, codes::GENERIC_VALIDATION_ERROR, e.to_string())
    })?;
    let result = if error {
        Err(parse_checked::<ErrorBody>(body, schema::Message::Error)?.0)
    } else {
        Ok(parse_checked::<PartiesPut>(body, schema::Message::PartiesPut)?.0)
    };
    inbound.payer.party(&tenant.id, &party, result).await;
    Ok(accepted())
}

async fn post_quote(
    State(inbound): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "quotes", Kind::Request, &name, Some(&body))?;
    let (message, raw): (QuotesPost, _) = parse_checked(&body, schema::Message::QuotesPost)?;
    parse_uuid(&message.quote_id, "quoteId")?;
    parse_uuid(&message.transaction_id, "transactionId")?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.quote(&tenant, &envelope, message, raw).await });
    Ok(accepted())
}

/// `GET /quotes/{id}` and `GET /transfers/{id}` are answered 200, as
/// Mojaloop's DFSP components (and its Testing Toolkit's collections) do.
async fn get_quote(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "quotes", Kind::Request, &name, None)?;
    let id = parse_uuid(&id, "ID")?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.get_quote(&tenant, &envelope, id).await });
    Ok(StatusCode::OK.into_response())
}

/// A callback `PUT /{resource}/{ID}` (its body a `message`) or its error
/// (`error`), admitted and checked: the tenant, the id and the answer.
fn answer_of<T: serde::de::DeserializeOwned>(
    inbound: &Inbound,
    (name, resource, id): (&str, &str, &str),
    headers: &HeaderMap,
    body: &[u8],
    error: bool,
    message: schema::Message,
) -> Result<(Envelope, Tenant, Uuid, Result<T, ErrorBody>), FspiopError> {
    let (envelope, tenant) = admit(inbound, headers, resource, Kind::Callback, name, Some(body))?;
    let id = parse_uuid(id, "ID")?;
    let result = if error {
        Err(parse_checked::<ErrorBody>(body, schema::Message::Error)?.0)
    } else {
        Ok(parse_checked::<T>(body, message)?.0)
    };
    Ok((envelope, tenant, id, result))
}

/// `PUT /quotes/{ID}[/error]`: the answer to one of the tenant's quote
/// requests, for the payer side.
async fn quote_answer(
    inbound: &Inbound,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    error: bool,
) -> Result<Response, FspiopError> {
    let answer = (name, "quotes", id);
    let (envelope, tenant, id, result) =
        answer_of(inbound, answer, headers, body, error, schema::Message::QuotesPut)?;
    inbound.payer.quote(&tenant.id, &envelope.source, id, result).await;
    Ok(accepted())
}

async fn post_transfer(
    State(inbound): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "transfers", Kind::Request, &name, Some(&body))?;
    let (message, raw): (TransfersPost, _) = parse_checked(&body, schema::Message::TransfersPost)?;
    parse_uuid(&message.transfer_id, "transferId")?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.transfer(&tenant, &envelope, message, raw).await });
    Ok(accepted())
}

async fn get_transfer(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "transfers", Kind::Request, &name, None)?;
    let id = parse_uuid(&id, "ID")?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.get_transfer(&tenant, &envelope, id).await });
    Ok(StatusCode::OK.into_response())
}

/// `PUT /transfers/{ID}[/error]`: the switch's word on a transfer, for the
/// payer side, and for the payee side too when it waits for it (a transfer
/// it answered RESERVED).
async fn transfer_answer(
    inbound: &Inbound,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    error: bool,
) -> Result<Response, FspiopError> {
    let answer = (name, "transfers", id);
    let (_, tenant, id, result) =
        answer_of::<TransfersPut>(inbound, answer, headers, body, error, schema::Message::TransfersPut)?;
    if inbound.payee.is_pending(&tenant, id) {
        inbound.payee.settle(&tenant, id, result.clone()).await;
    }
    inbound.payer.transfer(&tenant.id, id, result).await;
    Ok(accepted())
}

async fn patch_transfer(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (_, tenant) = admit(&inbound, &headers, "transfers", Kind::Callback, &name, Some(&body))?;
    let id = parse_uuid(&id, "ID")?;
    let (message, _): (TransfersPatch, _) = parse_checked(&body, schema::Message::TransfersPatch)?;
    match inbound.payee.patch(&tenant, id, &message).await {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(body) if body.error_information.error_code == codes::SERVER_ERROR => {
            Err(FspiopError { status: StatusCode::INTERNAL_SERVER_ERROR, body })
        }
        Err(body) => Err(FspiopError { status: StatusCode::BAD_REQUEST, body }),
    }
}

async fn get_transaction(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "transactions", Kind::Request, &name, None)?;
    let id = parse_uuid(&id, "ID")?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.get_transaction(&tenant, &envelope, id).await });
    Ok(accepted())
}

/// `PUT /transactions/{ID}[/error]`: a payee DFSP's answer to one of the
/// tenant's questions about a transaction.
async fn transaction_answer(
    inbound: &Inbound,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    error: bool,
) -> Result<Response, FspiopError> {
    let answer = (name, "transactions", id);
    let (_, tenant, id, result) =
        answer_of(inbound, answer, headers, body, error, schema::Message::TransactionsPut)?;
    inbound.transactions.answered(&tenant, id, result);
    Ok(StatusCode::OK.into_response())
}

/// The route of a callback no flow of payhub's waits for (`PUT
/// /{resource}/{ID}` or its error, of `message`): payhub sends no request
/// these answer yet (bulks, authorizations), so they are checked like any
/// other, logged for operators and answered 200.
fn logged_put(resource: &'static str, message: schema::Message) -> MethodRouter<Shared> {
    put(
        move |State(inbound): State<Shared>,
              Path((name, id)): Path<(String, String)>,
              headers: HeaderMap,
              body: Bytes| async move {
            logged(&inbound, (&name, resource, &id), &headers, &body, message).await
        },
    )
}

async fn logged(
    inbound: &Inbound,
    (name, resource, id): (&str, &str, &str),
    headers: &HeaderMap,
    body: &[u8],
    message: schema::Message,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(inbound, headers, resource, Kind::Callback, name, Some(body))?;
    let id = parse_uuid(id, "ID")?;
    let (_, raw): (serde_json::Value, _) = parse_checked(body, message)?;
    let state = ["transactionState", "bulkTransferState", "transactionRequestState", "responseType"]
        .iter()
        .find_map(|key| raw.get(*key).and_then(|v| v.as_str()))
        .or_else(|| raw["errorInformation"]["errorCode"].as_str())
        .unwrap_or("answered");
    tracing::info!(
        tenant = %tenant.id, resource, %id, source = %envelope.source, state,
        "a callback no payer flow waits for; logged"
    );
    Ok(StatusCode::OK.into_response())
}

/// `PUT /transactionRequests/{ID}[/error]`: where one of the tenant's
/// requests to pay stands at the payer's DFSP.
async fn transaction_request_answer(
    inbound: &Inbound,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    error: bool,
) -> Result<Response, FspiopError> {
    let answer = (name, "transactionRequests", id);
    let message = schema::Message::TransactionRequestsPut;
    let (_, tenant, id, result) = answer_of(inbound, answer, headers, body, error, message)?;
    inbound.payer.transaction_request(&tenant.id, id, result).await;
    Ok(accepted())
}

/// `POST /transactionRequests`: a payee asks one of the tenant's customers
/// to pay it.
async fn post_transaction_request(
    State(inbound): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) =
        admit(&inbound, &headers, "transactionRequests", Kind::Request, &name, Some(&body))?;
    let (message, _): (TransactionRequestsPost, _) =
        parse_checked(&body, schema::Message::TransactionRequestsPost)?;
    if message.transaction_type.initiator != "PAYEE" {
        return Err(FspiopError::new(
            StatusCode::BAD_REQUEST,
            codes::GENERIC_VALIDATION_ERROR,
            "transactionType.initiator must be PAYEE in a request to be paid",
        ));
    }
    let requests = inbound.requests.clone();
    tokio::spawn(async move { requests.request(&tenant, &envelope, message).await });
    Ok(accepted())
}

async fn get_transaction_request(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "transactionRequests", Kind::Request, &name, None)?;
    let id = parse_uuid(&id, "ID")?;
    let requests = inbound.requests.clone();
    tokio::spawn(async move { requests.state(&tenant, &envelope, id).await });
    Ok(accepted())
}

/// What `GET /authorizations/{ID}` asks: its query string's
/// `authenticationType`, `retriesLeft`, `amount` and `currency`, each
/// required.
#[derive(Debug, PartialEq, Eq)]
struct AuthorizationQuery {
    authentication_type: String,
    retries_left: u32,
    amount: Amount,
}

impl AuthorizationQuery {
    fn parse(uri: &axum::http::Uri) -> Result<AuthorizationQuery, FspiopError> {
        let invalid =
            |message: String| FspiopError::new(StatusCode::BAD_REQUEST, codes::MALFORMED_SYNTAX, message);
        let pairs = axum::extract::Query::<BTreeMap<String, String>>::try_from_uri(uri)
            .map_err(|error| invalid(format!("the query string: {error}")))?
            .0;
        let field = |name: &str| {
            pairs.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                FspiopError::new(
                    StatusCode::BAD_REQUEST,
                    codes::MISSING_ELEMENT,
                    format!("the query string lacks {name}"),
                )
            })
        };
        let authentication_type = field("authenticationType")?.clone();
        if !["OTP", "QRCODE", "U2F"].contains(&authentication_type.as_str()) {
            return Err(invalid(format!(
                "authenticationType {authentication_type:?} is not OTP, QRCODE or U2F"
            )));
        }
        let retries_left = field("retriesLeft")?;
        let retries_left = retries_left
            .parse::<u32>()
            .ok()
            .filter(|r| *r >= 1)
            .ok_or_else(|| invalid(format!("retriesLeft {retries_left:?} is not a positive integer")))?;
        let amount = Amount::parse_positive(field("amount")?, field("currency")?)
            .map_err(|error| invalid(format!("amount and currency: {error}")))?;
        Ok(AuthorizationQuery { authentication_type, retries_left, amount })
    }
}

/// `GET /authorizations/{ID}`: a payer's DFSP asks that its customer enter
/// a one-time password at the device of the tenant's customer whose
/// request to pay `{ID}` it is paying. The request's flow has the channel
/// ask the payer and answers `PUT /authorizations/{ID}`; an unknown
/// request, one that asked for no password, or another authentication type
/// gets the error callback.
async fn get_authorization(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "authorizations", Kind::Request, &name, None)?;
    let id = parse_uuid(&id, "ID")?;
    let asked = AuthorizationQuery::parse(&uri)?;
    let (payer, payee) = (inbound.payer.clone(), inbound.payee.clone());
    tokio::spawn(async move {
        let result = if asked.authentication_type == "OTP" {
            payer.authorization_asked(&tenant.id, id, asked.retries_left, asked.amount).await
        } else {
            Err(ErrorBody::new(
                codes::GENERIC_VALIDATION_ERROR,
                format!("{} takes one-time passwords only, not {}", tenant.fsp_id, asked.authentication_type),
            ))
        };
        if let Err(body) = result {
            let path = format!("/authorizations/{id}/error");
            payee.callback(&tenant, &envelope, "authorizations", path, &body).await;
        }
    });
    Ok(accepted())
}

/// `PUT /authorizations/{ID}[/error]`: what a tenant's payer entered at the
/// payee's device for request to be paid `{ID}`.
async fn authorization_answer(
    inbound: &Inbound,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    error: bool,
) -> Result<Response, FspiopError> {
    let answer = (name, "authorizations", id);
    let message = schema::Message::AuthorizationsPut;
    let (_, tenant, id, result) = answer_of(inbound, answer, headers, body, error, message)?;
    let requests = inbound.requests.clone();
    tokio::spawn(async move { requests.authorization(&tenant, id, result).await });
    Ok(accepted())
}

async fn post_bulk_quote(
    State(inbound): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "bulkQuotes", Kind::Request, &name, Some(&body))?;
    let (message, raw): (BulkQuotesPost, _) = parse_checked(&body, schema::Message::BulkQuotesPost)?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.bulk_quote(&tenant, &envelope, message, raw).await });
    Ok(accepted())
}

async fn get_bulk_quote(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "bulkQuotes", Kind::Request, &name, None)?;
    let id = parse_uuid(&id, "ID")?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.get_bulk_quote(&tenant, &envelope, id).await });
    Ok(accepted())
}

async fn post_bulk_transfer(
    State(inbound): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "bulkTransfers", Kind::Request, &name, Some(&body))?;
    let (message, raw): (BulkTransfersPost, _) = parse_checked(&body, schema::Message::BulkTransfersPost)?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.bulk_transfer(&tenant, &envelope, message, raw).await });
    Ok(accepted())
}

async fn get_bulk_transfer(
    State(inbound): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FspiopError> {
    let (envelope, tenant) = admit(&inbound, &headers, "bulkTransfers", Kind::Request, &name, None)?;
    let id = parse_uuid(&id, "ID")?;
    let payee = inbound.payee.clone();
    tokio::spawn(async move { payee.get_bulk_transfer(&tenant, &envelope, id).await });
    Ok(accepted())
}

/// `PUT /participants/{Type}/{ID}`: the oracle's answer to a tenant's
/// registration, removal or lookup.
async fn put_participant(
    State(inbound): State<Shared>,
    Path((name, id_type, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (_, tenant) = admit(&inbound, &headers, "participants", Kind::Callback, &name, Some(&body))?;
    party_type(&id_type)?;
    let (message, _): (ParticipantsPut, _) = parse_checked(&body, schema::Message::ParticipantsPut)?;
    inbound.participants.answered(&tenant, &id_type, &id, Ok(message));
    Ok(StatusCode::OK.into_response())
}

async fn put_participant_error(
    State(inbound): State<Shared>,
    Path((name, id_type, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FspiopError> {
    let (_, tenant) = admit(&inbound, &headers, "participants", Kind::Callback, &name, Some(&body))?;
    party_type(&id_type)?;
    let (message, _): (ErrorBody, _) = parse_checked(&body, schema::Message::Error)?;
    inbound.participants.answered(&tenant, &id_type, &id, Err(message));
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Result<AuthorizationQuery, String> {
        let uri: axum::http::Uri = format!("/fspiop/bluebank/authorizations/x?{q}").parse().expect("a URI");
        AuthorizationQuery::parse(&uri).map_err(|e| {
            format!("{} {}", e.body.error_information.error_code, e.body.error_information.error_description)
        })
    }

    #[test]
    fn an_authorization_query_needs_all_four_pairs_well_formed() {
        let asked = query("authenticationType=OTP&retriesLeft=2&amount=102&currency=USD").expect("valid");
        let amount = Amount::parse_positive("102", "USD").expect("an amount");
        assert_eq!(asked, AuthorizationQuery { authentication_type: "OTP".into(), retries_left: 2, amount });
        for (q, code) in [
            ("retriesLeft=2&amount=102&currency=USD", "3102 the query string lacks authenticationType"),
            ("authenticationType=OTP&amount=102&currency=USD", "3102 the query string lacks retriesLeft"),
            ("authenticationType=OTP&retriesLeft=2&currency=USD", "3102 the query string lacks amount"),
            ("authenticationType=OTP&retriesLeft=2&amount=1", "3102 the query string lacks currency"),
            ("authenticationType=PIN&retriesLeft=2&amount=1&currency=USD", "3101"),
            ("authenticationType=OTP&retriesLeft=0&amount=1&currency=USD", "3101"),
            ("authenticationType=OTP&retriesLeft=two&amount=1&currency=USD", "3101"),
            ("authenticationType=OTP&retriesLeft=1&amount=-1&currency=USD", "3101"),
            ("authenticationType=OTP&retriesLeft=1&amount=1&currency=XYZW", "3101"),
        ] {
            let refused = query(q).expect_err(q);
            assert!(refused.starts_with(code), "{q}: {refused}");
        }
    }
}
