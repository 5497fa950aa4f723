//! The AMS (the bank's core banking system) as the payer flow and the payee
//! side use it: the [`Ams`] trait, implemented by the built-in [`Ledger`]
//! (in-process: the single-node default) and by [`AmsClient`] (an external
//! AMS over HTTP: what a cluster needs, so that whichever node runs a
//! transaction's effects books them on the same accounts). [`router`] serves
//! a [`Ledger`] as that HTTP API (the `payhub sim` process does).
//!
//! The API, JSON, amounts as decimal strings (never JSON numbers):
//!
//! - `GET /ams/{tenant}/accounts/{idType}/{id}[/{subId}]`: 200 with
//!   `{currency, balance, reserved, incoming, available}`;
//! - `PUT /ams/{tenant}/holds/{hold}` with `{direction: "debit"|"credit",
//!   party: {partyIdType, partyIdentifier, partySubIdOrType?}, amount,
//!   currency}`: 204 once the
//!   funds are held (debit, payer side) or the pending credit is accepted
//!   (credit, payee side);
//! - `POST /ams/{tenant}/holds/{hold}/commit` and `.../release`: 204.
//!
//! Every operation is idempotent by the hold id, as the ledger is. A refusal
//! is a problem details body (RFC 9457, `application/problem+json`) with a
//! machine-readable `code` (see [`codes`]) and the members that rebuild the
//! same [`LedgerError`] on the client; bad input is a 400 naming the `field`.
//! On the client, a transport failure, a timeout or a 5xx is
//! [`LedgerError::Unavailable`], which callers retry.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest::{Method, Url};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use actors::model::{Amount, Currency, ModelError, Party, PartyIdType, TenantId};

use crate::ledger::{Balance, HoldState, Ledger, LedgerError, Result};

/// What the payer flow and the payee side need of a bank's core system.
/// Every operation on a hold is idempotent by the hold's id.
#[async_trait::async_trait]
pub trait Ams: Send + Sync + std::fmt::Debug {
    /// The party's account, if the tenant has one.
    async fn balance(&self, tenant: &TenantId, party: &Party) -> Result<Option<Balance>>;
    /// Holds `amount` of the payer's available funds under `hold`.
    async fn reserve(&self, tenant: &TenantId, hold: Uuid, payer: &Party, amount: Amount) -> Result<()>;
    /// Accepts `amount` as a pending credit for the payee under `hold`.
    async fn reserve_credit(
        &self,
        tenant: &TenantId,
        hold: Uuid,
        payee: &Party,
        amount: Amount,
    ) -> Result<()>;
    /// Books a hold.
    async fn commit(&self, tenant: &TenantId, hold: Uuid) -> Result<()>;
    /// Cancels a hold (and forbids it if it does not exist yet).
    async fn release(&self, tenant: &TenantId, hold: Uuid) -> Result<()>;
    /// The state of a hold, if it exists: whether it was booked or released
    /// already, by whichever node asked.
    async fn hold_state(&self, tenant: &TenantId, hold: Uuid) -> Result<Option<HoldState>>;
}

#[async_trait::async_trait]
impl Ams for Ledger {
    async fn balance(&self, tenant: &TenantId, party: &Party) -> Result<Option<Balance>> {
        Ledger::balance(self, tenant, party)
    }

    async fn reserve(&self, tenant: &TenantId, hold: Uuid, payer: &Party, amount: Amount) -> Result<()> {
        Ledger::reserve(self, tenant, hold, payer, amount).await
    }

    async fn reserve_credit(
        &self,
        tenant: &TenantId,
        hold: Uuid,
        payee: &Party,
        amount: Amount,
    ) -> Result<()> {
        Ledger::reserve_credit(self, tenant, hold, payee, amount).await
    }

    async fn commit(&self, tenant: &TenantId, hold: Uuid) -> Result<()> {
        Ledger::commit(self, tenant, hold).await
    }

    async fn release(&self, tenant: &TenantId, hold: Uuid) -> Result<()> {
        Ledger::release(self, tenant, hold).await
    }

    async fn hold_state(&self, tenant: &TenantId, hold: Uuid) -> Result<Option<HoldState>> {
        Ledger::hold_state(self, tenant, hold)
    }
}

/// The `code` member of the API's problem details.
pub mod codes {
    /// 404: the tenant has no account for the party. Member `account`.
    pub const UNKNOWN_ACCOUNT: &str = "UNKNOWN_ACCOUNT";
    /// 422: the account holds another currency. Members `account`,
    /// `accountCurrency`, `requestedCurrency`.
    pub const CURRENCY_MISMATCH: &str = "CURRENCY_MISMATCH";
    /// 422: the payer's available funds do not cover the amount. Member `account`.
    pub const INSUFFICIENT_FUNDS: &str = "INSUFFICIENT_FUNDS";
    /// 404: no such hold to commit. Member `hold`.
    pub const UNKNOWN_HOLD: &str = "UNKNOWN_HOLD";
    /// 409: the hold is already committed or released. Members `hold`, `holdState`.
    pub const HOLD_CLOSED: &str = "HOLD_CLOSED";
    /// 409: the hold id was used with other terms. Member `hold`.
    pub const HOLD_CONFLICT: &str = "HOLD_CONFLICT";
    /// 400: bad input. Member `field` names it.
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// 503: the AMS cannot serve now (its storage failed); retry.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// 500: a bug in the AMS.
    pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";
}

const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem details body of the AMS API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    detail: String,
    code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hold: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hold_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.into(),
            ..Problem::default()
        }
    }
}

/// Bad input to the API: answered 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BadInput {
    field: String,
    detail: String,
}

impl BadInput {
    fn new(field: &str, detail: impl Into<String>) -> Self {
        BadInput { field: field.into(), detail: detail.into() }
    }
}

impl IntoResponse for BadInput {
    fn into_response(self) -> Response {
        let detail = format!("{}: {}", self.field, self.detail);
        Problem {
            field: Some(self.field),
            ..Problem::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, detail)
        }
        .into_response()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = (status, [("content-type", PROBLEM_CONTENT_TYPE)], Json(self)).into_response();
        if retry {
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

fn hold_state_name(state: HoldState) -> &'static str {
    match state {
        HoldState::Held => "HELD",
        HoldState::Committed => "COMMITTED",
        HoldState::Released => "RELEASED",
    }
}

fn hold_state_of(name: &str) -> Option<HoldState> {
    match name {
        "HELD" => Some(HoldState::Held),
        "COMMITTED" => Some(HoldState::Committed),
        "RELEASED" => Some(HoldState::Released),
        _ => None,
    }
}

/// The problem a ledger error is answered with.
fn problem_of(error: &LedgerError) -> Problem {
    let detail = error.to_string();
    match error {
        LedgerError::UnknownAccount(account) => Problem {
            account: Some(account.clone()),
            ..Problem::new(StatusCode::NOT_FOUND, codes::UNKNOWN_ACCOUNT, detail)
        },
        LedgerError::CurrencyMismatch { account, account_currency, requested } => Problem {
            account: Some(account.clone()),
            account_currency: Some(account_currency.to_string()),
            requested_currency: Some(requested.to_string()),
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, codes::CURRENCY_MISMATCH, detail)
        },
        LedgerError::InsufficientFunds(account) => Problem {
            account: Some(account.clone()),
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, codes::INSUFFICIENT_FUNDS, detail)
        },
        LedgerError::UnknownHold(hold) => {
            Problem { hold: Some(*hold), ..Problem::new(StatusCode::NOT_FOUND, codes::UNKNOWN_HOLD, detail) }
        }
        LedgerError::HoldClosed { hold, state } => Problem {
            hold: Some(*hold),
            hold_state: Some(hold_state_name(*state).into()),
            ..Problem::new(StatusCode::CONFLICT, codes::HOLD_CLOSED, detail)
        },
        LedgerError::HoldConflict(hold) => {
            Problem { hold: Some(*hold), ..Problem::new(StatusCode::CONFLICT, codes::HOLD_CONFLICT, detail) }
        }
        LedgerError::Storage(_) | LedgerError::Unavailable(_) => {
            tracing::error!(%error, "AMS API cannot serve a request");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, detail)
        }
        LedgerError::Protocol(_) => {
            tracing::error!(%error, "AMS API failed a request");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, detail)
        }
    }
}

/// The ledger error a refusal of the API stands for. Anything the client
/// cannot read as one of the API's refusals is a protocol error, except a
/// 5xx, 408 or 429, which mean "not now".
fn error_of(status: StatusCode, content_type: Option<&str>, body: &[u8]) -> LedgerError {
    let problem = content_type
        .filter(|t| t.split(';').next().map(str::trim) == Some(PROBLEM_CONTENT_TYPE))
        .and_then(|_| serde_json::from_slice::<Problem>(body).ok());
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        let detail = problem.map(|p| p.detail).unwrap_or_default();
        return LedgerError::Unavailable(format!("HTTP {status} {detail}").trim_end().to_owned());
    }
    let Some(problem) = problem else {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return LedgerError::Protocol(format!("HTTP {status} without problem details: {text:?}"));
    };
    rebuild(status, &problem).unwrap_or_else(|error| error)
}

/// The ledger error a problem of the API names, or why it names none.
fn rebuild(status: StatusCode, problem: &Problem) -> Result<LedgerError> {
    let lacking = |member: &str| {
        LedgerError::Protocol(format!("HTTP {status} problem {} lacks a valid `{member}`", problem.code))
    };
    let account = || problem.account.clone().ok_or_else(|| lacking("account"));
    let hold = || problem.hold.ok_or_else(|| lacking("hold"));
    let currency = |value: &Option<String>, member: &str| {
        value.as_deref().and_then(|c| c.parse::<Currency>().ok()).ok_or_else(|| lacking(member))
    };
    Ok(match problem.code.as_str() {
        codes::UNKNOWN_ACCOUNT => LedgerError::UnknownAccount(account()?),
        codes::INSUFFICIENT_FUNDS => LedgerError::InsufficientFunds(account()?),
        codes::CURRENCY_MISMATCH => LedgerError::CurrencyMismatch {
            account: account()?,
            account_currency: currency(&problem.account_currency, "accountCurrency")?,
            requested: currency(&problem.requested_currency, "requestedCurrency")?,
        },
        codes::UNKNOWN_HOLD => LedgerError::UnknownHold(hold()?),
        codes::HOLD_CONFLICT => LedgerError::HoldConflict(hold()?),
        codes::HOLD_CLOSED => LedgerError::HoldClosed {
            hold: hold()?,
            state: problem
                .hold_state
                .as_deref()
                .and_then(hold_state_of)
                .ok_or_else(|| lacking("holdState"))?,
        },
        code => LedgerError::Protocol(format!("HTTP {status} {code}: {}", problem.detail)),
    })
}

/// An account's figures on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountBody {
    currency: Currency,
    #[serde(with = "rust_decimal::serde::str")]
    balance: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    reserved: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    incoming: Decimal,
    /// Informative (balance - reserved); the client ignores it.
    #[serde(with = "rust_decimal::serde::str", default)]
    available: Decimal,
}

impl From<&Balance> for AccountBody {
    fn from(b: &Balance) -> Self {
        AccountBody {
            currency: b.currency,
            balance: b.balance,
            reserved: b.reserved,
            incoming: b.incoming,
            available: b.available(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Debit,
    Credit,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "debit",
            Direction::Credit => "credit",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartyBody<'a> {
    party_id_type: &'a str,
    party_identifier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    party_sub_id_or_type: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct HoldBody<'a> {
    direction: &'static str,
    party: PartyBody<'a>,
    amount: String,
    currency: &'a str,
}

/// The largest request body the AMS API accepts.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// Serves `ledger` as the AMS API, under `/ams`.
pub fn router(ledger: Ledger) -> Router {
    Router::new()
        .route("/ams/{tenant}/accounts/{id_type}/{id}", get(get_account))
        .route("/ams/{tenant}/accounts/{id_type}/{id}/{sub_id}", get(get_sub_account))
        .route("/ams/{tenant}/holds/{hold}", get(get_hold).put(put_hold))
        .route("/ams/{tenant}/holds/{hold}/commit", post(commit_hold))
        .route("/ams/{tenant}/holds/{hold}/release", post(release_hold))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(ledger)
}

fn tenant_in(value: String) -> std::result::Result<TenantId, BadInput> {
    TenantId::try_from(value)
        .map_err(|_| BadInput::new("tenant", "must be 1 to 32 lower-case letters, digits or '-'"))
}

fn hold_in(value: &str) -> std::result::Result<Uuid, BadInput> {
    Uuid::parse_str(value).map_err(|_| BadInput::new("hold", "must be a UUID"))
}

/// A model validation failure, named by the field of this API it came from.
fn invalid_model(prefix: &str, error: ModelError) -> BadInput {
    let ModelError::Invalid { field, reason } = error;
    BadInput::new(&format!("{prefix}{field}"), reason)
}

fn answer(result: Result<()>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => problem_of(&error).into_response(),
    }
}

fn account_in(
    tenant: String,
    id_type: &str,
    id: &str,
    sub_id: Option<&str>,
) -> std::result::Result<(TenantId, Party), BadInput> {
    let tenant = tenant_in(tenant)?;
    let id_type: PartyIdType = id_type.parse().map_err(|e| invalid_model("", e))?;
    let party = Party::with_sub_id(id_type, id, sub_id).map_err(|e| invalid_model("", e))?;
    Ok((tenant, party))
}

async fn get_account(
    State(ledger): State<Ledger>,
    Path((tenant, id_type, id)): Path<(String, String, String)>,
) -> Response {
    account(&ledger, account_in(tenant, &id_type, &id, None))
}

async fn get_sub_account(
    State(ledger): State<Ledger>,
    Path((tenant, id_type, id, sub_id)): Path<(String, String, String, String)>,
) -> Response {
    account(&ledger, account_in(tenant, &id_type, &id, Some(&sub_id)))
}

fn account(ledger: &Ledger, found: std::result::Result<(TenantId, Party), BadInput>) -> Response {
    let (tenant, party) = match found {
        Ok(found) => found,
        Err(problem) => return problem.into_response(),
    };
    match ledger.balance(&tenant, &party) {
        Ok(Some(balance)) => Json(AccountBody::from(&balance)).into_response(),
        Ok(None) => problem_of(&LedgerError::UnknownAccount(party.to_string())).into_response(),
        Err(error) => problem_of(&error).into_response(),
    }
}

/// A text member of a JSON object, or a problem naming it.
fn text<'a>(object: &'a Value, path: &str, key: &str) -> std::result::Result<&'a str, BadInput> {
    let field = format!("{path}{key}");
    match object.get(key) {
        Some(Value::String(value)) => Ok(value),
        Some(Value::Number(_)) => {
            Err(BadInput::new(&field, "must be a string (amounts are decimal strings)"))
        }
        Some(_) => Err(BadInput::new(&field, "must be a string")),
        None => Err(BadInput::new(&field, "is missing")),
    }
}

/// Parses a hold request; a problem names the bad field.
fn parse_hold(bytes: &[u8]) -> std::result::Result<(Direction, Party, Amount), BadInput> {
    let body: Value =
        serde_json::from_slice(bytes).map_err(|e| BadInput::new("body", format!("malformed JSON: {e}")))?;
    if !body.is_object() {
        return Err(BadInput::new("body", "must be a JSON object"));
    }
    let direction = match text(&body, "", "direction")? {
        "debit" => Direction::Debit,
        "credit" => Direction::Credit,
        other => return Err(BadInput::new("direction", format!("{other:?} is not \"debit\" or \"credit\""))),
    };
    let party = match body.get("party") {
        Some(party @ Value::Object(_)) => party,
        Some(_) => return Err(BadInput::new("party", "must be an object")),
        None => return Err(BadInput::new("party", "is missing")),
    };
    let id_type: PartyIdType =
        text(party, "party.", "partyIdType")?.parse().map_err(|e| invalid_model("party.", e))?;
    let sub_id = match party.get("partySubIdOrType") {
        None | Some(Value::Null) => None,
        Some(_) => Some(text(party, "party.", "partySubIdOrType")?),
    };
    let party = Party::with_sub_id(id_type, text(party, "party.", "partyIdentifier")?, sub_id)
        .map_err(|e| invalid_model("party.", e))?;
    let amount = Amount::parse_positive(text(&body, "", "amount")?, text(&body, "", "currency")?)
        .map_err(|e| invalid_model("", e))?;
    Ok((direction, party, amount))
}

async fn put_hold(
    State(ledger): State<Ledger>,
    Path((tenant, hold)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (tenant, hold, (direction, party, amount)) =
        match (tenant_in(tenant), hold_in(&hold), parse_hold(&body)) {
            (Ok(tenant), Ok(hold), Ok(request)) => (tenant, hold, request),
            (Err(problem), _, _) | (_, Err(problem), _) | (_, _, Err(problem)) => {
                return problem.into_response()
            }
        };
    let result = match direction {
        Direction::Debit => ledger.reserve(&tenant, hold, &party, amount).await,
        Direction::Credit => ledger.reserve_credit(&tenant, hold, &party, amount).await,
    };
    answer(result)
}

/// `GET /ams/{tenant}/holds/{hold}`: `{"state": "HELD" | "COMMITTED" | "RELEASED"}`.
async fn get_hold(State(ledger): State<Ledger>, Path((tenant, hold)): Path<(String, String)>) -> Response {
    let (tenant, hold) = match (tenant_in(tenant), hold_in(&hold)) {
        (Ok(tenant), Ok(hold)) => (tenant, hold),
        (Err(problem), _) | (_, Err(problem)) => return problem.into_response(),
    };
    match ledger.hold_state(&tenant, hold) {
        Ok(Some(state)) => Json(serde_json::json!({ "state": hold_state_name(state) })).into_response(),
        Ok(None) => problem_of(&LedgerError::UnknownHold(hold)).into_response(),
        Err(error) => problem_of(&error).into_response(),
    }
}

async fn commit_hold(State(ledger): State<Ledger>, Path((tenant, hold)): Path<(String, String)>) -> Response {
    match (tenant_in(tenant), hold_in(&hold)) {
        (Ok(tenant), Ok(hold)) => answer(ledger.commit(&tenant, hold).await),
        (Err(problem), _) | (_, Err(problem)) => problem.into_response(),
    }
}

async fn release_hold(
    State(ledger): State<Ledger>,
    Path((tenant, hold)): Path<(String, String)>,
) -> Response {
    match (tenant_in(tenant), hold_in(&hold)) {
        (Ok(tenant), Ok(hold)) => answer(ledger.release(&tenant, hold).await),
        (Err(problem), _) | (_, Err(problem)) => problem.into_response(),
    }
}

/// An external AMS reached over HTTP (the API [`router`] serves). Cloning is
/// cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct AmsClient {
    http: reqwest::Client,
    base_url: Url,
    /// Time limit of one request, connection included.
    request_timeout: Duration,
}

impl AmsClient {
    /// Time limit of establishing a connection, so a dead host fails fast.
    pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
    /// Idle connections kept per host for reuse.
    pub const IDLE_CONNECTIONS_PER_HOST_MAX: usize = 64;

    /// A client of the AMS at `base_url` (e.g. `http://127.0.0.1:8090`; the
    /// API's paths start with `/ams` below it), each request limited to
    /// `request_timeout_ms`.
    pub fn new(base_url: &str, request_timeout_ms: u64) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(Self::CONNECT_TIMEOUT_MS))
            .pool_max_idle_per_host(Self::IDLE_CONNECTIONS_PER_HOST_MAX)
            .build()
            .map_err(|e| LedgerError::Protocol(format!("cannot build the AMS HTTP client: {e}")))?;
        Self::with_http(http, base_url, request_timeout_ms)
    }

    /// A client on an existing connection pool.
    pub fn with_http(http: reqwest::Client, base_url: &str, request_timeout_ms: u64) -> Result<Self> {
        let base_url = Url::parse(base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base() && u.has_host())
            .ok_or_else(|| {
                LedgerError::Protocol(format!("AMS base URL {base_url:?} is not an http(s) URL"))
            })?;
        Ok(AmsClient { http, base_url, request_timeout: Duration::from_millis(request_timeout_ms.max(1)) })
    }

    pub fn base_url(&self) -> &str {
        self.base_url.as_str()
    }

    /// `{base}/ams/{tenant}/{segments...}`, each segment percent-encoded.
    fn url(&self, tenant: &TenantId, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        // Cannot fail: `with_http` accepts only URLs that can be a base.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("ams").push(tenant.as_str()).extend(segments);
        }
        url
    }

    /// Sends one request; answers the body of a 2xx, or the error it means.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes> {
        let started = Instant::now();
        let mut request = self.http.request(method.clone(), url.clone()).timeout(self.request_timeout);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let result = async {
            let response =
                request.send().await.map_err(|e| LedgerError::Unavailable(format!("{method} {url}: {e}")))?;
            let status = response.status();
            let content_type =
                response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = response
                .bytes()
                .await
                .map_err(|e| LedgerError::Unavailable(format!("{method} {url}: reading the answer: {e}")))?;
            if status.is_success() {
                Ok(bytes)
            } else {
                Err(error_of(status, content_type.as_deref(), &bytes))
            }
        }
        .await;
        metrics::histogram!("payhub_connector_call_seconds", "connector" => "ams", "resource" => operation)
            .record(started.elapsed().as_secs_f64());
        if let Err(error @ (LedgerError::Unavailable(_) | LedgerError::Protocol(_))) = &result {
            metrics::counter!("payhub_connector_errors_total", "connector" => "ams").increment(1);
            tracing::debug!(%error, operation, "AMS call failed");
        }
        result
    }

    async fn open_hold(
        &self,
        tenant: &TenantId,
        hold: Uuid,
        party: &Party,
        amount: Amount,
        direction: Direction,
    ) -> Result<()> {
        let body = HoldBody {
            direction: direction.as_str(),
            party: PartyBody {
                party_id_type: party.id_type.as_str(),
                party_identifier: &party.identifier,
                party_sub_id_or_type: party.sub_id.as_deref(),
            },
            amount: amount.value_string(),
            currency: amount.currency.as_str(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| LedgerError::Protocol(e.to_string()))?;
        let url = self.url(tenant, &["holds", &hold.to_string()]);
        self.call("hold", Method::PUT, url, Some(body)).await.map(|_| ())
    }
}

#[async_trait::async_trait]
impl Ams for AmsClient {
    async fn balance(&self, tenant: &TenantId, party: &Party) -> Result<Option<Balance>> {
        let mut segments = vec!["accounts", party.id_type.as_str(), &party.identifier];
        segments.extend(party.sub_id.as_deref());
        let url = self.url(tenant, &segments);
        let bytes = match self.call("account", Method::GET, url, None).await {
            Ok(bytes) => bytes,
            Err(LedgerError::UnknownAccount(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let account: AccountBody = serde_json::from_slice(&bytes)
            .map_err(|e| LedgerError::Protocol(format!("account figures of {party}: {e}")))?;
        Ok(Some(Balance {
            currency: account.currency,
            balance: account.balance,
            reserved: account.reserved,
            incoming: account.incoming,
        }))
    }

    async fn reserve(&self, tenant: &TenantId, hold: Uuid, payer: &Party, amount: Amount) -> Result<()> {
        self.open_hold(tenant, hold, payer, amount, Direction::Debit).await
    }

    async fn reserve_credit(
        &self,
        tenant: &TenantId,
        hold: Uuid,
        payee: &Party,
        amount: Amount,
    ) -> Result<()> {
        self.open_hold(tenant, hold, payee, amount, Direction::Credit).await
    }

    async fn commit(&self, tenant: &TenantId, hold: Uuid) -> Result<()> {
        let url = self.url(tenant, &["holds", &hold.to_string(), "commit"]);
        self.call("commit", Method::POST, url, None).await.map(|_| ())
    }

    async fn release(&self, tenant: &TenantId, hold: Uuid) -> Result<()> {
        let url = self.url(tenant, &["holds", &hold.to_string(), "release"]);
        self.call("release", Method::POST, url, None).await.map(|_| ())
    }

    async fn hold_state(&self, tenant: &TenantId, hold: Uuid) -> Result<Option<HoldState>> {
        let url = self.url(tenant, &["holds", &hold.to_string()]);
        let bytes = match self.call("hold state", Method::GET, url, None).await {
            Ok(bytes) => bytes,
            Err(LedgerError::UnknownHold(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|e| LedgerError::Protocol(format!("hold {hold}: {e}")))?;
        let state = body.get("state").and_then(Value::as_str).and_then(hold_state_of);
        state
            .map(Some)
            .ok_or_else(|| LedgerError::Protocol(format!("hold {hold}: no valid `state` in {body}")))
    }
}

#[cfg(test)]
#[path = "ams_tests.rs"]
mod tests;
