//! Consensus: the Raft groups of one node.
//!
//! A node runs the metadata group (shard 0) and a group per transaction shard
//! (1..=N), each an independent openraft instance over the node's one
//! RocksDB. Every command is committed here before it is applied. This crate
//! owns routing (which shard holds a transaction, [`slots`]) and the transport
//! trait between nodes ([`network`]); it knows nothing of payments beyond the
//! command type, and never touches RocksDB itself (that is `storage`).

pub mod grpc;
pub mod network;
pub mod placement;
pub mod slots;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::network::RaftNetworkFactory;
use openraft::{BasicNode, Raft, ServerState};
use serde::Serialize;
use tokio::sync::watch;

use actors::command::{Command, Response};
use actors::model::{NodeId, ShardId, TransactionId};
use actors::runtime::{Commit, CommitError};
use storage::{Store, TypeConfig};

pub use grpc::{GrpcTransport, Peers};
pub use network::InProcessRouter;
pub use placement::{Member, Placement};
pub use slots::SlotMap;

/// How a node's groups reach the groups of other nodes: openraft's network
/// factory per shard, and a place to announce each local group so incoming
/// RPCs find it.
pub trait Transport {
    type Network: RaftNetworkFactory<TypeConfig>;
    fn network(&self, shard: ShardId) -> Self::Network;
    fn register(&self, node: u64, shard: ShardId, raft: Raft<TypeConfig>);
}

/// Failures of the consensus layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("Raft group of {shard} failed to start: {message}")]
    Start { shard: ShardId, message: String },
    #[error("{shard} has no leader after {waited_ms} ms")]
    NoLeader { shard: ShardId, waited_ms: u64 },
    #[error("{shard} has not applied its log after {waited_ms} ms")]
    NotApplied { shard: ShardId, waited_ms: u64 },
    #[error("node {0} is not a member of the cluster")]
    NotMember(NodeId),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest wait for one command to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a node runs its groups.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub node: NodeId,
    /// Number of transaction shards (the metadata group comes on top).
    pub shard_count: u32,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Entries in one append RPC; also bounds a group commit's batch.
    pub append_entries_max: u64,
    /// Log entries between snapshots.
    pub snapshot_log_entries_max: u64,
}

impl RaftConfig {
    /// The openraft configuration of one group in which this node is the
    /// `rank`-th of `replicas` replicas in placement order.
    ///
    /// Ranks get disjoint slices of the election timeout range, the first
    /// replica the earliest: when a leader dies, the highest-ranked survivor
    /// times out first and asks for votes alone, instead of two survivors
    /// splitting the vote round after round (with two of three replicas
    /// left, any split means another timeout).
    fn openraft(&self, rank: usize, replicas: usize) -> Result<Arc<openraft::Config>> {
        let width = (self.election_timeout_max_ms - self.election_timeout_min_ms) / replicas.max(1) as u64;
        let election_timeout_min = self.election_timeout_min_ms + width * rank as u64;
        let config = openraft::Config {
            cluster_name: "payhub".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min,
            election_timeout_max: election_timeout_min + width.max(1),
            max_payload_entries: self.append_entries_max,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_log_entries_max),
            // Entries kept behind a snapshot, so a briefly lagging follower
            // catches up from the log rather than by a whole snapshot.
            max_in_snapshot_log_to_keep: (self.snapshot_log_entries_max / 4).min(1_000),
            // Snapshot chunks travel JSON-encoded (bytes as numbers, about 3.5
            // times their size) in one gRPC message each, and each must be
            // encoded, sent, decoded and written within the timeout, on a
            // loaded machine too (openraft's 200 ms default is not enough).
            snapshot_max_chunk_size: 256 * 1024,
            install_snapshot_timeout: 5_000,
            ..Default::default()
        };
        config.validate().map(Arc::new).map_err(|e| Error::Config(e.to_string()))
    }
}

/// The Raft groups this node takes part in.
pub struct RaftNode {
    config: RaftConfig,
    slots: SlotMap,
    placement: Placement,
    groups: BTreeMap<ShardId, Raft<TypeConfig>>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node", &self.config.node)
            .field("shards", &self.slots.shard_count())
            .finish()
    }
}

impl RaftNode {
    /// Starts this node's replica of every group `placement` gives it, on
    /// `store`. A group that has never been initialised is initialised with
    /// its placed replicas as voters; every replica does the same with the
    /// same membership, so a cluster needs no bootstrap coordinator. One
    /// member with replication factor 1 is the embedded single node.
    pub async fn start(
        config: RaftConfig,
        placement: Placement,
        store: &Store,
        transport: &impl Transport,
    ) -> Result<Self> {
        // Reject a bad configuration even on a node placed in no group.
        config.openraft(0, 1)?;
        let slots = SlotMap::new(config.shard_count);
        if placement.member(config.node).is_none() {
            return Err(Error::NotMember(config.node));
        }
        let mut groups = BTreeMap::new();
        for shard in placement.shards_of(config.node) {
            let start_error = |message: String| Error::Start { shard, message };
            let raft = Raft::new(
                config.node.0,
                {
                    let replicas = placement.replicas(shard);
                    let rank = replicas.iter().position(|n| *n == config.node).unwrap_or(0);
                    config.openraft(rank, replicas.len())?
                },
                transport.network(shard),
                store.log_store(shard),
                store.state_machine(shard),
            )
            .await
            .map_err(|e| start_error(e.to_string()))?;
            if !raft.is_initialized().await.map_err(|e| start_error(e.to_string()))? {
                let members: BTreeMap<u64, BasicNode> = placement
                    .replicas(shard)
                    .iter()
                    .filter_map(|id| placement.member(*id))
                    .map(|m| (m.id.0, BasicNode { addr: m.grpc.clone() }))
                    .collect();
                match raft.initialize(members).await {
                    Ok(()) => {}
                    // Another replica's election or log reached this one first:
                    // the group exists, and this replica joins it.
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                        tracing::info!(%shard, "group already started by another replica");
                    }
                    Err(error) => return Err(start_error(error.to_string())),
                }
            }
            // Announced only now, so no RPC reaches a group being initialised.
            transport.register(config.node.0, shard, raft.clone());
            groups.insert(shard, raft);
        }
        Ok(RaftNode { config, slots, placement, groups })
    }

    pub fn node(&self) -> NodeId {
        self.config.node
    }

    pub fn slots(&self) -> SlotMap {
        self.slots
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Whether this node holds a replica of `shard`.
    pub fn hosts(&self, shard: ShardId) -> bool {
        self.groups.contains_key(&shard)
    }

    /// The leader of `shard` as this node's replica knows it (None when this
    /// node holds no replica or knows no leader).
    pub fn leader_of(&self, shard: ShardId) -> Option<NodeId> {
        self.groups.get(&shard).and_then(|raft| raft.metrics().borrow().current_leader).map(NodeId)
    }

    pub fn shard_of(&self, id: &TransactionId) -> ShardId {
        self.slots.shard_of(id)
    }

    /// Every group of this node, the metadata group first.
    pub fn shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.groups.keys().copied()
    }

    /// The transaction shards this node holds a replica of.
    pub fn transaction_shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.groups.keys().copied().filter(|shard| *shard != ShardId::METADATA)
    }

    fn group(&self, shard: ShardId) -> std::result::Result<&Raft<TypeConfig>, CommitError> {
        self.groups.get(&shard).ok_or(CommitError::NotLeader)
    }

    /// Commits `command` through `shard`'s group and returns what applying it
    /// answered.
    pub async fn commit_to(
        &self,
        shard: ShardId,
        command: Command,
    ) -> std::result::Result<Response, CommitError> {
        let started = std::time::Instant::now();
        // A write that neither commits nor fails (a leader deposed mid-write)
        // must not hold its caller forever: give up and let it retry.
        let written = tokio::time::timeout(COMMIT_TIMEOUT, self.group(shard)?.client_write(command)).await;
        let Ok(result) = written else {
            metrics::counter!("payhub_raft_commit_timeouts_total").increment(1);
            return Err(CommitError::Failed(format!("no commit within {} ms", COMMIT_TIMEOUT.as_millis())));
        };
        metrics::histogram!("payhub_raft_commit_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(CommitError::NotLeader),
            Err(error) => Err(CommitError::Failed(error.to_string())),
        }
    }

    /// Whether this node leads `shard` now.
    pub fn is_leader(&self, shard: ShardId) -> bool {
        self.groups
            .get(&shard)
            .map(|raft| raft.metrics().borrow().state == ServerState::Leader)
            .unwrap_or(false)
    }

    /// Watches `shard`'s leadership: `true` while this node leads it.
    pub fn leadership(&self, shard: ShardId) -> Option<watch::Receiver<bool>> {
        let raft = self.groups.get(&shard)?;
        let mut metrics = raft.metrics();
        let (sender, receiver) = watch::channel(metrics.borrow().state == ServerState::Leader);
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                let leading = metrics.borrow().state == ServerState::Leader;
                sender.send_if_modified(|current| {
                    let changed = *current != leading;
                    *current = leading;
                    changed
                });
                if sender.is_closed() {
                    break;
                }
            }
        });
        Some(receiver)
    }

    /// Waits until this replica of `shard` has applied every entry its log
    /// holds now (on a new leader: everything committed before it led).
    pub async fn wait_applied(&self, shard: ShardId, timeout: Duration) -> Result<()> {
        let Some(raft) = self.groups.get(&shard) else { return Ok(()) };
        let target = raft.metrics().borrow().last_log_index;
        let waited = raft.wait(Some(timeout)).applied_index_at_least(target, "the log is applied").await;
        waited.map(|_| ()).map_err(|_| Error::NotApplied {
            shard,
            waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Waits until every local group knows a leader, or fails after `timeout`.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> Result<()> {
        for (shard, raft) in &self.groups {
            let waited =
                raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a leader is elected").await;
            if waited.is_err() {
                let waited_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                return Err(Error::NoLeader { shard: *shard, waited_ms });
            }
        }
        Ok(())
    }

    /// What this node's replica of each group knows, for status pages and
    /// metrics.
    pub fn status(&self) -> Vec<GroupStatus> {
        self.groups
            .iter()
            .map(|(shard, raft)| {
                let m = raft.metrics().borrow().clone();
                let last_log_index = m.last_log_index.unwrap_or(0);
                let lag = m
                    .replication
                    .as_ref()
                    .map(|followers| {
                        followers
                            .iter()
                            .filter(|(id, _)| **id != self.config.node.0)
                            .map(|(id, matched)| {
                                let matched = matched.map(|log| log.index).unwrap_or(0);
                                (*id, last_log_index.saturating_sub(matched))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                GroupStatus {
                    shard: *shard,
                    role: format!("{:?}", m.state).to_lowercase(),
                    term: m.current_term,
                    leader: m.current_leader,
                    voters: m.membership_config.membership().voter_ids().collect(),
                    last_log_index,
                    last_applied: m.last_applied.map(|log| log.index).unwrap_or(0),
                    snapshot: m.snapshot.map(|log| log.index),
                    purged: m.purged.map(|log| log.index),
                    replication_lag: lag,
                }
            })
            .collect()
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        for (shard, raft) in &self.groups {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(%shard, %error, "Raft group did not shut down cleanly");
            }
        }
    }
}

/// What one replica knows of its group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    pub shard: ShardId,
    /// leader, follower, candidate or learner.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub voters: BTreeSet<u64>,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    /// On the leader: entries each follower is behind.
    pub replication_lag: BTreeMap<u64, u64>,
}

/// Commits transaction commands to the shard that owns them.
#[derive(Debug, Clone)]
pub struct ShardedCommit {
    node: Arc<RaftNode>,
}

impl ShardedCommit {
    pub fn new(node: Arc<RaftNode>) -> Self {
        ShardedCommit { node }
    }
}

#[async_trait::async_trait]
impl Commit for ShardedCommit {
    async fn commit(&self, command: Command) -> std::result::Result<Response, CommitError> {
        let shard = match command.transaction_id() {
            Some(id) => self.node.shard_of(&id),
            None => ShardId::METADATA,
        };
        self.node.commit_to(shard, command).await
    }
}
