//! A shard's state machine and its snapshots, for openraft.

use std::collections::{BTreeSet, HashMap, HashSet};

use actors::command::{self, decode, encode, ArchivedMarker, Command, Response, Topology};
use actors::flow::State;
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
use crate::snapshot::{self, SnapshotFile, SnapshotRecord};
use crate::store::{blocking, Store};
use crate::{Entry, LogId, Result, TypeConfig};

/// A snapshot is installed in write batches of about this size, so that
/// installing a large one needs no more memory than this.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

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

/// An archived transaction as this replica keeps it (node-local, see
/// [`Command::Archive`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ArchivedRecord {
    pub(crate) state: State,
    pub(crate) history: Vec<HistoryEvent>,
}

/// [`ArchivedRecord`] borrowed, to encode one without cloning.
#[derive(Serialize)]
struct ArchivedRecordRef<'a> {
    state: &'a State,
    history: &'a [HistoryEvent],
}

/// What a batch of entries wrote before it is stored. Every decision reads
/// through it, so that an entry's effect never depends on which entries a
/// replica happened to apply in the same batch.
#[derive(Default)]
struct Pending {
    transactions: HashMap<TransactionId, State>,
    /// The whole history of each transaction whose history this batch
    /// wrote.
    history: HashMap<TransactionId, Vec<HistoryEvent>>,
    /// Finished-index entries added and removed in this batch.
    finished_added: BTreeSet<(u64, TransactionId)>,
    finished_removed: HashSet<(u64, TransactionId)>,
    archived: HashMap<TransactionId, ArchivedMarker>,
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
        let started = std::time::Instant::now();
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
        // The shard's later entries wait for this: their commits include it.
        metrics::histogram!("payhub_raft_apply_seconds").record(started.elapsed().as_secs_f64());
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
            Command::Archive { finished_before_ms, limit } => {
                let started = std::time::Instant::now();
                let count = self.archive(*finished_before_ms, *limit, batch, written)?;
                metrics::histogram!("payhub_archive_apply_seconds").record(started.elapsed().as_secs_f64());
                return Ok(Response::ArchivedCount(count));
            }
            Command::Create { id, now_ms, .. } | Command::Step { id, now_ms, .. } => (*id, *now_ms),
        };
        // Archived earlier in this batch: its record is still stored.
        if let Some(marker) = written.archived.get(&id) {
            return Ok(command::apply_archived(marker, command));
        }
        let stored;
        let current = match written.transactions.get(&id) {
            Some(record) => Some(record),
            None => {
                stored = self.store.live_transaction(shard, id)?;
                stored.as_ref()
            }
        };
        // Only a transaction without a record may be archived: the marker is
        // read for new ids, not on every step.
        if current.is_none() {
            if let Some(marker) = self.store.get(keys::STATE, &keys::archived(shard, id))? {
                return Ok(command::apply_archived(&marker, command));
            }
        }
        // The indexes change only when membership changes: most steps keep
        // an open transaction open, and each needless put or tombstone is
        // one more memtable insert on every replica (and tombstones slow
        // the scans of the open index).
        let was_open = current.is_some_and(|record| record.phase().is_active());
        let was_flagged = current.is_some_and(State::needs_attention);
        let was_finished = current.filter(|record| record.is_finished()).map(State::updated_at_ms);
        let outcome = command::apply(current, command);
        if let Some(record) = outcome.write {
            assert_eq!(record.id(), id, "a flow never changes the id of the transaction it steps");
            batch.put_cf(cf, keys::transaction(shard, id), encode(&record));
            let mut index = |key: Vec<u8>, was: bool, is: bool| match (was, is) {
                (false, true) => batch.put_cf(cf, key, []),
                (true, false) => batch.delete_cf(cf, key),
                _ => {}
            };
            index(keys::open(shard, id), was_open, record.phase().is_active());
            index(keys::attention(shard, id), was_flagged, record.needs_attention());
            let is_finished = record.is_finished().then(|| record.updated_at_ms());
            let mut history = match written.history.remove(&id) {
                Some(history) => history,
                // A new transaction has none yet: nothing to read.
                None if current.is_none() => Vec::new(),
                None => self.stored_history(id, batch)?,
            };
            if let Some(event) = outcome.event {
                let phase = record.phase().as_str().to_owned();
                history.push(HistoryEvent { log_index, at_ms, event: event.to_owned(), phase });
                batch.put_cf(cf, keys::history(shard, id), encode(&history));
            }
            // A finished transaction's archive copy is written with its
            // last step, while record and history are in hand, so that
            // archiving it later reads nothing (see `archive`).
            if is_finished.is_some() {
                self.put_archive_copy(batch, &record, &history);
            } else if was_finished.is_some() {
                batch.delete_cf(self.store.cf(keys::ARCHIVE), keys::archive(shard, id));
            }
            if was_finished != is_finished {
                if let Some(at) = was_finished {
                    batch.delete_cf(cf, keys::finished(shard, at, id));
                    written.finished_added.remove(&(at, id));
                    written.finished_removed.insert((at, id));
                }
                if let Some(at) = is_finished {
                    // The marker in the value says that this replica holds
                    // the archive copy (written just above).
                    batch.put_cf(cf, keys::finished(shard, at, id), encode(&ArchivedMarker::of(&record)));
                    written.finished_removed.remove(&(at, id));
                    written.finished_added.insert((at, id));
                }
            }
            written.history.insert(id, history);
            written.transactions.insert(id, record);
        }
        Ok(outcome.response)
    }

    /// Moves up to `limit` transactions that finished before `before_ms`,
    /// oldest first, out of the replicated state: the record and its history
    /// go to this replica's archive, a marker stays. Every replica applying
    /// the same entry moves the same transactions, whatever it applied with
    /// it in the batch.
    ///
    /// A transaction whose finished-index entry holds its marker has its
    /// archive copy here already (written when it finished): archiving it
    /// only deletes, and reads nothing. One without (finished before
    /// 2026-11-25, or received in a snapshot: an install empties the
    /// values, see `finish_install`) is read and copied now.
    fn archive(
        &self,
        before_ms: u64,
        limit: u32,
        batch: &mut WriteBatch,
        written: &mut Pending,
    ) -> Result<u32> {
        let (cf, shard, limit) = (self.store.cf(keys::STATE), self.shard, limit as usize);
        // The finished index as of this batch: what is stored, less what the
        // batch removed, plus what it added (those have no stored marker:
        // their record and history are in `written`, nothing to read).
        let mut due = Vec::new();
        let prefix = keys::finished_prefix(shard);
        for item in self.store.scan(keys::STATE, &prefix) {
            let (key, value) = item?;
            let entry = keys::finished_entry(&key)?;
            if entry.0 >= before_ms || due.len() == limit {
                break;
            }
            if !written.finished_removed.contains(&entry) {
                let copied = (!value.is_empty()).then(|| decode::<ArchivedMarker>(&value)).transpose()?;
                due.push((entry, copied));
            }
        }
        due.extend(written.finished_added.iter().take_while(|(at, _)| *at < before_ms).map(|&e| (e, None)));
        due.sort_unstable_by_key(|(entry, _)| *entry);
        due.truncate(limit);
        let count = due.len() as u32;
        for ((at, id), copied) in due {
            let marker = match copied {
                Some(marker) => {
                    written.transactions.remove(&id);
                    written.history.remove(&id);
                    marker
                }
                None => self.copy_to_archive(id, batch, written)?,
            };
            batch.delete_cf(cf, keys::history(shard, id));
            batch.delete_cf(cf, keys::finished(shard, at, id));
            batch.delete_cf(cf, keys::transaction(shard, id));
            written.finished_added.remove(&(at, id));
            written.finished_removed.insert((at, id));
            batch.put_cf(cf, keys::archived(shard, id), encode(&marker));
            written.archived.insert(id, marker);
        }
        Ok(count)
    }

    /// Writes the archive copy of finished transaction `id` from its record
    /// and history (as of this batch), and answers its marker.
    fn copy_to_archive(
        &self,
        id: TransactionId,
        batch: &mut WriteBatch,
        written: &mut Pending,
    ) -> Result<ArchivedMarker> {
        let shard = self.shard;
        let state = match written.transactions.remove(&id) {
            Some(state) => state,
            None => self.store.live_transaction(shard, id)?.ok_or_else(|| {
                crate::Error::Corrupt(format!("{shard}: finished transaction {id} has no record"))
            })?,
        };
        let history = match written.history.remove(&id) {
            Some(history) => history,
            None => self.stored_history(id, batch)?,
        };
        self.put_archive_copy(batch, &state, &history);
        Ok(ArchivedMarker::of(&state))
    }

    /// Writes this replica's archive copy of a finished transaction.
    fn put_archive_copy(&self, batch: &mut WriteBatch, state: &State, history: &[HistoryEvent]) {
        let copy = ArchivedRecordRef { state, history };
        batch.put_cf(self.store.cf(keys::ARCHIVE), keys::archive(self.shard, state.id()), encode(&copy));
    }

    /// The stored history of transaction `id`. One kept a key per event
    /// (before 2026-11-25) has those keys deleted in `batch`: whoever reads
    /// it rewrites it under one key or archives it.
    fn stored_history(&self, id: TransactionId, batch: &mut WriteBatch) -> Result<Vec<HistoryEvent>> {
        let stored = self.store.live_history(self.shard, id)?;
        if stored.per_event {
            for event in &stored.events {
                batch.delete_cf(
                    self.store.cf(keys::STATE),
                    keys::history_event(self.shard, id, event.log_index),
                );
            }
        }
        Ok(stored.events)
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

    /// Streams the shard's whole `state` range into a new snapshot file
    /// (see `snapshot` for the format), makes it the current snapshot, and
    /// deletes the previous one. Memory stays bounded whatever the size.
    /// Blocking; openraft's builds and the store's opening call it.
    pub(crate) fn build(&self) -> Result<SnapshotRecord> {
        let directory = self.store.snapshot_directory();
        let name = snapshot::new_name(self.shard);
        let mut writer = snapshot::Writer::create(directory, &name)?;
        let applied_key = keys::applied(self.shard);
        let mut applied = AppliedState::default();
        // One iterator reads one point in time, so the applied state and the
        // records agree even while entries are applied meanwhile.
        for item in self.store.scan_uncached(keys::STATE, &keys::shard(self.shard)) {
            let (key, value) = item?;
            if *key == *applied_key {
                applied = decode(&value)?;
            }
            writer.pair(keys::without_shard(&key)?, &value)?;
        }
        writer.finish()?;
        let last = applied.last_applied.map_or_else(|| "none".to_owned(), |id| id.to_string());
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership,
            snapshot_id: format!("{last}-{}", Uuid::new_v4()),
        };
        let record = SnapshotRecord { meta, file: name };
        // A record that does not decode (an earlier format) names no file.
        let previous = self.snapshot_record().unwrap_or_else(|error| {
            tracing::warn!(shard = %self.shard, %error, "replacing an unreadable snapshot record");
            None
        });
        let mut batch = WriteBatch::default();
        batch.put_cf(self.store.cf(keys::RAFT_META), keys::meta(self.shard, Meta::Snapshot), encode(&record));
        self.store.write_synced(batch)?;
        if let Some(previous) = previous {
            snapshot::remove(directory, &previous.file);
        }
        Ok(record)
    }

    /// Installs a received snapshot file: records that it is being
    /// installed (so a crash midway finishes the install when the store
    /// opens), then replaces the shard's state with the file's.
    fn install(&self, meta: &SnapshotMeta<u64, BasicNode>, mut file: SnapshotFile) -> Result<()> {
        let directory = self.store.snapshot_directory();
        let name = if file.is_received_into(directory) {
            file.name().to_owned()
        } else {
            // Some shard's current snapshot (tests install one shard's
            // snapshot into another): this shard gets its own copy.
            snapshot::copy(file.path(), directory, self.shard)?
        };
        let record = SnapshotRecord { meta: meta.clone(), file: name };
        // Only a whole, readable file on disk may be recorded for install:
        // the record makes the next open finish the install from it.
        snapshot::check(directory, &record.file)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.store.cf(keys::RAFT_META),
            keys::meta(self.shard, Meta::Installing),
            encode(&record),
        );
        self.store.write_synced(batch)?;
        file.keep();
        self.finish_install(&record)?;
        tracing::info!(shard = %self.shard, snapshot = %meta.snapshot_id, "installed a snapshot");
        Ok(())
    }

    /// Replaces the shard's state with the snapshot `record` names, in
    /// batches of bounded size, then makes it the current snapshot and
    /// clears the install record, in one synced batch. Repeating it after a
    /// crash midway gives the same result.
    pub(crate) fn finish_install(&self, record: &SnapshotRecord) -> Result<()> {
        let directory = self.store.snapshot_directory();
        let cf = self.store.cf(keys::STATE);
        let mut reader = snapshot::Reader::open(directory, &record.file)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, keys::shard(self.shard), keys::shard_end(self.shard));
        let (mut key, mut value) = (Vec::new(), Vec::new());
        while reader.next_pair(&mut key, &mut value)? {
            // A finished-index value says that the replica holds the
            // transaction's archive copy: true of the sender, not of this
            // one (see `archive`).
            if keys::is_finished_entry(&key) {
                value.clear();
            }
            batch.put_cf(cf, keys::with_shard(self.shard, &key), &value);
            if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                self.store.write(std::mem::take(&mut batch))?;
            }
        }
        // The meta is what openraft installs: writing the applied state from
        // it, after the data's own copy, makes the two agree.
        let applied = AppliedState {
            last_applied: record.meta.last_log_id,
            last_membership: record.meta.last_membership.clone(),
        };
        batch.put_cf(cf, keys::applied(self.shard), encode(&applied));
        let previous = self.snapshot_record()?;
        let meta_cf = self.store.cf(keys::RAFT_META);
        batch.put_cf(meta_cf, keys::meta(self.shard, Meta::Snapshot), encode(record));
        batch.delete_cf(meta_cf, keys::meta(self.shard, Meta::Installing));
        self.store.write_synced(batch)?;
        if let Some(previous) = previous.filter(|previous| previous.file != record.file) {
            snapshot::remove(directory, &previous.file);
        }
        Ok(())
    }

    fn snapshot_record(&self) -> Result<Option<SnapshotRecord>> {
        self.store.get(keys::RAFT_META, &keys::meta(self.shard, Meta::Snapshot))
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>> {
        self.snapshot_record()?.map(|record| self.open_snapshot(record)).transpose()
    }

    /// The snapshot a record names, opened for reading.
    fn open_snapshot(&self, record: SnapshotRecord) -> Result<Snapshot<TypeConfig>> {
        let file = SnapshotFile::open(self.store.snapshot_directory(), &record.file)?;
        Ok(Snapshot { meta: record.meta, snapshot: Box::new(file) })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    /// Reads and writes the shard's whole state: on a blocking thread, so
    /// the async workers that serve every other shard (and this one's
    /// applies) go on meanwhile.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let machine = self.clone();
        let turn =
            self.store.snapshot_build_turn().await.map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let started = std::time::Instant::now();
        let built = blocking(move || {
            let built = machine.build().and_then(|record| machine.open_snapshot(record));
            drop(turn);
            built
        })
        .await;
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<u64>> {
        let file = SnapshotFile::receive(self.store.snapshot_directory(), self.shard);
        Ok(Box::new(file.map_err(|e| StorageIOError::write_snapshot(None, &e))?))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<u64>> {
        let (machine, owned_meta) = (self.clone(), meta.clone());
        let installed = blocking(move || machine.install(&owned_meta, *snapshot)).await;
        installed.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        self.current_snapshot().map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}
