use storage::{Space, Store};
use tempfile::TempDir;

#[test]
fn kv_writes_read_back_scan_by_prefix_and_delete() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    let ledger = store.kv(Space::Ledger);
    ledger.write(vec![
        (b"account/a".to_vec(), Some(b"1".to_vec())),
        (b"account/b".to_vec(), Some(b"2".to_vec())),
        (b"hold/a".to_vec(), Some(b"3".to_vec())),
    ])?;

    assert_eq!(ledger.get(b"account/b")?, Some(b"2".to_vec()));
    assert_eq!(ledger.get(b"account/c")?, None);
    assert_eq!(
        ledger.scan_prefix(b"account/")?,
        vec![(b"account/a".to_vec(), b"1".to_vec()), (b"account/b".to_vec(), b"2".to_vec())]
    );
    assert!(store.kv(Space::Switch).get(b"account/a")?.is_none(), "spaces are separate");

    ledger.write(vec![(b"account/a".to_vec(), None), (b"hold/b".to_vec(), Some(b"4".to_vec()))])?;
    assert_eq!(ledger.get(b"account/a")?, None);
    assert_eq!(ledger.scan_prefix(b"hold/")?.len(), 2);

    drop((ledger, store));
    let store = Store::open(directory.path())?;
    assert_eq!(store.kv(Space::Ledger).get(b"hold/b")?, Some(b"4".to_vec()), "writes are durable");
    Ok(())
}

#[test]
fn a_mirrored_prefix_scans_from_memory_what_is_on_disk() -> anyhow::Result<()> {
    let directory = TempDir::new()?;
    let store = Store::open(directory.path())?;
    store.kv(Space::Payee).write(vec![(b"pending/a".to_vec(), Some(b"1".to_vec()))])?;
    // Loaded from disk when mirroring starts; kept by every write after.
    let payee = store.kv(Space::Payee).mirroring(b"pending/")?;
    let clone = payee.clone();
    clone.apply(vec![
        (b"pending/b".to_vec(), Some(b"2".to_vec())),
        (b"pending/c".to_vec(), Some(b"3".to_vec())),
        (b"answer/b".to_vec(), Some(b"x".to_vec())),
    ])?;
    payee.write(vec![(b"pending/a".to_vec(), None), (b"pending/c".to_vec(), Some(b"4".to_vec()))])?;

    let expected = vec![(b"pending/b".to_vec(), b"2".to_vec()), (b"pending/c".to_vec(), b"4".to_vec())];
    assert_eq!(payee.scan_prefix(b"pending/")?, expected);
    assert_eq!(payee.scan_prefix(b"pending/c")?, expected[1..]);
    assert_eq!(payee.scan_prefix(b"answer/")?, vec![(b"answer/b".to_vec(), b"x".to_vec())]);
    // The same as a reader of the disk sees, and as the next start loads.
    assert_eq!(store.kv(Space::Payee).scan_prefix(b"pending/")?, expected);
    drop((payee, clone, store));
    let store = Store::open(directory.path())?;
    assert_eq!(store.kv(Space::Payee).mirroring(b"pending/")?.scan_prefix(b"pending/")?, expected);
    Ok(())
}
