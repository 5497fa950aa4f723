//! What needs an operator is shown to operators and resolved by them: a
//! payment the scheme reports committed with a fulfilment that does not
//! match its condition stops for an operator, its funds held;
//! `/operator/attention` lists it with the reason, and the operator's
//! decision books it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fspiop::{tenants_toml, Proxy, Rewrite};
use crate::node::{free_port, transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_committed_with_a_forged_fulfilment_waits_for_an_operator_is_listed_and_is_booked_on_their_decision(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    // Between the switch and bluebank: the fulfilment of the commit notice
    // is replaced.
    let forge: Rewrite = Arc::new(|method: &str, path: &str, body: Vec<u8>| {
        let notice =
            method == "PUT" && path.starts_with("/fspiop/bluebank/transfers/") && !path.ends_with("/error");
        match serde_json::from_slice::<Value>(&body) {
            Ok(mut put) if notice => {
                put["fulfilment"] = "WLctttbu2HvTsa1XWvUoGRcQQ2ZKfc3ApWg-yRYqJwk".into();
                Some(serde_json::to_vec(&put).expect("JSON"))
            }
            _ => Some(body),
        }
    });
    let to_bluebank = Proxy::start(format!("http://{listen}"), Some(forge)).await;
    let config = dir.path().join("forged.toml");
    let endpoint = format!("endpoint = \"http://{}/fspiop/bluebank\"", to_bluebank.address);
    std::fs::write(&config, tenants_toml(&endpoint, "")).expect("write the configuration");
    let node =
        Node::start_with(&["demo", "--config", &config.to_string_lossy()], listen, &dir.path().join("node"))
            .await;
    let attention = |tenant: Option<&'static str>| {
        let node = &node;
        async move {
            let mut request = node.http.get(node.url("/operator/attention"));
            if let Some(tenant) = tenant {
                request = request.header("Platform-TenantId", tenant);
            }
            let response = request.send().await.expect("GET /operator/attention");
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("JSON")
        }
    };
    assert_eq!(attention(None).await["count"], 0);

    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let (status, answer) = node.transfer(TENANT_BLUE, Some("forged-commit"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let transfer = loop {
        let transfer = node.get_transfer(TENANT_BLUE, &id).await;
        if transfer["phase"] == "NEEDS_OPERATOR" {
            break transfer;
        }
        assert!(Instant::now() < deadline, "{transfer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(transfer["transferState"], "RECEIVED", "{transfer}");

    let listed = attention(None).await;
    assert_eq!(listed["count"], 1, "{listed}");
    let entry = &listed["transactions"][0];
    assert_eq!(entry["transactionId"], id.as_str(), "{listed}");
    assert_eq!(
        (entry["tenant"].as_str(), entry["phase"].as_str()),
        (Some("bluebank"), Some("NEEDS_OPERATOR")),
        "{listed}"
    );
    assert!(entry["reason"]["message"].as_str().is_some_and(|m| m.contains("fulfilment")), "{listed}");
    assert_eq!(attention(Some(TENANT_BLUE)).await["count"], 1);
    assert_eq!(attention(Some(TENANT_GREEN)).await["count"], 0);
    // The payer's funds stay held until an operator decides.
    let account = node.balance(TENANT_BLUE, "27710000001").await;
    assert_eq!(
        (account["balance"].as_str(), account["reserved"].as_str()),
        (Some("1000.00"), Some("10.00")),
        "{account}"
    );

    // The operator checks the switch (it committed the transfer) and books it.
    let decide = |tenant: &'static str, body: Value| {
        let (node, id) = (&node, id.clone());
        async move {
            let response = node
                .http
                .post(node.url(&format!("/operator/transactions/{id}/decision")))
                .header("Platform-TenantId", tenant)
                .json(&body)
                .send()
                .await
                .expect("POST decision");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let commit = serde_json::json!({ "decision": "COMMIT", "operator": "alice", "note": "the switch shows it committed" });
    let (status, _) = decide(TENANT_GREEN, commit.clone()).await;
    assert_eq!(status, 404, "another tenant's transaction");
    let (status, answer) =
        decide(TENANT_BLUE, serde_json::json!({ "decision": "BOOK", "operator": "alice", "note": "x" }))
            .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = decide(TENANT_BLUE, commit.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["phase"].as_str(), answer["transferState"].as_str()),
        (Some("COMMITTED"), Some("COMMITTED")),
        "{answer}"
    );
    let reason = answer["reason"]["message"].as_str().unwrap_or_default();
    assert!(reason.ends_with("alice decided to commit: the switch shows it committed"), "{answer}");
    let account = node.balance(TENANT_BLUE, "27710000001").await;
    assert_eq!(
        (account["balance"].as_str(), account["reserved"].as_str()),
        (Some("990.00"), Some("0.00")),
        "{account}"
    );
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "1010.00");
    assert_eq!(attention(None).await["count"], 0);
    let history = node.get_transfer(TENANT_BLUE, &id).await["history"].to_string();
    assert!(history.contains("OperatorCommitted"), "{history}");
    // Decided once: a second decision does not apply.
    let (status, answer) = decide(TENANT_BLUE, commit).await;
    assert_eq!(status, 409, "{answer}");
}

/// An operator asks the payee's DFSP what it knows of a payment (FSPIOP
/// `GET /transactions/{ID}` through the switch, answered by greenbank's
/// payee side): a committed payment is COMPLETED there; a payment that
/// never found its payee's DFSP cannot be asked about, and another
/// tenant's payment is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_asks_the_payee_dfsp_about_a_payment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(dir.path()).await;
    let ask = async |tenant: &str, id: &str| {
        let response = node
            .http
            .get(node.url(&format!("/operator/transactions/{id}/payee")))
            .header("Platform-TenantId", tenant)
            .send()
            .await
            .expect("GET /operator/transactions/{id}/payee");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    };

    let paid =
        node.pay(TENANT_BLUE, "ask-payee-1", &transfer_body("27710000001", "27710000006", "3", "USD")).await;
    assert_eq!(paid["transferState"], "COMMITTED", "{paid}");
    let id = paid["transactionId"].as_str().expect("transactionId").to_owned();
    let (status, answer) = ask(TENANT_BLUE, &id).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["transactionState"], "COMPLETED", "{answer}");
    assert_eq!(answer["payeeFsp"], "greenbank", "{answer}");
    assert!(answer["completedTimestamp"].is_string(), "{answer}");

    let (status, problem) = ask(TENANT_GREEN, &id).await;
    assert_eq!(status, 404, "another tenant's payment: {problem}");

    let lost =
        node.pay(TENANT_BLUE, "ask-payee-2", &transfer_body("27710000001", "27719999999", "3", "USD")).await;
    assert_eq!(lost["transferState"], "ABORTED", "{lost}");
    let (status, problem) = ask(TENANT_BLUE, lost["transactionId"].as_str().expect("transactionId")).await;
    assert_eq!(status, 409, "{problem}");
}
