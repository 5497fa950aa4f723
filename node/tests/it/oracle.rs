//! A tenant's parties in the scheme's oracle (FSPIOP `/participants`,
//! through the node's `/oracle` API): a party removed from the oracle cannot
//! be paid (and nothing moves), registered again it can, and another DFSP
//! cannot take it over.

use serde_json::{json, Value};

use crate::node::{transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

async fn oracle(
    node: &Node,
    method: reqwest::Method,
    tenant: Option<&str>,
    party: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = node.http.request(method, node.url(&format!("/oracle/{party}")));
    if let Some(tenant) = tenant {
        request = request.header("Platform-TenantId", tenant);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("oracle request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn pay(node: &Node, key: &str) -> Value {
    node.pay(TENANT_BLUE, key, &transfer_body("27710000001", "27710000006", "10.00", "USD")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_removed_from_the_oracle_cannot_be_paid_until_registered_again_by_its_own_dfsp() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node")).await;
    let party = "MSISDN/27710000006";

    let (status, answer) = oracle(&node, Method::GET, Some(TENANT_BLUE), party, None).await;
    assert_eq!((status, &answer["fspId"]), (200, &json!("greenbank")), "{answer}");

    let (status, answer) = oracle(&node, Method::DELETE, Some(TENANT_GREEN), party, None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = oracle(&node, Method::GET, Some(TENANT_BLUE), party, None).await;
    assert_eq!(status, 404, "{answer}");
    let transfer = pay(&node, "unregistered").await;
    assert_eq!(transfer["transferState"], "ABORTED", "{transfer}");
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "1000.00");

    let (status, answer) =
        oracle(&node, Method::POST, Some(TENANT_GREEN), party, Some(json!({ "currency": "USD" }))).await;
    assert_eq!((status, &answer["fspId"]), (200, &json!("greenbank")), "{answer}");
    let transfer = pay(&node, "registered-again").await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "1010.00");

    // bluebank cannot take greenbank's party, nor remove it.
    let (status, answer) = oracle(&node, Method::POST, Some(TENANT_BLUE), party, None).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["detail"].as_str().is_some_and(|d| d.starts_with("3003")), "{answer}");
    let (status, answer) = oracle(&node, Method::DELETE, Some(TENANT_BLUE), party, None).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = oracle(&node, Method::GET, Some(TENANT_BLUE), party, None).await;
    assert_eq!((status, &answer["fspId"]), (200, &json!("greenbank")), "{answer}");

    // Bad requests are refused before anything is sent.
    for (tenant, party, body) in [
        (None, "MSISDN/27710000006", None),
        (Some(TENANT_GREEN), "PHONE/27710000006", None),
        (Some(TENANT_GREEN), "MSISDN/27710000006", Some(json!({ "currency": "usd" }))),
        (Some(TENANT_GREEN), "MSISDN/27710000006", Some(json!({ "currency": "USD", "colour": "green" }))),
    ] {
        let (status, answer) = oracle(&node, Method::POST, tenant, party, body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["type"], "about:blank", "{answer}");
    }
}
