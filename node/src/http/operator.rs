//! `/operator/attention`: the transactions an operator must look at, from
//! the replicas this node holds: a flow that stopped for an operator (the
//! scheme committed a transfer with a fulfilment that does not match its
//! condition, say: the payer's funds stay held) and a transfer the scheme
//! reported committed after the funds were released (money moved on the
//! scheme but not in the AMS). `Platform-TenantId`, when given, keeps one
//! tenant's. Every shard's replicas keep the index, so in a cluster whose
//! nodes each hold every shard (3 nodes, 3 replicas) any node lists them
//! all; otherwise ask each node.
//!
//! `/operator/transactions/{id}/decision`: an operator resolves one, having
//! checked the scheme's and the AMS's records: books or releases the held
//! funds, or acknowledges a reconciliation.
//!
//! `/operator/transactions/{id}/payee`: what the payee's DFSP knows of a
//! payment (FSPIOP `GET /transactions/{ID}`), one of those records.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use actors::flow::{Input, OperatorDecision, State as Transaction};
use actors::model::TransactionId;
use connectors::fspiop::waiters::AskError;

use super::{tenant_of, AppState, Problem};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/operator/attention", get(attention))
        .route("/operator/transactions/{id}/decision", post(decide))
        .route("/operator/transactions/{id}/payee", get(ask_payee))
}

/// An operator's decision, `POST /operator/transactions/{id}/decision`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    /// `COMMIT` or `RELEASE` a transaction in `NEEDS_OPERATOR` (a commit only
    /// once a transfer was sent: the funds are held), or `ACKNOWLEDGE` the
    /// reconciliation of a final one flagged `reconciliationRequired`.
    decision: OperatorDecision,
    /// Who decides (kept in the transaction's reason and history).
    operator: String,
    /// Why: what the scheme's and the AMS's records showed.
    note: String,
}

/// `POST /operator/transactions/{id}/decision` (`Platform-TenantId`
/// required): steps the transaction with the decision, through its shard's
/// Raft group like any input, and answers its state once the decision took
/// effect (200), or 202 if that takes longer than a few seconds; 409 when
/// the decision does not apply to the transaction as it is.
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let id: TransactionId = id.parse()?;
    let decision: Decision =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("body: {e}")))?;
    for (field, value) in [("operator", &decision.operator), ("note", &decision.note)] {
        if value.trim().is_empty() || value.chars().count() > 128 {
            return Err(Problem::bad_request(format!("{field} must be 1 to 128 characters")));
        }
    }
    let engine = &state.engine;
    let tenant = &tenant;
    let read = |wait| async move {
        let (found, _) = engine.read(&id, wait).await?;
        found
            .filter(|t| *t.tenant() == tenant.id)
            .ok_or_else(|| Problem::not_found(format!("no transaction {id} for tenant {}", tenant.id)))
    };
    let before = read(Duration::ZERO).await?;
    if !before.accepts(decision.decision) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Decision does not apply",
            format!(
                "{:?} does not apply to transaction {id} in {} (reconciliationRequired: {})",
                decision.decision,
                before.phase().as_str(),
                before.reconciliation_required()
            ),
        ));
    }
    tracing::warn!(transaction = %id, tenant = %before.tenant(), decision = ?decision.decision,
        operator = %decision.operator, note = %decision.note, "operator decision");
    let input = Input::OperatorDecided {
        decision: decision.decision,
        operator: decision.operator,
        note: decision.note,
    };
    engine.callbacks.deliver(before.tenant(), id, input).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // A read that asks to wait returns once the transaction is final.
        let now = read(Duration::from_secs(1)).await?;
        if now.phase().is_final() && !now.needs_attention() {
            return Ok((StatusCode::OK, Json(view(&now))));
        }
        if Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, Json(view(&now))));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /operator/transactions/{id}/payee` (`Platform-TenantId`
/// required): asks the payee's DFSP of one of the tenant's payments what
/// it knows of the transaction and answers that (`transactionState`,
/// `completedTimestamp`, `code`); 409 when the payment has no payee DFSP
/// yet (it never got past the lookup), 502 with the FSPIOP error when the
/// payee's DFSP refuses, 504 when no answer comes in time.
async fn ask_payee(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let id: TransactionId = id.parse()?;
    let (found, _) = state.engine.read(&id, Duration::ZERO).await?;
    let payment = found
        .as_ref()
        .and_then(Transaction::as_p2p)
        .filter(|t| t.request.tenant == tenant.id)
        .ok_or_else(|| Problem::not_found(format!("no payment {id} for tenant {}", tenant.id)))?;
    let Some(payee_fsp) = &payment.payee_fsp else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "No payee DFSP",
            format!("payment {id} never learned its payee's DFSP ({})", payment.phase.as_str()),
        ));
    };
    match state.engine.inbound.transactions.ask(&tenant, id.0, payee_fsp).await {
        Ok(answer) => Ok(Json(json!({
            "transactionId": id,
            "payeeFsp": payee_fsp,
            "transactionState": answer.transaction_state,
            "completedTimestamp": answer.completed_timestamp,
            "code": answer.code,
        }))),
        Err(AskError::Refused(error)) => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "Refused by the payee's DFSP",
            format!(
                "{payee_fsp} answered {} {}",
                error.error_information.error_code, error.error_information.error_description
            ),
        )),
        Err(error @ AskError::NotDelivered(_)) => {
            Err(Problem::new(StatusCode::BAD_GATEWAY, "Not delivered", error.to_string()))
        }
        Err(error @ AskError::Timeout(_)) => Err(Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "No answer from the payee's DFSP",
            format!("{payee_fsp}: {error}"),
        )),
    }
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
            if tenant.as_ref().is_none_or(|t| t == record.tenant()) {
                found.insert(record.id(), record);
            }
        }
    }
    let transactions: Vec<Value> = found.values().map(view).collect();
    Ok(Json(json!({ "count": transactions.len(), "transactions": transactions })))
}

/// What an operator sees of a transaction.
fn view(t: &Transaction) -> Value {
    let amount = t.amount();
    json!({
        "transactionId": t.id(),
        "flow": t.kind().as_str(),
        "tenant": t.tenant().to_string(),
        "phase": t.phase().as_str(),
        "transferState": t.transfer_state(),
        "reconciliationRequired": t.reconciliation_required(),
        "reason": t.reason().map(|r| json!({ "code": r.code, "message": r.message })),
        "payer": t.payer().to_string(),
        "payee": t.payee().to_string(),
        "counterpartFsp": t.counterpart_fsp(),
        "amount": { "amount": amount.value_string(), "currency": amount.currency.to_string() },
        "updatedAt": connectors::fspiop::headers::timestamp(t.updated_at_ms()),
    })
}
