//! Every FSPIOP message payhub sends, checked against the FSPIOP v1.1
//! OpenAPI file itself (`../shared/reference/mojaloop/`): a node's
//! `switch_url` is a recording proxy in front of its switch simulator, so
//! each request and callback its tenants send (as payer and as payee,
//! business errors included) is captured as it went on the wire, then
//! validated by `connectors/tests/interop/openapi.js` (openapi-backend, the
//! validator Mojaloop's Testing Toolkit uses): headers, path and body.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::fspiop::{fspiop_request, quote_body, sent_to, Proxy};
use crate::node::{free_port, transfer_body, Node, TENANT_BLUE};

fn spec() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/mojaloop/fspiop-rest-v1.1-openapi3-snippets.yaml");
    assert!(path.exists(), "the FSPIOP OpenAPI file is missing: {}", path.display());
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_payhub_sends_is_valid_by_the_fspiop_openapi_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let proxy = Proxy::start(format!("http://{listen}"), None).await;
    let config = dir.path().join("proxied.toml");
    let switch_url = format!("switch_url = \"http://{}/switch\"\n", proxy.address);
    std::fs::write(&config, switch_url).expect("write the configuration");
    let node =
        Node::start_with(&["demo", "--config", &config.to_string_lossy()], listen, &dir.path().join("node"))
            .await;

    // A payment: lookup, quote and transfer requests as payer, their
    // callbacks as payee.
    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let (status, answer) = node.transfer(TENANT_BLUE, Some("openapi-1"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
    let transfer = node.wait_final(TENANT_BLUE, &id, Duration::from_secs(30)).await;
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
    ];
    for (path, resource) in unknown {
        let (status, answer) = fspiop_request(&node.http, &base, "GET", &path, resource, None, "1.1").await;
        assert_eq!(status / 100, 2, "GET {path}: {answer}");
    }
    let euro = quote_body(&uuid::Uuid::new_v4().to_string(), "5", "EUR");
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/quotes", "quotes", Some(&euro), "1.1").await;
    assert_eq!(status, 202, "{answer}");

    // What went to the switch, once it has all arrived: the three error
    // callbacks last.
    let sent = proxy.wait_for("every error callback", |sent| sent_to(sent, "/error").len() >= 4).await;
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
    let invalid: Vec<String> = messages
        .iter()
        .zip(verdicts)
        .filter(|(_, verdict)| verdict["errors"].as_array().is_none_or(|errors| !errors.is_empty()))
        .map(|(message, verdict)| {
            format!("{} {}: {}\n  {message}", message["method"], message["path"], verdict["errors"])
        })
        .collect();
    assert!(invalid.is_empty(), "messages the FSPIOP v1.1 OpenAPI file refuses:\n{}", invalid.join("\n"));

    // And the check saw each kind of message this test makes payhub send.
    let operations: BTreeSet<&str> = verdicts.iter().filter_map(|v| v["operation"].as_str()).collect();
    for expected in [
        "PartiesByTypeAndID",
        "PartiesByTypeAndID2",
        "PartiesErrorByTypeAndID",
        "Quotes",
        "QuotesByID1",
        "QuotesByIDAndError",
        "transfers",
        "TransfersByIDPut",
        "TransfersByIDAndError",
    ] {
        assert!(operations.contains(expected), "no {expected} message was checked: {operations:?}");
    }
}
