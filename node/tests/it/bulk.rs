//! The payee side of bulk quotes and bulk transfers, end to end: greenbank
//! (charging a fee) prices each quote of a bulk as it would a single one
//! and refuses the one it cannot serve in the results; the bulk transfer
//! built from those terms credits each payee what its quote said, returns
//! fulfilments of the quoted conditions, refuses a transfer whose
//! condition does not match; a resent bulk gets the same answer and
//! credits nothing twice; an expired bulk is refused with 3303.

use std::time::Duration;

use serde_json::{json, Value};

use connectors::fspiop::ilp::fulfilment_matches;

use crate::fspiop::{body_of, fspiop_request, proxied_node, tenants_toml, Recorded};
use crate::node::{Node, TENANT_GREEN};

const FEES: &str = r#"fees = { percent = "1", fixed = { USD = "0.25" } }"#;

pub fn individual_quote(amount: &str, identifier: &str) -> Value {
    json!({
        "quoteId": uuid::Uuid::new_v4().to_string(),
        "transactionId": uuid::Uuid::new_v4().to_string(),
        "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": identifier, "fspId": "greenbank" } },
        "amountType": "SEND",
        "amount": { "amount": amount, "currency": "USD" },
        "transactionType": { "scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER" }
    })
}

/// Sends `body` to greenbank and waits for its `PUT /{resource}/{id}` (or
/// error) callback through the switch; answers its path and body.
pub async fn ask(
    node: &Node,
    proxy: &crate::fspiop::Proxy,
    resource: &str,
    id: &str,
    body: &Value,
) -> (String, Value) {
    let base = node.url("/fspiop/greenbank");
    let before = answers(&proxy.recorded(), resource, id).len();
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", &format!("/{resource}"), resource, Some(body), "1.1").await;
    assert_eq!(status, 202, "POST /{resource}: {answer}");
    let recorded = proxy
        .wait_for(&format!("greenbank's answer to {resource} {id}"), |r| {
            answers(r, resource, id).len() > before
        })
        .await;
    let answer = answers(&recorded, resource, id)[before];
    (answer["path"].as_str().unwrap_or_default().to_owned(), body_of(answer))
}

fn answers<'a>(recorded: &'a [Recorded], resource: &str, id: &str) -> Vec<&'a Recorded> {
    let path = format!("/switch/{resource}/{id}");
    recorded
        .iter()
        .filter(|m| {
            m["method"] == "PUT"
                && m["headers"]["fspiop-source"] == "greenbank"
                && m["path"].as_str().is_some_and(|p| p == path || p == format!("{path}/error"))
        })
        .collect()
}

async fn greenbank(node: &Node) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> =
        node.accounts(TENANT_GREEN).await.into_iter().map(|(name, balance, _, _)| (name, balance)).collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_is_quoted_and_credited_item_by_item_and_answered_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, proxy) = proxied_node(dir.path(), &tenants_toml("", FEES), None).await;

    // Three quotes: 100 USD and 10 USD to greenbank's customer, 5 USD to
    // nobody greenbank knows.
    let quotes = [
        individual_quote("100", "27710000006"),
        individual_quote("10", "27710000006"),
        individual_quote("5", "27719999999"),
    ];
    let bulk_quote_id = uuid::Uuid::new_v4().to_string();
    let bulk_quote = json!({
        "bulkQuoteId": bulk_quote_id,
        "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" } },
        "individualQuotes": quotes,
    });
    let (path, quoted) = ask(&node, &proxy, "bulkQuotes", &bulk_quote_id, &bulk_quote).await;
    assert_eq!(path, format!("/switch/bulkQuotes/{bulk_quote_id}"), "{quoted}");
    let results = quoted["individualQuoteResults"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3, "{quoted}");
    for (result, quote) in results.iter().zip(&quotes) {
        assert_eq!(result["quoteId"], quote["quoteId"], "{quoted}");
    }
    assert_eq!(results[0]["transferAmount"], json!({ "amount": "100", "currency": "USD" }), "{quoted}");
    assert_eq!(results[0]["payeeReceiveAmount"], json!({ "amount": "98.75", "currency": "USD" }), "{quoted}");
    assert_eq!(results[0]["payeeFspFee"], json!({ "amount": "1.25", "currency": "USD" }), "{quoted}");
    assert_eq!(results[1]["payeeReceiveAmount"], json!({ "amount": "9.65", "currency": "USD" }), "{quoted}");
    assert_eq!(results[2]["errorInformation"]["errorCode"], "3204", "{quoted}");
    assert!(results[2]["condition"].is_null(), "{quoted}");

    // The transfers of the two quoted items, and one whose condition is
    // another item's: it does not match its packet.
    let transfer = |result: &Value, condition: &Value| {
        json!({
            "transferId": uuid::Uuid::new_v4().to_string(),
            "transferAmount": result["transferAmount"],
            "ilpPacket": result["ilpPacket"],
            "condition": condition,
        })
    };
    let transfers = [
        transfer(&results[0], &results[0]["condition"]),
        transfer(&results[1], &results[1]["condition"]),
        transfer(&results[1], &results[0]["condition"]),
    ];
    let bulk_transfer_id = uuid::Uuid::new_v4().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    let expiration = connectors::fspiop::headers::timestamp(
        u64::try_from(now.as_millis()).expect("milliseconds") + 60_000,
    );
    let bulk_transfer = json!({
        "bulkTransferId": bulk_transfer_id,
        "bulkQuoteId": bulk_quote_id,
        "payerFsp": "bluebank",
        "payeeFsp": "greenbank",
        "individualTransfers": transfers,
        "expiration": expiration,
    });
    let (path, done) = ask(&node, &proxy, "bulkTransfers", &bulk_transfer_id, &bulk_transfer).await;
    assert_eq!(path, format!("/switch/bulkTransfers/{bulk_transfer_id}"), "{done}");
    assert_eq!(done["bulkTransferState"], "COMPLETED", "{done}");
    let results_of_transfers = done["individualTransferResults"].as_array().cloned().unwrap_or_default();
    assert_eq!(results_of_transfers.len(), 3, "{done}");
    for (i, (result, sent)) in results_of_transfers.iter().zip(&transfers).enumerate().take(2) {
        assert_eq!(result["transferId"], sent["transferId"], "{done}");
        let fulfilment =
            result["fulfilment"].as_str().unwrap_or_else(|| panic!("no fulfilment for item {i}: {done}"));
        assert!(fulfilment_matches(fulfilment, sent["condition"].as_str().expect("condition")), "{done}");
    }
    assert!(results_of_transfers[2]["fulfilment"].is_null(), "{done}");
    assert!(results_of_transfers[2]["errorInformation"]["errorCode"].is_string(), "{done}");

    // Each payee got what its quote said, the fees are booked; the refused
    // transfer moved nothing.
    let expected = vec![
        ("27710000006".to_owned(), "1108.40".to_owned()),
        ("27710000006/savings".to_owned(), "1000.00".to_owned()),
        ("fees-USD".to_owned(), "1.60".to_owned()),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while greenbank(&node).await != expected {
        assert!(std::time::Instant::now() < deadline, "greenbank: {:?}", greenbank(&node).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same bulk again: the same answer, nothing credited twice.
    let (_, again) = ask(&node, &proxy, "bulkTransfers", &bulk_transfer_id, &bulk_transfer).await;
    assert_eq!(again, done);
    assert_eq!(greenbank(&node).await, expected);

    // An expired bulk: 3303, nothing credited.
    let expired_id = uuid::Uuid::new_v4().to_string();
    let mut expired = bulk_transfer.clone();
    expired["bulkTransferId"] = json!(expired_id);
    expired["individualTransfers"] = json!([transfer(&results[0], &results[0]["condition"])]);
    expired["expiration"] = json!("2020-01-01T00:00:00.000Z");
    let (path, refused) = ask(&node, &proxy, "bulkTransfers", &expired_id, &expired).await;
    assert_eq!(path, format!("/switch/bulkTransfers/{expired_id}/error"), "{refused}");
    assert_eq!(refused["errorInformation"]["errorCode"], "3303", "{refused}");
    assert_eq!(greenbank(&node).await, expected);

    // A bulk without items is refused at once, naming the element.
    let mut empty = bulk_quote.clone();
    empty["bulkQuoteId"] = json!(uuid::Uuid::new_v4().to_string());
    empty["individualQuotes"] = json!([]);
    let base = node.url("/fspiop/greenbank");
    let (status, answer) =
        fspiop_request(&node.http, &base, "POST", "/bulkQuotes", "bulkQuotes", Some(&empty), "1.1").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errorInformation"]["errorCode"], "3100", "{answer}");
    assert!(answer.to_string().contains("individualQuotes"), "{answer}");
}
