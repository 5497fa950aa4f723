//! Any node accepts any request: what cannot be handled here travels over
//! gRPC (`proto/payhub/v1/node.proto`) to the node that leads the owning
//! shard.
//!
//! A request for a shard this node leads is handled here. Otherwise it goes
//! to the leader this node's replica knows, or, when this node holds no
//! replica of the shard, to the shard's replicas in placement order; a
//! replica that is not the leader forwards once more to its leader. A request
//! is forwarded at most [`HOPS_MAX`] times; with no leader in reach the
//! answer is UNAVAILABLE, which the HTTP edge turns into a retryable 503.
//!
//! Payer-side FSPIOP callbacks that are matched by an in-memory table (party
//! lookups, quotes) are offered to every other node when this node has no
//! transaction waiting for them: the node that sent the request holds the
//! entry.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use actors::command::{Command, Response, Topology};
use actors::flow::{FlowKind, Input, Request, State};
use actors::model::{NodeId, Party, ShardId, TenantId, TransactionId};
use connectors::fspiop::types::{ErrorBody, PartiesPut, TransfersPut};
use proto::v1::forwarding_client::ForwardingClient;
use proto::v1::forwarding_server::{Forwarding, ForwardingServer};
use proto::v1::Envelope;
use raft::grpc::MESSAGE_BYTES_MAX;
use raft::{Peers, Placement};

use crate::engine::Engine;

/// How many times one request may be forwarded.
pub const HOPS_MAX: u32 = 2;

/// Payload format of an [`Envelope`]: JSON of [`Forwarded`] / [`Answer`].
const FORMAT_JSON: u32 = 1;

/// Time limit of one forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// A request handed to another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    /// Create a transaction (a channel's payment or request to pay, a
    /// payee's request to be paid).
    Create { id: TransactionId, request: Request },
    /// Read a transaction and its history from its shard's leader; with
    /// `wait_ms`, once it is final or that time has passed.
    Read {
        id: TransactionId,
        #[serde(default)]
        wait_ms: u64,
    },
    /// Step a transaction with an input that arrived elsewhere, on behalf of
    /// `tenant`'s endpoint.
    Deliver { tenant: TenantId, id: TransactionId, input: Input },
    /// Commit a command through a group's leader (metadata commands).
    Commit { shard: ShardId, command: Command },
    /// A `PUT /parties` callback nobody here waited for.
    Party { tenant: TenantId, party: Party, result: Result<PartiesPut, ErrorBody> },
    /// Read the topology the metadata group records, from its leader.
    Topology,
    /// Read a group's voters and learners from its leader.
    Members { shard: ShardId },
    /// Do not campaign in `shard` for `hold_ms`: its leader hands it to
    /// another replica (sent to the receiving node itself, never routed).
    HoldElections { shard: ShardId, hold_ms: u64 },
    /// `tenant`'s requests to pay that wait, of flow `kind`, in the shards
    /// the receiving node leads (sent to each node, never routed): the
    /// requests to be paid its payers have not approved yet (P2P), or the
    /// ones its customers sent that are not over (request to pay).
    Waiting { tenant: TenantId, kind: FlowKind },
    /// Which of `tenant`'s requests to pay a transaction pays, by the
    /// receiving node's payee side (sent to each node, never routed).
    RequestOf { tenant: TenantId, transaction_id: String },
    /// The switch's final word on one of `tenant`'s transfers as payee,
    /// which reached another node than the one that holds it pending (sent
    /// to each node, never routed).
    TransferSettled { tenant: TenantId, transfer_id: uuid::Uuid, word: TransfersPut },
}

impl Forwarded {
    fn kind(&self) -> &'static str {
        match self {
            Forwarded::Create { .. } => "create",
            Forwarded::Read { .. } => "read",
            Forwarded::Deliver { .. } => "deliver",
            Forwarded::Commit { .. } => "commit",
            Forwarded::Party { .. } => "party",
            Forwarded::Topology => "topology",
            Forwarded::Members { .. } => "members",
            Forwarded::HoldElections { .. } => "hold_elections",
            Forwarded::Waiting { .. } => "waiting",
            Forwarded::RequestOf { .. } => "request_of",
            Forwarded::TransferSettled { .. } => "transfer_settled",
        }
    }
}

/// What handling a forwarded request answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    Created {
        id: TransactionId,
        new: bool,
    },
    Conflict,
    Busy,
    Read {
        state: Option<State>,
        history: Vec<storage::HistoryEvent>,
    },
    Committed(Response),
    Topology(Option<Topology>),
    Members {
        voters: BTreeSet<u64>,
        learners: BTreeSet<u64>,
    },
    /// The request to pay a transaction pays, if the node knows.
    RequestOf(Option<uuid::Uuid>),
    /// The requests to pay waiting in the shards a node leads.
    Waiting {
        shards: Vec<ShardId>,
        transactions: Vec<State>,
    },
    Done,
}

/// Why a request could not be handled anywhere.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    /// No leader in reach now; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The request itself failed.
    #[error("{0}")]
    Failed(String),
}

impl From<ForwardError> for tonic::Status {
    fn from(error: ForwardError) -> Self {
        match error {
            ForwardError::Unavailable(message) => tonic::Status::unavailable(message),
            ForwardError::Failed(message) => tonic::Status::internal(message),
        }
    }
}

/// Sends requests to other nodes.
#[derive(Debug, Clone)]
pub struct Forwarder {
    node: NodeId,
    peers: Peers,
    /// Where the members are and which replicas each shard has: the
    /// placement this node follows (see [`Forwarder::follow`]).
    placement: Arc<RwLock<Arc<Placement>>>,
}

impl Forwarder {
    pub fn new(node: NodeId, peers: Peers, placement: Placement) -> Self {
        Forwarder { node, peers, placement: Arc::new(RwLock::new(Arc::new(placement))) }
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Sends to the members and replicas of `placement` from now on.
    pub fn follow(&self, placement: Placement) {
        *self.placement.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(placement);
    }

    fn placement(&self) -> Arc<Placement> {
        self.placement.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The node to send a request for `shard` to, given what this node's
    /// replica knows (`leader`): the leader, else the shard's replicas.
    pub fn targets(&self, shard: ShardId, leader: Option<NodeId>, hosts: bool) -> Vec<NodeId> {
        match leader {
            Some(leader) if leader != self.node => vec![leader],
            Some(_) => Vec::new(),
            None if hosts => Vec::new(),
            None => self.placement().replicas(shard).to_vec(),
        }
    }

    /// Sends `request` to `target`, already forwarded `hops` times.
    pub async fn send(&self, target: NodeId, request: &Forwarded, hops: u32) -> Result<Answer, ForwardError> {
        let address = self
            .placement()
            .member(target)
            .map(|member| member.grpc.clone())
            .ok_or_else(|| ForwardError::Failed(format!("{target} is not a cluster member")))?;
        let channel = self.peers.channel(&address).map_err(ForwardError::Failed)?;
        let payload = serde_json::to_vec(request).map_err(|e| ForwardError::Failed(e.to_string()))?;
        let mut message = tonic::Request::new(Envelope {
            kind: request.kind().into(),
            format: FORMAT_JSON,
            payload,
            hops: hops + 1,
        });
        message.set_timeout(FORWARD_TIMEOUT);
        let mut client = ForwardingClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let started = std::time::Instant::now();
        let result = client.forward(message).await;
        metrics::histogram!("payhub_forward_seconds", "kind" => request.kind())
            .record(started.elapsed().as_secs_f64());
        let envelope = result
            .map_err(|status| {
                metrics::counter!("payhub_forward_errors_total", "kind" => request.kind()).increment(1);
                match status.code() {
                    tonic::Code::Internal | tonic::Code::InvalidArgument => {
                        ForwardError::Failed(format!("{target}: {}", status.message()))
                    }
                    _ => ForwardError::Unavailable(format!("{target}: {}", status.message())),
                }
            })?
            .into_inner();
        serde_json::from_slice(&envelope.payload)
            .map_err(|e| ForwardError::Failed(format!("{target} answered a malformed payload: {e}")))
    }

    /// Sends `request` to the first of `targets` that answers.
    pub async fn send_first(
        &self,
        targets: &[NodeId],
        request: &Forwarded,
        hops: u32,
    ) -> Result<Answer, ForwardError> {
        if hops >= HOPS_MAX {
            return Err(ForwardError::Unavailable(format!(
                "no leader found after {hops} hops; retry shortly"
            )));
        }
        let mut last = ForwardError::Unavailable("the shard has no leader now; retry shortly".into());
        for target in targets {
            match self.send(*target, request, hops).await {
                Ok(answer) => return Ok(answer),
                Err(error @ ForwardError::Failed(_)) => return Err(error),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Offers `request` to every other member; answers are not needed.
    pub fn broadcast(&self, request: Forwarded) {
        for member in &self.placement().members {
            if member.id == self.node {
                continue;
            }
            let (forwarder, request, target) = (self.clone(), request.clone(), member.id);
            tokio::spawn(async move {
                if let Err(error) = forwarder.send(target, &request, HOPS_MAX).await {
                    tracing::debug!(%target, %error, kind = request.kind(), "callback not offered");
                }
            });
        }
    }
}

/// The server side: runs forwarded requests on this node's engine.
#[derive(Debug, Clone, Default)]
pub struct ForwardingService {
    engine: Arc<OnceLock<Weak<Engine>>>,
}

impl ForwardingService {
    pub fn server(&self) -> ForwardingServer<ForwardingService> {
        ForwardingServer::new(self.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX)
    }

    /// Connects the service to the engine once it exists; until then
    /// requests are answered UNAVAILABLE.
    pub fn attach(&self, engine: &Arc<Engine>) {
        let _ = self.engine.set(Arc::downgrade(engine));
    }
}

#[tonic::async_trait]
impl Forwarding for ForwardingService {
    async fn forward(
        &self,
        request: tonic::Request<Envelope>,
    ) -> Result<tonic::Response<Envelope>, tonic::Status> {
        let engine = self
            .engine
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| tonic::Status::unavailable("this node is starting"))?;
        let envelope = request.into_inner();
        if envelope.format != FORMAT_JSON {
            return Err(tonic::Status::invalid_argument(format!(
                "payload format {} unsupported",
                envelope.format
            )));
        }
        let forwarded: Forwarded = serde_json::from_slice(&envelope.payload).map_err(|e| {
            tonic::Status::invalid_argument(format!("malformed {} payload: {e}", envelope.kind))
        })?;
        let answer = engine.handle(forwarded, envelope.hops).await?;
        let payload = serde_json::to_vec(&answer).map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(Envelope {
            kind: envelope.kind,
            format: FORMAT_JSON,
            payload,
            hops: envelope.hops,
        }))
    }
}
