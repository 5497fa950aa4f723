//! Every path of the request-to-pay flow, each timeout included.

use super::*;
use crate::model::PartyIdType;

const T0: u64 = 1_800_000_000_000;

fn limits() -> FlowLimits {
    FlowLimits {
        lookup_timeout_ms: 1_000,
        quote_timeout_ms: 2_000,
        ams_timeout_ms: 500,
        transfer_expiry_ms: 10_000,
        transfer_grace_ms: 1_000,
        query_timeout_ms: 700,
        retry_count_max: 2,
    }
}

/// A merchant of greenbank asks bluebank's customer for 25 USD, payable
/// within a minute.
fn request() -> RtpRequest {
    RtpRequest {
        tenant: "greenbank".parse().expect("valid tenant"),
        payee_fsp: "greenbank".into(),
        payee: Party::new(PartyIdType::Msisdn, "27710000006").expect("valid party"),
        payer: Party::new(PartyIdType::Msisdn, "27710000001").expect("valid party"),
        amount: Amount::parse_positive("25", "USD").expect("valid amount"),
        scenario: "PAYMENT".into(),
        initiator_type: "BUSINESS".into(),
        expiry_ms: 60_000,
        authentication: None,
    }
}

fn timeout_of(state: &RtpState) -> Input {
    Input::Timeout { phase: state.phase, attempt: state.attempt }
}

fn received(transaction_id: Option<&str>) -> Input {
    Input::RequestAnswered {
        state: RequestState::Received,
        transaction_id: transaction_id.map(str::to_owned),
    }
}

fn payment(transfer: u128) -> Input {
    Input::PaymentReceived { transfer_id: Uuid::from_u128(transfer), amount: request().amount }
}

fn notified(effects: &[Effect]) -> Option<TransferState> {
    effects.iter().find_map(|e| match e {
        Effect::NotifyChannel { state, flow: FlowKind::RequestToPay, .. } => Some(*state),
        _ => None,
    })
}

/// A request whose payer's DFSP has it.
fn awaiting() -> RtpState {
    let started = start(TransactionId::new_random(), request(), limits(), T0).state;
    let found = step(&started, Input::PartyFound { fsp_id: "bluebank".into() }, T0 + 10).state;
    step(&found, received(None), T0 + 20).state
}

#[test]
fn a_request_finds_the_payer_asks_its_dfsp_and_is_paid() {
    let id = TransactionId::new_random();
    let started = start(id, request(), limits(), T0);
    assert_eq!(started.state.phase, Phase::LookingUpPayer);
    assert_eq!(started.state.expiration_ms(), T0 + 60_000);
    assert!(started
        .effects
        .contains(&Effect::LookupParty { tenant: request().tenant, party: request().payer }));

    let found = step(&started.state, Input::PartyFound { fsp_id: "bluebank".into() }, T0 + 10);
    assert_eq!(found.state.phase, Phase::RequestingPayment);
    let sent = found.effects.iter().find_map(|e| match e {
        Effect::RequestPayment { request_id, payer_fsp, payee_fsp, amount, expiration_ms, .. } => {
            Some((*request_id, payer_fsp.clone(), payee_fsp.clone(), *amount, *expiration_ms))
        }
        _ => None,
    });
    assert_eq!(
        sent,
        Some((id, "bluebank".into(), "greenbank".into(), request().amount, T0 + 60_000)),
        "the request goes to the payer's DFSP under the transaction's id"
    );

    let acknowledged = step(&found.state, received(Some("payer-txn")), T0 + 20);
    assert_eq!(acknowledged.state.phase, Phase::AwaitingPayment);
    assert_eq!(acknowledged.state.request_state, Some(RequestState::Received));
    // It waits past the request's expiration for a payment under way.
    assert_eq!(acknowledged.state.deadline_ms, Some(T0 + 60_000 + 10_000 + 1_000));
    let accepted = step(
        &acknowledged.state,
        Input::RequestAnswered { state: RequestState::Accepted, transaction_id: None },
        T0 + 30,
    );
    assert_eq!(accepted.state.phase, Phase::AwaitingPayment);
    assert_eq!(accepted.state.request_state, Some(RequestState::Accepted));
    assert_eq!(accepted.state.payer_transaction_id.as_deref(), Some("payer-txn"));
    assert!(accepted.effects.is_empty());

    let paid = step(&accepted.state, payment(9), T0 + 40);
    assert_eq!(paid.state.phase, Phase::Committed);
    assert_eq!(paid.state.payment.as_ref().map(|p| p.transfer_id), Some(Uuid::from_u128(9)));
    assert_eq!(notified(&paid.effects), Some(TransferState::Committed));
    // The same payment told again changes nothing.
    assert_eq!(step(&paid.state, payment(9), T0 + 50).state, paid.state);
}

#[test]
fn a_payment_may_overtake_the_acknowledgement() {
    let started = start(TransactionId::new_random(), request(), limits(), T0).state;
    let found = step(&started, Input::PartyFound { fsp_id: "bluebank".into() }, T0 + 10).state;
    let paid = step(&found, payment(9), T0 + 20);
    assert_eq!(paid.state.phase, Phase::Committed);
    // The acknowledgement that comes after changes nothing.
    assert_eq!(step(&paid.state, received(None), T0 + 30).state, paid.state);
}

#[test]
fn a_declined_or_refused_request_aborts_and_tells_the_channel() {
    let declined = step(
        &awaiting(),
        Input::RequestAnswered { state: RequestState::Rejected, transaction_id: None },
        T0 + 100,
    );
    assert_eq!(declined.state.phase, Phase::Aborted);
    assert_eq!(declined.state.request_state, Some(RequestState::Rejected));
    assert_eq!(declined.state.reason.as_ref().map(|r| r.code.as_str()), Some("4101"));
    assert_eq!(notified(&declined.effects), Some(TransferState::Aborted));

    let started = start(TransactionId::new_random(), request(), limits(), T0).state;
    let found = step(&started, Input::PartyFound { fsp_id: "bluebank".into() }, T0 + 10).state;
    let refused =
        step(&found, Input::RequestFailed { reason: Reason::new("3204", "no such payer") }, T0 + 20);
    assert_eq!(refused.state.phase, Phase::Aborted);
    assert_eq!(refused.state.reason.as_ref().map(|r| r.code.as_str()), Some("3204"));

    let unknown =
        step(&started, Input::PartyLookupFailed { reason: Reason::new("3204", "not found") }, T0 + 10);
    assert_eq!(unknown.state.phase, Phase::Aborted);
    assert!(!unknown.effects.iter().any(|e| matches!(e, Effect::RequestPayment { .. })));
}

#[test]
fn every_wait_retries_then_gives_up_and_an_unpaid_request_lapses() {
    // The lookup: retried twice, then aborted.
    let mut state = start(TransactionId::new_random(), request(), limits(), T0).state;
    for attempt in 1..=2 {
        let retried = step(&state, timeout_of(&state), T0 + u64::from(attempt) * 1_000);
        assert_eq!((retried.state.phase, retried.state.attempt), (Phase::LookingUpPayer, attempt));
        assert!(retried.effects.iter().any(|e| matches!(e, Effect::LookupParty { .. })));
        state = retried.state;
    }
    let gave_up = step(&state, timeout_of(&state), T0 + 3_000);
    assert_eq!(gave_up.state.phase, Phase::Aborted);
    assert_eq!(gave_up.state.reason.as_ref().map(|r| r.code.as_str()), Some("2004"));

    // The request itself: resent under the same id, then given up.
    let started = start(TransactionId::new_random(), request(), limits(), T0).state;
    let mut state = step(&started, Input::PartyFound { fsp_id: "bluebank".into() }, T0).state;
    for attempt in 1..=2 {
        let resent = step(&state, timeout_of(&state), T0 + u64::from(attempt) * 2_000);
        assert_eq!((resent.state.phase, resent.state.attempt), (Phase::RequestingPayment, attempt));
        assert!(resent
            .effects
            .iter()
            .any(|e| matches!(e, Effect::RequestPayment { request_id, .. } if *request_id == started.id)));
        state = resent.state;
    }
    assert_eq!(step(&state, timeout_of(&state), T0 + 6_000).state.phase, Phase::Aborted);

    // Acknowledged but never paid: lapses once a payment can no longer be under way.
    let waiting = awaiting();
    let stale = Input::Timeout { phase: Phase::RequestingPayment, attempt: 0 };
    assert_eq!(step(&waiting, stale, T0 + 5_000).state, waiting, "a timer of a wait left changes nothing");
    let lapsed = step(&waiting, timeout_of(&waiting), T0 + 71_000);
    assert_eq!(lapsed.state.phase, Phase::Aborted);
    assert_eq!(lapsed.state.reason.as_ref().map(|r| r.code.as_str()), Some("3301"));
    assert_eq!(notified(&lapsed.effects), Some(TransferState::Aborted));
}

#[test]
fn money_the_channel_was_not_told_of_is_flagged_until_an_operator_acknowledges_it() {
    let lapsed = step(&awaiting(), timeout_of(&awaiting()), T0 + 71_000).state;
    let late = step(&lapsed, payment(9), T0 + 80_000).state;
    assert_eq!(late.phase, Phase::Aborted, "a final state is reached once");
    assert!(late.reconciliation_required);
    assert!(!late.accepts(OperatorDecision::Release), "this flow holds no funds");
    assert!(!late.accepts(OperatorDecision::Commit));
    let acknowledged = step(
        &late,
        Input::OperatorDecided {
            decision: OperatorDecision::Acknowledge,
            operator: "ops-1".into(),
            note: "refunded".into(),
        },
        T0 + 90_000,
    )
    .state;
    assert!(!acknowledged.reconciliation_required);
    assert!(acknowledged
        .reason
        .as_ref()
        .is_some_and(|r| r.message.contains("ops-1 reconciled it: refunded")));

    // Paid twice: the second payment is flagged too.
    let paid = step(&awaiting(), payment(9), T0 + 40).state;
    let twice = step(&paid, payment(10), T0 + 50).state;
    assert_eq!(twice.phase, Phase::Committed);
    assert_eq!(twice.payment.as_ref().map(|p| p.transfer_id), Some(Uuid::from_u128(9)));
    assert!(twice.reconciliation_required);
}

#[test]
fn a_new_leader_resumes_the_current_wait() {
    let waiting = awaiting();
    assert_eq!(
        resume(&waiting),
        vec![Effect::ArmTimer { at_ms: T0 + 71_000, phase: Phase::AwaitingPayment, attempt: 0 }],
        "nothing is resent while the payer decides; only the deadline is re-armed"
    );
    let started = start(TransactionId::new_random(), request(), limits(), T0).state;
    let requesting = step(&started, Input::PartyFound { fsp_id: "bluebank".into() }, T0).state;
    assert!(resume(&requesting).iter().any(|e| matches!(e, Effect::RequestPayment { .. })));
    let paid = step(&waiting, payment(9), T0 + 40).state;
    assert!(resume(&paid).is_empty());
    // Inputs of the other flow change nothing.
    assert_eq!(step(&waiting, Input::FundsCommitted, T0 + 50).state, waiting);
}

/// A request that asks for the payer's password, which the payer's DFSP has.
fn awaiting_by_otp() -> RtpState {
    let request = RtpRequest { authentication: Some(Authentication::Otp), ..request() };
    let started = start(TransactionId::new_random(), request, limits(), T0);
    let found = step(&started.state, Input::PartyFound { fsp_id: "bluebank".into() }, T0 + 10);
    assert!(found
        .effects
        .iter()
        .any(|e| matches!(e, Effect::RequestPayment { authentication: Some(Authentication::Otp), .. })));
    step(&found.state, received(None), T0 + 20).state
}

fn asked(retries_left: u32) -> Input {
    Input::AuthorizationAsked { retries_left, amount: request().amount }
}

fn answered(effects: &[Effect]) -> Option<AuthorizationResponse> {
    effects.iter().find_map(|e| match e {
        Effect::AnswerAuthorization { response, payer_fsp, .. } => {
            assert_eq!(payer_fsp, "bluebank");
            Some(response.clone())
        }
        _ => None,
    })
}

#[test]
fn the_payers_password_is_asked_at_the_device_and_returned_each_time_its_dfsp_asks() {
    let waiting = awaiting_by_otp();
    let asked_once = step(&waiting, asked(3), T0 + 30);
    assert_eq!(asked_once.state.phase, Phase::AwaitingAuthorization);
    let ask = asked_once.state.authorization.clone().expect("an ask");
    assert_eq!((ask.retries_left, ask.amount, ask.response), (3, request().amount, None));
    // The request still lapses when it would have.
    assert_eq!(asked_once.state.deadline_ms, waiting.deadline_ms);

    let entered = AuthorizationResponse::Entered { value: "123456".into() };
    let returned =
        step(&asked_once.state, Input::AuthorizationEntered { response: entered.clone() }, T0 + 40);
    assert_eq!(returned.state.phase, Phase::AwaitingPayment);
    assert_eq!(answered(&returned.effects), Some(entered.clone()));
    // A second report of the device, before the DFSP asks again, is not sent.
    let again = step(&returned.state, Input::AuthorizationEntered { response: entered }, T0 + 45);
    assert_eq!(again.state, returned.state);
    assert_eq!(answered(&again.effects), None);

    // Wrong: the payer's DFSP asks again with a try less; then it is paid.
    let asked_twice = step(&returned.state, asked(2), T0 + 50);
    assert_eq!(
        asked_twice.state.authorization.as_ref().map(|a| (a.retries_left, a.response.clone())),
        Some((2, None))
    );
    let paid = step(&asked_twice.state, payment(9), T0 + 60);
    assert_eq!(paid.state.phase, Phase::Committed);
}

#[test]
fn a_request_that_asked_no_password_refuses_an_ask_and_an_ask_can_lapse() {
    let plain = awaiting();
    assert_eq!(step(&plain, asked(3), T0 + 30).state, plain);
    let code = |state: &RtpState, amount: Amount| state.refuses_authorization_ask(&amount).map(|r| r.code);
    assert_eq!(code(&plain, request().amount).as_deref(), Some("3100"));
    let in_euros = Amount::parse_positive("25", "EUR").expect("valid amount");
    assert_eq!(code(&awaiting_by_otp(), in_euros).as_deref(), Some("3100"));
    assert_eq!(code(&awaiting_by_otp(), request().amount), None);

    let asked_once = step(&awaiting_by_otp(), asked(3), T0 + 30).state;
    let lapsed = step(&asked_once, timeout_of(&asked_once), T0 + 80_000);
    assert_eq!(lapsed.state.phase, Phase::Aborted);
    assert_eq!(lapsed.state.reason.as_ref().map(|r| r.code.as_str()), Some("3301"));
    assert_eq!(code(&lapsed.state, request().amount).as_deref(), Some("3301"));

    // The payer's DFSP refusing it (after the last wrong try) ends it.
    let declined = Input::RequestAnswered { state: RequestState::Rejected, transaction_id: None };
    let declined = step(&asked_once, declined, T0 + 40);
    assert_eq!(declined.state.phase, Phase::Aborted);
}
