//! Connectors: everything payhub talks to outside itself.
//!
//! - [`ledger`]: the built-in double-entry AMS (persisted through `storage`'s
//!   key-value API, never RocksDB directly);
//! - [`fspiop`]: Mojaloop FSPIOP v1.1 as client and inbound server, for the
//!   payer and the payee side;
//! - [`switch`]: a switch simulator that routes FSPIOP between DFSPs.
//!
//! Connectors translate; they do not decide. The payer flow's rules live in
//! `actors`; what a connector answers is mapped to flow inputs by the node.

pub mod fspiop;
pub mod ledger;
pub mod switch;
pub mod tenants;
