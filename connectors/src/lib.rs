//! Connectors: everything payhub talks to outside itself.
//!
//! - [`ams`]: the AMS (core banking) as the flows use it: the built-in ledger
//!   in-process, or an external AMS over HTTP, and the HTTP API serving a
//!   ledger;
//! - [`ledger`]: the built-in double-entry AMS (persisted through `storage`'s
//!   key-value API, never RocksDB directly);
//! - [`fspiop`]: Mojaloop FSPIOP v1.1 as client and inbound server, for the
//!   payer and the payee side;
//! - [`fees`]: what a tenant charges as payee (quotes' `payeeFspFee`);
//! - [`switch`]: a switch simulator that routes FSPIOP between DFSPs.
//!
//! Connectors translate; they do not decide. The payer flow's rules live in
//! `actors`; what a connector answers is mapped to flow inputs by the node.

pub mod ams;
pub mod fees;
pub mod fspiop;
pub mod ledger;
pub mod switch;
pub mod tenants;
