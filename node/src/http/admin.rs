//! The cluster admin endpoints: `/cluster/local` (what this node's replicas
//! know) and `/cluster/status` (every member's view, gathered by this node;
//! a member that does not answer is shown as unreachable).

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

/// How long `/cluster/status` waits for each member.
const MEMBER_TIMEOUT: Duration = Duration::from_millis(1_000);

pub fn routes() -> Router<AppState> {
    Router::new().route("/cluster/local", get(local)).route("/cluster/status", get(status))
}

fn local_view(state: &AppState) -> Value {
    let engine = &state.engine;
    json!({
        "node": engine.config.node_id,
        "zone": engine.config.zone,
        "http": engine.config.listen.to_string(),
        "grpc": engine.config.grpc_listen.to_string(),
        "liveTransactions": engine.transactions.live_count(),
        "groups": engine.raft.status(),
    })
}

async fn local(State(state): State<AppState>) -> Json<Value> {
    Json(local_view(&state))
}

async fn status(State(state): State<AppState>) -> Json<Value> {
    let placement = state.engine.raft.placement().clone();
    // One client (and its connection pool) for every status request.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http =
        CLIENT.get_or_init(|| reqwest::Client::builder().timeout(MEMBER_TIMEOUT).build().unwrap_or_default());
    let own = state.engine.config.node_id;
    let views = placement.members.iter().map(|member| {
        let (http, state) = (http.clone(), state.clone());
        async move {
            if member.id.0 == own {
                return json!({ "reachable": true, "view": local_view(&state) });
            }
            let url = format!("http://{}/cluster/local", member.http);
            match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => match response.json::<Value>().await {
                    Ok(view) => json!({ "reachable": true, "view": view }),
                    Err(error) => json!({ "reachable": false, "error": error.to_string() }),
                },
                Ok(response) => json!({ "reachable": false, "error": format!("HTTP {}", response.status()) }),
                Err(error) => json!({ "reachable": false, "error": error.to_string() }),
            }
        }
    });
    let views = futures::future::join_all(views).await;
    let members: Vec<Value> = placement
        .members
        .iter()
        .zip(views)
        .map(|(member, view)| {
            let mut entry = json!({
                "node": member.id.0,
                "zone": member.zone,
                "http": member.http,
                "grpc": member.grpc,
            });
            if let (Some(target), Some(source)) = (entry.as_object_mut(), view.as_object()) {
                target.extend(source.clone());
            }
            entry
        })
        .collect();
    let shards: Vec<Value> = placement
        .replicas
        .iter()
        .map(|(shard, replicas)| json!({ "shard": shard.0, "replicas": replicas.iter().map(|n| n.0).collect::<Vec<_>>() }))
        .collect();
    let recorded = state.engine.store.topology(actors::model::ShardId::METADATA).ok().flatten();
    Json(json!({
        "askedNode": own,
        "recordedTopology": recorded,
        "replicationFactor": placement.replication_factor,
        "members": members,
        "placement": shards,
    }))
}
