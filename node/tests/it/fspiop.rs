//! Speaking FSPIOP to a node from a test: requests as another DFSP would
//! send them, and a recording proxy to put between a node and its switch
//! (as its `switch_url`), which captures every message the node's tenants
//! send as it went on the wire and may alter some on their way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};

/// Sends an FSPIOP message from bluebank to greenbank at `base` (a tenant's
/// FSPIOP URL, `http://`), with the headers a DFSP sends (`Accept` on
/// requests only, no destination on `GET /parties`), in API `version`;
/// `omit` drops headers by lower-case name. It is written on the socket as
/// it is, so that a dropped header is really missing (HTTP clients add an
/// `Accept` of their own). Answers the status and the body.
#[allow(clippy::too_many_arguments)]
pub async fn fspiop_send(
    _http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    resource: &str,
    body: Option<&[u8]>,
    version: &str,
    omit: &[&str],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let major = version.split('.').next().unwrap_or(version);
    let mut headers = vec![
        ("content-type", format!("application/vnd.interoperability.{resource}+json;version={version}")),
        ("date", connectors::fspiop::headers::date_now()),
        ("fspiop-source", "bluebank".to_owned()),
    ];
    if matches!(method, "GET" | "POST") {
        headers.push(("accept", format!("application/vnd.interoperability.{resource}+json;version={major}")));
    }
    if resource != "parties" || method != "GET" {
        headers.push(("fspiop-destination", "greenbank".to_owned()));
    }
    let url = reqwest::Url::parse(&format!("{base}{path}")).expect("URL");
    let host = format!("{}:{}", url.host_str().expect("host"), url.port_or_known_default().expect("port"));
    let body = body.unwrap_or_default();
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let mut request = format!("{method} {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers.into_iter().filter(|(name, _)| !omit.contains(name)) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut stream = tokio::net::TcpStream::connect(&host).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send the head");
    // A server refusing the body may answer and close before it is all sent.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("answered in time");
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// [`fspiop_send`] of a JSON body (or none) with every header.
pub async fn fspiop_request(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    resource: &str,
    body: Option<&Value>,
    version: &str,
) -> (u16, Value) {
    let body = body.map(|b| serde_json::to_vec(b).expect("JSON"));
    fspiop_send(http, base, method, path, resource, body.as_deref(), version, &[]).await
}

/// The demo tenants as TOML `[[tenants]]`, one account of 1000.00 USD each
/// (bluebank's 27710000001, greenbank's 27710000006) and greenbank's
/// 27710000006 sub-id `savings` (1000.00 USD too), with `bluebank` and
/// `greenbank` added to each one's table (an `endpoint`, `fees`, ...).
pub fn tenants_toml(bluebank: &str, greenbank: &str) -> String {
    let tenant = |id: &str, party: &str, extra: &str| {
        let account = |sub_id: &str| {
            format!("{{ id_type = \"MSISDN\", identifier = \"{party}\", {sub_id}balance = \"1000.00\", currency = \"USD\" }}")
        };
        let savings = if id == "greenbank" {
            format!(", {}", account("sub_id = \"savings\", "))
        } else {
            String::new()
        };
        format!(
            "[[tenants]]\nid = \"{id}\"\nfsp_id = \"{id}\"\nilp_secret = \"demo-secret-{id}\"\n{extra}\n\
             demo_parties = [{}{savings}]\n",
            account("")
        )
    };
    format!(
        "{}\n{}",
        tenant("bluebank", "27710000001", bluebank),
        tenant("greenbank", "27710000006", greenbank)
    )
}

/// A `POST /quotes` body from bluebank's 27710000001 to greenbank's
/// 27710000006.
pub fn quote_body(quote_id: &str, amount: &str, currency: &str) -> Value {
    json!({
        "quoteId": quote_id,
        "transactionId": uuid::Uuid::new_v4().to_string(),
        "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000006", "fspId": "greenbank" } },
        "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" } },
        "amountType": "SEND",
        "amount": { "amount": amount, "currency": currency },
        "transactionType": { "scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER" }
    })
}

/// A demo node whose `switch_url` is a recording proxy in front of its own
/// switch simulator, with `extra` TOML.
pub async fn proxied_node(
    dir: &std::path::Path,
    extra: &str,
    rewrite: Option<Rewrite>,
) -> (crate::node::Node, Proxy) {
    let listen = crate::node::free_port();
    let proxy = Proxy::start(format!("http://{listen}"), rewrite).await;
    let config = dir.join("proxied.toml");
    std::fs::write(&config, format!("switch_url = \"http://{}/switch\"\n{extra}", proxy.address))
        .expect("write the configuration");
    let node = crate::node::Node::start_with(
        &["demo", "--config", &config.to_string_lossy()],
        listen,
        &dir.join("node"),
    )
    .await;
    (node, proxy)
}

/// A message as the proxy received it: `method`, `path` (as sent, with
/// the switch URL's path), `headers` (lower-case names) and `body` (text or
/// null).
pub type Recorded = Value;

/// Alters a message on its way: given its method, path and body, answers
/// the body to pass on, or none to swallow the message (it is answered 200
/// and goes no further, as if lost after its receipt).
pub type Rewrite = Arc<dyn Fn(&str, &str, Vec<u8>) -> Option<Vec<u8>> + Send + Sync>;

/// A recording proxy on a loopback port.
pub struct Proxy {
    pub address: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

#[derive(Clone)]
struct Forwarding {
    target: String,
    http: reqwest::Client,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    rewrite: Option<Rewrite>,
}

impl Proxy {
    /// Passes every request on to `target` (a base URL) and answers what it
    /// answered; records each as it arrived, before `rewrite`.
    pub async fn start(target: String, rewrite: Option<Rewrite>) -> Proxy {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let forwarding =
            Forwarding { target, http: reqwest::Client::new(), recorded: recorded.clone(), rewrite };
        let app = axum::Router::new().fallback(pass_on).with_state(forwarding);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the proxy") });
        Proxy { address, recorded }
    }

    /// What it received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("recorder").clone()
    }

    /// Waits until `done` holds for what it received; answers that.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let recorded = self.recorded();
                if done(&recorded) {
                    return recorded;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("{what} never reached the switch: {:#?}", self.recorded()))
    }
}

/// The messages to `path_suffix` (e.g. `/quotes/{id}/error`), in order.
pub fn sent_to<'a>(recorded: &'a [Recorded], path_suffix: &str) -> Vec<&'a Recorded> {
    recorded.iter().filter(|m| m["path"].as_str().is_some_and(|p| p.ends_with(path_suffix))).collect()
}

/// A recorded message's body as JSON.
pub fn body_of(message: &Recorded) -> Value {
    serde_json::from_str(message["body"].as_str().unwrap_or("null")).expect("a JSON body")
}

async fn pass_on(State(proxy): State<Forwarding>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default().to_vec();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), Value::from(value.to_str().unwrap_or_default())))
        .collect();
    proxy.recorded.lock().expect("recorder").push(json!({
        "method": parts.method.as_str(),
        "path": path,
        "headers": headers,
        "body": if body.is_empty() { Value::Null } else { String::from_utf8_lossy(&body).into() },
    }));
    let body = match &proxy.rewrite {
        Some(rewrite) => match rewrite(parts.method.as_str(), &path, body) {
            Some(body) => body,
            None => return Response::builder().status(200).body(Body::empty()).expect("response"),
        },
        None => body,
    };
    let mut onward = proxy.http.request(parts.method, format!("{}{path}", proxy.target));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            onward = onward.header(name, value);
        }
    }
    match onward.body(body).send().await {
        Ok(answer) => {
            let status = answer.status();
            let bytes = answer.bytes().await.unwrap_or_default();
            Response::builder().status(status).body(Body::from(bytes)).expect("response")
        }
        Err(error) => Response::builder().status(502).body(Body::from(error.to_string())).expect("response"),
    }
}
