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
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::network::RaftNetworkFactory;
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
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
pub trait Transport: Clone + Send + Sync + 'static {
    type Network: RaftNetworkFactory<TypeConfig>;
    fn network(&self, shard: ShardId) -> Self::Network;
    fn register(&self, node: u64, shard: ShardId, raft: Raft<TypeConfig>);
    /// Forgets a local group that stopped.
    fn unregister(&self, node: u64, shard: ShardId);
}

/// Makes this node's replica of a group: what [`RaftNode`] needs of its
/// store and transport to start groups after it started (object safe, so the
/// node is not generic over its transport).
#[async_trait::async_trait]
trait Groups: Send + Sync {
    async fn make(
        &self,
        node: NodeId,
        shard: ShardId,
        config: Arc<openraft::Config>,
    ) -> Result<Raft<TypeConfig>>;
    fn register(&self, node: NodeId, shard: ShardId, raft: Raft<TypeConfig>);
    fn unregister(&self, node: NodeId, shard: ShardId);
}

struct GroupMaker<T> {
    store: Store,
    transport: T,
}

#[async_trait::async_trait]
impl<T: Transport> Groups for GroupMaker<T> {
    async fn make(
        &self,
        node: NodeId,
        shard: ShardId,
        config: Arc<openraft::Config>,
    ) -> Result<Raft<TypeConfig>> {
        Raft::new(
            node.0,
            config,
            self.transport.network(shard),
            self.store.log_store(shard),
            self.store.state_machine(shard),
        )
        .await
        .map_err(|e| Error::Start { shard, message: e.to_string() })
    }

    fn register(&self, node: NodeId, shard: ShardId, raft: Raft<TypeConfig>) {
        self.transport.register(node.0, shard, raft);
    }

    fn unregister(&self, node: NodeId, shard: ShardId) {
        self.transport.unregister(node.0, shard);
    }
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

/// Longest wait for a new replica to catch up before it becomes a voter (a
/// later reconciliation tries again).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// How long this node must have led a group before it hands the group
    /// to the group's preferred leader; 0 never hands over.
    pub leader_rebalance_after_ms: u64,
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
    ///
    /// Each shard snapshots after a slightly different number of entries
    /// (up to 7/16 more than `snapshot_log_entries_max`): under even load
    /// every shard would otherwise reach the threshold at once and all
    /// build their snapshots together, a stall of the whole node.
    fn openraft(&self, shard: ShardId, rank: usize, replicas: usize) -> Result<Arc<openraft::Config>> {
        let width = (self.election_timeout_max_ms - self.election_timeout_min_ms) / replicas.max(1) as u64;
        let election_timeout_min = self.election_timeout_min_ms + width * rank as u64;
        let config = openraft::Config {
            cluster_name: "payhub".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min,
            election_timeout_max: election_timeout_min + width.max(1),
            max_payload_entries: self.append_entries_max,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                self.snapshot_log_entries_max + self.snapshot_log_entries_max * u64::from(shard.0 % 8) / 16,
            ),
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

/// The Raft groups this node takes part in. The set changes while the node
/// runs: [`RaftNode::adopt`] starts the groups a new placement gives it, and
/// [`RaftNode::reconcile`] moves replicas where the placement says and stops
/// the groups this node no longer belongs to.
pub struct RaftNode {
    config: RaftConfig,
    slots: SlotMap,
    placement: RwLock<Arc<Placement>>,
    groups: RwLock<BTreeMap<ShardId, Raft<TypeConfig>>>,
    maker: Box<dyn Groups>,
    /// Groups whose membership this node, as their leader, is changing now.
    changing: Mutex<BTreeSet<ShardId>>,
    /// Since when this node has led each group it leads (as reconciliation saw).
    led_since: Mutex<BTreeMap<ShardId, std::time::Instant>>,
    /// The group this node is handing to its preferred leader (one at a time);
    /// it refuses writes meanwhile.
    yielding: Mutex<Option<ShardId>>,
    /// Groups in which this replica must not campaign until the instant, so
    /// that another replica takes over (see [`Self::hold_elections`]).
    held: Mutex<BTreeMap<ShardId, std::time::Instant>>,
    /// How a hand-over asks the other followers to hold their elections.
    hold_peers: OnceLock<HoldPeers>,
}

/// Asks `followers` of `shard` (other nodes) not to campaign for `hold`, so
/// that the preferred replica alone runs when the leader goes quiet. Set
/// once with [`RaftNode::set_hold_peers`]; the node's network does it.
pub type HoldPeers = Box<
    dyn Fn(ShardId, Vec<NodeId>, Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node", &self.config.node)
            .field("shards", &self.slots.shard_count())
            .finish()
    }
}

/// How [`RaftNode::start`] treats groups that have never been initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// The cluster's first start: initialise them with their placed replicas
    /// as voters. Every replica does the same with the same membership, so a
    /// cluster needs no bootstrap coordinator.
    Initialise,
    /// A restart or a join: leave them empty until their leader adds this
    /// replica (initialising here could start a second group under the name).
    Wait,
}

impl RaftNode {
    /// Starts this node's replica of every group `placement` gives it, on
    /// `store`. One member with replication factor 1 is the embedded single
    /// node.
    pub async fn start(
        config: RaftConfig,
        placement: Placement,
        store: &Store,
        transport: &impl Transport,
        bootstrap: Bootstrap,
    ) -> Result<Self> {
        // Reject a bad configuration even on a node placed in no group.
        config.openraft(ShardId::METADATA, 0, 1)?;
        if placement.member(config.node).is_none() {
            return Err(Error::NotMember(config.node));
        }
        let node = RaftNode {
            slots: SlotMap::new(config.shard_count),
            config,
            placement: RwLock::new(Arc::new(placement.clone())),
            groups: RwLock::new(BTreeMap::new()),
            maker: Box::new(GroupMaker { store: store.clone(), transport: transport.clone() }),
            changing: Mutex::new(BTreeSet::new()),
            led_since: Mutex::new(BTreeMap::new()),
            yielding: Mutex::new(None),
            held: Mutex::new(BTreeMap::new()),
            hold_peers: OnceLock::new(),
        };
        for shard in placement.shards_of(node.config.node) {
            node.start_group(&placement, shard, bootstrap).await?;
        }
        Ok(node)
    }

    /// Starts this node's replica of `shard`.
    async fn start_group(&self, placement: &Placement, shard: ShardId, bootstrap: Bootstrap) -> Result<()> {
        let me = self.config.node;
        let start_error = |message: String| Error::Start { shard, message };
        let replicas = placement.replicas(shard);
        let rank = replicas.iter().position(|n| *n == me).unwrap_or(0);
        let raft = self.maker.make(me, shard, self.config.openraft(shard, rank, replicas.len())?).await?;
        if bootstrap == Bootstrap::Initialise
            && !raft.is_initialized().await.map_err(|e| start_error(e.to_string()))?
        {
            let members: BTreeMap<u64, BasicNode> = replicas
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
        self.maker.register(me, shard, raft.clone());
        self.groups.write().unwrap_or_else(|p| p.into_inner()).insert(shard, raft);
        Ok(())
    }

    pub fn node(&self) -> NodeId {
        self.config.node
    }

    pub fn slots(&self) -> SlotMap {
        self.slots
    }

    /// The placement this node's groups follow now.
    pub fn placement(&self) -> Arc<Placement> {
        self.placement.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Follows `placement` from now on: starts (empty, to be filled by their
    /// leaders) the groups it gives this node that are not running here.
    /// Returns the shards started. Groups it no longer gives this node keep
    /// running until their leaders have removed this replica (see
    /// [`Self::reconcile`]).
    pub async fn adopt(&self, placement: Placement) -> Result<Vec<ShardId>> {
        *self.placement.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(placement.clone());
        let mut started = Vec::new();
        for shard in placement.shards_of(self.config.node) {
            if !self.hosts(shard) {
                self.start_group(&placement, shard, Bootstrap::Wait).await?;
                tracing::info!(%shard, "replica started; its leader will fill it");
                started.push(shard);
            }
        }
        Ok(started)
    }

    /// One round of bringing the groups in line with the placement:
    ///
    /// - on each group this node leads whose members differ from the placed
    ///   replicas (or whose last change was left halfway, in joint
    ///   consensus), adds the new replicas as learners, waits for them to catch
    ///   up, makes the placed replicas the voters (joint consensus) with the
    ///   replaced ones kept as learners, so they learn they no longer vote,
    ///   then removes those learners. Runs in the background, one change per
    ///   group at a time; a leader that is replaced steps down once the new
    ///   voters are committed, and the next leader finishes;
    /// - stops each local group the placement no longer gives this node once
    ///   it knows it is no longer a voter, and keeps it from campaigning until
    ///   then. A replica removed while it lagged or was down never hears of
    ///   it: see [`Self::leaving`]. Returns the shards stopped.
    ///
    /// Idempotent: call it periodically.
    pub async fn reconcile(self: &Arc<Self>) -> Vec<ShardId> {
        let placement = self.placement();
        let me = self.config.node;
        let mut stopped = Vec::new();
        for (shard, raft) in self.groups_snapshot() {
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let placed: BTreeSet<u64> = placement.replicas(shard).iter().map(|n| n.0).collect();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let members: BTreeSet<u64> = voters.iter().copied().chain(membership.learner_ids()).collect();
            let uniform = membership.get_joint_config().len() == 1;
            let leading = metrics.state == ServerState::Leader;
            let led_for = self.led_for(shard, leading);
            // The leader moves the replicas, also when it is one of those
            // that go: nobody else can. A change left halfway (a joint
            // configuration: its leader lost the lead between the two
            // steps) is finished the same way.
            if leading && (!uniform || members != placed) && !placed.is_empty() {
                self.spawn_membership_change(shard, raft.clone(), placement.clone(), placed.clone());
            }
            if placed.contains(&me.0) {
                raft.runtime_config().elect(!self.is_held(shard));
                if leading && uniform && members == placed {
                    if let Some((preferred, others)) = self.hand_over_to(&placement, shard, &metrics, led_for)
                    {
                        self.spawn_hand_over(shard, raft, preferred, others);
                    }
                }
            } else if voters.contains(&me.0) {
                // Still a voter while the leader moves the group elsewhere:
                // vote and replicate, but never campaign.
                raft.runtime_config().elect(false);
            } else {
                self.stop_group(shard).await;
                stopped.push(shard);
            }
        }
        stopped
    }

    /// Whether this node, leading `shard` for `led_for`, should hand it to
    /// the group's preferred leader: the preferred replica and the other
    /// followers (who must hold their elections meanwhile).
    fn hand_over_to(
        &self,
        placement: &Placement,
        shard: ShardId,
        metrics: &openraft::RaftMetrics<u64, BasicNode>,
        led_for: Duration,
    ) -> Option<(u64, Vec<NodeId>)> {
        let me = self.config.node.0;
        let after = Duration::from_millis(self.config.leader_rebalance_after_ms);
        if after.is_zero() || led_for < after {
            return None;
        }
        let voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
        let preferred =
            placement.replicas(shard).first().map(|n| n.0).filter(|p| *p != me && voters.contains(p))?;
        // Only to a replica that has (nearly) everything: it must not make
        // the group wait for its catching up.
        let matched = metrics.replication.as_ref()?.get(&preferred).cloned().flatten()?;
        let behind = metrics.last_log_index.unwrap_or(0).saturating_sub(matched.index);
        if behind > self.config.append_entries_max {
            return None;
        }
        let others =
            voters.iter().filter(|id| **id != me && **id != preferred).copied().map(NodeId).collect();
        Some((preferred, others))
    }

    /// How long this node has led `shard` (zero when it does not lead it now).
    fn led_for(&self, shard: ShardId, leading: bool) -> Duration {
        let mut led_since = self.led_since.lock().unwrap_or_else(|p| p.into_inner());
        if !leading {
            led_since.remove(&shard);
            return Duration::ZERO;
        }
        led_since.entry(shard).or_insert_with(std::time::Instant::now).elapsed()
    }

    /// Connects hand-overs to the network: see [`HoldPeers`]. Without it a
    /// hand-over still happens, but the other followers may win it.
    pub fn set_hold_peers(&self, hold: HoldPeers) {
        let _ = self.hold_peers.set(hold);
    }

    /// Keeps this replica of `shard` from campaigning for `hold` (it still
    /// votes and replicates): another replica is taking over.
    pub fn hold_elections(&self, shard: ShardId, hold: Duration) {
        let Some(raft) = self.raft(shard) else { return };
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(shard, std::time::Instant::now() + hold);
        raft.runtime_config().elect(false);
    }

    fn is_held(&self, shard: ShardId) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.get(&shard) {
            Some(until) if *until > std::time::Instant::now() => true,
            Some(_) => {
                held.remove(&shard);
                false
            }
            None => false,
        }
    }

    /// Hands `shard`, which this node leads, to `preferred` (caught up).
    /// openraft 0.9 has no leader transfer, so: the `others` followers hold
    /// their elections, and this node stops sending heartbeats and refuses
    /// writes; once the followers' leader lease runs out, the preferred
    /// replica's election timer fires and, the only candidate, it wins. The
    /// group takes no writes for about one election timeout (answered "not
    /// leader", which clients retry). If no other leader emerges in time this
    /// node carries on leading and the others campaign again.
    fn spawn_hand_over(
        self: &Arc<Self>,
        shard: ShardId,
        raft: Raft<TypeConfig>,
        preferred: u64,
        others: Vec<NodeId>,
    ) {
        {
            let mut yielding = self.yielding.lock().unwrap_or_else(|p| p.into_inner());
            if yielding.is_some() {
                return;
            }
            *yielding = Some(shard);
        }
        let node = self.clone();
        // Past every follower's lease, and a few tries of the candidate.
        let patience = Duration::from_millis(self.config.election_timeout_max_ms * 4);
        tokio::spawn(async move {
            tracing::info!(%shard, to = preferred, "handing leadership to the preferred leader");
            if let Some(hold) = node.hold_peers.get() {
                if tokio::time::timeout(patience / 2, hold(shard, others, patience)).await.is_err() {
                    tracing::warn!(%shard, "followers did not confirm holding their elections");
                }
            }
            raft.runtime_config().heartbeat(false);
            let me = node.config.node.0;
            let handed = raft
                .wait(Some(patience))
                .metrics(|m| m.current_leader.is_some_and(|leader| leader != me), "another leader")
                .await
                .is_ok();
            raft.runtime_config().heartbeat(true);
            *node.yielding.lock().unwrap_or_else(|p| p.into_inner()) = None;
            node.led_since.lock().unwrap_or_else(|p| p.into_inner()).remove(&shard);
            let leader = raft.metrics().borrow().current_leader;
            tracing::info!(%shard, ?leader, handed, "leadership hand-over ended");
            let outcome = match leader {
                Some(leader) if leader == preferred => "handed",
                Some(leader) if leader != me => "other",
                _ => "kept",
            };
            metrics::counter!("payhub_raft_leader_handovers_total", "outcome" => outcome).increment(1);
        });
    }

    /// The groups the placement no longer gives this node but in which, as
    /// far as this replica knows, it still votes. The caller asks each one's
    /// leader ([`Self::members`] there) and stops those that dropped it.
    pub fn leaving(&self) -> Vec<ShardId> {
        let placement = self.placement();
        let me = self.config.node;
        self.groups_snapshot()
            .into_iter()
            .filter(|(shard, raft)| {
                !placement.replicas(*shard).contains(&me)
                    && raft.metrics().borrow().membership_config.membership().voter_ids().any(|id| id == me.0)
            })
            .map(|(shard, _)| shard)
            .collect()
    }

    /// On the leader of `shard`: its voters and learners (None elsewhere).
    pub fn members(&self, shard: ShardId) -> Option<(BTreeSet<u64>, BTreeSet<u64>)> {
        let raft = self.raft(shard)?;
        let metrics = raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return None;
        }
        let membership = metrics.membership_config.membership();
        Some((membership.voter_ids().collect(), membership.learner_ids().collect()))
    }

    /// Stops this node's replica of `shard` (its data stays on disk).
    pub async fn stop_group(&self, shard: ShardId) {
        let me = self.config.node;
        let Some(raft) = self.groups.write().unwrap_or_else(|p| p.into_inner()).remove(&shard) else {
            return;
        };
        self.maker.unregister(me, shard);
        if let Err(error) = raft.shutdown().await {
            tracing::warn!(%shard, %error, "removed replica did not shut down cleanly");
        }
        tracing::info!(%shard, "replica removed from its group; stopped");
    }

    fn spawn_membership_change(
        self: &Arc<Self>,
        shard: ShardId,
        raft: Raft<TypeConfig>,
        placement: Arc<Placement>,
        placed: BTreeSet<u64>,
    ) {
        if !self.changing.lock().unwrap_or_else(|p| p.into_inner()).insert(shard) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let outcome = match change_membership(&raft, &placement, &placed).await {
                Ok(()) => {
                    tracing::info!(%shard, voters = ?placed, "group membership changed");
                    "ok"
                }
                Err(error) => {
                    tracing::warn!(%shard, %error, "membership change not finished; retrying later");
                    "retry"
                }
            };
            metrics::counter!("payhub_raft_membership_changes_total", "outcome" => outcome).increment(1);
            node.changing.lock().unwrap_or_else(|p| p.into_inner()).remove(&shard);
        });
    }

    fn groups_snapshot(&self) -> Vec<(ShardId, Raft<TypeConfig>)> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(s, r)| (*s, r.clone())).collect()
    }

    fn raft(&self, shard: ShardId) -> Option<Raft<TypeConfig>> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).get(&shard).cloned()
    }

    /// Whether this node holds a replica of `shard`.
    pub fn hosts(&self, shard: ShardId) -> bool {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).contains_key(&shard)
    }

    /// The leader of `shard` as this node's replica knows it (None when this
    /// node holds no replica or knows no leader).
    pub fn leader_of(&self, shard: ShardId) -> Option<NodeId> {
        self.raft(shard).and_then(|raft| raft.metrics().borrow().current_leader).map(NodeId)
    }

    pub fn shard_of(&self, id: &TransactionId) -> ShardId {
        self.slots.shard_of(id)
    }

    /// Every group of this node, the metadata group first.
    pub fn shards(&self) -> Vec<ShardId> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).keys().copied().collect()
    }

    /// The transaction shards this node holds a replica of.
    pub fn transaction_shards(&self) -> Vec<ShardId> {
        self.shards().into_iter().filter(|shard| *shard != ShardId::METADATA).collect()
    }

    /// Commits `command` through `shard`'s group and returns what applying it
    /// answered.
    pub async fn commit_to(
        &self,
        shard: ShardId,
        command: Command,
    ) -> std::result::Result<Response, CommitError> {
        let started = std::time::Instant::now();
        let raft = self.raft(shard).ok_or(CommitError::NotLeader)?;
        if *self.yielding.lock().unwrap_or_else(|p| p.into_inner()) == Some(shard) {
            // Handing the group over: the next leader takes the write.
            return Err(CommitError::NotLeader);
        }
        // A write that neither commits nor fails (a leader deposed mid-write)
        // must not hold its caller forever: give up and let it retry.
        let written = tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(command)).await;
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
        self.raft(shard).map(|raft| raft.metrics().borrow().state == ServerState::Leader).unwrap_or(false)
    }

    /// Watches `shard`'s leadership: `true` while this node leads it. Closes
    /// when the group stops.
    pub fn leadership(&self, shard: ShardId) -> Option<watch::Receiver<bool>> {
        let raft = self.raft(shard)?;
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
        let Some(raft) = self.raft(shard) else { return Ok(()) };
        let target = raft.metrics().borrow().last_log_index;
        let waited = raft.wait(Some(timeout)).applied_index_at_least(target, "the log is applied").await;
        waited.map(|_| ()).map_err(|_| Error::NotApplied {
            shard,
            waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Waits until every local group knows a leader, or fails after `timeout`.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> Result<()> {
        for (shard, raft) in self.groups_snapshot() {
            let waited =
                raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a leader is elected").await;
            if waited.is_err() {
                let waited_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                return Err(Error::NoLeader { shard, waited_ms });
            }
        }
        Ok(())
    }

    /// What this node's replica of each group knows, for status pages and
    /// metrics.
    pub fn status(&self) -> Vec<GroupStatus> {
        self.groups_snapshot()
            .into_iter()
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
                let membership = m.membership_config.membership();
                GroupStatus {
                    shard,
                    role: format!("{:?}", m.state).to_lowercase(),
                    term: m.current_term,
                    leader: m.current_leader,
                    voters: membership.voter_ids().collect(),
                    learners: membership.learner_ids().collect(),
                    joint: membership.get_joint_config().len() > 1,
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
        for (shard, raft) in self.groups_snapshot() {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(%shard, %error, "Raft group did not shut down cleanly");
            }
        }
    }
}

/// Makes `placed` the members of the group `raft` leads: each new replica
/// joins as a learner and catches up first (the group never waits on a voter
/// far behind); then `placed` become the voters, the replaced voters staying
/// learners until that commits (a replica removed outright would never hear
/// of it and could campaign on); then those learners go.
async fn change_membership(
    raft: &Raft<TypeConfig>,
    placement: &Placement,
    placed: &BTreeSet<u64>,
) -> std::result::Result<(), String> {
    let membership = raft.metrics().borrow().membership_config.membership().clone();
    let current: BTreeSet<u64> = membership.voter_ids().chain(membership.learner_ids()).collect();
    for id in placed.difference(&current) {
        let member = placement.member(NodeId(*id)).ok_or_else(|| format!("node {id} is not a member"))?;
        let node = BasicNode { addr: member.grpc.clone() };
        tokio::time::timeout(CATCH_UP_TIMEOUT, raft.add_learner(*id, node, true))
            .await
            .map_err(|_| format!("node {id} did not catch up within {} s", CATCH_UP_TIMEOUT.as_secs()))?
            .map_err(|e| format!("adding node {id} as a learner: {e}"))?;
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    if voters != *placed {
        tokio::time::timeout(CATCH_UP_TIMEOUT, raft.change_membership(placed.clone(), true))
            .await
            .map_err(|_| "the new voters did not commit in time".to_string())?
            .map_err(|e| format!("changing the voters: {e}"))?;
    }
    let membership = raft.metrics().borrow().membership_config.membership().clone();
    let extra: BTreeSet<u64> = membership.learner_ids().filter(|id| !placed.contains(id)).collect();
    if !extra.is_empty() {
        tokio::time::timeout(
            CATCH_UP_TIMEOUT,
            raft.change_membership(ChangeMembers::RemoveNodes(extra), false),
        )
        .await
        .map_err(|_| "removing the replaced replicas did not commit in time".to_string())?
        .map_err(|e| format!("removing the replaced replicas: {e}"))?;
    }
    Ok(())
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
    /// Replicas being filled before they vote.
    pub learners: BTreeSet<u64>,
    /// A membership change is halfway: `voters` are the old and the new
    /// voters together (joint consensus), both majorities needed.
    pub joint: bool,
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
