//! SIGKILL in the middle of 200 concurrent payments, then restart: every
//! accepted payment ends COMMITTED or ABORTED exactly once, nothing stays
//! reserved, and no money is created or lost.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::node::{transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

const PAYMENTS: usize = 200;

struct Payment {
    tenant: &'static str,
    correlation: String,
    payer: String,
    payee: String,
    amount: Decimal,
}

/// Deterministic payments in both directions between the two demo DFSPs.
fn payments() -> Vec<Payment> {
    (0..PAYMENTS)
        .map(|i| {
            let blue = format!("2771000000{}", 1 + i % 5);
            let green = format!("27710000{:03}", 6 + (i / 5) % 5);
            let (tenant, payer, payee) =
                if i % 3 == 0 { (TENANT_GREEN, green, blue) } else { (TENANT_BLUE, blue, green) };
            let amount = Decimal::new(100 + (i as i64 * 37) % 900, 2);
            Payment { tenant, correlation: format!("crash-{i}"), payer, payee, amount }
        })
        .collect()
}

async fn balances(node: &Node) -> BTreeMap<String, (Decimal, Decimal, Decimal)> {
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
    let total_before: Decimal = initial.values().map(|b| b.0).sum();

    let payments = Arc::new(payments());
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
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), PAYMENTS, "correlation ids must map to distinct transactions");

    let mut expected = initial.clone();
    let mut committed = 0;
    for (p, id) in payments.iter().zip(&ids) {
        let transfer = node.wait_final(p.tenant, id, Duration::from_secs(120)).await;
        let finals = transfer["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|e| matches!(e["phase"].as_str(), Some("COMMITTED" | "ABORTED")))
            .count();
        assert_eq!(finals, 1, "transaction {id} reached a final state {finals} times: {transfer}");
        if transfer["transferState"] == "COMMITTED" {
            committed += 1;
            expected.get_mut(&p.payer).expect("payer account").0 -= p.amount;
            expected.get_mut(&p.payee).expect("payee account").0 += p.amount;
        }
    }
    eprintln!("{committed} of {PAYMENTS} payments committed");
    assert!(committed > PAYMENTS / 2, "most payments should commit: {committed}");

    // The payee side books on the switch's PATCH, which may trail the payer's
    // final state by a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = balances(&node).await;
        let settled = after.values().all(|(_, reserved, incoming)| reserved.is_zero() && incoming.is_zero());
        if settled || tokio::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (party, (balance, reserved, incoming)) in &after {
        assert!(
            reserved.is_zero() && incoming.is_zero(),
            "{party} has money left on hold: {reserved} / {incoming}"
        );
        assert_eq!(*balance, expected[party].0, "{party}: balance does not match the committed payments");
    }
    let total_after: Decimal = after.values().map(|b| b.0).sum();
    assert_eq!(total_after, total_before, "money was created or destroyed");
}
