//! What a tenant charges as payee DFSP for receiving a payment: the FSPIOP
//! `payeeFspFee` of its quotes, by a per-tenant rule (a percentage of the
//! amount plus a fixed part per currency).
//!
//! Who bears the fee follows the quote's `amountType`, as the API Definition
//! defines it (5.2.14, `AmountType`): a `SEND` amount is what the payer sends,
//! fees included, so the fee is taken from what the payee receives; a
//! `RECEIVE` amount is what the payee receives, fees excluded, so the fee is
//! added to what the payer sends.
//!
//! The fee is income of the tenant, booked on its account
//! `ACCOUNT_ID/{account}-{CURRENCY}` when the transfer is.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use uuid::Uuid;

use actors::model::{Amount, Currency, Party, PartyIdType};

/// A tenant's fee rule. The default charges nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeeRule {
    /// Percentage of the quoted amount (`1.5` is 1.5 %).
    pub percent: Decimal,
    /// Fixed part, by currency (none: no fixed part in that currency).
    pub fixed: BTreeMap<Currency, Decimal>,
    /// The income account's name stem (see [`FeeRule::account`]).
    pub account: String,
}

/// The amounts of a quote under a fee rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteAmounts {
    /// What the payer DFSP transfers (`transferAmount`).
    pub transfer: Amount,
    /// What the payee's account is credited (`payeeReceiveAmount`).
    pub receive: Amount,
    /// The tenant's fee (`payeeFspFee`): `transfer - receive`, may be zero.
    pub fee: Decimal,
}

/// Whether a quote's amount is what the payer sends or what the payee
/// receives (FSPIOP `amountType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountType {
    Send,
    Receive,
}

/// Why a quote cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("the fee {fee} {currency} leaves nothing of {amount} for the payee")]
    AmountTooSmall { amount: Amount, fee: Decimal, currency: Currency },
    #[error("{0}")]
    Amount(String),
}

impl FeeRule {
    /// The default name stem of fee income accounts.
    pub const ACCOUNT: &'static str = "fees";

    /// Whether the rule charges anything at all.
    pub fn charges(&self) -> bool {
        !self.percent.is_zero() || self.fixed.values().any(|fixed| !fixed.is_zero())
    }

    /// The fee on `amount`: the percentage, rounded half away from zero to
    /// the currency's minor unit (ISO 4217), plus the fixed part.
    pub fn fee(&self, amount: &Amount) -> Decimal {
        let decimals =
            u32::from(crate::fspiop::ilp::currency_decimals(amount.currency.as_str()).unwrap_or(4));
        let share = (amount.value * self.percent / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero);
        (share + self.fixed.get(&amount.currency).copied().unwrap_or_default()).normalize()
    }

    /// A quote's amounts for `amount` of `kind`.
    pub fn quote(&self, kind: AmountType, amount: &Amount) -> Result<QuoteAmounts, FeeError> {
        let fee = self.fee(amount);
        let positive = |value: Decimal| {
            Amount::positive(value, amount.currency).map_err(|e| FeeError::Amount(e.to_string()))
        };
        match kind {
            AmountType::Send => {
                if amount.value <= fee {
                    return Err(FeeError::AmountTooSmall { amount: *amount, fee, currency: amount.currency });
                }
                Ok(QuoteAmounts { transfer: *amount, receive: positive(amount.value - fee)?, fee })
            }
            AmountType::Receive => {
                Ok(QuoteAmounts { transfer: positive(amount.value + fee)?, receive: *amount, fee })
            }
        }
    }

    /// The tenant's income account for fees in `currency`.
    pub fn account(&self, currency: Currency) -> Party {
        let stem = if self.account.is_empty() { Self::ACCOUNT } else { &self.account };
        Party { id_type: PartyIdType::AccountId, identifier: format!("{stem}-{currency}"), sub_id: None }
    }

    /// The ledger hold of the fee of transfer `transfer_id` (the payee's
    /// credit is held under the transfer id itself).
    pub fn hold(transfer_id: Uuid) -> Uuid {
        Uuid::new_v5(&transfer_id, b"payee-fee")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(value: &str, currency: &str) -> Amount {
        Amount::parse_positive(value, currency).expect("amount")
    }

    fn rule(percent: &str, fixed: &[(&str, &str)]) -> FeeRule {
        FeeRule {
            percent: percent.parse().expect("percent"),
            fixed: fixed
                .iter()
                .map(|(c, v)| (c.parse().expect("currency"), v.parse().expect("fixed")))
                .collect(),
            account: String::new(),
        }
    }

    #[test]
    fn a_send_quote_takes_the_fee_from_the_payee_and_a_receive_quote_adds_it_for_the_payer() {
        let rule = rule("1", &[("USD", "0.25")]);
        let send = rule.quote(AmountType::Send, &amount("100", "USD")).expect("priced");
        assert_eq!(
            (send.transfer, send.receive, send.fee),
            (amount("100", "USD"), amount("98.75", "USD"), "1.25".parse().expect("fee"))
        );
        let receive = rule.quote(AmountType::Receive, &amount("100", "USD")).expect("priced");
        assert_eq!((receive.transfer, receive.receive), (amount("101.25", "USD"), amount("100", "USD")));
        assert_eq!(send.transfer.value - send.receive.value, send.fee);
        assert_eq!(receive.transfer.value - receive.receive.value, receive.fee);
    }

    #[test]
    fn the_percentage_is_rounded_half_away_from_zero_to_the_currencys_minor_unit() {
        let rule = rule("1.5", &[]);
        assert_eq!(rule.fee(&amount("0.5", "USD")).to_string(), "0.01"); // 0.0075
        assert_eq!(rule.fee(&amount("0.3", "USD")).to_string(), "0"); // 0.0045
        assert_eq!(rule.fee(&amount("1001", "JPY")).to_string(), "15"); // 15.015, no minor unit
        assert_eq!(rule.fee(&amount("1.001", "KWD")).to_string(), "0.015"); // 0.015015
    }

    #[test]
    fn the_fixed_part_is_by_currency_and_no_rule_charges_nothing() {
        let rule = rule("0", &[("USD", "0.50")]);
        assert_eq!(rule.fee(&amount("10", "USD")).to_string(), "0.5");
        assert_eq!(rule.fee(&amount("10", "EUR")).to_string(), "0");
        assert!(rule.charges());
        assert!(!FeeRule::default().charges());
        let free = FeeRule::default().quote(AmountType::Send, &amount("10", "USD")).expect("priced");
        assert_eq!(
            (free.transfer, free.receive, free.fee),
            (amount("10", "USD"), amount("10", "USD"), Decimal::ZERO)
        );
    }

    #[test]
    fn a_send_amount_the_fee_would_swallow_is_refused() {
        let rule = rule("0", &[("USD", "1")]);
        assert!(matches!(
            rule.quote(AmountType::Send, &amount("1", "USD")),
            Err(FeeError::AmountTooSmall { .. })
        ));
        assert!(rule.quote(AmountType::Send, &amount("1.01", "USD")).is_ok());
        assert!(rule.quote(AmountType::Receive, &amount("0.01", "USD")).is_ok());
    }

    #[test]
    fn fee_income_accounts_and_holds_are_per_currency_and_per_transfer() {
        let rule = rule("1", &[]);
        assert_eq!(rule.account("USD".parse().expect("USD")).to_string(), "ACCOUNT_ID/fees-USD");
        let id = Uuid::new_v4();
        assert_ne!(FeeRule::hold(id), id);
        assert_eq!(FeeRule::hold(id), FeeRule::hold(id));
    }
}
