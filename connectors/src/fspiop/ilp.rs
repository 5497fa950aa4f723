//! Interledger (ILP) packets, conditions and fulfilments for FSPIOP quotes
//! and transfers.
//!
//! In Mojaloop's FSPIOP API (API Definition v1.1, section 4, "Interledger
//! Protocol"; <https://github.com/mojaloop/mojaloop-specification>, file
//! `fspiop-api/documents/v1.1-document-set/API-Definition_v1.1.md`) the payee
//! FSP answers a quote with an ILP packet that carries the agreed transaction,
//! and a condition: the SHA-256 of a fulfilment that only the payee can
//! compute, because it is an HMAC of the transaction under the payee's
//! secret. When the transfer arrives, the payee checks it against the packet,
//! recomputes the fulfilment and releases it to commit the transfer.
//!
//! # Compatibility
//!
//! The output is byte-for-byte what Mojaloop's reference implementation,
//! `@mojaloop/sdk-standard-components` 19.19.1 (`src/lib/ilp`, as used by the
//! Mojaloop SDK scheme adapter), produces for the same input, and packets it
//! issued decode here. Both of its encodings are supported:
//!
//! - [`IlpVersion::V1`], what FSPIOP v1.x schemes use: an ILPv1 `IlpPayment`
//!   (OER, as `ilp-packet` 2.2.0 encodes it) addressed to
//!   `g.{fspId}.{partyIdType}.{partyIdentifier}[.{partySubIdOrType}]` of the
//!   payee (all but the FSP id lower-cased), with the amount in minor units;
//!   the fulfilment is the HMAC of the packet's base64url text.
//! - [`IlpVersion::V4`]: an ILPv4 `IlpPrepare` (Interledger RFC 27,
//!   <https://interledger.org/developers/rfcs/interledger-protocol/>), to the
//!   fixed address `g.mojaloop`, expiring when the quote does, with the
//!   condition as its execution condition; the fulfilment is the HMAC of the
//!   transaction object's JSON.
//!
//! In both, the packet's data is the base64url text (as ASCII bytes) of the
//! *transaction object*: the quote request's `quoteId`, `transactionId`,
//! `transactionType`, `payee` and `payer` (verbatim, with every field the
//! payer sent), the quote's `expiration`, its transfer amount as `amount`,
//! and a non-empty `note`. It is serialized as JavaScript's
//! `safe-stable-stringify` does: compact, object keys sorted by UTF-16 code
//! units, non-ASCII characters unescaped, numbers as JavaScript prints them.
//! The HMAC key is the ASCII text of the standard base64 of the secret's
//! UTF-8 bytes; fulfilment, condition and packet are unpadded base64url.
//!
//! Where the reference accepts input only by accident, this module returns
//! an error instead: amounts that are not a whole number of minor units, do
//! not fit in 64 bits or are not plain decimals (the reference silently
//! truncates or wraps them in v1); expirations that are not RFC 3339 with an
//! offset; base64 with non-ASCII characters; packet timestamps that are not
//! digits. A payee without `fspId` is addressed `g.undefined...` in v1, as by
//! the reference. The v4 fulfilment is computed from the transaction JSON
//! (v1 from the packet text), so a v4 payee must see numbers in it as
//! JavaScript does: they are printed as JavaScript prints them, but without
//! its `float_roundtrip` feature `serde_json` parses some long decimal
//! literals (17 significant digits, large exponents) one unit in the last
//! place away from the correctly rounded double that JavaScript gets, and
//! such a number then prints differently. FSPIOP bodies carry strings, not
//! numbers; enable that feature where they might.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::js;
use sha2::{Digest, Sha256};

use super::types::Money;

/// Length of a fulfilment (an ILP preimage) and of a condition, in bytes.
const PREIMAGE_LEN: usize = 32;
/// ILP address of every v4 packet: Mojaloop routes by FSP id, not by address.
const V4_DESTINATION: &str = "g.mojaloop";
/// OER type of an ILPv1 `IlpPayment`.
const TYPE_ILP_PAYMENT: u8 = 1;
/// OER type of an ILPv4 `IlpPrepare`.
const TYPE_ILP_PREPARE: u8 = 12;
/// Length of an ILPv4 timestamp, `YYYYMMDDHHmmssfff` (UTC).
const ILP_TIME_LEN: usize = 17;
/// Longest valid ILP address.
const MAX_ADDRESS_LEN: usize = 1023;

/// The ILP packet format of a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IlpVersion {
    /// ILPv1 `IlpPayment`, as FSPIOP v1.x schemes use.
    #[default]
    V1,
    /// ILPv4 `IlpPrepare`.
    V4,
}

impl IlpVersion {
    /// The version as in configuration: `"v1"` or `"v4"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IlpVersion::V1 => "v1",
            IlpVersion::V4 => "v4",
        }
    }
}

impl fmt::Display for IlpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IlpVersion {
    type Err = IlpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(IlpVersion::V1),
            "v4" => Ok(IlpVersion::V4),
            _ => Err(IlpError::UnknownVersion(s.to_owned())),
        }
    }
}

/// What a payee puts in its quote response (`PUT /quotes/{ID}`) and keeps:
/// the fulfilment stays with the payee until the transfer is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IlpResponse {
    /// base64url (unpadded) of the 32-byte preimage.
    pub fulfilment: String,
    /// base64url (unpadded) of the SHA-256 of the fulfilment.
    pub condition: String,
    /// base64url (unpadded) of the OER-encoded packet.
    pub ilp_packet: String,
}

/// A field of a `POST /transfers` body that is checked against the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferField {
    /// `payerFsp`, against the transaction's `payer.partyIdInfo.fspId`.
    PayerFsp,
    /// `payeeFsp`, against the transaction's `payee.partyIdInfo.fspId`.
    PayeeFsp,
    /// `amount.currency`, against the transaction's `amount.currency`.
    Currency,
    /// `amount.amount`, against the transaction's `amount.amount`, as text
    /// (`"10.5"` and `"10.50"` differ, as in the reference).
    Amount,
}

impl fmt::Display for TransferField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferField::PayerFsp => "payerFsp",
            TransferField::PayeeFsp => "payeeFsp",
            TransferField::Currency => "amount.currency",
            TransferField::Amount => "amount.amount",
        })
    }
}

/// Why an ILP operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IlpError {
    /// Not `"v1"` or `"v4"`.
    #[error("unknown ILP version {0:?} (expected \"v1\" or \"v4\")")]
    UnknownVersion(String),
    /// The payee's secret is empty (the reference refuses one too).
    #[error("the ILP secret is empty")]
    EmptySecret,
    /// A field of a request object (quote request, transfer) is missing or
    /// of the wrong type.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: String, reason: &'static str },
    /// The currency (as JSON) is not in the reference's decimal places table.
    #[error("no decimal place data for currency {0}")]
    UnknownCurrency(String),
    /// The amount cannot be an ILP amount in minor units of its currency.
    #[error("amount {amount} {currency} {reason}")]
    InvalidAmount { amount: String, currency: String, reason: &'static str },
    /// The expiration (as JSON) cannot be an ILPv4 expiry.
    #[error("invalid expiration {0}: expected an RFC 3339 date-time with offset, years 1000 to 9999")]
    InvalidExpiration(String),
    /// The packet does not decode, or what it carries is not a transaction.
    #[error("malformed ILP packet: {0}")]
    MalformedPacket(String),
    /// The fulfilment is not the base64 of 32 bytes.
    #[error("invalid fulfilment: {0}")]
    InvalidFulfilment(String),
    /// The transfer disagrees with the transaction in its packet.
    #[error("transfer {field} is {}, but the ILP packet's transaction has {}", show(.transfer), show(.packet))]
    TransferMismatch { field: TransferField, transfer: Option<Value>, packet: Option<Value> },
    /// The transfer's condition is not the one of the packet's fulfilment:
    /// the packet was not issued with this condition, or it was altered.
    #[error("transfer condition does not match the fulfilment of its ILP packet")]
    ConditionMismatch,
}

/// A value in an error message: its JSON, or `absent`.
fn show(value: &Option<Value>) -> String {
    value.as_ref().map_or_else(|| "absent".to_owned(), js::stable_stringify)
}

/// ILP for one scheme: its packet version and the payee's secret.
#[derive(Clone)]
pub struct Ilp {
    version: IlpVersion,
    /// HMAC-SHA256 keyed with the secret, cloned for each message; `None`
    /// for an empty secret.
    mac: Option<Hmac<Sha256>>,
}

impl fmt::Debug for Ilp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ilp").field("version", &self.version).finish_non_exhaustive()
    }
}

impl Ilp {
    /// ILP of the given version under the payee's secret. With an empty
    /// secret every operation that needs it fails with
    /// [`IlpError::EmptySecret`].
    pub fn new(version: IlpVersion, secret: &str) -> Self {
        // The key is the text of the secret's base64, as in the reference.
        // HMAC takes keys of any length, so `new_from_slice` cannot fail.
        let mac = if secret.is_empty() {
            None
        } else {
            <Hmac<Sha256> as Mac>::new_from_slice(STANDARD.encode(secret.as_bytes()).as_bytes()).ok()
        };
        Ilp { version, mac }
    }

    /// The packet version.
    pub fn version(&self) -> IlpVersion {
        self.version
    }

    /// Packet, condition and fulfilment of a quote: `quote_request` is the
    /// `POST /quotes` body, the rest is what the payee answers in
    /// `PUT /quotes/{ID}` (`transferAmount`, `expiration`, and the `note`,
    /// which goes into the transaction only if not empty).
    pub fn quote_response(
        &self,
        quote_request: &Value,
        transfer_amount: &Money,
        expiration: &str,
        note: Option<&str>,
    ) -> Result<IlpResponse, IlpError> {
        let transaction = transaction_for_quote(quote_request, transfer_amount, expiration, note)?;
        self.response_for(&transaction)
    }

    /// The transaction object a packet carries. The packet may be base64url
    /// or base64, padded or not; like Node's decoder, this skips characters
    /// outside both alphabets and stops at the first `=`.
    pub fn transaction_object(&self, ilp_packet: &str) -> Result<Value, IlpError> {
        let packet = decode_base64(ilp_packet)
            .ok_or_else(|| IlpError::MalformedPacket("not base64 (non-ASCII characters)".to_owned()))?;
        let data = match self.version {
            IlpVersion::V1 => ilp_payment_data(&packet)?,
            IlpVersion::V4 => ilp_prepare_data(&packet)?,
        };
        // The data is base64url text, as bytes.
        let json = std::str::from_utf8(data)
            .ok()
            .and_then(decode_base64)
            .ok_or_else(|| IlpError::MalformedPacket("data is not base64url".to_owned()))?;
        serde_json::from_str(&String::from_utf8_lossy(&json))
            .map_err(|e| IlpError::MalformedPacket(format!("data is not JSON: {e}")))
    }

    /// The fulfilment of a packet this payee issued under its secret. In v1
    /// it is the HMAC of the packet text as given; in v4 that of its
    /// transaction object, whose amount and expiration must still encode as
    /// a packet (as in the reference, which rebuilds the whole response).
    pub fn fulfilment_of_packet(&self, ilp_packet: &str) -> Result<String, IlpError> {
        match self.version {
            IlpVersion::V1 => self.hmac(&latin1(ilp_packet)),
            IlpVersion::V4 => {
                let transaction = self.transaction_object(ilp_packet)?;
                Ok(self.response_for(&transaction)?.fulfilment)
            }
        }
    }

    /// Checks a `POST /transfers` body against the packet it carries:
    /// `payerFsp`, `payeeFsp`, `amount.currency` and `amount.amount` must
    /// equal the transaction's (compared as the reference does, values as
    /// given, so amounts as text), then `condition` must be that of the
    /// packet's fulfilment. The first difference is the error.
    pub fn validate_transfer(&self, transfer: &Value) -> Result<(), IlpError> {
        let ilp_packet = transfer.get("ilpPacket").and_then(Value::as_str).ok_or_else(|| {
            IlpError::InvalidField { field: "ilpPacket".to_owned(), reason: "must be a string" }
        })?;
        let transaction = self.transaction_object(ilp_packet)?;
        let checks: [(TransferField, &[&str], &[&str]); 4] = [
            (TransferField::PayerFsp, &["payerFsp"], &["payer", "partyIdInfo", "fspId"]),
            (TransferField::PayeeFsp, &["payeeFsp"], &["payee", "partyIdInfo", "fspId"]),
            (TransferField::Currency, &["amount", "currency"], &["amount", "currency"]),
            (TransferField::Amount, &["amount", "amount"], &["amount", "amount"]),
        ];
        for (field, in_transfer, in_packet) in checks {
            let ours = lookup(transfer, in_transfer)
                .map_err(|field| IlpError::InvalidField { field, reason: "is missing" })?;
            let theirs = lookup(&transaction, in_packet)
                .map_err(|path| IlpError::MalformedPacket(format!("transaction has no {path}")))?;
            if !strictly_equal(ours, theirs) {
                return Err(IlpError::TransferMismatch {
                    field,
                    transfer: ours.cloned(),
                    packet: theirs.cloned(),
                });
            }
        }
        let condition = transfer.get("condition").and_then(Value::as_str).ok_or_else(|| {
            IlpError::InvalidField { field: "condition".to_owned(), reason: "must be a string" }
        })?;
        let fulfilment = match self.version {
            IlpVersion::V1 => self.hmac(&latin1(ilp_packet))?,
            IlpVersion::V4 => self.response_for(&transaction)?.fulfilment,
        };
        if fulfilment_matches(&fulfilment, condition) {
            Ok(())
        } else {
            Err(IlpError::ConditionMismatch)
        }
    }

    /// Packet, fulfilment and condition of a transaction object.
    fn response_for(&self, transaction: &Value) -> Result<IlpResponse, IlpError> {
        match self.version {
            IlpVersion::V1 => {
                let ilp_packet = URL_SAFE_NO_PAD.encode(ilp_payment(transaction)?);
                let fulfilment = self.hmac(ilp_packet.as_bytes())?;
                let condition = condition_of(&fulfilment)?;
                Ok(IlpResponse { fulfilment, condition, ilp_packet })
            }
            IlpVersion::V4 => {
                let json = js::stable_stringify(transaction);
                let fulfilment = self.hmac(STANDARD.encode(json.as_bytes()).as_bytes())?;
                let digest = condition_digest(&fulfilment)?;
                let ilp_packet = URL_SAFE_NO_PAD.encode(ilp_prepare(transaction, &json, &digest)?);
                let condition = URL_SAFE_NO_PAD.encode(digest);
                Ok(IlpResponse { fulfilment, condition, ilp_packet })
            }
        }
    }

    /// base64url(HMAC-SHA256(secret key, message)).
    fn hmac(&self, message: &[u8]) -> Result<String, IlpError> {
        let mut mac = self.mac.clone().ok_or(IlpError::EmptySecret)?;
        mac.update(message);
        Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }
}

/// The condition of a fulfilment: base64url of the SHA-256 of its 32 bytes.
/// The fulfilment may be base64url or base64, padded or not.
pub fn condition_of(fulfilment: &str) -> Result<String, IlpError> {
    condition_digest(fulfilment).map(|digest| URL_SAFE_NO_PAD.encode(digest))
}

/// Whether a fulfilment is the preimage of a condition. The condition must
/// be exactly the unpadded base64url the reference produces.
pub fn fulfilment_matches(fulfilment: &str, condition: &str) -> bool {
    condition_of(fulfilment).is_ok_and(|expected| expected == condition)
}

fn condition_digest(fulfilment: &str) -> Result<[u8; PREIMAGE_LEN], IlpError> {
    let preimage = decode_base64(fulfilment)
        .ok_or_else(|| IlpError::InvalidFulfilment("not base64url (non-ASCII characters)".to_owned()))?;
    if preimage.len() != PREIMAGE_LEN {
        return Err(IlpError::InvalidFulfilment(format!(
            "decodes to {} bytes, an ILP preimage has {PREIMAGE_LEN}",
            preimage.len()
        )));
    }
    Ok(Sha256::digest(&preimage).into())
}

/// The transaction object of a quote, as the reference builds it: fields the
/// quote request lacks are left out, a `null` one is kept.
fn transaction_for_quote(
    quote_request: &Value,
    transfer_amount: &Money,
    expiration: &str,
    note: Option<&str>,
) -> Result<Value, IlpError> {
    let request = quote_request.as_object().ok_or_else(|| IlpError::InvalidField {
        field: "quoteRequest".to_owned(),
        reason: "must be an object",
    })?;
    let mut transaction = Map::new();
    for key in ["quoteId", "transactionId", "transactionType", "payee", "payer"] {
        if let Some(value) = request.get(key) {
            transaction.insert(key.to_owned(), value.clone());
        }
    }
    transaction.insert("expiration".to_owned(), Value::from(expiration));
    let amount = Map::from_iter([
        ("amount".to_owned(), Value::from(transfer_amount.amount.as_str())),
        ("currency".to_owned(), Value::from(transfer_amount.currency.as_str())),
    ]);
    transaction.insert("amount".to_owned(), Value::Object(amount));
    if let Some(note) = note.filter(|note| !note.is_empty()) {
        transaction.insert("note".to_owned(), Value::from(note));
    }
    Ok(Value::Object(transaction))
}

// ---------------------------------------------------------------------------
// Packets (OER)
// ---------------------------------------------------------------------------

/// ILPv1 `IlpPayment` of a transaction: amount (u64), account, data, and an
/// empty extensions list.
fn ilp_payment(transaction: &Value) -> Result<Vec<u8>, IlpError> {
    let amount = ilp_amount(transaction.get("amount"))?;
    let account = payee_address(transaction.get("payee"))?;
    let data = URL_SAFE_NO_PAD.encode(js::stable_stringify(transaction));
    let mut content = Vec::with_capacity(8 + 3 + account.len() + 4 + data.len() + 1);
    content.extend_from_slice(&amount.to_be_bytes());
    write_var_octets(&mut content, &account);
    write_var_octets(&mut content, data.as_bytes());
    content.push(0);
    Ok(envelope(TYPE_ILP_PAYMENT, &content))
}

/// ILPv4 `IlpPrepare` of a transaction (whose JSON is given) with the
/// condition: amount (u64), expiry, condition, destination, data. An FX
/// transaction (with `conversionTerms`) has amount 0 and expires with its
/// conversion terms.
fn ilp_prepare(transaction: &Value, json: &str, condition: &[u8; PREIMAGE_LEN]) -> Result<Vec<u8>, IlpError> {
    let conversion_terms = transaction.get("conversionTerms").filter(|terms| js::truthy(terms));
    let expires_at = match conversion_terms {
        Some(terms) => ilp_time(terms.get("expiration"))?,
        None => ilp_time(transaction.get("expiration"))?,
    };
    let amount = match conversion_terms {
        Some(_) => 0,
        None => ilp_amount(transaction.get("amount"))?,
    };
    let data = URL_SAFE_NO_PAD.encode(json);
    let mut content = Vec::with_capacity(8 + ILP_TIME_LEN + PREIMAGE_LEN + 11 + 4 + data.len());
    content.extend_from_slice(&amount.to_be_bytes());
    content.extend_from_slice(expires_at.as_bytes());
    content.extend_from_slice(condition);
    write_var_octets(&mut content, V4_DESTINATION.as_bytes());
    write_var_octets(&mut content, data.as_bytes());
    Ok(envelope(TYPE_ILP_PREPARE, &content))
}

fn envelope(packet_type: u8, content: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(content.len() + 4);
    packet.push(packet_type);
    write_var_octets(&mut packet, content);
    packet
}

/// OER variable-length octet string: the length (one byte up to 127, else
/// `0x80 | n` and the length in `n` big-endian bytes, as few as possible),
/// then the bytes.
fn write_var_octets(out: &mut Vec<u8>, bytes: &[u8]) {
    match u8::try_from(bytes.len()) {
        Ok(len) if len <= 127 => out.push(len),
        _ => {
            let len = (bytes.len() as u64).to_be_bytes();
            let skip = len.iter().take_while(|&&b| b == 0).count();
            let len_of_len = u8::try_from(len.len() - skip).unwrap_or(8);
            out.push(0x80 | len_of_len);
            out.extend_from_slice(&len[skip..]);
        }
    }
    out.extend_from_slice(bytes);
}

/// The data of an ILPv1 `IlpPayment`.
fn ilp_payment_data(packet: &[u8]) -> Result<&[u8], IlpError> {
    let mut content = Reader::new(open_envelope(packet, TYPE_ILP_PAYMENT)?);
    content.take(8)?; // amount
    content.var_octets()?; // account
    content.var_octets()
}

/// The data of an ILPv4 `IlpPrepare`, after checking its fields as the
/// reference's decoder does.
fn ilp_prepare_data(packet: &[u8]) -> Result<&[u8], IlpError> {
    let mut content = Reader::new(open_envelope(packet, TYPE_ILP_PREPARE)?);
    content.take(8)?; // amount
    if !content.take(ILP_TIME_LEN)?.iter().all(u8::is_ascii_digit) {
        return Err(IlpError::MalformedPacket("expiry is not a timestamp".to_owned()));
    }
    content.take(PREIMAGE_LEN)?; // execution condition
    if !is_ilp_address(content.var_octets()?) {
        return Err(IlpError::MalformedPacket("destination is not an ILP address".to_owned()));
    }
    content.var_octets()
}

fn open_envelope(packet: &[u8], expected: u8) -> Result<&[u8], IlpError> {
    let mut reader = Reader::new(packet);
    let packet_type = reader.take(1)?[0];
    let content = reader.var_octets()?;
    if packet_type != expected {
        return Err(IlpError::MalformedPacket(format!(
            "packet type {packet_type}, expected {expected} for this ILP version"
        )));
    }
    Ok(content)
}

/// Reads OER from a byte slice; bytes after what is read are ignored.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], IlpError> {
        if n > self.bytes.len() {
            return Err(IlpError::MalformedPacket(format!(
                "truncated: {n} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    /// A variable-length octet string. Its length takes 1 to 6 bytes and
    /// must be canonical, with the reference's lower bound: `1 << 8(n-1)`
    /// computed in 32 bits, so 5- and 6-byte lengths need only be >= 128
    /// and >= 256.
    fn var_octets(&mut self) -> Result<&'a [u8], IlpError> {
        let first = self.take(1)?[0];
        if first & 0x80 == 0 {
            return self.take(usize::from(first));
        }
        let len_of_len = usize::from(first & 0x7f);
        if !(1..=6).contains(&len_of_len) {
            return Err(IlpError::MalformedPacket(format!("length prefix of {len_of_len} bytes")));
        }
        let len = self.take(len_of_len)?.iter().fold(0u64, |len, &b| (len << 8) | u64::from(b));
        let min = 128u64.max(1 << ((8 * (len_of_len - 1)) % 32));
        if len < min {
            return Err(IlpError::MalformedPacket(format!(
                "length {len} is not canonical in {len_of_len} bytes"
            )));
        }
        let len = usize::try_from(len)
            .map_err(|_| IlpError::MalformedPacket(format!("length {len} does not fit in memory")))?;
        self.take(len)
    }
}

/// `^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$`,
/// at most 1023 characters, read as ASCII (high bit dropped, as Node does).
fn is_ilp_address(bytes: &[u8]) -> bool {
    if bytes.len() > MAX_ADDRESS_LEN {
        return false;
    }
    let text: String = bytes.iter().map(|&b| char::from(b & 0x7f)).collect();
    let mut segments = text.split('.');
    let scheme_ok = matches!(
        segments.next(),
        Some("g" | "private" | "example" | "peer" | "self" | "test" | "test1" | "test2" | "test3" | "local")
    );
    let segments: Vec<&str> = segments.collect();
    let segment_ok = |segment: &&str| {
        !segment.is_empty()
            && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-'))
    };
    scheme_ok && !segments.is_empty() && segments.iter().all(segment_ok)
}

// ---------------------------------------------------------------------------
// Packet fields
// ---------------------------------------------------------------------------

/// The v1 address of the payee:
/// `g.{fspId}.{partyIdType}.{partyIdentifier}[.{partySubIdOrType}]`, all but
/// the FSP id lower-cased, as bytes the way Node writes a string as ASCII
/// (the low byte of each UTF-16 code unit).
fn payee_address(payee: Option<&Value>) -> Result<Vec<u8>, IlpError> {
    let invalid = |field: &str, reason| IlpError::InvalidField { field: format!("payee{field}"), reason };
    let info = payee
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("", "must be an object"))?
        .get("partyIdInfo")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(".partyIdInfo", "must be an object"))?;
    let non_empty = |key: &str| {
        info.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(&format!(".partyIdInfo.{key}"), "must be a non-empty string"))
    };
    let id_type = non_empty("partyIdType")?;
    let identifier = non_empty("partyIdentifier")?;
    let sub_id = match info.get("partySubIdOrType") {
        None => None,
        Some(Value::String(sub_id)) => Some(sub_id.as_str()).filter(|s| !s.is_empty()),
        Some(_) => return Err(invalid(".partyIdInfo.partySubIdOrType", "must be a string")),
    };
    // The reference interpolates the FSP id whatever it is.
    let fsp_id = match info.get("fspId") {
        None => "undefined".to_owned(),
        Some(Value::Null) => "null".to_owned(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => js::number_text(n),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid(".partyIdInfo.fspId", "must be a string")),
    };
    let mut address = format!("g.{fsp_id}.{}.{}", id_type.to_lowercase(), identifier.to_lowercase());
    if let Some(sub_id) = sub_id {
        address.push('.');
        address.push_str(&sub_id.to_lowercase());
    }
    Ok(latin1(&address))
}

/// An FSPIOP `Money` object as an ILP amount: minor units of its currency.
fn ilp_amount(money: Option<&Value>) -> Result<u64, IlpError> {
    let money = money.and_then(Value::as_object).ok_or_else(|| IlpError::InvalidField {
        field: "amount".to_owned(),
        reason: "must be an object with amount and currency",
    })?;
    let currency = money.get("currency");
    let decimals = currency
        .and_then(Value::as_str)
        .and_then(currency_decimals)
        .ok_or_else(|| IlpError::UnknownCurrency(show(&currency.cloned())))?;
    let currency = currency.and_then(Value::as_str).unwrap_or_default();
    let invalid =
        |amount: String, reason| IlpError::InvalidAmount { amount, currency: currency.to_owned(), reason };
    let text = match money.get("amount") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(n)) => js::number_text(n),
        other => return Err(invalid(show(&other.cloned()), "is not a decimal number")),
    };
    minor_units(&text, decimals).map_err(|reason| invalid(text.clone(), reason))
}

/// `amount` (plain decimal: digits, optionally a point and more digits)
/// times `10^decimals`, which must be a whole number that fits in 64 bits.
fn minor_units(amount: &str, decimals: u8) -> Result<u64, &'static str> {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err("is not a decimal number");
    }
    let decimals = usize::from(decimals);
    let (kept, dropped) = fraction.split_at(fraction.len().min(decimals));
    if dropped.bytes().any(|b| b != b'0') {
        return Err("has more decimal places than its currency");
    }
    let padding = std::iter::repeat_n(b'0', decimals - kept.len());
    whole.bytes().chain(kept.bytes()).chain(padding).try_fold(0u64, |value, digit| {
        value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(digit - b'0')))
            .ok_or("does not fit in 64 bits of minor units")
    })
}

/// An ILPv4 timestamp, `YYYYMMDDHHmmssfff` in UTC (milliseconds truncated),
/// of an RFC 3339 date-time.
fn ilp_time(expiration: Option<&Value>) -> Result<String, IlpError> {
    let invalid = || IlpError::InvalidExpiration(show(&expiration.cloned()));
    let text = expiration.and_then(Value::as_str).ok_or_else(invalid)?;
    let at = DateTime::parse_from_rfc3339(text).map_err(|_| invalid())?.with_timezone(&Utc);
    // chrono takes second 60 as a leap second; JavaScript refuses it.
    if !(1000..=9999).contains(&at.year()) || at.nanosecond() >= 1_000_000_000 {
        return Err(invalid());
    }
    Ok(format!("{}{:03}", at.format("%Y%m%d%H%M%S"), at.timestamp_subsec_millis()))
}

/// Decimal places of an ISO 4217 currency, from the reference's
/// `currency.json` (168 entries).
pub(crate) fn currency_decimals(currency: &str) -> Option<u8> {
    CURRENCY_DECIMALS.binary_search_by(|(code, _)| (*code).cmp(currency)).ok().map(|i| CURRENCY_DECIMALS[i].1)
}

/// Sorted by code, for binary search.
#[rustfmt::skip]
static CURRENCY_DECIMALS: [(&str, u8); 168] = [
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2),
    ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0),
    ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2),
    ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4),
    ("CLP", 0), ("CNY", 2), ("COP", 2), ("COU", 2), ("CRC", 2), ("CUC", 2), ("CUP", 2), ("CVE", 2),
    ("CZK", 2), ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2),
    ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2),
    ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HRK", 2), ("HTG", 2), ("HUF", 2),
    ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3),
    ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0), ("KWD", 3),
    ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2), ("LYD", 3),
    ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2), ("MRU", 2),
    ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2),
    ("NGN", 2), ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2),
    ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2),
    ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLL", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2),
    ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2),
    ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2), ("USN", 2), ("UYI", 0), ("UYU", 2),
    ("UYW", 4), ("UZS", 2), ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2),
    ("XOF", 0), ("XPF", 0), ("XTS", 4), ("XXX", 4), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWL", 2),
];

// ---------------------------------------------------------------------------
// JavaScript semantics
// ---------------------------------------------------------------------------

/// A string as Node writes it with the `ascii` encoding: the low byte of
/// each UTF-16 code unit (so ASCII text is unchanged).
fn latin1(text: &str) -> Vec<u8> {
    text.encode_utf16().map(|unit| unit.to_le_bytes()[0]).collect()
}

/// Decodes base64 as Node's `Buffer.from(text, 'base64')` does: both the
/// standard and the URL alphabet, padding optional, characters outside them
/// skipped, stopping at the first `=`, a final lone character ignored.
/// `None` for non-ASCII text, which Node decodes unpredictably.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if !text.is_ascii() {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut bits, mut count) = (0u32, 0u8);
    for c in text.bytes() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(sextet);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&bits.to_be_bytes()[1..]);
            (bits, count) = (0, 0);
        }
    }
    match count {
        2 => out.push((bits >> 4).to_le_bytes()[0]),
        3 => out.extend_from_slice(&(bits >> 2).to_be_bytes()[2..]),
        _ => {}
    }
    Some(out)
}

/// JavaScript `===` between two possibly absent (`undefined`) values parsed
/// from JSON: objects and arrays are never equal (they are distinct objects).
fn strictly_equal(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) | (Some(Value::Null), Some(Value::Null)) => true,
        (Some(Value::Bool(a)), Some(Value::Bool(b))) => a == b,
        (Some(Value::String(a)), Some(Value::String(b))) => a == b,
        (Some(Value::Number(a)), Some(Value::Number(b))) => a.as_f64() == b.as_f64(),
        _ => false,
    }
}

/// JavaScript property access along `path` (`a.b.c`): `Ok(None)` where the
/// last property is absent, `Err(path so far)` where a value on the way is
/// absent or null (a `TypeError` in JavaScript).
fn lookup<'a>(root: &'a Value, path: &[&str]) -> Result<Option<&'a Value>, String> {
    let mut value = Some(root);
    for (i, key) in path.iter().enumerate() {
        value = match value {
            None | Some(Value::Null) => return Err(path[..i].join(".")),
            Some(Value::Object(map)) => map.get(*key),
            Some(_) => None,
        };
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    //! The vectors were computed by Mojaloop's reference implementation
    //! (`@mojaloop/sdk-standard-components` 19.19.1) through
    //! `connectors/tests/interop/ilp.js`, on the quotes below, with secret
    //! `payhub-test-secret`.

    use super::*;
    use serde_json::json;

    const SECRET: &str = "payhub-test-secret";

    struct Vector {
        fulfilment: &'static str,
        condition: &'static str,
        ilp_packet: &'static str,
    }

    struct Quote {
        request: Value,
        transfer_amount: Money,
        expiration: &'static str,
        note: Option<&'static str>,
    }

    fn money(amount: &str, currency: &str) -> Money {
        Money { amount: amount.to_owned(), currency: currency.to_owned() }
    }

    fn transaction_type() -> Value {
        json!({"scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER"})
    }

    /// USD (2 decimals); the payee has a sub-id, the payer personal info
    /// with non-ASCII names; with a note.
    fn usd() -> Quote {
        Quote {
            request: json!({
                "quoteId": "7c23e80c-d078-4077-8263-2c047876fcf6",
                "transactionId": "85feac2f-39b2-491b-817e-4a03203d4f14",
                "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "27713803912",
                    "partySubIdOrType": "Savings", "fspId": "payhub"}},
                "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "44123456789",
                    "fspId": "payerfsp"},
                    "name": "Zoë Ölçer",
                    "personalInfo": {"complexName": {"firstName": "Zoë", "lastName": "Ölçer"},
                        "dateOfBirth": "1984-01-01"}},
                "amountType": "RECEIVE",
                "amount": {"amount": "100", "currency": "USD"},
                "transactionType": transaction_type(),
                "note": "not copied"
            }),
            transfer_amount: money("100.5", "USD"),
            expiration: "2024-01-02T03:04:05.678Z",
            note: Some("Merci, Zoë €"),
        }
    }

    /// XOF (no decimals), an expiration with an offset, no note.
    fn xof() -> Quote {
        Quote {
            request: json!({
                "quoteId": "0b8d4d41-5a5e-4c5e-9d0b-4e1b5c1e9f01",
                "transactionId": "b51ec534-ee48-4575-b6a9-ead2955b8069",
                "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "22507123456",
                    "fspId": "payhub"}, "name": "Awa Koné"},
                "payer": {"partyIdInfo": {"partyIdType": "PERSONAL_ID", "partyIdentifier": "CI-998877",
                    "fspId": "orangefsp"}},
                "amountType": "SEND",
                "amount": {"amount": "5000", "currency": "XOF"},
                "transactionType": transaction_type()
            }),
            transfer_amount: money("5000", "XOF"),
            expiration: "2024-07-01T12:34:56.789+01:00",
            note: None,
        }
    }

    /// BHD (3 decimals), Arabic script, a note with quotes.
    fn bhd() -> Quote {
        Quote {
            request: json!({
                "quoteId": "5f1a1d6e-0b7e-4a4a-8f4e-8f3c2a1b0c9d",
                "transactionId": "2c4a8f1e-3b5d-4e6f-8a9b-0c1d2e3f4a5b",
                "payee": {"partyIdInfo": {"partyIdType": "IBAN", "partyIdentifier": "BH67BMAG00001299123456",
                    "fspId": "payhub"}},
                "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "97312345678",
                    "fspId": "bahrainfsp"},
                    "personalInfo": {"complexName": {"firstName": "محمد", "lastName": "Al-Khalifa"},
                        "dateOfBirth": "1990-12-31"}},
                "amountType": "SEND",
                "amount": {"amount": "12.345", "currency": "BHD"},
                "transactionType": {"scenario": "PAYMENT", "initiator": "PAYER", "initiatorType": "BUSINESS"}
            }),
            transfer_amount: money("12.345", "BHD"),
            expiration: "2025-03-04T05:06:07.123Z",
            note: Some("Invoice #42 \"March\""),
        }
    }

    /// KWD (3 decimals); the payee has no FSP id and a non-ASCII
    /// identifier (its v1 address is `g.undefined.alias.zo\xEB`); an empty
    /// note, which is left out.
    fn kwd() -> Quote {
        Quote {
            request: json!({
                "quoteId": "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a",
                "transactionId": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                "payee": {"partyIdInfo": {"partyIdType": "ALIAS", "partyIdentifier": "ZOË"}},
                "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "96512345678",
                    "fspId": "kuwaitfsp"}},
                "amountType": "SEND",
                "amount": {"amount": "0.5", "currency": "KWD"},
                "transactionType": transaction_type()
            }),
            transfer_amount: money("0.5", "KWD"),
            expiration: "2026-11-30T23:59:59.999-05:00",
            note: Some(""),
        }
    }

    const USD_V1: Vector = Vector {
        fulfilment: "x8Bo0XYAIX3ANMgqvEBax9l1QXUlvi-ZPCBx9aGi94U",
        condition: "kRgHAPXPtc-9Olyap8hzpCj_JzLjof_7ETyTvuTTMdE",
        ilp_packet: "AYIDlwAAAAAAACdCI2cucGF5aHViLm1zaXNkbi4yNzcxMzgwMzkxMi5zYXZpbmdzggNnZXlKaGJXOTFiblFpT25zaVlXMXZkVzUwSWpvaU1UQXdMalVpTENKamRYSnlaVzVqZVNJNklsVlRSQ0o5TENKbGVIQnBjbUYwYVc5dUlqb2lNakF5TkMwd01TMHdNbFF3TXpvd05Eb3dOUzQyTnpoYUlpd2libTkwWlNJNklrMWxjbU5wTENCYWI4T3JJT0tDckNJc0luQmhlV1ZsSWpwN0luQmhjblI1U1dSSmJtWnZJanA3SW1aemNFbGtJam9pY0dGNWFIVmlJaXdpY0dGeWRIbEpaRlI1Y0dVaU9pSk5VMGxUUkU0aUxDSndZWEowZVVsa1pXNTBhV1pwWlhJaU9pSXlOemN4TXpnd016a3hNaUlzSW5CaGNuUjVVM1ZpU1dSUGNsUjVjR1VpT2lKVFlYWnBibWR6SW4xOUxDSndZWGxsY2lJNmV5SnVZVzFsSWpvaVdtX0RxeUREbG16RHAyVnlJaXdpY0dGeWRIbEpaRWx1Wm04aU9uc2labk53U1dRaU9pSndZWGxsY21aemNDSXNJbkJoY25SNVNXUlVlWEJsSWpvaVRWTkpVMFJPSWl3aWNHRnlkSGxKWkdWdWRHbG1hV1Z5SWpvaU5EUXhNak0wTlRZM09Ea2lmU3dpY0dWeWMyOXVZV3hKYm1adklqcDdJbU52YlhCc1pYaE9ZVzFsSWpwN0ltWnBjbk4wVG1GdFpTSTZJbHB2dzZzaUxDSnNZWE4wVG1GdFpTSTZJc09XYk1PblpYSWlmU3dpWkdGMFpVOW1RbWx5ZEdnaU9pSXhPVGcwTFRBeExUQXhJbjE5TENKeGRXOTBaVWxrSWpvaU4yTXlNMlU0TUdNdFpEQTNPQzAwTURjM0xUZ3lOak10TW1Nd05EYzROelptWTJZMklpd2lkSEpoYm5OaFkzUnBiMjVKWkNJNklqZzFabVZoWXpKbUxUTTVZakl0TkRreFlpMDRNVGRsTFRSaE1ETXlNRE5rTkdZeE5DSXNJblJ5WVc1ellXTjBhVzl1Vkhsd1pTSTZleUpwYm1sMGFXRjBiM0lpT2lKUVFWbEZVaUlzSW1sdWFYUnBZWFJ2Y2xSNWNHVWlPaUpEVDA1VFZVMUZVaUlzSW5OalpXNWhjbWx2SWpvaVZGSkJUbE5HUlZJaWZYMAA",
    };
    const USD_V4: Vector = Vector {
        fulfilment: "oQM9AWMt_UKENzYMIp6hw1Jib0dOI5xALk1g4PQZ00g",
        condition: "uxGXUICHKQyfuhRF-TdMIzjS1d65JGGA-9Ace13m61g",
        ilp_packet: "DIIDrgAAAAAAACdCMjAyNDAxMDIwMzA0MDU2Nzi7EZdQgIcpDJ-6FEX5N0wjONLV3rkkYYD70Bx7XebrWApnLm1vamFsb29wggNnZXlKaGJXOTFiblFpT25zaVlXMXZkVzUwSWpvaU1UQXdMalVpTENKamRYSnlaVzVqZVNJNklsVlRSQ0o5TENKbGVIQnBjbUYwYVc5dUlqb2lNakF5TkMwd01TMHdNbFF3TXpvd05Eb3dOUzQyTnpoYUlpd2libTkwWlNJNklrMWxjbU5wTENCYWI4T3JJT0tDckNJc0luQmhlV1ZsSWpwN0luQmhjblI1U1dSSmJtWnZJanA3SW1aemNFbGtJam9pY0dGNWFIVmlJaXdpY0dGeWRIbEpaRlI1Y0dVaU9pSk5VMGxUUkU0aUxDSndZWEowZVVsa1pXNTBhV1pwWlhJaU9pSXlOemN4TXpnd016a3hNaUlzSW5CaGNuUjVVM1ZpU1dSUGNsUjVjR1VpT2lKVFlYWnBibWR6SW4xOUxDSndZWGxsY2lJNmV5SnVZVzFsSWpvaVdtX0RxeUREbG16RHAyVnlJaXdpY0dGeWRIbEpaRWx1Wm04aU9uc2labk53U1dRaU9pSndZWGxsY21aemNDSXNJbkJoY25SNVNXUlVlWEJsSWpvaVRWTkpVMFJPSWl3aWNHRnlkSGxKWkdWdWRHbG1hV1Z5SWpvaU5EUXhNak0wTlRZM09Ea2lmU3dpY0dWeWMyOXVZV3hKYm1adklqcDdJbU52YlhCc1pYaE9ZVzFsSWpwN0ltWnBjbk4wVG1GdFpTSTZJbHB2dzZzaUxDSnNZWE4wVG1GdFpTSTZJc09XYk1PblpYSWlmU3dpWkdGMFpVOW1RbWx5ZEdnaU9pSXhPVGcwTFRBeExUQXhJbjE5TENKeGRXOTBaVWxrSWpvaU4yTXlNMlU0TUdNdFpEQTNPQzAwTURjM0xUZ3lOak10TW1Nd05EYzROelptWTJZMklpd2lkSEpoYm5OaFkzUnBiMjVKWkNJNklqZzFabVZoWXpKbUxUTTVZakl0TkRreFlpMDRNVGRsTFRSaE1ETXlNRE5rTkdZeE5DSXNJblJ5WVc1ellXTjBhVzl1Vkhsd1pTSTZleUpwYm1sMGFXRjBiM0lpT2lKUVFWbEZVaUlzSW1sdWFYUnBZWFJ2Y2xSNWNHVWlPaUpEVDA1VFZVMUZVaUlzSW5OalpXNWhjbWx2SWpvaVZGSkJUbE5HUlZJaWZYMA",
    };
    const XOF_V1: Vector = Vector {
        fulfilment: "bAWLynFaH5_Rs8aXyZiOEPUu9VL752BGldg7OTQly6c",
        condition: "7KqeML4_ta-G9etZTlOu8zi4Nc1VjTHGVaxWzq4K-GU",
        ilp_packet: "AYICyAAAAAAAABOIG2cucGF5aHViLm1zaXNkbi4yMjUwNzEyMzQ1NoICoGV5SmhiVzkxYm5RaU9uc2lZVzF2ZFc1MElqb2lOVEF3TUNJc0ltTjFjbkpsYm1ONUlqb2lXRTlHSW4wc0ltVjRjR2x5WVhScGIyNGlPaUl5TURJMExUQTNMVEF4VkRFeU9qTTBPalUyTGpjNE9Tc3dNVG93TUNJc0luQmhlV1ZsSWpwN0ltNWhiV1VpT2lKQmQyRWdTMjl1dzZraUxDSndZWEowZVVsa1NXNW1ieUk2ZXlKbWMzQkpaQ0k2SW5CaGVXaDFZaUlzSW5CaGNuUjVTV1JVZVhCbElqb2lUVk5KVTBST0lpd2ljR0Z5ZEhsSlpHVnVkR2xtYVdWeUlqb2lNakkxTURjeE1qTTBOVFlpZlgwc0luQmhlV1Z5SWpwN0luQmhjblI1U1dSSmJtWnZJanA3SW1aemNFbGtJam9pYjNKaGJtZGxabk53SWl3aWNHRnlkSGxKWkZSNWNHVWlPaUpRUlZKVFQwNUJURjlKUkNJc0luQmhjblI1U1dSbGJuUnBabWxsY2lJNklrTkpMVGs1T0RnM055SjlmU3dpY1hWdmRHVkpaQ0k2SWpCaU9HUTBaRFF4TFRWaE5XVXROR00xWlMwNVpEQmlMVFJsTVdJMVl6RmxPV1l3TVNJc0luUnlZVzV6WVdOMGFXOXVTV1FpT2lKaU5URmxZelV6TkMxbFpUUTRMVFExTnpVdFlqWmhPUzFsWVdReU9UVTFZamd3TmpraUxDSjBjbUZ1YzJGamRHbHZibFI1Y0dVaU9uc2lhVzVwZEdsaGRHOXlJam9pVUVGWlJWSWlMQ0pwYm1sMGFXRjBiM0pVZVhCbElqb2lRMDlPVTFWTlJWSWlMQ0p6WTJWdVlYSnBieUk2SWxSU1FVNVRSa1ZTSW4xOQA",
    };
    const XOF_V4: Vector = Vector {
        fulfilment: "oow75bNc3offYPHQHhT55NEgzQgdRY6MBSnsZ9_EfEM",
        condition: "DY4o_Cns0g4sQI8ohLjJ2bikxorbr-3CAyLxBMacpPo",
        ilp_packet: "DIIC5wAAAAAAABOIMjAyNDA3MDExMTM0NTY3ODkNjij8KezSDixAjyiEuMnZuKTGituv7cIDIvEExpyk-gpnLm1vamFsb29wggKgZXlKaGJXOTFiblFpT25zaVlXMXZkVzUwSWpvaU5UQXdNQ0lzSW1OMWNuSmxibU41SWpvaVdFOUdJbjBzSW1WNGNHbHlZWFJwYjI0aU9pSXlNREkwTFRBM0xUQXhWREV5T2pNME9qVTJMamM0T1Nzd01Ub3dNQ0lzSW5CaGVXVmxJanA3SW01aGJXVWlPaUpCZDJFZ1MyOXV3NmtpTENKd1lYSjBlVWxrU1c1bWJ5STZleUptYzNCSlpDSTZJbkJoZVdoMVlpSXNJbkJoY25SNVNXUlVlWEJsSWpvaVRWTkpVMFJPSWl3aWNHRnlkSGxKWkdWdWRHbG1hV1Z5SWpvaU1qSTFNRGN4TWpNME5UWWlmWDBzSW5CaGVXVnlJanA3SW5CaGNuUjVTV1JKYm1adklqcDdJbVp6Y0Vsa0lqb2liM0poYm1kbFpuTndJaXdpY0dGeWRIbEpaRlI1Y0dVaU9pSlFSVkpUVDA1QlRGOUpSQ0lzSW5CaGNuUjVTV1JsYm5ScFptbGxjaUk2SWtOSkxUazVPRGczTnlKOWZTd2ljWFZ2ZEdWSlpDSTZJakJpT0dRMFpEUXhMVFZoTldVdE5HTTFaUzA1WkRCaUxUUmxNV0kxWXpGbE9XWXdNU0lzSW5SeVlXNXpZV04wYVc5dVNXUWlPaUppTlRGbFl6VXpOQzFsWlRRNExUUTFOelV0WWpaaE9TMWxZV1F5T1RVMVlqZ3dOamtpTENKMGNtRnVjMkZqZEdsdmJsUjVjR1VpT25zaWFXNXBkR2xoZEc5eUlqb2lVRUZaUlZJaUxDSnBibWwwYVdGMGIzSlVlWEJsSWpvaVEwOU9VMVZOUlZJaUxDSnpZMlZ1WVhKcGJ5STZJbFJTUVU1VFJrVlNJbjE5",
    };
    const BHD_V1: Vector = Vector {
        fulfilment: "q3JbT-4XMdNEIqb7AiAnl1zEc3dJetgxcKwZiigeOss",
        condition: "4mRsQY-Ai94q8evWfRBXldq_uSUDi-8lKAa2Hf4xniA",
        ilp_packet: "AYIDdAAAAAAAADA5JGcucGF5aHViLmliYW4uYmg2N2JtYWcwMDAwMTI5OTEyMzQ1NoIDQ2V5SmhiVzkxYm5RaU9uc2lZVzF2ZFc1MElqb2lNVEl1TXpRMUlpd2lZM1Z5Y21WdVkza2lPaUpDU0VRaWZTd2laWGh3YVhKaGRHbHZiaUk2SWpJd01qVXRNRE10TURSVU1EVTZNRFk2TURjdU1USXpXaUlzSW01dmRHVWlPaUpKYm5admFXTmxJQ00wTWlCY0lrMWhjbU5vWENJaUxDSndZWGxsWlNJNmV5SndZWEowZVVsa1NXNW1ieUk2ZXlKbWMzQkpaQ0k2SW5CaGVXaDFZaUlzSW5CaGNuUjVTV1JVZVhCbElqb2lTVUpCVGlJc0luQmhjblI1U1dSbGJuUnBabWxsY2lJNklrSklOamRDVFVGSE1EQXdNREV5T1RreE1qTTBOVFlpZlgwc0luQmhlV1Z5SWpwN0luQmhjblI1U1dSSmJtWnZJanA3SW1aemNFbGtJam9pWW1Gb2NtRnBibVp6Y0NJc0luQmhjblI1U1dSVWVYQmxJam9pVFZOSlUwUk9JaXdpY0dGeWRIbEpaR1Z1ZEdsbWFXVnlJam9pT1Rjek1USXpORFUyTnpnaWZTd2ljR1Z5YzI5dVlXeEpibVp2SWpwN0ltTnZiWEJzWlhoT1lXMWxJanA3SW1acGNuTjBUbUZ0WlNJNkl0bUYySzNaaGRpdklpd2liR0Z6ZEU1aGJXVWlPaUpCYkMxTGFHRnNhV1poSW4wc0ltUmhkR1ZQWmtKcGNuUm9Jam9pTVRrNU1DMHhNaTB6TVNKOWZTd2ljWFZ2ZEdWSlpDSTZJalZtTVdFeFpEWmxMVEJpTjJVdE5HRTBZUzA0WmpSbExUaG1NMk15WVRGaU1HTTVaQ0lzSW5SeVlXNXpZV04wYVc5dVNXUWlPaUl5WXpSaE9HWXhaUzB6WWpWa0xUUmxObVl0T0dFNVlpMHdZekZrTW1VelpqUmhOV0lpTENKMGNtRnVjMkZqZEdsdmJsUjVjR1VpT25zaWFXNXBkR2xoZEc5eUlqb2lVRUZaUlZJaUxDSnBibWwwYVdGMGIzSlVlWEJsSWpvaVFsVlRTVTVGVTFNaUxDSnpZMlZ1WVhKcGJ5STZJbEJCV1UxRlRsUWlmWDAA",
    };
    const BHD_V4: Vector = Vector {
        fulfilment: "63T9j0HsNm6j5meBLZkp2GYP7V_tHgO7wVCq6nVpIEA",
        condition: "fNpTxJNBTalwYwZflfOAtwN3wZM5U-HWOCSpQpGG5NU",
        ilp_packet: "DIIDigAAAAAAADA5MjAyNTAzMDQwNTA2MDcxMjN82lPEk0FNqXBjBl-V84C3A3fBkzlT4dY4JKlCkYbk1QpnLm1vamFsb29wggNDZXlKaGJXOTFiblFpT25zaVlXMXZkVzUwSWpvaU1USXVNelExSWl3aVkzVnljbVZ1WTNraU9pSkNTRVFpZlN3aVpYaHdhWEpoZEdsdmJpSTZJakl3TWpVdE1ETXRNRFJVTURVNk1EWTZNRGN1TVRJeldpSXNJbTV2ZEdVaU9pSkpiblp2YVdObElDTTBNaUJjSWsxaGNtTm9YQ0lpTENKd1lYbGxaU0k2ZXlKd1lYSjBlVWxrU1c1bWJ5STZleUptYzNCSlpDSTZJbkJoZVdoMVlpSXNJbkJoY25SNVNXUlVlWEJsSWpvaVNVSkJUaUlzSW5CaGNuUjVTV1JsYm5ScFptbGxjaUk2SWtKSU5qZENUVUZITURBd01ERXlPVGt4TWpNME5UWWlmWDBzSW5CaGVXVnlJanA3SW5CaGNuUjVTV1JKYm1adklqcDdJbVp6Y0Vsa0lqb2lZbUZvY21GcGJtWnpjQ0lzSW5CaGNuUjVTV1JVZVhCbElqb2lUVk5KVTBST0lpd2ljR0Z5ZEhsSlpHVnVkR2xtYVdWeUlqb2lPVGN6TVRJek5EVTJOemdpZlN3aWNHVnljMjl1WVd4SmJtWnZJanA3SW1OdmJYQnNaWGhPWVcxbElqcDdJbVpwY25OMFRtRnRaU0k2SXRtRjJLM1poZGl2SWl3aWJHRnpkRTVoYldVaU9pSkJiQzFMYUdGc2FXWmhJbjBzSW1SaGRHVlBaa0pwY25Sb0lqb2lNVGs1TUMweE1pMHpNU0o5ZlN3aWNYVnZkR1ZKWkNJNklqVm1NV0V4WkRabExUQmlOMlV0TkdFMFlTMDRaalJsTFRobU0yTXlZVEZpTUdNNVpDSXNJblJ5WVc1ellXTjBhVzl1U1dRaU9pSXlZelJoT0dZeFpTMHpZalZrTFRSbE5tWXRPR0U1WWkwd1l6RmtNbVV6WmpSaE5XSWlMQ0owY21GdWMyRmpkR2x2YmxSNWNHVWlPbnNpYVc1cGRHbGhkRzl5SWpvaVVFRlpSVklpTENKcGJtbDBhV0YwYjNKVWVYQmxJam9pUWxWVFNVNUZVMU1pTENKelkyVnVZWEpwYnlJNklsQkJXVTFGVGxRaWZYMA",
    };
    const KWD_V1: Vector = Vector {
        fulfilment: "0u_bnMuz_bbLJWlgeymNTlB1U50_pj7390GacJg-InE",
        condition: "CGcDp5UbNgEJDyoINCqiSqCCZR1wBXCnbl_9XCcMoiI",
        ilp_packet: "AYICggAAAAAAAAH0FWcudW5kZWZpbmVkLmFsaWFzLnpv64ICYGV5SmhiVzkxYm5RaU9uc2lZVzF2ZFc1MElqb2lNQzQxSWl3aVkzVnljbVZ1WTNraU9pSkxWMFFpZlN3aVpYaHdhWEpoZEdsdmJpSTZJakl3TWpZdE1URXRNekJVTWpNNk5UazZOVGt1T1RrNUxUQTFPakF3SWl3aWNHRjVaV1VpT25zaWNHRnlkSGxKWkVsdVptOGlPbnNpY0dGeWRIbEpaRlI1Y0dVaU9pSkJURWxCVXlJc0luQmhjblI1U1dSbGJuUnBabWxsY2lJNklscFB3NHNpZlgwc0luQmhlV1Z5SWpwN0luQmhjblI1U1dSSmJtWnZJanA3SW1aemNFbGtJam9pYTNWM1lXbDBabk53SWl3aWNHRnlkSGxKWkZSNWNHVWlPaUpOVTBsVFJFNGlMQ0p3WVhKMGVVbGtaVzUwYVdacFpYSWlPaUk1TmpVeE1qTTBOVFkzT0NKOWZTd2ljWFZ2ZEdWSlpDSTZJamxsT0dRM1l6WmlMVFZoTkRrdE5ETTRNaTA1TVRjd0xUWm1OV1UwWkROak1tSXhZU0lzSW5SeVlXNXpZV04wYVc5dVNXUWlPaUl4WVRKaU0yTTBaQzAxWlRabUxUUmhOMkl0T0dNNVpDMHdaVEZtTW1FellqUmpOV1FpTENKMGNtRnVjMkZqZEdsdmJsUjVjR1VpT25zaWFXNXBkR2xoZEc5eUlqb2lVRUZaUlZJaUxDSnBibWwwYVdGMGIzSlVlWEJsSWpvaVEwOU9VMVZOUlZJaUxDSnpZMlZ1WVhKcGJ5STZJbFJTUVU1VFJrVlNJbjE5AA",
    };
    const KWD_V4: Vector = Vector {
        fulfilment: "oYb0G-XIqSIoiqxOKUWU9q7-KSCnJGtfwbnpRRCtxDc",
        condition: "XkQZhGmG7sYw8AkU8Lwr3vaUiSh4QJObjU9exVuBMjk",
        ilp_packet: "DIICpwAAAAAAAAH0MjAyNjEyMDEwNDU5NTk5OTleRBmEaYbuxjDwCRTwvCve9pSJKHhAk5uNT17FW4EyOQpnLm1vamFsb29wggJgZXlKaGJXOTFiblFpT25zaVlXMXZkVzUwSWpvaU1DNDFJaXdpWTNWeWNtVnVZM2tpT2lKTFYwUWlmU3dpWlhod2FYSmhkR2x2YmlJNklqSXdNall0TVRFdE16QlVNak02TlRrNk5Ua3VPVGs1TFRBMU9qQXdJaXdpY0dGNVpXVWlPbnNpY0dGeWRIbEpaRWx1Wm04aU9uc2ljR0Z5ZEhsSlpGUjVjR1VpT2lKQlRFbEJVeUlzSW5CaGNuUjVTV1JsYm5ScFptbGxjaUk2SWxwUHc0c2lmWDBzSW5CaGVXVnlJanA3SW5CaGNuUjVTV1JKYm1adklqcDdJbVp6Y0Vsa0lqb2lhM1YzWVdsMFpuTndJaXdpY0dGeWRIbEpaRlI1Y0dVaU9pSk5VMGxUUkU0aUxDSndZWEowZVVsa1pXNTBhV1pwWlhJaU9pSTVOalV4TWpNME5UWTNPQ0o5ZlN3aWNYVnZkR1ZKWkNJNklqbGxPR1EzWXpaaUxUVmhORGt0TkRNNE1pMDVNVGN3TFRabU5XVTBaRE5qTW1JeFlTSXNJblJ5WVc1ellXTjBhVzl1U1dRaU9pSXhZVEppTTJNMFpDMDFaVFptTFRSaE4ySXRPR001WkMwd1pURm1NbUV6WWpSak5XUWlMQ0owY21GdWMyRmpkR2x2YmxSNWNHVWlPbnNpYVc1cGRHbGhkRzl5SWpvaVVFRlpSVklpTENKcGJtbDBhV0YwYjNKVWVYQmxJam9pUTA5T1UxVk5SVklpTENKelkyVnVZWEpwYnlJNklsUlNRVTVUUmtWU0luMTk",
    };

    fn ilp(version: IlpVersion) -> Ilp {
        Ilp::new(version, SECRET)
    }

    fn respond(version: IlpVersion, quote: &Quote) -> Result<IlpResponse, IlpError> {
        ilp(version).quote_response(&quote.request, &quote.transfer_amount, quote.expiration, quote.note)
    }

    fn cases() -> [(IlpVersion, Quote, Vector); 8] {
        [
            (IlpVersion::V1, usd(), USD_V1),
            (IlpVersion::V4, usd(), USD_V4),
            (IlpVersion::V1, xof(), XOF_V1),
            (IlpVersion::V4, xof(), XOF_V4),
            (IlpVersion::V1, bhd(), BHD_V1),
            (IlpVersion::V4, bhd(), BHD_V4),
            (IlpVersion::V1, kwd(), KWD_V1),
            (IlpVersion::V4, kwd(), KWD_V4),
        ]
    }

    /// The transaction object the reference puts in the packet.
    fn expected_transaction(quote: &Quote) -> Value {
        let mut expected = json!({
            "quoteId": quote.request["quoteId"],
            "transactionId": quote.request["transactionId"],
            "transactionType": quote.request["transactionType"],
            "payee": quote.request["payee"],
            "payer": quote.request["payer"],
            "expiration": quote.expiration,
            "amount": {"amount": quote.transfer_amount.amount, "currency": quote.transfer_amount.currency},
        });
        if let Some(note) = quote.note.filter(|n| !n.is_empty()) {
            expected["note"] = json!(note);
        }
        expected
    }

    fn transfer(quote: &Quote, response: &IlpResponse) -> Value {
        json!({
            "transferId": "11111111-2222-4333-8444-555555555555",
            "payerFsp": quote.request["payer"]["partyIdInfo"]["fspId"],
            "payeeFsp": quote.request["payee"]["partyIdInfo"]["fspId"],
            "amount": {"amount": quote.transfer_amount.amount, "currency": quote.transfer_amount.currency},
            "ilpPacket": response.ilp_packet,
            "condition": response.condition,
            "expiration": "2024-01-02T03:04:05.678Z"
        })
    }

    #[test]
    fn quote_responses_match_the_reference() {
        for (version, quote, vector) in cases() {
            let response = respond(version, &quote).expect("quote response");
            let case = format!("{version} {}", quote.transfer_amount.currency);
            assert_eq!(response.ilp_packet, vector.ilp_packet, "packet, {case}");
            assert_eq!(response.fulfilment, vector.fulfilment, "fulfilment, {case}");
            assert_eq!(response.condition, vector.condition, "condition, {case}");
        }
    }

    #[test]
    fn packets_decode_to_the_transaction() {
        for (version, quote, vector) in cases() {
            let decoded = ilp(version).transaction_object(vector.ilp_packet).expect("decodes");
            assert_eq!(decoded, expected_transaction(&quote), "{version}");
        }
    }

    #[test]
    fn packets_decode_in_any_base64_spelling() {
        for (version, _, vector) in cases() {
            let ilp = ilp(version);
            let expected = ilp.transaction_object(vector.ilp_packet).expect("decodes");
            let bytes = URL_SAFE_NO_PAD.decode(vector.ilp_packet).expect("base64url");
            let standard = STANDARD.encode(&bytes);
            let wrapped = format!("{}\n{}", &vector.ilp_packet[..64], &vector.ilp_packet[64..]);
            for spelling in [standard, format!("{}==", vector.ilp_packet), wrapped] {
                assert_eq!(ilp.transaction_object(&spelling).as_ref(), Ok(&expected), "{version}");
            }
        }
    }

    #[test]
    fn some_vectors_are_spelt_differently_in_standard_base64() {
        let differs =
            |packet: &str| URL_SAFE_NO_PAD.decode(packet).is_ok_and(|b| STANDARD.encode(b) != packet);
        assert!(differs(USD_V4.ilp_packet) && differs(XOF_V1.ilp_packet));
    }

    #[test]
    fn a_payee_recomputes_the_fulfilment_of_its_packet() {
        for (version, _, vector) in cases() {
            assert_eq!(
                ilp(version).fulfilment_of_packet(vector.ilp_packet).as_deref(),
                Ok(vector.fulfilment)
            );
            assert!(fulfilment_matches(vector.fulfilment, vector.condition));
            assert_eq!(condition_of(vector.fulfilment).as_deref(), Ok(vector.condition));
        }
    }

    #[test]
    fn the_fulfilment_depends_on_the_secret() {
        let other = Ilp::new(IlpVersion::V1, "another-secret");
        // From the reference: fulfil-of-packet with secret "another-secret".
        assert_eq!(
            other.fulfilment_of_packet(USD_V1.ilp_packet).as_deref(),
            Ok("53lNPyM7lejWYPTclLRrQZkySm-vj0m4fRUFK62TopQ")
        );
        let other = Ilp::new(IlpVersion::V4, "another-secret");
        assert_ne!(other.fulfilment_of_packet(USD_V4.ilp_packet).as_deref(), Ok(USD_V4.fulfilment));
    }

    #[test]
    fn a_packet_of_one_version_is_malformed_in_the_other() {
        assert!(matches!(
            ilp(IlpVersion::V4).transaction_object(USD_V1.ilp_packet),
            Err(IlpError::MalformedPacket(_))
        ));
        assert!(matches!(
            ilp(IlpVersion::V1).transaction_object(USD_V4.ilp_packet),
            Err(IlpError::MalformedPacket(_))
        ));
    }

    #[test]
    fn validate_transfer_accepts_the_quoted_transfer() {
        for (version, quote, vector) in cases() {
            if quote.request["payee"]["partyIdInfo"].get("fspId").is_none() {
                continue; // see the next test
            }
            let response = IlpResponse {
                fulfilment: vector.fulfilment.to_owned(),
                condition: vector.condition.to_owned(),
                ilp_packet: vector.ilp_packet.to_owned(),
            };
            assert_eq!(ilp(version).validate_transfer(&transfer(&quote, &response)), Ok(()), "{version}");
        }
    }

    #[test]
    fn a_payee_without_fsp_id_in_the_quote_fails_every_transfer() {
        // As in the reference, which answers `false` here: `payeeFsp` is
        // mandatory in a transfer, and the transaction has none to match.
        for (version, vector) in [(IlpVersion::V1, KWD_V1), (IlpVersion::V4, KWD_V4)] {
            let response = IlpResponse {
                fulfilment: vector.fulfilment.to_owned(),
                condition: vector.condition.to_owned(),
                ilp_packet: vector.ilp_packet.to_owned(),
            };
            let mut body = transfer(&kwd(), &response);
            body["payeeFsp"] = json!("payhub");
            assert_eq!(
                ilp(version).validate_transfer(&body),
                Err(IlpError::TransferMismatch {
                    field: TransferField::PayeeFsp,
                    transfer: Some(json!("payhub")),
                    packet: None,
                })
            );
        }
    }

    #[test]
    fn validate_transfer_names_the_field_that_differs() {
        // The reference answers `false` to each of these transfers.
        for version in [IlpVersion::V1, IlpVersion::V4] {
            let quote = usd();
            let response = respond(version, &quote).expect("quote response");
            let good = transfer(&quote, &response);
            let mismatch = |path: &[&str], value: &str| {
                let mut bad = good.clone();
                let mut slot = &mut bad;
                for key in path {
                    slot = &mut slot[*key];
                }
                *slot = json!(value);
                ilp(version).validate_transfer(&bad)
            };
            let field = |result: Result<(), IlpError>| match result {
                Err(IlpError::TransferMismatch { field, .. }) => Some(field),
                _ => None,
            };
            assert_eq!(field(mismatch(&["payerFsp"], "otherfsp")), Some(TransferField::PayerFsp));
            assert_eq!(field(mismatch(&["payeeFsp"], "otherfsp")), Some(TransferField::PayeeFsp));
            assert_eq!(field(mismatch(&["amount", "currency"], "EUR")), Some(TransferField::Currency));
            // Amounts are compared as text, as the reference does.
            let result = mismatch(&["amount", "amount"], "100.50");
            assert_eq!(field(result.clone()), Some(TransferField::Amount));
            assert_eq!(
                result.expect_err("mismatch").to_string(),
                "transfer amount.amount is \"100.50\", but the ILP packet's transaction has \"100.5\""
            );
            // The reference does not check the condition; this module does.
            let other = respond(version, &xof()).expect("quote response");
            assert_eq!(mismatch(&["condition"], &other.condition), Err(IlpError::ConditionMismatch));
        }
    }

    #[test]
    fn validate_transfer_needs_a_packet() {
        let mut body = transfer(&usd(), &respond(IlpVersion::V1, &usd()).expect("quote response"));
        body.as_object_mut().expect("object").remove("ilpPacket");
        assert!(matches!(
            ilp(IlpVersion::V1).validate_transfer(&body),
            Err(IlpError::InvalidField { field, .. }) if field == "ilpPacket"
        ));
    }

    /// The packet with the amount in its transaction changed, all else kept:
    /// what a payer (or anyone between) would send to be paid more.
    fn tamper(packet: &str, from: &str, to: &str) -> String {
        let bytes = URL_SAFE_NO_PAD.decode(packet).expect("base64url");
        // The data is the last field; its JSON starts with `{"amount":`.
        let data_start = bytes.windows(4).position(|w| w == b"eyJh").expect("data is base64url of JSON");
        let data_end = bytes[data_start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
            .map_or(bytes.len(), |n| data_start + n);
        let json = URL_SAFE_NO_PAD.decode(&bytes[data_start..data_end]).expect("data");
        let json = String::from_utf8(json).expect("utf-8").replacen(from, to, 1);
        let data = URL_SAFE_NO_PAD.encode(json);
        assert_eq!(data.len(), data_end - data_start, "same length, so the OER lengths still hold");
        let mut tampered = bytes[..data_start].to_vec();
        tampered.extend_from_slice(data.as_bytes());
        tampered.extend_from_slice(&bytes[data_end..]);
        URL_SAFE_NO_PAD.encode(tampered)
    }

    #[test]
    fn a_tampered_packet_no_longer_matches_the_condition() {
        for (version, quote, vector) in
            cases().into_iter().filter(|(_, q, _)| q.transfer_amount.currency == "USD")
        {
            let ilp = ilp(version);
            let tampered = tamper(vector.ilp_packet, "\"100.5\"", "\"900.5\"");
            let transaction = ilp.transaction_object(&tampered).expect("still decodes");
            assert_eq!(transaction["amount"]["amount"], "900.5");
            let fulfilment = ilp.fulfilment_of_packet(&tampered).expect("fulfilment");
            // From the reference, on the same tampered packets:
            let expected = match version {
                IlpVersion::V1 => "_Xv9v31VX8HL5kGmX1bdlvVgzTONtymR0wv5eiAtzt0",
                IlpVersion::V4 => "ZMgpwRMyN5B4b4DMbWNo4JHjoNyyplySun6gdtXVXc4",
            };
            assert_eq!(fulfilment, expected, "{version}");
            assert!(!fulfilment_matches(&fulfilment, vector.condition), "{version}");
            let mut body = transfer(
                &quote,
                &IlpResponse {
                    fulfilment: vector.fulfilment.to_owned(),
                    condition: vector.condition.to_owned(),
                    ilp_packet: tampered,
                },
            );
            body["amount"]["amount"] = json!("900.5");
            // The reference's check of the fields alone accepts this transfer.
            assert_eq!(ilp.validate_transfer(&body), Err(IlpError::ConditionMismatch), "{version}");
        }
        // Any change to a v1 packet's text changes its fulfilment; from the reference:
        let mut flipped = USD_V1.ilp_packet.to_owned();
        flipped.replace_range(40..41, "A");
        assert_eq!(
            ilp(IlpVersion::V1).fulfilment_of_packet(&flipped).as_deref(),
            Ok("XhJTuy_U6UxvcL3iHnIF3CZAGvrSMzCONdTyNLZYMTI")
        );
    }

    #[test]
    fn conditions_need_32_byte_fulfilments() {
        // Base64 (standard alphabet, padded) of a fulfilment is accepted, as by the reference.
        let standard = STANDARD.encode(URL_SAFE_NO_PAD.decode(USD_V1.fulfilment).expect("base64url"));
        assert!(fulfilment_matches(&standard, USD_V1.condition));
        assert!(fulfilment_matches(&format!("{}=", USD_V1.fulfilment), USD_V1.condition));
        // The condition must be the unpadded base64url.
        assert!(!fulfilment_matches(USD_V1.fulfilment, &format!("{}=", USD_V1.condition)));
        assert!(!fulfilment_matches(USD_V4.fulfilment, USD_V1.condition));
        let short = URL_SAFE_NO_PAD.encode([7u8; 31]);
        let long = URL_SAFE_NO_PAD.encode([7u8; 33]);
        for preimage in [short.as_str(), long.as_str(), "", "é"] {
            assert!(matches!(condition_of(preimage), Err(IlpError::InvalidFulfilment(_))), "{preimage}");
            assert!(!fulfilment_matches(preimage, USD_V1.condition));
        }
    }

    #[test]
    fn amounts_are_minor_units_of_the_currency() {
        assert_eq!(minor_units("100.5", 2), Ok(10050));
        assert_eq!(minor_units("12.30", 2), Ok(1230));
        assert_eq!(minor_units("5000", 0), Ok(5000));
        assert_eq!(minor_units("0.5", 3), Ok(500));
        assert_eq!(minor_units("1.0000", 0), Ok(1));
        assert_eq!(minor_units(".5", 2), Ok(50));
        assert_eq!(minor_units("5.", 2), Ok(500));
        assert_eq!(minor_units("184467440737095516.15", 2), Ok(u64::MAX));
        assert!(minor_units("184467440737095516.16", 2).is_err());
        assert!(minor_units("1.234", 2).is_err());
        for malformed in ["", ".", "-5", "+5", "1e3", " 5", "0x10", "1.2.3", "١٢"] {
            assert_eq!(minor_units(malformed, 2), Err("is not a decimal number"), "{malformed:?}");
        }
        assert_eq!(currency_decimals("XOF"), Some(0));
        assert_eq!(currency_decimals("BHD"), Some(3));
        assert_eq!(currency_decimals("CLF"), Some(4));
        assert_eq!(currency_decimals("usd"), None);
        assert!(CURRENCY_DECIMALS.windows(2).all(|w| w[0].0 < w[1].0), "sorted for binary search");
    }

    #[test]
    fn quote_errors_say_what_is_wrong() {
        let mut quote = usd();
        quote.transfer_amount = money("1", "ZZZ");
        assert_eq!(respond(IlpVersion::V1, &quote), Err(IlpError::UnknownCurrency("\"ZZZ\"".to_owned())));
        quote.transfer_amount = money("1.005", "USD");
        assert!(matches!(respond(IlpVersion::V4, &quote), Err(IlpError::InvalidAmount { .. })));
        let mut quote = usd();
        quote.expiration = "2024-01-02 03:04";
        assert!(matches!(respond(IlpVersion::V4, &quote), Err(IlpError::InvalidExpiration(_))));
        // v1 packets carry the expiration only inside the transaction.
        assert!(respond(IlpVersion::V1, &quote).is_ok());
        let mut quote = usd();
        quote.request["payee"]["partyIdInfo"]["partySubIdOrType"] = Value::Null;
        assert!(matches!(
            respond(IlpVersion::V1, &quote),
            Err(IlpError::InvalidField { field, .. }) if field == "payee.partyIdInfo.partySubIdOrType"
        ));
        for (version, vector) in [(IlpVersion::V1, USD_V1), (IlpVersion::V4, USD_V4)] {
            let quote = usd();
            let keyless = Ilp::new(version, "");
            let response =
                keyless.quote_response(&quote.request, &quote.transfer_amount, quote.expiration, None);
            assert_eq!(response, Err(IlpError::EmptySecret));
            assert_eq!(keyless.fulfilment_of_packet(vector.ilp_packet), Err(IlpError::EmptySecret));
        }
    }

    #[test]
    fn ilp_timestamps_are_utc_milliseconds() {
        let time = |s: &str| ilp_time(Some(&json!(s)));
        assert_eq!(time("2024-07-01T12:34:56.789+01:00").as_deref(), Ok("20240701113456789"));
        assert_eq!(time("2024-01-02T03:04:05Z").as_deref(), Ok("20240102030405000"));
        assert_eq!(time("2024-01-02T03:04:05.123999Z").as_deref(), Ok("20240102030405123"));
        for bad in ["2024-01-02T03:04:60Z", "0999-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "tomorrow"] {
            assert!(time(bad).is_err(), "{bad}");
        }
        assert!(ilp_time(None).is_err());
    }

    #[test]
    fn json_is_written_as_safe_stable_stringify_does() {
        let input = r#"{"b":"\u0001\u001f\"\\\n\t\b\f\r\u2028é😀\u007f/","a":[1e21,1e-7,0.1,-0,100,9007199254740993,1.5,-2e-7,123456789012345678,1E+2,0.000001,1e300],"\ue000":1,"\ud800\udc00":2,"10":true,"2":null,"B":{}, "é":[]}"#;
        // From Node: safeStringify(JSON.parse(input)). Keys sort by UTF-16
        // code units (U+10000 before U+E000), U+2028 and DEL stay raw.
        let expected = "{\"10\":true,\"2\":null,\"B\":{},\"a\":[1e+21,1e-7,0.1,0,100,9007199254740992,1.5,-2e-7,\
                        123456789012345680,100,0.000001,1e+300],\"b\":\"\\u0001\\u001f\\\"\\\\\\n\\t\\b\\f\\r\u{2028}é😀\u{7f}/\",\
                        \"é\":[],\"\u{10000}\":2,\"\u{e000}\":1}";
        let value: Value = serde_json::from_str(input).expect("json");
        assert_eq!(js::stable_stringify(&value), expected);
    }

    #[test]
    fn base64_is_decoded_as_node_does() {
        // (input, Buffer.from(input, 'base64') in Node 20, as hex)
        let cases = [
            ("AQID", "010203"),
            ("AQI", "0102"),
            ("AQ-_", "010fbf"),
            ("AQ+/", "010fbf"),
            ("AQ==AQID", "01"),
            ("A Q\nI.D", "010203"),
            ("A", ""),
            ("AQIDB", "010203"),
            ("A=QID", ""),
            ("AQ-ID", "010f88"),
        ];
        for (input, hex) in cases {
            let decoded: String =
                decode_base64(input).expect("ascii").iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(decoded, hex, "{input:?}");
        }
        assert_eq!(decode_base64("AQé"), None);
    }

    #[test]
    fn oer_lengths_are_canonical() {
        let mut out = Vec::new();
        write_var_octets(&mut out, &[0; 127]);
        assert_eq!(out[0], 127);
        for (len, prefix) in
            [(128usize, vec![0x81, 0x80]), (255, vec![0x81, 0xff]), (256, vec![0x82, 0x01, 0x00])]
        {
            let mut out = Vec::new();
            write_var_octets(&mut out, &vec![0; len]);
            assert_eq!(out[..prefix.len()], prefix[..], "{len}");
            assert_eq!(Reader::new(&out).var_octets().map(<[u8]>::len), Ok(len));
        }
        // 100 in two bytes is not canonical.
        let mut padded = vec![0x82, 0x00, 100];
        padded.extend_from_slice(&[0; 100]);
        assert!(Reader::new(&padded).var_octets().is_err());
        assert!(Reader::new(&[0x80]).var_octets().is_err());
        assert!(Reader::new(&[5, 1, 2]).var_octets().is_err());
    }

    #[test]
    fn ilp_addresses() {
        for good in ["g.mojaloop", "test3.a.b", "private.x_y~z-1"] {
            assert!(is_ilp_address(good.as_bytes()), "{good}");
        }
        for bad in ["g", "g.", "g..a", "x.mojaloop", "test4.a", "g.a b", ""] {
            assert!(!is_ilp_address(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn versions_parse_and_print() {
        assert_eq!(IlpVersion::default(), IlpVersion::V1);
        assert_eq!("v4".parse::<IlpVersion>(), Ok(IlpVersion::V4));
        assert_eq!(IlpVersion::V1.to_string(), "v1");
        assert!("V4".parse::<IlpVersion>().is_err());
        assert_eq!(serde_json::to_value(IlpVersion::V4).ok(), Some(json!("v4")));
        assert_eq!(serde_json::from_value::<IlpVersion>(json!("v1")).ok(), Some(IlpVersion::V1));
        let response = IlpResponse { fulfilment: "f".into(), condition: "c".into(), ilp_packet: "p".into() };
        assert_eq!(
            serde_json::to_value(&response).ok(),
            Some(json!({"fulfilment": "f", "condition": "c", "ilpPacket": "p"}))
        );
        assert!(!format!("{:?}", ilp(IlpVersion::V1)).contains(SECRET));
    }
}
