//! Finished payments leave the replicated state after `flow.archive_after_ms`
//! and are still answered: read by id, and a repeated request is the same
//! payment, never a second one, across a restart too.

use std::time::{Duration, Instant};

use crate::node::{free_port, transfer_body, Node, TENANT_BLUE};

/// The value of an unlabelled counter in a Prometheus text page.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_payment_is_still_read_and_never_paid_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The shortest retention allowed: the transfer's expiry and grace.
    let env = [
        ("PAYHUB_FLOW__TRANSFER_EXPIRY_MS", "1000"),
        ("PAYHUB_FLOW__TRANSFER_GRACE_MS", "500"),
        ("PAYHUB_FLOW__ARCHIVE_AFTER_MS", "1500"),
    ];
    let mut node = Node::start_with_env(&["demo"], &env, free_port(), &dir.path().join("node")).await;
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let paid = node.pay(TENANT_BLUE, "archived-1", &body).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}");
    let id = paid["transactionId"].as_str().expect("transactionId").to_owned();
    let balance = node.balance(TENANT_BLUE, "27710000001").await;

    // The leader's sweep (every 5 s) archives it once the retention is over.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&node.metrics().await, "payhub_transactions_archived_total") < 1.0 {
        assert!(Instant::now() < deadline, "not archived:\n{}", node.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for round in ["archived", "archived, after a restart"] {
        let read = node.get_transfer(TENANT_BLUE, &id).await;
        assert_eq!(read["transferState"], "COMMITTED", "{round}: {read}");
        let events: Vec<_> =
            read["history"].as_array().expect("history").iter().map(|e| e["event"].clone()).collect();
        assert_eq!(events.first().and_then(|e| e.as_str()), Some("Created"), "{round}: {read}");
        assert_eq!(events.last().and_then(|e| e.as_str()), Some("FundsCommitted"), "{round}: {read}");

        // The same request again: the same payment, and no money moves.
        let (status, again) = node.transfer(TENANT_BLUE, Some("archived-1"), &body).await;
        assert_eq!((status, again["transactionId"].as_str()), (200, Some(id.as_str())), "{round}: {again}");
        // Another request under the same correlation id: refused.
        let other = transfer_body("27710000001", "27710000006", "11.00", "USD");
        let (status, conflict) = node.transfer(TENANT_BLUE, Some("archived-1"), &other).await;
        assert_eq!(status, 409, "{round}: {conflict}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(node.balance(TENANT_BLUE, "27710000001").await, balance, "{round}: paid twice");

        node.restart().await;
    }
}
