//! Consensus: the Raft groups of one node.
//!
//! A node runs the metadata group (shard 0) and a group per transaction shard
//! (1..=N), each an independent openraft instance over the node's one
//! RocksDB. Every command is committed here before it is applied. This crate
//! owns routing (which shard holds a transaction, [`slots`]) and the transport
//! trait between nodes ([`network`]); it knows nothing of payments beyond the
//! command type, and never touches RocksDB itself (that is `storage`).

pub mod network;
pub mod slots;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use tokio::sync::watch;

use actors::command::{Command, Response};
use actors::model::{NodeId, ShardId, TransactionId};
use actors::runtime::{Commit, CommitError};
use storage::{Store, TypeConfig};

pub use network::InProcessRouter;
pub use slots::SlotMap;

/// Failures of the consensus layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("Raft group of {shard} failed to start: {message}")]
    Start { shard: ShardId, message: String },
    #[error("{shard} has no leader after {waited_ms} ms")]
    NoLeader { shard: ShardId, waited_ms: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a node runs its groups.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub node: NodeId,
    /// This node's address, recorded in the groups' membership.
    pub address: String,
    pub zone: String,
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
    fn openraft(&self) -> Result<Arc<openraft::Config>> {
        let config = openraft::Config {
            cluster_name: "payhub".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            max_payload_entries: self.append_entries_max,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_log_entries_max),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        };
        config.validate().map(Arc::new).map_err(|e| Error::Config(e.to_string()))
    }
}

/// The Raft groups this node takes part in.
pub struct RaftNode {
    config: RaftConfig,
    slots: SlotMap,
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
    /// Starts every group on `store`. A group that has never been initialised
    /// is initialised with this node as its only voter: the embedded, single
    /// node topology. (Joining an existing cluster is the cluster issue's.)
    pub async fn start(config: RaftConfig, store: &Store, router: &InProcessRouter) -> Result<Self> {
        let openraft_config = config.openraft()?;
        let slots = SlotMap::new(config.shard_count);
        let mut groups = BTreeMap::new();
        let shards = std::iter::once(ShardId::METADATA).chain(slots.shards());
        for shard in shards {
            let start_error = |message: String| Error::Start { shard, message };
            let raft = Raft::new(
                config.node.0,
                openraft_config.clone(),
                router.for_shard(shard),
                store.log_store(shard),
                store.state_machine(shard),
            )
            .await
            .map_err(|e| start_error(e.to_string()))?;
            router.register(config.node.0, shard, raft.clone());
            if !raft.is_initialized().await.map_err(|e| start_error(e.to_string()))? {
                let members = BTreeMap::from([(config.node.0, BasicNode { addr: config.address.clone() })]);
                raft.initialize(members).await.map_err(|e| start_error(e.to_string()))?;
            }
            groups.insert(shard, raft);
        }
        Ok(RaftNode { config, slots, groups })
    }

    pub fn node(&self) -> NodeId {
        self.config.node
    }

    pub fn slots(&self) -> SlotMap {
        self.slots
    }

    pub fn shard_of(&self, id: &TransactionId) -> ShardId {
        self.slots.shard_of(id)
    }

    /// Every group, the metadata group first.
    pub fn shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.groups.keys().copied()
    }

    /// The transaction shards.
    pub fn transaction_shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.slots.shards()
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
        let result = self.group(shard)?.client_write(command).await;
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

    /// Waits until every group has a leader, or fails after `timeout`.
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

    /// The voters of each group (for status pages).
    pub fn members(&self) -> BTreeMap<ShardId, BTreeSet<u64>> {
        self.groups
            .iter()
            .map(|(shard, raft)| {
                let metrics = raft.metrics().borrow().clone();
                (*shard, metrics.membership_config.membership().voter_ids().collect())
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
