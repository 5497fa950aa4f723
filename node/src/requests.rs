//! The payer side of requests to pay (FSPIOP `/transactionRequests`): a
//! payee's DFSP asks one of a tenant's customers to pay it. The request
//! becomes a P2P transaction (through Raft, like a channel's payment) that
//! waits in `AWAITING_APPROVAL` for the payer's decision in the tenant's
//! channel (`/channel/requests`); the flow tells the payee's DFSP where the
//! request stands (`PUT /transactionRequests/{ID}`: RECEIVED, then ACCEPTED
//! or REJECTED) and, approved, pays it as any P2P payment, quote and
//! transfer naming the request. A request waits for the payer until its
//! `expiration` ([`APPROVAL_WINDOW_DEFAULT`] without one, never more than
//! [`APPROVAL_WINDOW_MAX`]), then lapses (REJECTED, 3301).
//!
//! A request that asks for a one-time password (`authenticationType` OTP)
//! is approved by the payer at the payee's device instead: the flow quotes
//! it, the payer's channel shows the password (`GET /channel/requests`),
//! the payee's DFSP is asked to have it entered (`GET /authorizations`), and
//! what it returns (`PUT /authorizations`) is checked here against the
//! password (`connectors::fspiop::otp`) before the flow is told whether it
//! was right.
//!
//! Refused at once with an error callback: a payer this tenant has no
//! account for (3204), an expired request (3301), a request id reused with
//! other content (3106), an authentication other than OTP (3100), and a
//! node at its limit of waiting requests (`flow.requests_awaiting_max`:
//! 2003, retry).

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use reqwest::Method;
use uuid::Uuid;

use actors::flow::{
    Authentication, AuthorizationReply, Input, P2pRequest, Request, State, TransactionRequest,
};
use actors::model::{Party, PartyIdType, TransactionId};
use connectors::ams::Ams;
use connectors::fspiop::client::{FspiopClient, Message};
use connectors::fspiop::codes;
use connectors::fspiop::headers;
use connectors::fspiop::inbound::{Envelope, RequestsToPay};
use connectors::fspiop::otp;
use connectors::fspiop::payee::{domain_amount, domain_party};
use connectors::fspiop::types::{
    AuthorizationsPut, ErrorBody, TransactionRequestsPost, TransactionRequestsPut,
};
use connectors::tenants::Tenant;

use crate::engine::{CommitError, Created, Engine};

/// How long a request to be paid without an `expiration` waits for the
/// payer's decision.
pub const APPROVAL_WINDOW_DEFAULT: Duration = Duration::from_secs(300);

/// The longest a request waits for the payer, whatever its `expiration`
/// says: a waiting request is a live transaction (within
/// `flow.requests_awaiting_max`), so a payee cannot park them for days.
pub const APPROVAL_WINDOW_MAX: Duration = Duration::from_secs(900);

/// The payer side of requests to pay, for every tenant of the node.
pub struct Requests {
    ams: Arc<dyn Ams>,
    client: FspiopClient,
    engine: OnceLock<Weak<Engine>>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests").finish_non_exhaustive()
    }
}

impl Requests {
    pub fn new(ams: Arc<dyn Ams>, client: FspiopClient) -> Self {
        Requests { ams, client, engine: OnceLock::new() }
    }

    pub fn attach(&self, engine: &Arc<Engine>) {
        let _ = self.engine.set(Arc::downgrade(engine));
    }

    fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.get().and_then(Weak::upgrade)
    }

    async fn reply<B: serde::Serialize>(&self, tenant: &Tenant, envelope: &Envelope, path: String, body: &B) {
        let message = Message {
            method: Method::PUT,
            path,
            resource: "transactionRequests",
            version: envelope.version,
            source: &tenant.fsp_id,
            destination: Some(&envelope.source),
            body: Some(body),
        };
        if let Err(error) = self.client.send(message).await {
            tracing::warn!(tenant = %tenant.id, %error, "answer to a request to be paid not delivered");
        }
    }

    async fn refuse(&self, tenant: &Tenant, envelope: &Envelope, id: &str, code: &str, description: String) {
        tracing::info!(tenant = %tenant.id, request = id, code, %description, "request to be paid refused");
        let body = ErrorBody::new(code, description);
        self.reply(tenant, envelope, format!("/transactionRequests/{id}/error"), &body).await;
    }

    /// The P2P request that answers `message`, or why there is none.
    fn p2p_request(
        tenant: &Tenant,
        envelope: &Envelope,
        message: &TransactionRequestsPost,
        now_ms: u64,
    ) -> Result<P2pRequest, ErrorBody> {
        let invalid = |m: String| ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, m);
        let id = Uuid::parse_str(&message.transaction_request_id)
            .map_err(|_| invalid("transactionRequestId must be a UUID".into()))?;
        let payer_type: PartyIdType =
            message.payer.party_id_type.parse().map_err(|e| invalid(format!("payer.{e}")))?;
        let payer = Party::with_sub_id(
            payer_type,
            &message.payer.party_identifier,
            message.payer.party_sub_id_or_type.as_deref(),
        )
        .map_err(|e| invalid(format!("payer.{e}")))?;
        let payee = domain_party(&message.payee).map_err(|e| invalid(format!("payee: {e}")))?;
        let amount = domain_amount(&message.amount).map_err(|e| invalid(format!("amount: {e}")))?;
        let expiration_ms = match &message.expiration {
            Some(expiration) => headers::parse_timestamp(expiration)
                .ok_or_else(|| invalid(format!("expiration {expiration:?} is not a date-time")))?,
            None => now_ms + u64::try_from(APPROVAL_WINDOW_DEFAULT.as_millis()).unwrap_or(u64::MAX),
        };
        if expiration_ms <= now_ms {
            return Err(ErrorBody::new(
                codes::TRANSACTION_REQUEST_EXPIRED,
                "the request expired before it arrived",
            ));
        }
        let expiration_ms =
            expiration_ms.min(now_ms + u64::try_from(APPROVAL_WINDOW_MAX.as_millis()).unwrap_or(u64::MAX));
        let authentication = match message.authentication_type.as_deref() {
            None => None,
            Some("OTP") => Some(Authentication::Otp),
            Some(other) => {
                return Err(invalid(format!(
                    "authenticationType {other} is not supported: {} takes one-time passwords (OTP) only",
                    tenant.fsp_id
                )))
            }
        };
        Ok(P2pRequest {
            tenant: tenant.id.clone(),
            payer_fsp: tenant.fsp_id.clone(),
            payer,
            payee,
            amount,
            transaction_request: Some(Box::new(TransactionRequest {
                id,
                payee_fsp: envelope.source.clone(),
                expiration_ms,
                scenario: message.transaction_type.scenario.clone(),
                initiator_type: message.transaction_type.initiator_type.clone(),
                authentication,
            })),
        })
    }
}

#[async_trait::async_trait]
impl RequestsToPay for Requests {
    async fn request(&self, tenant: &Tenant, envelope: &Envelope, message: TransactionRequestsPost) {
        let Some(engine) = self.engine() else { return };
        let request_id = message.transaction_request_id.clone();
        let now_ms = engine.transactions.clock().now_ms();
        let request = match Self::p2p_request(tenant, envelope, &message, now_ms) {
            Ok(request) => request,
            Err(body) => {
                let info = body.error_information;
                return self
                    .refuse(tenant, envelope, &request_id, &info.error_code, info.error_description)
                    .await;
            }
        };
        match self.ams.balance(&tenant.id, &request.payer).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let description = format!("{} has no customer {}", tenant.fsp_id, request.payer);
                return self.refuse(tenant, envelope, &request_id, codes::PARTY_NOT_FOUND, description).await;
            }
            Err(error) => {
                let description = format!("payer AMS unavailable: {error}");
                return self.refuse(tenant, envelope, &request_id, codes::SERVER_ERROR, description).await;
            }
        }
        let Some(id) = request.transaction_request.as_ref().map(|r| r.id) else { return };
        let transaction = TransactionId::from_transaction_request(&tenant.id, id);
        let (code, description) = match engine.create(transaction, Request::P2p(request)).await {
            Ok(Created::New(_)) => {
                tracing::info!(tenant = %tenant.id, request = %id, %transaction, "request to be paid awaits the payer");
                return;
            }
            // A resent request: where it stands now.
            Ok(Created::Existing(_)) => return self.state(tenant, envelope, id).await,
            Ok(Created::Conflict) => {
                (codes::MODIFIED_REQUEST, format!("request {id} was received before with other content"))
            }
            Ok(Created::Busy) => {
                (codes::SERVICE_UNAVAILABLE, "too many requests wait for payers here; resend later".into())
            }
            Err(CommitError::NotLeader) => {
                (codes::SERVICE_UNAVAILABLE, "leadership moved; resend shortly".into())
            }
            Err(CommitError::Failed(error)) => {
                (codes::SERVER_ERROR, format!("request not recorded: {error}"))
            }
        };
        self.refuse(tenant, envelope, &request_id, code, description).await;
    }

    async fn state(&self, tenant: &Tenant, envelope: &Envelope, id: Uuid) {
        let Some(engine) = self.engine() else { return };
        let transaction = TransactionId::from_transaction_request(&tenant.id, id);
        // A transaction found by a request's id answers that request.
        let found = engine.read(&transaction, Duration::ZERO).await.map(|(found, _)| {
            found
                .as_ref()
                .and_then(State::as_p2p)
                .filter(|t| t.request.tenant == tenant.id)
                .and_then(|t| Some((t.id, t.request_state()?)))
        });
        match found {
            Ok(Some((transaction, state))) => {
                let body = TransactionRequestsPut {
                    transaction_id: Some(transaction.to_string()),
                    transaction_request_state: state.as_str().into(),
                };
                self.reply(tenant, envelope, format!("/transactionRequests/{id}"), &body).await;
            }
            Ok(None) => {
                let description = format!("{} has no request to be paid {id}", tenant.fsp_id);
                self.refuse(
                    tenant,
                    envelope,
                    &id.to_string(),
                    codes::TRANSACTION_REQUEST_ID_NOT_FOUND,
                    description,
                )
                .await;
            }
            Err(error) => {
                let description = format!("cannot read the request now: {error}");
                self.refuse(tenant, envelope, &id.to_string(), codes::SERVICE_UNAVAILABLE, description).await;
            }
        }
    }

    /// Checks what the payer entered against the password the flow asked
    /// for (the issue its state names now), and tells the flow only whether
    /// it was right. An answer for a password the flow has moved past is
    /// ignored by the flow (its issue no longer matches).
    async fn authorization(&self, tenant: &Tenant, id: Uuid, result: Result<AuthorizationsPut, ErrorBody>) {
        let Some(engine) = self.engine() else { return };
        let transaction = TransactionId::from_transaction_request(&tenant.id, id);
        let put = match result {
            Ok(put) => put,
            Err(error) => {
                let info = error.error_information;
                let reason = actors::flow::Reason::new(&info.error_code, info.error_description);
                return engine
                    .callbacks
                    .deliver(&tenant.id, transaction, Input::AuthorizationFailed { reason })
                    .await;
            }
        };
        let issue = match engine.read(&transaction, Duration::ZERO).await {
            Ok((Some(State::P2p(state)), _)) if state.request.tenant == tenant.id => {
                state.authorization.map(|a| a.issue)
            }
            Ok(_) => None,
            Err(error) => {
                // The payee's DFSP is not told: the flow asks again when
                // its deadline passes.
                tracing::warn!(tenant = %tenant.id, request = %id, %error, "cannot read the request a password answers");
                return;
            }
        };
        let Some(issue) = issue else {
            tracing::info!(tenant = %tenant.id, request = %id, "a password for a request that asked for none, or is unknown; ignored");
            return;
        };
        let reply = match (put.response_type.as_str(), &put.authentication_info) {
            ("ENTERED", Some(info)) if info.authentication == "OTP" => {
                if otp::matches(
                    &tenant.ilp_secret,
                    &transaction.to_string(),
                    issue,
                    &info.authentication_value,
                ) {
                    AuthorizationReply::Valid
                } else {
                    AuthorizationReply::Invalid
                }
            }
            // Entered nothing, or something other than the password.
            ("ENTERED", _) => AuthorizationReply::Invalid,
            ("REJECTED", _) => AuthorizationReply::Rejected,
            _ => AuthorizationReply::Resend,
        };
        tracing::info!(tenant = %tenant.id, request = %id, %transaction, issue, ?reply, "the payer answered at the payee's device");
        engine
            .callbacks
            .deliver(&tenant.id, transaction, Input::AuthorizationAnswered { issue, reply })
            .await;
    }
}
