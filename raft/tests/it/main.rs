//! Several nodes' Raft groups in one process, over the in-process transport
//! with injected faults: lost, delayed and duplicated messages, partitions,
//! a killed node, and a node whose data is wiped.
//!
//! What must hold: a command acknowledged as committed is on every replica
//! once the network heals; nothing is applied twice; a minority side never
//! commits; a wiped replica catches up (through a snapshot once the log it
//! missed is compacted); a node that joins takes its share of replicas, which
//! its leaders fill, and the replicas it replaces stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::command::{Command, Response};
use actors::flow::{FlowLimits, P2pRequest, Request};
use actors::model::{Amount, NodeId, Party, PartyIdType, ShardId, TransactionId};
use actors::runtime::CommitError;
use raft::network::Faults;
use raft::{Bootstrap, InProcessRouter, Member, Placement, RaftConfig, RaftNode};
use storage::Store;

const SHARDS: u32 = 2;

fn config(node: u64, snapshot_every: u64) -> RaftConfig {
    RaftConfig {
        node: NodeId(node),
        shard_count: SHARDS,
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
        append_entries_max: 64,
        snapshot_log_entries_max: snapshot_every,
        leader_rebalance_after_ms: 500,
    }
}

fn member(id: u64, zone: &str) -> Member {
    Member { id: NodeId(id), zone: zone.into(), grpc: format!("in-process-{id}"), http: String::new() }
}

fn placement() -> Placement {
    let members = [member(1, "a"), member(2, "b"), member(3, "c")];
    Placement::new(&members, 3, SHARDS).expect("a valid placement")
}

fn create(id: TransactionId) -> Command {
    let party = |msisdn: &str| Party::new(PartyIdType::Msisdn, msisdn).expect("a valid MSISDN");
    let request = P2pRequest {
        tenant: "bluebank".parse().expect("a valid tenant"),
        payer_fsp: "bluebank".into(),
        payer: party("27710000001"),
        payee: party("27710000002"),
        amount: Amount::parse_positive("10.50", "USD").expect("a valid amount"),
        transaction_request: None,
    };
    Command::Create { id, request: Request::P2p(request), limits: FlowLimits::default(), now_ms: 1 }
}

/// Three nodes of one process, each with its own store.
struct Cluster {
    router: InProcessRouter,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    stores: BTreeMap<u64, Store>,
    nodes: BTreeMap<u64, Arc<RaftNode>>,
    snapshot_every: u64,
    placement: Placement,
    /// Every node's groups, for hand-overs to reach the other nodes.
    peers: Arc<std::sync::Mutex<BTreeMap<u64, std::sync::Weak<RaftNode>>>>,
}

impl Cluster {
    async fn start(snapshot_every: u64) -> Cluster {
        let mut cluster = Cluster {
            router: InProcessRouter::default(),
            dirs: BTreeMap::new(),
            stores: BTreeMap::new(),
            nodes: BTreeMap::new(),
            snapshot_every,
            placement: placement(),
            peers: Arc::default(),
        };
        for node in 1..=3 {
            cluster.dirs.insert(node, tempfile::tempdir().expect("a temporary directory"));
            cluster.boot(node).await;
        }
        cluster
    }

    async fn boot(&mut self, node: u64) {
        self.boot_as(node, Bootstrap::Initialise).await;
    }

    async fn boot_as(&mut self, node: u64, bootstrap: Bootstrap) {
        let store = Store::open(&self.dirs[&node].path().join("db")).expect("open the store");
        let transport = self.router.node(node);
        let config = config(node, self.snapshot_every);
        let raft = RaftNode::start(config, self.placement.clone(), &store, &transport, bootstrap)
            .await
            .expect("start the node's groups");
        let raft = Arc::new(raft);
        // Hand-overs ask the other nodes to hold their elections, as the
        // node's gRPC forwarding does in a real cluster.
        let peers = Arc::downgrade(&self.peers);
        raft.set_hold_peers(Box::new(move |shard, followers, hold| {
            let peers = peers.upgrade();
            Box::pin(async move {
                let Some(peers) = peers else { return };
                let peers = peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for follower in followers {
                    if let Some(peer) = peers.get(&follower.0).and_then(std::sync::Weak::upgrade) {
                        peer.hold_elections(shard, hold);
                    }
                }
            })
        }));
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).insert(node, Arc::downgrade(&raft));
        self.stores.insert(node, store);
        self.nodes.insert(node, raft);
    }

    /// Stops a node as a crash would: its groups stop answering.
    async fn kill(&mut self, node: u64) {
        self.router.unregister(node);
        if let Some(raft) = self.nodes.remove(&node) {
            raft.shutdown().await;
        }
        self.stores.remove(&node);
    }

    /// Commits `command` through whichever live node leads `shard`, retrying
    /// while leadership moves. Returns what applying answered.
    async fn commit(&self, shard: ShardId, command: Command, within: Duration) -> Result<Response, String> {
        let deadline = Instant::now() + within;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            for raft in self.nodes.values() {
                if !raft.is_leader(shard) {
                    continue;
                }
                match tokio::time::timeout(Duration::from_secs(2), raft.commit_to(shard, command.clone()))
                    .await
                {
                    Ok(Ok(response)) => return Ok(response),
                    Ok(Err(CommitError::NotLeader)) => {}
                    Ok(Err(error)) => last = error.to_string(),
                    Err(_) => last = "commit timed out".into(),
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(last)
    }

    /// Waits until every live replica of `shard` has applied every entry
    /// of its leader's log. Equal applied indices alone are not enough:
    /// openraft publishes a replica's applied index in its metrics after it
    /// answers the write, so right after an acknowledged commit every
    /// replica may still show the index before it (a CI run failed so). The
    /// entry was appended to the leader's log well before it was
    /// acknowledged, so the leader's last index is the one to wait for.
    async fn converge(&self, shard: ShardId, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let groups: Vec<raft::GroupStatus> = self
                .nodes
                .values()
                .filter_map(|raft| raft.status().into_iter().find(|g| g.shard == shard))
                .collect();
            let applied: Vec<u64> = groups.iter().map(|g| g.last_applied).collect();
            // The leader's log: a follower may still hold a deposed
            // leader's uncommitted tail, which nobody will apply.
            let logged = groups.iter().find(|g| g.role == "leader").map_or(0, |g| g.last_log_index);
            if applied.iter().all(|a| *a == logged) && logged > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "replicas of {shard} did not converge: {applied:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes `node` the leader of `shard`: the other followers hold their
    /// elections while the current leader is cut off.
    async fn lead(&self, shard: ShardId, node: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.nodes.values().all(|raft| raft.leader_of(shard) == Some(NodeId(node))) {
            let current = self.nodes[&node].leader_of(shard).map(|n| n.0);
            if let Some(current) = current.filter(|c| *c != node) {
                for (other, raft) in &self.nodes {
                    if *other != node && *other != current {
                        raft.hold_elections(shard, Duration::from_secs(2));
                    }
                }
                self.router.isolate(current, self.nodes.keys().copied());
                while !self.nodes[&node].is_leader(shard) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.router.heal();
            }
            assert!(Instant::now() < deadline, "node {node} did not become the leader of {shard}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn status(&self) -> BTreeMap<u64, Vec<raft::GroupStatus>> {
        self.nodes.iter().map(|(node, raft)| (*node, raft.status())).collect()
    }

    /// The last `count` entries of each node's log of `shard`: index, term
    /// and what each carries (a command's kind and transaction).
    async fn log_tails(&self, shard: ShardId, count: u64) -> BTreeMap<u64, Vec<String>> {
        use openraft::{EntryPayload, RaftLogReader};
        let mut tails = BTreeMap::new();
        for (node, store) in &self.stores {
            let last = self.nodes[node]
                .status()
                .into_iter()
                .find(|g| g.shard == shard)
                .map_or(0, |g| g.last_log_index);
            let mut log = store.log_store(shard);
            let entries =
                log.try_get_log_entries(last.saturating_sub(count)..=last).await.expect("read the log");
            let described = entries
                .iter()
                .map(|entry| {
                    let what = match &entry.payload {
                        EntryPayload::Blank => "blank".to_owned(),
                        EntryPayload::Membership(m) => format!("membership {m:?}"),
                        EntryPayload::Normal(Command::Create { id, .. }) => format!("create {id}"),
                        EntryPayload::Normal(Command::Step { id, input, .. }) => {
                            format!("step {id} {}", input.name())
                        }
                        EntryPayload::Normal(other) => format!("{other:?}"),
                    };
                    format!("{} (term {}): {what}", entry.log_id.index, entry.log_id.leader_id.term)
                })
                .collect();
            tails.insert(*node, described);
        }
        tails
    }

    fn state_on(&self, node: u64, shard: ShardId, id: TransactionId) -> Option<actors::flow::State> {
        self.stores[&node].transaction(shard, id).expect("read the store")
    }

    async fn shutdown(self) {
        for raft in self.nodes.values() {
            raft.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_survive_lost_delayed_and_duplicated_messages() {
    let cluster = Cluster::start(10_000).await;
    cluster.router.set_faults(Faults {
        drop_per_mille: 50,
        duplicate_per_mille: 50,
        delay_ms_max: 20,
        ..Faults::default()
    });
    let ids: Vec<TransactionId> = (0..150).map(|_| TransactionId::new_random()).collect();
    let mut created = 0;
    for id in &ids {
        let shard = cluster.nodes[&1].shard_of(id);
        match cluster.commit(shard, create(*id), Duration::from_secs(30)).await {
            // A retried commit may find its first attempt applied already.
            Ok(Response::Created(_) | Response::AlreadyExists(_)) => created += 1,
            other => panic!("create of {id} answered {other:?}"),
        }
    }
    assert_eq!(created, ids.len());
    cluster.router.set_faults(Faults::default());
    for shard in 1..=SHARDS {
        cluster.converge(ShardId(shard), Duration::from_secs(20)).await;
    }
    for id in &ids {
        let shard = cluster.nodes[&1].shard_of(id);
        let states: Vec<_> = (1..=3).map(|node| cluster.state_on(node, shard, *id)).collect();
        assert!(states[0].is_some(), "{id} is missing on node 1");
        let applied: Vec<_> =
            cluster.nodes.values().flat_map(|raft| raft.status()).filter(|g| g.shard == shard).collect();
        if !states.windows(2).all(|w| w[0] == w[1]) {
            let logs = cluster.log_tails(shard, 6).await;
            let histories: Vec<_> =
                (1..=3).map(|node| cluster.stores[&node].history(shard, *id).expect("a history")).collect();
            panic!(
                "replicas disagree on {id}: {states:?}\n{applied:?}\nits history on each node: {histories:?}\nthe last log entries of each node: {logs:#?}"
            );
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_minority_never_commits_and_the_majority_carries_on() {
    let cluster = Cluster::start(10_000).await;
    let shard = ShardId(1);
    let before = TransactionId::new_random();
    assert!(cluster.commit(shard, create(before), Duration::from_secs(10)).await.is_ok());

    // Cut off the current leader of the shard: it is the minority.
    let leader = cluster.nodes[&1].leader_of(shard).expect("a leader").0;
    cluster.router.isolate(leader, [1, 2, 3]);
    let lost = TransactionId::new_random();
    let minority = cluster.nodes[&leader].commit_to(shard, create(lost));
    let minority = tokio::time::timeout(Duration::from_secs(3), minority).await;
    assert!(!matches!(minority, Ok(Ok(_))), "an isolated node committed: {minority:?}");

    // The majority elects a new leader and commits.
    let started = Instant::now();
    let majority = TransactionId::new_random();
    let mut committed = false;
    while started.elapsed() < Duration::from_secs(10) && !committed {
        for (node, raft) in &cluster.nodes {
            if *node != leader && raft.is_leader(shard) {
                committed = matches!(raft.commit_to(shard, create(majority)).await, Ok(Response::Created(_)));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(committed, "the majority did not commit within 10 s");
    println!("majority committed again {} ms after the partition", started.elapsed().as_millis());

    cluster.router.heal();
    cluster.converge(shard, Duration::from_secs(20)).await;
    for node in 1..=3 {
        assert!(cluster.state_on(node, shard, majority).is_some(), "node {node} lacks the majority's commit");
        assert!(cluster.state_on(node, shard, before).is_some(), "node {node} lacks the first commit");
        assert!(cluster.state_on(node, shard, lost).is_none(), "node {node} applied the minority's proposal");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start(50).await;
    let shard = ShardId(1);
    let mut ids = Vec::new();
    commit_many(&cluster, shard, 20, &mut ids).await;

    // Node 3 dies and loses its data; the others go on far past a snapshot.
    cluster.kill(3).await;
    let old = cluster.dirs.insert(3, tempfile::tempdir().expect("a temporary directory"));
    drop(old);
    commit_many(&cluster, shard, 200, &mut ids).await;

    cluster.boot(3).await;
    cluster.converge(shard, Duration::from_secs(30)).await;
    let status =
        cluster.nodes[&3].status().into_iter().find(|g| g.shard == shard).expect("node 3 holds the shard");
    assert!(status.snapshot.is_some(), "node 3 caught up without a snapshot: {status:?}");
    for id in &ids {
        assert!(cluster.state_on(3, shard, *id).is_some(), "wiped node 3 lacks {id}");
    }
    cluster.shutdown().await;
}

/// A membership change whose leader is cut off between its two steps
/// leaves the group in joint consensus (old and new voters together): the
/// next leader finishes it, or the group keeps both sets of voters for
/// ever (as a CI run of the join test once showed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_membership_change_cut_off_halfway_is_finished_by_the_next_leader() {
    let mut cluster = Cluster::start(10_000).await;
    let before = cluster.placement.clone();
    let after = before.with_member(member(4, "d")).expect("node 4 joins");
    let shard = *after.shards_of(NodeId(4)).iter().find(|s| **s != ShardId::METADATA).expect("a shard moves");
    let leaving = before
        .replicas(shard)
        .iter()
        .map(|n| n.0)
        .find(|n| !after.replicas(shard).contains(&NodeId(*n)))
        .expect("one goes");
    let staying: Vec<u64> = before.replicas(shard).iter().map(|n| n.0).filter(|n| *n != leaving).collect();
    cluster.lead(shard, leaving).await;
    for raft in cluster.nodes.values() {
        raft.adopt(after.clone()).await.expect("adopt the new placement");
    }
    cluster.placement = after.clone();
    cluster.dirs.insert(4, tempfile::tempdir().expect("a temporary directory"));
    cluster.boot_as(4, Bootstrap::Wait).await;
    let placed: std::collections::BTreeSet<u64> = after.replicas(shard).iter().map(|n| n.0).collect();

    // Slow messages keep the change's two steps apart. The leader starts
    // the change; as soon as a staying replica holds the joint
    // configuration, the leader is cut off, before it can finish.
    // (Below the 50 ms an append may take, so nothing times out.)
    cluster.router.set_faults(Faults { delay_ms_max: 40, ..Faults::default() });
    let joint_on = |node: u64| cluster.nodes[&node].status().into_iter().any(|g| g.shard == shard && g.joint);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !staying.iter().any(|node| joint_on(*node)) {
        cluster.nodes[&leaving].reconcile().await;
        assert!(
            Instant::now() < deadline,
            "no joint configuration reached the followers: {:?}",
            cluster.status()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cluster.router.isolate(leaving, cluster.nodes.keys().copied());

    // The others elect a leader, whose reconciling finishes the change.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (node, raft) in &cluster.nodes {
            if *node != leaving {
                raft.reconcile().await;
            }
        }
        let finished = cluster.nodes.iter().filter(|(node, _)| **node != leaving).any(|(_, raft)| {
            raft.status().into_iter().any(|g| {
                g.shard == shard
                    && g.role == "leader"
                    && !g.joint
                    && g.voters == placed
                    && g.learners.is_empty()
            })
        });
        if finished {
            break;
        }
        assert!(Instant::now() < deadline, "the change was not finished: {:?}", cluster.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.router.heal();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_its_replicas_and_the_ones_it_replaces_stop() {
    let mut cluster = Cluster::start(50).await;
    // The test commits to the shard it names, whatever the ids' slots.
    let mut ids: BTreeMap<ShardId, Vec<TransactionId>> = BTreeMap::new();
    for shard in (1..=SHARDS).map(ShardId) {
        commit_many(&cluster, shard, 60, ids.entry(shard).or_default()).await;
    }

    // Node 4 (a new zone) joins: the placement gives it its share, every
    // node follows the new placement, and node 4 starts empty.
    let before = cluster.placement.clone();
    let after = before.with_member(member(4, "d")).expect("node 4 joins");
    let moved: Vec<ShardId> = after.shards_of(NodeId(4));
    assert!(!moved.is_empty(), "node 4 was given nothing: {after:?}");
    // The hardest case: the leader of a moved group is the replica that goes.
    let shard = moved[0];
    let leaving =
        *before.replicas(shard).iter().find(|n| !after.replicas(shard).contains(n)).expect("one goes");
    cluster.lead(shard, leaving.0).await;
    for raft in cluster.nodes.values() {
        raft.adopt(after.clone()).await.expect("adopt the new placement");
    }
    cluster.placement = after.clone();
    cluster.dirs.insert(4, tempfile::tempdir().expect("a temporary directory"));
    cluster.boot_as(4, Bootstrap::Wait).await;

    // Reconcile while commits go on, until every group's voters are its
    // placed replicas and the replaced replicas have stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut during = 0;
    loop {
        for raft in cluster.nodes.values() {
            raft.reconcile().await;
            // What the node's reconciler asks the leader: still a member?
            for shard in raft.leaving() {
                let members = cluster.nodes.values().find_map(|other| other.members(shard));
                if members.is_some_and(|(voters, learners)| {
                    !voters.contains(&raft.node().0) && !learners.contains(&raft.node().0)
                }) {
                    raft.stop_group(shard).await;
                }
            }
        }
        let shard = ShardId(1 + during % SHARDS);
        commit_many(&cluster, shard, 1, ids.entry(shard).or_default()).await;
        during += 1;
        let settled = (0..=SHARDS).map(ShardId).all(|shard| {
            let placed: std::collections::BTreeSet<u64> = after.replicas(shard).iter().map(|n| n.0).collect();
            cluster.nodes.iter().all(|(node, raft)| {
                let hosts = raft.hosts(shard);
                let voters_ok = raft
                    .status()
                    .into_iter()
                    .find(|g| g.shard == shard)
                    .is_none_or(|g| g.role != "leader" || (g.voters == placed && g.learners.is_empty()));
                voters_ok && hosts == placed.contains(node)
            })
        });
        if settled {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas did not move within 60 s: {:?}", cluster.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("replicas moved to node 4 ({moved:?}) with {during} commits during the move");

    // Node 4 holds every transaction of the shards it was given.
    for shard in (1..=SHARDS).map(ShardId) {
        cluster.converge(shard, Duration::from_secs(30)).await;
    }
    for (shard, ids) in &ids {
        for id in ids {
            for node in after.replicas(*shard) {
                assert!(cluster.state_on(node.0, *shard, *id).is_some(), "{node} lacks {id} of {shard}");
            }
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_returns_to_the_preferred_leader_after_a_failover() {
    let cluster = Cluster::start(10_000).await;
    let shard = ShardId(1);
    let preferred = cluster.placement.replicas(shard)[0].0;
    let mut ids = Vec::new();
    commit_many(&cluster, shard, 5, &mut ids).await;

    // Cut the preferred leader off until another replica leads.
    cluster.router.isolate(preferred, [1, 2, 3]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let stand_in = |cluster: &Cluster| {
        cluster
            .nodes
            .iter()
            .find(|(node, raft)| **node != preferred && raft.is_leader(shard))
            .map(|(n, _)| *n)
    };
    while stand_in(&cluster).is_none() {
        assert!(Instant::now() < deadline, "no other leader while {preferred} was cut off");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stand_in = stand_in(&cluster).expect("a stand-in leader");
    cluster.router.heal();
    // The old leader hears of the new term.
    while cluster.nodes[&preferred].leader_of(shard) != Some(NodeId(stand_in)) {
        assert!(Instant::now() < deadline, "{preferred} never followed {stand_in}");
        commit_many(&cluster, shard, 1, &mut ids).await;
    }

    // Reconciliation hands the group back once the stand-in has led it long
    // enough and the preferred replica has caught up; commits go on.
    let started = Instant::now();
    loop {
        for raft in cluster.nodes.values() {
            raft.reconcile().await;
        }
        commit_many(&cluster, shard, 1, &mut ids).await;
        // Every replica follows the preferred one (an isolated old leader
        // may believe it leads until it hears of the new term).
        if cluster.nodes.values().all(|raft| raft.leader_of(shard) == Some(NodeId(preferred))) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "leadership did not return: {:?}",
            cluster.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "node {preferred} leads {shard} again, {} ms after node {stand_in} took over",
        started.elapsed().as_millis()
    );
    cluster.converge(shard, Duration::from_secs(20)).await;
    for id in &ids {
        for node in 1..=3 {
            assert!(cluster.state_on(node, shard, *id).is_some(), "node {node} lacks {id}");
        }
    }
    cluster.shutdown().await;
}

/// Commits `count` creates to `shard` and records their ids.
async fn commit_many(cluster: &Cluster, shard: ShardId, count: usize, ids: &mut Vec<TransactionId>) {
    for _ in 0..count {
        let id = TransactionId::new_random();
        let answer = cluster.commit(shard, create(id), Duration::from_secs(10)).await;
        assert!(matches!(answer, Ok(Response::Created(_))), "{answer:?}");
        ids.push(id);
    }
}
