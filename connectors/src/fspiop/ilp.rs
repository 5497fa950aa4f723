//! ILP packet, condition and fulfilment.
//!
//! The payee derives the fulfilment from the packet with a secret only it
//! knows (HMAC-SHA256), and the condition is the SHA-256 of the fulfilment, as
//! in Mojaloop. The packet here is the base64url of the FSPIOP `Transaction`
//! as JSON; byte compatibility with sdk-standard-components' ILP v1/v4
//! encoding is the interoperability issue's work.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::types::IlpTransaction;

/// Encodes the transaction into an ILP packet.
pub fn packet(transaction: &IlpTransaction) -> String {
    // Plain data always serializes to JSON.
    let json = serde_json::to_vec(transaction).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes an ILP packet into the transaction it carries.
pub fn decode_packet(packet: &str) -> Option<IlpTransaction> {
    let json = URL_SAFE_NO_PAD.decode(packet.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&json).ok()
}

/// The fulfilment of a packet under the payee's secret (base64url, 32 bytes).
pub fn fulfilment(secret: &[u8], packet: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(packet.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The condition of a fulfilment: base64url(SHA-256(fulfilment bytes)).
pub fn condition(fulfilment: &str) -> Option<String> {
    let preimage = URL_SAFE_NO_PAD.decode(fulfilment.trim_end_matches('=')).ok()?;
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(preimage)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_of_fulfilment_matches_the_flow_check() {
        let f = fulfilment(b"secret", "packet");
        let c = condition(&f).expect("valid base64");
        assert!(actors::flow::p2p::fulfilment_matches(&f, &c));
        assert!(!actors::flow::p2p::fulfilment_matches(&fulfilment(b"other", "packet"), &c));
    }
}
