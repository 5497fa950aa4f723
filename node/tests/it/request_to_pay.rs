//! Requests to pay, end to end through the switch simulator: bluebank (the
//! merchant's DFSP) asks greenbank's customer to pay; greenbank tells it the
//! request was received, lists it for its payer's channel, and pays it once
//! approved (quote and transfer naming the request), or tells bluebank it
//! was rejected, or lapsed, moving no money. Requests greenbank cannot take
//! are refused with the FSPIOP code that says why.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::fspiop::{body_of, fspiop_request, proxied_node, sent_to, tenants_toml, Proxy, Recorded};
use crate::node::{Node, TENANT_BLUE, TENANT_GREEN};

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms")
}

/// bluebank's customer 27710000001 asks greenbank's `payer` for `amount`,
/// the request expiring in `expires_in_ms`: its id and body.
pub fn request(payer: &str, amount: &str, expires_in_ms: i64) -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let expiration = connectors::fspiop::headers::timestamp(now_ms().saturating_add_signed(expires_in_ms));
    let body = json!({
        "transactionRequestId": id,
        "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" } },
        "payer": { "partyIdType": "MSISDN", "partyIdentifier": payer, "fspId": "greenbank" },
        "amount": { "amount": amount, "currency": "USD" },
        "transactionType": { "scenario": "PAYMENT", "initiator": "PAYEE", "initiatorType": "BUSINESS" },
        "expiration": expiration,
    });
    (id, body)
}

/// The answers greenbank sent bluebank about request `id` (to `suffix`).
fn answers<'a>(recorded: &'a [Recorded], resource: &str, id: &str, suffix: &str) -> Vec<&'a Recorded> {
    let path = format!("/switch/{resource}/{id}{suffix}");
    recorded.iter().filter(|m| m["method"] == "PUT" && m["path"] == path.as_str()).collect()
}

/// Waits for greenbank's `n`th answer about request `id` and returns it.
async fn answer(proxy: &Proxy, id: &str, suffix: &str, n: usize) -> Value {
    let recorded = proxy
        .wait_for(&format!("answer {n} to request {id}{suffix}"), |r| {
            answers(r, "transactionRequests", id, suffix).len() >= n
        })
        .await;
    body_of(answers(&recorded, "transactionRequests", id, suffix)[n - 1])
}

async fn send(node: &Node, body: &Value) -> (u16, Value) {
    let base = node.url("/fspiop/greenbank");
    fspiop_request(
        &node.http,
        &base,
        "POST",
        "/transactionRequests",
        "transactionRequests",
        Some(body),
        "1.1",
    )
    .await
}

async fn decide(node: &Node, transaction: &str, decision: &Value) -> (u16, Value) {
    let response = node
        .http
        .post(node.url(&format!("/channel/requests/{transaction}/decision")))
        .header("Platform-TenantId", TENANT_GREEN)
        .json(decision)
        .send()
        .await
        .expect("POST decision");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn waiting(node: &Node) -> Vec<Value> {
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
    listed["requests"].as_array().cloned().unwrap_or_default()
}

async fn balances(node: &Node) -> (String, String) {
    let of = |accounts: Vec<(String, String, String, String)>, id: &str| {
        accounts.into_iter().find(|a| a.0 == id).map(|a| a.1).unwrap_or_default()
    };
    (
        of(node.accounts(TENANT_BLUE).await, "27710000001"),
        of(node.accounts(TENANT_GREEN).await, "27710000006"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_pay_is_paid_once_approved_and_a_rejected_or_lapsed_one_moves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, proxy) = proxied_node(dir.path(), &tenants_toml("", ""), None).await;

    // Received, listed for the payer, approved, paid.
    let (approved_id, approved) = request("27710000006", "10", 60_000);
    let (status, refusal) = send(&node, &approved).await;
    assert_eq!(status, 202, "{refusal}");
    let received = answer(&proxy, &approved_id, "", 1).await;
    assert_eq!(received["transactionRequestState"], "RECEIVED", "{received}");
    let transaction = received["transactionId"].as_str().expect("transactionId").to_owned();
    let listed = waiting(&node).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["transactionRequestId"], approved_id.as_str());
    assert_eq!(listed[0]["payeeFsp"], "bluebank");
    let (status, decided) = decide(&node, &transaction, &json!({ "decision": "APPROVE" })).await;
    assert_eq!(status, 200, "{decided}");
    let paid = node.wait_final(TENANT_GREEN, &transaction, Duration::from_secs(30)).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}");
    assert_eq!(paid["transactionRequestId"], approved_id.as_str(), "{paid}");
    assert_eq!(balances(&node).await, ("1010.00".into(), "990.00".into()));
    let accepted = answer(&proxy, &approved_id, "", 2).await;
    assert_eq!(accepted["transactionRequestState"], "ACCEPTED", "{accepted}");
    let recorded = proxy.recorded();
    let quote = sent_to(&recorded, "/switch/quotes")
        .into_iter()
        .map(body_of)
        .find(|q| q["transactionRequestId"] == approved_id.as_str())
        .expect("a quote naming the request");
    assert_eq!(quote["transactionType"]["initiator"], "PAYEE", "{quote}");
    assert_eq!(quote["transactionType"]["initiatorType"], "BUSINESS", "{quote}");
    assert_eq!(quote["payer"]["partyIdInfo"]["partyIdentifier"], "27710000006", "{quote}");
    assert!(waiting(&node).await.is_empty());
    // Decided already: 409. Resent: told where it stands, not paid twice.
    let (status, _) = decide(&node, &transaction, &json!({ "decision": "REJECT" })).await;
    assert_eq!(status, 409);
    send(&node, &approved).await;
    let again = answer(&proxy, &approved_id, "", 3).await;
    assert_eq!(again["transactionRequestState"], "ACCEPTED", "{again}");
    // Asked where it stands.
    let base = node.url("/fspiop/greenbank");
    let path = format!("/transactionRequests/{approved_id}");
    let (status, _) =
        fspiop_request(&node.http, &base, "GET", &path, "transactionRequests", None, "1.1").await;
    assert_eq!(status, 202);
    assert_eq!(answer(&proxy, &approved_id, "", 4).await["transactionRequestState"], "ACCEPTED");
    assert_eq!(balances(&node).await, ("1010.00".into(), "990.00".into()));

    // Rejected by the payer: bluebank is told, nothing moves.
    let (rejected_id, rejected) = request("27710000006", "20", 60_000);
    send(&node, &rejected).await;
    let received = answer(&proxy, &rejected_id, "", 1).await;
    let transaction = received["transactionId"].as_str().expect("transactionId").to_owned();
    let reason = json!({ "decision": "REJECT", "reason": "I bought nothing" });
    let (status, decided) = decide(&node, &transaction, &reason).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(answer(&proxy, &rejected_id, "", 2).await["transactionRequestState"], "REJECTED");
    let aborted = node.wait_final(TENANT_GREEN, &transaction, Duration::from_secs(10)).await;
    assert_eq!(aborted["transferState"], "ABORTED", "{aborted}");
    assert_eq!(aborted["error"]["code"], "4101", "{aborted}");

    // Never decided: it lapses at its expiration.
    let (lapsed_id, lapsed) = request("27710000006", "30", 1_500);
    send(&node, &lapsed).await;
    answer(&proxy, &lapsed_id, "", 1).await;
    let expired = answer(&proxy, &lapsed_id, "", 2).await;
    assert_eq!(expired["transactionRequestState"], "REJECTED", "{expired}");
    let transaction = expired["transactionId"].as_str().expect("transactionId").to_owned();
    let aborted = node.wait_final(TENANT_GREEN, &transaction, Duration::from_secs(10)).await;
    assert_eq!(aborted["error"]["code"], "3301", "{aborted}");
    assert_eq!(balances(&node).await, ("1010.00".into(), "990.00".into()));

    // Refused at once: an unknown payer (3204), an expired request (3301).
    let (unknown_id, unknown) = request("27719999999", "5", 60_000);
    send(&node, &unknown).await;
    assert_eq!(answer(&proxy, &unknown_id, "/error", 1).await["errorInformation"]["errorCode"], "3204");
    let (late_id, late) = request("27710000006", "5", -1_000);
    send(&node, &late).await;
    assert_eq!(answer(&proxy, &late_id, "/error", 1).await["errorInformation"]["errorCode"], "3301");
    // And synchronously: a request the payer initiated is no request to pay.
    let (_, mut payer_initiated) = request("27710000006", "5", 60_000);
    payer_initiated["transactionType"]["initiator"] = json!("PAYER");
    let (status, refusal) = send(&node, &payer_initiated).await;
    assert_eq!(status, 400, "{refusal}");
    assert_eq!(refusal["errorInformation"]["errorCode"], "3100", "{refusal}");
    assert!(waiting(&node).await.is_empty());

    // greenbank sent no request to be paid, so it has none to authorize.
    let path =
        format!("/authorizations/{approved_id}?authenticationType=OTP&retriesLeft=1&amount=10&currency=USD");
    let (status, _) = fspiop_request(&node.http, &base, "GET", &path, "authorizations", None, "1.1").await;
    assert_eq!(status, 202);
    let recorded = proxy
        .wait_for("the authorization refusal", |r| {
            !answers(r, "authorizations", &approved_id, "/error").is_empty()
        })
        .await;
    let refusal = body_of(answers(&recorded, "authorizations", &approved_id, "/error")[0]);
    assert_eq!(refusal["errorInformation"]["errorCode"], "3206", "{refusal}");
    assert_eq!(balances(&node).await, ("1010.00".into(), "990.00".into()));
}

/// Waiting requests to pay have their own limit and do not count towards
/// the payments in flight: with room for 2 payments and 3 waiting
/// requests, 3 waiting requests leave payments their room, and a 4th
/// request is refused (2003).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_to_pay_have_their_own_limit_and_never_crowd_out_payments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = format!("[flow]\nin_flight_max = 2\nrequests_awaiting_max = 3\n\n{}", tenants_toml("", ""));
    let (node, proxy) = proxied_node(dir.path(), &limits, None).await;
    for _ in 0..3 {
        let (id, body) = request("27710000006", "1", 60_000);
        send(&node, &body).await;
        answer(&proxy, &id, "", 1).await;
    }
    // The count of waiting requests is taken every second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(waiting(&node).await.len(), 3);
    let body = crate::node::transfer_body("27710000006", "27710000001", "1.00", "USD");
    let paid = node.pay(TENANT_GREEN, "room-for-payments", &body).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}");
    let (id, fourth) = request("27710000006", "1", 60_000);
    send(&node, &fourth).await;
    let refused = answer(&proxy, &id, "/error", 1).await;
    assert_eq!(refused["errorInformation"]["errorCode"], "2003", "{refused}");
    assert_eq!(waiting(&node).await.len(), 3);
    // The limit holds for the requests the tenants' customers send too.
    let response = node
        .http
        .post(node.url("/channel/transactionRequest"))
        .header("Platform-TenantId", TENANT_BLUE)
        .header("X-CorrelationID", "one-request-too-many")
        .json(&json!({
            "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000006" } },
            "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001" } },
            "amount": { "amount": "1", "currency": "USD" },
        }))
        .send()
        .await
        .expect("POST /channel/transactionRequest");
    assert_eq!(response.status().as_u16(), 503);
    let problem: Value = response.json().await.expect("problem details");
    assert!(
        problem["detail"].as_str().is_some_and(|d| d.contains("flow.requests_awaiting_max")),
        "{problem}"
    );
}
