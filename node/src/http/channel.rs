//! The channel API, compatible with Payment Hub EE's channel connector:
//! `POST /channel/transfer` and `GET /channel/transfer/{transactionId}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use actors::flow::P2pRequest;
use actors::model::{Amount, Party, PartyIdType, TransactionId};
use actors::runtime::CommitError;

use crate::forward::ForwardError;

use super::{tenant_of, AppState, Problem};
use crate::engine::Created;

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
    Party::new(id_type, &info.party_identifier)
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
    let request =
        P2pRequest { tenant: tenant.id.clone(), payer_fsp: tenant.fsp_id.clone(), payer, payee, amount };
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

async fn read(
    State(state): State<AppState>,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let id: TransactionId =
        transaction_id.parse().map_err(|e: actors::model::ModelError| Problem::bad_request(e.to_string()))?;
    let not_found = || Problem::not_found(format!("no transfer {id} for tenant {}", tenant.id));
    let (state_found, history) = state.engine.read(&id).await.map_err(|error| match error {
        ForwardError::Unavailable(message) => Problem::unavailable(message),
        ForwardError::Failed(message) => Problem::internal(message),
    })?;
    let Some(transaction) = state_found.filter(|t| t.request.tenant == tenant.id) else {
        return Err(not_found());
    };
    let request = &transaction.request;
    let wire_party = |p: &Party| json!({ "partyIdInfo": { "partyIdType": p.id_type.as_str(), "partyIdentifier": p.identifier } });
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
    if let Some(reason) = &transaction.reason {
        body["error"] = json!({ "code": reason.code, "message": reason.message });
    }
    Ok(Json(body))
}
