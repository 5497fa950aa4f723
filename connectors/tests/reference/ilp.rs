//! ILP (`connectors::fspiop::ilp`) against the reference's `Ilp` (v1 and v4),
//! through `tests/interop/ilp.js`: for the same quote, payhub and the
//! reference produce the same packet, condition and fulfilment; each decodes
//! the other's packet to the same transaction; each validates the other's
//! transfer and fulfilment.

use connectors::fspiop::ilp::{condition_of, fulfilment_matches, Ilp, IlpError, IlpVersion, TransferField};
use connectors::fspiop::types::Money;
use serde_json::{json, Value};

use super::reference;

const SECRET: &str = "payee-ilp-secret-0123456789";

fn quote_request(currency: &str, amount: &str) -> Value {
    json!({
        "quoteId": "7c23e80c-d078-4077-8263-2c047876fcf6",
        "transactionId": "85feac2f-39b2-491b-817e-4a03203d4f14",
        "payee": {
            "partyIdInfo": {
                "partyIdType": "MSISDN", "partyIdentifier": "27710000002",
                "partySubIdOrType": "Savings", "fspId": "greenbank"
            }
        },
        "payer": {
            "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": "27710000001", "fspId": "bluebank" },
            "personalInfo": {
                "complexName": { "firstName": "Zoë", "lastName": "Ngũgĩ" },
                "dateOfBirth": "1984-01-01"
            }
        },
        "amountType": "SEND",
        "amount": { "amount": amount, "currency": currency },
        "transactionType": { "scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER" },
        "note": "rent, März"
    })
}

fn cases() -> Vec<(IlpVersion, &'static str, &'static str)> {
    let mut cases = Vec::new();
    for version in [IlpVersion::V1, IlpVersion::V4] {
        for (currency, amount) in [("USD", "10.5"), ("XOF", "2500"), ("KWD", "1.125")] {
            cases.push((version, currency, amount));
        }
    }
    cases
}

const EXPIRATION: &str = "2030-01-01T00:00:00.000Z";

#[test]
fn quote_packets_conditions_and_fulfilments_are_those_of_the_reference() {
    for (version, currency, amount) in cases() {
        let request = quote_request(currency, amount);
        let money = Money { amount: amount.into(), currency: currency.into() };
        let ours = Ilp::new(version, SECRET)
            .quote_response(&request, &money, EXPIRATION, Some("rent, März"))
            .expect("payhub builds the packet");
        let theirs = reference(
            "ilp.js",
            &json!({
                "op": "quote-response", "version": version.as_str(), "secret": SECRET,
                "quoteRequest": request,
                "quoteResponse": { "transferAmount": money, "expiration": EXPIRATION, "note": "rent, März" },
            }),
        );
        let case = format!("{version} {amount} {currency}");
        assert_eq!(theirs["ilpPacket"], ours.ilp_packet, "{case}: packet");
        assert_eq!(theirs["condition"], ours.condition, "{case}: condition");
        assert_eq!(theirs["fulfilment"], ours.fulfilment, "{case}: fulfilment");
        assert!(fulfilment_matches(&ours.fulfilment, &ours.condition), "{case}");
        assert_eq!(condition_of(&ours.fulfilment).expect("32 bytes"), ours.condition, "{case}");

        // Both decode the packet to the same transaction, and the payee
        // recomputes the fulfilment from the packet alone.
        let decoded = Ilp::new(version, SECRET).transaction_object(&ours.ilp_packet).expect("decodes");
        let reference_decoded = reference(
            "ilp.js",
            &json!({ "op": "transaction-object", "version": version.as_str(), "secret": SECRET,
                     "ilpPacket": ours.ilp_packet }),
        );
        assert_eq!(reference_decoded["transactionObject"], decoded, "{case}: transaction object");
        assert_eq!(decoded["payer"], request["payer"], "{case}: the payer travels whole");
        let fulfilment = Ilp::new(version, SECRET).fulfilment_of_packet(&ours.ilp_packet).expect("fulfils");
        assert_eq!(fulfilment, ours.fulfilment, "{case}: fulfilment of the packet");
    }
}

#[test]
fn transfers_are_validated_against_the_packet_as_the_reference_does() {
    for (version, currency, amount) in cases() {
        let request = quote_request(currency, amount);
        let money = Money { amount: amount.into(), currency: currency.into() };
        let ilp = Ilp::new(version, SECRET);
        let quote = ilp.quote_response(&request, &money, EXPIRATION, None).expect("packet");
        let transfer = json!({
            "transferId": "85feac2f-39b2-491b-817e-4a03203d4f14",
            "payerFsp": "bluebank", "payeeFsp": "greenbank",
            "amount": money, "ilpPacket": quote.ilp_packet, "condition": quote.condition,
            "expiration": EXPIRATION,
        });
        let validate = |transfer: &Value| {
            reference(
                "ilp.js",
                &json!({ "op": "validate-transfer", "version": version.as_str(), "secret": SECRET,
                         "transfer": transfer }),
            )["valid"]
                .clone()
        };
        assert_eq!(ilp.validate_transfer(&transfer), Ok(()));
        assert_eq!(validate(&transfer), true);

        let mut other_amount = transfer.clone();
        other_amount["amount"]["amount"] = json!("99");
        assert!(matches!(
            ilp.validate_transfer(&other_amount),
            Err(IlpError::TransferMismatch { field: TransferField::Amount, .. })
        ));
        assert_eq!(validate(&other_amount), false);

        let mut other_payee = transfer.clone();
        other_payee["payeeFsp"] = json!("redbank");
        assert!(matches!(
            ilp.validate_transfer(&other_payee),
            Err(IlpError::TransferMismatch { field: TransferField::PayeeFsp, .. })
        ));
        assert_eq!(validate(&other_payee), false);

        // A packet from another secret: the condition is not this payee's.
        let foreign = Ilp::new(version, "another-payee-secret-0123456789")
            .quote_response(&request, &money, EXPIRATION, None)
            .expect("packet");
        let mut foreign_condition = transfer.clone();
        foreign_condition["condition"] = json!(foreign.condition);
        assert_eq!(ilp.validate_transfer(&foreign_condition), Err(IlpError::ConditionMismatch));
        let valid_fulfil = reference(
            "ilp.js",
            &json!({ "op": "validate-fulfil", "version": version.as_str(), "secret": SECRET,
                     "fulfilment": quote.fulfilment, "condition": foreign.condition }),
        );
        assert_eq!(valid_fulfil["valid"], false);
    }
}
