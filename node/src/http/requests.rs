//! The channel's side of requests to pay: the payees' requests that wait
//! for the tenant's payers (`GET /channel/requests`), and the payer's
//! decision on one (`POST /channel/requests/{transactionId}/decision`).
//! A request that asked for a one-time password is approved by the payer
//! entering it at the payee's device, not here: the list shows the
//! password (`authorization.password`) for the channel to give its
//! customer (by SMS, in its app); the payer can still reject it here.
//! An approved request is paid like any P2P payment and read at
//! `GET /channel/transfer/{transactionId}`.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use actors::flow::{Input, P2pState, Reason};
use actors::model::TransactionId;
use connectors::fspiop::{codes, otp};
use connectors::tenants::Tenant;

use super::{tenant_of, AppState, Problem};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/channel/requests", get(list))
        .route("/channel/requests/{transaction_id}/decision", post(decide))
}

/// What a payer sees of a request to be paid (the password of one that
/// asked for it, once asked).
fn view(tenant: &Tenant, t: &P2pState) -> Value {
    let request = t.request.transaction_request.as_ref();
    let authorization = match (request.and_then(|r| r.authentication), t.authorization) {
        (Some(kind), Some(a)) if !a.authorized => json!({
            "authenticationType": kind.as_str(),
            "password": otp::password(&tenant.ilp_secret, &t.id.to_string(), a.issue),
            "retriesLeft": a.retries_left,
            "amount": t.quote.as_ref().map(|q| json!({
                "amount": q.transfer_amount.value_string(),
                "currency": q.transfer_amount.currency.to_string(),
            })),
        }),
        (Some(kind), _) => json!({ "authenticationType": kind.as_str() }),
        (None, _) => Value::Null,
    };
    json!({
        "transactionId": t.id,
        "transactionRequestId": request.map(|r| r.id),
        "payeeFsp": request.map(|r| r.payee_fsp.clone()),
        "scenario": request.map(|r| r.scenario.clone()),
        "payer": t.request.payer.to_string(),
        "payee": t.request.payee.to_string(),
        "amount": { "amount": t.request.amount.value_string(), "currency": t.request.amount.currency.to_string() },
        "phase": t.phase.as_str(),
        "expiresAt": request.map(|r| connectors::fspiop::headers::timestamp(r.expiration_ms)),
        "createdAt": connectors::fspiop::headers::timestamp(t.created_at_ms),
        "authorization": authorization,
    })
}

/// `GET /channel/requests` (`Platform-TenantId`): the payees' requests that
/// wait for the tenant's payers, oldest first, from every node of a
/// cluster (503 when some shard's leader does not answer: its requests
/// would be missing).
async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let waiting = state.engine.awaiting_approval(&tenant.id).await?;
    let requests: Vec<Value> = waiting.iter().map(|t| view(&tenant, t)).collect();
    Ok(Json(json!({ "count": requests.len(), "requests": requests })))
}

/// The payer's decision, `POST /channel/requests/{transactionId}/decision`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    /// `APPROVE` (pay it) or `REJECT`.
    decision: Verdict,
    /// Why a rejection (sent to the payee's DFSP); at most 128 characters.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Verdict {
    Approve,
    Reject,
}

/// Steps the request's transaction with the payer's decision, through its
/// shard's Raft group like any input, and answers its state once the
/// decision took effect (200), or 202 if that takes longer than a few
/// seconds; 409 when the request no longer waits for a decision.
async fn decide(
    State(state): State<AppState>,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let tenant = tenant_of(&state, &headers)?;
    let id: TransactionId = transaction_id.parse()?;
    let decision: Decision =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("body: {e}")))?;
    if let Some(reason) = &decision.reason {
        if reason.trim().is_empty() || reason.chars().count() > 128 {
            return Err(Problem::bad_request("reason must be 1 to 128 characters"));
        }
    }
    let engine = &state.engine;
    let tenant = &tenant;
    let read = || async move {
        let (found, _) = engine.read(&id, Duration::ZERO).await?;
        found
            .as_ref()
            .and_then(actors::flow::State::as_p2p)
            .filter(|t| t.request.tenant == tenant.id && t.request.transaction_request.is_some())
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no request to be paid {id} for tenant {}", tenant.id)))
    };
    let before = read().await?;
    if !before.awaits_payer() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Request already decided",
            format!("request {id} is {}, no longer waiting for the payer", before.phase.as_str()),
        ));
    }
    if before.awaits_password() && matches!(decision.decision, Verdict::Approve) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Approved by password",
            format!("request {id} is approved by the payer entering its password at the payee's device; it can only be rejected here"),
        ));
    }
    let input = match decision.decision {
        Verdict::Approve => Input::RequestApproved,
        Verdict::Reject => Input::RequestRejected {
            reason: Reason::new(
                codes::PAYER_REJECTED_REQUEST,
                decision.reason.unwrap_or_else(|| "the payer rejected the request".into()),
            ),
        },
    };
    tracing::info!(transaction = %id, tenant = %tenant.id, decision = ?decision.decision, "payer decided a request to be paid");
    engine.callbacks.deliver(&tenant.id, id, input).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = read().await?;
        if !now.awaits_payer() {
            return Ok((StatusCode::OK, Json(view(tenant, &now))));
        }
        if Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, Json(view(tenant, &now))));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
