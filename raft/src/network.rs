//! The transport between Raft groups of different nodes.
//!
//! openraft's [`RaftNetworkFactory`] is the trait a transport implements; the
//! in-process [`InProcessRouter`] here delivers RPCs by direct calls to the
//! target node's group. The gRPC transport of the cluster issue implements the
//! same trait over tonic.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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

/// Delivers RPCs between groups of nodes living in one process.
#[derive(Clone, Default)]
pub struct InProcessRouter {
    groups: Arc<RwLock<Groups>>,
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

    /// The network factory of one shard's group.
    pub fn for_shard(&self, shard: ShardId) -> ShardNetwork {
        ShardNetwork { router: self.clone(), shard }
    }
}

/// The network of one shard's Raft group.
#[derive(Debug, Clone)]
pub struct ShardNetwork {
    router: InProcessRouter,
    shard: ShardId,
}

/// A connection to one target node's group.
#[derive(Debug)]
pub struct Connection {
    router: InProcessRouter,
    shard: ShardId,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for ShardNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        Connection { router: self.router.clone(), shard: self.shard, target }
    }
}

impl Connection {
    #[allow(clippy::result_large_err, reason = "openraft's RPC error is what the network trait returns")]
    fn raft<E: std::error::Error>(&self) -> Result<Raft<TypeConfig>, RPCError<NodeId, BasicNode, E>> {
        self.router.target(self.target, self.shard).ok_or_else(|| {
            let error = std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("node {} has no group for {}", self.target, self.shard),
            );
            RPCError::Unreachable(Unreachable::new(&error))
        })
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
        let raft = self.raft()?;
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
        let raft = self.raft()?;
        raft.install_snapshot(rpc).await.map_err(|e| remote(self.target, e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self.raft()?;
        raft.vote(rpc).await.map_err(|e| remote(self.target, e))
    }
}
