//! The outbound FSPIOP client: requests and callbacks to the switch.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;

use super::headers;
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

/// Sends FSPIOP messages to one switch (or peer) base URL.
#[derive(Debug, Clone)]
pub struct FspiopClient {
    http: reqwest::Client,
    base_url: String,
}

/// One FSPIOP message to send.
#[derive(Debug)]
pub struct Message<'a, B: Serialize> {
    pub method: Method,
    /// Path below the base URL, starting with '/'.
    pub path: String,
    /// The resource whose media type the message uses ("parties", "quotes", ...).
    pub resource: &'a str,
    pub source: &'a str,
    pub destination: Option<&'a str>,
    pub body: Option<&'a B>,
}

impl FspiopClient {
    /// Per-request time limit: FSPIOP requests are answered with 202 at once.
    pub const REQUEST_TIMEOUT_MS: u64 = 5_000;

    pub fn new(base_url: &str) -> Result<Self, SendError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(Self::REQUEST_TIMEOUT_MS))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| SendError::Transport(e.to_string()))?;
        Ok(Self::with_http(http, base_url))
    }

    pub fn with_http(http: reqwest::Client, base_url: &str) -> Self {
        FspiopClient { http, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends a message. Requests (GET, POST) carry `Accept`; callbacks (PUT,
    /// PATCH) do not, as the API definition requires.
    pub async fn send<B: Serialize>(&self, message: Message<'_, B>) -> Result<(), SendError> {
        let url = format!("{}{}", self.base_url, message.path);
        let started = std::time::Instant::now();
        let mut request = self
            .http
            .request(message.method.clone(), &url)
            .header("content-type", headers::content_type(message.resource))
            .header("date", headers::date_now())
            .header(headers::SOURCE, message.source);
        if matches!(message.method, Method::GET | Method::POST) {
            request = request.header("accept", headers::accept(message.resource));
        }
        if let Some(destination) = message.destination {
            request = request.header(headers::DESTINATION, destination);
        }
        if let Some(body) = message.body {
            let bytes = serde_json::to_vec(body).map_err(|e| SendError::Transport(e.to_string()))?;
            request = request.body(bytes);
        }
        let result = request.send().await;
        metrics::histogram!("payhub_connector_call_seconds", "connector" => "fspiop", "resource" => message.resource.to_owned())
            .record(started.elapsed().as_secs_f64());
        let response = result.map_err(|e| {
            metrics::counter!("payhub_connector_errors_total", "connector" => "fspiop").increment(1);
            SendError::Transport(format!("{} {url}: {e}", message.method))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        metrics::counter!("payhub_connector_errors_total", "connector" => "fspiop").increment(1);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SendError::Transport(format!("{} {url}: HTTP {status}", message.method)));
        }
        let body = response.json::<ErrorBody>().await.unwrap_or_else(|_| {
            ErrorBody::new(
                super::codes::COMMUNICATION_ERROR,
                format!("HTTP {status} without an FSPIOP error body"),
            )
        });
        Err(SendError::Rejected { status: status.as_u16(), body })
    }
}
