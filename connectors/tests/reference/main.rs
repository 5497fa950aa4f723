//! Cross-implementation checks against Mojaloop's reference code: the npm
//! package `@mojaloop/sdk-standard-components` (pinned in
//! `tests/interop/package.json`), driven by the small Node scripts beside it.
//! What payhub produces must verify or decode there, and what the reference
//! produces must verify or decode in payhub, byte for byte.
//! The package is installed on first use (see `tests/interop/npm.rs`).

#[path = "../interop/npm.rs"]
mod npm;

mod ilp;
mod jws;

pub use npm::reference;
