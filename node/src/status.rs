//! `payhub status`: the cluster as one node's `/cluster/status` shows it,
//! printed as tables (members, then shards with their leader and lag).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context as _;
use serde_json::Value;

/// `/cluster/status` of the node at `node`.
async fn fetch(http: &reqwest::Client, node: &str) -> anyhow::Result<Value> {
    let url = format!("http://{node}/cluster/status");
    Ok(http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("node {node} does not answer"))?
        .error_for_status()?
        .json()
        .await?)
}

/// Whether every group is led by its preferred replica (the first placed)
/// and has exactly its placed replicas as voters: the cluster at rest.
fn at_rest(status: &Value) -> bool {
    let empty = Vec::new();
    let members = status["members"].as_array().unwrap_or(&empty);
    let placement = status["placement"].as_array().unwrap_or(&empty);
    !placement.is_empty()
        && placement.iter().all(|placed| {
            let shard = &placed["shard"];
            let replicas = placed["replicas"].as_array().unwrap_or(&empty);
            let Some(preferred) = replicas.first() else { return false };
            members.iter().any(|member| {
                &member["node"] == preferred
                    && member["view"]["groups"].as_array().unwrap_or(&empty).iter().any(|group| {
                        let mut voters = group["voters"].as_array().cloned().unwrap_or_default();
                        let mut placed = replicas.clone();
                        voters.sort_by_key(|v| v.as_u64());
                        placed.sort_by_key(|v| v.as_u64());
                        &group["shard"] == shard && group["role"] == "leader" && voters == placed
                    })
            })
        })
}

/// Waits until the cluster is at rest (see [`at_rest`]), for at most `seconds`.
pub async fn wait_at_rest(node: &str, seconds: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Ok(status) = fetch(&http, node).await {
            if at_rest(&status) {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the cluster is not at rest after {seconds} s (leaders or replicas still moving)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

pub async fn print(node: &str, raw: bool) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let status = fetch(&http, node).await?;
    let mut out = String::new();
    if raw {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&status)?);
        return emit(&out);
    }
    let empty = Vec::new();
    let members = status["members"].as_array().unwrap_or(&empty);
    let _ = writeln!(
        out,
        "{:<6} {:<8} {:<22} {:<12} {:>6} {:>6}",
        "NODE", "ZONE", "HTTP", "STATE", "GROUPS", "LEADS"
    );
    // shard -> (leader as each live replica sees it, role by node, applied by node, lag)
    let mut shards: BTreeMap<u64, Vec<(u64, Value)>> = BTreeMap::new();
    for member in members {
        let node = member["node"].as_u64().unwrap_or(0);
        let reachable = member["reachable"].as_bool().unwrap_or(false);
        let groups = member["view"]["groups"].as_array().cloned().unwrap_or_default();
        let leads = groups.iter().filter(|g| g["role"] == "leader").count();
        let state = if reachable { "up" } else { "UNREACHABLE" };
        let _ = writeln!(
            out,
            "{:<6} {:<8} {:<22} {:<12} {:>6} {:>6}",
            node,
            member["zone"].as_str().unwrap_or("?"),
            member["http"].as_str().unwrap_or("?"),
            state,
            if reachable { groups.len().to_string() } else { "-".into() },
            if reachable { leads.to_string() } else { "-".into() },
        );
        for group in groups {
            shards.entry(group["shard"].as_u64().unwrap_or(0)).or_default().push((node, group));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<7} {:<10} {:>6} {:<8} {:>10} {:<24}",
        "SHARD", "REPLICAS", "TERM", "LEADER", "APPLIED", "LAG (node:entries)"
    );
    for placed in status["placement"].as_array().unwrap_or(&empty) {
        let shard = placed["shard"].as_u64().unwrap_or(0);
        let replicas: Vec<String> =
            placed["replicas"].as_array().unwrap_or(&empty).iter().map(|n| n.to_string()).collect();
        let seen = shards.get(&shard).cloned().unwrap_or_default();
        let leader = seen.iter().find(|(_, g)| g["role"] == "leader");
        let (term, leader_name, applied, lag) = match leader {
            Some((node, group)) => {
                let mut lag: Vec<String> = group["replication_lag"]
                    .as_object()
                    .map(|l| l.iter().map(|(n, v)| format!("{n}:{v}")).collect())
                    .unwrap_or_default();
                // Replicas moving: the group's members are not yet the placed ones.
                let ids = |key: &str| -> Vec<String> {
                    let mut ids: Vec<String> =
                        group[key].as_array().unwrap_or(&empty).iter().map(|n| n.to_string()).collect();
                    ids.sort();
                    ids
                };
                let (voters, learners) = (ids("voters"), ids("learners"));
                let mut placed = replicas.clone();
                placed.sort();
                if voters != placed || !learners.is_empty() {
                    lag.push(format!(
                        "(moving: voters {} learners {})",
                        voters.join(","),
                        learners.join(",")
                    ));
                }
                (
                    group["term"].to_string(),
                    node.to_string(),
                    group["last_applied"].to_string(),
                    lag.join(" "),
                )
            }
            None => ("-".into(), "NONE".into(), "-".into(), String::new()),
        };
        let _ = writeln!(
            out,
            "{:<7} {:<10} {:>6} {:<8} {:>10} {:<24}",
            shard,
            replicas.join(","),
            term,
            leader_name,
            applied,
            lag
        );
    }
    emit(&out)
}

/// Writes the report; a closed pipe (`payhub status | head`) is not an error.
fn emit(out: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
