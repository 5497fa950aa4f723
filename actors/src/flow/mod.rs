//! Transaction flows: pure, deterministic state machines.
//!
//! A flow is `step(&State, Input, now_ms) -> Transition { state, effects }`. It
//! reads no clock, draws no randomness and does no I/O: the time comes in as an
//! argument (stamped on the replicated command by its proposer), so every
//! replica that applies the same commands reaches the same state, and replay
//! after a failover is exact.

pub mod p2p;

pub use p2p::{
    Effect, FlowLimits, Input, OperatorDecision, P2pRequest, P2pState, Phase, QuoteTerms, Reason,
    RequestState, TransactionRequest, TransferState, Transition,
};
