//! The README's payment, and its idempotent repetition.

use std::time::Duration;

use crate::node::{transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_payment_commits_and_a_repeated_correlation_id_moves_no_money() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node")).await;
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");

    // The metadata group records the node and its zone (in the background,
    // once its leader is known).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let health = loop {
        let health: serde_json::Value =
            node.http.get(node.url("/health")).send().await.expect("GET /health").json().await.expect("JSON");
        if health["nodes"][0]["zone"] == "zone-a" || std::time::Instant::now() > deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health["nodes"][0]["zone"], "zone-a", "{health}");
    // The metadata group and the 8 transaction shards, all led here.
    assert_eq!(health["groupsLed"], 9, "{health}");

    let (status, answer) = node.transfer(TENANT_BLUE, Some("readme-1"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
    let transfer = node.wait_final(TENANT_BLUE, &id, Duration::from_secs(30)).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");
    assert_eq!(transfer["payeeFsp"], "greenbank");
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "990.00");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "1010.00");
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["reserved"], "0.00");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["incoming"], "0.00");

    let (status, again) = node.transfer(TENANT_BLUE, Some("readme-1"), &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["transactionId"].as_str(), Some(id.as_str()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "990.00");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "1010.00");

    // The same correlation id for another transfer is refused, not answered.
    let other = transfer_body("27710000001", "27710000006", "11.00", "USD");
    let (status, problem) = node.transfer(TENANT_BLUE, Some("readme-1"), &other).await;
    assert_eq!(status, 409, "{problem}");

    // Every step is in the transaction's history.
    let events: Vec<String> = transfer["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(events, ["Created", "QuoteReceived", "TransferFulfilled", "FundsCommitted"], "{transfer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_and_is_not_reseeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&dir.path().join("node")).await;
    let body = transfer_body("27710000007", "27710000002", "25.50", "USD");
    let (status, answer) = node.transfer(TENANT_GREEN, None, &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
    node.wait_final(TENANT_GREEN, &id, Duration::from_secs(30)).await;

    node.restart().await;
    assert_eq!(node.get_transfer(TENANT_GREEN, &id).await["transferState"], "COMMITTED");
    assert_eq!(node.balance(TENANT_GREEN, "27710000007").await["balance"], "974.50");
    assert_eq!(node.balance(TENANT_BLUE, "27710000002").await["balance"], "1025.50");
}

/// A channel learns a payment's outcome with one read that asks to wait
/// (`Prefer: wait`), answered as soon as the payment ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_prefers_to_wait_is_answered_when_the_payment_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node")).await;
    let body = transfer_body("27710000001", "27710000006", "1.00", "USD");
    let (status, answer) = node.transfer(TENANT_BLUE, None, &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId");

    let started = std::time::Instant::now();
    let response = node
        .http
        .get(node.url(&format!("/channel/transfer/{id}")))
        .header("Platform-TenantId", TENANT_BLUE)
        .header("Prefer", "wait=5")
        .send()
        .await
        .expect("GET /channel/transfer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("preference-applied").and_then(|v| v.to_str().ok()), Some("wait=5"));
    let transfer: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");
    // Woken by the end, not by the wait's limit (a payment takes well under
    // a second even in a debug build).
    assert!(started.elapsed() < Duration::from_secs(4), "answered after {:?}", started.elapsed());
}
