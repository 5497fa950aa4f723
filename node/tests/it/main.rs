//! End-to-end tests of the real `payhub` binary over HTTP on loopback.

mod archive;
mod bad_input;
mod bulk;
mod checker;
mod cluster;
mod crash;
mod expiry;
mod fees;
mod fspiop;
mod jws;
mod loadtest;
mod mtls;
mod negative;
mod node;
#[path = "../../../connectors/tests/interop/npm.rs"]
mod npm;
mod openapi;
mod operator;
mod oracle;
mod payment;
mod request_to_pay;
mod request_to_pay_sent;
mod sim;
mod subid;
mod sweep;
mod ttk;
