//! The storage crate's integration tests: openraft's conformance suite, and
//! what payhub relies on beyond it.

mod archive;
mod kv;
mod shards;
mod suite;

use actors::command::Command;
use actors::flow::{FlowLimits, Input, P2pRequest, QuoteTerms, Reason, Request};
use actors::model::{Amount, Party, PartyIdType, TransactionId};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use storage::Entry;

/// A log entry of term 1 at `index`.
fn entry(index: u64, payload: EntryPayload<storage::TypeConfig>) -> Entry {
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 0), index), payload }
}

fn normal(index: u64, command: Command) -> Entry {
    entry(index, EntryPayload::Normal(command))
}

fn create(id: TransactionId, now_ms: u64) -> Command {
    let party = |msisdn: &str| Party::new(PartyIdType::Msisdn, msisdn).expect("a valid MSISDN");
    let request = P2pRequest {
        tenant: "bluebank".parse().expect("a valid tenant"),
        payer_fsp: "bluebank".into(),
        payer: party("27710000001"),
        payee: party("27710000002"),
        amount: Amount::parse_positive("10.50", "USD").expect("a valid amount"),
        transaction_request: None,
    };
    Command::Create { id, request: Request::P2p(request), limits: FlowLimits::default(), now_ms }
}

/// greenbank's quote for [`create`]'s payment, valid a minute.
fn quoted(id: TransactionId, now_ms: u64) -> Command {
    let terms = QuoteTerms {
        transfer_amount: Amount::parse_positive("10.50", "USD").expect("a valid amount"),
        payee_fsp_fee: None,
        payee_fsp_commission: None,
        expiration_ms: now_ms + 60_000,
        ilp_packet: "packet".into(),
        condition: "condition".into(),
    };
    Command::Step { id, input: Input::QuoteReceived { terms, payee_fsp: "greenbank".into() }, now_ms }
}

fn quote_failed(id: TransactionId, now_ms: u64) -> Command {
    let reason = Reason::new("3200", "the payee DFSP refused to quote");
    Command::Step { id, input: Input::QuoteFailed { reason }, now_ms }
}
