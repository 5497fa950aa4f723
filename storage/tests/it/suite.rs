use actors::model::ShardId;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use storage::{LogStore, StateMachine, Store, TypeConfig};
use tempfile::TempDir;

/// Hands out the stores of one shard of a fresh database; the shard is not 0
/// so that the suite also exercises the shard prefix.
struct FreshShard;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for FreshShard {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let directory = TempDir::new().map_err(|e| StorageIOError::write(&e))?;
        let store = Store::open(directory.path()).map_err(|e| StorageIOError::write(&e))?;
        let shard = ShardId(3);
        Ok((directory, store.log_store(shard), store.state_machine(shard)))
    }
}

/// Openraft's suite runs each case in a runtime of its own, so this test is
/// not async.
#[test]
#[allow(clippy::result_large_err, reason = "the suite returns openraft's StorageError")]
fn openraft_storage_suite_passes() -> Result<(), StorageError<u64>> {
    Suite::test_all(FreshShard)
}
