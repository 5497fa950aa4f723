use actors::command::{Command, Member, Response, Topology};
use actors::flow::Phase;
use actors::model::{NodeId, ShardId, TransactionId};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder, Vote};
use storage::Store;
use tempfile::TempDir;

use crate::{create, entry, normal, quote_failed, quoted};

#[tokio::test]
async fn create_then_step_in_one_batch_sees_the_created_record() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let shard = ShardId(1);
    let id = TransactionId::new_random();

    let responses = store
        .state_machine(shard)
        .apply([normal(1, create(id, 1_000)), normal(2, quoted(id, 1_500))])
        .await?;

    assert!(matches!(&responses[0], Response::Created(_)), "{responses:?}");
    let Response::Stepped(transition) = &responses[1] else { panic!("expected a step: {responses:?}") };
    assert_eq!(transition.state.phase(), Phase::Transferring);
    assert_eq!(store.transaction(shard, id)?.map(|record| record.phase()), Some(Phase::Transferring));
    let history: Vec<_> = store
        .history(shard, id)?
        .into_iter()
        .map(|event| (event.log_index, event.at_ms, event.event))
        .collect();
    assert_eq!(history, [(1, 1_000, "Created".to_owned()), (2, 1_500, "QuoteReceived".to_owned())]);
    assert_eq!(store.history(shard, id)?[1].phase, "TRANSFERRING");
    Ok(())
}

#[tokio::test]
async fn open_index_holds_exactly_the_active_transactions() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let shard = ShardId(1);
    let (stays, ends) = (TransactionId::new_random(), TransactionId::new_random());
    let mut machine = store.state_machine(shard);

    machine.apply([normal(1, create(stays, 1)), normal(2, create(ends, 1))]).await?;
    assert_eq!(store.open_transactions(shard)?.len(), 2);

    let responses = machine.apply([normal(3, quote_failed(ends, 3))]).await?;
    let Response::Stepped(transition) = &responses[0] else { panic!("expected a step: {responses:?}") };
    assert_eq!(transition.state.phase(), Phase::Aborted);
    let open: Vec<_> = store.open_transactions(shard)?.into_iter().map(|record| record.id()).collect();
    assert_eq!(open, [stays]);
    assert_eq!(store.history(shard, ends)?.len(), 2, "the aborted transaction keeps its history");
    Ok(())
}

/// The leader's recovery sweep and the requests-to-pay count read the open
/// index while entries are applied. A transaction that finishes between the
/// sweep reading its index entry and reading its record is not a corrupt
/// store: the index and the records are read at one point in time. (Soaks
/// logged a dozen false "the store is corrupt" warnings per node before.)
#[tokio::test]
async fn the_open_index_read_while_transactions_finish_is_never_taken_for_corruption() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let shard = ShardId(1);
    let mut machine = store.state_machine(shard);
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = std::thread::spawn({
        let (store, finished) = (store.clone(), finished.clone());
        move || -> anyhow::Result<usize> {
            let mut scans = 0;
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                for record in store.open_transactions(shard)? {
                    anyhow::ensure!(
                        record.phase().is_active(),
                        "{} is listed but {:?}",
                        record.id(),
                        record.phase()
                    );
                }
                scans += 1;
            }
            Ok(scans)
        }
    });
    // Always a few open transactions, so that every scan reads records,
    // and one finishing in every batch.
    let ids: Vec<_> = (0..2_000).map(|_| TransactionId::new_random()).collect();
    let mut index = 0;
    for (n, id) in ids.iter().enumerate() {
        index += 1;
        machine.apply([normal(index, create(*id, index))]).await?;
        if n >= 4 {
            index += 1;
            machine.apply([normal(index, quote_failed(ids[n - 4], index))]).await?;
        }
    }
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let scans = reader.join().expect("the reader does not panic")?;
    assert!(scans > 0, "the reader scanned while entries were applied");
    assert_eq!(store.open_transactions(shard)?.len(), 4);
    Ok(())
}
#[tokio::test]
async fn node_registry_records_registered_nodes() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let register = |node, zone: &str| Command::RegisterNode {
        node: NodeId(node),
        address: format!("10.0.0.{node}:7000"),
        zone: zone.to_owned(),
    };
    let responses = store
        .state_machine(ShardId::METADATA)
        .apply([normal(1, register(2, "b")), normal(2, register(1, "a"))])
        .await?;

    assert_eq!(responses, [Response::Recorded, Response::Recorded]);
    assert_eq!(
        store.nodes(ShardId::METADATA)?,
        [(1, "10.0.0.1:7000".to_owned(), "a".to_owned()), (2, "10.0.0.2:7000".to_owned(), "b".to_owned())]
    );
    assert!(store.nodes(ShardId(1))?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_topology_change_sees_the_topology_recorded_earlier_in_the_same_batch() -> anyhow::Result<()> {
    // A replica catching up (a node that joins) applies the whole metadata
    // log in one batch: the change must apply there as it did on the leader.
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let topology = |nodes: &[u64]| Topology {
        version: nodes.len() as u64 - 1,
        shard_count: 1,
        replication_factor: 1,
        members: nodes
            .iter()
            .map(|id| Member {
                id: NodeId(*id),
                zone: "a".into(),
                grpc: format!("10.0.0.{id}:9080"),
                http: format!("10.0.0.{id}:8080"),
            })
            .collect(),
        replicas: vec![(0, vec![nodes[0]]), (1, vec![nodes[0]])],
    };
    let (first, second) = (topology(&[1]), topology(&[1, 2]));
    let responses = store
        .state_machine(ShardId::METADATA)
        .apply([
            normal(1, Command::RecordTopology { topology: first.clone() }),
            normal(2, Command::ChangeTopology { from: first.clone(), to: second.clone() }),
            normal(3, Command::RecordTopology { topology: first.clone() }),
        ])
        .await?;

    assert_eq!(
        responses,
        [Response::Recorded, Response::Recorded, Response::TopologyMismatch { recorded: second.clone() }]
    );
    assert_eq!(store.topology(ShardId::METADATA)?, Some(second));
    Ok(())
}

#[tokio::test]
async fn two_shards_in_one_database_do_not_see_each_other() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let (one, two) = (ShardId(1), ShardId(2));
    let (mut log_one, mut log_two) = (store.log_store(one), store.log_store(two));
    let (a, b) = (TransactionId::new_random(), TransactionId::new_random());

    log_one.blocking_append((1..=5).map(|index| entry(index, EntryPayload::Blank))).await?;
    log_two.blocking_append([normal(1, create(b, 1)), entry(2, EntryPayload::Blank)]).await?;
    log_one.purge(entry(2, EntryPayload::Blank).log_id).await?;
    log_one.truncate(entry(5, EntryPayload::Blank).log_id).await?;

    let indexes = |entries: Vec<storage::Entry>| entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
    assert_eq!(indexes(log_one.try_get_log_entries(..).await?), [3, 4]);
    assert_eq!(indexes(log_two.try_get_log_entries(..).await?), [1, 2]);
    assert_eq!(log_two.get_log_state().await?.last_purged_log_id, None);
    assert_eq!(log_two.get_log_state().await?.last_log_id.map(|id| id.index), Some(2));

    let (mut machine_one, mut machine_two) = (store.state_machine(one), store.state_machine(two));
    machine_one.apply([normal(1, create(a, 1))]).await?;
    machine_two.apply([normal(1, create(b, 1)), entry(2, EntryPayload::Blank)]).await?;
    assert!(store.transaction(one, b)?.is_none() && store.transaction(two, a)?.is_none());
    assert_eq!(machine_one.applied_state().await?.0.map(|id| id.index), Some(1));

    // Installing shard one's snapshot into shard two replaces shard two's
    // state, and only its state.
    let snapshot = machine_one.build_snapshot().await?;
    machine_two.install_snapshot(&snapshot.meta, snapshot.snapshot).await?;
    assert!(store.transaction(two, a)?.is_some() && store.transaction(two, b)?.is_none());
    assert!(store.transaction(one, a)?.is_some());
    assert_eq!(machine_two.applied_state().await?.0.map(|id| id.index), Some(1));
    assert_eq!(store.open_transactions(two)?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn reopening_keeps_log_vote_applied_state_records_and_snapshot() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let shard = ShardId(4);
    let id = TransactionId::new_random();
    let entries = [normal(1, create(id, 1)), normal(2, quoted(id, 2))];
    let vote = Vote::new(3, 1);
    let snapshot_id = {
        let store = Store::open(directory.path())?;
        let (mut log, mut machine) = (store.log_store(shard), store.state_machine(shard));
        log.save_vote(&vote).await?;
        log.blocking_append(entries.clone()).await?;
        machine.apply(entries.clone()).await?;
        machine.build_snapshot().await?.meta.snapshot_id
    };

    let store = Store::open(directory.path())?;
    let (mut log, mut machine) = (store.log_store(shard), store.state_machine(shard));
    assert_eq!(log.read_vote().await?, Some(vote));
    assert_eq!(log.try_get_log_entries(..).await?, entries);
    assert_eq!(machine.applied_state().await?.0, Some(entries[1].log_id));
    assert_eq!(store.transaction(shard, id)?.map(|record| record.phase()), Some(Phase::Transferring));
    let current = machine.get_current_snapshot().await?.map(|snapshot| snapshot.meta.snapshot_id);
    assert_eq!(current, Some(snapshot_id));
    Ok(())
}
