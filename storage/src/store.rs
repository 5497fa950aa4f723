//! The one database, and the read API the node serves from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actors::command::decode;
use actors::flow::State;
use actors::model::{ShardId, TransactionId};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options,
    WriteBatch, WriteBufferManager, WriteOptions, DB,
};
use serde::de::DeserializeOwned;

use crate::kv::{Kv, Space};
use crate::log_store::LogStore;
use crate::snapshot::{self, SnapshotRecord};
use crate::state_machine::{ArchivedRecord, HistoryEvent, NodeRecord, StateMachine};
use crate::{keys, Error, Result};

/// The database of one node, shared by all its shards. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<DB>,
    wal: Arc<WalSync>,
    /// Where snapshot files live (`<database>/snapshots`).
    snapshots: Arc<PathBuf>,
    /// One snapshot build at a time on this node: each reads a shard's
    /// whole state, and several at once take every core from the payments.
    snapshot_builds: Arc<tokio::sync::Semaphore>,
}

/// How much memory RocksDB may use. Without a budget each column family
/// grows its own memtables (64 MiB, two of them) and a node's resident
/// memory climbs for minutes under load; with one, memory is flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The block cache and the memtables together, shared by every column
    /// family: memtables may take up to half of it before they are flushed.
    pub memory_mib: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { memory_mib: 128 }
    }
}

/// How fast flushes and compactions may write (bytes a second). A node's
/// compactions wrote about 2 MB/s on average in a soak at 270 payments/s,
/// in bursts of up to 100 MB; this lets them keep up many times over
/// while spreading each burst over seconds.
const BACKGROUND_WRITE_BYTES_PER_SECOND: i64 = 32 << 20;

/// Group commit: writes go to RocksDB's write-ahead log unsynced, and
/// whoever needs them on disk calls [`Store::durable`], which syncs the log
/// once for everything written before it, however many shards, ledger and
/// switch writes wait on it. One fsync per group instead of one per write.
#[derive(Debug, Default)]
struct WalSync {
    /// Writes completed so far (each counted after RocksDB took it).
    written: std::sync::atomic::AtomicU64,
    /// How many of them the last sync covered; held while syncing.
    synced: tokio::sync::Mutex<u64>,
}

/// A transaction's history as the replicated state holds it.
pub(crate) struct LiveHistory {
    pub(crate) events: Vec<HistoryEvent>,
    /// Stored one key per event (`keys::history_event`), as before
    /// 2026-11-25: whoever rewrites the history deletes those keys.
    pub(crate) per_event: bool,
}

/// A stored key and value.
pub(crate) type Pair = (Box<[u8]>, Box<[u8]>);

impl Store {
    /// Opens the database at `path` with the default [`StoreOptions`].
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens the database at `path`, creating it and its column families if
    /// they are missing; finishes any snapshot install a crash interrupted
    /// and deletes snapshot files no shard uses.
    pub fn open_with(path: &Path, store_options: StoreOptions) -> Result<Store> {
        let budget = store_options.memory_mib.max(16) << 20;
        let cache = Cache::new_lru_cache(budget);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_bloom_filter(10.0, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_write_buffer_manager(&WriteBufferManager::new_write_buffer_manager_with_cache(
            budget / 2,
            false,
            cache,
        ));
        options.set_block_based_table_factory(&table);
        // Memtables of at most a quarter of the budget each, so that the
        // manager's limit can flush more than one before it is reached.
        options.set_write_buffer_size(budget / 4);
        // Table files are compressed (records are JSON; LZ4 about halved a
        // node's database for no measurable CPU): fewer bytes flushed,
        // compacted and cached. Without it RocksDB stores them raw, as LZ4 is the only
        // codec built in (Snappy, its default, is not).
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Table files written by flushes and compactions are pushed to disk
        // a megabyte at a time instead of all at once when they are closed,
        // so the write-ahead log's syncs do not queue behind large bursts.
        options.set_bytes_per_sync(1 << 20);
        // Compactions run behind the payments, not in their way. Every
        // replica applies the same entries, flushes at about the same time
        // and so compacts at about the same time; a compaction rewrites its
        // column family's bottom level whole (UUID keys overlap all of it)
        // at the CPU's and the disk's full speed. In 8-minute soaks at
        // 270/s the seconds with a compaction running had a median p99 of
        // 534-632 ms against about 200 ms for the others, and held all of
        // the worst ones (docs/PERFORMANCE.md, change 15). Their writes are
        // paced (flushes go first), and their threads run at the lowest CPU
        // priority. `Env::new` is RocksDB's default environment, shared by
        // every database of the process: one per node.
        options.set_ratelimiter(BACKGROUND_WRITE_BYTES_PER_SECOND, 100_000, 10);
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        options.set_env(&env);
        let families = keys::COLUMN_FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let snapshots = path.join("snapshots");
        std::fs::create_dir_all(&snapshots).map_err(|e| snapshot::io_error(&snapshots, "create", &e))?;
        let store = Store {
            db: Arc::new(db),
            wal: Arc::default(),
            snapshots: Arc::new(snapshots),
            snapshot_builds: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        store.recover_snapshots()?;
        Ok(store)
    }

    /// Finishes the snapshot installs a crash interrupted, and deletes the
    /// snapshot files that no shard's record names (left by a crash or an
    /// abandoned transfer).
    fn recover_snapshots(&self) -> Result<()> {
        let mut named = std::collections::HashSet::new();
        let mut installing = Vec::new();
        for item in self.scan(keys::RAFT_META, &[]) {
            let (key, value) = item?;
            let installs = match keys::Meta::of_key(&key) {
                Some(keys::Meta::Snapshot) => false,
                Some(keys::Meta::Installing) => true,
                _ => continue,
            };
            let shard = keys::shard_of(&key)?;
            let record: SnapshotRecord = match decode(&value) {
                Ok(record) => record,
                // Builds before 2026-11-24 kept the snapshot's data in the
                // record. The state machine has applied at least what that
                // snapshot held (the log behind it may be purged), so a
                // snapshot of it now replaces the record.
                Err(error) if !installs => {
                    tracing::warn!(%shard, %error, "replacing a snapshot record of an earlier format");
                    self.state_machine(shard).build()?
                }
                Err(error) => return Err(error.into()),
            };
            named.insert(record.file.clone());
            if installs {
                installing.push((shard, record));
            }
        }
        for (shard, record) in installing {
            tracing::warn!(%shard, snapshot = %record.meta.snapshot_id, "finishing a snapshot install a crash interrupted");
            self.state_machine(shard).finish_install(&record)?;
        }
        let entries = std::fs::read_dir(&*self.snapshots)
            .map_err(|e| snapshot::io_error(&self.snapshots, "list", &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| snapshot::io_error(&self.snapshots, "list", &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !named.contains(&name) {
                snapshot::remove(&self.snapshots, &name);
            }
        }
        Ok(())
    }

    /// Waits for this node's turn to build a snapshot.
    pub(crate) async fn snapshot_build_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.snapshot_builds
            .clone()
            .acquire_owned()
            .await
            .map_err(|error| Error::Interrupted(error.to_string()))
    }

    pub(crate) fn snapshot_directory(&self) -> &Path {
        &self.snapshots
    }

    /// The Raft log of `shard`.
    pub fn log_store(&self, shard: ShardId) -> LogStore {
        LogStore::new(self.clone(), shard)
    }

    /// The state machine of `shard`.
    pub fn state_machine(&self, shard: ShardId) -> StateMachine {
        StateMachine::new(self.clone(), shard)
    }

    /// A key-value space outside Raft.
    pub fn kv(&self, space: Space) -> Kv {
        Kv::new(self.clone(), space)
    }

    /// The applied record of a transaction, if `shard` has it, live or in
    /// this replica's archive.
    pub fn transaction(&self, shard: ShardId, id: TransactionId) -> Result<Option<State>> {
        match self.live_transaction(shard, id)? {
            Some(record) => Ok(Some(record)),
            None => Ok(self.archived(shard, id)?.map(|archived| archived.state)),
        }
    }

    /// The record of a transaction in the replicated state (not archived).
    pub(crate) fn live_transaction(&self, shard: ShardId, id: TransactionId) -> Result<Option<State>> {
        checked_record(shard, id, self.get_raw(keys::STATE, &keys::transaction(shard, id))?)
    }

    /// A transaction this replica archived ([`actors::command::Command::Archive`]).
    /// A replica that joined a shard (from a snapshot) after a transaction
    /// was archived does not have it.
    fn archived(&self, shard: ShardId, id: TransactionId) -> Result<Option<ArchivedRecord>> {
        self.get(keys::ARCHIVE, &keys::archive(shard, id))
    }

    /// When the transaction of `shard` that finished first finished, if any
    /// is finished and not archived yet.
    pub fn oldest_finished(&self, shard: ShardId) -> Result<Option<u64>> {
        let prefix = keys::finished_prefix(shard);
        let started = std::time::Instant::now();
        let first = self.scan(keys::STATE, &prefix).next().transpose();
        metrics::histogram!("payhub_index_scan_seconds", "index" => "finished")
            .record(started.elapsed().as_secs_f64());
        let first = first?;
        first.map(|(key, _)| keys::finished_entry(&key).map(|(at_ms, _)| at_ms)).transpose()
    }

    /// The transactions of `shard` whose flow still has work to do, in id
    /// order: the ones to resume after a restart or a failover.
    pub fn open_transactions(&self, shard: ShardId) -> Result<Vec<State>> {
        let started = std::time::Instant::now();
        let open = self.scan_open(shard);
        metrics::histogram!("payhub_index_scan_seconds", "index" => "open")
            .record(started.elapsed().as_secs_f64());
        open
    }

    fn scan_open(&self, shard: ShardId) -> Result<Vec<State>> {
        self.indexed(shard, &keys::open_prefix(shard), "open", |record| record.phase().is_active())
    }

    /// The transactions of `shard` an operator must look at
    /// ([`State::needs_attention`]), in id order.
    pub fn needing_attention(&self, shard: ShardId) -> Result<Vec<State>> {
        self.indexed(shard, &keys::attention_prefix(shard), "attention", State::needs_attention)
    }

    /// The records an index of `shard` names, each of which must `belong`.
    /// The index and the records are read at one point in time: entries
    /// are applied meanwhile, and a transaction that finishes between the
    /// reading of its index entry and of its record is no corruption.
    fn indexed(
        &self,
        shard: ShardId,
        prefix: &[u8],
        index: &str,
        belongs: impl Fn(&State) -> bool,
    ) -> Result<Vec<State>> {
        let snapshot = self.db.snapshot();
        let cf = self.cf(keys::STATE);
        let mut found = Vec::new();
        for item in snapshot.iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward)) {
            let (key, _) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            let id = keys::open_transaction(&key)?;
            let bytes = snapshot.get_cf(cf, keys::transaction(shard, id))?;
            match checked_record(shard, id, bytes)? {
                Some(record) if belongs(&record) => found.push(record),
                _ => {
                    return Err(Error::Corrupt(format!(
                        "{shard}: transaction {id} is in the {index} index but its record is missing or does not belong there"
                    )))
                }
            }
        }
        Ok(found)
    }

    /// What happened to a transaction, in log order, live or archived.
    pub fn history(&self, shard: ShardId, id: TransactionId) -> Result<Vec<HistoryEvent>> {
        let live = self.live_history(shard, id)?;
        if !live.events.is_empty() {
            return Ok(live.events);
        }
        Ok(self.archived(shard, id)?.map(|archived| archived.history).unwrap_or_default())
    }

    /// The history of a transaction in the replicated state (not archived).
    pub(crate) fn live_history(&self, shard: ShardId, id: TransactionId) -> Result<LiveHistory> {
        if let Some(events) = self.get(keys::STATE, &keys::history(shard, id))? {
            return Ok(LiveHistory { events, per_event: false });
        }
        let prefix = keys::history_events_prefix(shard, id);
        let events =
            self.scan(keys::STATE, &prefix).map(|item| Ok(decode(&item?.1)?)).collect::<Result<_>>()?;
        Ok(LiveHistory { events, per_event: true })
    }

    /// The topology recorded in `shard` (the metadata group), if any.
    pub fn topology(&self, shard: ShardId) -> Result<Option<actors::command::Topology>> {
        match self.get_raw(keys::STATE, &keys::topology(shard))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The topology this node last placed its groups by (node-local, written
    /// by [`Self::set_local_topology`]); None on a node that never started.
    pub fn local_topology(&self) -> Result<Option<actors::command::Topology>> {
        self.get(keys::RAFT_META, &keys::local_topology())
    }

    /// Records, durably, the topology this node places its groups by, so a
    /// restart starts the same groups whatever its configuration says.
    pub fn set_local_topology(&self, topology: &actors::command::Topology) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(keys::RAFT_META), keys::local_topology(), actors::command::encode(topology));
        self.write_synced(batch)
    }

    /// The nodes registered in `shard` (the metadata group): id, address and
    /// zone, in id order.
    pub fn nodes(&self, shard: ShardId) -> Result<Vec<(u64, String, String)>> {
        self.scan(keys::STATE, &keys::node_prefix(shard))
            .map(|item| {
                let (key, value) = item?;
                let record: NodeRecord = decode(&value)?;
                Ok((keys::node_id(&key)?, record.address, record.zone))
            })
            .collect()
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("Store::open creates every column family")
    }

    pub(crate) fn get_raw(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>> {
        match self.get_raw(cf, key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The pairs whose key starts with `prefix`, in key order.
    pub(crate) fn scan<'a>(&'a self, cf: &str, prefix: &'a [u8]) -> impl Iterator<Item = Result<Pair>> + 'a {
        self.scan_from(cf, prefix, prefix)
    }

    /// The pairs whose key starts with `prefix`, from `start` on, in key order.
    pub(crate) fn scan_from<'a>(
        &'a self,
        cf: &str,
        start: &[u8],
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<Pair>> + 'a {
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::From(start, Direction::Forward))
            .take_while(move |item| item.as_ref().map_or(true, |(key, _)| key.starts_with(prefix)))
            .map(|item| item.map_err(Error::from))
    }

    /// The pairs whose key starts with `prefix`, in key order, read around
    /// the block cache: a whole-range scan (a snapshot) would otherwise
    /// evict what the payments in flight need.
    pub(crate) fn scan_uncached<'a>(
        &'a self,
        cf: &str,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<Pair>> + 'a {
        let mut options = rocksdb::ReadOptions::default();
        options.fill_cache(false);
        self.db
            .iterator_cf_opt(self.cf(cf), options, IteratorMode::From(prefix, Direction::Forward))
            .take_while(move |item| item.as_ref().map_or(true, |(key, _)| key.starts_with(prefix)))
            .map(|item| item.map_err(Error::from))
    }

    /// The last pair of `shard`'s range in `cf`, if any.
    pub(crate) fn last(&self, cf: &str, shard: ShardId) -> Result<Option<Pair>> {
        let (prefix, end) = (keys::shard(shard), keys::shard_end(shard));
        let mut iterator = self.db.iterator_cf(self.cf(cf), IteratorMode::From(&end, Direction::Reverse));
        match iterator.next().transpose()? {
            Some((key, value)) if key.starts_with(&prefix) => Ok(Some((key, value))),
            _ => Ok(None),
        }
    }

    /// Writes `batch` atomically without waiting for the disk: visible at
    /// once, on disk once [`Self::durable`] returns.
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<()> {
        let started = std::time::Instant::now();
        self.db.write(batch)?;
        self.wal.written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        metrics::histogram!("payhub_storage_write_seconds", "sync" => "false")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Writes `batch` atomically and returns once it is on disk. Blocks the
    /// calling thread; async code uses [`Self::write`] then [`Self::durable`].
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        let started = std::time::Instant::now();
        self.db.write_opt(batch, &options)?;
        metrics::histogram!("payhub_storage_write_seconds", "sync" => "true")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Returns once every write that completed before the call is on disk.
    /// Concurrent callers share one sync of the write-ahead log (group
    /// commit); the sync runs on a blocking thread.
    pub async fn durable(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let needed = self.wal.written.load(Ordering::SeqCst);
        let mut synced = self.wal.synced.lock().await;
        if *synced >= needed {
            // A sync that started after those writes covered them.
            return Ok(());
        }
        let covers = self.wal.written.load(Ordering::SeqCst);
        let db = self.db.clone();
        let started = std::time::Instant::now();
        blocking(move || Ok(db.flush_wal(true)?)).await?;
        metrics::histogram!("payhub_storage_sync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("payhub_storage_writes_per_sync").record((covers - *synced) as f64);
        *synced = covers;
        Ok(())
    }

    /// What RocksDB holds in memory, by kind (bytes): memtables, the block
    /// cache (which also accounts for the memtables, see [`StoreOptions`]),
    /// its pinned part, and table readers outside the cache.
    pub fn memory(&self) -> [(&'static str, u64); 4] {
        [
            ("memtables", self.property_summed("rocksdb.cur-size-all-mem-tables")),
            ("block_cache", self.property("rocksdb.block-cache-usage")),
            ("block_cache_pinned", self.property("rocksdb.block-cache-pinned-usage")),
            ("table_readers", self.property_summed("rocksdb.estimate-table-readers-mem")),
        ]
    }

    /// RocksDB's background work: compactions and flushes running, bytes
    /// waiting to be compacted, and level-0 files (whose count slows and
    /// then stops writes), summed over the column families.
    pub fn compaction(&self) -> [(&'static str, u64); 4] {
        [
            ("running_compactions", self.property("rocksdb.num-running-compactions")),
            ("running_flushes", self.property("rocksdb.num-running-flushes")),
            ("pending_compaction_bytes", self.property_summed("rocksdb.estimate-pending-compaction-bytes")),
            ("level0_files", self.property_summed("rocksdb.num-files-at-level0")),
        ]
    }

    /// RocksDB's write stall state: whether writes are stopped, and the rate
    /// (bytes/s) they are slowed to (0 when not slowed).
    pub fn write_stall(&self) -> (bool, u64) {
        (self.property("rocksdb.is-write-stopped") != 0, self.property("rocksdb.actual-delayed-write-rate"))
    }

    /// A database-wide integer property (0 if RocksDB has none). Asked of
    /// the `state` column family: the default one reports nothing of the
    /// shared block cache.
    fn property(&self, name: &str) -> u64 {
        self.db.property_int_value_cf(self.cf(keys::STATE), name).ok().flatten().unwrap_or(0)
    }

    /// A per-column-family integer property, summed over the families.
    fn property_summed(&self, name: &str) -> u64 {
        keys::COLUMN_FAMILIES
            .iter()
            .map(|cf| self.db.property_int_value_cf(self.cf(cf), name).ok().flatten().unwrap_or(0))
            .sum()
    }
}

/// The record stored for transaction `id` of `shard`, if any: it must be
/// that transaction's.
fn checked_record(shard: ShardId, id: TransactionId, bytes: Option<Vec<u8>>) -> Result<Option<State>> {
    match bytes.map(|bytes| decode::<State>(&bytes)).transpose()? {
        Some(record) if record.id() != id => Err(Error::Corrupt(format!(
            "{shard}: the record stored for transaction {id} is transaction {}",
            record.id()
        ))),
        record => Ok(record),
    }
}

/// Runs `work` on a blocking thread: file and disk work that takes
/// milliseconds or more must not stall the async workers every shard uses.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| Error::Interrupted(error.to_string()))?
}

#[cfg(test)]
mod tests {
    use actors::command::{encode, Command};
    use actors::flow::{FlowLimits, P2pRequest, Request};
    use actors::model::{Amount, Party, PartyIdType, ShardId, TransactionId};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
    use rocksdb::WriteBatch;

    use super::Store;
    use crate::keys::{self, Meta};
    use crate::snapshot::{self, SnapshotRecord};
    use crate::Entry;

    fn create(index: u64, id: TransactionId) -> Entry {
        let party = |msisdn: &str| Party::new(PartyIdType::Msisdn, msisdn).expect("a valid MSISDN");
        let request = P2pRequest {
            tenant: "bluebank".parse().expect("a valid tenant"),
            payer_fsp: "bluebank".into(),
            payer: party("27710000001"),
            payee: party("27710000002"),
            amount: Amount::parse_positive("10.50", "USD").expect("a valid amount"),
            transaction_request: None,
        };
        let request = Request::P2p(request);
        let command = Command::Create { id, request, limits: FlowLimits::default(), now_ms: index };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(command),
        }
    }

    /// A crash between an install's first batch and its last leaves the
    /// install record, a half-replaced state and maybe stray files; opening
    /// the store finishes the install and deletes the strays.
    #[tokio::test]
    async fn opening_finishes_an_interrupted_install_and_deletes_stray_snapshot_files() -> anyhow::Result<()>
    {
        let directory = tempfile::TempDir::new()?;
        let (from, into) = (ShardId(1), ShardId(2));
        let ids: Vec<_> = (0..3).map(|_| TransactionId::new_random()).collect();
        let (built, copied) = {
            let store = Store::open(directory.path())?;
            let mut machine = store.state_machine(from);
            machine.apply(ids.iter().enumerate().map(|(i, id)| create(i as u64 + 1, *id))).await?;
            let built = machine.build_snapshot().await?;
            let record: SnapshotRecord =
                store.get(keys::RAFT_META, &keys::meta(from, Meta::Snapshot))?.expect("a record");
            // The interrupted install: its record, its own copy of the file,
            // and a state that is neither the old one nor the snapshot's.
            let copied = snapshot::copy(
                &store.snapshot_directory().join(&record.file),
                store.snapshot_directory(),
                into,
            )?;
            let installing = SnapshotRecord { meta: built.meta.clone(), file: copied.clone() };
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(keys::RAFT_META), keys::meta(into, Meta::Installing), encode(&installing));
            batch.put_cf(store.cf(keys::STATE), keys::with_shard(into, b"\x02leftover"), b"old");
            store.write_synced(batch)?;
            std::fs::write(store.snapshot_directory().join("7-stray.snap"), b"\x01")?;
            (built, copied)
        };

        let store = Store::open(directory.path())?;
        for id in &ids {
            assert!(store.transaction(into, *id)?.is_some(), "transaction {id} was not installed");
        }
        assert_eq!(store.get_raw(keys::STATE, &keys::with_shard(into, b"\x02leftover"))?, None);
        assert_eq!(store.get_raw(keys::RAFT_META, &keys::meta(into, Meta::Installing))?, None);
        let mut machine = store.state_machine(into);
        assert_eq!(machine.applied_state().await?.0, built.meta.last_log_id);
        let current: SnapshotRecord =
            store.get(keys::RAFT_META, &keys::meta(into, Meta::Snapshot))?.expect("a record");
        assert_eq!((current.meta, current.file.as_str()), (built.meta, copied.as_str()));
        let mut files: Vec<_> = std::fs::read_dir(store.snapshot_directory())?
            .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        files.sort();
        assert_eq!(files.len(), 2, "the two shards' snapshots and nothing else: {files:?}");
        assert!(files.contains(&copied) && !files.iter().any(|file| file.contains("stray")));
        Ok(())
    }

    /// Data directories of builds before 2026-11-24 hold a snapshot's data
    /// in its record; opening one replaces the record with a snapshot file.
    #[tokio::test]
    async fn a_snapshot_record_of_the_earlier_format_is_replaced_by_a_new_snapshot() -> anyhow::Result<()> {
        let directory = tempfile::TempDir::new()?;
        let shard = ShardId(3);
        let id = TransactionId::new_random();
        {
            let store = Store::open(directory.path())?;
            store.state_machine(shard).apply([create(1, id)]).await?;
            // The earlier format: a length-prefixed meta chunk, then data.
            let mut batch = WriteBatch::default();
            batch.put_cf(
                store.cf(keys::RAFT_META),
                keys::meta(shard, Meta::Snapshot),
                b"\x00\x00\x00\x02{}\x01",
            );
            store.write_synced(batch)?;
        }
        let store = Store::open(directory.path())?;
        let record: SnapshotRecord =
            store.get(keys::RAFT_META, &keys::meta(shard, Meta::Snapshot))?.expect("a record");
        assert_eq!(record.meta.last_log_id.map(|id| id.index), Some(1));
        assert!(store.snapshot_directory().join(&record.file).exists());
        let current = store.state_machine(shard).get_current_snapshot().await?.expect("a snapshot");
        assert_eq!(current.meta, record.meta);
        Ok(())
    }

    fn quote_failed(index: u64, id: TransactionId) -> Entry {
        let reason = actors::flow::Reason::new("3200", "the payee DFSP refused to quote");
        let command = Command::Step { id, input: actors::flow::Input::QuoteFailed { reason }, now_ms: index };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(command),
        }
    }

    /// Histories stored one key per event (before 2026-11-25) are still
    /// read, move under one key on their transaction's next step, and are
    /// archived whole; no key of the earlier layout is left behind.
    #[tokio::test]
    async fn histories_of_the_earlier_layout_are_read_moved_and_archived() -> anyhow::Result<()> {
        let directory = tempfile::TempDir::new()?;
        let store = Store::open(directory.path())?;
        let shard = ShardId(1);
        let (stepped, archived) = (TransactionId::new_random(), TransactionId::new_random());
        let mut machine = store.state_machine(shard);
        machine.apply([create(1, stepped), create(2, archived), quote_failed(3, archived)]).await?;
        let cf = store.cf(keys::STATE);
        let mut batch = WriteBatch::default();
        for id in [stepped, archived] {
            for event in store.live_history(shard, id)?.events {
                batch.put_cf(cf, keys::history_event(shard, id, event.log_index), encode(&event));
            }
            batch.delete_cf(cf, keys::history(shard, id));
        }
        // And as a finished transaction was then: no archive copy yet, no
        // marker in its finished-index entry.
        let finished_at = store.live_transaction(shard, archived)?.expect("stored").updated_at_ms();
        batch.put_cf(cf, keys::finished(shard, finished_at, archived), []);
        batch.delete_cf(store.cf(keys::ARCHIVE), keys::archive(shard, archived));
        store.write_synced(batch)?;
        let events = |id| -> anyhow::Result<Vec<(u64, String)>> {
            Ok(store.history(shard, id)?.into_iter().map(|event| (event.log_index, event.event)).collect())
        };
        assert_eq!(events(stepped)?, [(1, "Created".to_owned())], "read in the earlier layout");

        let archive = Command::Archive { finished_before_ms: 1_000, limit: 1 };
        let archive = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 5),
            payload: EntryPayload::Normal(archive),
        };
        machine.apply([quote_failed(4, stepped), archive]).await?;
        assert_eq!(events(stepped)?, [(1, "Created".to_owned()), (4, "QuoteFailed".to_owned())]);
        assert!(!store.live_history(shard, stepped)?.per_event, "moved under one key");
        assert_eq!(store.live_transaction(shard, archived)?, None, "the oldest finished one is archived");
        assert_eq!(events(archived)?, [(2, "Created".to_owned()), (3, "QuoteFailed".to_owned())]);
        let per_event: Vec<_> = [stepped, archived]
            .into_iter()
            .flat_map(|id| {
                store.scan(keys::STATE, &keys::history_events_prefix(shard, id)).collect::<Vec<_>>()
            })
            .collect();
        assert!(per_event.is_empty(), "keys of the earlier layout left: {}", per_event.len());
        Ok(())
    }
}
