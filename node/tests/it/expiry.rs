//! A transfer the payee holds `RESERVED` and whose end it never hears of is
//! settled by the payee only on the switch's word: once its expiration has
//! passed, the payee asks the switch (`GET /transfers/{id}`) until it
//! answers, then books the credit or releases it.

use std::sync::Arc;
use std::time::Duration;

use crate::fspiop::{body_of, tenants_toml, Proxy, Rewrite};
use crate::node::{free_port, transfer_body, Node, TENANT_BLUE, TENANT_GREEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_transfer_that_expires_unheard_is_asked_after_and_released_on_the_switchs_word() {
    lost_word(true, "ABORTED", ("1000.00", "1000.00")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_transfer_whose_commit_notice_is_lost_is_asked_after_and_booked() {
    lost_word(false, "COMMITTED", ("990.00", "1010.00")).await;
}

/// A payment whose payee never hears how its transfer ended (the switch's
/// `PATCH` is lost; with `lose_fulfilment`, so is the payee's fulfilment, and
/// the switch aborts the transfer at its expiration): the payer's final
/// `state` and the balances `(bluebank's, greenbank's)` it must end with.
async fn lost_word(lose_fulfilment: bool, state: &str, balances: (&str, &str)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    // Between the tenants and the switch: greenbank's fulfilment may be lost.
    let lose_fulfilment: Rewrite = Arc::new(move |method: &str, path: &str, body: Vec<u8>| {
        let fulfilment =
            method == "PUT" && path.starts_with("/switch/transfers/") && !path.ends_with("/error");
        (!(lose_fulfilment && fulfilment)).then_some(body)
    });
    let to_switch = Proxy::start(format!("http://{listen}"), Some(lose_fulfilment)).await;
    // Between the switch and greenbank: the switch's notice that the
    // transfer ended (its PATCH) is lost too.
    let lose_notice: Rewrite = Arc::new(|method: &str, path: &str, body: Vec<u8>| {
        let notice = method == "PATCH" && path.starts_with("/fspiop/greenbank/transfers/");
        (!notice).then_some(body)
    });
    let to_greenbank = Proxy::start(format!("http://{listen}"), Some(lose_notice)).await;
    let config = dir.path().join("expiry.toml");
    std::fs::write(
        &config,
        format!(
            r#"switch_url = "http://{switch}/switch"

[flow]
transfer_expiry_ms = 2000

{tenants}"#,
            switch = to_switch.address,
            tenants =
                tenants_toml("", &format!("endpoint = \"http://{}/fspiop/greenbank\"", to_greenbank.address)),
        ),
    )
    .expect("write the configuration");
    let node =
        Node::start_with(&["demo", "--config", &config.to_string_lossy()], listen, &dir.path().join("node"))
            .await;

    let body = transfer_body("27710000001", "27710000006", "10.00", "USD");
    let transfer = node.pay(TENANT_BLUE, "expiring-1", &body).await;
    assert_eq!(transfer["transferState"], state, "{transfer}");

    // greenbank answered RESERVED, heard nothing, asked, and settled.
    let sent = to_switch.recorded();
    let post = sent
        .iter()
        .find(|m| m["method"] == "POST" && m["path"] == "/switch/transfers")
        .expect("bluebank sent its transfer");
    let transfer_id = body_of(post)["transferId"].as_str().expect("transferId").to_owned();
    let reserved = sent.iter().find(|m| m["path"] == format!("/switch/transfers/{transfer_id}"));
    assert_eq!(reserved.map(|m| body_of(m)["transferState"].clone()), Some("RESERVED".into()), "{sent:#?}");
    let asked = to_switch
        .wait_for("greenbank's GET /transfers", |sent| {
            sent.iter().any(|m| {
                m["method"] == "GET"
                    && m["path"] == format!("/switch/transfers/{transfer_id}")
                    && m["headers"]["fspiop-source"] == "greenbank"
            })
        })
        .await;
    assert!(!asked.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let green = node.accounts(TENANT_GREEN).await;
        let blue = node.accounts(TENANT_BLUE).await;
        let settled = |accounts: &[(String, String, String, String)], expected: &str| {
            // The paying and the paid account (not greenbank's savings).
            accounts.iter().filter(|(id, ..)| !id.contains('/')).all(|(_, balance, reserved, incoming)| {
                (balance.as_str(), reserved.as_str(), incoming.as_str()) == (expected, "0.00", "0.00")
            })
        };
        if settled(&blue, balances.0) && settled(&green, balances.1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not released: {green:?} {blue:?}\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
