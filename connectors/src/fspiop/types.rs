//! FSPIOP v1.1 message bodies (the subset a P2P payment uses), as on the wire.
//! Field names follow the API definition exactly (camelCase).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    pub amount: String,
    pub currency: String,
}

impl From<&actors::model::Amount> for Money {
    /// As FSPIOP writes amounts: no exponent, no trailing zeros.
    fn from(amount: &actors::model::Amount) -> Self {
        Money { amount: amount.value_string(), currency: amount.currency.to_string() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartyIdInfo {
    pub party_id_type: String,
    pub party_identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_sub_id_or_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsp_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    pub party_id_info: PartyIdInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `PUT /parties/{Type}/{ID}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartiesPut {
    pub party: Party,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionType {
    pub scenario: String,
    pub initiator: String,
    pub initiator_type: String,
}

/// `POST /quotes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotesPost {
    pub quote_id: String,
    pub transaction_id: String,
    pub payee: Party,
    pub payer: Party,
    pub amount_type: String,
    pub amount: Money,
    pub transaction_type: TransactionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// The payee's request to be paid this quote is for, if it asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_request_id: Option<String>,
}

/// `POST /transactionRequests`: a payee's request that the payer pay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRequestsPost {
    pub transaction_request_id: String,
    pub payee: Party,
    pub payer: PartyIdInfo,
    pub amount: Money,
    pub transaction_type: TransactionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

/// What the payer entered at the payee's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationInfo {
    /// `OTP`, `QRCODE` or `U2F`.
    pub authentication: String,
    pub authentication_value: String,
}

/// `PUT /authorizations/{ID}`: what the payer did when asked to authorize
/// a request to be paid at the payee's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationsPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_info: Option<AuthenticationInfo>,
    /// `ENTERED`, `REJECTED` or `RESEND`.
    pub response_type: String,
}

/// `PUT /transactionRequests/{ID}`: where a request to be paid stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRequestsPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// RECEIVED, PENDING, ACCEPTED or REJECTED.
    pub transaction_request_state: String,
}

/// `PUT /quotes/{ID}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotesPut {
    pub transfer_amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_receive_amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_fsp_fee: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_fsp_commission: Option<Money>,
    pub expiration: String,
    pub ilp_packet: String,
    pub condition: String,
}

/// `POST /transfers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransfersPost {
    pub transfer_id: String,
    pub payee_fsp: String,
    pub payer_fsp: String,
    pub amount: Money,
    pub ilp_packet: String,
    pub condition: String,
    pub expiration: String,
}

/// `PUT /transfers/{ID}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransfersPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_timestamp: Option<String>,
    pub transfer_state: String,
}

/// `PUT /transactions/{ID}`: the payee DFSP's view of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionsPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_timestamp: Option<String>,
    /// RECEIVED, PENDING, COMPLETED or REJECTED.
    pub transaction_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `PATCH /transfers/{ID}` (switch to payee, after a RESERVED answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransfersPatch {
    pub completed_timestamp: String,
    pub transfer_state: String,
}

/// `POST /bulkQuotes`: what the payee side reads of it (each individual
/// quote is priced from its JSON, completed by the bulk's payer).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkQuotesPost {
    pub bulk_quote_id: String,
    pub payer: Party,
    #[serde(default)]
    pub expiration: Option<String>,
    pub individual_quotes: Vec<serde_json::Value>,
}

/// `PUT /bulkQuotes/{ID}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkQuotesPut {
    pub individual_quote_results: Vec<IndividualQuoteResult>,
    pub expiration: String,
}

/// One quote of a bulk: its terms, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualQuoteResult {
    pub quote_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee: Option<Party>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_receive_amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_fsp_fee: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_fsp_commission: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ilp_packet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_information: Option<ErrorInformation>,
}

impl IndividualQuoteResult {
    /// The result of one quote: the terms of `quoted`, or its refusal.
    pub fn new(quote_id: String, payee: Option<Party>, quoted: Result<QuotesPut, ErrorBody>) -> Self {
        let mut result = IndividualQuoteResult {
            quote_id,
            payee,
            transfer_amount: None,
            payee_receive_amount: None,
            payee_fsp_fee: None,
            payee_fsp_commission: None,
            ilp_packet: None,
            condition: None,
            error_information: None,
        };
        match quoted {
            Ok(quote) => {
                result.transfer_amount = Some(quote.transfer_amount);
                result.payee_receive_amount = quote.payee_receive_amount;
                result.payee_fsp_fee = quote.payee_fsp_fee;
                result.payee_fsp_commission = quote.payee_fsp_commission;
                result.ilp_packet = Some(quote.ilp_packet);
                result.condition = Some(quote.condition);
            }
            Err(error) => result.error_information = Some(error.error_information),
        }
        result
    }
}

/// `POST /bulkTransfers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkTransfersPost {
    pub bulk_transfer_id: String,
    pub bulk_quote_id: String,
    pub payer_fsp: String,
    pub payee_fsp: String,
    pub individual_transfers: Vec<IndividualTransfer>,
    pub expiration: String,
}

/// One transfer of a bulk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualTransfer {
    pub transfer_id: String,
    pub transfer_amount: Money,
    pub ilp_packet: String,
    pub condition: String,
}

/// `PUT /bulkTransfers/{ID}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkTransfersPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_timestamp: Option<String>,
    pub individual_transfer_results: Vec<IndividualTransferResult>,
    /// RECEIVED, PENDING, ACCEPTED, PROCESSING, COMPLETED or REJECTED.
    pub bulk_transfer_state: String,
}

/// One transfer of a bulk: its fulfilment, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualTransferResult {
    pub transfer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_information: Option<ErrorInformation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInformation {
    pub error_code: String,
    pub error_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_list: Option<ExtensionList>,
}

/// FSPIOP `ExtensionList`: deployment-specific key-value pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionList {
    pub extension: Vec<Extension>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub key: String,
    pub value: String,
}

/// Every FSPIOP error body (`PUT .../error` and synchronous 4xx/5xx answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error_information: ErrorInformation,
}

impl ErrorBody {
    /// The most characters an `errorDescription` may have (FSPIOP
    /// `ErrorDescription`).
    pub const DESCRIPTION_MAX: usize = 128;

    /// An error body; a description longer than the API allows is cut to
    /// [`ErrorBody::DESCRIPTION_MAX`] characters, ending in `…`, so that no
    /// peer refuses it.
    pub fn new(code: &str, description: impl Into<String>) -> Self {
        let mut description: String = description.into();
        if description.chars().count() > Self::DESCRIPTION_MAX {
            description = description.chars().take(Self::DESCRIPTION_MAX - 1).collect();
            description.push('…');
        }
        ErrorBody {
            error_information: ErrorInformation {
                error_code: code.into(),
                error_description: description,
                extension_list: None,
            },
        }
    }

    /// Error 3001 with the versions payhub speaks in its extension list
    /// (major as key, minor as value: API Definition 3.3.4.3).
    pub fn unacceptable_version(description: impl Into<String>) -> Self {
        let mut body = ErrorBody::new(super::codes::UNACCEPTABLE_VERSION, description);
        body.error_information.extension_list = Some(ExtensionList {
            extension: super::headers::SUPPORTED
                .iter()
                .map(|v| Extension { key: v.major.to_string(), value: v.minor.to_string() })
                .collect(),
        });
        body
    }
}

/// The transaction the ILP packet carries (FSPIOP `Transaction`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IlpTransaction {
    pub transaction_id: String,
    pub quote_id: String,
    pub payee: Party,
    pub payer: Party,
    pub amount: Money,
    pub transaction_type: TransactionType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_descriptions_are_cut_to_what_the_api_allows() {
        let short = ErrorBody::new("2001", "AMS unavailable");
        assert_eq!(short.error_information.error_description, "AMS unavailable");
        let long = ErrorBody::new("2001", "é".repeat(300));
        let description = &long.error_information.error_description;
        assert_eq!(description.chars().count(), ErrorBody::DESCRIPTION_MAX);
        assert!(description.ends_with('…') && description.starts_with("éé"));
    }
}
