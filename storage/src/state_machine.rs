//! A shard's state machine and its snapshots, for openraft.

use std::collections::HashMap;
use std::io::Cursor;

use actors::command::{self, decode, encode, Command, Response, Topology};
use actors::flow::P2pState;
use actors::model::{ShardId, TransactionId};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{self, Meta};
use crate::store::Store;
use crate::{Entry, Error, LogId, Result, TypeConfig};

/// Format version written first in snapshot data, so a later version can
/// change the format and still install old snapshots.
const SNAPSHOT_FORMAT_VERSION: u8 = 1;

/// One thing that happened to a transaction: the input a log entry applied
/// and the phase it led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub log_index: u64,
    /// The time the command's proposer stamped on it.
    pub at_ms: u64,
    pub event: String,
    pub phase: String,
}

/// A node registered in the metadata group.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    pub(crate) address: String,
    pub(crate) zone: String,
}

/// How far a shard's state machine has applied its log.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership<u64, BasicNode>,
}

/// The state machine of one shard: its transactions, their open index and
/// history, and (in the metadata group) the node registry. Cloning is cheap;
/// it is also its own snapshot builder.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Store,
    shard: ShardId,
}

/// What a batch of entries wrote before it is stored.
#[derive(Default)]
struct Pending {
    transactions: HashMap<TransactionId, P2pState>,
    topology: Option<Topology>,
}

impl StateMachine {
    pub(crate) fn new(store: Store, shard: ShardId) -> StateMachine {
        StateMachine { store, shard }
    }

    fn applied(&self) -> Result<AppliedState> {
        Ok(self.store.get(keys::STATE, &keys::applied(self.shard))?.unwrap_or_default())
    }

    /// Applies `entries` in one batch, written atomically with the new
    /// applied state, so that the two never disagree.
    fn apply_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<Vec<Response>> {
        let mut applied = self.applied()?;
        let mut batch = WriteBatch::default();
        // Records written earlier in this batch, which a later command must
        // see although they are not stored yet (a replica catching up applies
        // many entries in one batch).
        let mut written = Pending::default();
        let mut responses = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::None
                }
                EntryPayload::Normal(command) => {
                    self.apply_command(&command, entry.log_id.index, &mut batch, &mut written)?
                }
            };
            responses.push(response);
        }
        batch.put_cf(self.store.cf(keys::STATE), keys::applied(self.shard), encode(&applied));
        self.store.write(batch)?;
        Ok(responses)
    }

    fn apply_command(
        &self,
        command: &Command,
        log_index: u64,
        batch: &mut WriteBatch,
        written: &mut Pending,
    ) -> Result<Response> {
        let (cf, shard) = (self.store.cf(keys::STATE), self.shard);
        let (id, at_ms) = match command {
            Command::RegisterNode { node, address, zone } => {
                let record = NodeRecord { address: address.clone(), zone: zone.clone() };
                batch.put_cf(cf, keys::node(shard, node.0), encode(&record));
                return Ok(command::apply(None, command).response);
            }
            Command::RecordTopology { topology } => {
                let recorded = self.recorded_topology(written)?;
                let (write, response) = command::apply_topology(recorded.as_ref(), topology);
                self.write_topology(write, batch, written);
                return Ok(response);
            }
            Command::ChangeTopology { from, to } => {
                let recorded = self.recorded_topology(written)?;
                let (write, response) = command::apply_change_topology(recorded.as_ref(), from, to);
                self.write_topology(write, batch, written);
                return Ok(response);
            }
            Command::Create { id, now_ms, .. } | Command::Step { id, now_ms, .. } => (*id, *now_ms),
        };
        let stored;
        let current = match written.transactions.get(&id) {
            Some(record) => Some(record),
            None => {
                stored = self.store.transaction(shard, id)?;
                stored.as_ref()
            }
        };
        let outcome = command::apply(current, command);
        if let Some(record) = outcome.write {
            assert_eq!(record.id, id, "a flow never changes the id of the transaction it steps");
            batch.put_cf(cf, keys::transaction(shard, id), encode(&record));
            if record.phase.is_active() {
                batch.put_cf(cf, keys::open(shard, id), []);
            } else {
                batch.delete_cf(cf, keys::open(shard, id));
            }
            if let Some(event) = outcome.event {
                let phase = record.phase.as_str().to_owned();
                let event = HistoryEvent { log_index, at_ms, event: event.to_owned(), phase };
                batch.put_cf(cf, keys::history(shard, id, log_index), encode(&event));
            }
            written.transactions.insert(id, record);
        }
        Ok(outcome.response)
    }

    /// The topology recorded in this (metadata) group, as of this batch.
    fn recorded_topology(&self, written: &Pending) -> Result<Option<Topology>> {
        match &written.topology {
            Some(pending) => Ok(Some(pending.clone())),
            None => self.store.topology(self.shard),
        }
    }

    fn write_topology(&self, write: Option<Topology>, batch: &mut WriteBatch, written: &mut Pending) {
        if let Some(record) = write {
            batch.put_cf(self.store.cf(keys::STATE), keys::topology(self.shard), encode(&record));
            written.topology = Some(record);
        }
    }

    /// Snapshot data is the shard's whole `state` range: a format version
    /// byte, then each key (without its shard prefix) and value as a
    /// length-prefixed chunk.
    fn build(&self) -> Result<Snapshot<TypeConfig>> {
        let applied_key = keys::applied(self.shard);
        let mut applied = AppliedState::default();
        let mut data = vec![SNAPSHOT_FORMAT_VERSION];
        // One iterator reads one point in time, so the applied state and the
        // records agree even while entries are applied meanwhile.
        for item in self.store.scan(keys::STATE, &keys::shard(self.shard)) {
            let (key, value) = item?;
            if *key == *applied_key {
                applied = decode(&value)?;
            }
            put_chunk(&mut data, keys::without_shard(&key)?);
            put_chunk(&mut data, &value);
        }
        let last = applied.last_applied.map_or_else(|| "none".to_owned(), |id| id.to_string());
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership,
            snapshot_id: format!("{last}-{}", Uuid::new_v4()),
        };
        let mut batch = WriteBatch::default();
        self.put_snapshot(&mut batch, &meta, &data);
        self.store.write(batch)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }

    /// Replaces the shard's state with a snapshot's, in one batch.
    fn install(&self, meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> Result<()> {
        let cf = self.store.cf(keys::STATE);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, keys::shard(self.shard), keys::shard_end(self.shard));
        let mut rest = match data.split_first() {
            Some((&SNAPSHOT_FORMAT_VERSION, rest)) => rest,
            _ => {
                return Err(Error::Decode(
                    "snapshot data is empty or of an unsupported format version".into(),
                ))
            }
        };
        while !rest.is_empty() {
            let (key, value) = (take_chunk(&mut rest)?, take_chunk(&mut rest)?);
            batch.put_cf(cf, keys::with_shard(self.shard, key), value);
        }
        // The meta is what openraft installs: writing the applied state from
        // it, after the data's own copy, makes the two agree.
        let applied =
            AppliedState { last_applied: meta.last_log_id, last_membership: meta.last_membership.clone() };
        batch.put_cf(cf, keys::applied(self.shard), encode(&applied));
        self.put_snapshot(&mut batch, meta, data);
        self.store.write(batch)?;
        tracing::info!(shard = %self.shard, snapshot = %meta.snapshot_id, "installed a snapshot");
        Ok(())
    }

    /// Keeps a snapshot as the current one: its meta as a chunk, then its data.
    fn put_snapshot(&self, batch: &mut WriteBatch, meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) {
        let mut value = Vec::with_capacity(data.len() + 256);
        put_chunk(&mut value, &encode(meta));
        value.extend_from_slice(data);
        batch.put_cf(self.store.cf(keys::RAFT_META), keys::meta(self.shard, Meta::Snapshot), value);
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>> {
        let Some(value) = self.store.get_raw(keys::RAFT_META, &keys::meta(self.shard, Meta::Snapshot))?
        else {
            return Ok(None);
        };
        let mut data = value.as_slice();
        let meta = decode(take_chunk(&mut data)?)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data.to_vec())) }))
    }
}

fn put_chunk(buffer: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("RocksDB keys and values are below 4 GiB");
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(bytes);
}

/// Takes the next length-prefixed chunk off `bytes`.
fn take_chunk<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8]> {
    let truncated = || Error::Corrupt("snapshot data ends inside a chunk".into());
    let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(truncated)?;
    let length = u32::from_be_bytes(*length) as usize;
    if rest.len() < length {
        return Err(truncated());
    }
    let (chunk, rest) = rest.split_at(length);
    *bytes = rest;
    Ok(chunk)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    /// Reads and writes the shard's whole state: on a blocking thread, so
    /// the async workers that serve every other shard (and this one's
    /// applies) go on meanwhile.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let machine = self.clone();
        let started = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || machine.build())
            .await
            .map_err(|e| Error::Interrupted(e.to_string()))
            .and_then(|built| built);
        metrics::histogram!("payhub_raft_snapshot_build_seconds").record(started.elapsed().as_secs_f64());
        built.map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let applied = self.applied().map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok((applied.last_applied, applied.last_membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries).map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let (machine, owned_meta) = (self.clone(), meta.clone());
        let installed = tokio::task::spawn_blocking(move || machine.install(&owned_meta, snapshot.get_ref()))
            .await
            .map_err(|e| Error::Interrupted(e.to_string()))
            .and_then(|installed| installed);
        installed.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        self.current_snapshot().map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}
