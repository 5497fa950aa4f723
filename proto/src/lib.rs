//! The node-to-node wire protocol: gRPC services generated from the `.proto`
//! files in this folder. Only generated code and its re-exports live here; the
//! transport that uses them belongs to `raft`.

#[allow(clippy::all, missing_debug_implementations, reason = "generated code")]
pub mod v1 {
    tonic::include_proto!("payhub.v1");
}
