//! A durable key-value space outside Raft, for the connectors that keep
//! state of their own but must not touch RocksDB themselves.

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
/// Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Kv {
    store: Store,
    cf: &'static str,
}

impl Kv {
    pub(crate) fn new(store: Store, space: Space) -> Kv {
        let cf = match space {
            Space::Ledger => keys::LEDGER,
            Space::Switch => keys::SWITCH,
            Space::Payee => keys::PAYEE,
        };
        Kv { store, cf }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store.get_raw(self.cf, key)
    }

    /// The pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store
            .scan(self.cf, prefix)
            .map(|item| item.map(|(key, value)| (key.into_vec(), value.into_vec())))
            .collect()
    }

    /// Puts (`Some`) and deletes (`None`) all of `batch` atomically, and
    /// returns once they are on disk. Blocks the calling thread meanwhile
    /// (for setup code; async code uses [`Self::apply`] and [`Self::durable`]).
    pub fn write(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        self.store.write_synced(self.batch(batch))
    }

    /// Puts and deletes all of `batch` atomically: visible at once, on disk
    /// once [`Self::durable`] returns. A caller that serialises on a lock
    /// applies under the lock and waits for durability after releasing it
    /// (early lock release): whatever read its writes meanwhile waits for
    /// the same or a later sync before it answers, so nothing unsynced is
    /// ever acknowledged.
    pub fn apply(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        self.store.write(self.batch(batch))
    }

    /// Returns once everything written to the store before the call is on
    /// disk (one shared sync for all who wait: group commit).
    pub async fn durable(&self) -> Result<()> {
        self.store.durable().await
    }

    fn batch(&self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> WriteBatch {
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
