//! The AMS API round trip: a [`Ledger`] served by [`router`] on 127.0.0.1,
//! reached by an [`AmsClient`], must answer exactly as the ledger does.

use std::net::SocketAddr;

use axum::http::StatusCode as HttpStatus;
use axum::routing::put;
use serde_json::json;

use storage::{Space, Store};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    remote: AmsClient,
    address: SocketAddr,
    tenant: TenantId,
    payer: Party,
    payee: Party,
}

fn usd(value: &str) -> Amount {
    Amount::parse_positive(value, "USD").expect("valid amount")
}

fn msisdn(number: &str) -> Party {
    Party::new(PartyIdType::Msisdn, number).expect("valid party")
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    address
}

/// A ledger with a payer (100 USD) and a payee (1 USD) of `bluebank`,
/// served over HTTP.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open store");
    let ledger = Ledger::new(store.kv(Space::Ledger));
    let tenant: TenantId = "bluebank".parse().expect("valid tenant");
    let (payer, payee) = (msisdn("27710000001"), msisdn("27710000006"));
    ledger.open_account(&tenant, &payer, usd("100")).await.expect("open payer");
    ledger.open_account(&tenant, &payee, usd("1")).await.expect("open payee");
    let address = serve(router(ledger.clone())).await;
    let remote = AmsClient::new(&format!("http://{address}/"), 5_000).expect("client");
    Fixture { _dir: dir, ledger, remote, address, tenant, payer, payee }
}

/// A loopback address nothing listens on: connections are refused.
fn refusing() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address")
}

#[tokio::test]
async fn every_ledger_refusal_crosses_the_api_as_the_same_error() {
    let f = fixture().await;
    let (local, remote): (&dyn Ams, &dyn Ams) = (&f.ledger, &f.remote);
    let t = &f.tenant;
    let (open, released, committed) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    local.reserve(t, open, &f.payer, usd("10")).await.expect("reserve");
    local.release(t, released).await.expect("release of a hold that never existed");
    local.reserve(t, committed, &f.payer, usd("5")).await.expect("reserve");
    local.commit(t, committed).await.expect("commit");

    // Refusals change nothing, so each runs on the local ledger and then over
    // the API against the same state.
    let eur = Amount::parse_positive("1", "EUR").expect("valid amount");
    let unknown = Uuid::new_v4();
    let stranger = msisdn("27719999999");
    let mut seen = Vec::new();
    for ams in [local, remote] {
        seen.push(vec![
            ams.reserve(t, Uuid::new_v4(), &stranger, usd("1")).await,
            ams.reserve(t, Uuid::new_v4(), &f.payer, eur).await,
            ams.reserve(t, Uuid::new_v4(), &f.payer, usd("1000")).await,
            ams.commit(t, unknown).await,
            ams.reserve(t, open, &f.payer, usd("11")).await,
            ams.reserve_credit(t, released, &f.payee, usd("1")).await,
            ams.commit(t, released).await,
            ams.release(t, committed).await,
        ]);
    }
    let (answered_locally, answered_remotely) = (&seen[0], &seen[1]);
    assert_eq!(answered_remotely, answered_locally);
    let expected = [
        matches!(answered_locally[0], Err(LedgerError::UnknownAccount(ref a)) if a == "MSISDN/27719999999"),
        matches!(answered_locally[1], Err(LedgerError::CurrencyMismatch { .. })),
        matches!(answered_locally[2], Err(LedgerError::InsufficientFunds(_))),
        answered_locally[3] == Err(LedgerError::UnknownHold(unknown)),
        answered_locally[4] == Err(LedgerError::HoldConflict(open)),
        answered_locally[5] == Err(LedgerError::HoldClosed { hold: released, state: HoldState::Released }),
        answered_locally[6] == Err(LedgerError::HoldClosed { hold: released, state: HoldState::Released }),
        answered_locally[7] == Err(LedgerError::HoldClosed { hold: committed, state: HoldState::Committed }),
    ];
    assert_eq!(expected, [true; 8], "{answered_locally:?}");
}

#[tokio::test]
async fn repeating_an_operation_over_the_api_changes_nothing() {
    let f = fixture().await;
    let t = &f.tenant;
    let (debit, credit) = (Uuid::new_v4(), Uuid::new_v4());
    for _ in 0..2 {
        f.remote.reserve(t, debit, &f.payer, usd("10.25")).await.expect("reserve");
        f.remote.reserve_credit(t, credit, &f.payee, usd("10.25")).await.expect("reserve credit");
    }
    let payer = f.remote.balance(t, &f.payer).await.expect("balance").expect("payer account");
    assert_eq!((payer.balance, payer.reserved), (Decimal::new(100, 0), Decimal::new(1025, 2)));
    assert_eq!(payer.currency.as_str(), "USD");
    for _ in 0..2 {
        f.remote.commit(t, debit).await.expect("commit debit");
        f.remote.commit(t, credit).await.expect("commit credit");
    }
    let payer = f.remote.balance(t, &f.payer).await.expect("balance");
    let payee = f.remote.balance(t, &f.payee).await.expect("balance");
    assert_eq!(payer, f.ledger.balance(t, &f.payer).expect("local balance"));
    assert_eq!(payee, f.ledger.balance(t, &f.payee).expect("local balance"));
    assert_eq!(payer.map(|b| (b.balance, b.reserved)), Some((Decimal::new(8975, 2), Decimal::ZERO)));
    assert_eq!(payee.map(|b| (b.balance, b.incoming)), Some((Decimal::new(1125, 2), Decimal::ZERO)));
    assert_eq!(f.ledger.total(t).expect("total"), Decimal::ZERO);

    // Releasing twice is as harmless, and an unknown party has no account.
    let released = Uuid::new_v4();
    f.remote.release(t, released).await.expect("release");
    f.remote.release(t, released).await.expect("release again");
    assert_eq!(f.remote.balance(t, &msisdn("27719999999")).await, Ok(None));
}

/// A party with a sub-id (one of several accounts behind one identifier)
/// has an account of its own, over the API as in the ledger.
#[tokio::test]
async fn a_sub_id_names_an_account_of_its_own_over_the_api() {
    let f = fixture().await;
    let t = &f.tenant;
    let savings = Party::with_sub_id(PartyIdType::Msisdn, "27710000006", Some("savings")).expect("valid");
    f.ledger.open_account(t, &savings, usd("5")).await.expect("open the savings account");
    let credit = Uuid::new_v4();
    f.remote.reserve_credit(t, credit, &savings, usd("2.50")).await.expect("reserve credit");
    f.remote.commit(t, credit).await.expect("commit");
    let remote = f.remote.balance(t, &savings).await.expect("balance").expect("savings account");
    assert_eq!(remote.balance, Decimal::new(750, 2));
    assert_eq!(Some(remote), f.ledger.balance(t, &savings).expect("local balance"));
    // The plain identifier's account did not move; an unknown sub-id has none.
    let plain = f.remote.balance(t, &f.payee).await.expect("balance").expect("payee account");
    assert_eq!(plain.balance, Decimal::ONE);
    let current = Party::with_sub_id(PartyIdType::Msisdn, "27710000006", Some("current")).expect("valid");
    assert_eq!(f.remote.balance(t, &current).await, Ok(None));
    let accounts = f.ledger.accounts(t).expect("accounts");
    assert!(accounts.iter().any(|(party, _)| *party == savings), "{accounts:?}");
    assert_eq!(f.ledger.total(t).expect("total"), Decimal::ZERO);
}

#[tokio::test]
async fn a_holds_state_reads_the_same_over_the_api() {
    let f = fixture().await;
    let t = &f.tenant;
    let (held, committed, released, unknown) =
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    f.ledger.reserve_credit(t, held, &f.payee, usd("1")).await.expect("reserve credit");
    f.ledger.reserve_credit(t, committed, &f.payee, usd("1")).await.expect("reserve credit");
    f.ledger.commit(t, committed).await.expect("commit");
    f.ledger.release(t, released).await.expect("release before it exists");
    for (hold, expected) in [
        (held, Some(HoldState::Held)),
        (committed, Some(HoldState::Committed)),
        (released, Some(HoldState::Released)),
        (unknown, None),
    ] {
        assert_eq!(f.ledger.hold_state(t, hold).ok(), Some(expected));
        assert_eq!(Ams::hold_state(&f.remote, t, hold).await.ok(), Some(expected), "over the API");
    }
}

#[tokio::test]
async fn an_unreachable_ams_is_unavailable() {
    let client = AmsClient::new(&format!("http://{}", refusing()), 1_000).expect("client");
    let tenant: TenantId = "bluebank".parse().expect("valid tenant");
    let party = msisdn("27710000001");
    let results = [
        client.reserve(&tenant, Uuid::new_v4(), &party, usd("1")).await,
        client.commit(&tenant, Uuid::new_v4()).await,
        client.balance(&tenant, &party).await.map(|_| ()),
    ];
    for result in results {
        assert!(matches!(&result, Err(e @ LedgerError::Unavailable(_)) if e.is_retryable()), "{result:?}");
    }
}

#[tokio::test]
async fn a_slow_or_failing_ams_is_unavailable_and_a_stranger_answer_a_protocol_error() {
    let app = Router::new()
        .route(
            "/ams/{tenant}/holds/{hold}/commit",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                HttpStatus::NO_CONTENT
            }),
        )
        .route("/ams/{tenant}/holds/{hold}/release", post(|| async { HttpStatus::BAD_GATEWAY }))
        .route("/ams/{tenant}/holds/{hold}", put(|| async { (HttpStatus::NOT_FOUND, "no such route") }))
        .route(
            "/ams/{tenant}/accounts/{id_type}/{id}",
            get(|| async { Problem::new(HttpStatus::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "disk full") }),
        );
    let address = serve(app).await;
    let client = AmsClient::new(&format!("http://{address}"), 200).expect("client");
    let tenant: TenantId = "bluebank".parse().expect("valid tenant");
    let party = msisdn("27710000001");

    let started = Instant::now();
    let timed_out = client.commit(&tenant, Uuid::new_v4()).await;
    assert!(matches!(timed_out, Err(LedgerError::Unavailable(_))), "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the request timeout was not applied");
    let bad_gateway = client.release(&tenant, Uuid::new_v4()).await;
    assert!(matches!(bad_gateway, Err(LedgerError::Unavailable(_))), "{bad_gateway:?}");
    let unavailable = client.balance(&tenant, &party).await;
    assert!(
        matches!(&unavailable, Err(LedgerError::Unavailable(m)) if m.contains("disk full")),
        "{unavailable:?}"
    );
    let stranger = client.reserve(&tenant, Uuid::new_v4(), &party, usd("1")).await;
    assert!(matches!(&stranger, Err(e @ LedgerError::Protocol(_)) if !e.is_retryable()), "{stranger:?}");
}

#[tokio::test]
async fn bad_input_is_a_400_problem_naming_the_field_and_changes_nothing() {
    let f = fixture().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/ams", f.address);
    let hold = Uuid::new_v4();
    let body = |direction: &str, id_type: &str, id: &str, amount: serde_json::Value, currency: &str| {
        json!({
            "direction": direction,
            "party": { "partyIdType": id_type, "partyIdentifier": id },
            "amount": amount,
            "currency": currency,
        })
        .to_string()
    };
    let cases = [
        (
            format!("{base}/bluebank/holds/{hold}"),
            body("debit", "MSISDN", "27710000001", json!(10.5), "USD"),
            "amount",
        ),
        (
            format!("{base}/bluebank/holds/{hold}"),
            body("debit", "MSISDN", "27710000001", json!("-1"), "USD"),
            "amount",
        ),
        (
            format!("{base}/bluebank/holds/{hold}"),
            body("debit", "MSISDN", "27710000001", json!("1"), "XYZ"),
            "currency",
        ),
        (
            format!("{base}/bluebank/holds/{hold}"),
            body("sideways", "MSISDN", "27710000001", json!("1"), "USD"),
            "direction",
        ),
        (
            format!("{base}/bluebank/holds/{hold}"),
            body("debit", "PHONE", "27710000001", json!("1"), "USD"),
            "party.partyIdType",
        ),
        (
            format!("{base}/bluebank/holds/{hold}"),
            body("debit", "MSISDN", "abc", json!("1"), "USD"),
            "party.partyIdentifier",
        ),
        (format!("{base}/bluebank/holds/{hold}"), "{not json".to_owned(), "body"),
        (
            format!("{base}/bluebank/holds/not-a-uuid"),
            body("debit", "MSISDN", "27710000001", json!("1"), "USD"),
            "hold",
        ),
        (
            format!("{base}/Blue%20Bank/holds/{hold}"),
            body("debit", "MSISDN", "27710000001", json!("1"), "USD"),
            "tenant",
        ),
    ];
    for (url, body, field) in cases {
        let response =
            http.put(&url).header("content-type", "application/json").body(body.clone()).send().await;
        let response = response.expect("PUT a hold");
        assert_eq!(response.status(), HttpStatus::BAD_REQUEST, "{body}");
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some(PROBLEM_CONTENT_TYPE), "{body}");
        let problem: serde_json::Value = response.json().await.expect("problem details");
        assert_eq!(
            (problem["code"].as_str(), problem["field"].as_str()),
            (Some(codes::INVALID_REQUEST), Some(field)),
            "{problem}"
        );
        assert_eq!(problem["status"], 400, "{problem}");
    }
    let response =
        http.post(format!("{base}/bluebank/holds/not-a-uuid/commit")).send().await.expect("POST commit");
    assert_eq!(response.status(), HttpStatus::BAD_REQUEST);
    let response =
        http.get(format!("{base}/bluebank/accounts/MSISDN/abc")).send().await.expect("GET account");
    let problem: serde_json::Value = response.json().await.expect("problem details");
    assert_eq!(problem["field"], "partyIdentifier", "{problem}");

    let payer = f.ledger.balance(&f.tenant, &f.payer).expect("balance").expect("payer account");
    assert_eq!((payer.balance, payer.reserved), (Decimal::new(100, 0), Decimal::ZERO));
}

#[test]
fn a_base_url_that_is_not_http_is_refused() {
    assert!(matches!(AmsClient::new("127.0.0.1:8090", 1_000), Err(LedgerError::Protocol(_))));
    assert!(matches!(AmsClient::new("mailto:ams@example.org", 1_000), Err(LedgerError::Protocol(_))));
    let client = AmsClient::new("http://127.0.0.1:8090/prefix/", 1_000).expect("client");
    let tenant: TenantId = "bluebank".parse().expect("valid tenant");
    let url = client.url(&tenant, &["accounts", "MSISDN", "2771#1"]);
    assert_eq!(url.as_str(), "http://127.0.0.1:8090/prefix/ams/bluebank/accounts/MSISDN/2771%231");
}
