//! End-to-end tests of the real `payhub` binary over HTTP on loopback.

mod bad_input;
mod checker;
mod cluster;
mod crash;
mod jws;
mod loadtest;
mod mtls;
mod node;
mod payment;
mod sim;
mod ttk;
