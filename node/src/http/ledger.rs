//! The built-in ledger's balances over HTTP (read-only): served by a node
//! whose AMS is its built-in ledger, and by `payhub sim` for the ledger
//! behind its AMS API.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use actors::model::{Party, PartyIdType};
use connectors::ledger::{Balance, Ledger};
use connectors::tenants::Tenants;

use super::{tenant_in, Problem};

/// What the ledger API reads: a ledger, and the tenants whose accounts it
/// shows (named by `Platform-TenantId`).
#[derive(Debug, Clone)]
pub struct LedgerApi {
    pub ledger: Ledger,
    pub tenants: Arc<Tenants>,
}

pub fn routes(api: LedgerApi) -> Router {
    Router::new()
        .route("/ledger/accounts", get(list))
        .route("/ledger/accounts/{id_type}/{id}", get(one))
        .route("/ledger/accounts/{id_type}/{id}/{sub_id}", get(one_sub))
        .with_state(api)
}

/// The ledger API's routes on a node whose AMS is external: a 404 that says
/// where the balances are.
pub fn external_routes(ams_url: &str) -> Router {
    let detail = format!("this node's AMS is external ({ams_url}); read balances there");
    let answer = move || {
        let detail = detail.clone();
        async move { Problem::not_found(detail) }
    };
    Router::new()
        .route("/ledger/accounts", get(answer.clone()))
        .route("/ledger/accounts/{id_type}/{id}", get(answer.clone()))
        .route("/ledger/accounts/{id_type}/{id}/{sub_id}", get(answer))
}

/// A figure with at least two decimals ("0.00", "990.00", "0.0125").
fn figure(value: Decimal) -> String {
    let mut value = value;
    if value.scale() < 2 {
        value.rescale(2);
    }
    value.to_string()
}

fn view(party: Option<&Party>, balance: &Balance) -> Value {
    let mut body = json!({
        "balance": figure(balance.balance),
        "reserved": figure(balance.reserved),
        "incoming": figure(balance.incoming),
        "available": figure(balance.available()),
        "currency": balance.currency.to_string(),
    });
    if let Some(party) = party {
        body["partyIdType"] = json!(party.id_type.as_str());
        body["partyIdentifier"] = json!(party.identifier);
        if let Some(sub_id) = &party.sub_id {
            body["partySubIdOrType"] = json!(sub_id);
        }
    }
    body
}

async fn one(
    State(api): State<LedgerApi>,
    Path((id_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    account(&api, &headers, (&id_type, &id, None))
}

async fn one_sub(
    State(api): State<LedgerApi>,
    Path((id_type, id, sub_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    account(&api, &headers, (&id_type, &id, Some(&sub_id)))
}

fn account(
    api: &LedgerApi,
    headers: &HeaderMap,
    (id_type, id, sub_id): (&str, &str, Option<&str>),
) -> Result<Json<Value>, Problem> {
    let tenant = tenant_in(&api.tenants, headers)?;
    let id_type: PartyIdType = id_type.parse()?;
    let party = Party::with_sub_id(id_type, id, sub_id).map_err(|e| Problem::bad_request(e.to_string()))?;
    match api.ledger.balance(&tenant.id, &party) {
        Ok(Some(balance)) => Ok(Json(view(None, &balance))),
        Ok(None) => Err(Problem::not_found(format!("tenant {} has no account for {party}", tenant.id))),
        Err(error) => Err(Problem::unavailable(error.to_string())),
    }
}

async fn list(State(api): State<LedgerApi>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    let tenant = tenant_in(&api.tenants, &headers)?;
    let accounts = api.ledger.accounts(&tenant.id).map_err(|e| Problem::unavailable(e.to_string()))?;
    let accounts: Vec<Value> = accounts.iter().map(|(party, balance)| view(Some(party), balance)).collect();
    Ok(Json(json!({ "accounts": accounts })))
}
