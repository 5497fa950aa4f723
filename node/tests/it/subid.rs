//! Parties with a sub-id (FSPIOP `partySubIdOrType`: one of several accounts
//! behind one identifier) end to end, through the switch simulator: the payer
//! side looks the party up at `/parties/{Type}/{ID}/{SubId}` and takes the
//! answer there, the payee side answers from the sub-id's own account and
//! credits that account, and an unknown sub-id is not found (3204) and moves
//! nothing.

use serde_json::{json, Value};

use crate::fspiop::{body_of, sent_to, Proxy};
use crate::node::{free_port, transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

/// bluebank's 27710000001; greenbank's 27710000006 and its savings account.
const TENANTS: &str = r#"
[[tenants]]
id = "bluebank"
fsp_id = "bluebank"
ilp_secret = "demo-secret-bluebank"
demo_parties = [{ id_type = "MSISDN", identifier = "27710000001", balance = "1000.00", currency = "USD" }]

[[tenants]]
id = "greenbank"
fsp_id = "greenbank"
ilp_secret = "demo-secret-greenbank"
demo_parties = [
  { id_type = "MSISDN", identifier = "27710000006", balance = "1000.00", currency = "USD" },
  { id_type = "MSISDN", identifier = "27710000006", sub_id = "savings", balance = "10.00", currency = "USD" },
]
"#;

fn to_sub_id(sub_id: &str, amount: &str) -> Value {
    let mut body = transfer_body("27710000001", "27710000006", amount, "USD");
    body["payee"]["partyIdInfo"]["partySubIdOrType"] = json!(sub_id);
    body
}

async fn balances(node: &Node, tenant: &str) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> =
        node.accounts(tenant).await.into_iter().map(|(name, balance, _, _)| (name, balance)).collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_to_a_sub_id_credits_that_account_and_an_unknown_one_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let proxy = Proxy::start(format!("http://{listen}"), None).await;
    let config = dir.path().join("subid.toml");
    std::fs::write(&config, format!("switch_url = \"http://{}/switch\"\n{TENANTS}", proxy.address))
        .expect("write the configuration");
    let node =
        Node::start_with(&["demo", "--config", &config.to_string_lossy()], listen, &dir.path().join("node"))
            .await;

    let transfer = node.pay(TENANT_BLUE, "to-savings", &to_sub_id("savings", "25.00")).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}");
    assert_eq!(transfer["payee"]["partyIdInfo"]["partySubIdOrType"], "savings", "{transfer}");
    let recorded = proxy.recorded();
    let lookups = sent_to(&recorded, "/switch/parties/MSISDN/27710000006/savings");
    assert!(lookups.iter().any(|m| m["method"] == "GET"), "no lookup with the sub-id: {recorded:?}");
    let answer =
        lookups.iter().find(|m| m["method"] == "PUT").map(|m| body_of(m)).expect("greenbank answered");
    assert_eq!(answer["party"]["partyIdInfo"]["partySubIdOrType"], "savings", "{answer}");
    assert_eq!(answer["party"]["partyIdInfo"]["fspId"], "greenbank", "{answer}");
    let quote = sent_to(&recorded, "/switch/quotes")
        .into_iter()
        .find(|m| m["method"] == "POST")
        .map(body_of)
        .expect("bluebank asked for a quote");
    assert_eq!(quote["payee"]["partyIdInfo"]["partySubIdOrType"], "savings", "{quote}");

    let expected = vec![
        ("27710000006".to_owned(), "1000.00".to_owned()),
        ("27710000006/savings".to_owned(), "35.00".to_owned()),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while balances(&node, TENANT_GREEN).await != expected {
        assert!(std::time::Instant::now() < deadline, "greenbank: {:?}", balances(&node, TENANT_GREEN).await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let payer_before = balances(&node, TENANT_BLUE).await;
    assert_eq!(payer_before, vec![("27710000001".to_owned(), "975.00".to_owned())]);

    // A sub-id greenbank has no account for: not found, nothing moves.
    let transfer = node.pay(TENANT_BLUE, "to-current", &to_sub_id("current", "5.00")).await;
    assert_eq!(transfer["transferState"], "ABORTED", "{transfer}");
    assert_eq!(transfer["error"]["code"], "3204", "{transfer}");
    let recorded = proxy.recorded();
    let refusals = sent_to(&recorded, "/switch/parties/MSISDN/27710000006/current/error");
    assert_eq!(refusals.len(), 1, "greenbank did not answer 3204 at the sub-id's error path");
    assert_eq!(balances(&node, TENANT_GREEN).await, expected);
    assert_eq!(balances(&node, TENANT_BLUE).await, payer_before);

    // A malformed sub-id is refused before anything is done.
    let (status, problem) = node.transfer(TENANT_BLUE, None, &to_sub_id("with space", "5.00")).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem.to_string().contains("partySubIdOrType"), "{problem}");
}
