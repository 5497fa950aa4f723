//! FSPIOP negative tests end to end: what a broken or hostile peer sends
//! gets the synchronous error or the error callback the API Definition
//! names, and changes nothing: no answer is stored, no money moves. (A bad
//! or missing signature: `jws.rs` and `mtls.rs`.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::fspiop::{body_of, fspiop_request, fspiop_send, proxied_node, quote_body, sent_to, Rewrite};
use crate::node::{transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit")
}

fn error_code(answer: &Value) -> &str {
    answer["errorInformation"]["errorCode"].as_str().unwrap_or_default()
}

/// `(balance, reserved, incoming)` of an account.
async fn account(node: &Node, tenant: &str, msisdn: &str) -> (String, String, String) {
    let accounts = node.accounts(tenant).await;
    let (_, balance, reserved, incoming) =
        accounts.into_iter().find(|(id, ..)| id == msisdn).expect("the demo account exists");
    (balance, reserved, incoming)
}

/// Polls until the account is `expected`.
async fn settles(node: &Node, tenant: &str, msisdn: &str, expected: (&str, &str, &str)) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = account(node, tenant, msisdn).await;
        if (now.0.as_str(), now.1.as_str(), now.2.as_str()) == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{tenant} {msisdn} is {now:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_missing_header_a_wrong_version_and_a_malformed_body_are_refused_at_once_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, proxy) = proxied_node(dir.path(), "", None).await;
    let base = node.url("/fspiop/greenbank");
    let quote_id = uuid::Uuid::new_v4().to_string();
    let quote = serde_json::to_vec(&quote_body(&quote_id, "5", "USD")).expect("JSON");
    let post = |body: Vec<u8>, version: &'static str, omit: &'static [&'static str]| {
        let (http, base) = (node.http.clone(), base.clone());
        async move { fspiop_send(&http, &base, "POST", "/quotes", "quotes", Some(&body), version, omit).await }
    };

    const HEADERS: [&str; 4] = ["content-type", "date", "fspiop-source", "accept"];
    for (i, header) in HEADERS.iter().enumerate() {
        let (status, answer) = post(quote.clone(), "1.1", &HEADERS[i..=i]).await;
        assert_eq!((status, error_code(&answer)), (400, "3102"), "without {header}: {answer}");
        let description = answer["errorInformation"]["errorDescription"].as_str().unwrap_or_default();
        assert!(description.to_lowercase().contains(header), "3102 does not name {header}: {answer}");
    }
    let (status, answer) = post(quote.clone(), "2.0", &[]).await;
    assert_eq!((status, error_code(&answer)), (406, "3001"), "version 2.0: {answer}");
    // The supported versions, as API Definition 3.3.4.3 lists them: the
    // major as key, the minor as value.
    let versions = &answer["errorInformation"]["extensionList"]["extension"];
    assert!(versions.as_array().is_some_and(|v| v.contains(&json!({"key": "1", "value": "1"}))), "{answer}");

    let (status, answer) = post(br#"{"quoteId": "#.to_vec(), "1.1", &[]).await;
    assert_eq!((status, error_code(&answer)), (400, "3101"), "malformed JSON: {answer}");
    let mut no_amount = quote_body(&quote_id, "5", "USD");
    no_amount.as_object_mut().expect("object").remove("amount");
    let (status, answer) = post(serde_json::to_vec(&no_amount).expect("JSON"), "1.1", &[]).await;
    assert_eq!((status, error_code(&answer)), (400, "3102"), "no amount: {answer}");
    assert!(answer.to_string().contains("amount"), "3102 does not name the element: {answer}");

    // Nothing was answered, nor stored: the same quote id, now well formed,
    // is a new quote (no 3106 "modified request"), answered in the 1.1 it
    // asks for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.recorded().is_empty(), "a refused request was answered: {:#?}", proxy.recorded());
    let (status, answer) = post(quote.clone(), "1.1", &[]).await;
    assert_eq!(status, 202, "{answer}");
    let sent =
        proxy.wait_for("the quote", |sent| !sent_to(sent, &format!("/quotes/{quote_id}")).is_empty()).await;
    let callback = sent_to(&sent, &format!("/quotes/{quote_id}"))[0];
    assert_eq!(callback["method"], "PUT");
    assert_eq!(
        callback["headers"]["content-type"],
        "application/vnd.interoperability.quotes+json;version=1.1"
    );
    assert!(body_of(callback)["ilpPacket"].is_string(), "{callback}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_on_an_expired_quote_gets_3302_and_credits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, proxy) = proxied_node(dir.path(), "[flow]\nquote_expiry_ms = 1000\n", None).await;
    let base = node.url("/fspiop/greenbank");
    let quote_id = uuid::Uuid::new_v4().to_string();
    let (status, answer) = fspiop_request(
        &node.http,
        &base,
        "POST",
        "/quotes",
        "quotes",
        Some(&quote_body(&quote_id, "5", "USD")),
        "1.1",
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let path = format!("/quotes/{quote_id}");
    let sent = proxy.wait_for("the quote", |sent| !sent_to(sent, &path).is_empty()).await;
    let quote = body_of(sent_to(&sent, &path)[0]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let transfer_id = uuid::Uuid::new_v4().to_string();
    let transfer = json!({
        "transferId": transfer_id,
        "payerFsp": "bluebank",
        "payeeFsp": "greenbank",
        "amount": quote["transferAmount"],
        "ilpPacket": quote["ilpPacket"],
        "condition": quote["condition"],
        "expiration": connectors::fspiop::headers::timestamp(now_ms() + 60_000),
    });
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/transfers", "transfers", Some(&transfer), "1.1").await;
    assert_eq!(status, 202, "{answer}");
    let path = format!("/transfers/{transfer_id}/error");
    let sent = proxy.wait_for("the transfer's error callback", |sent| !sent_to(sent, &path).is_empty()).await;
    let error = body_of(sent_to(&sent, &path)[0]);
    assert_eq!(error_code(&error), "3302", "{error}");
    assert!(
        sent_to(&sent, &format!("/transfers/{transfer_id}")).is_empty(),
        "the transfer was also answered"
    );
    settles(&node, TENANT_GREEN, "27710000006", ("1000.00", "0.00", "0.00")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fulfilment_aborts_the_payment_and_moves_no_money() {
    let dir = tempfile::tempdir().expect("tempdir");
    // greenbank's fulfilment is replaced on its way to the switch.
    let forge: Rewrite = std::sync::Arc::new(|_: &str, path: &str, body: Vec<u8>| {
        let fulfilled = path.starts_with("/switch/transfers/") && !path.ends_with("/error");
        match serde_json::from_slice::<Value>(&body) {
            Ok(mut put) if fulfilled && put.get("fulfilment").is_some() => {
                put["fulfilment"] = "WLctttbu2HvTsa1XWvUoGRcQQ2ZKfc3ApWg-yRYqJwk".into();
                Some(serde_json::to_vec(&put).expect("JSON"))
            }
            _ => Some(body),
        }
    });
    let (node, proxy) = proxied_node(dir.path(), "", Some(forge)).await;
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let transfer = node.pay(TENANT_BLUE, "forged-1", &body).await;
    assert_eq!(transfer["transferState"], "ABORTED", "{transfer}");
    assert!(
        proxy.recorded().iter().any(|m| m["method"] == "PUT" && body_of(m)["fulfilment"].is_string()),
        "the payee never sent a fulfilment"
    );
    settles(&node, TENANT_BLUE, "27710000001", ("1000.00", "0.00", "0.00")).await;
    settles(&node, TENANT_GREEN, "27710000006", ("1000.00", "0.00", "0.00")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_transfer_is_answered_as_before_and_credits_once_and_a_modified_one_gets_3106() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, proxy) = proxied_node(dir.path(), "", None).await;
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let transfer = node.pay(TENANT_BLUE, "replayed-1", &body).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");
    settles(&node, TENANT_GREEN, "27710000006", ("1010.00", "0.00", "0.00")).await;

    // bluebank's POST /transfers, as it went to the switch, replayed to
    // greenbank as the switch delivered it.
    let sent = proxy.recorded();
    let post = sent
        .iter()
        .find(|m| m["method"] == "POST" && m["path"] == "/switch/transfers")
        .expect("bluebank sent POST /transfers");
    let transfer_id = body_of(post)["transferId"].as_str().expect("transferId").to_owned();
    let answer_path = format!("/transfers/{transfer_id}");
    let first = body_of(sent_to(&sent, &answer_path)[0]);
    let replay = post["body"].as_str().expect("body").as_bytes().to_vec();
    let base = node.url("/fspiop/greenbank");
    let (status, answer) =
        fspiop_send(&node.http, &base, "POST", "/transfers", "transfers", Some(&replay), "1.1", &[]).await;
    assert_eq!(status, 202, "{answer}");
    let sent = proxy.wait_for("the replay's answer", |sent| sent_to(sent, &answer_path).len() >= 2).await;
    let again = body_of(sent_to(&sent, &answer_path)[1]);
    assert_eq!(
        again["fulfilment"], first["fulfilment"],
        "a replay got another answer: {again} after {first}"
    );

    // The same id with another amount: 3106, and still nothing moves.
    let modified = String::from_utf8(replay)
        .expect("UTF-8")
        .replace("\"10.00\"", "\"99.00\"")
        .replace("\"10\"", "\"99\"");
    let (status, answer) = fspiop_send(
        &node.http,
        &base,
        "POST",
        "/transfers",
        "transfers",
        Some(modified.as_bytes()),
        "1.1",
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let error_path = format!("/transfers/{transfer_id}/error");
    let sent = proxy.wait_for("the 3106 callback", |sent| !sent_to(sent, &error_path).is_empty()).await;
    assert_eq!(error_code(&body_of(sent_to(&sent, &error_path)[0])), "3106");
    tokio::time::sleep(Duration::from_millis(300)).await;
    settles(&node, TENANT_GREEN, "27710000006", ("1010.00", "0.00", "0.00")).await;
    settles(&node, TENANT_BLUE, "27710000001", ("990.00", "0.00", "0.00")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_or_headers_beyond_the_apis_limits_get_3104_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, proxy) = proxied_node(dir.path(), "", None).await;
    let base = node.url("/fspiop/greenbank");
    let quote_id = uuid::Uuid::new_v4().to_string();
    // 5 MB and one byte of body: a valid quote padded with an element the
    // model does not name.
    let mut quote = quote_body(&quote_id, "5", "USD");
    quote["padding"] = "x".repeat(5_242_880).into();
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/quotes", "quotes", Some(&quote), "1.1").await;
    assert_eq!((status, error_code(&answer)), (413, "3104"), "{answer}");
    // Under the limit (and over the node's own 64 KiB for other routes): fine.
    quote["padding"] = "x".repeat(1_000_000).into();
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/quotes", "quotes", Some(&quote), "1.1").await;
    assert_eq!(status, 202, "{answer}");
    // 64 KiB of headers and more.
    let response = node
        .http
        .post(format!("{base}/quotes"))
        .header("content-type", "application/vnd.interoperability.quotes+json;version=1.1")
        .header("x-padding", "x".repeat(65_536))
        .body(serde_json::to_vec(&quote_body(&uuid::Uuid::new_v4().to_string(), "5", "USD")).expect("JSON"))
        .send()
        .await
        .expect("POST /quotes");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!((status, error_code(&answer)), (431, "3104"), "{answer}");
    // Only the quote within the limits was answered.
    let sent =
        proxy.wait_for("the quote", |sent| !sent_to(sent, &format!("/quotes/{quote_id}")).is_empty()).await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
}
