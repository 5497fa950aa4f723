//! Conformance with Mojaloop's own Testing Toolkit (the TTK, the tool
//! schemes certify DFSPs with): the TTK plays the switch and the payer DFSP,
//! runs Mojaloop's test collections against a payhub node's payee side, and
//! checks every callback payhub sends; then it plays the switch and the
//! payee DFSP for a signed payment from payhub, checking the transfer
//! against its quote, ILP packet and condition, and every signature (with
//! bluebank's key from a stand-in for the scheme's connection manager).
//!
//! The TTK is installed (from npm, pinned) and started by
//! `../shared/tools/mojaloop-ttk/start`. It listens on fixed ports (4040 for
//! FSPIOP, 5050 for its control API), so the tests that use it run one at a
//! time (the `ttk` group in `.config/nextest.toml`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::node::{free_port, Node};

/// The TTK's FSPIOP port: payhub's switch URL in these tests.
const TTK_FSPIOP: &str = "http://127.0.0.1:4040";
/// The TTK's control API.
const TTK_API: &str = "http://127.0.0.1:5050";
/// The TTK's own DFSP id (its `FSPID` setting): the payer here.
const TTK_FSP: &str = "testingtoolkitdfsp";

/// The directory beside the checkout that holds the TTK launcher and the
/// Mojaloop reference files.
fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// A running TTK; stopped when dropped.
struct Ttk {
    pid: u32,
}

impl Ttk {
    /// Installs (first time) and starts the TTK, sending callbacks to
    /// `callback_endpoint`; `system` is merged into its system settings
    /// (`TTK_SYSTEM_CONFIG`).
    fn start(callback_endpoint: &str, log: &Path, system: &Value) -> Ttk {
        let output = Command::new(shared().join("tools/mojaloop-ttk/start"))
            .env("TTK_CALLBACK_ENDPOINT", callback_endpoint)
            .env("TTK_LOG", log)
            .env("TTK_SYSTEM_CONFIG", system.to_string())
            .output()
            .expect("run the TTK launcher");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the TTK did not start: {}\n{}\n{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        let pid =
            stdout.lines().last().and_then(|l| l.trim().parse().ok()).expect("the launcher prints the pid");
        // The launcher waits for the control API; the FSPIOP server comes
        // up a little later.
        for _ in 0..300 {
            if std::net::TcpStream::connect("127.0.0.1:4040").is_ok() {
                return Ttk { pid };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the TTK's FSPIOP server did not come up; see {}", log.display());
    }
}

impl Drop for Ttk {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        // The next test's TTK needs the ports.
        for _ in 0..50 {
            if std::net::TcpStream::connect("127.0.0.1:5050").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One failed assertion of a TTK run: test case, request, description, message.
type Failure = (String, String, String, String);

/// Runs a TTK collection with `inputs`, answering the number of assertions
/// and the failed ones.
async fn run_collection(http: &reqwest::Client, collection: &Path, inputs: &Value) -> (usize, Vec<Failure>) {
    let text = std::fs::read_to_string(collection).expect("read the collection");
    let mut template: Value = serde_json::from_str(&text).expect("a collection is JSON");
    template["inputValues"] = inputs.clone();
    let trace = uuid::Uuid::new_v4().simple().to_string();
    // A run waits for every callback (up to the TTK's 10 s each): longer
    // than the node client's limit on a busy machine.
    let report: Value = http
        .post(format!("{TTK_API}/api/outbound/template/{trace}?sync=true"))
        .json(&template)
        .timeout(Duration::from_secs(180))
        .send()
        .await
        .expect("the TTK runs the collection")
        .json()
        .await
        .expect("the TTK answers its report as JSON");
    let mut total = 0;
    let mut failed = Vec::new();
    let cases = report["test_cases"].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "the TTK ran nothing: {report}");
    for case in cases {
        for request in case["requests"].as_array().cloned().unwrap_or_default() {
            let request = &request["request"];
            for assertion in request["tests"]["assertions"].as_array().cloned().unwrap_or_default() {
                total += 1;
                if assertion["resultStatus"]["status"] != "SUCCESS" {
                    failed.push((
                        case["name"].as_str().unwrap_or_default().to_owned(),
                        format!("{} {}", request["method"], request["path"]),
                        assertion["description"].as_str().unwrap_or_default().to_owned(),
                        assertion["resultStatus"]["message"].to_string(),
                    ));
                }
            }
        }
    }
    (total, failed)
}

/// Sets the TTK's user settings `settings` (they outlive the TTK process,
/// in its installed `user_config.json`, so each test sets every one it
/// relies on).
async fn ttk_settings(http: &reqwest::Client, settings: &[(&str, Value)]) {
    let config: Value = http
        .get(format!("{TTK_API}/api/config/user"))
        .send()
        .await
        .expect("read the TTK's settings")
        .json()
        .await
        .expect("the TTK's settings are JSON");
    let mut stored = config["stored"].clone();
    for (key, value) in settings {
        stored[*key] = value.clone();
    }
    let response = http
        .put(format!("{TTK_API}/api/config/user"))
        .json(&stored)
        .send()
        .await
        .expect("set the TTK's settings");
    assert!(response.status().is_success(), "the TTK refused its settings: {}", response.status());
}

/// A stand-in for the scheme's connection manager (the MCM API the TTK
/// takes DFSPs' JWS certificates from): one environment, and `keys` (PEM
/// public keys by DFSP id) as their JWS certificates. Answers its address
/// and the DFSPs whose certificates the TTK has fetched.
async fn connection_manager(keys: BTreeMap<String, String>) -> (SocketAddr, Arc<Mutex<BTreeSet<String>>>) {
    use axum::extract::Path as Params;
    use axum::routing::get;
    let fetched = Arc::new(Mutex::new(BTreeSet::new()));
    let environment = || json!({ "id": 1, "name": "TESTING-TOOLKIT" });
    let jws = {
        let fetched = fetched.clone();
        move |Params((_, dfsp)): Params<(String, String)>| {
            let certificate = keys.get(&dfsp).cloned();
            fetched.lock().expect("fetched").insert(dfsp.clone());
            async move {
                match certificate {
                    Some(pem) => axum::Json(json!({ "id": 1, "dfspId": dfsp, "jwsCertificate": pem })),
                    None => axum::Json(json!({})),
                }
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/api/environments",
            get(move || async move { axum::Json(json!([environment()])) })
                .post(move || async move { axum::Json(environment()) }),
        )
        .route(
            "/api/environments/{env}/dfsps",
            get(|| async { axum::Json(json!([])) }).post(|axum::Json(body): axum::Json<Value>| async move {
                axum::Json(json!({ "id": body["dfspId"], "name": body["name"] }))
            }),
        )
        .route(
            "/api/environments/{env}/dfsps/{dfsp}/jwscerts",
            get(jws)
                .post(|axum::Json(body): axum::Json<Value>| async move { axum::Json(body) })
                .put(|axum::Json(body): axum::Json<Value>| async move { axum::Json(body) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the connection manager");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the connection manager") });
    (address, fetched)
}

/// A payhub node serving `greenbank` (one party, 27710000002, holding USD)
/// with the TTK as its switch.
async fn payee_node(dir: &Path) -> Node {
    let config = dir.join("payhub.toml");
    std::fs::write(
        &config,
        format!(
            r#"switch_url = "{TTK_FSPIOP}"
seed_demo_parties = true

# The TTK's collections expect COMMITTED answers (no PATCH from the TTK).
[fspiop]
reserve_notification = false

[[tenants]]
id = "greenbank"
fsp_id = "greenbank"
ilp_secret = "greenbank-ilp-secret-0123456789"
demo_parties = [{{ id_type = "MSISDN", identifier = "27710000002", balance = "100.00", currency = "USD" }}]
"#
        ),
    )
    .expect("write the node's configuration");
    let config = config.to_string_lossy().into_owned();
    Node::start_with(&["run", "--config", &config], free_port(), &dir.join("data")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ttk_as_switch_and_payer_passes_every_assertion_of_its_p2p_and_get_collections_on_the_payee_side()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let node = payee_node(dir.path()).await;
    let _ttk = Ttk::start(
        &format!("http://{}/fspiop/greenbank", node.listen),
        &dir.path().join("ttk.log"),
        &json!({}),
    );
    // The TTK plays the payer: what it checks of what a payer sends is off,
    // and so is signature checking (payhub does not sign here).
    ttk_settings(
        &node.http,
        &[("VALIDATE_INBOUND_JWS", json!(false)), ("DEFAULT_USER_FSPID", json!("userdfsp"))],
    )
    .await;
    let inputs = json!({
        "fromFspId": TTK_FSP,
        "fromIdType": "MSISDN",
        "fromIdValue": "44123456789",
        "fromFirstName": "Ada",
        "fromLastName": "Lovelace",
        "fromDOB": "1984-01-01",
        "toFspId": "greenbank",
        "toIdType": "MSISDN",
        "toIdValue": "27710000002",
        "amount": "10",
        "currency": "USD",
        "note": "TTK conformance",
        "accept": "application/vnd.interoperability.parties+json;version=1.0",
        "contentType": "application/vnd.interoperability.parties+json;version=1.0",
    });
    let collections = shared().join("reference/mojaloop/ttk-collections");
    let mut report = Vec::new();
    let mut all = 0;
    for name in ["p2p_happy_path.json", "get_quotes_transfers.json"] {
        let (total, failed) = run_collection(&node.http, &collections.join(name), &inputs).await;
        assert!(total > 0, "{name}: no assertions ran");
        all += total;
        report.extend(failed.into_iter().map(|f| format!("{name}: {f:?}")));
    }
    assert!(report.is_empty(), "{} of {all} TTK assertions failed:\n{}", report.len(), report.join("\n"));
    // Two transfers of 10 USD each were credited to the payee, once each.
    let account: Value = node
        .http
        .get(node.url("/ledger/accounts/MSISDN/27710000002"))
        .header("platform-tenantid", "greenbank")
        .send()
        .await
        .expect("ledger read")
        .json()
        .await
        .expect("ledger JSON");
    assert_eq!(account["balance"], "120.00", "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_payment_through_the_ttk_as_switch_and_payee_passes_its_ilp_condition_and_jws_validation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("payhub.toml");
    std::fs::write(
        &config,
        format!(
            r#"switch_url = "{TTK_FSPIOP}"
seed_demo_parties = true

[fspiop.jws]
sign = true
signing_keys = {{ bluebank = "{key}" }}

[[tenants]]
id = "bluebank"
fsp_id = "bluebank"
ilp_secret = "bluebank-ilp-secret-0123456789"
demo_parties = [{{ id_type = "MSISDN", identifier = "27710000001", balance = "100.00", currency = "USD" }}]
"#,
            key = crate::jws::key("rsa.pem"),
        ),
    )
    .expect("write the node's configuration");
    let config = config.to_string_lossy().into_owned();
    let node = Node::start_with(&["run", "--config", &config], free_port(), &dir.path().join("data")).await;

    // The TTK takes bluebank's JWS key from the scheme's connection manager,
    // as in a hub deployment; it checks the signature of every message with
    // a body it receives (a bad one gets 3105, and the payment fails).
    let public = std::fs::read_to_string(crate::jws::key("rsa.pub.pem")).expect("the public key");
    let (manager, fetched) = connection_manager(BTreeMap::from([("bluebank".to_owned(), public)])).await;
    let log = dir.path().join("ttk.log");
    let system = json!({ "CONNECTION_MANAGER": { "ENABLED": true, "API_URL": format!("http://{manager}"), "AUTH_ENABLED": false } });
    let callbacks = format!("http://{}/fspiop/bluebank", node.listen);
    let ttk = Ttk::start(&callbacks, &log, &system);
    let checks = [
        ("TRANSFERS_VALIDATION_WITH_PREVIOUS_QUOTES", json!(true)),
        ("TRANSFERS_VALIDATION_ILP_PACKET", json!(true)),
        ("TRANSFERS_VALIDATION_CONDITION", json!(true)),
        ("VALIDATE_INBOUND_JWS", json!(true)),
        ("DEFAULT_USER_FSPID", json!("bluebank")),
    ];
    ttk_settings(&node.http, &checks).await;
    // Its connection-manager client reads these settings once, at start:
    // restart it on them (they are stored).
    drop(ttk);
    let _ttk = Ttk::start(&callbacks, &log, &system);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !fetched.lock().expect("fetched").contains("bluebank") {
        assert!(
            std::time::Instant::now() < deadline,
            "the TTK never fetched bluebank's JWS key (it fetched {:?}):\n{}",
            fetched.lock().expect("fetched"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It does check: a body changed after signing is refused, as sent it is not.
    let (headers, signed) = crate::jws::signed_quote(&uuid::Uuid::new_v4().to_string());
    let tampered =
        String::from_utf8(signed.clone()).expect("UTF-8").replace(r#""amount":"5""#, r#""amount":"6""#);
    let (status, answer) =
        crate::jws::post_quote(&node.http, &format!("{TTK_FSPIOP}/quotes"), &headers, tampered.into_bytes())
            .await
            .expect("POST /quotes");
    assert_eq!((status, &answer["errorInformation"]["errorCode"]), (400, &json!("3105")), "{answer}");
    let (status, answer) =
        crate::jws::post_quote(&node.http, &format!("{TTK_FSPIOP}/quotes"), &headers, signed)
            .await
            .expect("POST /quotes");
    assert_eq!(status, 202, "the TTK refused a well-signed quote: {answer}");

    // The TTK answers the lookup (as its own DFSP), the quote (with an ILP
    // packet and condition of its own) and the transfer: it fulfils it only
    // if the transfer matches its quote, packet and condition.
    let body = crate::node::transfer_body("27710000001", "27713803912", "10", "USD");
    let (status, answer) = node.transfer("bluebank", Some("through-the-ttk"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["transactionId"].as_str().expect("transactionId").to_owned();
    let transfer = node.wait_final("bluebank", &id, Duration::from_secs(30)).await;
    let ttk_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(transfer["transferState"], "COMMITTED", "{transfer}\nTTK log:\n{ttk_log}");
    assert_eq!(transfer["payeeFsp"], TTK_FSP, "{transfer}");
    for check in [
        "Validating Ilp packet against the transfer request",
        "Validating condition with the stored fulfilment",
    ] {
        assert!(ttk_log.contains(check), "the TTK did not run {check:?}:\n{ttk_log}");
    }
    // Only the tampered quote was refused.
    let refused = ttk_log.matches("JWS validation failed").count();
    assert_eq!(refused, 1, "the TTK refused another signature:\n{ttk_log}");
    assert_eq!(node.balance("bluebank", "27710000001").await["balance"], "90.00");
    // Leave the TTK's stored settings as the other test expects them.
    ttk_settings(
        &node.http,
        &[("VALIDATE_INBOUND_JWS", json!(false)), ("DEFAULT_USER_FSPID", json!("userdfsp"))],
    )
    .await;
}
