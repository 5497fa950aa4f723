//! The domain vocabulary shared by every crate: identifiers, parties and money.
//!
//! Everything here is plain data with validation at construction; nothing here
//! does I/O. Bad input is rejected with [`ModelError`], never asserted.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A validation failure of inbound data; the message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl ModelError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ModelError::Invalid { field, reason: reason.into() }
    }
}

/// Identifies one payment (a transaction) for its whole life; also its FSPIOP
/// `transactionId` and `transferId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransactionId(pub Uuid);

/// Namespace for identifiers derived by UUID v5; fixed forever because derived
/// identifiers are persisted.
const PAYHUB_NAMESPACE: Uuid = Uuid::from_u128(0x6f0e_2a57_93c4_4d1b_9a55_7e51_c0de_0001);

/// What tells a transaction's quote id from its id (the last byte, which no
/// UUID version or variant bit is in).
const QUOTE_ID_MASK: u8 = 0x51;

impl TransactionId {
    pub fn new_random() -> Self {
        TransactionId(Uuid::new_v4())
    }

    /// The transaction id a channel's `X-CorrelationID` maps to: the same tenant
    /// and correlation id always give the same transaction, which is what makes
    /// a repeated POST idempotent without a separate index.
    pub fn from_correlation(tenant: &TenantId, correlation_id: &str) -> Self {
        let mut name = Vec::with_capacity(tenant.0.len() + 1 + correlation_id.len());
        name.extend_from_slice(tenant.0.as_bytes());
        name.push(0);
        name.extend_from_slice(correlation_id.as_bytes());
        TransactionId(Uuid::new_v5(&PAYHUB_NAMESPACE, &name))
    }

    /// The transaction that answers a payee's request to be paid (FSPIOP
    /// `transactionRequestId`) sent to `tenant`: a resent request finds the
    /// same one. Never the id of a channel's correlation id (another
    /// separator in the name).
    pub fn from_transaction_request(tenant: &TenantId, request_id: Uuid) -> Self {
        let mut name = Vec::with_capacity(tenant.0.len() + 17);
        name.extend_from_slice(tenant.0.as_bytes());
        name.push(1);
        name.extend_from_slice(request_id.as_bytes());
        TransactionId(Uuid::new_v5(&PAYHUB_NAMESPACE, &name))
    }

    /// The FSPIOP quote id of this transaction's quote: its id with one
    /// byte changed (a valid UUID of the same version), so that a resent
    /// quote request carries the same id and the quote's answer names its
    /// transaction ([`TransactionId::of_quote`]).
    pub fn quote_id(&self) -> Uuid {
        let mut bytes = *self.0.as_bytes();
        bytes[15] ^= QUOTE_ID_MASK;
        Uuid::from_bytes(bytes)
    }

    /// The transaction whose quote has id `quote_id` (the inverse of
    /// [`TransactionId::quote_id`]).
    pub fn of_quote(quote_id: Uuid) -> Self {
        let mut bytes = *quote_id.as_bytes();
        bytes[15] ^= QUOTE_ID_MASK;
        TransactionId(Uuid::from_bytes(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TransactionId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(TransactionId)
            .map_err(|_| ModelError::invalid("transactionId", "must be a UUID"))
    }
}

/// A tenant: one DFSP served by this hub. Lower-case letters, digits and '-',
/// 1 to 32 characters, because it appears in keys, URLs and metrics labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub const LENGTH_MAX: usize = 32;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let valid = !value.is_empty()
            && value.len() <= Self::LENGTH_MAX
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(TenantId(value))
        } else {
            Err(ModelError::invalid("Platform-TenantId", "must be 1 to 32 lower-case letters, digits or '-'"))
        }
    }
}

impl FromStr for TenantId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::try_from(s.to_owned())
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Raft group: shard 0 is the metadata group, 1..=N hold transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl ShardId {
    pub const METADATA: ShardId = ShardId(0);
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// A payhub node (process) in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

/// FSPIOP party identifier types (API Definition v1.1, section 7.5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartyIdType {
    Msisdn,
    Email,
    PersonalId,
    Business,
    Device,
    AccountId,
    Iban,
    Alias,
}

impl PartyIdType {
    pub fn as_str(&self) -> &'static str {
        match self {
            PartyIdType::Msisdn => "MSISDN",
            PartyIdType::Email => "EMAIL",
            PartyIdType::PersonalId => "PERSONAL_ID",
            PartyIdType::Business => "BUSINESS",
            PartyIdType::Device => "DEVICE",
            PartyIdType::AccountId => "ACCOUNT_ID",
            PartyIdType::Iban => "IBAN",
            PartyIdType::Alias => "ALIAS",
        }
    }
}

impl FromStr for PartyIdType {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "MSISDN" => PartyIdType::Msisdn,
            "EMAIL" => PartyIdType::Email,
            "PERSONAL_ID" => PartyIdType::PersonalId,
            "BUSINESS" => PartyIdType::Business,
            "DEVICE" => PartyIdType::Device,
            "ACCOUNT_ID" => PartyIdType::AccountId,
            "IBAN" => PartyIdType::Iban,
            "ALIAS" => PartyIdType::Alias,
            _ => {
                return Err(ModelError::invalid(
                    "partyIdType",
                    format!("unknown party id type {s:?}; expected MSISDN, EMAIL, PERSONAL_ID, BUSINESS, DEVICE, ACCOUNT_ID, IBAN or ALIAS"),
                ))
            }
        })
    }
}

impl fmt::Display for PartyIdType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A party as FSPIOP names it: an identifier type and value (and optional sub id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Party {
    pub id_type: PartyIdType,
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_id: Option<String>,
}

impl Party {
    /// FSPIOP `PartyIdentifier`: 1 to 128 characters.
    pub const IDENTIFIER_LENGTH_MAX: usize = 128;

    pub fn new(id_type: PartyIdType, identifier: &str) -> Result<Self, ModelError> {
        let valid = !identifier.is_empty()
            && identifier.len() <= Self::IDENTIFIER_LENGTH_MAX
            && identifier.chars().all(|c| !c.is_control() && !c.is_whitespace() && c != '/');
        if !valid {
            return Err(ModelError::invalid(
                "partyIdentifier",
                "must be 1 to 128 characters without spaces or '/'",
            ));
        }
        if id_type == PartyIdType::Msisdn
            && !(identifier.len() <= 15 && identifier.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ModelError::invalid("partyIdentifier", "an MSISDN is 1 to 15 digits"));
        }
        Ok(Party { id_type, identifier: identifier.to_owned(), sub_id: None })
    }

    /// A party with a sub-id or type (FSPIOP `PartySubIdOrType`, 1 to 128
    /// characters: one of several accounts behind one identifier).
    pub fn with_sub_id(
        id_type: PartyIdType,
        identifier: &str,
        sub_id: Option<&str>,
    ) -> Result<Self, ModelError> {
        let mut party = Party::new(id_type, identifier)?;
        if let Some(sub_id) = sub_id {
            let valid = !sub_id.is_empty()
                && sub_id.len() <= Self::IDENTIFIER_LENGTH_MAX
                && sub_id.chars().all(|c| !c.is_control() && !c.is_whitespace() && c != '/');
            if !valid {
                return Err(ModelError::invalid(
                    "partySubIdOrType",
                    "must be 1 to 128 characters without spaces or '/'",
                ));
            }
            party.sub_id = Some(sub_id.to_owned());
        }
        Ok(party)
    }
}

/// `{type}/{identifier}[/{subId}]`, as FSPIOP paths name the party.
impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.id_type, self.identifier)?;
        match &self.sub_id {
            Some(sub_id) => write!(f, "/{sub_id}"),
            None => Ok(()),
        }
    }
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// Active ISO 4217 alphabetic codes (list of 2024), which is also FSPIOP's
/// `Currency` enumeration minus withdrawn codes.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY",
    "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP",
    "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
    "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR",
    "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
    "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF",
    "XPF", "YER", "ZAR", "ZMW", "ZWL",
];

impl Currency {
    pub fn as_str(&self) -> &str {
        // The bytes are one of the ASCII codes of `ISO_4217`, checked at construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl FromStr for Currency {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match ISO_4217.iter().find(|code| **code == s) {
            Some(code) => {
                let b = code.as_bytes();
                Ok(Currency([b[0], b[1], b[2]]))
            }
            None => Err(ModelError::invalid("currency", format!("{s:?} is not an ISO 4217 currency code"))),
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money: a decimal value and its currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Amount {
    #[serde(with = "rust_decimal::serde::str")]
    pub value: Decimal,
    pub currency: Currency,
}

impl Amount {
    /// FSPIOP `Amount` allows at most 4 decimal places.
    pub const SCALE_MAX: u32 = 4;
    /// FSPIOP `Amount` allows at most 18 digits before the decimal point.
    pub const INTEGER_DIGITS_MAX: usize = 18;

    /// Parses a positive amount as FSPIOP's `Amount` pattern allows it.
    pub fn parse_positive(value: &str, currency: &str) -> Result<Amount, ModelError> {
        let currency: Currency = currency.parse()?;
        let well_formed = !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && value.bytes().filter(|b| *b == b'.').count() <= 1;
        if !well_formed {
            return Err(ModelError::invalid("amount", format!("{value:?} is not a decimal number")));
        }
        let parsed = Decimal::from_str(value)
            .map_err(|_| ModelError::invalid("amount", format!("{value:?} is not a decimal number")))?;
        Amount::positive(parsed, currency)
    }

    pub fn positive(value: Decimal, currency: Currency) -> Result<Amount, ModelError> {
        if value <= Decimal::ZERO {
            return Err(ModelError::invalid("amount", "must be greater than zero"));
        }
        let normalized = value.normalize();
        if normalized.scale() > Self::SCALE_MAX {
            return Err(ModelError::invalid("amount", "at most 4 decimal places are allowed"));
        }
        if normalized.trunc().to_string().len() > Self::INTEGER_DIGITS_MAX {
            return Err(ModelError::invalid("amount", "at most 18 digits before the decimal point"));
        }
        Ok(Amount { value: normalized, currency })
    }

    /// The value as FSPIOP writes it: no exponent, no trailing zeros.
    pub fn value_string(&self) -> String {
        self.value.normalize().to_string()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value_string(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_rejects_zero_negative_and_over_precise_values() {
        assert!(Amount::parse_positive("0", "USD").is_err());
        assert!(Amount::parse_positive("0.00", "USD").is_err());
        assert!(Amount::parse_positive("-1", "USD").is_err());
        assert!(Amount::parse_positive("1.00001", "USD").is_err());
        assert!(Amount::parse_positive("1e3", "USD").is_err());
        assert!(Amount::parse_positive("1.2.3", "USD").is_err());
        assert_eq!(Amount::parse_positive("10.00", "USD").map(|a| a.value_string()), Ok("10".into()));
        assert_eq!(Amount::parse_positive("0.0001", "USD").map(|a| a.value_string()), Ok("0.0001".into()));
    }

    #[test]
    fn a_request_to_be_paid_maps_to_its_own_transaction_per_tenant() {
        let blue: TenantId = "bluebank".parse().expect("valid tenant");
        let green: TenantId = "greenbank".parse().expect("valid tenant");
        let request = Uuid::from_u128(42);
        let id = TransactionId::from_transaction_request(&blue, request);
        assert_eq!(id, TransactionId::from_transaction_request(&blue, request));
        assert_ne!(id, TransactionId::from_transaction_request(&green, request));
        assert_ne!(id, TransactionId::from_correlation(&blue, &request.to_string()));
    }

    #[test]
    fn a_sub_id_is_part_of_the_party_and_of_its_name() {
        let savings = Party::with_sub_id(PartyIdType::Msisdn, "27710000001", Some("savings")).expect("valid");
        let plain = Party::new(PartyIdType::Msisdn, "27710000001").expect("valid");
        assert_ne!(savings, plain);
        assert_eq!(savings.to_string(), "MSISDN/27710000001/savings");
        assert_eq!(plain.to_string(), "MSISDN/27710000001");
        for bad in ["", "a/b", "with space", &"x".repeat(129)] {
            let refused = Party::with_sub_id(PartyIdType::Msisdn, "27710000001", Some(bad));
            assert!(refused.is_err_and(|e| e.to_string().contains("partySubIdOrType")), "{bad:?}");
        }
    }

    #[test]
    fn currency_must_be_iso_4217() {
        assert!("USD".parse::<Currency>().is_ok());
        assert!("XXX".parse::<Currency>().is_err());
        assert!("usd".parse::<Currency>().is_err());
    }

    #[test]
    fn correlation_ids_map_to_stable_transaction_ids_per_tenant() {
        let blue: TenantId = "bluebank".parse().expect("valid tenant");
        let green: TenantId = "greenbank".parse().expect("valid tenant");
        assert_eq!(
            TransactionId::from_correlation(&blue, "c1"),
            TransactionId::from_correlation(&blue, "c1")
        );
        assert_ne!(
            TransactionId::from_correlation(&blue, "c1"),
            TransactionId::from_correlation(&green, "c1")
        );
        let id = TransactionId::new_random();
        assert_ne!(id.quote_id(), id.0);
        assert_eq!(TransactionId::of_quote(id.quote_id()), id);
        assert_eq!(id.quote_id().get_version(), id.0.get_version());
    }

    #[test]
    fn msisdn_must_be_digits() {
        assert!(Party::new(PartyIdType::Msisdn, "27710000001").is_ok());
        assert!(Party::new(PartyIdType::Msisdn, "2771abc").is_err());
        assert!(Party::new(PartyIdType::Email, "").is_err());
    }
}
