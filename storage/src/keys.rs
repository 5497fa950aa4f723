//! Every RocksDB key this crate writes is built (and parsed) here.
//!
//! Integers are big-endian, so byte order is numeric order. Every key of a
//! shard starts with the shard id, so the shards sharing the database never
//! see each other's data and each shard's keys in a column family form one
//! contiguous range that a single range operation scans, truncates or
//! replaces. Below the shard id, a tag byte (always below `0xFF`) separates
//! the kinds of keys.
//!
//! ```text
//! column family  key                                         value
//! raft_log       [shard u32][index u64]                      Entry
//! raft_meta      [shard u32][1]                              Vote
//!                [shard u32][2]                              Option<LogId>, the committed log id
//!                [shard u32][3]                              LogId, the last purged log id
//!                [shard u32][4]                              SnapshotRecord: current snapshot's meta and file
//!                [u32::MAX][5]                               Topology this node last placed its groups by
//!                [shard u32][6]                              SnapshotRecord being installed (while it is)
//! state          [shard u32][1]                              AppliedState: last applied LogId, last membership
//!                [shard u32][2][transaction 16]              flow::State
//!                [shard u32][3][transaction 16]              empty; present iff the record's phase is active
//!                [shard u32][4][transaction 16][index u64]   HistoryEvent of the log entry at `index`: the
//!                                                            layout before 2026-11-25, read and moved to
//!                                                            [10] on the transaction's next step, never written
//!                [shard u32][5][node u64]                    NodeRecord: address and zone
//!                [shard u32][6]                              Topology (metadata group)
//!                [shard u32][7][transaction 16]              empty; present iff the record needs attention
//!                [shard u32][8][finished u64][transaction 16] present iff the record is finished
//!                                                            (`State::is_finished`), `finished` its updated_at_ms;
//!                                                            ArchivedMarker if this replica wrote the archive
//!                                                            copy when it finished, else empty (see below)
//!                [shard u32][9][transaction 16]              ArchivedMarker of an archived transaction
//!                [shard u32][10][transaction 16]             Vec<HistoryEvent>: the transaction's history,
//!                                                            in log order (one key: a point read)
//! archive        [shard u32][transaction 16]                 ArchivedRecord; node-local, never in a snapshot;
//!                                                            written when the transaction finishes, so an
//!                                                            unarchived finished one may have it too
//! ledger         chosen by the connectors' ledger            opaque
//! switch         chosen by the connectors' switch simulator  opaque
//! payee          chosen by the connectors' payee side        opaque
//! ```
//!
//! Values are written with `actors::command::encode` (a format version byte,
//! then JSON), except the open and attention indexes (empty) and the
//! finished-index entries without a marker (empty). Snapshot data is
//! not in RocksDB but in files beside it (`<database>/snapshots/`, see
//! `snapshot`), which the `SnapshotRecord`s name.

use actors::model::{ShardId, TransactionId};
use uuid::Uuid;

use crate::{Error, Result};

pub(crate) const RAFT_LOG: &str = "raft_log";
pub(crate) const RAFT_META: &str = "raft_meta";
pub(crate) const STATE: &str = "state";
pub(crate) const LEDGER: &str = "ledger";
pub(crate) const SWITCH: &str = "switch";
pub(crate) const PAYEE: &str = "payee";
pub(crate) const ARCHIVE: &str = "archive";
pub(crate) const COLUMN_FAMILIES: [&str; 7] = [RAFT_LOG, RAFT_META, STATE, LEDGER, SWITCH, PAYEE, ARCHIVE];

const SHARD_LENGTH: usize = 4;
const TAG_LENGTH: usize = 1;

/// The kinds of a shard's Raft metadata in `raft_meta`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Meta {
    Vote = 1,
    Committed = 2,
    LastPurged = 3,
    Snapshot = 4,
    /// Node-local, not replicated: see [`local_topology`].
    LocalTopology = 5,
    /// A snapshot being installed; present only while an install runs.
    Installing = 6,
}

impl Meta {
    /// The kind of a `raft_meta` key, if it is one of these.
    pub(crate) fn of_key(key: &[u8]) -> Option<Meta> {
        match key.get(SHARD_LENGTH..).and_then(|rest| <[u8; 1]>::try_from(rest).ok())? {
            [1] => Some(Meta::Vote),
            [2] => Some(Meta::Committed),
            [3] => Some(Meta::LastPurged),
            [4] => Some(Meta::Snapshot),
            [5] => Some(Meta::LocalTopology),
            [6] => Some(Meta::Installing),
            _ => None,
        }
    }
}

/// The shard of any key.
pub(crate) fn shard_of(key: &[u8]) -> Result<ShardId> {
    key.get(..SHARD_LENGTH)
        .and_then(|bytes| bytes.try_into().ok())
        .map(|bytes| ShardId(u32::from_be_bytes(bytes)))
        .ok_or_else(|| Error::Corrupt(format!("key {key:02x?} is shorter than a shard prefix")))
}

/// The pseudo-shard under which node-local records live (no group has it).
const NODE_LOCAL: ShardId = ShardId(u32::MAX);

/// The topology this node last started or stopped its groups by.
pub(crate) fn local_topology() -> Vec<u8> {
    meta(NODE_LOCAL, Meta::LocalTopology)
}

const TAG_APPLIED: u8 = 1;
const TAG_TRANSACTION: u8 = 2;
const TAG_OPEN: u8 = 3;
/// One key per history event, before 2026-11-25 (see the table above).
const TAG_HISTORY_EVENT: u8 = 4;
const TAG_NODE: u8 = 5;
const TAG_TOPOLOGY: u8 = 6;
const TAG_ATTENTION: u8 = 7;
const TAG_FINISHED: u8 = 8;
const TAG_ARCHIVED: u8 = 9;
const TAG_HISTORY: u8 = 10;

fn key(shard: ShardId, parts: &[&[u8]]) -> Vec<u8> {
    let length = SHARD_LENGTH + parts.iter().map(|part| part.len()).sum::<usize>();
    let mut key = Vec::with_capacity(length);
    key.extend_from_slice(&shard.0.to_be_bytes());
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

/// The prefix of every key of `shard`, in every column family but `ledger`
/// and `switch`.
pub(crate) fn shard(shard: ShardId) -> Vec<u8> {
    key(shard, &[])
}

/// A key above every key of `shard` and below every key of the next shard:
/// the end of the shard's range. Nine `0xFF` bytes exceed any log index and
/// any tag.
pub(crate) fn shard_end(shard: ShardId) -> Vec<u8> {
    key(shard, &[&[0xFF; 9]])
}

pub(crate) fn log(shard: ShardId, index: u64) -> Vec<u8> {
    key(shard, &[&index.to_be_bytes()])
}

/// The log index of a `raft_log` key.
pub(crate) fn log_index(key: &[u8]) -> Result<u64> {
    suffix(key, SHARD_LENGTH).map(u64::from_be_bytes)
}

pub(crate) fn meta(shard: ShardId, kind: Meta) -> Vec<u8> {
    key(shard, &[&[kind as u8]])
}

pub(crate) fn applied(shard: ShardId) -> Vec<u8> {
    key(shard, &[&[TAG_APPLIED]])
}

pub(crate) fn transaction(shard: ShardId, id: TransactionId) -> Vec<u8> {
    key(shard, &[&[TAG_TRANSACTION], id.as_bytes()])
}

pub(crate) fn open(shard: ShardId, id: TransactionId) -> Vec<u8> {
    key(shard, &[&[TAG_OPEN], id.as_bytes()])
}

pub(crate) fn open_prefix(shard: ShardId) -> Vec<u8> {
    key(shard, &[&[TAG_OPEN]])
}

/// The index of transactions an operator must look at (see
/// `Store::needing_attention`).
pub(crate) fn attention(shard: ShardId, id: TransactionId) -> Vec<u8> {
    key(shard, &[&[TAG_ATTENTION], id.as_bytes()])
}

pub(crate) fn attention_prefix(shard: ShardId) -> Vec<u8> {
    key(shard, &[&[TAG_ATTENTION]])
}

/// The index of finished transactions, by the time they finished: what
/// [`actors::command::Command::Archive`] moves out, oldest first.
pub(crate) fn finished(shard: ShardId, at_ms: u64, id: TransactionId) -> Vec<u8> {
    key(shard, &[&[TAG_FINISHED], &at_ms.to_be_bytes(), id.as_bytes()])
}

pub(crate) fn finished_prefix(shard: ShardId) -> Vec<u8> {
    key(shard, &[&[TAG_FINISHED]])
}

/// Whether `rest`, a key without its shard prefix (as snapshots carry
/// keys), is a finished-index key.
pub(crate) fn is_finished_entry(rest: &[u8]) -> bool {
    rest.len() == TAG_LENGTH + 8 + 16 && rest[0] == TAG_FINISHED
}

/// The time and transaction a finished-index key names.
pub(crate) fn finished_entry(key: &[u8]) -> Result<(u64, TransactionId)> {
    let at =
        key.get(SHARD_LENGTH + TAG_LENGTH..SHARD_LENGTH + TAG_LENGTH + 8).and_then(|b| b.try_into().ok());
    match (at, suffix(key, SHARD_LENGTH + TAG_LENGTH + 8)) {
        (Some(at), Ok(id)) => Ok((u64::from_be_bytes(at), TransactionId(Uuid::from_bytes(id)))),
        _ => Err(Error::Corrupt(format!("{key:02x?} is not a finished-index key"))),
    }
}

/// The marker the replicated state keeps of an archived transaction.
pub(crate) fn archived(shard: ShardId, id: TransactionId) -> Vec<u8> {
    key(shard, &[&[TAG_ARCHIVED], id.as_bytes()])
}

/// An archived transaction's record, in the node-local `archive` family.
pub(crate) fn archive(shard: ShardId, id: TransactionId) -> Vec<u8> {
    key(shard, &[id.as_bytes()])
}

/// The transaction an open-index key names.
pub(crate) fn open_transaction(key: &[u8]) -> Result<TransactionId> {
    suffix(key, SHARD_LENGTH + TAG_LENGTH).map(|bytes| TransactionId(Uuid::from_bytes(bytes)))
}

/// A transaction's history, all of it under one key: reading it is one
/// point lookup, which the bloom filters keep cheap however many table
/// files the state has (a scan seeks in every one of them).
pub(crate) fn history(shard: ShardId, id: TransactionId) -> Vec<u8> {
    key(shard, &[&[TAG_HISTORY], id.as_bytes()])
}

/// One history event in the layout before 2026-11-25.
pub(crate) fn history_event(shard: ShardId, id: TransactionId, index: u64) -> Vec<u8> {
    key(shard, &[&[TAG_HISTORY_EVENT], id.as_bytes(), &index.to_be_bytes()])
}

pub(crate) fn history_events_prefix(shard: ShardId, id: TransactionId) -> Vec<u8> {
    key(shard, &[&[TAG_HISTORY_EVENT], id.as_bytes()])
}

pub(crate) fn node(shard: ShardId, node: u64) -> Vec<u8> {
    key(shard, &[&[TAG_NODE], &node.to_be_bytes()])
}

pub(crate) fn topology(shard: ShardId) -> Vec<u8> {
    key(shard, &[&[TAG_TOPOLOGY]])
}

pub(crate) fn node_prefix(shard: ShardId) -> Vec<u8> {
    key(shard, &[&[TAG_NODE]])
}

/// The node a node-registry key names.
pub(crate) fn node_id(key: &[u8]) -> Result<u64> {
    suffix(key, SHARD_LENGTH + TAG_LENGTH).map(u64::from_be_bytes)
}

/// A key without its shard prefix, as snapshots carry keys so that they
/// do not depend on the shard id they were built under.
pub(crate) fn without_shard(key: &[u8]) -> Result<&[u8]> {
    key.get(SHARD_LENGTH..)
        .ok_or_else(|| Error::Corrupt(format!("key {key:02x?} is shorter than a shard prefix")))
}

/// The key [`without_shard`] stripped, under `shard`.
pub(crate) fn with_shard(shard: ShardId, rest: &[u8]) -> Vec<u8> {
    key(shard, &[rest])
}

/// The fixed-size part of `key` after its first `start` bytes.
fn suffix<const N: usize>(key: &[u8], start: usize) -> Result<[u8; N]> {
    key.get(start..).and_then(|rest| rest.try_into().ok()).ok_or_else(|| {
        Error::Corrupt(format!("key {key:02x?} is not {N} bytes after its {start}-byte prefix"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_are_disjoint_and_ordered() {
        let (three, four) = (ShardId(3), ShardId(4));
        let max = TransactionId(Uuid::max());
        let highest = [log(three, u64::MAX), history(three, max), history_event(three, max, u64::MAX)];
        for key in highest {
            assert!(shard(three) < key && key < shard_end(three));
        }
        assert!(shard_end(three) < shard(four));
        assert!(log(three, 255) < log(three, 256), "indexes sort numerically");
    }

    #[test]
    fn keys_parse_back() {
        let id = TransactionId::new_random();
        let shard = ShardId(7);
        assert_eq!(log_index(&log(shard, 42)), Ok(42));
        assert_eq!(open_transaction(&open(shard, id)), Ok(id));
        assert_eq!(node_id(&node(shard, 9)), Ok(9));
        let key = history_event(shard, id, 5);
        assert_eq!(with_shard(shard, without_shard(&key).expect("longer than a prefix")), key);
        assert!(log_index(&shard_end(shard)).is_err());
    }
}
