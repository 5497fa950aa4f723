//! Routing: which shard owns a transaction.
//!
//! A transaction id hashes into a fixed space of [`SLOT_COUNT`] slots; slots
//! map to shards. The slot space never changes (it is part of the persisted
//! layout); the slot-to-shard map can, when shards are added or split later.

use actors::model::{ShardId, TransactionId};

/// The fixed number of slots. Never change it: routing depends on it.
pub const SLOT_COUNT: u32 = 4096;

/// The slot of a transaction: CRC-32 of its id bytes, modulo [`SLOT_COUNT`].
pub fn slot_of(id: &TransactionId) -> u32 {
    crc32fast::hash(id.as_bytes()) % SLOT_COUNT
}

/// Maps slots to the transaction shards `1..=shard_count` (shard 0 is the
/// metadata group), in contiguous ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMap {
    shard_count: u32,
}

impl SlotMap {
    /// `shard_count` must be between 1 and [`SLOT_COUNT`]; the config validates it.
    pub fn new(shard_count: u32) -> Self {
        assert!((1..=SLOT_COUNT).contains(&shard_count), "shard count {shard_count} out of range");
        SlotMap { shard_count }
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    pub fn shard_of_slot(&self, slot: u32) -> ShardId {
        ShardId(1 + slot * self.shard_count / SLOT_COUNT)
    }

    pub fn shard_of(&self, id: &TransactionId) -> ShardId {
        self.shard_of_slot(slot_of(id))
    }

    /// Every transaction shard.
    pub fn shards(&self) -> impl Iterator<Item = ShardId> {
        (1..=self.shard_count).map(ShardId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_maps_to_a_transaction_shard_in_contiguous_ranges() {
        let map = SlotMap::new(8);
        let shards: Vec<u32> = (0..SLOT_COUNT).map(|s| map.shard_of_slot(s).0).collect();
        assert_eq!(shards.first(), Some(&1));
        assert_eq!(shards.last(), Some(&8));
        assert!(shards.windows(2).all(|w| w[0] <= w[1]));
        for shard in 1..=8 {
            assert_eq!(shards.iter().filter(|s| **s == shard).count(), 512);
        }
    }

    #[test]
    fn transactions_spread_over_shards() {
        let map = SlotMap::new(8);
        let mut counts = [0u32; 9];
        for _ in 0..8000 {
            counts[map.shard_of(&TransactionId::new_random()).0 as usize] += 1;
        }
        assert_eq!(counts[0], 0, "no transaction lands in the metadata group");
        assert!(counts[1..].iter().all(|c| *c > 700), "uneven spread: {counts:?}");
    }
}
