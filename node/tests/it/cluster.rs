//! A real cluster of `payhub` processes on loopback (3 nodes in 3 zones, the
//! switch simulator and AMS in a `payhub sim` process), driven by 1,000
//! payments while nodes are SIGKILLed, SIGSTOPped, lost with their zone,
//! wiped, or a fourth node joins. The checker is the one of the crash test: every accepted payment
//! ends COMMITTED or ABORTED exactly once, nothing is left reserved, and the
//! sum of the balances is unchanged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

use crate::checker::{payments, Balances, Expected, Payment};
use crate::node::{transfer_body, TENANT_BLUE, TENANT_GREEN};

/// Small amounts: 1,000 payments never exhaust a demo account.
fn cents(i: usize) -> i64 {
    1 + (i as i64 * 37) % 99
}

const NODES: u64 = 3;
const PAYMENTS: usize = 1_000;
/// Clients sending at once.
const CONCURRENCY: usize = 12;
/// openraft bounds each AppendEntries by the heartbeat interval (a third
/// of this), which must fit a batch's fsync on a loaded 2-core machine.
const ELECTION_TIMEOUT_MS: u64 = 300;
/// Log entries between snapshots: small, so the faults cross snapshots and
/// log compaction.
const SNAPSHOT_EVERY: u64 = 200;

struct Process {
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Process {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let child = Command::new(env!("CARGO_BIN_EXE_payhub"))
            .args(&self.args)
            .env("PAYHUB_LOG", "info,openraft=warn")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start payhub");
        self.child = Some(child);
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
            assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// The processes of one cluster.
pub struct Cluster {
    tempdir: Option<tempfile::TempDir>,
    dir: PathBuf,
    sim: Process,
    sim_address: String,
    nodes: BTreeMap<u64, Process>,
    http: BTreeMap<u64, String>,
    block: u8,
    pub client: reqwest::Client,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(0).await
    }

    /// Starts the 3-node cluster; `joining` more nodes are configured (in
    /// zones a, b, ... in turn) to join it later ([`Cluster::join`]).
    pub async fn start_with(joining: u64) -> Cluster {
        Cluster::launch(joining, false).await
    }

    /// A 3-node cluster whose switch simulator delivers each message to a
    /// DFSP's next node in turn, as a load balancer would: the quote and
    /// the transfer of one payment reach different nodes.
    pub async fn start_spread() -> Cluster {
        Cluster::launch(0, true).await
    }

    async fn launch(joining: u64, spread: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        // A loopback block of its own, so parallel tests never share ports.
        let block = 1 + (std::process::id() % 200) as u8 + (rand_byte() % 50);
        let first = format!("127.0.{block}.11");
        let sim_address = format!("127.0.{block}.1:8090");
        let written = Command::new(env!("CARGO_BIN_EXE_payhub"))
            .args(["local-cluster", "--zones", "3", "--first-address", &first])
            .args(["--sim", &sim_address, "--election-timeout-ms", &ELECTION_TIMEOUT_MS.to_string()])
            .args(["--snapshot-every", &SNAPSHOT_EVERY.to_string()])
            .args(["--nodes", &(NODES + joining).to_string(), "--joining", &joining.to_string()])
            .arg("--dir")
            .arg(&path)
            .output()
            .expect("payhub local-cluster");
        assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
        let process = |name: &str, args: Vec<String>| Process {
            child: None,
            args,
            env: Vec::new(),
            log: path.join(format!("{name}.log")),
        };
        let config = |name: &str| path.join(format!("{name}.toml")).display().to_string();
        let mut cluster = Cluster {
            sim: process("sim", vec!["sim".into(), "--config".into(), config("sim")]),
            sim_address,
            nodes: BTreeMap::new(),
            http: BTreeMap::new(),
            block: 0,
            client: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client"),
            dir: path.clone(),
            tempdir: Some(dir),
        };
        if spread {
            cluster.sim.env.push(("PAYHUB_SIMULATOR_SPREAD".into(), "true".into()));
        }
        cluster.sim.spawn();
        cluster.wait_healthy(&cluster.sim_address.clone(), Duration::from_secs(60)).await;
        for id in 1..=NODES + joining {
            let name = format!("node-{id}");
            let node = process(&name, vec!["run".into(), "--config".into(), config(&name)]);
            cluster.nodes.insert(id, node);
            cluster.http.insert(id, format!("127.0.{block}.{}:8080", 10 + id));
        }
        for id in 1..=NODES {
            cluster.nodes.get_mut(&id).expect("node").spawn();
        }
        // Only running nodes are addressed until the others join.
        cluster.http.retain(|id, _| *id <= NODES);
        cluster.block = block;
        for id in 1..=NODES {
            cluster.wait_healthy(&cluster.http[&id].clone(), Duration::from_secs(60)).await;
        }
        cluster
    }

    async fn wait_healthy(&self, address: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(response) = self.client.get(format!("http://{address}/health")).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{address} did not become healthy; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn logs(&self) -> String {
        let mut text = String::new();
        let names = std::iter::once("sim".to_owned()).chain(self.nodes.keys().map(|id| format!("node-{id}")));
        for name in names {
            let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            text += &format!(
                "--- {name} (last lines)\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        text
    }

    /// Starts configured node `id`, which joins the running cluster.
    pub async fn join(&mut self, id: u64) {
        self.http.insert(id, format!("127.0.{}.{}:8080", self.block, 10 + id));
        self.restart(id).await;
    }

    /// Waits until every group's replicas are where the placement that
    /// `asked` follows says: each node runs exactly its placed groups, and
    /// each group's leader has the placed replicas as voters and no other
    /// members. Answers the placement (shard -> replicas).
    pub async fn wait_placed(&self, asked: u64, members: usize, within: Duration) -> BTreeMap<u64, Vec<u64>> {
        self.wait_placed_without(asked, members, &[], within).await
    }

    /// [`Self::wait_placed`], but the nodes `away` (stopped or cut off) are
    /// not asked: the others' groups are where placed.
    pub async fn wait_placed_without(
        &self,
        asked: u64,
        members: usize,
        away: &[u64],
        within: Duration,
    ) -> BTreeMap<u64, Vec<u64>> {
        let deadline = Instant::now() + within;
        loop {
            let url = format!("http://{}/cluster/status", self.http[&asked]);
            let status: Value = match self.client.get(url).send().await {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let placement: BTreeMap<u64, Vec<u64>> = status["placement"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let replicas = p["replicas"].as_array().cloned().unwrap_or_default();
                    (p["shard"].as_u64().unwrap_or(0), replicas.iter().filter_map(Value::as_u64).collect())
                })
                .collect();
            let views = status["members"].as_array().cloned().unwrap_or_default();
            let settled = views.len() == members
                && !placement.is_empty()
                && views.iter().all(|member| {
                    let node = member["node"].as_u64().unwrap_or(0);
                    if away.contains(&node) {
                        return true;
                    }
                    let groups = member["view"]["groups"].as_array().cloned().unwrap_or_default();
                    let hosted: Vec<u64> = groups.iter().filter_map(|g| g["shard"].as_u64()).collect();
                    let placed: Vec<u64> =
                        placement.iter().filter(|(_, r)| r.contains(&node)).map(|(s, _)| *s).collect();
                    let leaders_agree = groups.iter().filter(|g| g["role"] == "leader").all(|g| {
                        let mut voters: Vec<u64> = g["voters"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .filter_map(Value::as_u64)
                            .collect();
                        voters.sort_unstable();
                        let mut placed =
                            placement.get(&g["shard"].as_u64().unwrap_or(0)).cloned().unwrap_or_default();
                        placed.sort_unstable();
                        voters == placed && g["learners"].as_array().is_some_and(|l| l.is_empty())
                    });
                    member["reachable"] == true && hosted == placed && leaders_agree
                });
            if settled {
                return placement;
            }
            assert!(Instant::now() < deadline, "replicas not where placed: {status}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn kill(&mut self, id: u64) {
        self.nodes.get_mut(&id).expect("node").kill();
    }

    pub async fn restart(&mut self, id: u64) {
        self.nodes.get_mut(&id).expect("node").spawn();
        self.wait_healthy(&self.http[&id].clone(), Duration::from_secs(60)).await;
    }

    pub fn pause(&self, id: u64) {
        self.nodes[&id].signal("STOP");
    }

    pub fn resume(&self, id: u64) {
        self.nodes[&id].signal("CONT");
    }

    pub fn wipe(&self, id: u64) {
        let _ = std::fs::remove_dir_all(self.dir.join(format!("node-{id}")));
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// What node `id` knows of its groups (None if it does not answer).
    pub async fn local(&self, id: u64) -> Option<Value> {
        let url = format!("http://{}/cluster/local", self.http[&id]);
        let response = self.client.get(url).timeout(Duration::from_millis(500)).send().await.ok()?;
        response.json().await.ok()
    }

    /// Shards each node leads now, by node.
    pub async fn leaders(&self) -> BTreeMap<u64, u64> {
        let mut leaders = BTreeMap::new();
        for id in self.http.keys() {
            if let Some(view) = self.local(*id).await {
                for group in view["groups"].as_array().cloned().unwrap_or_default() {
                    if group["role"] == "leader" {
                        leaders.insert(group["shard"].as_u64().unwrap_or(0), *id);
                    }
                }
            }
        }
        leaders
    }

    /// The leaders of every shard once `shard` has one, and its leader.
    pub async fn leader_of(&self, shard: u64) -> (BTreeMap<u64, u64>, u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leaders = self.leaders().await;
            if let Some(leader) = leaders.get(&shard) {
                return (leaders.clone(), *leader);
            }
            assert!(Instant::now() < deadline, "{shard} has no leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every shard in `shards` is led by a node other than
    /// `dead`; answers how long that took.
    pub async fn failover_time(&self, dead: u64, shards: &[u64], since: Instant) -> Duration {
        let deadline = since + Duration::from_secs(30);
        loop {
            let leaders = self.leaders().await;
            if shards.iter().all(|s| leaders.get(s).is_some_and(|leader| *leader != dead)) {
                return since.elapsed();
            }
            assert!(Instant::now() < deadline, "no new leader for {shards:?} of node {dead}: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn balances(&self) -> Balances {
        let mut all = BTreeMap::new();
        for tenant in [TENANT_BLUE, TENANT_GREEN] {
            let body: Value = self
                .client
                .get(format!("http://{}/ledger/accounts", self.sim_address))
                .header("Platform-TenantId", tenant)
                .send()
                .await
                .expect("GET /ledger/accounts on the sim")
                .json()
                .await
                .expect("JSON accounts");
            for account in body["accounts"].as_array().expect("accounts") {
                let figure =
                    |k: &str| Decimal::from_str(account[k].as_str().expect("figure")).expect("decimal");
                let party = account["partyIdentifier"].as_str().expect("party").to_owned();
                all.insert(party, (figure("balance"), figure("reserved"), figure("incoming")));
            }
        }
        all
    }
}

impl Drop for Cluster {
    /// A failed test keeps the logs and data of every process.
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.tempdir.take() {
                eprintln!("cluster logs and data kept in {}", dir.keep().display());
            }
        }
    }
}

fn rand_byte() -> u8 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    (nanos % 251) as u8
}

/// Sends every payment through the nodes in turn; a payment whose request
/// fails (node dead, paused, no leader) is retried on the next node with the
/// same correlation id until one accepts it. Answers the transaction ids.
async fn send_all(
    client: reqwest::Client,
    nodes: Vec<String>,
    payments: Arc<Vec<Payment>>,
    accepted: Arc<AtomicUsize>,
) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (client, nodes, payments, accepted, next) =
            (client.clone(), nodes.clone(), payments.clone(), accepted.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut attempt = worker;
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(p) = payments.get(index) else { break };
                let body = transfer_body(&p.payer, &p.payee, &p.amount.to_string(), "USD");
                let started = Instant::now();
                let id = loop {
                    let node = &nodes[attempt % nodes.len()];
                    let sent = client
                        .post(format!("http://{node}/channel/transfer"))
                        .header("Platform-TenantId", p.tenant)
                        .header("X-CorrelationID", &p.correlation)
                        .timeout(Duration::from_secs(3))
                        .json(&body)
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        if response.status().is_success() {
                            let answer: Value = response.json().await.unwrap_or(Value::Null);
                            if let Some(id) = answer["transactionId"].as_str() {
                                break id.to_owned();
                            }
                        }
                    }
                    attempt += 1;
                    assert!(started.elapsed() < Duration::from_secs(120), "payment {index} never accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                ids.push((index, id));
            }
            ids
        }));
    }
    let mut ids = vec![String::new(); payments.len()];
    for worker in workers {
        for (index, id) in worker.await.expect("sender") {
            ids[index] = id;
        }
    }
    ids
}

/// Reads every payment's final state from any live node and runs the checker.
async fn check(cluster: &Cluster, payments: &[Payment], ids: &[String], initial: &Balances) {
    let mut expected = Expected::new(initial, ids);
    let live: Vec<String> = cluster.http.values().cloned().collect();
    for (i, (p, id)) in payments.iter().zip(ids).enumerate() {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut attempt = i;
        let mut last_seen = Value::Null;
        let transfer = loop {
            // Any node answers; a dead or paused one is skipped on the next try.
            let node = &live[attempt % live.len()];
            attempt += 1;
            let answer = cluster
                .client
                .get(format!("http://{node}/channel/transfer/{id}"))
                .header("Platform-TenantId", p.tenant)
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            if let Ok(response) = answer {
                if let Ok(transfer) = response.json::<Value>().await {
                    if matches!(transfer["transferState"].as_str(), Some("COMMITTED" | "ABORTED")) {
                        break transfer;
                    }
                    last_seen = transfer;
                }
            }
            assert!(
                Instant::now() < deadline,
                "transfer {id} never final (last seen: {last_seen}); logs:\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        expected.record(p, id, &transfer);
    }
    expected.check(initial, || cluster.balances()).await;
}

/// Runs the payments while `faults` runs, then checks.
async fn under_faults<F>(cluster: &mut Cluster, tag: &str, faults: F)
where
    F: AsyncFnOnce(&mut Cluster, Arc<AtomicUsize>),
{
    let initial = cluster.balances().await;
    assert_eq!(initial.len(), 10, "the sim seeds ten demo accounts");
    let payments = Arc::new(payments(tag, PAYMENTS, cents));
    let accepted = Arc::new(AtomicUsize::new(0));
    let nodes: Vec<String> = cluster.http.values().cloned().collect();
    let sender = tokio::spawn(send_all(cluster.client.clone(), nodes, payments.clone(), accepted.clone()));
    faults(cluster, accepted.clone()).await;
    let ids = sender.await.expect("senders");
    check(cluster, &payments, &ids, &initial).await;
}

async fn wait_accepted(accepted: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while accepted.load(Ordering::SeqCst) < at_least {
        assert!(Instant::now() < deadline, "only {} payments accepted", accepted.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_leader_of_each_shard_in_turn_loses_no_payment() {
    let mut cluster = Cluster::start().await;
    under_faults(&mut cluster, "sigkill", async |cluster: &mut Cluster, accepted: Arc<AtomicUsize>| {
        for round in 1..=NODES {
            wait_accepted(&accepted, round as usize * PAYMENTS / 5).await;
            // The node leading shard `round` dies, with every shard it leads.
            let (leaders, victim) = cluster.leader_of(round).await;
            let led: Vec<u64> = leaders.iter().filter(|(_, n)| **n == victim).map(|(s, _)| *s).collect();
            let killed = Instant::now();
            cluster.kill(victim);
            let took = cluster.failover_time(victim, &led, killed).await;
            println!("SIGKILL node {victim}: shards {led:?} led again after {} ms", took.as_millis());
            assert!(took < Duration::from_secs(5), "failover took {} ms", took.as_millis());
            cluster.restart(victim).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_longer_than_the_election_timeout_then_sigcont() {
    let mut cluster = Cluster::start().await;
    under_faults(&mut cluster, "sigstop", async |cluster: &mut Cluster, accepted: Arc<AtomicUsize>| {
        wait_accepted(&accepted, PAYMENTS / 4).await;
        let (leaders, victim) = cluster.leader_of(1).await;
        let led: Vec<u64> = leaders.iter().filter(|(_, n)| **n == victim).map(|(s, _)| *s).collect();
        let stopped = Instant::now();
        cluster.pause(victim);
        let took = cluster.failover_time(victim, &led, stopped).await;
        println!("SIGSTOP node {victim}: shards {led:?} led again after {} ms", took.as_millis());
        tokio::time::sleep(Duration::from_millis(ELECTION_TIMEOUT_MS * 10)).await;
        cluster.resume(victim);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_zone_under_load_then_it_comes_back_and_catches_up() {
    let mut cluster = Cluster::start().await;
    under_faults(&mut cluster, "zone", async |cluster: &mut Cluster, accepted: Arc<AtomicUsize>| {
        wait_accepted(&accepted, PAYMENTS / 4).await;
        // Zone c holds node 3 alone (nodes are placed in zones a, b, c in
        // turn); every shard keeps two of its three replicas.
        cluster.kill(3);
        wait_accepted(&accepted, PAYMENTS * 3 / 4).await;
        cluster.restart(3).await;
    })
    .await;
    // The zone that came back caught up: its replicas applied what the
    // leaders did.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views = [cluster.local(1).await, cluster.local(2).await, cluster.local(3).await];
        let applied = |view: &Option<Value>, shard: u64| {
            view.as_ref().and_then(|v| {
                v["groups"]
                    .as_array()?
                    .iter()
                    .find(|g| g["shard"] == shard)
                    .and_then(|g| g["last_applied"].as_u64())
            })
        };
        let caught_up = (0..=8).all(|shard| {
            let all: Vec<_> = views.iter().map(|v| applied(v, shard)).collect();
            all.windows(2).all(|w| w[0] == w[1])
        });
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "node 3 did not catch up: {views:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_under_load_and_takes_its_share_of_replicas_and_leaders() {
    let mut cluster = Cluster::start_with(1).await;
    under_faults(&mut cluster, "join", async |cluster: &mut Cluster, accepted: Arc<AtomicUsize>| {
        wait_accepted(&accepted, PAYMENTS / 4).await;
        let started = Instant::now();
        cluster.join(4).await;
        let placement = cluster.wait_placed(1, 4, Duration::from_secs(120)).await;
        let given: Vec<u64> = placement.iter().filter(|(_, r)| r.contains(&4)).map(|(s, _)| *s).collect();
        println!(
            "node 4 joined under load: replicas of groups {given:?} moved to it in {} ms ({} payments accepted)",
            started.elapsed().as_millis(),
            accepted.load(Ordering::SeqCst)
        );
        // Node 4 (zone a, like node 1) shares zone a's replicas with node 1.
        assert!(given.len() >= 3, "node 4 got only {given:?}");
        for replicas in placement.values() {
            assert_eq!(replicas.len(), 3, "{placement:?}");
        }
    })
    .await;
    // Leaders follow: each group's leader hands it to the group's preferred
    // leader (the first placed replica) once that one has caught up, so the
    // newcomer leads its share and the leaders are balanced again.
    let placement = cluster.wait_placed(1, 4, Duration::from_secs(30)).await;
    let preferred: BTreeMap<u64, u64> = placement.iter().map(|(shard, r)| (*shard, r[0])).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let leaders = cluster.leaders().await;
        if leaders == preferred {
            println!("every group led by its preferred leader (group -> node): {leaders:?}");
            break;
        }
        assert!(Instant::now() < deadline, "leaders {leaders:?}, preferred {preferred:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A node away while the cluster moves replicas off it (here node 1, paused
/// while a fourth node joins and takes some of zone a's replicas) is removed
/// from those groups, the metadata group among them, without hearing of it:
/// nobody replicates to it any more. Back, it must still learn the new
/// placement from the others and give up the replicas it no longer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_away_while_its_replicas_move_learns_the_new_placement_when_back() {
    let mut cluster = Cluster::start_with(1).await;
    cluster.pause(1);
    cluster.join(4).await;
    let placement = cluster.wait_placed_without(2, 4, &[1], Duration::from_secs(120)).await;
    let moved: Vec<u64> = placement.iter().filter(|(_, r)| !r.contains(&1)).map(|(s, _)| *s).collect();
    assert!(moved.contains(&0), "the metadata group stayed on node 1: {placement:?}");
    cluster.resume(1);
    let started = Instant::now();
    cluster.wait_placed(1, 4, Duration::from_secs(60)).await;
    println!("node 1, back, gave up groups {moved:?} in {} ms", started.elapsed().as_millis());
}

/// A request to pay on a cluster: it reaches one node, its transaction
/// lives with its shard's leader wherever that is, every node lists it for
/// the payer's channel, and a decision taken through another node pays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_pay_is_listed_by_every_node_and_paid_on_a_decision_taken_through_any() {
    let mut cluster = Cluster::start().await;
    let initial = cluster.balances().await;
    let (request_id, body) = crate::request_to_pay::request("27710000006", "10", 60_000);
    let send = async |cluster: &Cluster, node: u64, body: &Value| {
        let base = format!("http://{}/fspiop/greenbank", cluster.http[&node]);
        let (status, answer) = crate::fspiop::fspiop_request(
            &cluster.client,
            &base,
            "POST",
            "/transactionRequests",
            "transactionRequests",
            Some(body),
            "1.1",
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    };
    send(&cluster, 1, &body).await;
    let mut transaction = String::new();
    for node in 1..=NODES {
        transaction = listed_for_payer(&cluster, node, &request_id).await;
    }
    let decided = cluster
        .client
        .post(format!("http://{}/channel/requests/{transaction}/decision", cluster.http[&3]))
        .header("Platform-TenantId", TENANT_GREEN)
        .json(&serde_json::json!({ "decision": "APPROVE" }))
        .send()
        .await
        .expect("decision");
    assert_eq!(decided.status(), 200, "{}", decided.text().await.unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read: Value = cluster
            .client
            .get(format!("http://{}/channel/transfer/{transaction}", cluster.http[&2]))
            .header("Platform-TenantId", TENANT_GREEN)
            .header("Prefer", "wait=5")
            .send()
            .await
            .expect("read")
            .json()
            .await
            .unwrap_or(Value::Null);
        if read["transferState"] == "COMMITTED" {
            break;
        }
        assert!(read["transferState"] != "ABORTED", "{read}");
        assert!(Instant::now() < deadline, "not paid: {read}\n{}", cluster.logs());
    }
    // The payee's side books on the switch's notification, just after.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let after = cluster.balances().await;
        let moved = |party: &str| after[party].0 - initial[party].0;
        let moved = (moved("27710000006"), moved("27710000001"));
        if moved == (Decimal::new(-10, 0), Decimal::new(10, 0)) {
            break;
        }
        assert!(Instant::now() < deadline, "balances moved {moved:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // With a node down, the others list the requests of every shard once
    // its shards have failed over to them.
    cluster.kill(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = cluster
            .client
            .get(format!("http://{}/channel/requests", cluster.http[&2]))
            .header("Platform-TenantId", TENANT_GREEN)
            .send()
            .await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 cannot list requests without node 1\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (second_id, second) = crate::request_to_pay::request("27710000006", "10", 60_000);
    send(&cluster, 2, &second).await;
    listed_for_payer(&cluster, 2, &second_id).await;
}

/// bluebank's merchant 27710000001 asks greenbank's 27710000006 for
/// `amount` USD through `node`: the request's transaction id.
async fn ask_to_pay(cluster: &Cluster, node: u64, correlation: &str, amount: &str) -> String {
    ask_to_pay_as(cluster, node, correlation, amount, None).await
}

/// As [`ask_to_pay`], approved as `authentication` says (`OTP`).
async fn ask_to_pay_as(
    cluster: &Cluster,
    node: u64,
    correlation: &str,
    amount: &str,
    authentication: Option<&str>,
) -> String {
    let mut body = crate::request_to_pay_sent::request("27710000006", amount);
    if let Some(authentication) = authentication {
        body["authenticationType"] = authentication.into();
    }
    let asked = cluster
        .client
        .post(format!("http://{}/channel/transactionRequest", cluster.http[&node]))
        .header("Platform-TenantId", TENANT_BLUE)
        .header("X-CorrelationID", correlation)
        .json(&body)
        .send()
        .await
        .expect("POST /channel/transactionRequest");
    assert_eq!(asked.status(), 200);
    let asked: Value = asked.json().await.expect("JSON");
    asked["transactionId"].as_str().expect("transactionId").to_owned()
}

/// Request to pay `id` as `node` reads it, once `done` holds of it.
async fn request_once(
    cluster: &Cluster,
    node: u64,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read: Value = match cluster
            .client
            .get(format!("http://{}/channel/transactionRequest/{id}", cluster.http[&node]))
            .header("Platform-TenantId", TENANT_BLUE)
            .header("Prefer", "wait=2")
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if done(&read) {
            return read;
        }
        assert!(Instant::now() < deadline, "request {id} never {what}: {read}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// greenbank's transaction that answers request `id` (its FSPIOP
/// `transactionRequestId`), once `node` lists it for greenbank's payer.
async fn listed_for_payer(cluster: &Cluster, node: u64, id: &str) -> String {
    let found = listed_once(cluster, node, id, |_| true).await;
    found["transactionId"].as_str().expect("transactionId").to_owned()
}

/// greenbank's listing of request `id` on `node`, once `done` holds of it.
async fn listed_once(cluster: &Cluster, node: u64, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Value = match cluster
            .client
            .get(format!("http://{}/channel/requests", cluster.http[&node]))
            .header("Platform-TenantId", TENANT_GREEN)
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let found = listed["requests"]
            .as_array()
            .and_then(|requests| requests.iter().find(|r| r["transactionRequestId"] == id).cloned());
        if let Some(found) = found.filter(&done) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "node {node} does not list request {id}: {listed}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// greenbank's payer approves request `id` through `node` once greenbank
/// lists it: greenbank's transaction that pays it.
async fn approve_request(cluster: &Cluster, node: u64, id: &str) -> String {
    let payers_transaction = listed_for_payer(cluster, node, id).await;
    let decided = cluster
        .client
        .post(format!("http://{}/channel/requests/{payers_transaction}/decision", cluster.http[&node]))
        .header("Platform-TenantId", TENANT_GREEN)
        .json(&serde_json::json!({ "decision": "APPROVE" }))
        .send()
        .await
        .expect("decision");
    assert_eq!(decided.status(), 200, "{}", decided.text().await.unwrap_or_default());
    payers_transaction
}

fn finished(request: &Value) -> bool {
    matches!(request["transferState"].as_str(), Some("COMMITTED" | "ABORTED"))
}

/// A request to pay a customer sends, on a cluster whose switch spreads
/// messages over the nodes (as a load balancer would): created through one
/// node, it waits for the payer; the leader of its shard is killed, the
/// new leader resumes it, and the payer's payment, approved through
/// another node, reaches it there. Then more requests, each paid although
/// a payment's quote and its transfer reach different nodes (the
/// transfer's node learns which request it pays from the quote's node),
/// and one approved by the payer's one-time password across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_pay_sent_outlives_its_leader_and_is_paid() {
    let mut cluster = Cluster::start_spread().await;
    let initial = cluster.balances().await;
    let id = ask_to_pay(&cluster, 1, "cluster-rtp-1", "7").await;
    request_once(&cluster, 2, &id, "reached the payer", |r| r["phase"] == "AWAITING_PAYMENT").await;

    let shard = u64::from(raft::slots::SlotMap::new(8).shard_of(&id.parse().expect("a transaction id")).0);
    let (_, leader) = cluster.leader_of(shard).await;
    cluster.kill(leader);
    let alive = (1..=NODES).find(|node| *node != leader).expect("a node alive");
    cluster.failover_time(leader, &(1..=8).collect::<Vec<_>>(), Instant::now()).await;
    let waiting =
        request_once(&cluster, alive, &id, "read after the failover", |r| r["phase"].is_string()).await;
    assert_eq!(waiting["phase"], "AWAITING_PAYMENT", "{waiting}");

    let payers_transaction = approve_request(&cluster, alive, &id).await;
    let paid = request_once(&cluster, alive, &id, "finished", finished).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}\n{}", cluster.logs());
    assert_eq!(paid["payment"]["transferId"], payers_transaction.as_str(), "{paid}");

    // The switch spreads its messages over the nodes as a load balancer
    // would, so a payment's PATCH may reach another node than the one that
    // answered its transfer RESERVED: that one is told at once, so the
    // request is seen paid within seconds, not after the transfer's
    // expiration (30 s) when its sweeper would ask the switch.
    for n in 0..3 {
        let id = ask_to_pay(&cluster, alive, &format!("cluster-rtp-more-{n}"), "1").await;
        let approved = Instant::now();
        approve_request(&cluster, alive, &id).await;
        let paid = request_once(&cluster, alive, &id, "finished", finished).await;
        assert_eq!(paid["transferState"], "COMMITTED", "request {n}: {paid}\n{}", cluster.logs());
        let took = approved.elapsed();
        assert!(took < Duration::from_secs(15), "request {n} seen paid {took:?} after its approval");
    }

    // One approved by the payer's password, which greenbank shows through
    // one node and bluebank's device enters through another, while the
    // switch spreads the FSPIOP messages (GET and PUT /authorizations) over
    // the nodes.
    let others: Vec<u64> = (1..=NODES).filter(|node| *node != leader).collect();
    let id = ask_to_pay_as(&cluster, others[0], "cluster-rtp-otp", "2", Some("OTP")).await;
    let at_payer =
        listed_once(&cluster, others[1], &id, |r| r["authorization"]["password"].is_string()).await;
    let password = at_payer["authorization"]["password"].as_str().expect("a password").to_owned();
    request_once(&cluster, others[0], &id, "asked for the password", |r| {
        r["phase"] == "AWAITING_AUTHORIZATION"
    })
    .await;
    let entered_at = Instant::now();
    let entered = cluster
        .client
        .post(format!("http://{}/channel/transactionRequest/{id}/authorization", cluster.http[&others[1]]))
        .header("Platform-TenantId", TENANT_BLUE)
        .json(&serde_json::json!({ "response": "ENTERED", "otp": password }))
        .send()
        .await
        .expect("POST authorization");
    assert_eq!(entered.status(), 200, "{}", entered.text().await.unwrap_or_default());
    let paid = request_once(&cluster, others[0], &id, "finished", finished).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}\n{}", cluster.logs());
    let took = entered_at.elapsed();
    assert!(took < Duration::from_secs(15), "seen paid {took:?} after the password was entered");

    // The payer's side books its debits once the transfers are fulfilled.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let after = cluster.balances().await;
        let moved = |party: &str| after[party].0 - initial[party].0;
        let moved = (moved("27710000006"), moved("27710000001"));
        if moved == (Decimal::new(-12, 0), Decimal::new(12, 0)) {
            break;
        }
        assert!(Instant::now() < deadline, "balances moved {moved:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_through_a_snapshot_and_status_shows_a_dead_node() {
    let mut cluster = Cluster::start().await;
    cluster.kill(2);
    let status = Command::new(env!("CARGO_BIN_EXE_payhub"))
        .args(["status", "--node", &cluster.http[&1]])
        .output()
        .expect("payhub status");
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    println!("{shown}");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(shown.lines().any(|l| l.starts_with("2 ") && l.contains("UNREACHABLE")), "{shown}");
    cluster.wipe(2);
    assert!(!cluster.data_dir(2).exists());
    // While node 2 is away the others commit far more than they keep in
    // their logs after a snapshot: 400 payments of 5 entries each are 250
    // entries a shard on average, past the snapshot points (SNAPSHOT_EVERY
    // and up to 7/16 more).
    let initial = cluster.balances().await;
    let batch = Arc::new(payments("wiped", 400, cents));
    let live = vec![cluster.http[&1].clone(), cluster.http[&3].clone()];
    let ids = send_all(cluster.client.clone(), live, batch.clone(), Arc::default()).await;
    check(&cluster, &batch, &ids, &initial).await;
    cluster.restart(2).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = cluster.local(2).await.unwrap_or(Value::Null);
        let groups = view["groups"].as_array().cloned().unwrap_or_default();
        let caught_up = !groups.is_empty()
            && groups.iter().all(|g| g["leader"].is_u64() && g["last_applied"].as_u64() > Some(0));
        let by_snapshot = groups.iter().filter(|g| g["snapshot"].is_u64()).count();
        if caught_up && by_snapshot > 0 {
            println!("wiped node 2 caught up; {by_snapshot} of its groups through a snapshot");
            break;
        }
        assert!(Instant::now() < deadline, "node 2 did not catch up through a snapshot: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
