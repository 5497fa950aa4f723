//! The checker every fault test shares: each accepted payment ends COMMITTED
//! or ABORTED exactly once, the balances equal the opening balances moved by
//! exactly the committed payments, nothing stays reserved or incoming, and
//! the sum of all balances is unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

use crate::node::{TENANT_BLUE, TENANT_GREEN};

/// Each party's (balance, reserved, incoming).
pub type Balances = BTreeMap<String, (Decimal, Decimal, Decimal)>;

pub struct Payment {
    pub tenant: &'static str,
    pub correlation: String,
    pub payer: String,
    pub payee: String,
    pub amount: Decimal,
}

/// `count` deterministic payments in both directions between the two demo
/// DFSPs, each of `cents(i)` hundredths of a USD.
pub fn payments(tag: &str, count: usize, cents: impl Fn(usize) -> i64) -> Vec<Payment> {
    (0..count)
        .map(|i| {
            let blue = format!("2771000000{}", 1 + i % 5);
            let green = format!("27710000{:03}", 6 + (i / 5) % 5);
            let (tenant, payer, payee) =
                if i % 3 == 0 { (TENANT_GREEN, green, blue) } else { (TENANT_BLUE, blue, green) };
            Payment {
                tenant,
                correlation: format!("{tag}-{i}"),
                payer,
                payee,
                amount: Decimal::new(cents(i), 2),
            }
        })
        .collect()
}

/// Follows the committed payments from the opening balances.
pub struct Expected {
    balances: Balances,
    committed: usize,
    total: usize,
}

impl Expected {
    pub fn new(initial: &Balances, ids: &[String]) -> Expected {
        let distinct: BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "correlation ids must map to distinct transactions");
        Expected { balances: initial.clone(), committed: 0, total: ids.len() }
    }

    /// Records one payment's final transfer (as `GET /channel/transfer`
    /// shows it), checking it reached its final state exactly once.
    pub fn record(&mut self, payment: &Payment, id: &str, transfer: &Value) {
        let finals = transfer["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|e| matches!(e["phase"].as_str(), Some("COMMITTED" | "ABORTED")))
            .count();
        assert_eq!(finals, 1, "transaction {id} reached a final state {finals} times: {transfer}");
        if transfer["transferState"] == "COMMITTED" {
            self.committed += 1;
            self.balances.get_mut(&payment.payer).expect("payer account").0 -= payment.amount;
            self.balances.get_mut(&payment.payee).expect("payee account").0 += payment.amount;
        }
    }

    /// Waits (the payee books on the switch's PATCH, which may trail the
    /// payer's final state) until `read` shows no holds, then checks it.
    pub async fn check<F, Fut>(&self, initial: &Balances, read: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Balances>,
    {
        eprintln!("{} of {} payments committed", self.committed, self.total);
        assert!(self.committed > self.total / 2, "most payments should commit: {}", self.committed);
        let deadline = Instant::now() + Duration::from_secs(60);
        let after = loop {
            let after = read().await;
            let settled =
                after.values().all(|(_, reserved, incoming)| reserved.is_zero() && incoming.is_zero());
            if settled || Instant::now() > deadline {
                break after;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for (party, (balance, reserved, incoming)) in &after {
            assert!(
                reserved.is_zero() && incoming.is_zero(),
                "{party} has money left on hold: {reserved} / {incoming}"
            );
            assert_eq!(
                *balance, self.balances[party].0,
                "{party}: balance does not match the committed payments"
            );
        }
        let before: Decimal = initial.values().map(|b| b.0).sum();
        let total: Decimal = after.values().map(|b| b.0).sum();
        assert_eq!(total, before, "money was created or destroyed");
    }
}
