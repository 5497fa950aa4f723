//! A durable key-value space outside Raft, for the connectors that keep
//! state of their own but must not touch RocksDB themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::WriteBatch;

use crate::store::Store;
use crate::{keys, Result};

/// The key-value spaces, one column family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// The built-in ledger's accounts and holds.
    Ledger,
    /// The switch simulator.
    Switch,
    /// The FSPIOP payee side's answers (quotes and transfers it gave).
    Payee,
}

/// One key-value space of a [`Store`]. The caller owns its keys' layout.
/// Cloning is cheap; clones share the [`Kv::mirroring`] copy.
#[derive(Debug, Clone)]
pub struct Kv {
    store: Store,
    cf: &'static str,
    mirror: Option<Arc<Mirror>>,
}

/// The pairs under one prefix, kept in memory as well as on disk.
#[derive(Debug)]
struct Mirror {
    prefix: Vec<u8>,
    /// Held across each write that touches the prefix, so the copy is
    /// updated in the order the writes reach RocksDB.
    pairs: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Kv {
    pub(crate) fn new(store: Store, space: Space) -> Kv {
        let cf = match space {
            Space::Ledger => keys::LEDGER,
            Space::Switch => keys::SWITCH,
            Space::Payee => keys::PAYEE,
        };
        Kv { store, cf, mirror: None }
    }

    /// Keeps the pairs under `prefix` in memory too (read once from disk
    /// now), and answers [`Kv::scan_prefix`] within it from memory. For a
    /// small set of keys that is scanned often while many come and go (the
    /// transfers still pending): a scan of RocksDB passes every deleted
    /// key's tombstone until compaction drops it, so it slows down the
    /// longer the node runs; the copy does not. Every write of the space
    /// must go through this `Kv` (or its clones).
    pub fn mirroring(mut self, prefix: &[u8]) -> Result<Kv> {
        let pairs = self.scan_stored(prefix)?.into_iter().collect();
        self.mirror = Some(Arc::new(Mirror { prefix: prefix.to_vec(), pairs: Mutex::new(pairs) }));
        Ok(self)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store.get_raw(self.cf, key)
    }

    /// The pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match &self.mirror {
            Some(mirror) if prefix.starts_with(&mirror.prefix) => {
                let pairs = mirror.lock();
                let within = pairs.range(prefix.to_vec()..).take_while(|(key, _)| key.starts_with(prefix));
                Ok(within.map(|(key, value)| (key.clone(), value.clone())).collect())
            }
            _ => self.scan_stored(prefix),
        }
    }

    fn scan_stored(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store
            .scan(self.cf, prefix)
            .map(|item| item.map(|(key, value)| (key.into_vec(), value.into_vec())))
            .collect()
    }

    /// Puts (`Some`) and deletes (`None`) all of `batch` atomically, and
    /// returns once they are on disk. Blocks the calling thread meanwhile
    /// (for setup code; async code uses [`Self::apply`] and [`Self::durable`]).
    pub fn write(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        self.mirrored(batch, |write| self.store.write_synced(write))
    }

    /// Puts and deletes all of `batch` atomically: visible at once, on disk
    /// once [`Self::durable`] returns. A caller that serialises on a lock
    /// applies under the lock and waits for durability after releasing it
    /// (early lock release): whatever read its writes meanwhile waits for
    /// the same or a later sync before it answers, so nothing unsynced is
    /// ever acknowledged.
    pub fn apply(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        self.mirrored(batch, |write| self.store.write(write))
    }

    /// Writes `batch` with `write`, and updates the mirror if it touches
    /// the mirrored prefix (under the mirror's lock, once RocksDB took it).
    fn mirrored(
        &self,
        batch: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        write: impl FnOnce(WriteBatch) -> Result<()>,
    ) -> Result<()> {
        let mirror = self
            .mirror
            .as_ref()
            .filter(|mirror| batch.iter().any(|(key, _)| key.starts_with(&mirror.prefix)));
        let Some(mirror) = mirror else { return write(self.batch(&batch)) };
        let mut pairs = mirror.lock();
        write(self.batch(&batch))?;
        for (key, value) in batch.into_iter().filter(|(key, _)| key.starts_with(&mirror.prefix)) {
            match value {
                Some(value) => pairs.insert(key, value),
                None => pairs.remove(&key),
            };
        }
        Ok(())
    }

    /// Returns once everything written to the store before the call is on
    /// disk (one shared sync for all who wait: group commit).
    pub async fn durable(&self) -> Result<()> {
        self.store.durable().await
    }

    fn batch(&self, batch: &[(Vec<u8>, Option<Vec<u8>>)]) -> WriteBatch {
        let cf = self.store.cf(self.cf);
        let mut write = WriteBatch::default();
        for (key, value) in batch {
            match value {
                Some(value) => write.put_cf(cf, key, value),
                None => write.delete_cf(cf, key),
            }
        }
        write
    }
}

impl Mirror {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding it left the map as a completed write or
        // an untouched one (the updates do not panic): still usable.
        self.pairs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
