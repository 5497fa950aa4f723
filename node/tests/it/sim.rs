//! A node whose AMS and switch are outside it: `payhub sim` serves both (and
//! the ledger API to read balances), and the node reaches them over HTTP.
//! Each tenant's endpoints list a dead URL besides the node's, so the
//! switch's deliveries fail over.

use std::time::Duration;

use crate::node::{free_port, transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_through_payhub_sim_is_booked_on_the_external_ams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim_listen, node_listen, dead) = (free_port(), free_port(), free_port());
    let tenant = |id: &str, endpoints: [String; 2], party: &str| {
        format!(
            r#"
[[tenants]]
id = "{id}"
fsp_id = "{id}"
ilp_secret = "demo-secret-{id}"
endpoints = ["{}", "{}"]
demo_parties = [{{ id_type = "MSISDN", identifier = "{party}", balance = "100.00", currency = "USD" }}]
"#,
            endpoints[0], endpoints[1]
        )
    };
    let url = |address, id| format!("http://{address}/fspiop/{id}");
    let config = format!(
        "switch_url = \"http://{sim_listen}/switch\"\nams_url = \"http://{sim_listen}\"\n{}{}",
        tenant(TENANT_BLUE, [url(dead, TENANT_BLUE), url(node_listen, TENANT_BLUE)], "27710000001"),
        tenant(TENANT_GREEN, [url(node_listen, TENANT_GREEN), url(dead, TENANT_GREEN)], "27710000006"),
    );
    let config_path = dir.path().join("cluster.toml");
    std::fs::write(&config_path, config).expect("write the configuration");
    let config_arg = config_path.to_str().expect("UTF-8 path");

    let sim = Node::start_with(&["sim", "--config", config_arg], sim_listen, &dir.path().join("sim")).await;
    let node =
        Node::start_with(&["run", "--config", config_arg], node_listen, &dir.path().join("node")).await;

    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let (status, answer) = node.transfer(TENANT_BLUE, Some("sim-1"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
    let transfer = node.wait_final(TENANT_BLUE, &id, Duration::from_secs(60)).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}\nsim log:\n{}", sim.log_text());
    assert_eq!(sim.balance(TENANT_BLUE, "27710000001").await["balance"], "90.00");
    assert_eq!(sim.balance(TENANT_GREEN, "27710000006").await["balance"], "110.00");
    assert_eq!(sim.balance(TENANT_GREEN, "27710000006").await["incoming"], "0.00");

    // The AMS's refusal crosses HTTP as the same business error.
    let body = transfer_body("27710000001", "27710000006", "500.00", "USD");
    let (status, answer) = node.transfer(TENANT_BLUE, Some("sim-2"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
    let transfer = node.wait_final(TENANT_BLUE, &id, Duration::from_secs(60)).await;
    assert_eq!(transfer["transferState"], "ABORTED", "{transfer}");
    assert_eq!(transfer["error"]["code"], "4001", "{transfer}");
    assert_eq!(sim.balance(TENANT_BLUE, "27710000001").await["reserved"], "0.00");

    // The node keeps no balances of its own.
    let response = node
        .http
        .get(node.url("/ledger/accounts"))
        .header("Platform-TenantId", TENANT_BLUE)
        .send()
        .await
        .expect("GET /ledger/accounts on the node");
    assert_eq!(response.status(), 404);
    assert!(sim.metrics().await.contains("payhub_http_request_seconds"));
}
