//! The pure core of payhub: the domain model, the transaction flows as
//! deterministic state machines, the replicated command format, and the thin
//! ractor shell that drives one transaction.
//!
//! This crate owns the business rules. It must never do I/O of its own: no
//! HTTP, no RocksDB, no clock reads inside a flow. The shell in [`runtime`]
//! reaches the outside world only through the [`runtime::Commit`] and
//! [`runtime::EffectRunner`] traits that the node implements.

pub mod command;
pub mod flow;
pub mod model;
pub mod runtime;
