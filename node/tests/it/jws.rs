//! FSPIOP signatures end to end: with JWS signing and verification on, the
//! demo tenants still pay each other through the switch simulator (which
//! passes their signed messages on untouched and signs its own), and a
//! message whose body was changed after signing is refused with 3105.

use std::path::Path;

use connectors::fspiop::jws::{RequestParts, Signer};
use serde_json::{json, Value};

use crate::node::{free_port, transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

/// Test keys: bluebank and the switch sign with RSA (RS256), greenbank with
/// P-256 (ES256).
pub fn key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/keys").join(name).to_string_lossy().into_owned()
}

/// The `[fspiop.jws]` section: every tenant and the switch sign and verify.
pub fn jws_toml() -> String {
    format!(
        r#"[fspiop.jws]
sign = true
verify = true
signing_keys = {{ bluebank = "{rsa}", greenbank = "{ec}", switch = "{rsa}" }}
peer_keys = {{ bluebank = "{rsa_pub}", greenbank = "{ec_pub}", switch = "{rsa_pub}" }}
"#,
        rsa = key("rsa.pem"),
        ec = key("ec.pem"),
        rsa_pub = key("rsa.pub.pem"),
        ec_pub = key("ec.pub.pem"),
    )
}

fn jws_config(dir: &Path) -> String {
    let config = dir.join("jws.toml");
    std::fs::write(&config, jws_toml()).expect("write the configuration");
    config.to_string_lossy().into_owned()
}

/// A `POST /quotes` from bluebank to greenbank, signed by bluebank: headers and body.
pub fn signed_quote(quote_id: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = json!({
        "quoteId": quote_id,
        "transactionId": uuid::Uuid::new_v4().to_string(),
        "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000006", "fspId": "greenbank" } },
        "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" } },
        "amountType": "SEND",
        "amount": { "amount": "5", "currency": "USD" },
        "transactionType": { "scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER" }
    });
    let date = connectors::fspiop::headers::date_now();
    let body = serde_json::to_vec(&body).expect("JSON");
    let signer = Signer::from_pem(&std::fs::read_to_string(key("rsa.pem")).expect("key")).expect("RSA key");
    let signed = signer
        .sign(&RequestParts {
            method: "POST",
            url: "/quotes",
            source: "bluebank",
            destination: Some("greenbank"),
            date: Some(&date),
            body: Some(&body),
        })
        .expect("signs")
        .expect("a body is signed");
    let mut headers = vec![
        ("content-type".to_owned(), "application/vnd.interoperability.quotes+json;version=1.1".to_owned()),
        ("accept".to_owned(), "application/vnd.interoperability.quotes+json;version=1".to_owned()),
        ("date".to_owned(), date),
        ("fspiop-source".to_owned(), "bluebank".to_owned()),
        ("fspiop-destination".to_owned(), "greenbank".to_owned()),
    ];
    headers.extend(signed.headers().iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
    (headers, signed.body)
}

/// Posts a quote to `url` with `http`.
pub async fn post_quote(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = http.post(url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_signatures_on_the_demo_tenants_pay_each_other_and_a_tampered_body_is_refused_with_3105() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = jws_config(dir.path());
    let node = Node::start_with(&["demo", "--config", &config], free_port(), &dir.path().join("node")).await;

    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let transfer = node.pay(TENANT_BLUE, "signed-1", &body).await;
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}\n{}", node.log_text());
    assert_eq!(node.balance(TENANT_BLUE, "27710000001").await["balance"], "990.00");
    assert_eq!(node.balance(TENANT_GREEN, "27710000006").await["balance"], "1010.00");
    assert!(!node.log_text().contains("Invalid signature"), "a signature was refused:\n{}", node.log_text());

    // Signed as sent: accepted.
    let base = node.url("/fspiop/greenbank/quotes");
    let (headers, signed) = signed_quote(&uuid::Uuid::new_v4().to_string());
    let (status, answer) =
        post_quote(&node.http, &base, &headers, signed.clone()).await.expect("POST /quotes");
    assert_eq!(status, 202, "{answer}");

    // The amount changed after signing: refused, synchronously, with 3105.
    let (headers, signed) = signed_quote(&uuid::Uuid::new_v4().to_string());
    let tampered = String::from_utf8(signed).expect("UTF-8").replace(r#""amount":"5""#, r#""amount":"500""#);
    let (status, answer) =
        post_quote(&node.http, &base, &headers, tampered.into_bytes()).await.expect("POST /quotes");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errorInformation"]["errorCode"], "3105", "{answer}");

    // Unsigned: refused too.
    let (headers, signed) = signed_quote(&uuid::Uuid::new_v4().to_string());
    let unsigned: Vec<_> =
        headers.into_iter().filter(|(name, _)| !name.starts_with("fspiop-signature")).collect();
    let (status, answer) = post_quote(&node.http, &base, &unsigned, signed).await.expect("POST /quotes");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errorInformation"]["errorCode"], "3105", "{answer}");
}
