//! One-time passwords for requests to be paid that ask for one (FSPIOP
//! `authenticationType` OTP, resource `/authorizations`).
//!
//! A password is derived, never stored: HMAC-SHA256 keyed by the tenant's
//! secret over the transaction and the password's issue number, cut to six
//! digits as HOTP does (RFC 4226, section 5.3). Any node of the tenant can
//! show the payer's channel the current password and check the one the
//! payee's DFSP returns, and the replicated state holds only the issue
//! number. A label separates it from the ILP fulfilments keyed by the same
//! secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How many digits a password has (FSPIOP's `OtpValue` allows 3 to 10).
pub const DIGITS: u32 = 6;

const LABEL: &[u8] = b"payhub one-time password v1";

/// The password `issue` of transaction `transaction` (its id as text).
pub fn password(secret: &str, transaction: &str, issue: u32) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(LABEL);
    mac.update(&[0]);
    mac.update(transaction.as_bytes());
    mac.update(&issue.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // RFC 4226 dynamic truncation: 31 bits at the offset the last nibble names.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let code = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:0width$}", code % 10u32.pow(DIGITS), width = DIGITS as usize)
}

/// Whether `entered` is password `issue` of `transaction`, compared in
/// constant time.
pub fn matches(secret: &str, transaction: &str, issue: u32, entered: &str) -> bool {
    let expected = password(secret, transaction, issue);
    expected.len() == entered.len()
        && expected.bytes().zip(entered.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_six_digits_fixed_by_secret_transaction_and_issue() {
        let first = password("secret", "tx-1", 1);
        assert_eq!(first.len(), 6);
        assert!(first.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(first, password("secret", "tx-1", 1));
        assert!(matches("secret", "tx-1", 1, &first));
        // Each of the three inputs gives another password (with these
        // inputs; a collision is one in a million).
        assert_ne!(first, password("secret", "tx-1", 2));
        assert_ne!(first, password("secret", "tx-2", 1));
        assert_ne!(first, password("other", "tx-1", 1));
        assert!(!matches("secret", "tx-1", 2, &first));
        assert!(!matches("secret", "tx-1", 1, &first[..5]));
        assert!(!matches("secret", "tx-1", 1, ""));
    }
}
