//! Durable storage for payhub: the Raft logs and state machines of every
//! shard, and the key-value spaces of the built-in ledger and the switch
//! simulator, all in one RocksDB database.
//!
//! This crate owns the on-disk layout (documented in `keys.rs`) and is the
//! only crate that touches RocksDB. It implements openraft's storage traits:
//! [`LogStore`] and [`StateMachine`], one of each per shard, all sharing the
//! [`Store`]'s database.
//!
//! It must never decide business rules: what a command does to a transaction
//! is decided by `actors::command::apply`; this crate only reads the current
//! record, hands it over, and writes what comes back.
//!
//! Durability: log appends, votes and truncations are synced; state-machine
//! writes are not, because every shard shares one write-ahead log, which
//! RocksDB recovers to a consistent prefix: whatever state survives a crash,
//! the synced log entries it was applied from survive too, and openraft
//! replays the rest.

mod keys;
mod kv;
mod log_store;
mod snapshot;
mod state_machine;
mod store;

use actors::command::{Command, DecodeError, Response};
use openraft::{BasicNode, TokioRuntime};

pub use kv::{Kv, Space};
pub use log_store::LogStore;
pub use snapshot::SnapshotFile;
pub use state_machine::{HistoryEvent, StateMachine};
pub use store::{Store, StoreOptions};

openraft::declare_raft_types!(
    /// Openraft's types for a payhub shard: its log carries [`Command`]s and
    /// applying one answers a [`Response`].
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = TokioRuntime,
);

/// A log entry of a shard.
pub type Entry = openraft::Entry<TypeConfig>;
/// The id of a log entry: its leader's term and node, and its index.
pub type LogId = openraft::LogId<u64>;

/// A storage fault. None of these is a business rejection: each means the
/// disk, the data or this code is broken, and is to be logged and alarmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("RocksDB failed: {0}; check the data directory's disk space and permissions")]
    RocksDb(String),
    #[error(
        "cannot decode a stored value: {0}; the data was written by an incompatible version or is damaged"
    )]
    Decode(String),
    #[error("the store is corrupt: {0}; restore this node's data from a replica")]
    Corrupt(String),
    #[error("file I/O failed: {0}; check the data directory's disk space and permissions")]
    Io(String),
    #[error("a storage task stopped before it finished: {0}")]
    Interrupted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rocksdb::Error> for Error {
    fn from(error: rocksdb::Error) -> Self {
        Error::RocksDb(error.into_string())
    }
}

impl From<DecodeError> for Error {
    fn from(error: DecodeError) -> Self {
        Error::Decode(error.0)
    }
}
