//! Synchronous validation of inbound FSPIOP bodies against the FSPIOP v1.1
//! data model (API Definition section 7, the data types and the elements of
//! each message), before anything is stored or done: the answer names the
//! first offending element by its path, with the code API Definition
//! 7.6 gives it: 3102 for a missing mandatory element, 3100 for any other
//! element that breaks its type (pattern, length, enumeration, JSON type).
//! Elements the model does not name are allowed, as the OpenAPI file allows
//! them.
//!
//! The messages are described as data (objects of typed fields, strings by
//! pattern, length or enumeration), so one walker checks them all.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::codes;

/// An inbound message body payhub validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `PUT /parties/{Type}/{ID}[/{SubId}]`.
    PartiesPut,
    /// `PUT /participants/{Type}/{ID}`.
    ParticipantsPut,
    /// `POST /quotes`.
    QuotesPost,
    /// `PUT /quotes/{ID}`.
    QuotesPut,
    /// `POST /transfers`.
    TransfersPost,
    /// `PUT /transfers/{ID}`.
    TransfersPut,
    /// `PATCH /transfers/{ID}`.
    TransfersPatch,
    /// `PUT /transactions/{ID}`.
    TransactionsPut,
    /// `POST /transactionRequests`.
    TransactionRequestsPost,
    /// `PUT /transactionRequests/{ID}`.
    TransactionRequestsPut,
    /// `PUT /authorizations/{ID}`.
    AuthorizationsPut,
    /// `POST /bulkQuotes`.
    BulkQuotesPost,
    /// `PUT /bulkQuotes/{ID}`.
    BulkQuotesPut,
    /// `POST /bulkTransfers`.
    BulkTransfersPost,
    /// `PUT /bulkTransfers/{ID}`.
    BulkTransfersPut,
    /// Every `PUT .../error`.
    Error,
}

/// Why a body does not fit its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Violation {
    /// 3102 (missing) or 3100 (invalid).
    pub code: &'static str,
    /// The element, as a JSON path (`amount.currency`, `extensionList.extension[0].key`).
    pub path: String,
    pub reason: String,
}

/// Checks `body` against `message`'s definition.
pub fn check(message: Message, body: &Value) -> Result<(), Violation> {
    let model = model();
    let root = match message {
        Message::PartiesPut => &model.parties_put,
        Message::ParticipantsPut => &model.participants_put,
        Message::QuotesPost => &model.quotes_post,
        Message::QuotesPut => &model.quotes_put,
        Message::TransfersPost => &model.transfers_post,
        Message::TransfersPut => &model.transfers_put,
        Message::TransfersPatch => &model.transfers_patch,
        Message::TransactionsPut => &model.transactions_put,
        Message::TransactionRequestsPost => &model.transaction_requests_post,
        Message::TransactionRequestsPut => &model.transaction_requests_put,
        Message::AuthorizationsPut => &model.authorizations_put,
        Message::BulkQuotesPost => &model.bulk_quotes_post,
        Message::BulkQuotesPut => &model.bulk_quotes_put,
        Message::BulkTransfersPost => &model.bulk_transfers_post,
        Message::BulkTransfersPut => &model.bulk_transfers_put,
        Message::Error => &model.error,
    };
    root.check("", body)
}

/// How a string element is constrained.
#[derive(Debug)]
enum Text {
    /// Between `min` and `max` characters (Unicode scalar values).
    Length { min: usize, max: usize },
    /// Matches the pattern (anchored), within the length bounds.
    Pattern { pattern: Regex, min: usize, max: usize, what: &'static str },
    /// One of the values.
    OneOf(&'static [&'static str]),
    /// A name: 1 to 128 letters, marks, digits, connector punctuation,
    /// joiners, spaces and `.,'-`, not all blank (FirstName, MiddleName,
    /// LastName).
    Name,
    /// An ISO 4217 code FSPIOP knows.
    Currency,
}

#[derive(Debug)]
enum Node {
    Object(Vec<Field>),
    Array { item: Box<Node>, min: usize, max: usize },
    Text(Text),
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    node: Node,
    required: bool,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> Violation {
    Violation { code: codes::GENERIC_VALIDATION_ERROR, path: path.to_owned(), reason: reason.into() }
}

impl Node {
    fn check(&self, path: &str, value: &Value) -> Result<(), Violation> {
        match self {
            Node::Object(fields) => {
                let Some(object) = value.as_object() else {
                    return Err(invalid(if path.is_empty() { "body" } else { path }, "must be an object"));
                };
                for field in fields {
                    let at = join(path, field.name);
                    match object.get(field.name) {
                        Some(value) => field.node.check(&at, value)?,
                        None if field.required => {
                            return Err(Violation {
                                code: codes::MISSING_ELEMENT,
                                path: at,
                                reason: "missing mandatory element".into(),
                            })
                        }
                        None => {}
                    }
                }
                Ok(())
            }
            Node::Array { item, min, max } => {
                let Some(items) = value.as_array() else { return Err(invalid(path, "must be an array")) };
                if items.len() < *min || items.len() > *max {
                    return Err(invalid(
                        path,
                        format!("must have {min} to {max} items, not {}", items.len()),
                    ));
                }
                items.iter().enumerate().try_for_each(|(i, v)| item.check(&format!("{path}[{i}]"), v))
            }
            Node::Text(text) => {
                let Some(s) = value.as_str() else { return Err(invalid(path, "must be a string")) };
                text.check(path, s)
            }
        }
    }
}

impl Text {
    fn check(&self, path: &str, s: &str) -> Result<(), Violation> {
        let length = s.chars().count();
        let within = |min: usize, max: usize| {
            if length < min || length > max {
                Err(invalid(path, format!("must be {min} to {max} characters long, not {length}")))
            } else {
                Ok(())
            }
        };
        match self {
            Text::Length { min, max } => within(*min, *max),
            Text::Pattern { pattern, min, max, what } => {
                within(*min, *max)?;
                if pattern.is_match(s) {
                    Ok(())
                } else {
                    Err(invalid(path, format!("{s:?} is not {what}")))
                }
            }
            Text::OneOf(values) => {
                if values.contains(&s) {
                    Ok(())
                } else {
                    Err(invalid(path, format!("{s:?} is not one of {}", values.join(", "))))
                }
            }
            Text::Name => {
                within(1, 128)?;
                if s.trim().is_empty() || !model().name.is_match(s) {
                    Err(invalid(path, format!("{s:?} is not a name")))
                } else {
                    Ok(())
                }
            }
            Text::Currency => {
                let known =
                    s.parse::<actors::model::Currency>().is_ok() || FSPIOP_LEGACY_CURRENCIES.contains(&s);
                if known {
                    Ok(())
                } else {
                    Err(invalid(path, format!("{s:?} is not an ISO 4217 currency code")))
                }
            }
        }
    }
}

/// Codes FSPIOP v1.1's `Currency` enumeration still lists beside those in
/// use today (which `actors::model::Currency` knows): withdrawn or special
/// ISO 4217 codes a v1.1 peer may send.
const FSPIOP_LEGACY_CURRENCIES: &[&str] = &[
    "CUC", "GGP", "HRK", "IMP", "JEP", "MRO", "SLL", "SPL", "STD", "TVD", "VEF", "XDR", "XTS", "XXX", "ZWD",
];

/// The messages, built once.
struct Model {
    parties_put: Node,
    participants_put: Node,
    quotes_post: Node,
    quotes_put: Node,
    transfers_post: Node,
    transfers_put: Node,
    transfers_patch: Node,
    transactions_put: Node,
    transaction_requests_post: Node,
    transaction_requests_put: Node,
    authorizations_put: Node,
    bulk_quotes_post: Node,
    bulk_quotes_put: Node,
    bulk_transfers_post: Node,
    bulk_transfers_put: Node,
    error: Node,
    name: Regex,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").finish_non_exhaustive()
    }
}

fn pattern(source: &str, min: usize, max: usize, what: &'static str) -> Node {
    // The patterns are constants of this file, tested below.
    let pattern = Regex::new(source).unwrap_or_else(|e| unreachable!("pattern {source}: {e}"));
    Node::Text(Text::Pattern { pattern, min, max, what })
}

fn length(min: usize, max: usize) -> Node {
    Node::Text(Text::Length { min, max })
}

fn one_of(values: &'static [&'static str]) -> Node {
    Node::Text(Text::OneOf(values))
}

fn object(fields: Vec<Field>) -> Node {
    Node::Object(fields)
}

fn required(name: &'static str, node: Node) -> Field {
    Field { name, node, required: true }
}

fn optional(name: &'static str, node: Node) -> Field {
    Field { name, node, required: false }
}

const DATE: &str = r"(?:[1-9][0-9]{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)|(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)-02-29)";

fn correlation_id() -> Node {
    pattern(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
        0,
        36,
        "a UUID (lower case)",
    )
}

fn date_time() -> Node {
    let source = format!(
        r"^{DATE}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{{3}}(?:Z|[+-][01][0-9]:[0-5][0-9])$"
    );
    let pattern = Regex::new(&source).unwrap_or_else(|e| unreachable!("DateTime pattern: {e}"));
    Node::Text(Text::Pattern {
        pattern,
        min: 0,
        max: 64,
        what: "a date-time with milliseconds and a zone (2026-11-24T13:00:00.000Z)",
    })
}

fn money() -> Node {
    object(vec![
        required("currency", Node::Text(Text::Currency)),
        required(
            "amount",
            pattern(
                r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$",
                0,
                32,
                "an FSPIOP amount (up to 18 digits, 4 decimals, no trailing zeros)",
            ),
        ),
    ])
}

fn extension_list() -> Node {
    object(vec![required(
        "extension",
        Node::Array {
            item: Box::new(object(vec![required("key", length(1, 32)), required("value", length(1, 128))])),
            min: 1,
            max: 16,
        },
    )])
}

fn ilp_condition() -> Node {
    pattern(r"^[A-Za-z0-9\-_]{43}$", 0, 48, "43 base64url characters")
}

fn party_id_info() -> Node {
    let id_types = &["MSISDN", "EMAIL", "PERSONAL_ID", "BUSINESS", "DEVICE", "ACCOUNT_ID", "IBAN", "ALIAS"];
    object(vec![
        required("partyIdType", one_of(id_types)),
        required("partyIdentifier", length(1, 128)),
        optional("partySubIdOrType", length(1, 128)),
        optional("fspId", length(1, 32)),
        optional("extensionList", extension_list()),
    ])
}

fn party() -> Node {
    object(vec![
        required("partyIdInfo", party_id_info()),
        optional("merchantClassificationCode", pattern(r"^[0-9]{1,4}$", 0, 4, "1 to 4 digits")),
        optional("name", length(1, 128)),
        optional(
            "personalInfo",
            object(vec![
                optional(
                    "complexName",
                    object(vec![
                        optional("firstName", Node::Text(Text::Name)),
                        optional("middleName", Node::Text(Text::Name)),
                        optional("lastName", Node::Text(Text::Name)),
                    ]),
                ),
                optional("dateOfBirth", pattern(&format!("^{DATE}$"), 0, 10, "a date (1966-06-16)")),
            ]),
        ),
    ])
}

fn transaction_type() -> Node {
    object(vec![
        required("scenario", one_of(&["DEPOSIT", "WITHDRAWAL", "TRANSFER", "PAYMENT", "REFUND"])),
        optional("subScenario", pattern(r"^[A-Z_]{1,32}$", 0, 32, "1 to 32 of A-Z and _")),
        required("initiator", one_of(&["PAYER", "PAYEE"])),
        required("initiatorType", one_of(&["CONSUMER", "AGENT", "BUSINESS", "DEVICE"])),
        optional(
            "refundInfo",
            object(vec![
                required("originalTransactionId", correlation_id()),
                optional("refundReason", length(1, 128)),
            ]),
        ),
        optional("balanceOfPayments", pattern(r"^[1-9][0-9]{2}$", 0, 3, "a 3-digit code")),
    ])
}

fn geo_code() -> Node {
    object(vec![
        required(
            "latitude",
            pattern(
                r"^(\+|-)?(?:90(?:(?:\.0{1,6})?)|(?:[0-9]|[1-8][0-9])(?:(?:\.[0-9]{1,6})?))$",
                0,
                16,
                "a latitude",
            ),
        ),
        required(
            "longitude",
            pattern(
                r"^(\+|-)?(?:180(?:(?:\.0{1,6})?)|(?:[0-9]|[1-9][0-9]|1[0-7][0-9])(?:(?:\.[0-9]{1,6})?))$",
                0,
                16,
                "a longitude",
            ),
        ),
    ])
}

const TRANSFER_STATES: &[&str] = &["RECEIVED", "RESERVED", "COMMITTED", "ABORTED"];

fn ilp_packet() -> Node {
    pattern(r"^[A-Za-z0-9\-_]+[=]{0,2}$", 1, 32768, "base64url")
}

fn error_information() -> Node {
    object(vec![
        required("errorCode", pattern(r"^[1-9][0-9]{3}$", 0, 4, "a 4-digit error code")),
        required("errorDescription", length(1, 128)),
        optional("extensionList", extension_list()),
    ])
}

/// The most individual quotes or transfers a bulk has.
const BULK_ITEMS_MAX: usize = 1000;

fn bulk(item: Node, min: usize) -> Node {
    Node::Array { item: Box::new(item), min, max: BULK_ITEMS_MAX }
}

fn bulk_quotes_post() -> Node {
    let individual = object(vec![
        required("quoteId", correlation_id()),
        required("transactionId", correlation_id()),
        required("payee", party()),
        required("amountType", one_of(&["SEND", "RECEIVE"])),
        required("amount", money()),
        optional("fees", money()),
        required("transactionType", transaction_type()),
        optional("note", length(1, 128)),
        optional("extensionList", extension_list()),
    ]);
    object(vec![
        required("bulkQuoteId", correlation_id()),
        required("payer", party()),
        optional("geoCode", geo_code()),
        optional("expiration", date_time()),
        required("individualQuotes", bulk(individual, 1)),
        optional("extensionList", extension_list()),
    ])
}

fn bulk_quotes_put() -> Node {
    let result = object(vec![
        required("quoteId", correlation_id()),
        optional("payee", party()),
        optional("transferAmount", money()),
        optional("payeeReceiveAmount", money()),
        optional("payeeFspFee", money()),
        optional("payeeFspCommission", money()),
        optional("ilpPacket", ilp_packet()),
        optional("condition", ilp_condition()),
        optional("errorInformation", error_information()),
        optional("extensionList", extension_list()),
    ]);
    object(vec![
        optional("individualQuoteResults", bulk(result, 0)),
        required("expiration", date_time()),
        optional("extensionList", extension_list()),
    ])
}

fn bulk_transfers_post() -> Node {
    let individual = object(vec![
        required("transferId", correlation_id()),
        required("transferAmount", money()),
        required("ilpPacket", ilp_packet()),
        required("condition", ilp_condition()),
        optional("extensionList", extension_list()),
    ]);
    object(vec![
        required("bulkTransferId", correlation_id()),
        required("bulkQuoteId", correlation_id()),
        required("payerFsp", length(1, 32)),
        required("payeeFsp", length(1, 32)),
        required("individualTransfers", bulk(individual, 1)),
        required("expiration", date_time()),
        optional("extensionList", extension_list()),
    ])
}

fn bulk_transfers_put() -> Node {
    let result = object(vec![
        required("transferId", correlation_id()),
        optional("fulfilment", ilp_condition()),
        optional("errorInformation", error_information()),
        optional("extensionList", extension_list()),
    ]);
    let states = &["RECEIVED", "PENDING", "ACCEPTED", "PROCESSING", "COMPLETED", "REJECTED"];
    object(vec![
        optional("completedTimestamp", date_time()),
        optional("individualTransferResults", bulk(result, 0)),
        required("bulkTransferState", one_of(states)),
        optional("extensionList", extension_list()),
    ])
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model {
        parties_put: object(vec![required("party", party())]),
        participants_put: object(vec![optional("fspId", length(1, 32))]),
        quotes_post: object(vec![
            required("quoteId", correlation_id()),
            required("transactionId", correlation_id()),
            optional("transactionRequestId", correlation_id()),
            required("payee", party()),
            required("payer", party()),
            required("amountType", one_of(&["SEND", "RECEIVE"])),
            required("amount", money()),
            optional("fees", money()),
            required("transactionType", transaction_type()),
            optional("geoCode", geo_code()),
            optional("note", length(1, 128)),
            optional("expiration", date_time()),
            optional("extensionList", extension_list()),
        ]),
        quotes_put: object(vec![
            required("transferAmount", money()),
            optional("payeeReceiveAmount", money()),
            optional("payeeFspFee", money()),
            optional("payeeFspCommission", money()),
            required("expiration", date_time()),
            optional("geoCode", geo_code()),
            required("ilpPacket", ilp_packet()),
            required("condition", ilp_condition()),
            optional("extensionList", extension_list()),
        ]),
        transfers_post: object(vec![
            required("transferId", correlation_id()),
            required("payeeFsp", length(1, 32)),
            required("payerFsp", length(1, 32)),
            required("amount", money()),
            required("ilpPacket", ilp_packet()),
            required("condition", ilp_condition()),
            required("expiration", date_time()),
            optional("extensionList", extension_list()),
        ]),
        transfers_put: object(vec![
            optional("fulfilment", ilp_condition()),
            optional("completedTimestamp", date_time()),
            required("transferState", one_of(TRANSFER_STATES)),
            optional("extensionList", extension_list()),
        ]),
        transfers_patch: object(vec![
            required("completedTimestamp", date_time()),
            required("transferState", one_of(TRANSFER_STATES)),
            optional("extensionList", extension_list()),
        ]),
        transactions_put: object(vec![
            optional("completedTimestamp", date_time()),
            required("transactionState", one_of(&["RECEIVED", "PENDING", "COMPLETED", "REJECTED"])),
            optional("code", pattern(r"^[0-9a-zA-Z]{4,32}$", 0, 32, "4 to 32 letters and digits")),
            optional("extensionList", extension_list()),
        ]),
        transaction_requests_post: object(vec![
            required("transactionRequestId", correlation_id()),
            required("payee", party()),
            required("payer", party_id_info()),
            required("amount", money()),
            required("transactionType", transaction_type()),
            optional("note", length(1, 128)),
            optional("geoCode", geo_code()),
            optional("authenticationType", one_of(&["OTP", "QRCODE", "U2F"])),
            optional("expiration", date_time()),
            optional("extensionList", extension_list()),
        ]),
        transaction_requests_put: object(vec![
            optional("transactionId", correlation_id()),
            required("transactionRequestState", one_of(&["RECEIVED", "PENDING", "ACCEPTED", "REJECTED"])),
            optional("extensionList", extension_list()),
        ]),
        authorizations_put: object(vec![
            optional(
                "authenticationInfo",
                object(vec![
                    required("authentication", one_of(&["OTP", "QRCODE", "U2F"])),
                    required(
                        "authenticationValue",
                        pattern(r"^\d{3,10}$|^\S{1,64}$", 0, 64, "an OTP, a QR code or a U2F value"),
                    ),
                ]),
            ),
            required("responseType", one_of(&["ENTERED", "REJECTED", "RESEND"])),
            optional("extensionList", extension_list()),
        ]),
        bulk_quotes_post: bulk_quotes_post(),
        bulk_quotes_put: bulk_quotes_put(),
        bulk_transfers_post: bulk_transfers_post(),
        bulk_transfers_put: bulk_transfers_put(),
        error: object(vec![required("errorInformation", error_information())]),
        name: Regex::new(r"^[\p{L}\p{M}\p{Nd}\p{Pc}\p{Join_Control} .,'-]{1,128}$")
            .unwrap_or_else(|e| unreachable!("name pattern: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn quote() -> Value {
        json!({
            "quoteId": "b51ec534-ee48-4575-b6a9-ead2955b8069",
            "transactionId": "a8323bc6-c228-4df2-ae82-e5a997baf899",
            "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000006", "fspId": "greenbank" } },
            "payer": {
                "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001" },
                "personalInfo": { "complexName": { "firstName": "Kärl-Øve", "lastName": "O'Brien" }, "dateOfBirth": "1984-02-29" }
            },
            "amountType": "SEND",
            "amount": { "amount": "10.5", "currency": "USD" },
            "transactionType": { "scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER" },
            "expiration": "2026-11-24T13:00:00.000Z",
            "extensionList": { "extension": [{ "key": "k", "value": "v" }] }
        })
    }

    fn refused(message: Message, body: &Value) -> Violation {
        check(message, body).expect_err("refused")
    }

    #[test]
    fn a_well_formed_quote_passes_and_unknown_elements_are_allowed() {
        let mut body = quote();
        assert_eq!(check(Message::QuotesPost, &body), Ok(()));
        body["somethingElse"] = json!({ "any": 1 });
        assert_eq!(check(Message::QuotesPost, &body), Ok(()));
    }

    #[test]
    fn a_missing_mandatory_element_is_3102_naming_its_path() {
        let mut body = quote();
        body["amount"].as_object_mut().expect("object").remove("currency");
        let violation = refused(Message::QuotesPost, &body);
        assert_eq!((violation.code, violation.path.as_str()), ("3102", "amount.currency"));
        let violation = refused(Message::TransfersPatch, &json!({ "transferState": "COMMITTED" }));
        assert_eq!((violation.code, violation.path.as_str()), ("3102", "completedTimestamp"));
    }

    #[test]
    fn elements_breaking_their_type_are_3100_naming_their_path() {
        for (path, value, element) in [
            ("amount", json!({ "amount": "10.50", "currency": "USD" }), "amount.amount"),
            ("amount", json!({ "amount": "01", "currency": "USD" }), "amount.amount"),
            ("amount", json!({ "amount": "1.23456", "currency": "USD" }), "amount.amount"),
            ("amount", json!({ "amount": 10, "currency": "USD" }), "amount.amount"),
            ("amount", json!({ "amount": "10", "currency": "usd" }), "amount.currency"),
            ("quoteId", json!("B51EC534-EE48-4575-B6A9-EAD2955B8069"), "quoteId"),
            ("quoteId", json!("not-a-uuid"), "quoteId"),
            ("amountType", json!("GIVE"), "amountType"),
            ("expiration", json!("2026-11-24T13:00:00Z"), "expiration"),
            ("expiration", json!("2026-02-29T13:00:00.000Z"), "expiration"),
            ("note", json!(""), "note"),
            ("extensionList", json!({ "extension": [] }), "extensionList.extension"),
            (
                "payee",
                json!({ "partyIdInfo": { "partyIdType": "PHONE", "partyIdentifier": "1" } }),
                "payee.partyIdInfo.partyIdType",
            ),
        ] {
            let mut body = quote();
            body[path] = value;
            let violation = refused(Message::QuotesPost, &body);
            assert_eq!((violation.code, violation.path.as_str()), ("3100", element), "{violation}");
        }
        let mut body = quote();
        body["payer"]["personalInfo"]["complexName"]["firstName"] = json!("  ");
        assert_eq!(refused(Message::QuotesPost, &body).path, "payer.personalInfo.complexName.firstName");
        body["payer"]["personalInfo"]["complexName"]["firstName"] = json!("Henrik!");
        assert_eq!(refused(Message::QuotesPost, &body).path, "payer.personalInfo.complexName.firstName");
    }

    #[test]
    fn bulk_messages_name_the_element_of_the_individual_item() {
        let quote = quote();
        let individual = json!({
            "quoteId": quote["quoteId"], "transactionId": quote["transactionId"], "payee": quote["payee"],
            "amountType": "SEND", "amount": quote["amount"], "transactionType": quote["transactionType"]
        });
        let mut bulk = json!({
            "bulkQuoteId": "c51ec534-ee48-4575-b6a9-ead2955b8069",
            "payer": quote["payer"],
            "individualQuotes": [individual.clone(), individual]
        });
        assert_eq!(check(Message::BulkQuotesPost, &bulk), Ok(()));
        bulk["individualQuotes"][1]["amount"].as_object_mut().expect("object").remove("amount");
        let violation = refused(Message::BulkQuotesPost, &bulk);
        assert_eq!((violation.code, violation.path.as_str()), ("3102", "individualQuotes[1].amount.amount"));
        bulk["individualQuotes"] = json!([]);
        let violation = refused(Message::BulkQuotesPost, &bulk);
        assert_eq!((violation.code, violation.path.as_str()), ("3100", "individualQuotes"));
        let put = json!({
            "bulkTransferState": "COMPLETED",
            "individualTransferResults": [{ "transferId": "b51ec534-ee48-4575-b6a9-ead2955b8069",
              "errorInformation": { "errorCode": "3204", "errorDescription": "" } }]
        });
        let violation = refused(Message::BulkTransfersPut, &put);
        assert_eq!(violation.path, "individualTransferResults[0].errorInformation.errorDescription");
    }

    #[test]
    fn transfers_and_errors_are_checked_too() {
        let transfer = json!({
            "transferId": "b51ec534-ee48-4575-b6a9-ead2955b8069",
            "payeeFsp": "greenbank", "payerFsp": "bluebank",
            "amount": { "amount": "10", "currency": "USD" },
            "ilpPacket": "AYIBgQAAAAAAAASwNGxldmVsb25lLmRmc3AxLm1lci45T2RTOF81MDdqUUZERmZlakgyOVc4bXFmNEpLMHlGTFGCAUBQU0svMS4wCk5vbmNlOiB1SXlweUYzY3pYSXBFdzVVc05TYWh3CkVuY3J5cHRpb246IG5vbmUKUGF5bWVudC1JZDogMTMyMzZhM2ItOGZhOC00MTYzLTg0NDctNGMzZWQzZGE5OGE3CgpDb250ZW50LUxlbmd0aDogMTM1CkNvbnRlbnQtVHlwZTogYXBwbGljYXRpb24vanNvbgpTZW5kZXItSWRlbnRpZmllcjogOTI4MDYzOTEKCiJ7XCJmZWVcIjowLFwidHJhbnNmZXJDb2RlXCI6XCJpbnZvaWNlXCIsXCJkZWJpdE5hbWVcIjpcImFsaWNlIGNvb3BlclwiLFwiY3JlZGl0TmFtZVwiOlwibWVyIGNoYW50XCIsXCJkZWJpdElkZW50aWZpZXJcIjpcIjkyODA2MzkxXCJ9IgA",
            "condition": "f5sqb7tBTWPd5Y8BDFdMm9BJR_MNI4isf8p8n4D5pHA",
            "expiration": "2026-11-24T13:00:00.000+02:00"
        });
        assert_eq!(check(Message::TransfersPost, &transfer), Ok(()));
        let mut bad = transfer.clone();
        bad["condition"] = json!("f5sqb7tBTWPd5Y8BDFdMm9BJR_MNI4isf8p8n4D5pH");
        assert_eq!(refused(Message::TransfersPost, &bad).path, "condition");
        let put =
            json!({ "fulfilment": "WLctttbu2HvTsa1XWvUoGRcQQ2ZKfc3ApWg-yRYqJwk", "transferState": "DONE" });
        assert_eq!(refused(Message::TransfersPut, &put).path, "transferState");
        let error = json!({ "errorInformation": { "errorCode": "0123", "errorDescription": "x" } });
        assert_eq!(refused(Message::Error, &error).path, "errorInformation.errorCode");
        assert_eq!(refused(Message::Error, &json!([])).path, "body");
    }
}
