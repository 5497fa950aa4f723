//! Mojaloop FSPIOP v1.1: message types, headers, the outbound client, the
//! inbound server of a DFSP (payer callbacks and payee requests), ILP
//! conditions and fulfilments.

pub mod client;
pub mod headers;
pub mod ilp;
pub mod inbound;
pub(crate) mod js;
pub mod jws;
pub mod otp;
pub mod participants;
pub mod parties;
pub mod payee;
pub mod schema;
pub mod transactions;
pub mod types;
pub mod waiters;

/// FSPIOP error codes used by payhub (API Definition v1.1, section 7.6).
pub mod codes {
    pub const COMMUNICATION_ERROR: &str = "1000";
    pub const SERVER_ERROR: &str = "2001";
    pub const SERVICE_UNAVAILABLE: &str = "2003";
    pub const GENERIC_VALIDATION_ERROR: &str = "3100";
    pub const MALFORMED_SYNTAX: &str = "3101";
    pub const MISSING_ELEMENT: &str = "3102";
    pub const UNKNOWN_URI: &str = "3002";
    pub const UNACCEPTABLE_VERSION: &str = "3001";
    pub const ADD_PARTY_ERROR: &str = "3003";
    pub const DESTINATION_FSP_ERROR: &str = "3201";
    pub const PARTY_NOT_FOUND: &str = "3204";
    pub const TRANSFER_ID_NOT_FOUND: &str = "3208";
    pub const QUOTE_EXPIRED: &str = "3302";
    pub const TRANSFER_EXPIRED: &str = "3303";
    pub const TOO_LARGE_PAYLOAD: &str = "3104";
    pub const INVALID_SIGNATURE: &str = "3105";
    pub const MODIFIED_REQUEST: &str = "3106";
    /// Mojaloop's switch reports a fulfilment that does not match the
    /// condition as a generic validation error (no code of its own).
    pub const INVALID_FULFILMENT: &str = "3100";
    pub const QUOTE_ID_NOT_FOUND: &str = "3205";
    pub const TRANSACTION_REQUEST_ID_NOT_FOUND: &str = "3206";
    pub const TRANSACTION_REQUEST_EXPIRED: &str = "3301";
    pub const TRANSACTION_ID_NOT_FOUND: &str = "3207";
    pub const PAYER_INSUFFICIENT_LIQUIDITY: &str = "4001";
    pub const PAYER_REJECTED_REQUEST: &str = "4101";
    pub const PAYEE_REJECTED: &str = "5100";
    pub const PAYEE_FSP_REJECTED_QUOTE: &str = "5103";
    pub const PAYEE_UNSUPPORTED_CURRENCY: &str = "5106";
    pub const PAYEE_LIMIT_ERROR: &str = "5200";
}
