//! The replicated command format: what a Raft log entry carries, and the pure
//! rule for applying one to a transaction.
//!
//! `storage` does the I/O of applying (reads the current record, writes the
//! next one); the decision of what to write lives here, in [`apply`], so the
//! state machine that every replica runs is as pure and tested as the flows.

use serde::{Deserialize, Serialize};

use crate::flow::{self, FlowLimits, Input, Request, State, Transition};
use crate::model::{NodeId, TransactionId};

/// Format version written in front of every encoded command, so a later
/// version can change the format and still read old logs.
pub const COMMAND_FORMAT_VERSION: u8 = 1;

/// One entry of a shard's Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create a transaction of the request's flow. Creating an id that
    /// exists answers the existing transaction if the request is the same (a
    /// repeated correlation id) and a conflict if it differs.
    Create { id: TransactionId, request: Request, limits: FlowLimits, now_ms: u64 },
    /// Step a transaction with an input.
    Step { id: TransactionId, input: Input, now_ms: u64 },
    /// Metadata group: record a node and its placement.
    RegisterNode { node: NodeId, address: String, zone: String },
    /// Metadata group: record the cluster's shape. The first one recorded
    /// stays; a node proposing a different one is told the recorded one.
    RecordTopology { topology: Topology },
    /// Metadata group: replace the recorded topology `from` by `to` (a node
    /// joining, replicas moving). A compare-and-set: when `from` is no longer
    /// the recorded topology, nothing changes and the proposer is told the
    /// recorded one, so two concurrent changes never overwrite each other.
    ChangeTopology { from: Topology, to: Topology },
    /// Move up to `limit` transactions that finished before
    /// `finished_before_ms` (oldest first) out of the shard's replicated
    /// state: each replica keeps the record and its history in its own
    /// archive, and the state keeps an [`ArchivedMarker`], so that the
    /// state (and every snapshot of it) stays the size of the recent
    /// payments, not of all payments ever made.
    Archive { finished_before_ms: u64, limit: u32 },
}

/// What the replicated state keeps of an archived transaction: enough to
/// answer a repeated create (the same request is the same payment, never a
/// second one; another request under its id is a conflict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedMarker {
    /// [`fingerprint`] of the request that created it.
    pub request: String,
}

impl ArchivedMarker {
    pub fn of(state: &State) -> ArchivedMarker {
        ArchivedMarker { request: fingerprint(&state.request()) }
    }
}

/// A digest of a request (of its log encoding): two requests have the same
/// fingerprint exactly when they are equal.
pub fn fingerprint(request: &Request) -> String {
    sha256_hex(encode(request))
}

/// SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What a command naming an archived transaction answers. Nothing is ever
/// written for it: the transaction is finished.
pub fn apply_archived(marker: &ArchivedMarker, command: &Command) -> Response {
    match command {
        Command::Create { id, request, .. } if fingerprint(request) == marker.request => {
            Response::Archived { id: *id }
        }
        Command::Create { id, .. } => Response::Conflict { id: *id },
        Command::Step { id, .. } => Response::UnknownTransaction { id: *id },
        Command::RegisterNode { .. }
        | Command::RecordTopology { .. }
        | Command::ChangeTopology { .. }
        | Command::Archive { .. } => Response::Recorded,
    }
}

/// One member of the cluster, as the metadata group records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// The data centre (availability zone) the node runs in.
    pub zone: String,
    /// `host:port` of the node's gRPC server (Raft and forwarding).
    pub grpc: String,
    /// `host:port` of the node's HTTP server (channel API, FSPIOP, admin).
    pub http: String,
}

/// The shape of a cluster as its metadata group records it: the slot map
/// (by the shard count), the members and each group's replicas. Recorded
/// when the cluster is first started; the shard count and replication factor
/// stay, members and replicas change by [`Command::ChangeTopology`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Counts the changes since the first recorded topology (0).
    #[serde(default)]
    pub version: u64,
    pub shard_count: u32,
    pub replication_factor: u32,
    /// Every member, in id order.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Each group's replicas (node ids, preferred leader first), by shard.
    pub replicas: Vec<(u32, Vec<u64>)>,
}

impl Topology {
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Whether two topologies describe the same cluster shape (shard count
    /// and replication factor), which no change may alter.
    pub fn same_shape(&self, other: &Topology) -> bool {
        self.shard_count == other.shard_count && self.replication_factor == other.replication_factor
    }

    /// Whether this topology is a later version of `earlier`: the same
    /// shape, and every member of `earlier` still a member as it was (a
    /// running cluster only gains members). A node that started from
    /// `earlier` and finds this one recorded was left behind by a change,
    /// and follows it; any other difference means it was configured for
    /// another cluster.
    pub fn extends(&self, earlier: &Topology) -> bool {
        self.version > earlier.version
            && self.same_shape(earlier)
            && earlier.members.iter().all(|member| self.member(member.id) == Some(member))
    }
}

/// What recording `proposed` does, given the recorded topology: the record to
/// write (if any) and the answer.
pub fn apply_topology(recorded: Option<&Topology>, proposed: &Topology) -> (Option<Topology>, Response) {
    match recorded {
        None => (Some(proposed.clone()), Response::Recorded),
        Some(recorded) if recorded == proposed => (None, Response::Recorded),
        Some(recorded) => (None, Response::TopologyMismatch { recorded: recorded.clone() }),
    }
}

/// What changing the recorded topology from `from` to `to` does: the record
/// to write (if any) and the answer. A change that alters the shard count or
/// the replication factor, or is not the next version, is refused; one whose `from` is stale is told the
/// recorded topology; one already applied (`to` is recorded) answers
/// `Recorded` again, so a proposer that retries after a lost answer is fine.
pub fn apply_change_topology(
    recorded: Option<&Topology>,
    from: &Topology,
    to: &Topology,
) -> (Option<Topology>, Response) {
    match recorded {
        Some(recorded) if recorded == to => (None, Response::Recorded),
        Some(recorded) if recorded == from && from.same_shape(to) && to.version == from.version + 1 => {
            (Some(to.clone()), Response::Recorded)
        }
        Some(recorded) => (None, Response::TopologyMismatch { recorded: recorded.clone() }),
        None => (None, Response::NoTopology),
    }
}

impl Command {
    pub fn transaction_id(&self) -> Option<TransactionId> {
        match self {
            Command::Create { id, .. } | Command::Step { id, .. } => Some(*id),
            Command::RegisterNode { .. }
            | Command::RecordTopology { .. }
            | Command::ChangeTopology { .. }
            | Command::Archive { .. } => None,
        }
    }
}

/// What applying a command answered, returned to its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A new transaction was created; its first effects are to be run.
    Created(Transition),
    /// The transaction already existed with the same request: nothing changed.
    AlreadyExists(State),
    /// The transaction id exists with a different request.
    Conflict { id: TransactionId },
    /// The input was applied.
    Stepped(Transition),
    /// The input named a transaction this shard does not have (or has
    /// archived: it is finished).
    UnknownTransaction { id: TransactionId },
    /// The transaction was created by the same request and is archived:
    /// nothing changed.
    Archived { id: TransactionId },
    /// An [`Command::Archive`] archived this many transactions.
    ArchivedCount(u32),
    /// A metadata command was applied.
    Recorded,
    /// A different topology is recorded already.
    TopologyMismatch { recorded: Topology },
    /// No topology is recorded yet (the cluster has not finished starting).
    NoTopology,
    /// Raft's own entries (blank, membership) answer nothing.
    None,
}

/// The record to write for a transaction (if any) and the proposer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub write: Option<State>,
    /// The input applied, for the transaction's event history.
    pub event: Option<&'static str>,
    pub response: Response,
}

/// Decides what a command does to the transaction it names, given that
/// transaction's current record. Deterministic: replicas agree.
pub fn apply(current: Option<&State>, command: &Command) -> Outcome {
    match command {
        Command::Create { id, request, limits, now_ms } => match current {
            Some(existing) if existing.created_by(request) => {
                Outcome { write: None, event: None, response: Response::AlreadyExists(existing.clone()) }
            }
            Some(_) => Outcome { write: None, event: None, response: Response::Conflict { id: *id } },
            None => {
                let transition = flow::start(*id, request.clone(), *limits, *now_ms);
                Outcome {
                    write: Some(transition.state.clone()),
                    event: Some("Created"),
                    response: Response::Created(transition),
                }
            }
        },
        Command::Step { id, input, now_ms } => match current {
            None => Outcome { write: None, event: None, response: Response::UnknownTransaction { id: *id } },
            Some(state) => {
                let name = input.name();
                let transition = flow::step(state, input.clone(), *now_ms);
                let changed = transition.state != *state;
                Outcome {
                    write: changed.then(|| transition.state.clone()),
                    event: changed.then_some(name),
                    response: Response::Stepped(transition),
                }
            }
        },
        // Metadata commands write metadata records (see `apply_topology`),
        // and archiving moves records (see `storage`): never a transaction.
        Command::RegisterNode { .. }
        | Command::RecordTopology { .. }
        | Command::ChangeTopology { .. }
        | Command::Archive { .. } => Outcome { write: None, event: None, response: Response::Recorded },
    }
}

/// Encodes a command for the log: a version byte, then JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![COMMAND_FORMAT_VERSION];
    // Serializing these plain data types cannot fail: no maps with non-string
    // keys, no custom serializers that error.
    serde_json::to_writer(&mut bytes, value).expect("plain data types always serialize to JSON");
    bytes
}

/// Decodes what [`encode`] wrote.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        Some((&COMMAND_FORMAT_VERSION, rest)) => {
            serde_json::from_slice(rest).map_err(|e| DecodeError(e.to_string()))
        }
        Some((version, _)) => Err(DecodeError(format!("unsupported format version {version}"))),
        None => Err(DecodeError("empty record".into())),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode a stored record: {0}")]
pub struct DecodeError(pub String);

#[cfg(test)]
mod topology_tests {
    use super::*;

    fn topology(replicas: Vec<u64>) -> Topology {
        let members = replicas
            .iter()
            .map(|id| Member {
                id: NodeId(*id),
                zone: format!("zone-{id}"),
                grpc: format!("127.0.0.{id}:9080"),
                http: format!("127.0.0.{id}:8080"),
            })
            .collect();
        // [1, 2, 3] is version 0, [1, 2, 4] version 1, [1, 2, 5] version 2.
        Topology {
            version: replicas.iter().sum::<u64>() - 6,
            shard_count: 1,
            replication_factor: 3,
            members,
            replicas: vec![(0, replicas.clone()), (1, replicas)],
        }
    }

    #[test]
    fn a_change_applies_only_to_the_topology_it_was_made_from() {
        let (first, second, third) =
            (topology(vec![1, 2, 3]), topology(vec![1, 2, 4]), topology(vec![1, 2, 5]));
        assert_eq!(apply_change_topology(None, &first, &second), (None, Response::NoTopology));
        assert_eq!(
            apply_change_topology(Some(&first), &first, &second),
            (Some(second.clone()), Response::Recorded)
        );
        // The same change again (an answer lost, a retry): nothing to write.
        assert_eq!(apply_change_topology(Some(&second), &first, &second), (None, Response::Recorded));
        // A change made from a stale topology loses the race and learns the recorded one.
        assert_eq!(
            apply_change_topology(Some(&second), &first, &third),
            (None, Response::TopologyMismatch { recorded: second.clone() })
        );
        // A change must be the next version.
        assert_eq!(
            apply_change_topology(Some(&first), &first, &third),
            (None, Response::TopologyMismatch { recorded: first.clone() })
        );
        // The shape never changes.
        let mut reshaped = second.clone();
        reshaped.shard_count = 2;
        assert_eq!(
            apply_change_topology(Some(&first), &first, &reshaped),
            (None, Response::TopologyMismatch { recorded: first.clone() })
        );
    }

    #[test]
    fn a_later_version_with_the_same_members_and_more_extends_a_topology() {
        let first = topology(vec![1, 2, 3]);
        let mut joined = topology(vec![1, 2, 3, 4]);
        joined.version = first.version + 1;
        assert!(joined.extends(&first));
        assert!(!first.extends(&joined), "an earlier version extends nothing");
        assert!(!first.extends(&first));
        let mut moved = joined.clone();
        moved.members[0].grpc = "10.0.0.99:9080".into();
        assert!(!moved.extends(&first), "a member's address changed: another cluster");
        let mut other = topology(vec![1, 2, 5]);
        other.version = first.version + 1;
        other.members.retain(|m| m.id != NodeId(3));
        assert!(!other.extends(&first), "a member is missing: another cluster");
        let mut reshaped = joined.clone();
        reshaped.replication_factor += 1;
        assert!(!reshaped.extends(&first));
    }

    #[test]
    fn the_first_topology_stays_and_a_different_one_is_told_the_recorded() {
        let first = topology(vec![1, 2, 3]);
        assert_eq!(apply_topology(None, &first), (Some(first.clone()), Response::Recorded));
        assert_eq!(apply_topology(Some(&first), &first), (None, Response::Recorded));
        let other = topology(vec![1, 2, 4]);
        assert_eq!(
            apply_topology(Some(&first), &other),
            (None, Response::TopologyMismatch { recorded: first.clone() })
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowLimits, P2pRequest};
    use crate::model::{Amount, Party, PartyIdType};

    fn create(amount: &str) -> Command {
        Command::Create {
            id: TransactionId::from_correlation(&"bluebank".parse().expect("valid"), "c-1"),
            request: Request::P2p(P2pRequest {
                tenant: "bluebank".parse().expect("valid"),
                payer_fsp: "bluebank".into(),
                payer: Party::new(PartyIdType::Msisdn, "27710000001").expect("valid"),
                payee: Party::new(PartyIdType::Msisdn, "27710000006").expect("valid"),
                amount: Amount::parse_positive(amount, "USD").expect("valid"),
                transaction_request: None,
            }),
            limits: FlowLimits::default(),
            now_ms: 1,
        }
    }

    #[test]
    fn create_twice_answers_the_existing_transaction_and_writes_nothing() {
        let first = apply(None, &create("10"));
        let state = first.write.expect("created");
        let again = apply(Some(&state), &create("10"));
        assert_eq!(again.write, None);
        assert_eq!(again.response, Response::AlreadyExists(state.clone()));
        let other = apply(Some(&state), &create("11"));
        assert!(matches!(other.response, Response::Conflict { .. }));
        assert_eq!(other.write, None);
    }

    #[test]
    fn step_of_an_unknown_transaction_writes_nothing() {
        let id = TransactionId::new_random();
        let outcome = apply(None, &Command::Step { id, input: Input::FundsCommitted, now_ms: 1 });
        assert_eq!(outcome.response, Response::UnknownTransaction { id });
        assert_eq!(outcome.write, None);
    }

    #[test]
    fn commands_round_trip_through_the_log_encoding() {
        let command = create("10.5");
        let decoded: Command = decode(&encode(&command)).expect("decodes");
        assert_eq!(decoded, command);
        assert!(decode::<Command>(&[9, b'{']).is_err());
    }
}
