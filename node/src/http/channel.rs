//! The channel API, compatible with Payment Hub EE's channel connector:
//! payments (`POST /channel/transfer`, `GET /channel/transfer/{transactionId}`)
//! and requests to pay the tenant's customers send
//! (`POST /channel/transactionRequest`,
//! `GET /channel/transactionRequest/{transactionId}`, and for one that asked
//! for the payer's one-time password, what the payer did at the customer's
//! device: `POST /channel/transactionRequest/{transactionId}/authorization`).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use actors::flow::{
    Authentication, AuthorizationResponse, FlowKind, Input, P2pRequest, Phase, Request, RtpRequest,
    State as Transaction,
};
use actors::model::{Amount, Party, PartyIdType, TransactionId};
use actors::runtime::CommitError;

use super::{tenant_of, AppState, Problem};
use crate::engine::{Created, READ_WAIT_MAX};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/channel/transfer", post(create_transfer))
        .route("/channel/transfer/{transaction_id}", get(read_transfer))
        .route("/channel/transactionRequest", post(create_request).get(list_requests))
        .route("/channel/transactionRequest/{transaction_id}", get(read_request))
        .route("/channel/transactionRequest/{transaction_id}/authorization", post(authorize_request))
}

/// How long a payer has to pay a request to pay, unless the channel says
/// (`expirySeconds`, at most [`REQUEST_EXPIRY_MAX`]).
const REQUEST_EXPIRY_DEFAULT: Duration = Duration::from_secs(300);
pub const REQUEST_EXPIRY_MAX: Duration = crate::requests::APPROVAL_WINDOW_MAX;

/// FSPIOP `TransactionScenario` and `TransactionInitiatorType`.
const SCENARIOS: [&str; 5] = ["DEPOSIT", "WITHDRAWAL", "TRANSFER", "PAYMENT", "REFUND"];
const INITIATOR_TYPES: [&str; 4] = ["CONSUMER", "AGENT", "BUSINESS", "DEVICE"];

/// `X-CorrelationID` is at most this long.
const CORRELATION_ID_LENGTH_MAX: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferBody {
    payer: PartyBody,
    payee: PartyBody,
    amount: AmountBody,
}

/// `POST /channel/transactionRequest`: the tenant's customer (`payee`)
/// asks `payer`, at another DFSP, to pay it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody {
    payer: PartyBody,
    payee: PartyBody,
    amount: AmountBody,
    /// FSPIOP `transactionType.scenario`; `PAYMENT` unless given.
    #[serde(default)]
    scenario: Option<String>,
    /// FSPIOP `transactionType.initiatorType`; `BUSINESS` unless given.
    #[serde(default)]
    initiator_type: Option<String>,
    #[serde(default)]
    expiry_seconds: Option<u64>,
    /// `OTP`: the payer approves by entering, at the customer's device, a
    /// one-time password its DFSP gives it. Unless given, the payer's DFSP
    /// decides how its customer approves.
    #[serde(default)]
    authentication_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartyBody {
    party_id_info: PartyIdInfoBody,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartyIdInfoBody {
    party_id_type: String,
    party_identifier: String,
    /// One of several accounts behind the identifier (FSPIOP
    /// `partySubIdOrType`).
    #[serde(default)]
    party_sub_id_or_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AmountBody {
    /// A string, as in FSPIOP; a JSON number is refused so no float ever
    /// touches the amount.
    amount: String,
    currency: String,
}

fn party(body: &PartyBody, role: &str) -> Result<Party, Problem> {
    let info = &body.party_id_info;
    let id_type: PartyIdType = info
        .party_id_type
        .parse()
        .map_err(|e: actors::model::ModelError| Problem::bad_request(format!("{role}.partyIdInfo.{e}")))?;
    Party::with_sub_id(id_type, &info.party_identifier, info.party_sub_id_or_type.as_deref())
        .map_err(|e| Problem::bad_request(format!("{role}.partyIdInfo.{e}")))
}

/// Parses a request body; the error says what is wrong with it.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            Problem::bad_request(format!("malformed JSON: {error}"))
        } else {
            Problem::bad_request(format!("invalid {what}: {error}"))
        }
    })
}

/// Validates the parties and the amount of a request; the error names the
/// field.
fn parties_and_amount(
    payer: &PartyBody,
    payee: &PartyBody,
    amount: &AmountBody,
) -> Result<(Party, Party, Amount), Problem> {
    let payer = party(payer, "payer")?;
    let payee = party(payee, "payee")?;
    let amount = Amount::parse_positive(&amount.amount, &amount.currency)
        .map_err(|e| Problem::bad_request(format!("amount.{e}")))?;
    if payer == payee {
        return Err(Problem::bad_request("payer and payee are the same party"));
    }
    Ok((payer, payee, amount))
}

/// One of `allowed`, or `default` when not given.
fn one_of(value: Option<String>, allowed: &[&str], default: &str, field: &str) -> Result<String, Problem> {
    match value {
        None => Ok(default.to_owned()),
        Some(value) if allowed.contains(&value.as_str()) => Ok(value),
        Some(value) => {
            Err(Problem::bad_request(format!("{field} {value:?} is not one of {}", allowed.join(", "))))
        }
    }
}

async fn create_transfer(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let body: TransferBody = parse(&body, "transfer request")?;
    let (payer, payee, amount) = parties_and_amount(&body.payer, &body.payee, &body.amount)?;
    let request = Request::P2p(P2pRequest {
        tenant: tenant.id.clone(),
        payer_fsp: tenant.fsp_id.clone(),
        payer,
        payee,
        amount,
        transaction_request: None,
    });
    create(state, &tenant.id, &headers, request).await
}

async fn create_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let body: RequestBody = parse(&body, "request to pay")?;
    let (payer, payee, amount) = parties_and_amount(&body.payer, &body.payee, &body.amount)?;
    let scenario = one_of(body.scenario, &SCENARIOS, "PAYMENT", "scenario")?;
    let initiator_type = one_of(body.initiator_type, &INITIATOR_TYPES, "BUSINESS", "initiatorType")?;
    let expiry = match body.expiry_seconds {
        None => REQUEST_EXPIRY_DEFAULT,
        Some(seconds) if (1..=REQUEST_EXPIRY_MAX.as_secs()).contains(&seconds) => {
            Duration::from_secs(seconds)
        }
        Some(_) => {
            return Err(Problem::bad_request(format!(
                "expirySeconds must be 1 to {}",
                REQUEST_EXPIRY_MAX.as_secs()
            )))
        }
    };
    let authentication = match body.authentication_type.as_deref() {
        None => None,
        Some("OTP") => Some(Authentication::Otp),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "authenticationType {other:?} is not supported: OTP is the only one"
            )))
        }
    };
    let request = Request::RequestToPay(RtpRequest {
        tenant: tenant.id.clone(),
        payee_fsp: tenant.fsp_id.clone(),
        payee,
        payer,
        amount,
        scenario,
        initiator_type,
        expiry_ms: u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX),
        authentication,
    });
    create(state, &tenant.id, &headers, request).await
}

/// Creates the transaction of `request`, its id from the channel's
/// `X-CorrelationID` (so a resent request finds it) or a new one.
async fn create(
    state: AppState,
    tenant: &actors::model::TenantId,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, Problem> {
    let correlation = match headers.get("x-correlationid") {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| Problem::bad_request("X-CorrelationID is not text"))?;
            if value.is_empty() || value.len() > CORRELATION_ID_LENGTH_MAX {
                return Err(Problem::bad_request("X-CorrelationID must be 1 to 128 characters"));
            }
            Some(value.to_owned())
        }
    };
    let id = match &correlation {
        Some(correlation) => TransactionId::from_correlation(tenant, correlation),
        None => TransactionId::new_random(),
    };
    // Run the creation to its end even if the client disconnects meanwhile:
    // a committed transaction must also be started.
    let busy = match request.is_request_to_pay() {
        true => "requests to pay waiting on payers (flow.requests_awaiting_max)",
        false => "payments (flow.in_flight_max)",
    };
    let engine = state.engine.clone();
    let created = tokio::spawn(async move { engine.create(id, request).await })
        .await
        .map_err(|e| Problem::internal(format!("transfer creation failed: {e}")))?;
    match created {
        Ok(Created::New(id)) => Ok((StatusCode::OK, Json(json!({ "transactionId": id }))).into_response()),
        Ok(Created::Existing(id)) => {
            Ok((StatusCode::OK, Json(json!({ "transactionId": id }))).into_response())
        }
        Ok(Created::Conflict) => Err(Problem::new(
            StatusCode::CONFLICT,
            "Correlation id reused",
            "X-CorrelationID was already used for a different request; use a new correlation id",
        )),
        Ok(Created::Busy) => Err(Problem::unavailable(format!(
            "payhub is driving as many {busy} as it may; retry with the same X-CorrelationID"
        ))),
        Err(CommitError::NotLeader) => {
            Err(Problem::unavailable("this node does not lead the transaction's shard; retry"))
        }
        Err(CommitError::Failed(error)) => {
            tracing::error!(%error, "cannot create a transaction");
            Err(Problem::unavailable(format!(
                "the transfer was not accepted: {error}; retry with the same X-CorrelationID"
            )))
        }
    }
}

/// The wait a client asked for with `Prefer: wait=N` (RFC 7240: seconds),
/// capped at [`READ_WAIT_MAX`]; preferences this server does not know, or
/// malformed ones, are ignored as the RFC says.
fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let token = preference.split(';').next()?.trim();
            let (name, seconds) = token.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| seconds.trim().trim_matches('"').parse::<u64>().ok())?
        })
        // RFC 7240: of a preference given twice, the first counts.
        .next()
        .map(|seconds| Duration::from_secs(seconds).min(READ_WAIT_MAX))
}

/// `GET /channel/transfer/{id}`: the transfer's state and history. With
/// `Prefer: wait=N` the answer comes once the transfer is final (committed
/// or aborted) or after N seconds (at most 5), whichever is first, so a
/// channel learns the outcome with one request instead of polling.
async fn read_transfer(
    State(state): State<AppState>,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    read(state, FlowKind::P2p, &transaction_id, &headers).await
}

/// `GET /channel/transactionRequest`: the requests to pay the tenant's
/// customers sent that are not over (waiting for the payer's DFSP, its
/// payment or the payer's password), oldest first, from every node of a
/// cluster (503 when some shard's leader does not answer: its requests
/// would be missing). Each as `GET .../{id}` shows it, without history.
async fn list_requests(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let waiting = state.engine.waiting(&tenant.id, FlowKind::RequestToPay).await?;
    let requests: Vec<serde_json::Value> = waiting.iter().map(view).collect();
    Ok(Json(json!({ "count": requests.len(), "requests": requests })).into_response())
}

/// `GET /channel/transactionRequest/{id}`: a request to pay's state and
/// history (with `Prefer: wait=N` as for transfers).
async fn read_request(
    State(state): State<AppState>,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    read(state, FlowKind::RequestToPay, &transaction_id, &headers).await
}

async fn read(
    state: AppState,
    kind: FlowKind,
    transaction_id: &str,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state, headers)?;
    let id: TransactionId = transaction_id.parse()?;
    let what = match kind {
        FlowKind::P2p => "transfer",
        FlowKind::RequestToPay => "request to pay",
    };
    let not_found = || Problem::not_found(format!("no {what} {id} for tenant {}", tenant.id));
    let wait = preferred_wait(headers);
    let read = state.engine.read(&id, wait.unwrap_or_default()).await;
    let (state_found, history) = read?;
    let Some(transaction) = state_found.filter(|t| *t.tenant() == tenant.id && t.kind() == kind) else {
        return Err(not_found());
    };
    let mut body = view(&transaction);
    body["history"] = json!(history);
    let mut response = Json(body).into_response();
    if let Some(wait) = wait {
        let applied =
            HeaderValue::from_str(&format!("wait={}", wait.as_secs())).expect("digits are a header value");
        response.headers_mut().insert("preference-applied", applied);
    }
    Ok(response)
}

/// `POST /channel/transactionRequest/{id}/authorization`: what the payer
/// did at the customer's device when its DFSP asked for its password.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthorizationBody {
    /// `ENTERED` (with `otp`), `REJECTED` or `RESEND` (a new password).
    response: String,
    /// What the payer entered: 3 to 10 digits (FSPIOP `OtpValue`).
    #[serde(default)]
    otp: Option<String>,
}

impl AuthorizationBody {
    fn response(self) -> Result<AuthorizationResponse, Problem> {
        match (self.response.as_str(), self.otp) {
            ("ENTERED", Some(otp))
                if (3..=10).contains(&otp.len()) && otp.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(AuthorizationResponse::Entered { value: otp })
            }
            ("ENTERED", Some(_)) => Err(Problem::bad_request("otp must be 3 to 10 digits")),
            ("ENTERED", None) => Err(Problem::bad_request("an ENTERED response needs the otp entered")),
            ("REJECTED" | "RESEND", Some(_)) => {
                Err(Problem::bad_request("otp goes only with an ENTERED response"))
            }
            ("REJECTED", None) => Ok(AuthorizationResponse::Rejected),
            ("RESEND", None) => Ok(AuthorizationResponse::Resend),
            (other, _) => {
                Err(Problem::bad_request(format!("response {other:?} is not ENTERED, REJECTED or RESEND")))
            }
        }
    }
}

/// Steps the request with what the payer did (through its shard's Raft
/// group), which the flow returns to the payer's DFSP; answers the request
/// once that took effect (200, or 202 after a few seconds); 409 when no
/// password is being asked for.
async fn authorize_request(
    State(state): State<AppState>,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let id: TransactionId = transaction_id.parse()?;
    let response = parse::<AuthorizationBody>(&body, "authorization")?.response()?;
    let engine = &state.engine;
    let read = || async {
        let (found, _) = engine.read(&id, Duration::ZERO).await?;
        found
            .filter(|t| *t.tenant() == tenant.id && t.kind() == FlowKind::RequestToPay)
            .ok_or_else(|| Problem::not_found(format!("no request to pay {id} for tenant {}", tenant.id)))
    };
    let before = read().await?;
    if before.phase() != Phase::AwaitingAuthorization {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "No password asked",
            format!(
                "request {id} is {}: the payer's DFSP is not asking for a password",
                before.phase().as_str()
            ),
        ));
    }
    tracing::info!(transaction = %id, tenant = %tenant.id, "the payer answered at the customer's device");
    engine.callbacks.deliver(&tenant.id, id, Input::AuthorizationEntered { response }).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Stepped (the payer's DFSP may already have asked again).
        let now = read().await?;
        if now.updated_at_ms() != before.updated_at_ms() {
            return Ok((StatusCode::OK, Json(view(&now))).into_response());
        }
        if Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, Json(view(&now))).into_response());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wire_party(p: &Party) -> serde_json::Value {
    let mut info = json!({ "partyIdType": p.id_type.as_str(), "partyIdentifier": p.identifier });
    if let Some(sub_id) = &p.sub_id {
        info["partySubIdOrType"] = json!(sub_id);
    }
    json!({ "partyIdInfo": info })
}

fn wire_amount(amount: &Amount) -> serde_json::Value {
    json!({ "amount": amount.value_string(), "currency": amount.currency.to_string() })
}

/// What a channel sees of a transaction of either flow.
fn view(transaction: &Transaction) -> serde_json::Value {
    let timestamp = connectors::fspiop::headers::timestamp;
    let mut body = json!({
        "transactionId": transaction.id(),
        "transferState": transaction.transfer_state(),
        "phase": transaction.phase().as_str(),
        "payer": wire_party(transaction.payer()),
        "payee": wire_party(transaction.payee()),
        "amount": wire_amount(transaction.amount()),
        "createdAt": timestamp(transaction.created_at_ms()),
        "updatedAt": timestamp(transaction.updated_at_ms()),
        "reconciliationRequired": transaction.reconciliation_required(),
    });
    match transaction {
        Transaction::P2p(payment) => {
            body["payeeFsp"] = json!(payment.payee_fsp);
            if let Some(asked) = &payment.request.transaction_request {
                body["transactionRequestId"] = json!(asked.id);
            }
        }
        Transaction::RequestToPay(request) => {
            body["payerFsp"] = json!(request.payer_fsp);
            body["requestState"] = json!(request.request_state.map(|s| s.as_str()));
            body["payerTransactionId"] = json!(request.payer_transaction_id);
            body["expiresAt"] = json!(timestamp(request.expiration_ms()));
            if let Some(payment) = &request.payment {
                body["payment"] =
                    json!({ "transferId": payment.transfer_id, "amount": wire_amount(&payment.amount) });
            }
            if let Some(authentication) = request.request.authentication {
                body["authenticationType"] = json!(authentication.as_str());
            }
            if let Some(ask) = &request.authorization {
                let response = ask.response.as_ref().map(|r| match r {
                    AuthorizationResponse::Entered { .. } => "ENTERED",
                    AuthorizationResponse::Rejected => "REJECTED",
                    AuthorizationResponse::Resend => "RESEND",
                });
                body["authorization"] = json!({
                    "retriesLeft": ask.retries_left,
                    "amount": wire_amount(&ask.amount),
                    "response": response,
                });
            }
        }
    }
    if let Some(reason) = transaction.reason() {
        body["error"] = json!({ "code": reason.code, "message": reason.message });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    #[test]
    fn prefer_wait_is_read_capped_and_otherwise_ignored() {
        assert_eq!(preferred_wait(&prefer(&["wait=3"])), Some(Duration::from_secs(3)));
        assert_eq!(preferred_wait(&prefer(&["respond-async, Wait = 2"])), Some(Duration::from_secs(2)));
        assert_eq!(
            preferred_wait(&prefer(&["handling=lenient", "wait=4; x=y"])),
            Some(Duration::from_secs(4))
        );
        assert_eq!(preferred_wait(&prefer(&["wait=3600"])), Some(READ_WAIT_MAX));
        assert_eq!(preferred_wait(&prefer(&["wait=1", "wait=2"])), Some(Duration::from_secs(1)));
        assert_eq!(preferred_wait(&prefer(&["wait=soon", "return=minimal"])), None);
        assert_eq!(preferred_wait(&HeaderMap::new()), None);
    }
}
