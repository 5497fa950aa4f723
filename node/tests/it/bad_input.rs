//! Bad input: a clear 4xx naming the problem, and nothing stored or moved.

use std::time::Duration;

use serde_json::json;

use crate::node::{free_port, transfer_body, Node, TENANT_BLUE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_clear_error_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node")).await;
    let before = node.accounts(TENANT_BLUE).await;

    let cases = [
        (TENANT_BLUE, json!("{not json"), "malformed JSON"),
        (
            TENANT_BLUE,
            json!({ "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001" } } }),
            "missing field `payee`",
        ),
        (
            TENANT_BLUE,
            json!({
            "payer": { "partyIdInfo": { "partyIdType": "MSISDN" } },
            "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000006" } },
            "amount": { "amount": "1", "currency": "USD" } }),
            "missing field `partyIdentifier`",
        ),
        (TENANT_BLUE, transfer_body("27710000001", "27710000006", "0", "USD"), "greater than zero"),
        (TENANT_BLUE, transfer_body("27710000001", "27710000006", "-5.00", "USD"), "greater than zero"),
        (TENANT_BLUE, transfer_body("27710000001", "27710000006", "1.00001", "USD"), "4 decimal places"),
        (TENANT_BLUE, transfer_body("27710000001", "27710000006", "abc", "USD"), "not a decimal number"),
        (TENANT_BLUE, transfer_body("27710000001", "27710000006", "10", "XYZ"), "ISO 4217"),
        (TENANT_BLUE, transfer_body("27710000001", "not-a-number", "10", "USD"), "MSISDN"),
        ("nobank", transfer_body("27710000001", "27710000006", "10", "USD"), "names no tenant"),
    ];
    for (tenant, body, expected) in cases {
        // A JSON string value is sent raw, to send malformed JSON.
        let raw = body.as_str().map(str::to_owned).unwrap_or_else(|| body.to_string());
        let response = node
            .http
            .post(node.url("/channel/transfer"))
            .header("Platform-TenantId", tenant)
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let problem: serde_json::Value = response.json().await.expect("problem JSON");
        assert_eq!(status, 400, "{raw} -> {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(expected), "{raw}: detail {detail:?} should mention {expected:?}");
    }
    let missing_tenant = node.http.post(node.url("/channel/transfer")).body("{}").send().await.expect("POST");
    assert_eq!(missing_tenant.status().as_u16(), 400);

    assert_eq!(node.accounts(TENANT_BLUE).await, before);
    assert!(
        !node.metrics().await.contains("payhub_payments_started_total"),
        "a refused request started a payment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_payee_and_insufficient_funds_abort_and_move_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node")).await;

    let (status, answer) =
        node.transfer(TENANT_BLUE, None, &transfer_body("27710000001", "27799999999", "10", "USD")).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("id").to_owned();
    let transfer = node.wait_final(TENANT_BLUE, &id, Duration::from_secs(30)).await;
    assert_eq!(transfer["transferState"], "ABORTED");
    assert_eq!(transfer["error"]["code"], "3204", "{transfer}");

    let (status, answer) = node
        .transfer(TENANT_BLUE, None, &transfer_body("27710000002", "27710000006", "1000.01", "USD"))
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("id").to_owned();
    let transfer = node.wait_final(TENANT_BLUE, &id, Duration::from_secs(30)).await;
    assert_eq!(transfer["transferState"], "ABORTED");
    assert_eq!(transfer["error"]["code"], "4001", "{transfer}");
    let payer = node.balance(TENANT_BLUE, "27710000002").await;
    assert_eq!(
        (payer["balance"].as_str(), payer["reserved"].as_str()),
        (Some("1000.00"), Some("0.00")),
        "{payer}"
    );
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "1000.00");

    let unknown = node.get_transfer(TENANT_BLUE, "00000000-0000-4000-8000-000000000000").await;
    assert_eq!(unknown["status"], 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_its_in_flight_limit_refuses_new_payments_with_retry_after_and_moves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A limit of zero: every new payment is over it.
    let env = [("PAYHUB_FLOW__IN_FLIGHT_MAX", "0")];
    let node = Node::start_with_env(&["demo"], &env, free_port(), &dir.path().join("node")).await;
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let response = node
        .http
        .post(node.url("/channel/transfer"))
        .header("Platform-TenantId", TENANT_BLUE)
        .header("X-CorrelationID", "busy-1")
        .json(&body)
        .send()
        .await
        .expect("POST /channel/transfer");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let problem: serde_json::Value = response.json().await.expect("problem details");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("in_flight_max")), "{problem}");
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "1000.00");
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["reserved"], "0.00");
    assert!(!node.metrics().await.contains("payhub_payments_started_total"));
}
