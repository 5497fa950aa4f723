//! The payee side of a DFSP: answers party lookups and quotes from the
//! tenant's AMS, accepts transfers as pending credits and books them when
//! the switch confirms (`PATCH`), releasing them when it aborts.
//!
//! Every answer is a callback through the switch. Each operation is
//! idempotent by the FSPIOP id it carries, so a resent request gets the same
//! answer and never credits twice.

use std::sync::Arc;

use reqwest::Method;
use uuid::Uuid;

use actors::model::{Amount, Party, PartyIdType};

use super::client::{FspiopClient, Message};
use super::codes;
use super::headers;
use super::ilp;
use super::types::{
    ErrorBody, IlpTransaction, Money, PartiesPut, Party as WireParty, PartyIdInfo, QuotesPost, QuotesPut,
    TransfersPatch, TransfersPost, TransfersPut,
};
use crate::ams::Ams;
use crate::ledger::LedgerError;
use crate::tenants::Tenant;

/// The payee-side service of all tenants of a node.
#[derive(Debug, Clone)]
pub struct PayeeService {
    ams: Arc<dyn Ams>,
    client: FspiopClient,
    /// How long a quote this side gives stays valid.
    quote_expiry_ms: u64,
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// A wire party to the domain party it names.
pub fn domain_party(party: &WireParty) -> Result<Party, String> {
    let id_type: PartyIdType = party.party_id_info.party_id_type.parse().map_err(|e| format!("{e}"))?;
    Party::new(id_type, &party.party_id_info.party_identifier).map_err(|e| e.to_string())
}

/// A wire amount to a validated amount.
pub fn domain_amount(money: &Money) -> Result<Amount, String> {
    Amount::parse_positive(&money.amount, &money.currency).map_err(|e| e.to_string())
}

impl PayeeService {
    pub fn new(ams: Arc<dyn Ams>, client: FspiopClient, quote_expiry_ms: u64) -> Self {
        PayeeService { ams, client, quote_expiry_ms }
    }

    async fn callback<B: serde::Serialize>(
        &self,
        tenant: &Tenant,
        destination: &str,
        resource: &str,
        path: String,
        body: &B,
    ) {
        let message = Message {
            method: Method::PUT,
            path,
            resource,
            source: &tenant.fsp_id,
            destination: Some(destination),
            body: Some(body),
        };
        if let Err(error) = self.client.send(message).await {
            tracing::warn!(tenant = %tenant.id, %error, "payee callback not delivered");
        }
    }

    /// `GET /parties/{type}/{id}`: answers from the tenant's AMS.
    pub async fn lookup(&self, tenant: &Tenant, source: &str, id_type: PartyIdType, id: &str) {
        let path = format!("/parties/{id_type}/{id}");
        let found = match Party::new(id_type, id) {
            Ok(party) => Some(self.ams.balance(&tenant.id, &party).await.map(|b| b.map(|_| party))),
            Err(_) => None,
        };
        match found {
            Some(Ok(Some(party))) => {
                let body = PartiesPut {
                    party: WireParty {
                        party_id_info: PartyIdInfo {
                            party_id_type: party.id_type.to_string(),
                            party_identifier: party.identifier.clone(),
                            party_sub_id_or_type: None,
                            fsp_id: Some(tenant.fsp_id.clone()),
                        },
                        name: None,
                    },
                };
                self.callback(tenant, source, "parties", path, &body).await;
            }
            Some(Err(error)) => {
                let body = ErrorBody::new(codes::SERVER_ERROR, format!("payee AMS unavailable: {error}"));
                self.callback(tenant, source, "parties", format!("{path}/error"), &body).await;
            }
            _ => {
                let body = ErrorBody::new(codes::PARTY_NOT_FOUND, format!("party {id_type}/{id} not found"));
                self.callback(tenant, source, "parties", format!("{path}/error"), &body).await;
            }
        }
    }

    /// `POST /quotes`: the payee bears no fee (fee rules come with the
    /// interoperability issue), so the transfer amount is the amount asked.
    pub async fn quote(&self, tenant: &Tenant, source: &str, request: QuotesPost) {
        let path = format!("/quotes/{}", request.quote_id);
        match self.price(tenant, &request).await {
            Ok(body) => self.callback(tenant, source, "quotes", path, &body).await,
            Err(body) => self.callback(tenant, source, "quotes", format!("{path}/error"), &body).await,
        }
    }

    async fn price(&self, tenant: &Tenant, request: &QuotesPost) -> Result<QuotesPut, ErrorBody> {
        let invalid = |m: String| ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, m);
        let payee = domain_party(&request.payee).map_err(invalid)?;
        let amount = domain_amount(&request.amount).map_err(invalid)?;
        let account = self
            .ams
            .balance(&tenant.id, &payee)
            .await
            .map_err(|e| ErrorBody::new(codes::SERVER_ERROR, e.to_string()))?
            .ok_or_else(|| ErrorBody::new(codes::PARTY_NOT_FOUND, format!("party {payee} not found")))?;
        if account.currency != amount.currency {
            return Err(ErrorBody::new(
                codes::PAYEE_REJECTED,
                format!("payee account holds {}, not {}", account.currency, amount.currency),
            ));
        }
        let transaction = IlpTransaction {
            transaction_id: request.transaction_id.clone(),
            quote_id: request.quote_id.clone(),
            payee: request.payee.clone(),
            payer: request.payer.clone(),
            amount: request.amount.clone(),
            transaction_type: request.transaction_type.clone(),
        };
        let packet = ilp::packet(&transaction);
        let fulfilment = ilp::fulfilment(tenant.ilp_secret.as_bytes(), &packet);
        let condition = ilp::condition(&fulfilment).unwrap_or_default();
        Ok(QuotesPut {
            transfer_amount: request.amount.clone(),
            payee_receive_amount: Some(request.amount.clone()),
            payee_fsp_fee: Some(Money { amount: "0".into(), currency: request.amount.currency.clone() }),
            payee_fsp_commission: None,
            expiration: headers::timestamp(now_ms() + self.quote_expiry_ms),
            ilp_packet: packet,
            condition,
        })
    }

    /// `POST /transfers`: validates the transfer against its ILP packet and
    /// condition, accepts the funds as a pending credit, and answers RESERVED
    /// with the fulfilment. The credit is booked on `PATCH` COMMITTED.
    pub async fn transfer(&self, tenant: &Tenant, source: &str, request: TransfersPost) {
        let path = format!("/transfers/{}", request.transfer_id);
        match self.accept(tenant, &request).await {
            Ok(fulfilment) => {
                let body = TransfersPut {
                    fulfilment: Some(fulfilment),
                    completed_timestamp: Some(headers::timestamp(now_ms())),
                    transfer_state: "RESERVED".into(),
                };
                self.callback(tenant, source, "transfers", path, &body).await;
            }
            Err(body) => self.callback(tenant, source, "transfers", format!("{path}/error"), &body).await,
        }
    }

    async fn accept(&self, tenant: &Tenant, request: &TransfersPost) -> Result<String, ErrorBody> {
        let invalid = |m: String| ErrorBody::new(codes::GENERIC_VALIDATION_ERROR, m);
        let transfer_id = Uuid::parse_str(&request.transfer_id).map_err(|e| invalid(e.to_string()))?;
        let expiration = headers::parse_timestamp(&request.expiration)
            .ok_or_else(|| invalid(format!("expiration {:?} is not a date-time", request.expiration)))?;
        if expiration <= now_ms() {
            return Err(ErrorBody::new(
                codes::TRANSFER_EXPIRED,
                "transfer expired before the payee received it",
            ));
        }
        let transaction = ilp::decode_packet(&request.ilp_packet)
            .ok_or_else(|| invalid("ilpPacket cannot be decoded".into()))?;
        let fulfilment = ilp::fulfilment(tenant.ilp_secret.as_bytes(), &request.ilp_packet);
        if ilp::condition(&fulfilment).as_deref() != Some(request.condition.as_str()) {
            return Err(ErrorBody::new(codes::INVALID_FULFILMENT, "condition does not match the ILP packet"));
        }
        if transaction.amount != request.amount {
            return Err(invalid("transfer amount differs from the amount in the ILP packet".into()));
        }
        let payee = domain_party(&transaction.payee).map_err(invalid)?;
        let amount = domain_amount(&request.amount).map_err(invalid)?;
        match self.ams.reserve_credit(&tenant.id, transfer_id, &payee, amount).await {
            Ok(()) => Ok(fulfilment),
            Err(LedgerError::UnknownAccount(account)) => {
                Err(ErrorBody::new(codes::PARTY_NOT_FOUND, format!("payee account {account} not found")))
            }
            Err(
                error @ (LedgerError::CurrencyMismatch { .. }
                | LedgerError::HoldConflict(_)
                | LedgerError::HoldClosed { .. }),
            ) => Err(ErrorBody::new(codes::PAYEE_REJECTED, error.to_string())),
            Err(error) => {
                // The credit may have been taken even though no answer came:
                // release it (a release before the hold exists leaves a
                // tombstone, so a late reservation cannot take effect either)
                // before telling the switch no, which it will not follow up.
                self.release_unanswered(tenant, transfer_id).await;
                Err(ErrorBody::new(codes::SERVER_ERROR, error.to_string()))
            }
        }
    }

    /// Releases a pending credit whose reservation went unanswered.
    async fn release_unanswered(&self, tenant: &Tenant, transfer_id: Uuid) {
        for attempt in 1..=3 {
            match self.ams.release(&tenant.id, transfer_id).await {
                Ok(()) => return,
                Err(error) if attempt == 3 => tracing::error!(
                    tenant = %tenant.id, %transfer_id, %error,
                    "a pending credit may remain on the payee's account; reconcile it with the AMS"
                ),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }

    /// `PATCH /transfers/{id}`: the switch's final word on a transfer this
    /// side answered RESERVED. Answered synchronously (200) only once the
    /// AMS has booked it, so the switch resends it until it is done.
    pub async fn patch(
        &self,
        tenant: &Tenant,
        transfer_id: Uuid,
        patch: &TransfersPatch,
    ) -> Result<(), ErrorBody> {
        let result = match patch.transfer_state.as_str() {
            "COMMITTED" => self.ams.commit(&tenant.id, transfer_id).await,
            "ABORTED" => self.ams.release(&tenant.id, transfer_id).await,
            other => {
                return Err(ErrorBody::new(
                    codes::GENERIC_VALIDATION_ERROR,
                    format!("transferState {other:?} is not COMMITTED or ABORTED"),
                ))
            }
        };
        result.map_err(|error| {
            tracing::error!(tenant = %tenant.id, %transfer_id, %error, "payee could not settle a transfer");
            ErrorBody::new(codes::SERVER_ERROR, error.to_string())
        })
    }
}
