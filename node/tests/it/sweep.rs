//! A shard's leader sweeps for unfinished transactions that nobody drives
//! (`flow.orphan_sweep_ms`) and resumes them. A payment whose actor is
//! starting (it was created just now) or has just stopped (it finished
//! between the sweep's reads) is no orphan: resuming it would run its
//! effects again. Soaks at 270/s logged about one such resumption every
//! three seconds before the sweep told them apart.

use futures::StreamExt;

use crate::node::{free_port, transfer_body, Node, TENANT_BLUE};

const PAYMENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orphan_sweep_never_resumes_a_payment_that_is_driven() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every leader sweeps every 5 ms: hundreds of sweeps meet the payments'
    // actors starting and stopping.
    let env = [("PAYHUB_FLOW__ORPHAN_SWEEP_MS", "5")];
    let node = Node::start_with_env(&["demo"], &env, free_port(), &dir.path().join("node")).await;
    let body = transfer_body("27710000001", "27710000006", "0.10", "USD");
    let finals: Vec<_> = futures::stream::iter(0..PAYMENTS)
        .map(|i| {
            let (node, body) = (&node, &body);
            async move { node.pay(TENANT_BLUE, &format!("sweep-{i}"), body).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for paid in &finals {
        assert_eq!(paid["transferState"], "COMMITTED", "{paid}");
    }

    let metrics = node.metrics().await;
    let resumed: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("payhub_transactions_resumed_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, count| sum + count);
    let log = node.log_text();
    let resuming: Vec<_> =
        log.lines().filter(|line| line.contains("resuming unfinished transactions")).collect();
    assert!(
        resuming.is_empty() && resumed == 0.0,
        "driven payments resumed ({resumed}):\n{}",
        resuming.join("\n")
    );
}
