//! The node's HTTP surface: channel API, ledger API, FSPIOP endpoints, the
//! switch simulator, `/metrics` and `/health`.

mod admin;
mod channel;
pub mod ledger;
mod operator;
mod oracle;
mod requests;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use actors::model::TenantId;
use connectors::tenants::{Tenant, Tenants};

use crate::engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: PrometheusHandle,
}

/// An RFC 9457 problem details answer.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip)]
    pub retry_after_s: Option<u32>,
}

/// A forwarded read or list that no leader answered (503), or that failed
/// there (500).
impl From<crate::forward::ForwardError> for Problem {
    fn from(error: crate::forward::ForwardError) -> Problem {
        match error {
            crate::forward::ForwardError::Unavailable(message) => Problem::unavailable(message),
            crate::forward::ForwardError::Failed(message) => Problem::internal(message),
        }
    }
}

/// An id, a party type or a currency in a path or body that does not parse.
impl From<actors::model::ModelError> for Problem {
    fn from(error: actors::model::ModelError) -> Problem {
        Problem::bad_request(error.to_string())
    }
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "Invalid request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "Not found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem {
            retry_after_s: Some(1),
            ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable", detail)
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after_s;
        let mut response =
            (status, [("content-type", "application/problem+json")], Json(self)).into_response();
        if let Some(seconds) = retry_after {
            if let Ok(value) = seconds.to_string().parse() {
                response.headers_mut().insert("retry-after", value);
            }
        }
        response
    }
}

/// The tenant a channel or ledger request names in `Platform-TenantId`.
pub fn tenant_of(state: &AppState, headers: &HeaderMap) -> Result<Tenant, Problem> {
    tenant_in(&state.engine.tenants, headers)
}

/// The tenant of `tenants` a request names in `Platform-TenantId`.
pub fn tenant_in(tenants: &Tenants, headers: &HeaderMap) -> Result<Tenant, Problem> {
    let Some(value) = headers.get("platform-tenantid") else {
        return Err(Problem::bad_request("header Platform-TenantId is missing"));
    };
    let value = value.to_str().map_err(|_| Problem::bad_request("header Platform-TenantId is not text"))?;
    let id = TenantId::try_from(value.to_owned()).map_err(|e| Problem::bad_request(e.to_string()))?;
    tenants.get(&id).cloned().ok_or_else(|| {
        Problem::bad_request(format!("Platform-TenantId {value:?} names no tenant served here"))
    })
}

/// The node's HTTP surface. Without a TLS listener for FSPIOP
/// (`fspiop.tls.listen`) it includes the [`fspiop_router`]; with one, that
/// is served there instead (see [`crate::tls`]).
pub fn router(state: AppState) -> Router {
    let engine = state.engine.clone();
    let mut app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(channel::routes())
        .merge(admin::routes())
        .merge(oracle::routes())
        .merge(operator::routes())
        .merge(requests::routes())
        .with_state(state);
    app = match &engine.ledger {
        Some(ledger) => app.merge(ledger::routes(ledger::LedgerApi {
            ledger: ledger.clone(),
            tenants: engine.tenants.clone(),
        })),
        None => app.merge(ledger::external_routes(&engine.config.ams_url)),
    };
    if engine.config.fspiop.tls.listen.is_none() {
        app = app.merge(fspiop_routes(&engine));
    }
    layered(app, &engine)
}

/// What the scheme calls: the tenants' FSPIOP endpoints and, when it runs
/// here, the switch simulator's.
pub fn fspiop_router(engine: &Arc<Engine>) -> Router {
    layered(fspiop_routes(engine), engine)
}

fn fspiop_routes(engine: &Arc<Engine>) -> Router {
    let mut app = connectors::fspiop::inbound::router(engine.inbound.clone());
    if let Some(switch) = &engine.switch {
        app = app.merge(switch.router());
    }
    app
}

fn layered(app: Router, engine: &Engine) -> Router {
    app.layer(DefaultBodyLimit::max(engine.config.http_body_bytes_max))
        .layer(middleware::from_fn(record_request))
}

async fn health(State(state): State<AppState>) -> Response {
    // Up when every group this node holds a replica of knows a leader.
    let shards = state.engine.raft.shards();
    let leading = shards.iter().filter(|s| state.engine.raft.is_leader(**s)).count();
    let led = shards.iter().filter(|s| state.engine.raft.leader_of(**s).is_some()).count();
    let body = serde_json::json!({
        "status": if led == shards.len() { "UP" } else { "DEGRADED" },
        "node": state.engine.config.node_id,
        "zone": state.engine.config.zone,
        "groups": shards.len(),
        "groupsWithLeader": led,
        "groupsLed": leading,
        "liveTransactions": state.engine.transactions.live_count(),
        "nodes": state.engine.store.nodes(actors::model::ShardId::METADATA).unwrap_or_default()
            .into_iter()
            .map(|(node, address, zone)| serde_json::json!({ "node": node, "address": address, "zone": zone }))
            .collect::<Vec<_>>(),
    });
    let status = if led == shards.len() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}

/// Records every request's latency by route and status.
pub async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics::histogram!(
        "payhub_http_request_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}
