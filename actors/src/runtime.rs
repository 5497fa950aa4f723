//! The thin shell around a flow: one ractor actor per in-flight transaction.
//!
//! The actor serialises the inputs of its transaction. For each input it
//! commits a [`Command::Step`] through its shard's Raft group (the [`Commit`]
//! trait), and only once the command is applied does it run the effects the
//! step returned (the [`EffectRunner`] trait) and arm the timers. Results of
//! effects come back as new inputs. No business rule lives here: the actor
//! only commits, runs and forwards.
//!
//! An actor that finds its node no longer leads the transaction's shard
//! stops driving it (the new leader resumes it), but the inputs it was
//! handed are not dropped: each goes to the [`Reroute`] (the node sends it
//! to the new leader), all but timers, which the new leader arms itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::command::{Command, Response};
use crate::flow::{Effect, Input};
use crate::model::TransactionId;

/// Why a command could not be committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// This node does not lead the transaction's shard (any more); the leader
    /// resumes the transaction.
    #[error("this node is not the leader of the transaction's shard")]
    NotLeader,
    /// Storage or consensus failed; retrying may succeed.
    #[error("commit failed: {0}")]
    Failed(String),
}

/// Commits a command through Raft and returns what applying it answered.
#[async_trait::async_trait]
pub trait Commit: Send + Sync + 'static {
    async fn commit(&self, command: Command) -> Result<Response, CommitError>;
}

/// Runs an effect against the outside world (scheme, AMS, channel). Returns the
/// input the effect's immediate result means, if it has one; asynchronous
/// answers (FSPIOP callbacks) arrive later through [`Transactions::deliver`].
#[async_trait::async_trait]
pub trait EffectRunner: Send + Sync + 'static {
    async fn run(&self, id: TransactionId, effect: Effect) -> Option<Input>;
}

/// Where an input goes when the actor holding it learns that its node no
/// longer leads the transaction's shard: a scheme's callback handed to the
/// deposed leader must reach the new one, or the transaction waits for its
/// deadline to ask again.
#[async_trait::async_trait]
pub trait Reroute: Send + Sync + 'static {
    async fn reroute(&self, id: TransactionId, input: Input);
}

/// The wall clock, injectable so tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Limits of the shell.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeLimits {
    /// Retries of a failed commit before the actor stops and leaves the
    /// transaction to recovery.
    pub commit_retry_count_max: u32,
    pub commit_retry_delay_ms: u64,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits { commit_retry_count_max: 20, commit_retry_delay_ms: 100 }
    }
}

/// Messages of a transaction actor.
#[derive(Debug)]
pub enum TransactionMessage {
    /// Commit this input, then run its effects.
    Input(Input),
    /// Run effects of an already committed state (creation, recovery).
    Run(Vec<Effect>),
}

struct Shared {
    commit: Arc<dyn Commit>,
    runner: Arc<dyn EffectRunner>,
    clock: Arc<dyn Clock>,
    limits: RuntimeLimits,
    live: Mutex<HashMap<TransactionId, ActorRef<TransactionMessage>>>,
    reroute: std::sync::OnceLock<Arc<dyn Reroute>>,
}

/// The live transactions of a node: spawns, finds and forgets their actors.
#[derive(Clone)]
pub struct Transactions {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions").field("live", &self.live_count()).finish()
    }
}

impl Transactions {
    pub fn new(
        commit: Arc<dyn Commit>,
        runner: Arc<dyn EffectRunner>,
        clock: Arc<dyn Clock>,
        limits: RuntimeLimits,
    ) -> Self {
        Transactions {
            shared: Arc::new(Shared {
                commit,
                runner,
                clock,
                limits,
                live: Mutex::new(HashMap::new()),
                reroute: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets where inputs go when this node turns out not to lead their
    /// transaction's shard (once; without one they are dropped and the new
    /// leader's timeouts recover them).
    pub fn set_reroute(&self, reroute: Arc<dyn Reroute>) {
        let _ = self.shared.reroute.set(reroute);
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Whether an actor drives this transaction now.
    pub fn is_live(&self, id: &TransactionId) -> bool {
        self.live().contains_key(id)
    }

    /// Number of transaction actors alive now.
    pub fn live_count(&self) -> usize {
        self.live().len()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<TransactionId, ActorRef<TransactionMessage>>> {
        // A poisoned lock only means another thread panicked while holding it;
        // the map itself is always consistent (single inserts and removes).
        self.shared.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `message` to the transaction's actor, spawning one if none is live.
    pub async fn send(&self, id: TransactionId, message: TransactionMessage) {
        let existing = self.live().get(&id).cloned();
        let message = match existing {
            Some(actor) => match actor.cast(message) {
                Ok(()) => return,
                // The actor stopped between lookup and cast: start a new one.
                Err(ractor::MessagingErr::SendErr(returned)) => {
                    self.forget(id, &actor);
                    returned
                }
                Err(other) => {
                    tracing::error!(transaction = %id, error = %other, "cannot reach transaction actor");
                    return;
                }
            },
            None => message,
        };
        let args = ActorArgs { id, transactions: self.clone() };
        match Actor::spawn(None, TransactionActor, args).await {
            Ok((actor, _join)) => {
                let actor_to_use = {
                    let mut live = self.live();
                    live.entry(id).or_insert(actor.clone()).clone()
                };
                if actor_to_use.get_id() != actor.get_id() {
                    // Another task spawned one first; use it, stop ours.
                    actor.stop(None);
                }
                if let Err(error) = actor_to_use.cast(message) {
                    tracing::error!(transaction = %id, error = %error, "cannot reach new transaction actor");
                }
            }
            Err(error) => {
                tracing::error!(transaction = %id, error = %error, "cannot spawn transaction actor")
            }
        }
    }

    /// Delivers an input (a callback, an operator action) to a transaction.
    pub async fn deliver(&self, id: TransactionId, input: Input) {
        self.send(id, TransactionMessage::Input(input)).await;
    }

    /// Starts driving a transaction whose state is already committed: runs the
    /// given effects (the creation's, or `flow::resume`'s after recovery).
    pub async fn drive(&self, id: TransactionId, effects: Vec<Effect>) {
        self.send(id, TransactionMessage::Run(effects)).await;
    }

    /// Stops every actor (on shutdown or when leadership is lost).
    pub fn stop_all(&self) {
        let actors: Vec<_> = self.live().drain().map(|(_, actor)| actor).collect();
        for actor in actors {
            actor.stop(Some("leadership lost or shutting down".into()));
        }
    }

    /// Stops the actor of one transaction, if one is live (a watchdog uses it
    /// on an actor that stopped making progress; recovery then starts anew).
    pub fn stop(&self, id: &TransactionId) {
        let actor = self.live().remove(id);
        if let Some(actor) = actor {
            actor.stop(Some("stopped by the watchdog".into()));
        }
    }

    fn forget(&self, id: TransactionId, actor: &ActorRef<TransactionMessage>) {
        let mut live = self.live();
        if live.get(&id).map(|a| a.get_id()) == Some(actor.get_id()) {
            live.remove(&id);
        }
    }
}

struct TransactionActor;

struct ActorArgs {
    id: TransactionId,
    transactions: Transactions,
}

struct ActorState {
    id: TransactionId,
    transactions: Transactions,
    /// The phase the last step left the transaction in, and since when: the
    /// time spent in each phase is a metric (`payhub_flow_phase_seconds`).
    phase: Option<(crate::flow::Phase, std::time::Instant)>,
    /// The timer of the wait the flow is in. Arming one cancels the previous
    /// (a timer only counts for the current wait), and stopping cancels it,
    /// so a finished transaction leaves no sleeping task holding its actor.
    timer: Option<tokio::task::JoinHandle<()>>,
    /// Its node turned out not to lead the shard: the actor only passes on
    /// the inputs still reaching it, until it stops.
    deposed: bool,
}

impl ActorState {
    /// Passes `input` on to the new leader, unless it is a timer's (the new
    /// leader arms its own).
    fn reroute(&self, input: Input) {
        if matches!(input, Input::Timeout { .. }) {
            return;
        }
        let Some(reroute) = self.transactions.shared.reroute.get().cloned() else { return };
        let id = self.id;
        metrics::counter!("payhub_inputs_rerouted_total").increment(1);
        tokio::spawn(async move { reroute.reroute(id, input).await });
    }
}

/// How long a deposed actor passes on the inputs that still reach it before
/// it stops (callbacks routed here before the node knew it lost the lead).
const DEPOSED_FOR: Duration = Duration::from_secs(2);

impl Actor for TransactionActor {
    type Msg = TransactionMessage;
    type State = ActorState;
    type Arguments = ActorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        metrics::gauge!("payhub_transaction_actors").increment(1.0);
        Ok(ActorState {
            id: args.id,
            transactions: args.transactions,
            phase: None,
            timer: None,
            deposed: false,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!("payhub_transaction_actors").decrement(1.0);
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.transactions.forget(state.id, &myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &state.transactions.shared;
        match message {
            // A deposed actor runs nothing: the new leader does.
            TransactionMessage::Run(_) if state.deposed => {}
            TransactionMessage::Input(input) if state.deposed => state.reroute(input),
            TransactionMessage::Run(effects) => {
                run_effects(&myself, state, effects);
            }
            TransactionMessage::Input(input) => {
                let mut attempt = 0;
                let response = loop {
                    let command =
                        Command::Step { id: state.id, input: input.clone(), now_ms: shared.clock.now_ms() };
                    match shared.commit.commit(command).await {
                        Ok(response) => break response,
                        Err(CommitError::NotLeader) => {
                            state.deposed = true;
                            if let Some(timer) = state.timer.take() {
                                timer.abort();
                            }
                            state.reroute(input);
                            let actor = myself.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(DEPOSED_FOR).await;
                                actor.stop(Some("not leader".into()));
                            });
                            return Ok(());
                        }
                        Err(CommitError::Failed(error)) if attempt < shared.limits.commit_retry_count_max => {
                            attempt += 1;
                            tracing::warn!(transaction = %state.id, %error, attempt, "commit failed; retrying");
                            tokio::time::sleep(Duration::from_millis(shared.limits.commit_retry_delay_ms))
                                .await;
                        }
                        Err(CommitError::Failed(error)) => {
                            tracing::error!(transaction = %state.id, %error, "commit keeps failing; leaving the transaction to recovery");
                            myself.stop(Some("commit failed".into()));
                            return Ok(());
                        }
                    }
                };
                match response {
                    Response::Stepped(transition) => {
                        let phase = transition.state.phase();
                        match state.phase {
                            Some((before, since)) if before != phase => {
                                let flow = transition.state.kind().as_str();
                                metrics::histogram!("payhub_flow_phase_seconds", "flow" => flow, "phase" => before.as_str())
                                    .record(since.elapsed().as_secs_f64());
                                state.phase = Some((phase, std::time::Instant::now()));
                            }
                            Some(_) => {}
                            None => state.phase = Some((phase, std::time::Instant::now())),
                        }
                        let active = phase.is_active();
                        run_effects(&myself, state, transition.effects);
                        if !active {
                            myself.stop(None);
                        }
                    }
                    Response::UnknownTransaction { id } => {
                        tracing::warn!(transaction = %id, input = input.name(), "input for an unknown transaction ignored");
                        myself.stop(None);
                    }
                    other => {
                        tracing::error!(transaction = %state.id, response = ?other, "unexpected answer to a step");
                    }
                }
            }
        }
        Ok(())
    }
}

fn run_effects(myself: &ActorRef<TransactionMessage>, state: &mut ActorState, effects: Vec<Effect>) {
    let shared = state.transactions.shared.clone();
    for effect in effects {
        match effect {
            Effect::ArmTimer { at_ms, phase, attempt } => {
                let delay = Duration::from_millis(at_ms.saturating_sub(shared.clock.now_ms()));
                let actor = myself.clone();
                let timer = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // Stopped meanwhile: nothing waits for the timer.
                    let _ = actor.cast(TransactionMessage::Input(Input::Timeout { phase, attempt }));
                });
                if let Some(previous) = state.timer.replace(timer) {
                    previous.abort();
                }
            }
            other => {
                let runner = shared.runner.clone();
                let actor = myself.clone();
                let id = state.id;
                tokio::spawn(async move {
                    if let Some(input) = runner.run(id, other).await {
                        // The actor may have stopped (transaction finished,
                        // leadership lost); the input is then stale or will be
                        // re-obtained by recovery.
                        let _ = actor.cast(TransactionMessage::Input(input));
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Phase;

    /// A node that has just lost the lead of every shard.
    struct Deposed;

    #[async_trait::async_trait]
    impl Commit for Deposed {
        async fn commit(&self, _command: Command) -> Result<Response, CommitError> {
            Err(CommitError::NotLeader)
        }
    }

    struct Nothing;

    #[async_trait::async_trait]
    impl EffectRunner for Nothing {
        async fn run(&self, _id: TransactionId, _effect: Effect) -> Option<Input> {
            None
        }
    }

    #[derive(Default)]
    struct Rerouted(Mutex<Vec<(TransactionId, Input)>>);

    #[async_trait::async_trait]
    impl Reroute for Rerouted {
        async fn reroute(&self, id: TransactionId, input: Input) {
            self.0.lock().expect("lock").push((id, input));
        }
    }

    #[tokio::test]
    async fn inputs_reaching_a_deposed_leader_go_to_the_new_one_but_timers_do_not() {
        let transactions = Transactions::new(
            Arc::new(Deposed),
            Arc::new(Nothing),
            Arc::new(SystemClock),
            RuntimeLimits::default(),
        );
        let rerouted = Arc::new(Rerouted::default());
        transactions.set_reroute(rerouted.clone());
        let id = TransactionId::new_random();
        let found = Input::PartyFound { fsp_id: "greenbank".into() };
        let fulfilled = Input::TransferFulfilled { fulfilment: "f".into() };
        // The first input finds the node deposed; the ones after it reach the
        // deposed actor, which passes them on too, timers excepted.
        transactions.deliver(id, found.clone()).await;
        transactions.deliver(id, Input::Timeout { phase: Phase::Quoting, attempt: 0 }).await;
        transactions.deliver(id, fulfilled.clone()).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rerouted.0.lock().expect("lock").len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*rerouted.0.lock().expect("lock"), vec![(id, found), (id, fulfilled)]);
        // It stops once nothing should reach it any more.
        tokio::time::sleep(DEPOSED_FOR + Duration::from_millis(200)).await;
        assert!(!transactions.is_live(&id));
    }
}
