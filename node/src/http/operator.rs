//! `/operator/attention`: the transactions an operator must look at, from
//! the replicas this node holds: a flow that stopped for an operator (the
//! scheme committed a transfer with a fulfilment that does not match its
//! condition, say: the payer's funds stay held) and a transfer the scheme
//! reported committed after the funds were released (money moved on the
//! scheme but not in the AMS). `Platform-TenantId`, when given, keeps one
//! tenant's. Every shard's replicas keep the index, so in a cluster whose
//! nodes each hold every shard (3 nodes, 3 replicas) any node lists them
//! all; otherwise ask each node.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{tenant_of, AppState, Problem};

pub fn routes() -> Router<AppState> {
    Router::new().route("/operator/attention", get(attention))
}

async fn attention(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    let tenant = match headers.contains_key("platform-tenantid") {
        true => Some(tenant_of(&state, &headers)?.id),
        false => None,
    };
    let engine = &state.engine;
    let mut found = BTreeMap::new();
    for shard in engine.raft.transaction_shards() {
        let records = engine.store.needing_attention(shard).map_err(|e| Problem::internal(e.to_string()))?;
        for record in records {
            if tenant.as_ref().is_none_or(|t| *t == record.request.tenant) {
                found.insert(record.id, record);
            }
        }
    }
    let transactions: Vec<Value> = found
        .values()
        .map(|t| {
            json!({
                "transactionId": t.id,
                "tenant": t.request.tenant.to_string(),
                "phase": t.phase.as_str(),
                "transferState": t.transfer_state(),
                "reconciliationRequired": t.reconciliation_required,
                "reason": t.reason.as_ref().map(|r| json!({ "code": r.code, "message": r.message })),
                "payer": t.request.payer.to_string(),
                "payee": t.request.payee.to_string(),
                "payeeFsp": t.payee_fsp,
                "amount": { "amount": t.request.amount.value_string(), "currency": t.request.amount.currency.to_string() },
                "updatedAt": connectors::fspiop::headers::timestamp(t.updated_at_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "count": transactions.len(), "transactions": transactions })))
}
