//! The outbound FSPIOP client: requests and callbacks to the switch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;

use super::headers;
use super::jws::{self, Signer};
use super::types::ErrorBody;

/// Why an FSPIOP message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer answered with an FSPIOP error: a business or validation
    /// failure that resending will not cure.
    #[error("rejected with HTTP {status}: {} {}", body.error_information.error_code, body.error_information.error_description)]
    Rejected { status: u16, body: ErrorBody },
    /// The message may not have arrived (connection, timeout, 5xx): resending
    /// with the same ids is safe.
    #[error("not delivered: {0}")]
    Transport(String),
}

/// Sends FSPIOP messages to a switch or peer, served at one base URL or at
/// several (the nodes of a cluster). Cloning is cheap; clones share the
/// connection pool and the choice of URL.
#[derive(Debug, Clone)]
pub struct FspiopClient {
    http: reqwest::Client,
    base_urls: Arc<[String]>,
    /// The index of the URL tried first: the last one that answered, or the
    /// one after the last that could not be reached; with `spread`, the
    /// next one for each message.
    preferred: Arc<AtomicUsize>,
    /// Send each message to the next URL in turn, as a load balancer in
    /// front of a cluster's nodes would (the switch simulator's option).
    spread: bool,
    /// JWS keys of the DFSPs whose messages this client signs, by FSP id.
    signers: Arc<BTreeMap<String, Signer>>,
    /// Connection pools presenting a sender's TLS client certificate, by
    /// FSP id (`FSPIOP-Source`); other senders use `http`.
    identities: Arc<BTreeMap<String, reqwest::Client>>,
}

/// One FSPIOP message to send.
#[derive(Debug)]
pub struct Message<'a, B: Serialize> {
    pub method: Method,
    /// Path below the base URL, starting with '/'.
    pub path: String,
    /// The resource whose media type the message uses ("parties", "quotes", ...).
    pub resource: &'a str,
    /// The API version of its `Content-Type`: [`headers::VERSION`] for a
    /// request payhub starts, the negotiated one for a callback.
    pub version: headers::ApiVersion,
    pub source: &'a str,
    pub destination: Option<&'a str>,
    pub body: Option<&'a B>,
}

/// A message ready to send as it is: [`FspiopClient::send_raw`].
#[derive(Debug, Clone)]
pub struct RawMessage<'a> {
    pub method: Method,
    pub path: String,
    pub resource: &'a str,
    pub version: headers::ApiVersion,
    pub source: &'a str,
    pub destination: Option<&'a str>,
    /// The `Date` header (a signature protects it).
    pub date: String,
    /// More headers: `FSPIOP-Signature`, `FSPIOP-URI`, `FSPIOP-HTTP-Method`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

/// How one attempt on one base URL ended.
enum Attempt {
    /// The peer answered: final, whatever it said.
    Answered(Result<(), SendError>),
    /// No answer (connection refused or reset, timeout): the next URL may do.
    NotDelivered(String),
}

impl FspiopClient {
    /// Per-request time limit: FSPIOP requests are answered with 202 at once.
    pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
    /// Time limit of establishing a connection, so that a dead node of a
    /// multi-node peer is passed over quickly.
    pub const CONNECT_TIMEOUT_MS: u64 = 2_000;

    pub fn new(base_url: &str) -> Result<Self, SendError> {
        Self::with_urls(&[base_url.to_owned()])
    }

    /// A client of a peer served by several nodes: a message that cannot be
    /// delivered to one URL is tried on the next (see [`FspiopClient::send`]).
    pub fn with_urls(base_urls: &[String]) -> Result<Self, SendError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(Self::REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(Self::CONNECT_TIMEOUT_MS))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| SendError::Transport(e.to_string()))?;
        Ok(Self::with_http_urls(http, base_urls))
    }

    pub fn with_http(http: reqwest::Client, base_url: &str) -> Self {
        Self::with_http_urls(http, &[base_url.to_owned()])
    }

    /// [`FspiopClient::with_urls`] on an existing connection pool.
    pub fn with_http_urls(http: reqwest::Client, base_urls: &[String]) -> Self {
        let base_urls = base_urls.iter().map(|url| url.trim_end_matches('/').to_owned()).collect();
        FspiopClient {
            http,
            base_urls,
            preferred: Arc::default(),
            spread: false,
            signers: Arc::default(),
            identities: Arc::default(),
        }
    }

    /// Sends each message to the next base URL in turn (see `spread`).
    pub fn spreading(mut self, spread: bool) -> Self {
        self.spread = spread;
        self
    }

    /// The first base URL.
    pub fn base_url(&self) -> &str {
        self.base_urls.first().map(String::as_str).unwrap_or_default()
    }

    pub fn base_urls(&self) -> &[String] {
        &self.base_urls
    }

    /// Signs the messages of the DFSPs in `signers` (by FSP id, the
    /// `FSPIOP-Source` they send as) with their JWS keys.
    pub fn with_signers(mut self, signers: Arc<BTreeMap<String, Signer>>) -> Self {
        self.signers = signers;
        self
    }

    /// Sends the messages of the DFSPs in `identities` (by FSP id) through
    /// their own connection pools, which present their TLS client
    /// certificates (mutual TLS).
    pub fn with_identities(mut self, identities: Arc<BTreeMap<String, reqwest::Client>>) -> Self {
        self.identities = identities;
        self
    }

    /// Sends a message. Requests (GET, POST, DELETE) carry `Accept`; callbacks (PUT,
    /// PATCH) do not, as the API definition requires. A message with a body
    /// from a DFSP that has a JWS key is signed (`FSPIOP-Signature`,
    /// `FSPIOP-URI`, `FSPIOP-HTTP-Method`), and its body sent as signed.
    ///
    /// With several base URLs, a message that got no answer (connection
    /// refused or reset, timeout) is sent to the next URL, each at most once,
    /// starting from the last one that answered; resending is safe because
    /// every FSPIOP message is idempotent by its id. Any HTTP answer, an
    /// FSPIOP error included, is final and is not tried elsewhere.
    pub async fn send<B: Serialize>(&self, message: Message<'_, B>) -> Result<(), SendError> {
        let body = message
            .body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| SendError::Transport(e.to_string()))?;
        let date = headers::date_now();
        let mut extra = Vec::new();
        let body = match (self.signers.get(message.source), body) {
            (Some(signer), Some(body)) => {
                let parts = jws::RequestParts {
                    method: message.method.as_str(),
                    url: &message.path,
                    source: message.source,
                    destination: message.destination,
                    date: Some(&date),
                    body: Some(&body),
                };
                let signed = signer.sign(&parts).map_err(|e| {
                    SendError::Transport(format!("cannot sign {} {}: {e}", message.method, message.path))
                })?;
                match signed {
                    Some(signed) => {
                        extra.extend(signed.headers().map(|(name, value)| (name, value.to_owned())));
                        Some(signed.body)
                    }
                    None => Some(body),
                }
            }
            (_, body) => body,
        };
        let raw = RawMessage {
            method: message.method,
            path: message.path,
            resource: message.resource,
            version: message.version,
            source: message.source,
            destination: message.destination,
            date,
            headers: extra,
            body,
        };
        self.send_raw(raw).await
    }

    /// Sends a message exactly as given: a switch passing on what a DFSP
    /// sent, its body bytes and signature headers untouched (see
    /// [`Message`] and [`FspiopClient::send`] for the rest).
    pub async fn send_raw(&self, message: RawMessage<'_>) -> Result<(), SendError> {
        let count = self.base_urls.len();
        if count == 0 {
            return Err(SendError::Transport(format!(
                "{} {}: no base URL configured",
                message.method, message.path
            )));
        }
        let first = match self.spread {
            true => self.preferred.fetch_add(1, Ordering::Relaxed),
            false => self.preferred.load(Ordering::Relaxed),
        } % count;
        let mut failures = Vec::new();
        for offset in 0..count {
            let index = (first + offset) % count;
            match self.attempt(&self.base_urls[index], &message).await {
                Attempt::Answered(result) => {
                    // Spreading, the counter has already moved on to the
                    // next URL: storing this one would send the next
                    // message here again.
                    if !self.spread {
                        self.preferred.store(index, Ordering::Relaxed);
                    }
                    return result;
                }
                Attempt::NotDelivered(error) => {
                    // Rotate past the unreachable URL, unless a concurrent
                    // message already moved the preference elsewhere.
                    let _ = self.preferred.compare_exchange(
                        index,
                        (index + 1) % count,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if offset + 1 < count {
                        tracing::warn!(%error, "FSPIOP peer unreachable; trying its next URL");
                    }
                    failures.push(error);
                }
            }
        }
        Err(SendError::Transport(failures.join("; ")))
    }

    async fn attempt(&self, base_url: &str, message: &RawMessage<'_>) -> Attempt {
        let url = format!("{base_url}{}", message.path);
        let started = std::time::Instant::now();
        let http = self.identities.get(message.source).unwrap_or(&self.http);
        let mut request = http
            .request(message.method.clone(), &url)
            .header("content-type", headers::content_type(message.resource, message.version))
            .header("date", &message.date)
            .header(headers::SOURCE, message.source);
        if matches!(message.method, Method::GET | Method::POST | Method::DELETE) {
            request = request.header("accept", headers::accept(message.resource));
        }
        if let Some(destination) = message.destination {
            request = request.header(headers::DESTINATION, destination);
        }
        for (name, value) in &message.headers {
            request = request.header(*name, value);
        }
        if let Some(bytes) = &message.body {
            request = request.body(bytes.clone());
        }
        let result = request.send().await;
        metrics::histogram!("payhub_connector_call_seconds", "connector" => "fspiop", "resource" => message.resource.to_owned())
            .record(started.elapsed().as_secs_f64());
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                metrics::counter!("payhub_connector_errors_total", "connector" => "fspiop").increment(1);
                return Attempt::NotDelivered(format!("{} {url}: {e}", message.method));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Answered(Ok(()));
        }
        metrics::counter!("payhub_connector_errors_total", "connector" => "fspiop").increment(1);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Answered(Err(SendError::Transport(format!(
                "{} {url}: HTTP {status}",
                message.method
            ))));
        }
        let body = response.json::<ErrorBody>().await.unwrap_or_else(|_| {
            ErrorBody::new(
                super::codes::COMMUNICATION_ERROR,
                format!("HTTP {status} without an FSPIOP error body"),
            )
        });
        Attempt::Answered(Err(SendError::Rejected { status: status.as_u16(), body }))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU32;

    use axum::http::StatusCode as AxumStatus;
    use axum::routing::put;
    use axum::Router;

    use super::*;

    /// An HTTP peer on 127.0.0.1 answering every `PUT /parties/...` with
    /// `status`, and counting what it received.
    async fn peer(status: AxumStatus) -> (SocketAddr, Arc<AtomicU32>) {
        let received = Arc::new(AtomicU32::new(0));
        let counter = received.clone();
        let app = Router::new().route(
            "/parties/{id_type}/{id}",
            put(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = ErrorBody::new(super::super::codes::PARTY_NOT_FOUND, "no such party");
                    (status, axum::Json(body))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (address, received)
    }

    /// A loopback address nothing listens on: connections are refused.
    fn refusing() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.local_addr().expect("local address")
        // The listener closes here, so the port refuses connections.
    }

    /// A loopback listener that accepts connections and closes them at once
    /// (a connection reset before any answer), counting them.
    async fn resetting() -> (SocketAddr, Arc<AtomicU32>) {
        let accepted = Arc::new(AtomicU32::new(0));
        let counter = accepted.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        (address, accepted)
    }

    fn put_party() -> Message<'static, serde_json::Value> {
        Message {
            method: Method::PUT,
            path: "/parties/MSISDN/27710000001".into(),
            resource: "parties",
            version: headers::VERSION,
            source: "bluebank",
            destination: Some("greenbank"),
            body: None,
        }
    }

    fn client(addresses: &[SocketAddr]) -> FspiopClient {
        let urls: Vec<String> = addresses.iter().map(|a| format!("http://{a}/")).collect();
        FspiopClient::with_urls(&urls).expect("client")
    }

    #[tokio::test]
    async fn a_refused_connection_fails_over_to_the_next_url() {
        let (live, received) = peer(AxumStatus::OK).await;
        let client = client(&[refusing(), live]);
        assert_eq!(client.send(put_party()).await, Ok(()));
        assert_eq!(received.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_reset_connection_fails_over_and_the_next_message_starts_at_the_live_url() {
        let (dead, accepted) = resetting().await;
        let (live, received) = peer(AxumStatus::OK).await;
        let client = client(&[dead, live]);
        assert_eq!(client.send(put_party()).await, Ok(()));
        assert_eq!((accepted.load(Ordering::SeqCst), received.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(client.clone().send(put_party()).await, Ok(()));
        assert_eq!(
            (accepted.load(Ordering::SeqCst), received.load(Ordering::SeqCst)),
            (1, 2),
            "the unreachable URL was tried first again"
        );
    }

    #[tokio::test]
    async fn an_fspiop_error_answer_is_not_tried_on_another_url() {
        let (rejecting, rejected) = peer(AxumStatus::BAD_REQUEST).await;
        let (live, received) = peer(AxumStatus::OK).await;
        let client = client(&[rejecting, live]);
        let result = client.send(put_party()).await;
        assert!(matches!(result, Err(SendError::Rejected { status: 400, .. })), "{result:?}");
        assert_eq!((rejected.load(Ordering::SeqCst), received.load(Ordering::SeqCst)), (1, 0));
    }

    #[tokio::test]
    async fn spreading_sends_each_message_to_the_next_url_and_skips_an_unreachable_one() {
        let peers = [peer(AxumStatus::OK).await, peer(AxumStatus::OK).await, peer(AxumStatus::OK).await];
        let addresses: Vec<SocketAddr> = peers.iter().map(|(address, _)| *address).collect();
        let spreading = client(&addresses).spreading(true);
        for _ in 0..6 {
            assert_eq!(spreading.send(put_party()).await, Ok(()));
        }
        let counts: Vec<u32> = peers.iter().map(|(_, received)| received.load(Ordering::SeqCst)).collect();
        assert_eq!(counts, [2, 2, 2], "one message in turn to each URL");

        // An unreachable URL among them: its turns go to the next URL.
        let (live, received) = peer(AxumStatus::OK).await;
        let spreading = client(&[refusing(), live]).spreading(true);
        for _ in 0..4 {
            assert_eq!(spreading.send(put_party()).await, Ok(()));
        }
        assert_eq!(received.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn no_reachable_url_is_a_transport_error_naming_each() {
        let (first, second) = (refusing(), refusing());
        let result = client(&[first, second]).send(put_party()).await;
        match result {
            Err(SendError::Transport(error)) => {
                assert!(error.contains(&first.to_string()) && error.contains(&second.to_string()), "{error}")
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
}
