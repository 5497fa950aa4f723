//! Wires one node together: storage, the Raft groups, the transaction actors,
//! the connectors and recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;

use actors::command::{Command, Response, Topology};
use actors::flow::{self, FlowKind, P2pState, Request, State};
use actors::model::{Amount, Currency, NodeId, Party, PartyIdType, ShardId, TenantId, TransactionId};
pub use actors::runtime::CommitError;
use actors::runtime::{RuntimeLimits, SystemClock, Transactions};
use connectors::ams::{Ams, AmsClient};
use connectors::fees::FeeRule;
use connectors::fspiop::client::FspiopClient;
use connectors::fspiop::inbound::{Inbound, Verifiers};
use connectors::fspiop::participants::Participants;
use connectors::fspiop::parties::PartyLookups;
use connectors::fspiop::payee::{PayeeOptions, PayeeService};
use connectors::fspiop::transactions::TransactionQueries;
use connectors::ledger::Ledger;
use connectors::switch::{Switch, SwitchLimits, SWITCH_FSP_ID};
use connectors::tenants::Tenants;
use raft::{Bootstrap, GrpcTransport, Peers, Placement, RaftConfig, RaftNode, ShardedCommit};
use storage::{Space, Store};

use crate::config::Config;
use crate::effects::{Callbacks, Finished, OwnerOf, Runner};
use crate::forward::{Answer, ForwardError, Forwarded, Forwarder, ForwardingService};
use crate::requests::Requests;

/// Everything a running node holds.
#[derive(Debug)]
pub struct Engine {
    pub config: Config,
    pub store: Store,
    pub raft: Arc<RaftNode>,
    pub transactions: Transactions,
    pub tenants: Arc<Tenants>,
    /// The built-in ledger, when it is this node's AMS (`ams_url` empty);
    /// otherwise the flows reach an external AMS.
    pub ledger: Option<Ledger>,
    pub inbound: Arc<Inbound>,
    pub switch: Option<Switch>,
    pub callbacks: Arc<Callbacks>,
    pub forwarder: Forwarder,
    /// Channel reads waiting for their transaction to finish.
    pub finished: Arc<Finished>,
    /// Whether this start initialised the groups (the cluster's first start).
    bootstrapped: bool,
    /// Requests to pay waiting for a payer in the shards this node leads,
    /// counted every second (see [`Engine::spawn_raft_gauges`]).
    awaiting: AtomicUsize,
}

/// The longest a channel read waits for its transaction to finish; below
/// the forwarding time limit, so a forwarded wait is answered in time.
pub const READ_WAIT_MAX: Duration = Duration::from_secs(5);

/// How creating a transaction ended.
#[derive(Debug)]
pub enum Created {
    New(TransactionId),
    /// The same request came before (same tenant and correlation id).
    Existing(TransactionId),
    /// The correlation id was used before for a different request.
    Conflict,
    /// The shard's leader drives as many payments as it may
    /// (`flow.in_flight_max`); retry shortly.
    Busy,
}

impl Engine {
    /// How often a leader archives what finished long enough ago.
    const ARCHIVE_INTERVAL: Duration = Duration::from_secs(1);
    /// Transactions archived by one log entry: one entry's apply reads and
    /// rewrites a few keys of each, on every replica, and other entries of
    /// the shard wait for it.
    const ARCHIVE_BATCH: u32 = 100;
    /// Archive entries proposed per round at most (2,000 transactions a
    /// second, far above any payment rate per shard).
    const ARCHIVE_ROUNDS: u32 = 20;
    /// How long past its deadline a driven transaction may go unstepped.
    const STUCK_AFTER_MS: u64 = 10_000;
    /// How long an unfinished transaction nobody drives must have gone
    /// unchanged before a leader's sweep resumes it (`flow.orphan_sweep_ms`).
    const ORPHAN_QUIET_MS: u64 = 2_000;
    /// How often a node compares its groups with the recorded topology.
    const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

    pub async fn start(config: Config) -> anyhow::Result<Arc<Engine>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let store = Store::open_with(
            &config.data_dir.join("db"),
            storage::StoreOptions { memory_mib: config.storage.memory_mib },
        )
        .context("cannot open storage")?;

        let raft_config = RaftConfig {
            node: NodeId(config.node_id),
            shard_count: config.shard_count,
            heartbeat_interval_ms: config.raft.heartbeat_interval_ms,
            election_timeout_min_ms: config.raft.election_timeout_min_ms,
            election_timeout_max_ms: config.raft.election_timeout_max_ms,
            append_entries_max: config.raft.append_entries_max,
            snapshot_log_entries_max: config.raft.snapshot_log_entries_max,
            leader_rebalance_after_ms: config.raft.leader_rebalance_after_ms,
        };
        let configured = config.placement().context("cannot place the shards")?;
        let peers = Peers::default();
        let transport = GrpcTransport::new(peers.clone());
        let forwarding = ForwardingService::default();
        if config.is_cluster() {
            serve_grpc(config.grpc_listen, &transport, &forwarding).await?;
        }
        let forwarder = Forwarder::new(NodeId(config.node_id), peers, configured.clone());
        // Which groups to start: those of the topology this node followed last
        // (a restart); else those of the running cluster it joins, with itself
        // added; else, on a cluster's first start, those its configuration
        // places here.
        let (placement, bootstrap) = match store.local_topology()? {
            Some(topology) => {
                check_shape(&topology, &configured.topology())?;
                (Placement::from_topology(&topology)?, Bootstrap::Wait)
            }
            None if config.cluster.join => (join(&configured, &forwarder).await?, Bootstrap::Wait),
            None => (configured, Bootstrap::Initialise),
        };
        forwarder.follow(placement.clone());
        let raft =
            Arc::new(RaftNode::start(raft_config, placement.clone(), &store, &transport, bootstrap).await?);
        store.set_local_topology(&placement.topology())?;
        raft.set_hold_peers({
            let forwarder = forwarder.clone();
            Box::new(move |shard, followers, hold| {
                let forwarder = forwarder.clone();
                Box::pin(async move {
                    let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
                    let request = Forwarded::HoldElections { shard, hold_ms };
                    let asked = followers.iter().map(|follower| forwarder.send(*follower, &request, 0));
                    for (follower, answer) in followers.iter().zip(futures::future::join_all(asked).await) {
                        if let Err(error) = answer {
                            tracing::warn!(%shard, %follower, %error, "follower not asked to hold its election");
                        }
                    }
                })
            })
        });
        if !config.is_cluster() {
            raft.wait_for_leaders(Duration::from_secs(10)).await?;
        }

        let tenants = Arc::new(config.tenants());
        let clients = crate::tls::Clients::new(&config.fspiop.tls)?;
        let signers = Arc::new(config.fspiop.jws.signers()?);
        let switch_client = FspiopClient::with_http(clients.default_client(), &config.switch_url())
            .with_identities(clients.by_sender())
            .with_signers(signers);
        // In a cluster the AMS must be external: another node taking over a
        // transaction would otherwise book its effects on another ledger.
        let (ledger, ams): (Option<Ledger>, Arc<dyn Ams>) = if config.ams_url.is_empty() {
            let ledger = Ledger::new(store.kv(Space::Ledger));
            (Some(ledger.clone()), Arc::new(ledger))
        } else {
            let client = AmsClient::new(&config.ams_url, config.flow.ams_timeout_ms).context("ams_url")?;
            (None, Arc::new(client))
        };
        let lookups = PartyLookups::new(switch_client.clone(), config.flow.lookup_timeout_ms);
        let finished = Arc::new(Finished::default());
        let runner = Runner {
            tenants: tenants.clone(),
            ams: ams.clone(),
            switch: switch_client.clone(),
            lookups: lookups.clone(),
            finished: finished.clone(),
        };
        let transactions = Transactions::new(
            Arc::new(ShardedCommit::new(raft.clone())),
            Arc::new(runner),
            Arc::new(SystemClock),
            RuntimeLimits::default(),
        );
        let owner_of: OwnerOf = {
            let (store, raft) = (store.clone(), raft.clone());
            Arc::new(move |id: &TransactionId| match store.transaction(raft.shard_of(id), *id) {
                Ok(state) => state.map(|s| s.tenant().clone()),
                Err(error) => {
                    tracing::error!(transaction = %id, %error, "cannot read a transaction");
                    None
                }
            })
        };
        let callbacks = Arc::new(Callbacks {
            lookups,
            transactions: transactions.clone(),
            owner_of,
            router: OnceLock::new(),
        });
        transactions.set_reroute(callbacks.clone());
        let requests = Arc::new(Requests::new(ams.clone(), switch_client.clone()));
        let inbound = Arc::new(Inbound {
            tenants: tenants.clone(),
            payee: PayeeService::new(
                ams.clone(),
                switch_client.clone(),
                store.kv(Space::Payee),
                PayeeOptions {
                    quote_expiry_ms: config.flow.quote_expiry_ms,
                    ilp_version: config.fspiop.ilp_version,
                    reserve_notification: config.fspiop.reserve_notification,
                },
                callbacks.clone(),
            )?,
            payer: callbacks.clone(),
            requests: requests.clone(),
            participants: Participants::new(switch_client.clone(), config.flow.lookup_timeout_ms),
            transactions: TransactionQueries::new(switch_client.clone(), config.flow.query_timeout_ms),
            verifiers: config.fspiop.jws.verifiers()?.map(|keys| Arc::new(Verifiers::new(keys))),
        });
        let switch = if config.switch_simulator {
            let endpoints: BTreeMap<String, Vec<String>> =
                config.tenants.iter().map(|t| (t.fsp_id.clone(), config.tenant_endpoints(t))).collect();
            let signer = config.fspiop.jws.signers()?.remove(SWITCH_FSP_ID);
            let http = clients.of(SWITCH_FSP_ID);
            Some(Switch::new(
                store.kv(Space::Switch),
                http,
                endpoints,
                signer,
                SwitchLimits { spread: config.simulator_spread, ..SwitchLimits::default() },
            )?)
        } else {
            None
        };
        let engine = Arc::new(Engine {
            config,
            store,
            raft,
            transactions,
            tenants,
            ledger,
            inbound,
            switch,
            callbacks,
            forwarder,
            finished,
            bootstrapped: bootstrap == Bootstrap::Initialise,
            awaiting: AtomicUsize::new(0),
        });
        engine.callbacks.attach(&engine);
        requests.attach(&engine);
        forwarding.attach(&engine);
        engine.seed().await?;
        Ok(engine)
    }

    /// Seeds the demo parties if configured (see [`seed_demo_parties`]).
    async fn seed(&self) -> anyhow::Result<()> {
        if !self.config.seed_demo_parties {
            return Ok(());
        }
        seed_demo_parties(&self.config, self.ledger.as_ref(), self.switch.as_ref()).await
    }

    /// Starts the background work: the switch simulator's sweeper, and
    /// recovery of unfinished transactions on every shard this node leads,
    /// now and whenever it becomes leader again.
    pub fn spawn_background(self: &Arc<Self>) {
        if let Some(switch) = &self.switch {
            switch.spawn_sweeper();
        }
        self.inbound.payee.spawn_sweeper(self.tenants.clone());
        // The metadata group records this node and its zone (placement),
        // once a leader of it is in reach.
        let engine = self.clone();
        tokio::spawn(async move {
            let registration = Command::RegisterNode {
                node: NodeId(engine.config.node_id),
                address: engine.config.listen.to_string(),
                zone: engine.config.zone.clone(),
            };
            let started_from = engine.raft.placement().topology();
            let topology = Command::RecordTopology { topology: started_from.clone() };
            for command in [registration, topology] {
                let answer = loop {
                    match engine.commit(ShardId::METADATA, command.clone(), 0).await {
                        Ok(answer) => break answer,
                        Err(error) => tracing::debug!(%error, "registration waits for the metadata group"),
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                };
                if let Response::TopologyMismatch { recorded } = answer {
                    // A node that initialised its groups may only have been
                    // slow: the cluster changed (a node joined) before it
                    // registered; it follows. Otherwise it initialised
                    // them with other replicas than the cluster has, and
                    // must not take part.
                    if engine.bootstrapped && !recorded.extends(&started_from) {
                        tracing::error!(
                            ?recorded,
                            "cluster.members / replication_factor / shard_count differ from the topology this \
                             cluster was started with. To add this node to a running cluster, start it with \
                             an empty data directory and --join. Stopping."
                        );
                        std::process::exit(78);
                    }
                    // A restart after the cluster changed: the reconciler
                    // follows the recorded topology.
                }
            }
        });
        if self.config.is_cluster() {
            self.spawn_reconciler();
        }
        self.spawn_raft_gauges();
        for shard in self.raft.transaction_shards() {
            self.watch_leadership(shard);
        }
    }

    /// Follows the recorded topology: every second, adopts it when it changed
    /// (starting the groups it places here), and reconciles the groups with
    /// it (moving replicas of the groups this node leads, stopping those it
    /// no longer holds).
    fn spawn_reconciler(self: &Arc<Self>) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Self::RECONCILE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else { break };
                if let Err(error) = engine.reconcile().await {
                    tracing::warn!(%error, "cannot follow the recorded topology now");
                }
            }
        });
    }

    /// One round of following the recorded topology.
    async fn reconcile(self: &Arc<Self>) -> anyhow::Result<()> {
        // A replica of the metadata group that follows a leader reads its
        // own copy (a newer one arrives with its log). Any other node asks
        // the group's leader, and so does a replica that knows no leader: it
        // may have been removed from the group while it was cut off, and
        // then nobody sends it the topology that removed it.
        let recorded = if self.raft.leader_of(ShardId::METADATA).is_some() {
            self.store.topology(ShardId::METADATA)?
        } else {
            let ask = if self.raft.hosts(ShardId::METADATA) {
                self.forwarder.send_first(&self.others(), &Forwarded::Topology, 0).await
            } else {
                self.handle(Forwarded::Topology, 0).await
            };
            match ask {
                Ok(Answer::Topology(recorded)) => recorded,
                Ok(other) => anyhow::bail!("unexpected answer to a topology read: {other:?}"),
                Err(error) => anyhow::bail!("the metadata group is not in reach: {error}"),
            }
        };
        let current = self.raft.placement().topology();
        if let Some(recorded) = recorded.filter(|recorded| recorded.version > current.version) {
            check_shape(&recorded, &current)?;
            let placement = Placement::from_topology(&recorded)?;
            if placement.member(self.raft.node()).is_none() {
                anyhow::bail!("this node is not a member of the recorded topology");
            }
            tracing::info!(members = recorded.members.len(), "following a changed topology");
            self.store.set_local_topology(&recorded)?;
            self.forwarder.follow(placement.clone());
            for shard in self.raft.adopt(placement).await? {
                if shard != ShardId::METADATA {
                    self.watch_leadership(shard);
                }
            }
        }
        self.raft.reconcile().await;
        // A replica removed while it lagged or was down never hears of it
        // from Raft: the group's leader says. It is asked through the placed
        // replicas, which this one no longer is: this replica may know no
        // leader, or one that has moved on.
        let me = self.raft.node().0;
        let placement = self.raft.placement();
        for shard in self.raft.leaving() {
            let placed = placement.replicas(shard).to_vec();
            if let Ok(Answer::Members { voters, learners }) =
                self.forwarder.send_first(&placed, &Forwarded::Members { shard }, 0).await
            {
                if !voters.contains(&me) && !learners.contains(&me) {
                    self.raft.stop_group(shard).await;
                }
            }
        }
        Ok(())
    }

    /// Recovers `shard`'s unfinished transactions whenever this node becomes
    /// its leader, and sweeps for orphans while it leads. Ends when the group
    /// stops.
    fn watch_leadership(self: &Arc<Self>, shard: ShardId) {
        let Some(mut leadership) = self.raft.leadership(shard) else { return };
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                let leading = *leadership.borrow_and_update();
                metrics::counter!("payhub_raft_leadership_changes_total", "shard" => shard.0.to_string(), "to" => if leading { "leader" } else { "follower" })
                    .increment(1);
                if leading {
                    // While leading, look for unfinished transactions
                    // nobody drives now and then: one whose actor gave up
                    // on a commit during an election is picked up again.
                    // Finished ones are archived every second, a few at a
                    // time: each archived record is read on every replica,
                    // from disk once it has left the cache.
                    let mut recover =
                        tokio::time::interval(Duration::from_millis(engine.config.flow.orphan_sweep_ms));
                    let mut archive = tokio::time::interval(Self::ARCHIVE_INTERVAL);
                    for ticker in [&mut recover, &mut archive] {
                        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                    let mut taken_over = true;
                    loop {
                        tokio::select! {
                            changed = leadership.changed() => match changed {
                                Ok(()) => break,
                                Err(_) => return,
                            },
                            _ = recover.tick() => {
                                match engine.recover(shard, taken_over).await {
                                    Ok(()) => taken_over = false,
                                    Err(error) => tracing::error!(%shard, %error, "recovery failed"),
                                }
                            }
                            _ = archive.tick() => {
                                if let Err(error) = engine.archive(shard).await {
                                    tracing::warn!(%shard, %error, "cannot archive finished transactions now");
                                }
                            }
                        }
                    }
                } else if leadership.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Archives the transactions of `shard` (which this node leads) that
    /// finished more than `flow.archive_after_ms` ago, [`Self::ARCHIVE_BATCH`]
    /// per log entry, at most [`Self::ARCHIVE_ROUNDS`] entries a call (a
    /// backlog is worked off over several calls).
    async fn archive(&self, shard: ShardId) -> Result<(), CommitError> {
        let after_ms = self.config.flow.archive_after_ms;
        if after_ms == 0 {
            return Ok(());
        }
        let before_ms = self.transactions.clock().now_ms().saturating_sub(after_ms);
        for _ in 0..Self::ARCHIVE_ROUNDS {
            // This leader's own copy says whether anything is due: no entry
            // is proposed for nothing.
            let oldest = self.store.oldest_finished(shard).map_err(|e| CommitError::Failed(e.to_string()))?;
            if oldest.is_none_or(|at_ms| at_ms >= before_ms) {
                break;
            }
            let command = Command::Archive { finished_before_ms: before_ms, limit: Self::ARCHIVE_BATCH };
            match self.raft.commit_to(shard, command).await? {
                Response::ArchivedCount(count) => {
                    metrics::counter!("payhub_transactions_archived_total").increment(u64::from(count));
                }
                other => {
                    return Err(CommitError::Failed(format!("unexpected answer to an archive: {other:?}")))
                }
            }
        }
        Ok(())
    }

    /// Publishes what each local replica knows as gauges, every second, and
    /// counts the requests to pay waiting on a payer, either way, in the
    /// shards this node leads (admission counts them apart from the
    /// payments in flight).
    fn spawn_raft_gauges(self: &Arc<Self>) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else { break };
                match engine.open_here(|t| t.waits_for_a_person().then_some(())) {
                    Ok((_, waiting)) => {
                        engine.awaiting.store(waiting.len(), Ordering::Relaxed);
                        metrics::gauge!("payhub_requests_to_pay_awaiting").set(waiting.len() as f64);
                    }
                    Err(error) => tracing::warn!(%error, "cannot count the requests to pay"),
                }
                for group in engine.raft.status() {
                    let shard = group.shard.0.to_string();
                    let leading = if group.role == "leader" { 1.0 } else { 0.0 };
                    metrics::gauge!("payhub_raft_is_leader", "shard" => shard.clone()).set(leading);
                    metrics::gauge!("payhub_raft_term", "shard" => shard.clone()).set(group.term as f64);
                    metrics::gauge!("payhub_raft_last_log_index", "shard" => shard.clone())
                        .set(group.last_log_index as f64);
                    metrics::gauge!("payhub_raft_last_applied", "shard" => shard.clone())
                        .set(group.last_applied as f64);
                    metrics::gauge!("payhub_raft_apply_lag", "shard" => shard.clone())
                        .set(group.last_log_index.saturating_sub(group.last_applied) as f64);
                    for (follower, lag) in &group.replication_lag {
                        metrics::gauge!("payhub_raft_replication_lag", "shard" => shard.clone(), "follower" => follower.to_string())
                            .set(*lag as f64);
                    }
                }
                metrics::gauge!("payhub_live_transactions").set(engine.transactions.live_count() as f64);
                metrics::gauge!("payhub_channel_reads_waiting").set(engine.finished.waited_for() as f64);
                let (stopped, delayed_rate) = engine.store.write_stall();
                metrics::gauge!("payhub_rocksdb_write_stopped").set(if stopped { 1.0 } else { 0.0 });
                metrics::gauge!("payhub_rocksdb_delayed_write_rate_bytes").set(delayed_rate as f64);
                for (name, value) in engine.store.compaction() {
                    metrics::gauge!(format!("payhub_rocksdb_{name}")).set(value as f64);
                }
                for (kind, bytes) in engine.store.memory() {
                    metrics::gauge!("payhub_rocksdb_memory_bytes", "kind" => kind).set(bytes as f64);
                }
            }
        });
    }

    /// Re-spawns actors for the unfinished transactions of `shard` that
    /// nobody drives: all of them when this node has just `taken_over` the
    /// shard, else those unchanged for [`Self::ORPHAN_QUIET_MS`] (the actor of one
    /// created just now may not be registered yet).
    async fn recover(&self, shard: ShardId, taken_over: bool) -> anyhow::Result<()> {
        // A new leader has every committed entry in its log but may not have
        // applied them all yet: scan only once it has.
        self.raft.wait_applied(shard, Duration::from_secs(10)).await?;
        let open = self.store.open_transactions(shard)?;
        let now_ms = self.transactions.clock().now_ms();
        let (mut orphans, mut stuck) = (Vec::new(), Vec::new());
        for state in open {
            let id = state.id();
            if self.transactions.is_live(&id) {
                // A live actor whose transaction is long past its deadline has
                // stopped making progress (its timer would have stepped it):
                // replace it.
                if state.deadline_ms().is_some_and(|d| now_ms > d + Self::STUCK_AFTER_MS) {
                    tracing::warn!(transaction = %id, phase = state.phase().as_str(), "actor made no progress past its deadline; restarting it");
                    self.transactions.stop(&id);
                    stuck.push(state);
                }
                continue;
            }
            orphans.extend(self.orphan(shard, id, taken_over)?);
        }
        for (reason, states) in
            [(if taken_over { "taken_over" } else { "orphaned" }, &orphans), ("stuck", &stuck)]
        {
            if !states.is_empty() {
                tracing::info!(%shard, count = states.len(), reason, "resuming unfinished transactions");
                metrics::counter!("payhub_transactions_resumed_total", "reason" => reason)
                    .increment(states.len() as u64);
            }
        }
        for state in orphans.into_iter().chain(stuck) {
            self.transactions.drive(state.id(), flow::resume(&state)).await;
        }
        Ok(())
    }

    /// The record of transaction `id` of `shard` if it is unfinished and
    /// nobody drives it, so that it must be resumed: at once when this node
    /// has just `taken_over` the shard, else once it has been unchanged for
    /// [`Self::ORPHAN_QUIET_MS`] (the actor of one created just now may not be
    /// registered yet). The record is read after the check for an actor: an
    /// actor stops only once its transaction's last step is applied, so one
    /// that finished meanwhile is seen finished.
    fn orphan(&self, shard: ShardId, id: TransactionId, taken_over: bool) -> storage::Result<Option<State>> {
        if self.transactions.is_live(&id) {
            return Ok(None);
        }
        let now_ms = self.transactions.clock().now_ms();
        Ok(self.store.transaction(shard, id)?.filter(|state| {
            state.phase().is_active()
                && (taken_over || now_ms >= state.updated_at_ms().saturating_add(Self::ORPHAN_QUIET_MS))
        }))
    }

    /// The open transactions `wanted` picks in the shards this node leads,
    /// and those shards.
    fn open_here<T>(&self, wanted: impl Fn(State) -> Option<T>) -> storage::Result<(Vec<ShardId>, Vec<T>)> {
        let led: Vec<ShardId> =
            self.raft.transaction_shards().into_iter().filter(|shard| self.raft.is_leader(*shard)).collect();
        let mut found = Vec::new();
        for shard in &led {
            found.extend(self.store.open_transactions(*shard)?.into_iter().filter_map(&wanted));
        }
        Ok((led, found))
    }

    /// `tenant`'s waiting requests to pay of flow `kind` in the shards this
    /// node leads, and those shards: for P2P the requests to be paid that
    /// wait for its payers (to decide, or to enter a password at the
    /// payee's device; an OTP request is quoted first), for requests to pay
    /// the ones its customers sent that are not over.
    fn waiting_here(&self, tenant: &TenantId, kind: FlowKind) -> storage::Result<(Vec<ShardId>, Vec<State>)> {
        self.open_here(|t| {
            let wanted = t.tenant() == tenant
                && t.kind() == kind
                && match &t {
                    State::P2p(p) => p.awaits_payer(),
                    State::RequestToPay(r) => r.phase.is_active(),
                };
            wanted.then_some(t)
        })
    }

    /// The requests to be paid waiting for `tenant`'s payers, across the
    /// cluster (see [`Engine::waiting`]).
    pub async fn awaiting_approval(&self, tenant: &TenantId) -> Result<Vec<P2pState>, ForwardError> {
        let waiting = self.waiting(tenant, FlowKind::P2p).await?;
        Ok(waiting.iter().filter_map(State::as_p2p).cloned().collect())
    }

    /// `tenant`'s waiting requests to pay of flow `kind` (see
    /// [`Engine::waiting_here`]), oldest first, across the cluster: each
    /// node answers for the shards it leads (a node down is skipped, its
    /// shards having failed over). Fails when some shard's leader did not
    /// answer: its requests would be missing.
    pub async fn waiting(&self, tenant: &TenantId, kind: FlowKind) -> Result<Vec<State>, ForwardError> {
        let (mut answered, mut found) =
            self.waiting_here(tenant, kind).map_err(|e| ForwardError::Failed(e.to_string()))?;
        let request = Forwarded::Waiting { tenant: tenant.clone(), kind };
        for member in self.others() {
            match self.forwarder.send(member, &request, 0).await {
                Ok(Answer::Waiting { shards, transactions }) => {
                    answered.extend(shards);
                    found.extend(transactions);
                }
                Ok(other) => {
                    tracing::warn!(%member, ?other, "unexpected answer to a list of requests to pay")
                }
                Err(error) => tracing::debug!(%member, %error, "a member did not list its requests to pay"),
            }
        }
        let missing: Vec<String> = self
            .raft
            .transaction_shards()
            .into_iter()
            .filter(|shard| !answered.contains(shard))
            .map(|shard| shard.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ForwardError::Unavailable(format!(
                "no leader of {} answered; retry shortly",
                missing.join(", ")
            )));
        }
        found.sort_by_key(|t| (t.created_at_ms(), t.id()));
        found.dedup_by_key(|t| t.id());
        Ok(found)
    }

    /// Every member of the followed topology but this node.
    pub(crate) fn others(&self) -> Vec<NodeId> {
        let me = self.raft.node();
        self.raft.placement().members.iter().map(|member| member.id).filter(|id| *id != me).collect()
    }

    /// The node to hand a request for `shard` to, or None to handle it here.
    fn route(&self, shard: ShardId) -> Option<Vec<NodeId>> {
        if self.raft.is_leader(shard) {
            return None;
        }
        let leader = self.raft.leader_of(shard);
        Some(self.forwarder.targets(shard, leader, self.raft.hosts(shard)))
    }

    /// Runs a request here or on the leader of its shard.
    pub async fn handle(&self, request: Forwarded, hops: u32) -> Result<Answer, ForwardError> {
        let shard = match &request {
            Forwarded::Create { id, .. } | Forwarded::Read { id, .. } | Forwarded::Deliver { id, .. } => {
                Some(self.raft.shard_of(id))
            }
            Forwarded::Commit { shard, .. } => Some(*shard),
            Forwarded::Topology => Some(ShardId::METADATA),
            Forwarded::Members { shard } => Some(*shard),
            Forwarded::Party { .. }
            | Forwarded::HoldElections { .. }
            | Forwarded::Waiting { .. }
            | Forwarded::RequestOf { .. }
            | Forwarded::TransferSettled { .. } => None,
        };
        if let Some(targets) = shard.and_then(|shard| self.route(shard)) {
            return self.forwarder.send_first(&targets, &request, hops).await;
        }
        match request {
            Forwarded::Create { id, request } => match self.create_here(id, request).await {
                Ok(Created::New(id)) => Ok(Answer::Created { id, new: true }),
                Ok(Created::Existing(id)) => Ok(Answer::Created { id, new: false }),
                Ok(Created::Conflict) => Ok(Answer::Conflict),
                Ok(Created::Busy) => Ok(Answer::Busy),
                Err(CommitError::NotLeader) => {
                    Err(ForwardError::Unavailable("leadership moved; retry".into()))
                }
                Err(CommitError::Failed(error)) => Err(ForwardError::Failed(error)),
            },
            Forwarded::Read { id, wait_ms } => {
                // Subscribed before the first read, so an end that comes
                // between the read and the wait is not missed.
                let finished = (wait_ms > 0).then(|| self.finished.subscribe(id));
                let (mut state, mut history) = self.read_here(&id).await?;
                let active = state.as_ref().is_some_and(|state| state.phase().is_active());
                if let Some(mut finished) = finished.filter(|_| active) {
                    finished.wait(Duration::from_millis(wait_ms).min(READ_WAIT_MAX)).await;
                    (state, history) = self.read_here(&id).await?;
                }
                Ok(Answer::Read { state, history })
            }
            Forwarded::Deliver { tenant, id, input } => {
                self.callbacks.deliver_here(&tenant, id, input).await;
                Ok(Answer::Done)
            }
            Forwarded::Commit { shard, command } => match self.raft.commit_to(shard, command).await {
                Ok(response) => Ok(Answer::Committed(response)),
                Err(CommitError::NotLeader) => {
                    Err(ForwardError::Unavailable("leadership moved; retry".into()))
                }
                Err(CommitError::Failed(error)) => Err(ForwardError::Failed(error)),
            },
            Forwarded::Party { tenant, party, result } => {
                self.callbacks.party_here(&tenant, &party, result);
                Ok(Answer::Done)
            }
            Forwarded::Topology => {
                self.raft
                    .wait_applied(ShardId::METADATA, Duration::from_secs(2))
                    .await
                    .map_err(|error| ForwardError::Unavailable(error.to_string()))?;
                let recorded = self
                    .store
                    .topology(ShardId::METADATA)
                    .map_err(|e| ForwardError::Failed(e.to_string()))?;
                Ok(Answer::Topology(recorded))
            }
            Forwarded::HoldElections { shard, hold_ms } => {
                self.raft.hold_elections(shard, Duration::from_millis(hold_ms));
                Ok(Answer::Done)
            }
            Forwarded::Waiting { tenant, kind } => self
                .waiting_here(&tenant, kind)
                .map(|(shards, transactions)| Answer::Waiting { shards, transactions })
                .map_err(|e| ForwardError::Failed(e.to_string())),
            Forwarded::RequestOf { tenant, transaction_id } => {
                Ok(Answer::RequestOf(self.inbound.payee.request_of(&tenant, &transaction_id)))
            }
            Forwarded::TransferSettled { tenant, transfer_id, word } => {
                if let Some(tenant) = self.tenants.get(&tenant) {
                    if self.inbound.payee.is_pending(tenant, transfer_id) {
                        self.inbound.payee.settle(tenant, transfer_id, Ok(word)).await;
                    }
                }
                Ok(Answer::Done)
            }
            Forwarded::Members { shard } => match self.raft.members(shard) {
                Some((voters, learners)) => Ok(Answer::Members { voters, learners }),
                None => Err(ForwardError::Unavailable("leadership moved; retry".into())),
            },
        }
    }

    /// Commits `command` through `shard`'s leader, wherever it is.
    pub async fn commit(
        &self,
        shard: ShardId,
        command: Command,
        hops: u32,
    ) -> Result<Response, ForwardError> {
        match self.handle(Forwarded::Commit { shard, command }, hops).await? {
            Answer::Committed(response) => Ok(response),
            other => Err(ForwardError::Failed(format!("unexpected answer to a commit: {other:?}"))),
        }
    }

    /// Creates a transaction through its shard's leader, which starts
    /// driving it.
    pub async fn create(&self, id: TransactionId, request: Request) -> Result<Created, CommitError> {
        match self.handle(Forwarded::Create { id, request }, 0).await {
            Ok(Answer::Created { id, new: true }) => Ok(Created::New(id)),
            Ok(Answer::Created { id, new: false }) => Ok(Created::Existing(id)),
            Ok(Answer::Conflict) => Ok(Created::Conflict),
            Ok(Answer::Busy) => Ok(Created::Busy),
            Ok(other) => Err(CommitError::Failed(format!("unexpected answer to a create: {other:?}"))),
            Err(ForwardError::Unavailable(_)) => Err(CommitError::NotLeader),
            Err(ForwardError::Failed(error)) => Err(CommitError::Failed(error)),
        }
    }

    /// Creates a transaction through Raft on this node, the shard's
    /// leader, and starts driving it.
    async fn create_here(&self, id: TransactionId, request: Request) -> Result<Created, CommitError> {
        let shard = self.raft.shard_of(&id);
        // Admission: a new payment only while this node drives fewer than
        // its limit, a new request to pay (either way) only while fewer
        // than theirs wait (a repeated request for an existing one always
        // goes on). Waiting requests are live transactions too, counted
        // apart.
        let awaiting = self.awaiting.load(Ordering::Relaxed);
        let full = if request.is_request_to_pay() {
            awaiting >= self.config.flow.requests_awaiting_max
        } else {
            self.transactions.live_count().saturating_sub(awaiting) >= self.config.flow.in_flight_max
        };
        if full
            && self.store.transaction(shard, id).map_err(|e| CommitError::Failed(e.to_string()))?.is_none()
        {
            metrics::counter!("payhub_payments_refused_busy_total").increment(1);
            return Ok(Created::Busy);
        }
        let command = Command::Create {
            id,
            request,
            limits: self.config.flow_limits(),
            now_ms: self.transactions.clock().now_ms(),
        };
        match self.raft.commit_to(shard, command).await? {
            Response::Created(transition) => {
                let (flow, tenant) =
                    (transition.state.kind().as_str(), transition.state.tenant().to_string());
                metrics::counter!("payhub_payments_started_total", "flow" => flow, "tenant" => tenant)
                    .increment(1);
                self.transactions.drive(id, transition.effects).await;
                Ok(Created::New(id))
            }
            // A repeated request for a transaction nobody drives (its first
            // request's client went away between commit and start) starts it;
            // one for a payment no longer active (the usual retry) reads nothing.
            Response::AlreadyExists(state) if state.phase().is_active() => {
                let orphan = self.orphan(shard, id, false).map_err(|e| CommitError::Failed(e.to_string()))?;
                if let Some(state) = orphan {
                    self.transactions.drive(id, flow::resume(&state)).await;
                }
                Ok(Created::Existing(id))
            }
            // The same request as a finished or archived payment's.
            Response::AlreadyExists(_) | Response::Archived { .. } => Ok(Created::Existing(id)),
            Response::Conflict { .. } => Ok(Created::Conflict),
            other => Err(CommitError::Failed(format!("unexpected answer to a create: {other:?}"))),
        }
    }

    /// A transaction and its history, from its shard's leader. With a
    /// `wait` the leader answers once the transaction is final or the wait
    /// (at most [`READ_WAIT_MAX`]) is over, whichever comes first.
    pub async fn read(
        &self,
        id: &TransactionId,
        wait: Duration,
    ) -> Result<(Option<State>, Vec<storage::HistoryEvent>), ForwardError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        match self.handle(Forwarded::Read { id: *id, wait_ms }, 0).await? {
            Answer::Read { state, history } => Ok((state, history)),
            other => Err(ForwardError::Failed(format!("unexpected answer to a read: {other:?}"))),
        }
    }

    /// Waits (at most 2 s) until this replica of `id`'s shard has applied
    /// every entry its log holds.
    pub(crate) async fn applied_for(&self, id: &TransactionId) {
        let shard = self.raft.shard_of(id);
        if let Err(error) = self.raft.wait_applied(shard, Duration::from_secs(2)).await {
            tracing::debug!(transaction = %id, %error, "the shard's log is not applied yet");
        }
    }

    /// Waits (at most `within`) until this node no longer says it leads
    /// `id`'s shard: a commit refused as not the leader's while the node
    /// still shows as leader is a hand-over or an election under way.
    pub(crate) async fn until_not_leading(&self, id: &TransactionId, within: Duration) {
        let shard = self.raft.shard_of(id);
        let deadline = tokio::time::Instant::now() + within;
        while self.raft.is_leader(shard) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Reads a transaction on its shard's leader (this node). The leader
    /// first applies what its log holds, so an acknowledged create or step
    /// is visible (a new leader may not have applied its predecessor's last
    /// entries yet). Cheaper than a linearizable read (no quorum round per
    /// poll); a deposed leader that does not know it yet can still answer
    /// stale.
    async fn read_here(
        &self,
        id: &TransactionId,
    ) -> Result<(Option<State>, Vec<storage::HistoryEvent>), ForwardError> {
        let shard = self.raft.shard_of(id);
        self.raft
            .wait_applied(shard, Duration::from_secs(2))
            .await
            .map_err(|error| ForwardError::Unavailable(error.to_string()))?;
        let state = self.store.transaction(shard, *id).map_err(|e| ForwardError::Failed(e.to_string()))?;
        let history = self.store.history(shard, *id).map_err(|e| ForwardError::Failed(e.to_string()))?;
        Ok((state, history))
    }

    pub async fn shutdown(&self) {
        self.transactions.stop_all();
        self.raft.shutdown().await;
    }
}

/// Refuses a topology of another shape than this node's configuration: the
/// shard count fixes which shard owns a transaction, and neither it nor the
/// replication factor can change in a running cluster.
fn check_shape(recorded: &Topology, configured: &Topology) -> anyhow::Result<()> {
    if !recorded.same_shape(configured) {
        anyhow::bail!(
            "this node's data was written with {} shards and replication factor {}, but its configuration \
             says {} shards and replication factor {}; they cannot change",
            recorded.shard_count,
            recorded.replication_factor,
            configured.shard_count,
            configured.replication_factor
        );
    }
    Ok(())
}

/// Joins a running cluster: reads the topology its metadata group records
/// from any configured member, adds this node with its share of replicas
/// ([`Placement::with_member`]), and records that (compare-and-set; a lost
/// race reads again). A node the recorded topology already names (one that
/// lost its data) takes its recorded place. Returns the placement to start
/// by; the groups' leaders then fill this node's replicas.
async fn join(configured: &Placement, forwarder: &Forwarder) -> anyhow::Result<Placement> {
    const PATIENCE: Duration = Duration::from_secs(120);
    let me = forwarder.node();
    let member = configured.member(me).cloned().context("this node is not in cluster.members")?;
    let seeds: Vec<NodeId> = configured.members.iter().map(|m| m.id).filter(|id| *id != me).collect();
    let started = std::time::Instant::now();
    loop {
        match forwarder.send_first(&seeds, &Forwarded::Topology, 0).await {
            Ok(Answer::Topology(Some(recorded))) => {
                check_shape(&recorded, &configured.topology())?;
                let current = Placement::from_topology(&recorded)?;
                if current.member(me).is_some() {
                    tracing::info!("the cluster names this node already; rejoining in its place");
                    return Ok(current);
                }
                let next = current.with_member(member.clone())?;
                let change = Command::ChangeTopology { from: recorded, to: next.topology() };
                let request = Forwarded::Commit { shard: ShardId::METADATA, command: change };
                match forwarder.send_first(&seeds, &request, 0).await {
                    Ok(Answer::Committed(Response::Recorded)) => {
                        tracing::info!(shards = ?next.shards_of(me), "joined the cluster");
                        return Ok(next);
                    }
                    Ok(answer) => tracing::info!(?answer, "the topology changed meanwhile; reading it again"),
                    Err(error) => tracing::info!(%error, "cannot record the join yet"),
                }
            }
            Ok(answer) => tracing::info!(?answer, "no topology recorded yet"),
            Err(error) => tracing::info!(%error, "no member in reach to join through yet"),
        }
        if started.elapsed() > PATIENCE {
            anyhow::bail!("could not join the cluster within {} s: no member answered", PATIENCE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts the node-to-node gRPC server (Raft transport and forwarding).
async fn serve_grpc(
    listen: std::net::SocketAddr,
    transport: &GrpcTransport,
    forwarding: &ForwardingService,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {listen}"))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let router =
        tonic::transport::Server::builder().add_service(transport.service()).add_service(forwarding.server());
    tokio::spawn(async move {
        if let Err(error) = router.serve_with_incoming(incoming).await {
            tracing::error!(%error, "the gRPC server stopped");
        }
    });
    Ok(())
}

/// Opens each tenant's demo parties' accounts in `ledger` (only those
/// missing), and registers the parties with `switch`'s oracle.
pub async fn seed_demo_parties(
    config: &Config,
    ledger: Option<&Ledger>,
    switch: Option<&Switch>,
) -> anyhow::Result<()> {
    for tenant in &config.tenants {
        let tenant_id = TenantId::try_from(tenant.id.clone())?;
        for party in &tenant.demo_parties {
            let id_type: PartyIdType = party.id_type.parse()?;
            let party_id = Party::with_sub_id(id_type, &party.identifier, party.sub_id.as_deref())?;
            let opening = Amount::parse_positive(&party.balance, &party.currency)?;
            if let Some(ledger) = ledger {
                if ledger.open_account(&tenant_id, &party_id, opening).await? {
                    tracing::info!(tenant = %tenant_id, party = %party_id, %opening, "demo account opened");
                }
            }
            if let Some(switch) = switch {
                switch.register_party(&party_id, &tenant.fsp_id)?;
            }
        }
        // The fee income accounts of the currencies its parties hold.
        let fees = tenant.fees.as_ref().map(|fees| fees.rule()).transpose().map_err(anyhow::Error::msg)?;
        if let (Some(fees), Some(ledger)) = (fees.filter(FeeRule::charges), ledger) {
            let currencies: BTreeSet<Currency> =
                tenant.demo_parties.iter().map(|p| p.currency.parse()).collect::<Result<_, _>>()?;
            for currency in currencies {
                ledger.open_own_account(&tenant_id, &fees.account(currency), currency).await?;
            }
        }
    }
    Ok(())
}
