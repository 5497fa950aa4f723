//! SIGKILL in the middle of 200 concurrent payments, then restart: every
//! accepted payment ends COMMITTED or ABORTED exactly once, nothing stays
//! reserved, and no money is created or lost.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::checker::{payments, Balances, Expected};
use crate::node::{transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

const PAYMENTS: usize = 200;

async fn balances(node: &Node) -> Balances {
    let mut all = BTreeMap::new();
    for tenant in [TENANT_BLUE, TENANT_GREEN] {
        for (party, balance, reserved, incoming) in node.accounts(tenant).await {
            let parse = |s: &str| Decimal::from_str(s).expect("decimal figure");
            all.insert(party, (parse(&balance), parse(&reserved), parse(&incoming)));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flight_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&dir.path().join("node")).await;
    let initial = balances(&node).await;
    assert_eq!(initial.len(), 10);

    let payments = Arc::new(payments("crash", PAYMENTS, |i| 100 + (i as i64 * 37) % 900));
    let answered = Arc::new(AtomicUsize::new(0));
    let node_url = node.listen;
    let http = node.http.clone();
    let mut senders = Vec::new();
    for index in 0..PAYMENTS {
        let (payments, answered, http) = (payments.clone(), answered.clone(), http.clone());
        senders.push(tokio::spawn(async move {
            let p = &payments[index];
            let body = transfer_body(&p.payer, &p.payee, &p.amount.to_string(), "USD");
            let sent = http
                .post(format!("http://{node_url}/channel/transfer"))
                .header("Platform-TenantId", p.tenant)
                .header("X-CorrelationID", &p.correlation)
                .json(&body)
                .send()
                .await;
            if matches!(&sent, Ok(r) if r.status().is_success()) {
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Kill once some payments are accepted and most are still in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) < PAYMENTS / 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill();
    let accepted_before_kill = answered.load(Ordering::SeqCst);
    for sender in senders {
        let _ = sender.await;
    }
    assert!(accepted_before_kill > 0, "no payment was accepted before the kill:\n{}", node.log_text());
    let finished_before_kill = node.log_text().matches("payment finished").count();
    eprintln!("killed with {accepted_before_kill} payments accepted, {finished_before_kill} finished");
    assert!(finished_before_kill < PAYMENTS, "the kill came after everything finished");

    node.restart().await;

    // A client that got no answer retries with the same correlation id: it
    // gets the transaction that was accepted, or a new one if none was.
    let mut ids = Vec::new();
    for p in payments.iter() {
        let body = transfer_body(&p.payer, &p.payee, &p.amount.to_string(), "USD");
        let (status, answer) = node.transfer(p.tenant, Some(&p.correlation), &body).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["transactionId"].as_str().expect("transactionId").to_owned());
    }
    let mut expected = Expected::new(&initial, &ids);
    for (p, id) in payments.iter().zip(&ids) {
        let transfer = node.wait_final(p.tenant, id, Duration::from_secs(120)).await;
        expected.record(p, id, &transfer);
    }
    expected.check(&initial, || balances(&node)).await;
}
