//! A tenant's parties in the scheme's oracle (FSPIOP `/participants`): a
//! DFSP registers the parties it serves (`POST /participants/{Type}/{ID}`),
//! removes them (`DELETE`) and asks which DFSP serves one (`GET`); the
//! switch answers each with `PUT /participants/{Type}/{ID}` or its error.
//!
//! The API correlates those answers by party only, so every request waiting
//! for the same party of the same tenant gets the same answer. Waiting is
//! local to the node that asked: in a cluster an answer delivered to another
//! node times out here, and the request (idempotent) can be repeated.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use actors::model::{Currency, Party};

use super::client::{FspiopClient, Message};
use super::headers;
use super::types::ErrorBody;
use super::waiters::{AskError, Waiters};
use crate::tenants::Tenant;

/// What to ask the oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Register the party as the tenant's (in `currency`, if given).
    Register { currency: Option<Currency> },
    /// Remove the tenant's registration of the party.
    Deregister,
    /// Which DFSP serves the party.
    Lookup,
}

/// `POST /participants/{Type}/{ID}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantsPost {
    pub fsp_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `PUT /participants/{Type}/{ID}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantsPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsp_id: Option<String>,
}

type Key = (String, String, String);
type Answer = Result<ParticipantsPut, ErrorBody>;

/// Asks the oracle and waits for its answers. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Participants {
    client: FspiopClient,
    waiting: Waiters<Key, Answer>,
    timeout_ms: u64,
}

impl Participants {
    pub fn new(client: FspiopClient, timeout_ms: u64) -> Self {
        Participants { client, waiting: Waiters::default(), timeout_ms }
    }

    fn key(tenant: &Tenant, party: &Party) -> Key {
        (tenant.fsp_id.clone(), party.id_type.to_string(), party.identifier.clone())
    }

    /// Sends `operation` on `party` for `tenant` and waits for the oracle's
    /// answer: the DFSP it names (none after a removal that names none).
    pub async fn ask(
        &self,
        tenant: &Tenant,
        party: &Party,
        operation: Operation,
    ) -> Result<Option<String>, AskError> {
        let body = match operation {
            Operation::Register { currency } => Some(ParticipantsPost {
                fsp_id: tenant.fsp_id.clone(),
                currency: currency.map(|c| c.to_string()),
            }),
            Operation::Deregister | Operation::Lookup => None,
        };
        let method = match operation {
            Operation::Register { .. } => Method::POST,
            Operation::Deregister => Method::DELETE,
            Operation::Lookup => Method::GET,
        };
        let message = Message {
            method,
            path: format!("/participants/{}/{}", party.id_type, party.identifier),
            resource: "participants",
            version: headers::VERSION,
            source: &tenant.fsp_id,
            destination: None,
            body: body.as_ref(),
        };
        let put =
            self.waiting.ask(Self::key(tenant, party), self.client.send(message), self.timeout_ms).await?;
        Ok(put.fsp_id)
    }

    /// The switch's answer on `tenant`'s party `id_type`/`id`: it reaches
    /// every request waiting for it (none: it is logged and dropped).
    pub fn answered(&self, tenant: &Tenant, id_type: &str, id: &str, answer: Answer) {
        let key = (tenant.fsp_id.clone(), id_type.to_owned(), id.to_owned());
        if self.waiting.answer(&key, answer) == 0 {
            tracing::info!(tenant = %tenant.id, party = %format!("{id_type}/{id}"), "an oracle answer nobody here waits for");
        }
    }
}
