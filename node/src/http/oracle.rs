//! `/oracle/{Type}/{ID}`: a tenant's parties in the scheme's oracle, for
//! its back office. `POST` registers the party as the tenant's (body,
//! optional: `{"currency": "USD"}`), `DELETE` removes that registration,
//! `GET` asks which DFSP serves the party; each answers once the switch has
//! (`{"fspId": ...}`), as problem details otherwise.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use actors::model::{Currency, Party, PartyIdType};
use connectors::fspiop::participants::Operation;
use connectors::fspiop::waiters::AskError;

use super::{tenant_of, AppState, Problem};

pub fn routes() -> Router<AppState> {
    Router::new().route("/oracle/{id_type}/{id}", get(lookup).post(register).delete(deregister))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    currency: Option<String>,
}

fn party(id_type: &str, id: &str) -> Result<Party, Problem> {
    let id_type: PartyIdType = id_type.parse()?;
    Party::new(id_type, id).map_err(|e| Problem::bad_request(e.to_string()))
}

async fn ask(
    state: &AppState,
    headers: &HeaderMap,
    id_type: &str,
    id: &str,
    operation: Operation,
) -> Result<Json<Value>, Problem> {
    let tenant = tenant_of(state, headers)?;
    let party = party(id_type, id)?;
    match state.engine.inbound.participants.ask(&tenant, &party, operation).await {
        Ok(fsp) => Ok(Json(json!({ "party": party.to_string(), "fspId": fsp }))),
        Err(AskError::Refused(body)) => {
            let info = &body.error_information;
            let status = match info.error_code.as_str() {
                "3200" | "3204" => StatusCode::NOT_FOUND,
                code if code.starts_with('3') => StatusCode::CONFLICT,
                _ => StatusCode::BAD_GATEWAY,
            };
            Err(Problem::new(
                status,
                "Refused by the oracle",
                format!("{} {}", info.error_code, info.error_description),
            ))
        }
        Err(error @ AskError::NotDelivered(_)) => {
            Err(Problem::new(StatusCode::BAD_GATEWAY, "Switch unreachable", error.to_string()))
        }
        Err(error @ AskError::Timeout(_)) => {
            Err(Problem::new(StatusCode::GATEWAY_TIMEOUT, "No answer from the oracle", error.to_string()))
        }
    }
}

async fn register(
    State(state): State<AppState>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    let registration: Registration = if body.is_empty() {
        Registration::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("body: {e}")))?
    };
    let currency = registration
        .currency
        .map(|c| c.parse::<Currency>())
        .transpose()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    ask(&state, &headers, &id_type, &id, Operation::Register { currency }).await
}

async fn deregister(
    State(state): State<AppState>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    ask(&state, &headers, &id_type, &id, Operation::Deregister).await
}

async fn lookup(
    State(state): State<AppState>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    ask(&state, &headers, &id_type, &id, Operation::Lookup).await
}
