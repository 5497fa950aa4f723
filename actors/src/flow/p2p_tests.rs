//! Every path of the P2P flow, each timeout included.

use super::*;
use crate::flow::State;
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

fn request() -> P2pRequest {
    P2pRequest {
        tenant: "bluebank".parse().expect("valid tenant"),
        payer_fsp: "bluebank".into(),
        payer: Party::new(PartyIdType::Msisdn, "27710000001").expect("valid party"),
        payee: Party::new(PartyIdType::Msisdn, "27710000006").expect("valid party"),
        amount: Amount::parse_positive("10.00", "USD").expect("valid amount"),
        transaction_request: None,
    }
}

/// greenbank's request that bluebank's customer pay it, valid a minute.
fn request_to_pay() -> P2pRequest {
    P2pRequest {
        transaction_request: Some(Box::new(TransactionRequest {
            id: Uuid::from_u128(7),
            payee_fsp: "greenbank".into(),
            expiration_ms: T0 + 60_000,
            scenario: "PAYMENT".into(),
            initiator_type: "BUSINESS".into(),
            authentication: None,
        })),
        ..request()
    }
}

/// The same request, approved by a one-time password at greenbank's device.
fn request_to_pay_by_otp() -> P2pRequest {
    let mut request = request_to_pay();
    if let Some(r) = request.transaction_request.as_mut() {
        r.authentication = Some(Authentication::Otp);
    }
    request
}

/// The password asked for, as (issue, retries left, amount).
fn asked(effects: &[Effect]) -> Option<(u32, u32, Amount)> {
    effects.iter().find_map(|e| match e {
        Effect::RequestAuthorization { issue, retries_left, amount, request_id, payee_fsp, .. } => {
            assert_eq!((request_id, payee_fsp.as_str()), (&Uuid::from_u128(7), "greenbank"));
            Some((*issue, *retries_left, *amount))
        }
        _ => None,
    })
}

/// An OTP request quoted by greenbank: its payer is asked for the password.
fn awaiting_password() -> P2pState {
    let started = start(TransactionId::new_random(), request_to_pay_by_otp(), limits(), T0);
    step(&started.state, quoted_by("greenbank"), T0 + 10).state
}

/// greenbank's quote, as its `PUT /quotes` brings it.
fn quoted_by(payee_fsp: &str) -> Input {
    Input::QuoteReceived { terms: quote(T0), payee_fsp: payee_fsp.into() }
}

fn reply(issue: u32, reply: AuthorizationReply) -> Input {
    Input::AuthorizationAnswered { issue, reply }
}

#[test]
fn a_request_approved_by_password_is_quoted_first_then_paid_once_the_payer_enters_the_right_one() {
    let started = start(TransactionId::new_random(), request_to_pay_by_otp(), limits(), T0);
    // Not waiting for the channel: quoted with the DFSP that asked.
    assert_eq!(started.state.phase, Phase::Quoting);
    assert_eq!(started.state.payee_fsp.as_deref(), Some("greenbank"));
    assert_eq!(answered(&started.effects), vec![RequestState::Received]);
    assert!(State::P2p(started.state.clone()).waits_for_a_person());

    let quoted = step(&started.state, quoted_by("greenbank"), T0 + 10);
    assert_eq!(quoted.state.phase, Phase::AwaitingAuthorization);
    assert_eq!(asked(&quoted.effects), Some((1, OTP_TRIES, quote(T0).transfer_amount)));
    // Asked again after a while, until the request's expiration.
    assert!(quoted.effects.contains(&Effect::ArmTimer {
        at_ms: T0 + 10 + AUTHORIZATION_ASK_INTERVAL_MS.min(60_000 - 10),
        phase: Phase::AwaitingAuthorization,
        attempt: 0
    }));
    assert!(!has(&quoted.effects, |e| matches!(e, Effect::ReserveAndTransfer { .. })));
    // The channel cannot approve it: only the password can.
    let unmoved = step(&quoted.state, Input::RequestApproved, T0 + 20);
    assert_eq!(unmoved.state, quoted.state);

    // A wrong password costs a try and asks again, same password.
    let wrong = step(&quoted.state, reply(1, AuthorizationReply::Invalid), T0 + 30);
    assert_eq!(wrong.state.phase, Phase::AwaitingAuthorization);
    assert_eq!(asked(&wrong.effects), Some((1, OTP_TRIES - 1, quote(T0).transfer_amount)));
    // A new password asked for: the next issue, no try used.
    let resent = step(&wrong.state, reply(1, AuthorizationReply::Resend), T0 + 40);
    assert_eq!(asked(&resent.effects), Some((2, OTP_TRIES - 1, quote(T0).transfer_amount)));
    // The old password is no longer current: its answer changes nothing.
    let stale = step(&resent.state, reply(1, AuthorizationReply::Valid), T0 + 50);
    assert_eq!(stale.state, resent.state);
    // The current one: accepted, the payee's DFSP told so, funds held and
    // the transfer sent.
    let entered = step(&resent.state, reply(2, AuthorizationReply::Valid), T0 + 60);
    assert_eq!(entered.state.phase, Phase::Transferring);
    assert_eq!(answered(&entered.effects), vec![RequestState::Accepted]);
    assert!(has(&entered.effects, |e| matches!(e, Effect::ReserveAndTransfer { .. })));
    assert_eq!(entered.state.request_state(), Some(RequestState::Accepted));
    assert!(!State::P2p(entered.state.clone()).waits_for_a_person());
    // A repeated answer after it moved on changes nothing.
    assert_eq!(step(&entered.state, reply(2, AuthorizationReply::Invalid), T0 + 70).state, entered.state);
}

#[test]
fn a_request_by_password_is_refused_after_the_last_wrong_try_a_refusal_an_error_or_its_expiry() {
    let mut state = awaiting_password();
    for _ in 1..OTP_TRIES {
        state = step(&state, reply(1, AuthorizationReply::Invalid), T0 + 20).state;
        assert_eq!(state.phase, Phase::AwaitingAuthorization);
    }
    let last = step(&state, reply(1, AuthorizationReply::Invalid), T0 + 30);
    assert_eq!(last.state.phase, Phase::Aborted);
    assert_eq!(last.state.reason.as_ref().map(|r| r.code.as_str()), Some("4101"));
    assert_eq!(answered(&last.effects), vec![RequestState::Rejected]);
    assert_eq!(last.state.request_state(), Some(RequestState::Rejected));

    let refused = step(&awaiting_password(), reply(1, AuthorizationReply::Rejected), T0 + 20);
    assert_eq!(
        (refused.state.phase, answered(&refused.effects)),
        (Phase::Aborted, vec![RequestState::Rejected])
    );

    let failed = Input::AuthorizationFailed { reason: Reason::new("3206", "no such request") };
    let failed = step(&awaiting_password(), failed, T0 + 20);
    assert_eq!(failed.state.reason.as_ref().map(|r| r.code.as_str()), Some("3206"));
    assert_eq!(answered(&failed.effects), vec![RequestState::Rejected]);

    let waiting = awaiting_password();
    let expired = step(&waiting, timeout_of(&waiting), T0 + 60_000);
    assert_eq!(expired.state.reason.as_ref().map(|r| r.code.as_str()), Some("3301"));
    assert_eq!(answered(&expired.effects), vec![RequestState::Rejected]);
    // Nothing was reserved on any of these paths.
    for t in [&last, &refused, &failed, &expired] {
        assert!(!has(&t.effects, |e| matches!(e, Effect::ReleaseFunds { .. })));
    }

    // A quote that fails before the payer decided refuses the request too.
    let started = start(TransactionId::new_random(), request_to_pay_by_otp(), limits(), T0);
    let unquoted =
        step(&started.state, Input::QuoteFailed { reason: Reason::new("5100", "payee rejected") }, T0 + 5);
    assert_eq!(answered(&unquoted.effects), vec![RequestState::Rejected]);
}

#[test]
fn an_unanswered_ask_is_repeated_until_the_request_expires() {
    // A request valid for three and a half ask intervals.
    let expiration = T0 + 7 * AUTHORIZATION_ASK_INTERVAL_MS / 2;
    let mut request = request_to_pay_by_otp();
    if let Some(r) = request.transaction_request.as_mut() {
        r.expiration_ms = expiration;
    }
    let started = start(TransactionId::new_random(), request, limits(), T0);
    let mut waiting = step(&started.state, quoted_by("greenbank"), T0).state;
    let mut asks = Vec::new();
    while let Some(at) = waiting.deadline_ms.filter(|at| *at < expiration) {
        let again = step(&waiting, timeout_of(&waiting), at);
        // The same password, the same tries.
        assert_eq!(asked(&again.effects), Some((1, OTP_TRIES, quote(T0).transfer_amount)));
        asks.push(at - T0);
        waiting = again.state;
    }
    let interval = AUTHORIZATION_ASK_INTERVAL_MS;
    assert_eq!(asks, vec![interval, 2 * interval, 3 * interval]);
    assert_eq!(waiting.deadline_ms, Some(expiration));
    let expired = step(&waiting, timeout_of(&waiting), expiration);
    assert_eq!(expired.state.reason.as_ref().map(|r| r.code.as_str()), Some("3301"));
    assert_eq!(answered(&expired.effects), vec![RequestState::Rejected]);
}

#[test]
fn resume_asks_for_the_current_password_again() {
    let state = step(&awaiting_password(), reply(1, AuthorizationReply::Resend), T0 + 20).state;
    assert_eq!(asked(&resume(&state)), Some((2, OTP_TRIES, quote(T0).transfer_amount)));
}

fn answered(effects: &[Effect]) -> Vec<RequestState> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::AnswerTransactionRequest { state, request_id, payee_fsp, .. } => {
                assert_eq!((request_id, payee_fsp.as_str()), (&Uuid::from_u128(7), "greenbank"));
                Some(*state)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_to_pay_waits_for_the_payer_and_once_approved_is_quoted_with_the_payee_dfsp_it_came_from() {
    let started = start(TransactionId::new_random(), request_to_pay(), limits(), T0);
    assert_eq!(started.state.phase, Phase::AwaitingApproval);
    assert_eq!(answered(&started.effects), vec![RequestState::Received]);
    assert!(started.effects.contains(&Effect::ArmTimer {
        at_ms: T0 + 60_000,
        phase: Phase::AwaitingApproval,
        attempt: 0
    }));
    // Nothing but the payer's decision moves it.
    let unmoved = step(&started.state, quoted_by("elsewhere"), T0 + 1);
    assert_eq!(unmoved.state, started.state);
    // A failover re-sends the acknowledgement and re-arms the expiry.
    assert_eq!(answered(&resume(&started.state)), vec![RequestState::Received]);

    let approved = step(&started.state, Input::RequestApproved, T0 + 5_000);
    assert_eq!(approved.state.phase, Phase::Quoting);
    assert_eq!(approved.state.payee_fsp.as_deref(), Some("greenbank"));
    assert_eq!(answered(&approved.effects), vec![RequestState::Accepted]);
    let quote = approved.effects.iter().find_map(|e| match e {
        Effect::RequestQuote { payee_fsp, transaction_request, .. } => Some((payee_fsp, transaction_request)),
        _ => None,
    });
    let (payee_fsp, transaction_request) = quote.expect("a quote request");
    assert_eq!(payee_fsp.as_deref(), Some("greenbank"));
    assert_eq!(transaction_request.as_ref().map(|r| r.id), Some(Uuid::from_u128(7)));
    // A second approval (a resent decision) changes nothing.
    assert_eq!(step(&approved.state, Input::RequestApproved, T0 + 6_000).state, approved.state);
}

#[test]
fn a_request_to_pay_rejected_or_expired_aborts_and_tells_the_payee_dfsp() {
    let started = start(TransactionId::new_random(), request_to_pay(), limits(), T0).state;
    let rejected =
        step(&started, Input::RequestRejected { reason: Reason::new("4101", "payer declined") }, T0 + 1);
    assert_eq!(rejected.state.phase, Phase::Aborted);
    assert_eq!(rejected.state.reason.as_ref().map(|r| r.code.as_str()), Some("4101"));
    assert_eq!(answered(&rejected.effects), vec![RequestState::Rejected]);
    assert_eq!(step(&rejected.state, Input::RequestApproved, T0 + 2).state, rejected.state);

    let expired = step(&started, timeout_of(&started), T0 + 60_000);
    assert_eq!(expired.state.phase, Phase::Aborted);
    assert_eq!(expired.state.reason.as_ref().map(|r| r.code.as_str()), Some("3301"));
    assert_eq!(answered(&expired.effects), vec![RequestState::Rejected]);
    // No funds were ever touched.
    assert!(!expired
        .effects
        .iter()
        .any(|e| matches!(e, Effect::ReserveAndTransfer { .. } | Effect::ReleaseFunds { .. })));
}

/// A fulfilment and its condition, as a payee would make them.
fn fulfilment_pair() -> (String, String) {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let preimage = [7u8; 32];
    (engine.encode(preimage), engine.encode(Sha256::digest(preimage)))
}

fn quote(now_ms: u64) -> QuoteTerms {
    QuoteTerms {
        transfer_amount: request().amount,
        payee_fsp_fee: None,
        payee_fsp_commission: None,
        expiration_ms: now_ms + 60_000,
        ilp_packet: "packet".into(),
        condition: fulfilment_pair().1,
    }
}

fn started() -> Transition {
    start(TransactionId::new_random(), request(), limits(), T0)
}

fn timeout_of(state: &P2pState) -> Input {
    Input::Timeout { phase: state.phase, attempt: state.attempt }
}

/// Drives a new transaction to `phase` along the happy path.
fn at(phase: Phase) -> P2pState {
    let mut state = started().state;
    let steps: Vec<Input> = vec![
        quoted_by("greenbank"),
        Input::TransferFulfilled { fulfilment: fulfilment_pair().0 },
        Input::FundsCommitted,
    ];
    for input in steps {
        if state.phase == phase {
            break;
        }
        state = step(&state, input, T0 + 10).state;
    }
    assert_eq!(state.phase, phase, "happy path did not reach {phase:?}");
    state
}

fn has(effects: &[Effect], wanted: impl Fn(&Effect) -> bool) -> bool {
    effects.iter().any(wanted)
}

#[test]
fn start_asks_for_a_quote_from_the_payee_dfsp_the_lookup_finds_within_both_timeouts() {
    let t = started();
    assert_eq!(t.state.phase, Phase::Quoting);
    // One wait covers the lookup and the quote: no entry in between.
    assert_eq!(t.state.deadline_ms, Some(T0 + 1_000 + 2_000));
    assert!(has(&t.effects, |e| matches!(
        e,
        Effect::RequestQuote { payee_fsp: None, quote_id, transaction_id, .. }
            if *transaction_id == t.state.id && *quote_id == t.state.id.quote_id()
    )));
    assert!(!has(&t.effects, |e| matches!(e, Effect::LookupParty { .. })));
    assert!(t.effects.contains(&Effect::ArmTimer { at_ms: T0 + 3_000, phase: Phase::Quoting, attempt: 0 }));
}

#[test]
fn happy_path_reaches_committed_and_notifies_the_channel() {
    let state = at(Phase::Committing);
    let t = step(&state, Input::FundsCommitted, T0 + 20);
    assert_eq!(t.state.phase, Phase::Committed);
    assert_eq!(t.state.transfer_state(), TransferState::Committed);
    assert_eq!(t.state.deadline_ms, None);
    assert!(has(&t.effects, |e| matches!(e, Effect::NotifyChannel { state: TransferState::Committed, .. })));
    assert!(!has(&t.effects, |e| matches!(e, Effect::ArmTimer { .. })));
}

#[test]
fn each_phase_requests_what_it_waits_for() {
    let quoting = started();
    assert!(has(&quoting.effects, |e| matches!(e, Effect::RequestQuote { payee_fsp: None, .. })));
    // The quote: the DFSP that gave it is the payee's; hold the payer's
    // funds and send it the transfer, one effect (no Raft entry in
    // between), the hold's id the transfer's.
    let transferring = step(&quoting.state, quoted_by("greenbank"), T0 + 5);
    assert_eq!(transferring.state.payee_fsp.as_deref(), Some("greenbank"));
    let id = transferring.state.id;
    assert!(has(&transferring.effects, |e| matches!(
        e,
        Effect::ReserveAndTransfer { transfer_id, payer_account, amount, expiration_ms, payee_fsp, .. }
            if *transfer_id == id && *payer_account == request().payer && *amount == request().amount
                && *expiration_ms == T0 + 5 + 10_000 && payee_fsp == "greenbank"
    )));
    assert_eq!(transferring.state.phase, Phase::Transferring);
    assert_eq!(transferring.state.deadline_ms, Some(T0 + 5 + 10_000 + 1_000));
    let committing =
        step(&transferring.state, Input::TransferFulfilled { fulfilment: fulfilment_pair().0 }, T0 + 6);
    assert!(has(&committing.effects, |e| matches!(e, Effect::CommitFunds { .. })));
}

#[test]
fn unknown_payee_aborts_with_the_scheme_error() {
    let t =
        step(&at(Phase::Quoting), Input::PartyLookupFailed { reason: Reason::new("3204", "not found") }, T0);
    assert_eq!(t.state.phase, Phase::Aborted);
    assert_eq!(t.state.reason.as_ref().map(|r| r.code.as_str()), Some("3204"));
    assert!(has(&t.effects, |e| matches!(e, Effect::NotifyChannel { state: TransferState::Aborted, .. })));
    // A payee that asked to be paid was not looked up: a lookup answer
    // means nothing to it.
    let asked = step(
        &start(TransactionId::new_random(), request_to_pay(), limits(), T0).state,
        Input::RequestApproved,
        T0,
    )
    .state;
    let failed = Input::PartyLookupFailed { reason: Reason::new("3204", "not found") };
    assert_eq!(step(&asked, failed, T0 + 1).state, asked);
}

#[test]
fn lookup_and_quote_timeout_retries_both_then_aborts() {
    let mut state = at(Phase::Quoting);
    for attempt in 1..=2 {
        let t = step(&state, timeout_of(&state), T0 + 3_000 * u64::from(attempt));
        assert_eq!((t.state.phase, t.state.attempt), (Phase::Quoting, attempt));
        assert_eq!(t.state.deadline_ms, Some(T0 + 3_000 * u64::from(attempt) + 3_000));
        assert!(has(&t.effects, |e| matches!(e, Effect::RequestQuote { payee_fsp: None, .. })));
        state = t.state;
    }
    let t = step(&state, timeout_of(&state), T0 + 9_000);
    assert_eq!(t.state.phase, Phase::Aborted);
    assert_eq!(
        t.state.reason.as_ref().map(|r| (r.code.as_str(), r.message.as_str())),
        Some(("2004", "payee lookup and quote timed out"))
    );
}

#[test]
fn a_quote_from_another_dfsp_than_the_payee_asked_or_from_none_is_refused() {
    let approved = step(
        &start(TransactionId::new_random(), request_to_pay(), limits(), T0).state,
        Input::RequestApproved,
        T0,
    )
    .state;
    for (state, from) in [(approved, "elsewhere"), (at(Phase::Quoting), "")] {
        let t = step(&state, quoted_by(from), T0 + 1);
        assert_eq!(t.state.phase, Phase::Aborted);
        assert_eq!(t.state.reason.as_ref().map(|r| r.code.as_str()), Some("3100"));
        assert!(!has(&t.effects, |e| matches!(e, Effect::ReserveAndTransfer { .. })));
    }
}

#[test]
fn stale_timer_changes_nothing() {
    let state = at(Phase::Transferring);
    let stale = Input::Timeout { phase: Phase::Quoting, attempt: 0 };
    assert_eq!(step(&state, stale, T0 + 9_999).state, state);
    let old_attempt = Input::Timeout { phase: Phase::Transferring, attempt: 7 };
    assert_eq!(step(&state, old_attempt, T0 + 9_999).state, state);
}

#[test]
fn quote_error_aborts() {
    let t =
        step(&at(Phase::Quoting), Input::QuoteFailed { reason: Reason::new("5100", "payee rejected") }, T0);
    assert_eq!(t.state.phase, Phase::Aborted);
}

#[test]
fn quote_timeout_retries_then_aborts_without_reserving() {
    let mut state = at(Phase::Quoting);
    while state.phase == Phase::Quoting {
        let t = step(&state, timeout_of(&state), T0 + 100);
        assert!(!has(&t.effects, |e| matches!(e, Effect::ReserveAndTransfer { .. })));
        state = t.state;
    }
    assert_eq!(state.phase, Phase::Aborted);
    assert_eq!(state.attempt, 0);
}

#[test]
fn quote_with_other_amount_currency_or_past_expiry_is_refused() {
    let state = at(Phase::Quoting);
    let mut other_amount = quote(T0);
    other_amount.transfer_amount = Amount::parse_positive("11", "USD").expect("valid");
    let mut other_currency = quote(T0);
    other_currency.transfer_amount = Amount::parse_positive("10", "EUR").expect("valid");
    let mut expired = quote(T0);
    expired.expiration_ms = T0;
    for (terms, code) in [(other_amount, "3300"), (other_currency, "3300"), (expired, "3302")] {
        let t = step(&state, Input::QuoteReceived { terms, payee_fsp: "greenbank".into() }, T0 + 1);
        assert_eq!(t.state.phase, Phase::Aborted);
        assert_eq!(t.state.reason.as_ref().map(|r| r.code.as_str()), Some(code));
    }
}

#[test]
fn refused_funds_abort_without_release() {
    let t =
        step(&at(Phase::Transferring), Input::ReserveRefused { reason: Reason::new("4001", "no funds") }, T0);
    assert_eq!(t.state.phase, Phase::Aborted);
    assert_eq!(t.state.reason.as_ref().map(|r| r.code.as_str()), Some("4001"));
    assert!(!has(&t.effects, |e| matches!(e, Effect::ReleaseFunds { .. })));
}

#[test]
fn an_unreachable_ams_sends_nothing_and_the_scheme_is_asked_before_releasing() {
    // The AMS did not answer the hold: no input. At the transfer's deadline
    // the flow asks the scheme (the transfer may have gone out on an
    // earlier attempt); the scheme does not know it, so the hold (if any)
    // is released.
    let state = at(Phase::Transferring);
    let deadline = state.deadline_ms.expect("a deadline");
    let querying = step(&state, timeout_of(&state), deadline);
    assert_eq!(querying.state.phase, Phase::QueryingTransfer);
    assert!(has(&querying.effects, |e| matches!(e, Effect::QueryTransfer { .. })));
    let unknown = Input::TransferRejected { reason: Reason::new("3208", "transfer ID not found") };
    let releasing = step(&querying.state, unknown, deadline + 10);
    assert_eq!(releasing.state.phase, Phase::Releasing);
    assert!(has(&releasing.effects, |e| matches!(e, Effect::ReleaseFunds { .. })));
}

#[test]
fn a_quote_that_expired_before_the_right_password_is_not_paid() {
    let quoted = awaiting_password();
    assert_eq!(quoted.phase, Phase::AwaitingAuthorization);
    let late = step(&quoted, reply(1, AuthorizationReply::Valid), T0 + 60_000);
    assert_eq!(late.state.phase, Phase::Aborted);
    assert_eq!(late.state.reason.as_ref().map(|r| r.code.as_str()), Some("3302"));
    assert_eq!(answered(&late.effects), vec![RequestState::Rejected]);
    assert!(!has(&late.effects, |e| matches!(e, Effect::ReserveAndTransfer { .. })));
}

#[test]
fn transfer_error_releases_then_aborts() {
    let t = step(&at(Phase::Transferring), Input::TransferRejected { reason: Reason::new("5100", "no") }, T0);
    assert_eq!(t.state.phase, Phase::Releasing);
    let t = step(&t.state, Input::FundsReleased, T0 + 1);
    assert_eq!(t.state.phase, Phase::Aborted);
    assert_eq!(t.state.reason.as_ref().map(|r| r.code.as_str()), Some("5100"));
    assert!(has(&t.effects, |e| matches!(e, Effect::NotifyChannel { state: TransferState::Aborted, .. })));
}

#[test]
fn an_expired_or_duplicate_refusal_asks_the_scheme_before_releasing() {
    // A new leader resends POST /transfers after the first one was committed
    // and has since expired: the refusal does not mean the transfer failed.
    for code in ["3303", "3106"] {
        let t =
            step(&at(Phase::Transferring), Input::TransferRejected { reason: Reason::new(code, "no") }, T0);
        assert_eq!(t.state.phase, Phase::QueryingTransfer, "{code}");
        assert!(has(&t.effects, |e| matches!(e, Effect::QueryTransfer { .. })));
        let committed = step(&t.state, Input::TransferFulfilled { fulfilment: fulfilment_pair().0 }, T0 + 1);
        assert_eq!(committed.state.phase, Phase::Committing);
    }
}

#[test]
fn transfer_timeout_queries_the_scheme_before_deciding() {
    let state = at(Phase::Transferring);
    let t = step(&state, timeout_of(&state), T0 + 20_000);
    assert_eq!(t.state.phase, Phase::QueryingTransfer);
    assert!(has(&t.effects, |e| matches!(e, Effect::QueryTransfer { .. })));
    let committed = step(&t.state, Input::TransferFulfilled { fulfilment: fulfilment_pair().0 }, T0 + 20_001);
    assert_eq!(committed.state.phase, Phase::Committing);
    let aborted =
        step(&t.state, Input::TransferRejected { reason: Reason::new("3303", "expired") }, T0 + 20_001);
    assert_eq!(aborted.state.phase, Phase::Releasing);
    let pending = step(&t.state, Input::TransferPending, T0 + 20_001);
    assert_eq!(pending.state, t.state);
}

#[test]
fn unknown_outcome_after_all_queries_needs_an_operator_and_keeps_funds_reserved() {
    let state = at(Phase::Transferring);
    let mut state = step(&state, timeout_of(&state), T0 + 20_000).state;
    while state.phase == Phase::QueryingTransfer {
        state = step(&state, timeout_of(&state), T0 + 30_000).state;
    }
    assert_eq!(state.phase, Phase::NeedsOperator);
    assert_eq!(state.transfer_state(), TransferState::Received);
    assert!(!state.phase.is_active());
    assert!(resume(&state).is_empty(), "nothing runs by itself once an operator must decide");
}

#[test]
fn wrong_fulfilment_needs_an_operator() {
    let t = step(&at(Phase::Transferring), Input::TransferFulfilled { fulfilment: "AAAA".into() }, T0);
    assert_eq!(t.state.phase, Phase::NeedsOperator);
    assert_eq!(t.state.reason.as_ref().map(|r| r.code.as_str()), Some("5105"));
}

/// Aborted after the payee rejected the transfer, the funds released.
fn released() -> P2pState {
    let releasing = step(
        &at(Phase::Transferring),
        Input::TransferRejected { reason: Reason::new("5100", "payee rejected") },
        T0,
    )
    .state;
    step(&releasing, Input::FundsReleased, T0 + 1).state
}

fn decided(decision: OperatorDecision) -> Input {
    Input::OperatorDecided { decision, operator: "alice".into(), note: "checked the switch".into() }
}

#[test]
fn an_operator_books_or_releases_what_needs_one_and_the_reason_keeps_both() {
    let stuck =
        step(&at(Phase::Transferring), Input::TransferFulfilled { fulfilment: "AAAA".into() }, T0).state;
    assert_eq!(stuck.phase, Phase::NeedsOperator);

    let committing = step(&stuck, decided(OperatorDecision::Commit), T0 + 1);
    assert_eq!(committing.state.phase, Phase::Committing);
    assert!(has(&committing.effects, |e| matches!(e, Effect::CommitFunds { .. })));
    let committed = step(&committing.state, Input::FundsCommitted, T0 + 2).state;
    assert_eq!(committed.phase, Phase::Committed);
    let reason = committed.reason.expect("reason");
    assert_eq!(reason.code, "5105");
    assert!(reason.message.ends_with("alice decided to commit: checked the switch"), "{}", reason.message);

    let releasing = step(&stuck, decided(OperatorDecision::Release), T0 + 1);
    assert_eq!(releasing.state.phase, Phase::Releasing);
    assert!(has(&releasing.effects, |e| matches!(e, Effect::ReleaseFunds { .. })));
    assert_eq!(step(&releasing.state, Input::FundsReleased, T0 + 2).state.phase, Phase::Aborted);

    // Only where an operator is needed, and a commit only after a transfer
    // was sent (so that funds are held); acknowledging needs a flag.
    for (state, decision) in [
        (at(Phase::Transferring), OperatorDecision::Release),
        (at(Phase::Committed), OperatorDecision::Commit),
        (stuck.clone(), OperatorDecision::Acknowledge),
        (at(Phase::Committed), OperatorDecision::Acknowledge),
    ] {
        let t = step(&state, decided(decision), T0 + 3);
        assert_eq!(t.state, state, "{decision:?} in {:?}", state.phase);
        assert!(t.effects.is_empty());
    }
    let mut before_transfer = stuck;
    before_transfer.transfer_expiration_ms = None;
    assert_eq!(step(&before_transfer, decided(OperatorDecision::Commit), T0 + 3).state, before_transfer);
}

#[test]
fn an_operator_acknowledges_a_reconciled_late_success() {
    let late = step(&released(), Input::TransferFulfilled { fulfilment: fulfilment_pair().0 }, T0 + 2).state;
    assert!(late.reconciliation_required && late.needs_attention());
    let done = step(&late, decided(OperatorDecision::Acknowledge), T0 + 3);
    assert!(!done.state.reconciliation_required && !done.state.needs_attention());
    assert_eq!(done.state.phase, Phase::Aborted);
    assert!(done.effects.is_empty());
}

#[test]
fn commit_timeout_retries_then_needs_an_operator() {
    let mut state = at(Phase::Committing);
    let mut commits = 0;
    while state.phase == Phase::Committing {
        let t = step(&state, timeout_of(&state), T0 + 100);
        commits += t.effects.iter().filter(|e| matches!(e, Effect::CommitFunds { .. })).count();
        state = t.state;
    }
    assert_eq!(commits, 2);
    assert_eq!(state.phase, Phase::NeedsOperator);
}

#[test]
fn release_timeout_retries_then_needs_an_operator() {
    let state =
        step(&at(Phase::Transferring), Input::TransferRejected { reason: Reason::new("5100", "no") }, T0)
            .state;
    let mut state = state;
    while state.phase == Phase::Releasing {
        state = step(&state, timeout_of(&state), T0 + 100).state;
    }
    assert_eq!(state.phase, Phase::NeedsOperator);
}

#[test]
fn duplicate_and_late_inputs_change_nothing() {
    let committed = step(&at(Phase::Committing), Input::FundsCommitted, T0).state;
    for input in [
        Input::FundsCommitted,
        Input::ReserveRefused { reason: Reason::new("4001", "late") },
        Input::TransferRejected { reason: Reason::new("1", "x") },
    ] {
        assert_eq!(step(&committed, input, T0 + 1).state, committed);
    }
    let quoting = at(Phase::Quoting);
    assert_eq!(step(&quoting, Input::PartyFound { fsp_id: "other".into() }, T0).state, quoting);
    let transferring = at(Phase::Transferring);
    assert_eq!(step(&transferring, quoted_by("greenbank"), T0 + 20).state, transferring);
}

#[test]
fn success_after_release_is_flagged_for_reconciliation() {
    let late = step(&released(), Input::TransferFulfilled { fulfilment: fulfilment_pair().0 }, T0 + 2);
    assert_eq!(late.state.phase, Phase::Aborted);
    assert!(late.state.reconciliation_required);
    assert!(late.effects.is_empty());
}

#[test]
fn resume_repeats_the_current_phase_request_and_timer() {
    // A new leader holds the funds again (the same hold: nothing twice) and
    // resends the same transfer (the scheme answers with its outcome).
    let state = at(Phase::Transferring);
    let effects = resume(&state);
    assert!(has(&effects, |e| matches!(
        e,
        Effect::ReserveAndTransfer { transfer_id, expiration_ms, .. }
            if *transfer_id == state.id && Some(*expiration_ms) == state.transfer_expiration_ms
    )));
    assert!(has(&effects, |e| matches!(e, Effect::ArmTimer { phase: Phase::Transferring, .. })));
    assert!(resume(&at(Phase::Committed)).is_empty());
}

#[test]
fn stepping_is_deterministic() {
    let state = at(Phase::Transferring);
    let input = Input::TransferFulfilled { fulfilment: fulfilment_pair().0 };
    assert_eq!(step(&state, input.clone(), T0 + 3), step(&state, input, T0 + 3));
}

#[test]
fn the_payee_dfsp_is_told_received_then_accepted_or_rejected() {
    let waiting = start(TransactionId::new_random(), request_to_pay(), limits(), T0).state;
    assert_eq!(started().state.request_state(), None, "a payment the payer initiated answers no request");
    assert_eq!(waiting.request_state(), Some(RequestState::Received));
    let approved = step(&waiting, Input::RequestApproved, T0 + 2).state;
    assert_eq!(approved.request_state(), Some(RequestState::Accepted));
    // A payment that fails after the approval was still accepted.
    let failed = step(&approved, Input::QuoteFailed { reason: Reason::new("5100", "no") }, T0 + 3).state;
    assert_eq!((failed.phase, failed.request_state()), (Phase::Aborted, Some(RequestState::Accepted)));
    let rejected = step(&waiting, Input::RequestRejected { reason: Reason::new("4101", "no") }, T0 + 2).state;
    assert_eq!(rejected.request_state(), Some(RequestState::Rejected));
    let lapsed = step(&waiting, timeout_of(&waiting), T0 + 60_000).state;
    assert_eq!(lapsed.request_state(), Some(RequestState::Rejected));
}
