//! Every FSPIOP message payhub sends, checked against the FSPIOP v1.1
//! OpenAPI file itself (`../shared/reference/mojaloop/`): a node's
//! `switch_url` is a recording proxy in front of its switch simulator, so
//! each request and callback its tenants send (as payer and as payee,
//! business errors included) is captured as it went on the wire, then
//! validated by `connectors/tests/interop/openapi.js` (openapi-backend, the
//! validator Mojaloop's Testing Toolkit uses): headers, path and body.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::bulk::{ask, individual_quote};
use crate::fspiop::{fspiop_request, proxied_node, quote_body, sent_to, tenants_toml};
use crate::node::{transfer_body, Node, TENANT_BLUE};

/// bluebank's merchant 27710000001 asks greenbank's 27710000006 for
/// `amount` USD, approved as `authentication` says; the request's transaction.
async fn ask_to_pay(node: &Node, amount: &str, authentication: Option<&str>) -> String {
    let mut body = crate::request_to_pay_sent::request("27710000006", amount);
    if let Some(authentication) = authentication {
        body["authenticationType"] = json!(authentication);
    }
    let asked = node
        .http
        .post(node.url("/channel/transactionRequest"))
        .header("Platform-TenantId", TENANT_BLUE)
        .json(&body)
        .send()
        .await
        .expect("POST /channel/transactionRequest");
    assert_eq!(asked.status(), 200);
    let asked: Value = asked.json().await.expect("JSON");
    asked["transactionId"].as_str().expect("transactionId").to_owned()
}

fn spec() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/mojaloop/fspiop-rest-v1.1-openapi3-snippets.yaml");
    assert!(path.exists(), "the FSPIOP OpenAPI file is missing: {}", path.display());
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_payhub_sends_is_valid_by_the_fspiop_openapi_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The demo tenants, greenbank with a savings account (a sub-id).
    let (node, proxy) = proxied_node(dir.path(), &tenants_toml("", ""), None).await;

    // A payment: lookup, quote and transfer requests as payer, their
    // callbacks as payee.
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let transfer = node.pay(TENANT_BLUE, "openapi-1", &body).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");
    // An operator asks greenbank about it: GET /transactions as payer.
    let id = transfer["transactionId"].as_str().expect("transactionId");
    let asked = node
        .http
        .get(node.url(&format!("/operator/transactions/{id}/payee")))
        .header("Platform-TenantId", TENANT_BLUE)
        .send()
        .await
        .expect("GET /operator/transactions/{id}/payee");
    assert_eq!(asked.status(), 200, "{}", asked.text().await.unwrap_or_default());
    // And one to greenbank's savings account: a lookup with a sub-id.
    let mut body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    body["payee"]["partyIdInfo"]["partySubIdOrType"] = "savings".into();
    let transfer = node.pay(TENANT_BLUE, "openapi-2", &body).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");

    // The payee's answers to GETs and its error callbacks, in 1.1 and 1.0.
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
    for (path, resource) in
        [(format!("/quotes/{quote_id}"), "quotes"), ("/parties/MSISDN/27710000006".into(), "parties")]
    {
        let (status, answer) = fspiop_request(&node.http, &base, "GET", &path, resource, None, "1.0").await;
        assert_eq!(status / 100, 2, "GET {path}: {answer}");
    }
    let unknown = [
        (format!("/quotes/{}", uuid::Uuid::new_v4()), "quotes"),
        (format!("/transfers/{}", uuid::Uuid::new_v4()), "transfers"),
        ("/parties/MSISDN/27719999999".into(), "parties"),
        ("/parties/MSISDN/27710000006/current".into(), "parties"),
    ];
    for (path, resource) in unknown {
        let (status, answer) = fspiop_request(&node.http, &base, "GET", &path, resource, None, "1.1").await;
        assert_eq!(status / 100, 2, "GET {path}: {answer}");
    }
    // The oracle: a registration, a lookup and a removal.
    for (method, tenant) in [("POST", "greenbank"), ("GET", "bluebank"), ("DELETE", "greenbank")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = node
            .http
            .request(method.clone(), node.url("/oracle/MSISDN/27719990000"))
            .header("Platform-TenantId", tenant)
            .send()
            .await
            .expect("oracle request");
        assert_eq!(response.status(), 200, "{method} /oracle: {}", response.text().await.unwrap_or_default());
    }
    // The payee's view of the paid transaction, and of an unknown one.
    let paid = proxy
        .recorded()
        .iter()
        .find(|m| m["method"] == "POST" && m["path"] == "/switch/quotes")
        .map(|m| crate::fspiop::body_of(m)["transactionId"].as_str().expect("transactionId").to_owned())
        .expect("bluebank asked for a quote");
    for id in [paid.clone(), uuid::Uuid::new_v4().to_string()] {
        let path = format!("/transactions/{id}");
        let (status, answer) =
            fspiop_request(&node.http, &base, "GET", &path, "transactions", None, "1.1").await;
        assert_eq!(status, 202, "GET {path}: {answer}");
    }
    let euro = quote_body(&uuid::Uuid::new_v4().to_string(), "5", "EUR");
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/quotes", "quotes", Some(&euro), "1.1").await;
    assert_eq!(status, 202, "{answer}");

    // Bulk: a quote of two items (greenbank cannot serve one), the transfer
    // of the one it quoted, an expired bulk transfer, an unknown bulk quote.
    let bulk_quote_id = uuid::Uuid::new_v4().to_string();
    let bulk_quote = json!({
        "bulkQuoteId": bulk_quote_id,
        "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" } },
        "individualQuotes": [individual_quote("7", "27710000006"), individual_quote("7", "27719999999")],
    });
    let (_, quoted) = ask(&node, &proxy, "bulkQuotes", &bulk_quote_id, &bulk_quote).await;
    let item = &quoted["individualQuoteResults"][0];
    let bulk_transfer = |id: &str, expiration: &str| {
        json!({
            "bulkTransferId": id, "bulkQuoteId": bulk_quote_id, "payerFsp": "bluebank", "payeeFsp": "greenbank",
            "individualTransfers": [{ "transferId": uuid::Uuid::new_v4().to_string(),
              "transferAmount": item["transferAmount"], "ilpPacket": item["ilpPacket"], "condition": item["condition"] }],
            "expiration": expiration,
        })
    };
    let later = connectors::fspiop::headers::timestamp(
        u64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_millis(),
        )
        .expect("milliseconds")
            + 60_000,
    );
    for expiration in [later.as_str(), "2020-01-01T00:00:00.000Z"] {
        let id = uuid::Uuid::new_v4().to_string();
        ask(&node, &proxy, "bulkTransfers", &id, &bulk_transfer(&id, expiration)).await;
    }
    let unknown = uuid::Uuid::new_v4();
    let (status, answer) = fspiop_request(
        &node.http,
        &base,
        "GET",
        &format!("/bulkQuotes/{unknown}"),
        "bulkQuotes",
        None,
        "1.1",
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    proxy
        .wait_for("the unknown bulk quote's error", |sent| {
            !sent_to(sent, &format!("/bulkQuotes/{unknown}/error")).is_empty()
        })
        .await;

    // A request to pay greenbank's customer approves and pays (RECEIVED,
    // ACCEPTED, a quote naming the request), one for a payer greenbank does
    // not have is refused, and greenbank has no request to authorize.
    let request = |payer: &str| crate::request_to_pay::request(payer, "3", 60_000).1;
    let (to_pay, refused) = (request("27710000006"), request("27719999999"));
    for body in [&to_pay, &refused] {
        let (status, answer) = fspiop_request(
            &node.http,
            &base,
            "POST",
            "/transactionRequests",
            "transactionRequests",
            Some(body),
            "1.1",
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    }
    let paid_id = to_pay["transactionRequestId"].as_str().expect("id").to_owned();
    let received = proxy
        .wait_for("greenbank's RECEIVED", |sent| {
            !sent_to(sent, &format!("/transactionRequests/{paid_id}")).is_empty()
        })
        .await;
    let received = crate::fspiop::body_of(sent_to(&received, &format!("/transactionRequests/{paid_id}"))[0]);
    let transaction = received["transactionId"].as_str().expect("transactionId").to_owned();
    let approved = node
        .http
        .post(node.url(&format!("/channel/requests/{transaction}/decision")))
        .header("Platform-TenantId", "greenbank")
        .json(&json!({ "decision": "APPROVE" }))
        .send()
        .await
        .expect("approve");
    assert_eq!(approved.status(), 200);
    let done = node.wait_final("greenbank", &transaction, std::time::Duration::from_secs(30)).await;
    assert_eq!(done["transferState"], "COMMITTED", "{done}");
    let refused_id = refused["transactionRequestId"].as_str().expect("id").to_owned();
    let path =
        format!("/authorizations/{paid_id}?authenticationType=OTP&retriesLeft=3&amount=3&currency=USD");
    let (status, answer) =
        fspiop_request(&node.http, &base, "GET", &path, "authorizations", None, "1.1").await;
    assert_eq!(status, 202, "{answer}");
    proxy
        .wait_for("the refusals of the request and of the authorization", |sent| {
            !sent_to(sent, &format!("/transactionRequests/{refused_id}/error")).is_empty()
                && !sent_to(sent, &format!("/authorizations/{paid_id}/error")).is_empty()
        })
        .await;

    // bluebank's merchant asks greenbank's customer to pay: bluebank sends
    // the request to pay (and greenbank answers it RECEIVED).
    let asked = ask_to_pay(&node, "4", None).await;
    proxy
        .wait_for("bluebank's request to pay and greenbank's answer", |sent| {
            !sent_to(sent, "/transactionRequests").is_empty()
                && !sent_to(sent, &format!("/transactionRequests/{asked}")).is_empty()
        })
        .await;

    // One approved by the payer's password: greenbank asks bluebank to have
    // it entered (GET /authorizations), bluebank returns what was entered
    // (PUT /authorizations).
    let by_password = ask_to_pay(&node, "5", Some("OTP")).await;
    // (Asked once bluebank's request shows it: the proxy records greenbank's
    // GET before the switch passes it on.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let request: Value = node
            .http
            .get(node.url(&format!("/channel/transactionRequest/{by_password}")))
            .header("Platform-TenantId", TENANT_BLUE)
            .send()
            .await
            .expect("GET /channel/transactionRequest")
            .json()
            .await
            .expect("JSON");
        if request["phase"] == "AWAITING_AUTHORIZATION" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the password was never asked: {request}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let entered = node
        .http
        .post(node.url(&format!("/channel/transactionRequest/{by_password}/authorization")))
        .header("Platform-TenantId", TENANT_BLUE)
        .json(&json!({ "response": "ENTERED", "otp": "123456" }))
        .send()
        .await
        .expect("POST authorization");
    assert_eq!(entered.status(), 200);
    proxy
        .wait_for("bluebank's answer with the password", |sent| {
            sent_to(sent, &format!("/authorizations/{by_password}")).iter().any(|m| m["method"] == "PUT")
        })
        .await;

    // What went to the switch, once it has all arrived: the three error
    // callbacks last.
    let sent = proxy.wait_for("every error callback", |sent| sent_to(sent, "/error").len() >= 5).await;
    // (greenbank answers the operator's question about it too.)
    let view: Vec<_> = sent_to(&sent, &format!("/transactions/{paid}"))
        .into_iter()
        .filter(|m| m["method"] == "PUT")
        .collect();
    assert!(!view.is_empty(), "{sent:#?}");
    let view = crate::fspiop::body_of(view[0]);
    assert_eq!(view["transactionState"], "COMPLETED", "{view}");
    let messages: Vec<Value> = sent
        .iter()
        .map(|m| {
            let mut m = m.clone();
            let path = m["path"].as_str().expect("path").trim_start_matches("/switch").to_owned();
            m["path"] = path.into();
            m
        })
        .collect();
    let verdicts = crate::npm::reference("openapi.js", &json!({ "spec": spec(), "messages": messages }));
    let verdicts = verdicts.as_array().expect("one verdict per message");
    assert_eq!(verdicts.len(), messages.len());
    // The file's `GET /authorizations/{ID}` declares no query parameters,
    // although its own description (and the API definition, section
    // 6.6.3.1) requires four: those four alone are let through.
    let documented_query = |verdict: &Value, error: &Value| {
        verdict["operation"] == "AuthorizationsByIDGet"
            && ["authenticationType", "retriesLeft", "amount", "currency"].iter().any(|name| {
                error.as_str() == Some(&format!("query: must NOT have additional properties '{name}'"))
            })
    };
    let invalid: Vec<String> = messages
        .iter()
        .zip(verdicts)
        .filter_map(|(message, verdict)| {
            let errors: Vec<&Value> = match verdict["errors"].as_array() {
                Some(errors) => errors.iter().filter(|e| !documented_query(verdict, e)).collect(),
                None => {
                    return Some(format!(
                        "{} {}: no verdict\n  {message}",
                        message["method"], message["path"]
                    ))
                }
            };
            (!errors.is_empty())
                .then(|| format!("{} {}: {errors:?}\n  {message}", message["method"], message["path"]))
        })
        .collect();
    assert!(invalid.is_empty(), "messages the FSPIOP v1.1 OpenAPI file refuses:\n{}", invalid.join("\n"));

    // And the check saw each kind of message this test makes payhub send.
    let operations: BTreeSet<&str> = verdicts.iter().filter_map(|v| v["operation"].as_str()).collect();
    for expected in [
        "PartiesByTypeAndID",
        "PartiesByTypeAndID2",
        "PartiesErrorByTypeAndID",
        "PartiesSubIdByTypeAndID",
        "PartiesSubIdByTypeAndIDPut",
        "PartiesSubIdErrorByTypeAndID",
        "Quotes",
        "QuotesByID1",
        "QuotesByIDAndError",
        "transfers",
        "TransfersByIDPut",
        "TransfersByIDAndError",
        "TransactionsByID",
        "TransactionsByID1",
        "TransactionsErrorByID",
        "ParticipantsByIDAndType",
        "ParticipantsByTypeAndID",
        "ParticipantsByTypeAndID2",
        "BulkQuotesByID1",
        "BulkQuotesErrorByID",
        "BulkTransfersByIDPut",
        "BulkTransfersErrorByID",
        "TransactionRequests",
        "TransactionRequestsByIDPut",
        "TransactionRequestsErrorByID",
        "AuthorizationsByIDGet",
        "AuthorizationsByIDPut",
        "AuthorizationsByIDAndError",
    ] {
        assert!(operations.contains(expected), "no {expected} message was checked: {operations:?}");
    }
}

/// Every leaf of `value` by JSON path (objects by key, arrays by index).
fn leaves(value: &Value, path: Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let mut at = path.clone();
                at.push(PathStep::Key(key.clone()));
                out.push(at.clone());
                leaves(child, at, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let mut at = path.clone();
                at.push(PathStep::Index(i));
                leaves(child, at, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

/// `value` with the element at `path` replaced (`Some`) or removed (`None`).
fn mutated(value: &Value, path: &[PathStep], replacement: Option<Value>) -> Value {
    let mut copy = value.clone();
    let mut at = &mut copy;
    for step in &path[..path.len() - 1] {
        at = match step {
            PathStep::Key(key) => &mut at[key.as_str()],
            PathStep::Index(i) => &mut at[*i],
        };
    }
    match (path.last(), replacement) {
        (Some(PathStep::Key(key)), Some(v)) => at[key.as_str()] = v,
        (Some(PathStep::Key(key)), None) => {
            at.as_object_mut().map(|o| o.remove(key));
        }
        (Some(PathStep::Index(i)), Some(v)) => at[*i] = v,
        (Some(PathStep::Index(i)), None) => {
            at.as_array_mut().map(|a| a.remove(*i));
        }
        (None, _) => {}
    }
    copy
}

/// Payhub's inbound validation and the FSPIOP v1.1 OpenAPI file (judged by
/// openapi-backend) agree on every message: the well-formed ones of each
/// kind payhub receives, and hundreds of variants with one element removed,
/// emptied, of the wrong JSON type, too long, or breaking its pattern.
/// Payhub refuses what the file refuses, synchronously, with 3102 for a
/// missing element and 3100 or 3101 otherwise, and lets through what the
/// file allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payhubs_inbound_validation_agrees_with_the_fspiop_openapi_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node")).await;
    let base = node.url("/fspiop/greenbank");
    let id = || uuid::Uuid::new_v4().to_string();
    let packet = "AYIBgQAAAAAAAASwNGxldmVsb25lLmRmc3AxLm1lci45T2RTOF81MDdqUUZERmZlakgyOVc4bXFmNEpLMHlGTFGCAUBQU0svMS4wCk5vbmNlOiB1SXlweUYzY3pYSXBFdzVVc05TYWh3CkVuY3J5cHRpb246IG5vbmUKUGF5bWVudC1JZDogMTMyMzZhM2ItOGZhOC00MTYzLTg0NDctNGMzZWQzZGE5OGE3CgpDb250ZW50LUxlbmd0aDogMTM1CkNvbnRlbnQtVHlwZTogYXBwbGljYXRpb24vanNvbgpTZW5kZXItSWRlbnRpZmllcjogOTI4MDYzOTEKCiJ7XCJmZWVcIjowLFwidHJhbnNmZXJDb2RlXCI6XCJpbnZvaWNlXCIsXCJkZWJpdE5hbWVcIjpcImFsaWNlIGNvb3BlclwiLFwiY3JlZGl0TmFtZVwiOlwibWVyIGNoYW50XCIsXCJkZWJpdElkZW50aWZpZXJcIjpcIjkyODA2MzkxXCJ9IgA";
    let condition = "f5sqb7tBTWPd5Y8BDFdMm9BJR_MNI4isf8p8n4D5pHA";
    let later = connectors::fspiop::headers::timestamp(
        u64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis(),
        )
        .expect("ms")
            + 60_000,
    );
    let mut quote = quote_body(&id(), "5", "USD");
    quote["note"] = "a note".into();
    quote["payer"]["personalInfo"] =
        json!({ "complexName": { "firstName": "Ada", "lastName": "Lovelace" }, "dateOfBirth": "1984-01-01" });
    quote["payer"]["partyIdInfo"]["extensionList"] = json!({ "extension": [{ "key": "k", "value": "v" }] });
    let money = json!({ "amount": "5", "currency": "USD" });
    // (method, path, resource, valid body)
    let kinds: Vec<(&str, String, &str, Value)> = vec![
        ("POST", "/quotes".into(), "quotes", quote),
        (
            "PUT",
            format!("/quotes/{}", id()),
            "quotes",
            json!({
            "transferAmount": money, "payeeFspFee": { "amount": "0", "currency": "USD" },
            "expiration": later, "ilpPacket": packet, "condition": condition }),
        ),
        (
            "POST",
            "/transfers".into(),
            "transfers",
            json!({
            "transferId": id(), "payerFsp": "bluebank", "payeeFsp": "greenbank", "amount": money,
            "ilpPacket": packet, "condition": condition, "expiration": later }),
        ),
        (
            "PUT",
            format!("/transfers/{}", id()),
            "transfers",
            json!({
            "fulfilment": "WLctttbu2HvTsa1XWvUoGRcQQ2ZKfc3ApWg-yRYqJwk", "completedTimestamp": later, "transferState": "COMMITTED" }),
        ),
        (
            "PUT",
            "/parties/MSISDN/27710000001".into(),
            "parties",
            json!({
            "party": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" }, "name": "Ada" } }),
        ),
        ("PUT", "/participants/MSISDN/27710000001".into(), "participants", json!({ "fspId": "bluebank" })),
        (
            "PUT",
            format!("/transactions/{}", id()),
            "transactions",
            json!({ "completedTimestamp": later, "transactionState": "COMPLETED", "code": "Ab12" }),
        ),
        (
            "POST",
            "/transactionRequests".into(),
            "transactionRequests",
            json!({
            "transactionRequestId": id(),
            "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" } },
            "payer": { "partyIdType": "MSISDN", "partyIdentifier": "27710000006", "fspId": "greenbank" },
            "amount": money, "authenticationType": "OTP", "expiration": later,
            "transactionType": { "scenario": "PAYMENT", "initiator": "PAYEE", "initiatorType": "BUSINESS" } }),
        ),
        (
            "PUT",
            format!("/transactionRequests/{}", id()),
            "transactionRequests",
            json!({ "transactionId": id(), "transactionRequestState": "ACCEPTED" }),
        ),
        (
            "PUT",
            format!("/authorizations/{}", id()),
            "authorizations",
            json!({ "authenticationInfo": { "authentication": "OTP", "authenticationValue": "1234" }, "responseType": "ENTERED" }),
        ),
        (
            "POST",
            "/bulkQuotes".into(),
            "bulkQuotes",
            json!({
            "bulkQuoteId": id(),
            "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" } },
            "expiration": later,
            "individualQuotes": [{
                "quoteId": id(), "transactionId": id(), "amountType": "SEND", "amount": money,
                "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000006", "fspId": "greenbank" } },
                "transactionType": { "scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER" } }] }),
        ),
        (
            "POST",
            "/bulkTransfers".into(),
            "bulkTransfers",
            json!({
            "bulkTransferId": id(), "bulkQuoteId": id(), "payerFsp": "bluebank", "payeeFsp": "greenbank",
            "expiration": later,
            "individualTransfers": [{ "transferId": id(), "transferAmount": money, "ilpPacket": packet, "condition": condition }] }),
        ),
        (
            "PUT",
            format!("/quotes/{}/error", id()),
            "quotes",
            json!({
            "errorInformation": { "errorCode": "3204", "errorDescription": "not found",
                "extensionList": { "extension": [{ "key": "k", "value": "v" }] } } }),
        ),
    ];
    let replacements = |leaf: &Value| -> Vec<Option<Value>> {
        let mut all = vec![None, Some(json!("")), Some(json!(7)), Some(json!("x".repeat(200)))];
        if leaf.is_string() {
            all.extend(
                [
                    "10.50",
                    "01",
                    "1.23456",
                    "-1",
                    "usd",
                    "ABC",
                    "2026-11-24T13:00:00Z",
                    "2026-02-30T13:00:00.000Z",
                    "B51EC534-EE48-4575-B6A9-EAD2955B8069",
                    "DONE",
                    "0123",
                    "f5sqb7tBTWPd5Y8BDFdMm9BJR_MNI4isf8p8n4D5pH+",
                ]
                .map(|s| Some(json!(s))),
            );
        }
        all
    };
    let mut cases: Vec<(&str, String, &str, Value)> = Vec::new();
    for (method, path, resource, body) in &kinds {
        cases.push((method, path.clone(), resource, body.clone()));
        let mut paths = Vec::new();
        leaves(body, Vec::new(), &mut paths);
        for at in paths {
            let mut leaf = body;
            for step in &at {
                leaf = match step {
                    PathStep::Key(key) => &leaf[key.as_str()],
                    PathStep::Index(i) => &leaf[*i],
                };
            }
            for replacement in replacements(leaf) {
                cases.push((method, path.clone(), resource, mutated(body, &at, replacement)));
            }
        }
    }

    // The file's verdicts, in one run.
    let messages: Vec<Value> = cases
        .iter()
        .map(|(method, path, resource, body)| {
            json!({
                "method": method, "path": path, "body": body.to_string(),
                "headers": {
                    "content-type": format!("application/vnd.interoperability.{resource}+json;version=1.1"),
                    "accept": format!("application/vnd.interoperability.{resource}+json;version=1"),
                    "date": connectors::fspiop::headers::date_now(),
                    "fspiop-source": "bluebank", "fspiop-destination": "greenbank",
                },
            })
        })
        .collect();
    let verdicts = crate::npm::reference("openapi.js", &json!({ "spec": spec(), "messages": messages }));
    let verdicts = verdicts.as_array().expect("one verdict per message");
    assert_eq!(verdicts.len(), cases.len());

    let mut disagreements = Vec::new();
    let mut refused = 0;
    for ((method, path, resource, body), verdict) in cases.iter().zip(verdicts) {
        let errors = verdict["errors"].as_array().expect("errors");
        let (status, answer) =
            fspiop_request(&node.http, &base, method, path, resource, Some(body), "1.1").await;
        let code = answer["errorInformation"]["errorCode"].as_str().unwrap_or_default();
        let payhub_refused = status == 400 && matches!(code, "3100" | "3101" | "3102");
        // Its refusal is itself a valid FSPIOP error body.
        if let Err(violation) =
            connectors::fspiop::schema::check(connectors::fspiop::schema::Message::Error, &answer)
        {
            assert!(!payhub_refused, "payhub's refusal breaks the model ({violation}): {answer}");
        }
        refused += usize::from(payhub_refused);
        let missing =
            errors.iter().any(|e| e.as_str().is_some_and(|e| e.contains("must have required property")));
        let agree = match (errors.is_empty(), payhub_refused) {
            (true, false) => true,
            // A missing element is 3102, whatever else is wrong.
            (false, true) => !missing || code == "3102",
            _ => false,
        };
        if !agree {
            disagreements
                .push(format!("{method} {path} {body}\n  file: {errors:?}\n  payhub: {status} {answer}"));
        }
    }
    assert!(
        cases.len() > 200 && refused > 100,
        "{} cases, {refused} refused: the variants do not vary",
        cases.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}
