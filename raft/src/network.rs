//! The in-process transport: several nodes in one process, for tests.
//!
//! [`InProcessRouter`] delivers RPCs by direct calls to the target node's
//! group, and can inject the faults a real network has: it drops, delays and
//! duplicates messages at configured rates, and cuts nodes off from each
//! other (partitions). The gRPC transport ([`crate::grpc`]) implements the
//! same [`crate::Transport`] trait between processes.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};

use actors::model::ShardId;
use storage::TypeConfig;

type NodeId = u64;

type Groups = HashMap<(NodeId, ShardId), Raft<TypeConfig>>;

/// Faults the router injects.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Node pairs that cannot reach each other (both directions).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Share of messages lost, in thousandths.
    pub drop_per_mille: u64,
    /// Share of messages delivered twice, in thousandths.
    pub duplicate_per_mille: u64,
    /// Each message waits a random time up to this before delivery.
    pub delay_ms_max: u64,
}

/// Delivers RPCs between groups of nodes living in one process.
#[derive(Clone, Default)]
pub struct InProcessRouter {
    groups: Arc<RwLock<Groups>>,
    faults: Arc<Mutex<Faults>>,
    random: Arc<AtomicU64>,
}

impl std::fmt::Debug for InProcessRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessRouter").finish_non_exhaustive()
    }
}

impl InProcessRouter {
    pub fn register(&self, node: NodeId, shard: ShardId, raft: Raft<TypeConfig>) {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).insert((node, shard), raft);
    }

    pub fn unregister(&self, node: NodeId) {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).retain(|(n, _), _| *n != node);
    }

    fn target(&self, node: NodeId, shard: ShardId) -> Option<Raft<TypeConfig>> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).get(&(node, shard)).cloned()
    }

    /// The transport of one node of the process.
    pub fn node(&self, node: NodeId) -> NodeTransport {
        NodeTransport { router: self.clone(), node }
    }

    /// Replaces the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Cuts `node` off from every other node.
    pub fn isolate(&self, node: NodeId, others: impl IntoIterator<Item = NodeId>) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        for other in others {
            if other != node {
                faults.cut.insert((node.min(other), node.max(other)));
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).cut.clear();
    }

    /// A pseudo-random number below 1000 (splitmix64; test faults need no
    /// better randomness).
    fn per_mille(&self) -> u64 {
        let mut z = self.random.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 1000
    }

    fn is_cut(&self, source: NodeId, target: NodeId) -> bool {
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults.cut.contains(&(source.min(target), source.max(target)))
    }

    /// What happens to one message from `source` to `target`.
    fn fate(&self, source: NodeId, target: NodeId) -> Fate {
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if faults.cut.contains(&(source.min(target), source.max(target))) {
            return Fate::Lost;
        }
        if faults.drop_per_mille > 0 && self.per_mille() < faults.drop_per_mille {
            return Fate::Lost;
        }
        let delay = if faults.delay_ms_max > 0 { self.per_mille() * faults.delay_ms_max / 1000 } else { 0 };
        let twice = faults.duplicate_per_mille > 0 && self.per_mille() < faults.duplicate_per_mille;
        Fate::Delivered { delay: Duration::from_millis(delay), twice }
    }
}

enum Fate {
    Lost,
    Delivered { delay: Duration, twice: bool },
}

/// The transport of one node living in the router's process.
#[derive(Debug, Clone)]
pub struct NodeTransport {
    router: InProcessRouter,
    node: NodeId,
}

impl crate::Transport for NodeTransport {
    type Network = ShardNetwork;

    fn network(&self, shard: ShardId) -> ShardNetwork {
        ShardNetwork { router: self.router.clone(), source: self.node, shard }
    }

    fn register(&self, node: NodeId, shard: ShardId, raft: Raft<TypeConfig>) {
        self.router.register(node, shard, raft);
    }

    fn unregister(&self, node: NodeId, shard: ShardId) {
        self.router.groups.write().unwrap_or_else(|p| p.into_inner()).remove(&(node, shard));
    }
}

/// The network of one shard's Raft group.
#[derive(Debug, Clone)]
pub struct ShardNetwork {
    router: InProcessRouter,
    source: NodeId,
    shard: ShardId,
}

/// A connection to one target node's group.
#[derive(Debug)]
pub struct Connection {
    router: InProcessRouter,
    source: NodeId,
    shard: ShardId,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for ShardNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        Connection { router: self.router.clone(), source: self.source, shard: self.shard, target }
    }
}

fn unreachable<E: std::error::Error>(message: String) -> RPCError<NodeId, BasicNode, E> {
    let error = std::io::Error::new(std::io::ErrorKind::NotConnected, message);
    RPCError::Unreachable(Unreachable::new(&error))
}

impl Connection {
    /// The target group, after the message has met its fate: `Ok(twice)`
    /// when it is delivered (`twice`: deliver it a second time).
    #[allow(clippy::result_large_err, reason = "openraft's RPC error is what the network trait returns")]
    async fn deliver<E: std::error::Error>(
        &self,
    ) -> Result<(Raft<TypeConfig>, bool), RPCError<NodeId, BasicNode, E>> {
        let twice = match self.router.fate(self.source, self.target) {
            Fate::Lost => {
                return Err(unreachable(format!("message {} -> {} lost", self.source, self.target)));
            }
            Fate::Delivered { delay, twice } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                    // A partition made meanwhile loses what was on the way.
                    if self.router.is_cut(self.source, self.target) {
                        return Err(unreachable(format!("message {} -> {} lost", self.source, self.target)));
                    }
                }
                twice
            }
        };
        let raft = self
            .router
            .target(self.target, self.shard)
            .ok_or_else(|| unreachable(format!("node {} has no group for {}", self.target, self.shard)))?;
        Ok((raft, twice))
    }
}

fn remote<E: std::error::Error>(
    target: NodeId,
    error: RaftError<NodeId, E>,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::RemoteError(RemoteError::new(target, error))
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let (raft, twice) = self.deliver().await?;
        if twice {
            let _ = raft.append_entries(rpc.clone()).await;
        }
        raft.append_entries(rpc).await.map_err(|e| remote(self.target, e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let (raft, twice) = self.deliver().await?;
        if twice {
            let _ = raft.install_snapshot(rpc.clone()).await;
        }
        raft.install_snapshot(rpc).await.map_err(|e| remote(self.target, e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let (raft, twice) = self.deliver().await?;
        if twice {
            let _ = raft.vote(rpc.clone()).await;
        }
        raft.vote(rpc).await.map_err(|e| remote(self.target, e))
    }
}
