//! The payer side's party lookups (FSPIOP `GET /parties/{Type}/{ID}`
//! through the scheme's oracle), each awaited in memory on the node that
//! asked until its `PUT /parties` (or its error) arrives. Flows do not
//! commit the question, only what they do with the answer: the payee's
//! DFSP is learnt from the quote that follows, the payer's (of a request to
//! pay) becomes an input. A lookup that was lost to a crash is simply asked
//! again. In a cluster the answer may reach another node than the one that
//! asked; that node offers it to the others (`node::effects`), and
//! [`PartyLookups::answered`] hands it to whoever waits here.

use actors::model::{Party, TenantId};
use reqwest::Method;

use super::client::{FspiopClient, Message};
use super::headers;
use super::types::{ErrorBody, PartiesPut};
use super::waiters::{AskError, Waiters};

/// The tenant that asked and the party asked about: what a `PUT /parties`
/// names (it does not name the request).
type Key = (TenantId, Party);
type Answer = Result<PartiesPut, ErrorBody>;

/// Looks parties up through the scheme and waits for the answers.
#[derive(Debug, Clone)]
pub struct PartyLookups {
    client: FspiopClient,
    waiting: Waiters<Key, Answer>,
    timeout_ms: u64,
}

impl PartyLookups {
    pub fn new(client: FspiopClient, timeout_ms: u64) -> Self {
        PartyLookups { client, waiting: Waiters::default(), timeout_ms }
    }

    /// Asks the scheme which DFSP serves `party`, on behalf of `tenant`
    /// (whose FSP id is `source`), and waits for the answer: the DFSP's id.
    /// Lookups of one party by several payments at once share the answer.
    pub async fn fsp_of(&self, tenant: &TenantId, source: &str, party: &Party) -> Result<String, AskError> {
        let message = Message::<()> {
            method: Method::GET,
            path: format!("/parties/{party}"),
            resource: "parties",
            version: headers::VERSION,
            source,
            destination: None,
            body: None,
        };
        let key = (tenant.clone(), party.clone());
        let put = self.waiting.ask(key, self.client.send(message), self.timeout_ms).await?;
        match put.party.party_id_info.fsp_id {
            Some(fsp_id) if !fsp_id.is_empty() => Ok(fsp_id),
            _ => Err(AskError::Refused(ErrorBody::new("3204", "party answer names no DFSP"))),
        }
    }

    /// An answer about `party` to `tenant`: hands it to the lookups waiting
    /// for it here and answers how many there were.
    pub fn answered(&self, tenant: &TenantId, party: &Party, answer: Answer) -> usize {
        self.waiting.answer(&(tenant.clone(), party.clone()), answer)
    }
}
