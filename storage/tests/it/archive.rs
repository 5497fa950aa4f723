//! Archiving finished transactions out of the replicated state
//! (`Command::Archive`).

use actors::command::{Command, Response};
use actors::flow::{Phase, Request};
use actors::model::{ShardId, TransactionId};
use openraft::storage::RaftStateMachine;
use openraft::RaftSnapshotBuilder;
use storage::{Entry, Store};
use tempfile::TempDir;

use crate::{create, normal, quote_failed};

fn archive(finished_before_ms: u64, limit: u32) -> Command {
    Command::Archive { finished_before_ms, limit }
}

/// [`create`] with another amount: another request under the same id.
fn create_other(id: TransactionId, now_ms: u64) -> Command {
    let Command::Create { request: Request::P2p(mut request), limits, .. } = create(id, now_ms) else {
        unreachable!("create makes a P2P creation")
    };
    request.amount = actors::model::Amount::parse_positive("99", "USD").expect("a valid amount");
    Command::Create { id, request: Request::P2p(request), limits, now_ms }
}

#[tokio::test]
async fn finished_transactions_are_archived_oldest_first_and_still_answer() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let shard = ShardId(1);
    let mut machine = store.state_machine(shard);
    let (first, second, active) =
        (TransactionId::new_random(), TransactionId::new_random(), TransactionId::new_random());
    machine
        .apply([
            normal(1, create(first, 1_000)),
            normal(2, create(second, 1_000)),
            normal(3, create(active, 1_000)),
            normal(4, quote_failed(second, 3_000)),
            normal(5, quote_failed(first, 2_000)),
        ])
        .await?;
    assert_eq!(store.oldest_finished(shard)?, Some(2_000));

    // Only what finished before the cut-off, and at most the limit.
    let responses = machine.apply([normal(6, archive(2_500, 10)), normal(7, archive(10_000, 0))]).await?;
    assert_eq!(responses, [Response::ArchivedCount(1), Response::ArchivedCount(0)]);
    assert_eq!(store.oldest_finished(shard)?, Some(3_000));
    let responses = machine.apply([normal(8, archive(10_000, 10))]).await?;
    assert_eq!(responses, [Response::ArchivedCount(1)], "the active transaction stays");
    assert_eq!(store.oldest_finished(shard)?, None);
    let open: Vec<_> = store.open_transactions(shard)?.iter().map(|state| state.id()).collect();
    assert_eq!(open, [active]);

    // Still read, with its history, from this replica's archive.
    let archived = store.transaction(shard, first)?.expect("the archived record is read");
    assert_eq!(archived.phase(), Phase::Aborted);
    let events: Vec<_> = store.history(shard, first)?.into_iter().map(|event| event.event).collect();
    assert_eq!(events, ["Created", "QuoteFailed"]);

    // The same request again is the same payment, never a second one;
    // another request under its id is a conflict; a late input changes nothing.
    let responses = machine
        .apply([
            normal(9, create(first, 20_000)),
            normal(10, create_other(first, 20_000)),
            normal(11, quote_failed(first, 20_000)),
        ])
        .await?;
    assert_eq!(
        responses,
        [
            Response::Archived { id: first },
            Response::Conflict { id: first },
            Response::UnknownTransaction { id: first }
        ]
    );
    assert_eq!(store.transaction(shard, first)?.map(|state| state.phase()), Some(Phase::Aborted));
    Ok(())
}

#[tokio::test]
async fn a_snapshot_carries_the_markers_but_not_the_archive() -> anyhow::Result<()> {
    let (from_dir, into_dir) = (TempDir::new()?, TempDir::new()?);
    let (from, into) = (Store::open(from_dir.path())?, Store::open(into_dir.path())?);
    let shard = ShardId(1);
    let id = TransactionId::new_random();
    let mut machine = from.state_machine(shard);
    machine
        .apply([
            normal(1, create(id, 1_000)),
            normal(2, quote_failed(id, 2_000)),
            normal(3, archive(5_000, 10)),
        ])
        .await?;

    let snapshot = machine.get_snapshot_builder().await.build_snapshot().await?;
    let mut receiver = into.state_machine(shard);
    receiver.install_snapshot(&snapshot.meta, snapshot.snapshot).await?;

    // The new replica has no copy of the archived record ...
    assert_eq!(into.transaction(shard, id)?, None);
    // ... but knows it was made: a repeated creation is not a new payment.
    let responses = receiver.apply([normal(4, create(id, 9_000))]).await?;
    assert_eq!(responses, [Response::Archived { id }]);
    assert_eq!(into.transaction(shard, id)?, None, "nothing was created");
    Ok(())
}

#[tokio::test]
async fn archiving_does_the_same_whatever_else_a_batch_holds() -> anyhow::Result<()> {
    let id = TransactionId::new_random();
    let entries = || -> Vec<Entry> {
        vec![
            normal(1, create(id, 1_000)),
            normal(2, quote_failed(id, 2_000)),
            normal(3, archive(5_000, 10)),
            normal(4, create(id, 6_000)),
            normal(5, archive(9_000, 10)),
        ]
    };
    let shard = ShardId(1);
    // One replica applies the entries in one batch, another one by one:
    // the first sees the records the batch wrote before they are stored.
    let (together_dir, apart_dir) = (TempDir::new()?, TempDir::new()?);
    let (together, apart) = (Store::open(together_dir.path())?, Store::open(apart_dir.path())?);
    let batched = together.state_machine(shard).apply(entries()).await?;
    let mut single = Vec::new();
    let mut machine = apart.state_machine(shard);
    for entry in entries() {
        single.extend(machine.apply([entry]).await?);
    }

    assert_eq!(batched, single);
    assert!(matches!(batched[0], Response::Created(_)));
    assert_eq!(
        batched[2..],
        [Response::ArchivedCount(1), Response::Archived { id }, Response::ArchivedCount(0)]
    );
    for store in [&together, &apart] {
        assert_eq!(store.oldest_finished(shard)?, None);
        assert_eq!(store.history(shard, id)?.len(), 2, "the archive holds the whole history");
    }
    Ok(())
}

/// A replica writes a transaction's archive copy when it applies the step
/// that finishes it; one that received the finished transaction in a
/// snapshot applied no such step, and must copy it when it archives it.
#[tokio::test]
async fn a_replica_that_received_finished_transactions_in_a_snapshot_archives_them_whole(
) -> anyhow::Result<()> {
    let (from_dir, into_dir) = (TempDir::new()?, TempDir::new()?);
    let (from, into) = (Store::open(from_dir.path())?, Store::open(into_dir.path())?);
    let shard = ShardId(1);
    let id = TransactionId::new_random();
    let mut machine = from.state_machine(shard);
    machine.apply([normal(1, create(id, 1_000)), normal(2, quote_failed(id, 2_000))]).await?;

    let snapshot = machine.get_snapshot_builder().await.build_snapshot().await?;
    let mut receiver = into.state_machine(shard);
    receiver.install_snapshot(&snapshot.meta, snapshot.snapshot).await?;

    for (store, machine) in [(&from, &mut machine), (&into, &mut receiver)] {
        let responses = machine.apply([normal(3, archive(5_000, 10))]).await?;
        assert_eq!(responses, [Response::ArchivedCount(1)]);
        assert_eq!(store.oldest_finished(shard)?, None);
        let record = store.transaction(shard, id)?.expect("every replica that archived it reads it");
        assert_eq!(record.phase(), Phase::Aborted);
        let events: Vec<_> = store.history(shard, id)?.into_iter().map(|event| event.event).collect();
        assert_eq!(events, ["Created", "QuoteFailed"]);
    }
    Ok(())
}
