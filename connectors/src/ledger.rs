//! The built-in AMS: a double-entry ledger per tenant, the embedded default
//! and the base of stand-in processing later.
//!
//! Accounts are keyed by party. A payer's funds are first *reserved* (held:
//! still on the balance, no longer available), then either *committed* (booked
//! against the tenant's scheme settlement account) or *released*. A payee's
//! incoming funds are first a *pending credit*, then committed or released the
//! same way. Every hold is identified by the caller's idempotency key (the
//! transaction or transfer id), so repeating any operation changes nothing.
//!
//! Conservation: every booking moves the same amount from one account to
//! another, so the sum of all accounts of a tenant (customers, settlement and
//! funding) is always zero. It is asserted on every write.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

use actors::model::{Amount, Currency, Party, PartyIdType, TenantId};
use storage::Kv;

/// Business rejections of the ledger (expected, carried as data), and faults.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("account {0} does not exist")]
    UnknownAccount(String),
    #[error("account {account} holds {account_currency}, not {requested}")]
    CurrencyMismatch { account: String, account_currency: Currency, requested: Currency },
    #[error("insufficient funds on account {0}")]
    InsufficientFunds(String),
    #[error("hold {0} does not exist")]
    UnknownHold(Uuid),
    #[error("hold {hold} is already {state:?}")]
    HoldClosed { hold: Uuid, state: HoldState },
    #[error("hold {0} exists with different terms")]
    HoldConflict(Uuid),
    #[error("ledger storage failed: {0}")]
    Storage(String),
    /// An external AMS did not answer (connection refused or reset, timeout,
    /// HTTP 5xx): the operation may or may not have taken effect, and
    /// repeating it with the same hold id is safe.
    #[error("AMS unavailable: {0}")]
    Unavailable(String),
    /// An external AMS answered something outside its API (an unexpected
    /// status or body): not retryable; check `ams_url` and the AMS's version.
    #[error("AMS answered outside its API: {0}; check ams_url and the AMS's version")]
    Protocol(String),
}

impl LedgerError {
    /// A fault that may heal by itself: the caller leaves the operation to
    /// its timeout, which repeats it (every operation is idempotent by hold).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Storage(_) | LedgerError::Unavailable(_))
    }
}

impl From<storage::Error> for LedgerError {
    fn from(error: storage::Error) -> Self {
        LedgerError::Storage(error.to_string())
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// One account's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub currency: Currency,
    /// Booked funds.
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
    /// Part of the balance held for outgoing payments.
    #[serde(with = "rust_decimal::serde::str")]
    pub reserved: Decimal,
    /// Incoming funds accepted but not yet booked.
    #[serde(with = "rust_decimal::serde::str")]
    pub incoming: Decimal,
}

impl Balance {
    pub fn available(&self) -> Decimal {
        self.balance - self.reserved
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    Held,
    Committed,
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Direction {
    /// Funds leave the account (payer side).
    Debit,
    /// Funds arrive on the account (payee side).
    Credit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    account: String,
    direction: Direction,
    /// None for the tombstone of a hold released before it existed.
    amount: Option<Amount>,
    state: HoldState,
}

/// The internal accounts of each tenant, named like parties of a reserved type.
const SETTLEMENT_ACCOUNT: &str = "_settlement";
const FUNDING_ACCOUNT: &str = "_funding";

/// The ledgers of all tenants of a node.
#[derive(Clone)]
pub struct Ledger {
    kv: Kv,
    /// Serialises read-modify-write of each tenant's ledger. One lock per
    /// tenant: the ledger is the embedded default, not the throughput path of
    /// a bank's core system.
    locks: Arc<std::sync::Mutex<HashMap<TenantId, Arc<Mutex<()>>>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

fn account_key(tenant: &TenantId, account: &str) -> Vec<u8> {
    format!("acct/{tenant}/{account}").into_bytes()
}

/// `{type}/{identifier}[/{subId}]`: a party with a sub-id has an account of
/// its own.
fn party_account(party: &Party) -> String {
    party.to_string()
}

fn hold_key(tenant: &TenantId, hold: Uuid) -> Vec<u8> {
    format!("hold/{tenant}/{hold}").into_bytes()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    actors::command::encode(value)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    actors::command::decode(bytes).map_err(|e| LedgerError::Storage(e.to_string()))
}

impl Ledger {
    pub fn new(kv: Kv) -> Self {
        Ledger { kv, locks: Arc::default() }
    }

    async fn lock(&self, tenant: &TenantId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(tenant.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Runs `book` under `tenant`'s lock, then answers once what it wrote
    /// is on disk. The lock is released before the sync, so one sync serves
    /// many bookings; every answer waits, refusals and repeats too, since
    /// they may rest on another booking's writes, visible but not yet synced.
    async fn booking<T>(&self, tenant: &TenantId, book: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let result = {
            let _guard = self.lock(tenant).await;
            book(self)
        };
        self.kv.durable().await?;
        result
    }

    fn read_account(&self, tenant: &TenantId, account: &str) -> Result<Option<Balance>> {
        self.kv.get(&account_key(tenant, account))?.map(|b| decode(&b)).transpose()
    }

    fn read_hold(&self, tenant: &TenantId, hold: Uuid) -> Result<Option<Hold>> {
        self.kv.get(&hold_key(tenant, hold))?.map(|b| decode(&b)).transpose()
    }

    /// Opens a customer account funded with `opening` from the tenant's funding
    /// account. Does nothing if the account exists (so seeding is idempotent).
    pub async fn open_account(&self, tenant: &TenantId, party: &Party, opening: Amount) -> Result<bool> {
        self.booking(tenant, |ledger| ledger.book_opening(tenant, party, opening)).await
    }

    fn book_opening(&self, tenant: &TenantId, party: &Party, opening: Amount) -> Result<bool> {
        let account = party_account(party);
        if self.read_account(tenant, &account)?.is_some() {
            return Ok(false);
        }
        let funding = self.read_account(tenant, FUNDING_ACCOUNT)?.unwrap_or(zero(opening.currency));
        if funding.currency != opening.currency {
            return Err(LedgerError::CurrencyMismatch {
                account: FUNDING_ACCOUNT.into(),
                account_currency: funding.currency,
                requested: opening.currency,
            });
        }
        let mut customer = zero(opening.currency);
        customer.balance += opening.value;
        let mut funding_after = funding;
        funding_after.balance -= opening.value;
        assert_conserved(&[(&funding, &funding_after), (&zero(opening.currency), &customer)]);
        self.kv.apply(vec![
            (account_key(tenant, &account), Some(encode(&customer))),
            (account_key(tenant, FUNDING_ACCOUNT), Some(encode(&funding_after))),
        ])?;
        Ok(true)
    }

    /// Opens an account of the tenant's own (fee income, say) in `currency`
    /// with nothing on it. Does nothing if it exists.
    pub async fn open_own_account(
        &self,
        tenant: &TenantId,
        party: &Party,
        currency: Currency,
    ) -> Result<bool> {
        self.booking(tenant, |ledger| {
            let account = party_account(party);
            if ledger.read_account(tenant, &account)?.is_some() {
                return Ok(false);
            }
            ledger.kv.apply(vec![(account_key(tenant, &account), Some(encode(&zero(currency))))])?;
            Ok(true)
        })
        .await
    }

    /// The state of a hold, if it exists (a tombstone reads as released).
    pub fn hold_state(&self, tenant: &TenantId, hold: Uuid) -> Result<Option<HoldState>> {
        Ok(self.read_hold(tenant, hold)?.map(|hold| hold.state))
    }

    /// The account of a party, if the tenant has one.
    pub fn balance(&self, tenant: &TenantId, party: &Party) -> Result<Option<Balance>> {
        self.read_account(tenant, &party_account(party))
    }

    /// All customer accounts of a tenant.
    pub fn accounts(&self, tenant: &TenantId) -> Result<Vec<(Party, Balance)>> {
        let prefix = format!("acct/{tenant}/");
        let mut out = Vec::new();
        for (key, value) in self.kv.scan_prefix(prefix.as_bytes())? {
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let mut parts = name.splitn(3, '/');
            let (Some(id_type), Some(identifier)) = (parts.next(), parts.next()) else { continue };
            let Ok(id_type) = id_type.parse::<PartyIdType>() else { continue };
            let sub_id = parts.next().map(str::to_owned);
            let party = Party { id_type, identifier: identifier.to_owned(), sub_id };
            out.push((party, decode(&value)?));
        }
        Ok(out)
    }

    /// Sum of every account of the tenant, internal ones included: always zero.
    pub fn total(&self, tenant: &TenantId) -> Result<Decimal> {
        let prefix = format!("acct/{tenant}/");
        let mut total = Decimal::ZERO;
        for (_, value) in self.kv.scan_prefix(prefix.as_bytes())? {
            total += decode::<Balance>(&value)?.balance;
        }
        Ok(total)
    }

    /// Holds `amount` of the payer's available funds under `hold`.
    pub async fn reserve(&self, tenant: &TenantId, hold: Uuid, payer: &Party, amount: Amount) -> Result<()> {
        self.booking(tenant, |ledger| ledger.open_hold(tenant, hold, payer, amount, Direction::Debit)).await
    }

    /// Accepts `amount` as a pending credit for the payee under `hold`.
    pub async fn reserve_credit(
        &self,
        tenant: &TenantId,
        hold: Uuid,
        payee: &Party,
        amount: Amount,
    ) -> Result<()> {
        self.booking(tenant, |ledger| ledger.open_hold(tenant, hold, payee, amount, Direction::Credit)).await
    }

    fn open_hold(
        &self,
        tenant: &TenantId,
        hold_id: Uuid,
        party: &Party,
        amount: Amount,
        direction: Direction,
    ) -> Result<()> {
        let account = party_account(party);
        if let Some(existing) = self.read_hold(tenant, hold_id)? {
            let tombstone = existing.amount.is_none();
            if !tombstone
                && (existing.account != account
                    || existing.amount != Some(amount)
                    || existing.direction != direction)
            {
                return Err(LedgerError::HoldConflict(hold_id));
            }
            return match existing.state {
                HoldState::Held | HoldState::Committed => Ok(()),
                HoldState::Released => Err(LedgerError::HoldClosed { hold: hold_id, state: existing.state }),
            };
        }
        let Some(before) = self.read_account(tenant, &account)? else {
            return Err(LedgerError::UnknownAccount(party.to_string()));
        };
        if before.currency != amount.currency {
            return Err(LedgerError::CurrencyMismatch {
                account: party.to_string(),
                account_currency: before.currency,
                requested: amount.currency,
            });
        }
        let mut after = before;
        match direction {
            Direction::Debit => {
                if before.available() < amount.value {
                    return Err(LedgerError::InsufficientFunds(party.to_string()));
                }
                after.reserved += amount.value;
            }
            Direction::Credit => after.incoming += amount.value,
        }
        let hold = Hold { account: account.clone(), direction, amount: Some(amount), state: HoldState::Held };
        self.kv.apply(vec![
            (account_key(tenant, &account), Some(encode(&after))),
            (hold_key(tenant, hold_id), Some(encode(&hold))),
        ])?;
        Ok(())
    }

    /// Books a hold: a debit hold moves the funds from the payer to the
    /// settlement account, a credit hold from the settlement account to the payee.
    pub async fn commit(&self, tenant: &TenantId, hold_id: Uuid) -> Result<()> {
        self.booking(tenant, |ledger| ledger.close_hold(tenant, hold_id, HoldState::Committed)).await
    }

    /// Cancels a hold. Releasing a hold that never existed records it as
    /// released, so a reservation that arrives late cannot take effect.
    pub async fn release(&self, tenant: &TenantId, hold_id: Uuid) -> Result<()> {
        self.booking(tenant, |ledger| ledger.close_hold(tenant, hold_id, HoldState::Released)).await
    }

    fn close_hold(&self, tenant: &TenantId, hold_id: Uuid, target: HoldState) -> Result<()> {
        let Some(mut hold) = self.read_hold(tenant, hold_id)? else {
            if target == HoldState::Released {
                let tombstone = Hold {
                    account: String::new(),
                    direction: Direction::Debit,
                    amount: None,
                    state: HoldState::Released,
                };
                self.kv.apply(vec![(hold_key(tenant, hold_id), Some(encode(&tombstone)))])?;
                return Ok(());
            }
            return Err(LedgerError::UnknownHold(hold_id));
        };
        if hold.state == target {
            return Ok(());
        }
        if hold.state != HoldState::Held {
            return Err(LedgerError::HoldClosed { hold: hold_id, state: hold.state });
        }
        let Some(amount) = hold.amount else {
            return Err(LedgerError::HoldClosed { hold: hold_id, state: hold.state });
        };
        let value = amount.value;
        let Some(before) = self.read_account(tenant, &hold.account)? else {
            return Err(LedgerError::UnknownAccount(hold.account.clone()));
        };
        let mut after = before;
        let mut writes = Vec::with_capacity(3);
        match (hold.direction, target) {
            (Direction::Debit, HoldState::Released) => after.reserved -= value,
            (Direction::Credit, HoldState::Released) => after.incoming -= value,
            (direction, _) => {
                let settlement_before =
                    self.read_account(tenant, SETTLEMENT_ACCOUNT)?.unwrap_or(zero(amount.currency));
                let mut settlement_after = settlement_before;
                if direction == Direction::Debit {
                    after.reserved -= value;
                    after.balance -= value;
                    settlement_after.balance += value;
                } else {
                    after.incoming -= value;
                    after.balance += value;
                    settlement_after.balance -= value;
                }
                assert_conserved(&[(&before, &after), (&settlement_before, &settlement_after)]);
                writes.push((account_key(tenant, SETTLEMENT_ACCOUNT), Some(encode(&settlement_after))));
            }
        }
        assert!(
            after.reserved >= Decimal::ZERO && after.incoming >= Decimal::ZERO,
            "ledger invariant broken on {}: holds went negative ({after:?})",
            hold.account
        );
        hold.state = target;
        writes.push((account_key(tenant, &hold.account), Some(encode(&after))));
        writes.push((hold_key(tenant, hold_id), Some(encode(&hold))));
        self.kv.apply(writes)?;
        Ok(())
    }
}

fn zero(currency: Currency) -> Balance {
    Balance { currency, balance: Decimal::ZERO, reserved: Decimal::ZERO, incoming: Decimal::ZERO }
}

/// Asserts that a booking moved money between accounts without creating or
/// destroying any: a failure is a bug that would corrupt the ledger.
fn assert_conserved(changes: &[(&Balance, &Balance)]) {
    let delta: Decimal = changes.iter().map(|(before, after)| after.balance - before.balance).sum();
    assert!(delta.is_zero(), "ledger booking does not balance: {delta} created");
}
