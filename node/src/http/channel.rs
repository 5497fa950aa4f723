//! The channel API, compatible with Payment Hub EE's channel connector:
//! `POST /channel/transfer` and `GET /channel/transfer/{transactionId}`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use actors::flow::P2pRequest;
use actors::model::{Amount, Party, PartyIdType, TransactionId};
use actors::runtime::CommitError;

use crate::forward::ForwardError;

use super::{tenant_of, AppState, Problem};
use crate::engine::{Created, READ_WAIT_MAX};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/channel/transfer", post(create))
        .route("/channel/transfer/{transaction_id}", get(read))
}

/// `X-CorrelationID` is at most this long.
const CORRELATION_ID_LENGTH_MAX: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferBody {
    payer: PartyBody,
    payee: PartyBody,
    amount: AmountBody,
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

/// Parses and validates a request body; the error names the field.
fn parse(bytes: &[u8]) -> Result<(Party, Party, Amount), Problem> {
    let body: TransferBody = serde_json::from_slice(bytes).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            Problem::bad_request(format!("malformed JSON: {error}"))
        } else {
            Problem::bad_request(format!("invalid transfer request: {error}"))
        }
    })?;
    let payer = party(&body.payer, "payer")?;
    let payee = party(&body.payee, "payee")?;
    let amount = Amount::parse_positive(&body.amount.amount, &body.amount.currency)
        .map_err(|e| Problem::bad_request(format!("amount.{e}")))?;
    if payer == payee {
        return Err(Problem::bad_request("payer and payee are the same party"));
    }
    Ok((payer, payee, amount))
}

async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let (payer, payee, amount) = parse(&body)?;
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
        Some(correlation) => TransactionId::from_correlation(&tenant.id, correlation),
        None => TransactionId::new_random(),
    };
    let request = P2pRequest {
        tenant: tenant.id.clone(),
        payer_fsp: tenant.fsp_id.clone(),
        payer,
        payee,
        amount,
        transaction_request: None,
    };
    // Run the creation to its end even if the client disconnects meanwhile:
    // a committed transaction must also be started.
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
            "X-CorrelationID was already used for a different transfer; use a new correlation id",
        )),
        Ok(Created::Busy) => Err(Problem::unavailable(
            "payhub is driving as many payments as it may (flow.in_flight_max); retry with the same X-CorrelationID",
        )),
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
async fn read(
    State(state): State<AppState>,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let id: TransactionId =
        transaction_id.parse().map_err(|e: actors::model::ModelError| Problem::bad_request(e.to_string()))?;
    let not_found = || Problem::not_found(format!("no transfer {id} for tenant {}", tenant.id));
    let wait = preferred_wait(&headers);
    let read = state.engine.read(&id, wait.unwrap_or_default()).await;
    let (state_found, history) = read.map_err(|error| match error {
        ForwardError::Unavailable(message) => Problem::unavailable(message),
        ForwardError::Failed(message) => Problem::internal(message),
    })?;
    let Some(transaction) = state_found.filter(|t| t.request.tenant == tenant.id) else {
        return Err(not_found());
    };
    let request = &transaction.request;
    let wire_party = |p: &Party| {
        let mut info = json!({ "partyIdType": p.id_type.as_str(), "partyIdentifier": p.identifier });
        if let Some(sub_id) = &p.sub_id {
            info["partySubIdOrType"] = json!(sub_id);
        }
        json!({ "partyIdInfo": info })
    };
    let mut body = json!({
        "transactionId": id,
        "transferState": transaction.transfer_state(),
        "phase": transaction.phase.as_str(),
        "payer": wire_party(&request.payer),
        "payee": wire_party(&request.payee),
        "amount": { "amount": request.amount.value_string(), "currency": request.amount.currency.to_string() },
        "payeeFsp": transaction.payee_fsp,
        "createdAt": connectors::fspiop::headers::timestamp(transaction.created_at_ms),
        "updatedAt": connectors::fspiop::headers::timestamp(transaction.updated_at_ms),
        "reconciliationRequired": transaction.reconciliation_required,
        "history": history,
    });
    if let Some(asked) = &request.transaction_request {
        body["transactionRequestId"] = json!(asked.id);
    }
    if let Some(reason) = &transaction.reason {
        body["error"] = json!({ "code": reason.code, "message": reason.message });
    }
    let mut response = Json(body).into_response();
    if let Some(wait) = wait {
        let applied =
            HeaderValue::from_str(&format!("wait={}", wait.as_secs())).expect("digits are a header value");
        response.headers_mut().insert("preference-applied", applied);
    }
    Ok(response)
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
