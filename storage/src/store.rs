//! The one database, and the read API the node serves from it.

use std::path::Path;
use std::sync::Arc;

use actors::command::decode;
use actors::flow::P2pState;
use actors::model::{ShardId, TransactionId};
use rocksdb::{ColumnFamily, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;

use crate::kv::{Kv, Space};
use crate::log_store::LogStore;
use crate::state_machine::{HistoryEvent, NodeRecord, StateMachine};
use crate::{keys, Error, Result};

/// The database of one node, shared by all its shards. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<DB>,
    wal: Arc<WalSync>,
}

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

/// A stored key and value.
pub(crate) type Pair = (Box<[u8]>, Box<[u8]>);

impl Store {
    /// Opens the database at `path`, creating it and its column families if
    /// they are missing.
    pub fn open(path: &Path) -> Result<Store> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = DB::open_cf(&options, path, keys::COLUMN_FAMILIES)?;
        Ok(Store { db: Arc::new(db), wal: Arc::default() })
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

    /// The applied record of a transaction, if `shard` has it.
    pub fn transaction(&self, shard: ShardId, id: TransactionId) -> Result<Option<P2pState>> {
        let record: Option<P2pState> = self.get(keys::STATE, &keys::transaction(shard, id))?;
        match record {
            Some(record) if record.id != id => Err(Error::Corrupt(format!(
                "{shard}: the record stored for transaction {id} is transaction {}",
                record.id
            ))),
            record => Ok(record),
        }
    }

    /// The transactions of `shard` whose flow still has work to do, in id
    /// order: the ones to resume after a restart or a failover.
    pub fn open_transactions(&self, shard: ShardId) -> Result<Vec<P2pState>> {
        let mut open = Vec::new();
        for item in self.scan(keys::STATE, &keys::open_prefix(shard)) {
            let id = keys::open_transaction(&item?.0)?;
            match self.transaction(shard, id)? {
                Some(record) if record.phase.is_active() => open.push(record),
                _ => {
                    return Err(Error::Corrupt(format!(
                        "{shard}: transaction {id} is in the open index but its record is missing or inactive"
                    )))
                }
            }
        }
        Ok(open)
    }

    /// What happened to a transaction, in log order.
    pub fn history(&self, shard: ShardId, id: TransactionId) -> Result<Vec<HistoryEvent>> {
        self.scan(keys::STATE, &keys::history_prefix(shard, id)).map(|item| Ok(decode(&item?.1)?)).collect()
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
        tokio::task::spawn_blocking(move || db.flush_wal(true))
            .await
            .map_err(|error| Error::Interrupted(error.to_string()))??;
        metrics::histogram!("payhub_storage_sync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("payhub_storage_writes_per_sync").record((covers - *synced) as f64);
        *synced = covers;
        Ok(())
    }

    /// RocksDB's write stall state: whether writes are stopped, and the rate
    /// (bytes/s) they are slowed to (0 when not slowed).
    pub fn write_stall(&self) -> (bool, u64) {
        let property = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        (property("rocksdb.is-write-stopped") != 0, property("rocksdb.actual-delayed-write-rate"))
    }
}
