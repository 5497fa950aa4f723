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
/// `amount` USD: the body of `POST /channel/transactionRequest`.
pub fn request(payer: &str, amount: &str) -> Value {
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

/// The ids of `tenant`'s outstanding requests to pay, oldest first.
async fn outstanding(node: &Node, tenant: &str) -> Vec<String> {
    let response = node
        .http
        .get(node.url("/channel/transactionRequest"))
        .header("Platform-TenantId", tenant)
        .send()
        .await
        .expect("GET /channel/transactionRequest");
    assert_eq!(response.status().as_u16(), 200);
    let listed: Value = response.json().await.expect("JSON");
    let requests = listed["requests"].as_array().expect("requests");
    assert_eq!(listed["count"], requests.len(), "{listed}");
    requests.iter().map(|r| r["transactionId"].as_str().expect("transactionId").to_owned()).collect()
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
    // Listed among bluebank's outstanding requests, and only there.
    assert_eq!(outstanding(&node, TENANT_BLUE).await, vec![id.clone()]);
    assert!(outstanding(&node, TENANT_GREEN).await.is_empty());
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
    assert!(outstanding(&node, TENANT_BLUE).await.is_empty(), "a paid request is not outstanding");
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

/// bluebank's merchant asks for 12.50 USD, approved by the payer's
/// one-time password.
fn request_by_password(payer: &str) -> Value {
    let mut body = request(payer, "12.50");
    body["authenticationType"] = json!("OTP");
    body
}

/// What the payer did at the merchant's device, as bluebank's channel
/// reports it.
async fn at_the_device(node: &Node, id: &str, body: Value) -> (u16, Value) {
    let response = node
        .http
        .post(node.url(&format!("/channel/transactionRequest/{id}/authorization")))
        .header("Platform-TenantId", TENANT_BLUE)
        .json(&body)
        .send()
        .await
        .expect("POST authorization");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// greenbank's listing of request `id` once it shows a password with
/// `retries_left` tries, and bluebank's request once the same ask reached it.
async fn password_asked(node: &Node, id: &str, retries_left: u64) -> (Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let at_payer = loop {
        let listed = listed_for_the_payer(node, id).await;
        if listed["authorization"]["password"].is_string()
            && listed["authorization"]["retriesLeft"] == retries_left
        {
            break listed;
        }
        assert!(Instant::now() < deadline, "no password with {retries_left} tries for {id}: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at_merchant = wait_until(node, id, "asked for the password", |r| {
        r["phase"] == "AWAITING_AUTHORIZATION"
            && r["authorization"]["retriesLeft"] == retries_left
            && r["authorization"]["response"].is_null()
    })
    .await;
    (at_payer, at_merchant)
}

/// A password that is not `password`: its first digit changed.
fn wrong(password: &str) -> String {
    let first = password.as_bytes()[0];
    let other = if first == b'9' { '0' } else { char::from(first + 1) };
    format!("{other}{}", &password[1..])
}

async fn read_payers_transfer(node: &Node, id: &str) -> Value {
    node.http
        .get(node.url(&format!("/channel/transfer/{id}")))
        .header("Platform-TenantId", TENANT_GREEN)
        .header("Prefer", "wait=5")
        .send()
        .await
        .expect("GET /channel/transfer")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_by_password_is_paid_once_the_payer_enters_it_at_the_merchants_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path()).await;

    let (status, created) = ask(&node, "otp-1", &request_by_password("27710000006")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["transactionId"].as_str().expect("transactionId").to_owned();

    // greenbank quotes it and shows its payer the password; bluebank's
    // merchant is asked for it, with what the payer will pay.
    let (at_payer, at_merchant) = password_asked(&node, &id, 3).await;
    assert_eq!(at_merchant["authenticationType"], "OTP", "{at_merchant}");
    assert_eq!(at_merchant["authorization"]["amount"]["amount"], "12.5", "{at_merchant}");
    assert_eq!(at_payer["authorization"]["amount"]["amount"], "12.5", "{at_payer}");
    let first = at_payer["authorization"]["password"].as_str().expect("a password").to_owned();
    assert_eq!(first.len(), 6, "{at_payer}");
    let payers_transaction = at_payer["transactionId"].as_str().expect("transactionId").to_owned();
    // Only the password approves it; greenbank's channel cannot.
    let approve = node
        .http
        .post(node.url(&format!("/channel/requests/{payers_transaction}/decision")))
        .header("Platform-TenantId", TENANT_GREEN)
        .json(&json!({ "decision": "APPROVE" }))
        .send()
        .await
        .expect("POST decision");
    assert_eq!(approve.status().as_u16(), 409);

    // A wrong password costs a try: greenbank asks again.
    let (status, answered) =
        at_the_device(&node, &id, json!({ "response": "ENTERED", "otp": wrong(&first) })).await;
    assert_eq!(status, 200, "{answered}");
    let (at_payer, _) = password_asked(&node, &id, 2).await;
    assert_eq!(at_payer["authorization"]["password"], first.as_str(), "the same password: {at_payer}");

    // A new password asked for: the old one no longer pays.
    let (status, answered) = at_the_device(&node, &id, json!({ "response": "RESEND" })).await;
    assert_eq!(status, 200, "{answered}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        let listed = listed_for_the_payer(&node, &id).await;
        match listed["authorization"]["password"].as_str() {
            Some(password) if password != first => break password.to_owned(),
            _ => assert!(Instant::now() < deadline, "no new password: {listed}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    password_asked(&node, &id, 2).await;

    let (status, answered) = at_the_device(&node, &id, json!({ "response": "ENTERED", "otp": second })).await;
    assert_eq!(status, 200, "{answered}");
    let paid = wait_until(&node, &id, "finished", final_state).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}");
    assert_eq!(paid["payment"]["transferId"], payers_transaction.as_str(), "{paid}");
    let payers = read_payers_transfer(&node, &payers_transaction).await;
    assert_eq!(payers["transferState"], "COMMITTED", "{payers}");
    let events: Vec<&str> =
        payers["history"].as_array().expect("history").iter().filter_map(|e| e["event"].as_str()).collect();
    for event in ["AuthorizationInvalid", "AuthorizationResend", "AuthorizationValid"] {
        assert!(events.contains(&event), "no {event} in {events:?}");
    }
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "1012.50");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "987.50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_by_password_is_refused_after_three_wrong_ones_and_moves_no_money() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path()).await;

    // Refused before anything is created: an authentication payhub does
    // not take, and a report from the device when nobody asked.
    let mut u2f = request_by_password("27710000006");
    u2f["authenticationType"] = json!("U2F");
    let (status, problem) = ask(&node, "otp-bad", &u2f).await;
    assert_eq!(status, 400, "{problem}");
    let (status, created) = ask(&node, "otp-plain", &request("27710000006", "1.00")).await;
    assert_eq!(status, 200, "{created}");
    let plain = created["transactionId"].as_str().expect("transactionId").to_owned();
    wait_until(&node, &plain, "reached the payer", |r| r["phase"] == "AWAITING_PAYMENT").await;
    let (status, problem) =
        at_the_device(&node, &plain, json!({ "response": "ENTERED", "otp": "123456" })).await;
    assert_eq!(status, 409, "{problem}");

    let (status, created) = ask(&node, "otp-2", &request_by_password("27710000006")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["transactionId"].as_str().expect("transactionId").to_owned();
    let (at_payer, _) = password_asked(&node, &id, 3).await;
    let password = at_payer["authorization"]["password"].as_str().expect("a password").to_owned();
    let payers_transaction = at_payer["transactionId"].as_str().expect("transactionId").to_owned();
    for bad in [
        json!({ "response": "ENTERED", "otp": "12ab" }),
        json!({ "response": "ENTERED" }),
        json!({ "response": "MAYBE" }),
    ] {
        let (status, problem) = at_the_device(&node, &id, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }
    for retries_left in [3, 2, 1] {
        password_asked(&node, &id, retries_left).await;
        let (status, answered) =
            at_the_device(&node, &id, json!({ "response": "ENTERED", "otp": wrong(&password) })).await;
        assert_eq!(status, 200, "{answered}");
    }
    let refused = wait_until(&node, &id, "finished", final_state).await;
    assert_eq!(refused["transferState"], "ABORTED", "{refused}");
    assert_eq!(refused["requestState"], "REJECTED", "{refused}");
    assert_eq!(refused["error"]["code"], "4101", "{refused}");
    let payers = read_payers_transfer(&node, &payers_transaction).await;
    assert_eq!(payers["transferState"], "ABORTED", "{payers}");
    assert_eq!(payers["error"]["code"], "4101", "{payers}");
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "1000.00");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "1000.00");
}
