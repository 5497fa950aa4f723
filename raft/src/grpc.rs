//! The gRPC transport between nodes (tonic over HTTP/2).
//!
//! One lazily connected channel per peer node carries the RPCs of every shard
//! the two nodes share: HTTP/2 multiplexes them, and each message names its
//! shard. openraft batches entries into each AppendEntries itself (up to
//! `append_entries_max`), so one RPC carries many transactions' inputs.
//!
//! Payloads are openraft's serde types as JSON (format 1); the response
//! payload is the `Result` the target's group returned, so a remote Raft
//! error arrives as itself and a dead or unknown peer as `Unreachable`
//! (openraft backs off before retrying it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use actors::model::ShardId;
use proto::v1::raft_transport_client::RaftTransportClient;
use proto::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use proto::v1::RaftMessage;
use storage::TypeConfig;

use crate::Transport;

type NodeId = u64;

/// Version of the payload encoding inside [`RaftMessage`].
pub const PAYLOAD_FORMAT_JSON: u32 = 1;

/// Largest gRPC message either side accepts (snapshot chunks are smaller;
/// see `RaftConfig::openraft`).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Channels to peer nodes, one per address, shared by every shard and by the
/// forwarding service.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").finish_non_exhaustive()
    }
}

impl Peers {
    /// Connection attempts give up after this long; the caller's RPC then
    /// fails as `Unreachable`.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

    /// The channel to `address` (`host:port`), created on first use. tonic
    /// reconnects it after the peer comes back.
    pub fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("bad peer address {address:?}: {e}"))?
            .connect_timeout(Self::CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// The groups of this node, found by shard when an RPC arrives.
#[derive(Clone, Default)]
pub struct LocalGroups {
    groups: Arc<RwLock<HashMap<ShardId, Raft<TypeConfig>>>>,
}

impl std::fmt::Debug for LocalGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalGroups").finish_non_exhaustive()
    }
}

impl LocalGroups {
    fn insert(&self, shard: ShardId, raft: Raft<TypeConfig>) {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).insert(shard, raft);
    }

    fn remove(&self, shard: ShardId) {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).remove(&shard);
    }

    fn get(&self, shard: ShardId) -> Option<Raft<TypeConfig>> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).get(&shard).cloned()
    }
}

/// The gRPC transport of one node: clients to its peers and the local groups
/// its server hands incoming RPCs to.
#[derive(Debug, Clone, Default)]
pub struct GrpcTransport {
    peers: Peers,
    local: LocalGroups,
}

impl GrpcTransport {
    pub fn new(peers: Peers) -> Self {
        GrpcTransport { peers, local: LocalGroups::default() }
    }

    /// The tonic service to mount on this node's gRPC server.
    pub fn service(&self) -> RaftTransportServer<RaftService> {
        RaftTransportServer::new(RaftService { local: self.local.clone() })
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX)
    }
}

impl Transport for GrpcTransport {
    type Network = GrpcNetwork;

    fn network(&self, shard: ShardId) -> GrpcNetwork {
        GrpcNetwork { peers: self.peers.clone(), shard }
    }

    fn register(&self, _node: NodeId, shard: ShardId, raft: Raft<TypeConfig>) {
        self.local.insert(shard, raft);
    }

    fn unregister(&self, _node: NodeId, shard: ShardId) {
        self.local.remove(shard);
    }
}

/// The network of one shard's group.
#[derive(Debug, Clone)]
pub struct GrpcNetwork {
    peers: Peers,
    shard: ShardId,
}

/// A shard's connection to one target node.
#[derive(Debug)]
pub struct GrpcConnection {
    client: Result<RaftTransportClient<Channel>, String>,
    shard: ShardId,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcConnection {
        let client = self.peers.channel(&node.addr).map(|channel| {
            RaftTransportClient::new(channel)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX)
        });
        GrpcConnection { client, shard: self.shard, target }
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

fn unreachable(message: impl Into<String>) -> Unreachable {
    Unreachable::new(&std::io::Error::new(std::io::ErrorKind::NotConnected, message.into()))
}

fn network_error(message: impl Into<String>) -> NetworkError {
    NetworkError::new(&std::io::Error::other(message.into()))
}

impl GrpcConnection {
    #[allow(clippy::result_large_err, reason = "openraft's RPC error is what the network trait returns")]
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(message) => return Err(RPCError::Unreachable(unreachable(message.clone()))),
        };
        let payload = serde_json::to_vec(request)
            .map_err(|e| RPCError::Network(network_error(format!("cannot encode {rpc:?}: {e}"))))?;
        let mut message =
            tonic::Request::new(RaftMessage { shard: self.shard.0, format: PAYLOAD_FORMAT_JSON, payload });
        message.set_timeout(option.hard_ttl());
        let started = std::time::Instant::now();
        let answer = match rpc {
            Rpc::AppendEntries => client.append_entries(message).await,
            Rpc::Vote => client.vote(message).await,
            Rpc::InstallSnapshot => client.install_snapshot(message).await,
        };
        metrics::histogram!("payhub_raft_rpc_seconds", "rpc" => format!("{rpc:?}"))
            .record(started.elapsed().as_secs_f64());
        let answer = match answer {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                metrics::counter!("payhub_raft_rpc_errors_total", "rpc" => format!("{rpc:?}")).increment(1);
                let message = format!("node {} ({}): {}", self.target, self.shard, status.message());
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                        RPCError::Unreachable(unreachable(message))
                    }
                    _ => RPCError::Network(network_error(message)),
                });
            }
        };
        if answer.format != PAYLOAD_FORMAT_JSON {
            let message = format!("node {} answered payload format {}", self.target, answer.format);
            return Err(RPCError::Network(network_error(message)));
        }
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&answer.payload)
            .map_err(|e| RPCError::Network(network_error(format!("cannot decode {rpc:?} answer: {e}"))))?;
        result.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

impl RaftNetwork<TypeConfig> for GrpcConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        metrics::histogram!("payhub_raft_append_entries_batch").record(rpc.entries.len() as f64);
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

/// The server side: hands each incoming RPC to the local group of its shard.
#[derive(Debug, Clone)]
pub struct RaftService {
    local: LocalGroups,
}

#[allow(clippy::result_large_err, reason = "tonic's Status is what a service returns")]
impl RaftService {
    fn open<Req: DeserializeOwned>(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<(ShardId, Raft<TypeConfig>, Req), tonic::Status> {
        let message = request.into_inner();
        if message.format != PAYLOAD_FORMAT_JSON {
            return Err(tonic::Status::invalid_argument(format!(
                "payload format {} is not supported (expected {PAYLOAD_FORMAT_JSON})",
                message.format
            )));
        }
        let shard = ShardId(message.shard);
        let raft = self
            .local
            .get(shard)
            .ok_or_else(|| tonic::Status::unavailable(format!("this node has no replica of {shard}")))?;
        let request = serde_json::from_slice(&message.payload)
            .map_err(|e| tonic::Status::invalid_argument(format!("malformed payload: {e}")))?;
        Ok((shard, raft, request))
    }

    fn answer<T: Serialize>(
        shard: ShardId,
        result: &T,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let payload = serde_json::to_vec(result)
            .map_err(|e| tonic::Status::internal(format!("cannot encode the answer: {e}")))?;
        Ok(tonic::Response::new(RaftMessage { shard: shard.0, format: PAYLOAD_FORMAT_JSON, payload }))
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let (shard, raft, rpc) = self.open::<AppendEntriesRequest<TypeConfig>>(request)?;
        Self::answer(shard, &raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let (shard, raft, rpc) = self.open::<VoteRequest<NodeId>>(request)?;
        Self::answer(shard, &raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let (shard, raft, rpc) = self.open::<InstallSnapshotRequest<TypeConfig>>(request)?;
        Self::answer(shard, &raft.install_snapshot(rpc).await)
    }
}
