//! Requests to pay a tenant's customer sends, end to end on the demo node
//! (both tenants, the switch simulator between them): bluebank's merchant
//! asks greenbank's customer to pay; bluebank finds the payer's DFSP and
//! sends it the request; greenbank lists it for its payer, who approves
//! (greenbank pays it, bluebank's payee side credits the merchant and the
//! request is COMMITTED) or rejects it (ABORTED, nothing moves). A payer
//! nobody serves aborts the request at the lookup, and bad requests are
//! refused with problem details before anything is created.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::node::{Node, TENANT_BLUE, TENANT_GREEN};

/// bluebank's merchant 27710000001 asks `payer` (a greenbank customer) for
/// `amount` USD.
fn request(payer: &str, amount: &str) -> Value {
    json!({
        "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": payer } },
        "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001" } },
        "amount": { "amount": amount, "currency": "USD" },
    })
}

async fn ask(node: &Node, correlation: &str, body: &Value) -> (u16, Value) {
    let response = node
        .http
        .post(node.url("/channel/transactionRequest"))
        .header("Platform-TenantId", TENANT_BLUE)
        .header("X-CorrelationID", correlation)
        .json(body)
        .send()
        .await
        .expect("POST /channel/transactionRequest");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn read(node: &Node, id: &str) -> (u16, Value) {
    let response = node
        .http
        .get(node.url(&format!("/channel/transactionRequest/{id}")))
        .header("Platform-TenantId", TENANT_BLUE)
        .header("Prefer", "wait=1")
        .send()
        .await
        .expect("GET /channel/transactionRequest");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads request `id` until `done` holds of it.
async fn wait_until(node: &Node, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, request) = read(node, id).await;
        assert_eq!(status, 200, "{request}");
        if done(&request) {
            return request;
        }
        assert!(Instant::now() < deadline, "request {id} never {what}: {request}\nlog:\n{}", node.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The greenbank transaction that answers bluebank's request `id`, once
/// greenbank lists it for its payer.
async fn listed_for_the_payer(node: &Node, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Value = node
            .http
            .get(node.url("/channel/requests"))
            .header("Platform-TenantId", TENANT_GREEN)
            .send()
            .await
            .expect("GET /channel/requests")
            .json()
            .await
            .expect("JSON");
        let found = listed["requests"]
            .as_array()
            .and_then(|requests| requests.iter().find(|r| r["transactionRequestId"] == id).cloned());
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "request {id} never listed for greenbank's payer: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn decide(node: &Node, transaction: &str, decision: &str) {
    let response = node
        .http
        .post(node.url(&format!("/channel/requests/{transaction}/decision")))
        .header("Platform-TenantId", TENANT_GREEN)
        .json(&json!({ "decision": decision }))
        .send()
        .await
        .expect("POST decision");
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
}

fn final_state(request: &Value) -> bool {
    matches!(request["transferState"].as_str(), Some("COMMITTED" | "ABORTED"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_asks_a_customer_elsewhere_to_pay_and_is_paid_once_the_payer_approves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path()).await;
    let merchant_before = node.balance(TENANT_BLUE, "27710000001").await["balance"].clone();
    let payer_before = node.balance(TENANT_GREEN, "27710000006").await["balance"].clone();
    assert_eq!((merchant_before.as_str(), payer_before.as_str()), (Some("1000.00"), Some("1000.00")));

    // Sent, received by greenbank, listed for its payer, approved, paid.
    let (status, created) = ask(&node, "rtp-1", &request("27710000006", "12.50")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["transactionId"].as_str().expect("transactionId").to_owned();
    let waiting = wait_until(&node, &id, "reached the payer", |r| r["phase"] == "AWAITING_PAYMENT").await;
    assert_eq!(waiting["requestState"], "RECEIVED", "{waiting}");
    assert_eq!(waiting["payerFsp"], "greenbank", "{waiting}");
    let at_payer = listed_for_the_payer(&node, &id).await;
    assert_eq!(at_payer["payeeFsp"], "bluebank", "{at_payer}");
    assert_eq!(at_payer["amount"]["amount"], "12.5", "{at_payer}");
    let payers_transaction = at_payer["transactionId"].as_str().expect("transactionId").to_owned();
    // A resent request (same correlation id) is the same request.
    let (status, again) = ask(&node, "rtp-1", &request("27710000006", "12.50")).await;
    assert_eq!((status, again["transactionId"].as_str()), (200, Some(id.as_str())), "{again}");
    decide(&node, &payers_transaction, "APPROVE").await;
    let paid = wait_until(&node, &id, "finished", final_state).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}");
    assert_eq!(paid["phase"], "COMMITTED", "{paid}");
    assert_eq!(paid["payment"]["transferId"], payers_transaction.as_str(), "{paid}");
    assert_eq!(paid["payment"]["amount"]["amount"], "12.5", "{paid}");
    assert_eq!(paid["payerTransactionId"], payers_transaction.as_str(), "{paid}");
    let events: Vec<&str> =
        paid["history"].as_array().expect("history").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events.first(), Some(&"Created"), "{paid}");
    assert!(events.contains(&"PartyFound") && events.contains(&"PaymentReceived"), "{paid}");
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "1012.50");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "987.50");
    let payment = node.get_transfer(TENANT_GREEN, &payers_transaction).await;
    assert_eq!(payment["transferState"], "COMMITTED", "{payment}");
    // A request is not a transfer, nor another tenant's.
    let response = node
        .http
        .get(node.url(&format!("/channel/transfer/{id}")))
        .header("Platform-TenantId", TENANT_BLUE)
        .send()
        .await
        .expect("GET transfer");
    assert_eq!(response.status().as_u16(), 404);
    let response = node
        .http
        .get(node.url(&format!("/channel/transactionRequest/{id}")))
        .header("Platform-TenantId", TENANT_GREEN)
        .send()
        .await
        .expect("GET request");
    assert_eq!(response.status().as_u16(), 404);

    // Rejected by the payer: the merchant's request aborts, nothing moves.
    let (_, created) = ask(&node, "rtp-2", &request("27710000006", "30")).await;
    let rejected_id = created["transactionId"].as_str().expect("transactionId").to_owned();
    let at_payer = listed_for_the_payer(&node, &rejected_id).await;
    decide(&node, at_payer["transactionId"].as_str().expect("transactionId"), "REJECT").await;
    let rejected = wait_until(&node, &rejected_id, "finished", final_state).await;
    assert_eq!(rejected["transferState"], "ABORTED", "{rejected}");
    assert_eq!(rejected["requestState"], "REJECTED", "{rejected}");
    assert_eq!(rejected["error"]["code"], "4101", "{rejected}");
    assert!(rejected.get("payment").is_none(), "{rejected}");

    // A payer nobody serves: aborted at the lookup, never sent.
    let (_, created) = ask(&node, "rtp-3", &request("27719999999", "5")).await;
    let unknown_id = created["transactionId"].as_str().expect("transactionId").to_owned();
    let unknown = wait_until(&node, &unknown_id, "finished", final_state).await;
    assert_eq!(unknown["transferState"], "ABORTED", "{unknown}");
    assert_eq!(unknown["error"]["code"], "3204", "{unknown}");
    assert!(unknown["requestState"].is_null(), "{unknown}");

    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "1012.50");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "987.50");
    let metrics = node.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("payhub_payments_finished_total")
            && l.contains("flow=\"request_to_pay\"")
            && l.contains("outcome=\"COMMITTED\"")),
        "no finished request to pay in the metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_to_pay_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path()).await;
    let mut bad_scenario = request("27710000006", "10");
    bad_scenario["scenario"] = json!("LOTTERY");
    let mut too_long = request("27710000006", "10");
    too_long["expirySeconds"] = json!(86_400);
    let mut float = request("27710000006", "10");
    float["amount"]["amount"] = json!(10.5);
    let cases = [
        (bad_scenario, "scenario"),
        (too_long, "expirySeconds"),
        (float, "expected a string"),
        (request("27710000001", "10"), "same party"),
        (request("27710000006", "-3"), "amount"),
    ];
    for (n, (body, field)) in cases.into_iter().enumerate() {
        let (status, problem) = ask(&node, &format!("bad-{n}"), &body).await;
        assert_eq!(status, 400, "{body} -> {problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains(field)), "{field}: {problem}");
    }
    // The correlation id of a payment cannot be reused for a request.
    let (status, _) = node
        .transfer(
            TENANT_BLUE,
            Some("shared"),
            &crate::node::transfer_body("27710000001", "27710000006", "1", "USD"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, problem) = ask(&node, "shared", &request("27710000006", "1")).await;
    assert_eq!(status, 409, "{problem}");
}
