//! A payee tenant's fee rule end to end: its quotes carry the fee (taken
//! from what the payee receives on a SEND quote, added to what the payer
//! sends on a RECEIVE one), the transfer credits the payee what the quote
//! said and books the fee on the tenant's income account, and an amount the
//! fee would swallow is refused with 5103.

use std::time::Duration;

use serde_json::json;

use crate::fspiop::{body_of, fspiop_request, quote_body, sent_to, tenants_toml, Proxy};
use crate::node::{free_port, transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_fee_is_quoted_and_booked_and_an_amount_it_would_swallow_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let proxy = Proxy::start(format!("http://{listen}"), None).await;
    let config = dir.path().join("fees.toml");
    std::fs::write(
        &config,
        format!(
            r#"switch_url = "http://{switch}/switch"

{tenants}"#,
            switch = proxy.address,
            tenants = tenants_toml("", r#"fees = { percent = "1", fixed = { USD = "0.25" } }"#),
        ),
    )
    .expect("write the configuration");
    let node =
        Node::start_with(&["demo", "--config", &config.to_string_lossy()], listen, &dir.path().join("node"))
            .await;

    // bluebank's customer sends 100 USD: greenbank's gets 100 less 1.25.
    let body = transfer_body("27710000001", "27710000006", "100.00", "USD");
    let transfer = node.pay(TENANT_BLUE, "with-fee-1", &body).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");
    let quote = proxy
        .recorded()
        .iter()
        .find(|m| {
            m["method"] == "PUT" && m["path"].as_str().is_some_and(|p| p.starts_with("/switch/quotes/"))
        })
        .map(body_of)
        .expect("greenbank quoted");
    assert_eq!(quote["transferAmount"], json!({ "amount": "100", "currency": "USD" }), "{quote}");
    assert_eq!(quote["payeeReceiveAmount"], json!({ "amount": "98.75", "currency": "USD" }), "{quote}");
    assert_eq!(quote["payeeFspFee"], json!({ "amount": "1.25", "currency": "USD" }), "{quote}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let green = node.accounts(TENANT_GREEN).await;
        let balance = |id: &str| green.iter().find(|a| a.0 == id).map(|a| (a.1.clone(), a.3.clone()));
        let expected =
            (Some(("1098.75".to_owned(), "0.00".to_owned())), Some(("1.25".to_owned(), "0.00".to_owned())));
        if (balance("27710000006"), balance("fees-USD")) == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "greenbank's accounts: {green:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "900.00");

    // A RECEIVE quote: the payer sends the fee on top.
    let base = node.url("/fspiop/greenbank");
    let mut receive = quote_body(&uuid::Uuid::new_v4().to_string(), "10", "USD");
    receive["amountType"] = "RECEIVE".into();
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/quotes", "quotes", Some(&receive), "1.1").await;
    assert_eq!(status, 202, "{answer}");
    let path = format!("/quotes/{}", receive["quoteId"].as_str().expect("quoteId"));
    let sent = proxy.wait_for("the RECEIVE quote", |sent| !sent_to(sent, &path).is_empty()).await;
    let quote = body_of(sent_to(&sent, &path)[0]);
    assert_eq!(quote["transferAmount"]["amount"], "10.35", "{quote}");
    assert_eq!(quote["payeeReceiveAmount"]["amount"], "10", "{quote}");
    assert_eq!(quote["payeeFspFee"]["amount"], "0.35", "{quote}");

    // 0.25 USD sent: the fee would take all of it.
    let small = quote_body(&uuid::Uuid::new_v4().to_string(), "0.25", "USD");
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/quotes", "quotes", Some(&small), "1.1").await;
    assert_eq!(status, 202, "{answer}");
    let path = format!("/quotes/{}/error", small["quoteId"].as_str().expect("quoteId"));
    let sent = proxy.wait_for("the refusal", |sent| !sent_to(sent, &path).is_empty()).await;
    let error = body_of(sent_to(&sent, &path)[0]);
    assert_eq!(error["errorInformation"]["errorCode"], "5103", "{error}");
}
