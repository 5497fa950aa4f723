//! A shard's Raft log and vote, for openraft.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use actors::command::{decode, encode};
use actors::model::ShardId;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::WriteBatch;

use crate::keys::{self, Meta};
use crate::store::Store;
use crate::{Entry, Error, LogId, Result, TypeConfig};

/// The Raft log of one shard. Cloning is cheap; clones are the log readers
/// openraft's replication tasks use.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
    shard: ShardId,
}

impl LogStore {
    pub(crate) fn new(store: Store, shard: ShardId) -> LogStore {
        LogStore { store, shard }
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&index) => index,
            // `range.contains` below rejects the saturated index.
            Bound::Excluded(&index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let prefix = keys::shard(self.shard);
        let mut entries = Vec::new();
        for item in self.store.scan_from(keys::RAFT_LOG, &keys::log(self.shard, start), &prefix) {
            let (key, value) = item?;
            let index = keys::log_index(&key)?;
            if !range.contains(&index) {
                break;
            }
            entries.push(self.decode_entry(index, &value)?);
        }
        Ok(entries)
    }

    fn decode_entry(&self, index: u64, bytes: &[u8]) -> Result<Entry> {
        let entry: Entry = decode(bytes)?;
        if entry.log_id.index != index {
            let shard = self.shard;
            return Err(Error::Corrupt(format!(
                "{shard}: the log entry at index {index} is {}",
                entry.log_id
            )));
        }
        Ok(entry)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> =
            self.store.get(keys::RAFT_META, &self.meta(Meta::LastPurged))?;
        let last_log_id = match self.store.last(keys::RAFT_LOG, self.shard)? {
            Some((key, value)) => Some(self.decode_entry(keys::log_index(&key)?, &value)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    fn meta(&self, kind: Meta) -> Vec<u8> {
        keys::meta(self.shard, kind)
    }

    /// A batch that puts one `raft_meta` value.
    fn meta_batch(&self, kind: Meta, value: Vec<u8>) -> WriteBatch {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.store.cf(keys::RAFT_META), self.meta(kind), value);
        batch
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        self.entries(range).map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        self.log_state().map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let batch = self.meta_batch(Meta::Vote, encode(vote));
        self.store.write(batch).map_err(|e| StorageIOError::write_vote(&e))?;
        self.store.durable().await.map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.store
            .get(keys::RAFT_META, &self.meta(Meta::Vote))
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// Not synced: openraft reads it back only to re-apply committed entries
    /// early after a restart; if a crash loses it, the entries are applied
    /// once the leader announces the commit again.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<u64>> {
        let batch = self.meta_batch(Meta::Committed, encode(&committed));
        self.store.write(batch).map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<u64>> {
        let committed: Option<Option<LogId>> = self
            .store
            .get(keys::RAFT_META, &self.meta(Meta::Committed))
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    /// Writes all of `entries` in one batch and returns once it is on disk:
    /// openraft hands over whatever accumulated while the previous append
    /// was syncing, and the sync is shared with every other shard's (and the
    /// node's other) writes made meanwhile (`Store::durable`).
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.store.cf(keys::RAFT_LOG);
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(cf, keys::log(self.shard, entry.log_id.index), encode(&entry));
        }
        self.store.write(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.store.durable().await.map_err(|e| StorageIOError::write_logs(&e))?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    /// Synced, so that entries a new leader overwrote never come back.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        let mut batch = WriteBatch::default();
        let (start, end) = (keys::log(self.shard, log_id.index), keys::shard_end(self.shard));
        batch.delete_range_cf(self.store.cf(keys::RAFT_LOG), start, end);
        self.store.write(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.store.durable().await.map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// Not synced: purged entries are covered by a snapshot, and the last
    /// purged log id is written in the same batch, so a crash loses both or
    /// neither.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        let mut batch = self.meta_batch(Meta::LastPurged, encode(&log_id));
        let cf = self.store.cf(keys::RAFT_LOG);
        batch.delete_range_cf(cf, keys::log(self.shard, 0), keys::log(self.shard, log_id.index));
        batch.delete_cf(cf, keys::log(self.shard, log_id.index));
        self.store.write(batch).map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
