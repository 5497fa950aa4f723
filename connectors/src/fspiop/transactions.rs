//! The payer side's question about a transaction to the payee's DFSP
//! (FSPIOP `GET /transactions/{ID}`): what it knows of the transaction
//! (its state, when it completed, a code such as a voucher's), answered
//! with `PUT /transactions/{ID}` or its error. Operators ask it when they
//! reconcile a payment. Waiting is local to the node that asked, as for the
//! oracle (`participants`): in a cluster an answer delivered to another
//! node times out here, and the question (harmless) can be repeated.

use reqwest::Method;
use uuid::Uuid;

use super::client::{FspiopClient, Message};
use super::headers;
use super::types::{ErrorBody, TransactionsPut};
use super::waiters::{AskError, Waiters};
use crate::tenants::Tenant;

/// The asking tenant's FSP id and the transaction id.
type Key = (String, Uuid);
type Answer = Result<TransactionsPut, ErrorBody>;

/// Asks payee DFSPs about transactions and waits for their answers.
#[derive(Debug, Clone)]
pub struct TransactionQueries {
    client: FspiopClient,
    waiting: Waiters<Key, Answer>,
    timeout_ms: u64,
}

impl TransactionQueries {
    pub fn new(client: FspiopClient, timeout_ms: u64) -> Self {
        TransactionQueries { client, waiting: Waiters::default(), timeout_ms }
    }

    /// Asks `payee_fsp` what it knows of transaction `id` on `tenant`'s
    /// behalf and waits for the answer.
    pub async fn ask(&self, tenant: &Tenant, id: Uuid, payee_fsp: &str) -> Result<TransactionsPut, AskError> {
        let message = Message::<()> {
            method: Method::GET,
            path: format!("/transactions/{id}"),
            resource: "transactions",
            version: headers::VERSION,
            source: &tenant.fsp_id,
            destination: Some(payee_fsp),
            body: None,
        };
        let key = (tenant.fsp_id.clone(), id);
        self.waiting.ask(key, self.client.send(message), self.timeout_ms).await
    }

    /// A payee DFSP's answer about transaction `id`, to `tenant`.
    pub fn answered(&self, tenant: &Tenant, id: Uuid, answer: Answer) {
        if self.waiting.answer(&(tenant.fsp_id.clone(), id), answer) == 0 {
            tracing::info!(tenant = %tenant.id, transaction = %id, "a transaction answer nobody here waits for");
        }
    }
}
