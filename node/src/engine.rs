//! Wires one node together: storage, the Raft groups, the transaction actors,
//! the connectors and recovery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use actors::command::{Command, Response};
use actors::flow::{self, P2pRequest, P2pState};
use actors::model::{Amount, NodeId, Party, PartyIdType, ShardId, TenantId, TransactionId};
use actors::runtime::{CommitError, RuntimeLimits, SystemClock, Transactions};
use connectors::ams::{Ams, AmsClient};
use connectors::fspiop::client::FspiopClient;
use connectors::fspiop::inbound::Inbound;
use connectors::fspiop::payee::PayeeService;
use connectors::ledger::Ledger;
use connectors::switch::{Switch, SwitchLimits};
use connectors::tenants::Tenants;
use raft::{InProcessRouter, RaftConfig, RaftNode, ShardedCommit};
use storage::{Space, Store};

use crate::config::Config;
use crate::effects::{Callbacks, OwnerOf, Runner, Waiting};

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
}

/// How creating a transaction ended.
#[derive(Debug)]
pub enum Created {
    New(TransactionId),
    /// The same request came before (same tenant and correlation id).
    Existing(TransactionId),
    /// The correlation id was used before for a different request.
    Conflict,
}

impl Engine {
    pub async fn start(config: Config) -> anyhow::Result<Arc<Engine>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let store = Store::open(&config.data_dir.join("db")).context("cannot open storage")?;

        let raft_config = RaftConfig {
            node: NodeId(config.node_id),
            address: config.listen.to_string(),
            zone: config.zone.clone(),
            shard_count: config.shard_count,
            heartbeat_interval_ms: config.raft.heartbeat_interval_ms,
            election_timeout_min_ms: config.raft.election_timeout_min_ms,
            election_timeout_max_ms: config.raft.election_timeout_max_ms,
            append_entries_max: config.raft.append_entries_max,
            snapshot_log_entries_max: config.raft.snapshot_log_entries_max,
        };
        let raft = Arc::new(RaftNode::start(raft_config, &store, &InProcessRouter::default()).await?);
        raft.wait_for_leaders(Duration::from_secs(10)).await?;
        // The metadata group records this node and its zone (placement).
        let registration = Command::RegisterNode {
            node: NodeId(config.node_id),
            address: config.listen.to_string(),
            zone: config.zone.clone(),
        };
        raft.commit_to(ShardId::METADATA, registration).await.context("cannot register the node")?;

        let tenants = Arc::new(config.tenants());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(FspiopClient::REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(FspiopClient::CONNECT_TIMEOUT_MS))
            .pool_max_idle_per_host(256)
            .build()?;
        let switch_client = FspiopClient::with_http(http.clone(), &config.switch_url());
        // In a cluster the AMS must be external: another node taking over a
        // transaction would otherwise book its effects on another ledger.
        let (ledger, ams): (Option<Ledger>, Arc<dyn Ams>) = if config.ams_url.is_empty() {
            let ledger = Ledger::new(store.kv(Space::Ledger));
            (Some(ledger.clone()), Arc::new(ledger))
        } else {
            let client = AmsClient::new(&config.ams_url, config.flow.ams_timeout_ms).context("ams_url")?;
            (None, Arc::new(client))
        };
        let waiting = Arc::new(Waiting::default());
        let runner = Runner {
            tenants: tenants.clone(),
            ams: ams.clone(),
            switch: switch_client.clone(),
            waiting: waiting.clone(),
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
                Ok(state) => state.map(|s| s.request.tenant),
                Err(error) => {
                    tracing::error!(transaction = %id, %error, "cannot read a transaction");
                    None
                }
            })
        };
        let inbound = Arc::new(Inbound {
            tenants: tenants.clone(),
            payee: PayeeService::new(ams.clone(), switch_client, config.flow.quote_expiry_ms),
            payer: Arc::new(Callbacks { waiting, transactions: transactions.clone(), owner_of }),
        });
        let switch = config.switch_simulator.then(|| {
            let endpoints: BTreeMap<String, Vec<String>> =
                config.tenants.iter().map(|t| (t.fsp_id.clone(), config.tenant_endpoints(t))).collect();
            Switch::new(store.kv(Space::Switch), http, endpoints, SwitchLimits::default())
        });
        let engine = Arc::new(Engine { config, store, raft, transactions, tenants, ledger, inbound, switch });
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
        for shard in self.raft.transaction_shards() {
            let Some(mut leadership) = self.raft.leadership(shard) else { continue };
            let engine = self.clone();
            tokio::spawn(async move {
                loop {
                    if *leadership.borrow_and_update() {
                        if let Err(error) = engine.recover(shard).await {
                            tracing::error!(%shard, %error, "recovery failed");
                        }
                    }
                    if leadership.changed().await.is_err() {
                        break;
                    }
                }
            });
        }
    }

    /// Re-spawns actors for every unfinished transaction of `shard`.
    async fn recover(&self, shard: ShardId) -> anyhow::Result<()> {
        let open = self.store.open_transactions(shard)?;
        if !open.is_empty() {
            tracing::info!(%shard, count = open.len(), "resuming unfinished transactions");
        }
        for state in open {
            self.transactions.drive(state.id, flow::p2p::resume(&state)).await;
        }
        Ok(())
    }

    /// Creates a P2P transaction through Raft and starts driving it.
    pub async fn create(&self, id: TransactionId, request: P2pRequest) -> Result<Created, CommitError> {
        let command = Command::Create {
            id,
            request,
            limits: self.config.flow_limits(),
            now_ms: self.transactions.clock().now_ms(),
        };
        let shard = self.raft.shard_of(&id);
        match self.raft.commit_to(shard, command).await? {
            Response::Created(transition) => {
                metrics::counter!("payhub_payments_started_total", "flow" => "p2p", "tenant" => transition.state.request.tenant.to_string())
                    .increment(1);
                self.transactions.drive(id, transition.effects).await;
                Ok(Created::New(id))
            }
            Response::AlreadyExists(state) => {
                // A repeated request for a transaction nobody drives (its first
                // request's client went away between commit and start) starts it.
                if state.phase.is_active() && !self.transactions.is_live(&id) {
                    self.transactions.drive(id, flow::p2p::resume(&state)).await;
                }
                Ok(Created::Existing(id))
            }
            Response::Conflict { .. } => Ok(Created::Conflict),
            other => Err(CommitError::Failed(format!("unexpected answer to a create: {other:?}"))),
        }
    }

    /// A transaction's replicated state.
    pub fn transaction(&self, id: &TransactionId) -> anyhow::Result<Option<P2pState>> {
        Ok(self.store.transaction(self.raft.shard_of(id), *id)?)
    }

    pub fn history(&self, id: &TransactionId) -> anyhow::Result<Vec<storage::HistoryEvent>> {
        Ok(self.store.history(self.raft.shard_of(id), *id)?)
    }

    pub async fn shutdown(&self) {
        self.transactions.stop_all();
        self.raft.shutdown().await;
    }
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
            let party_id = Party::new(id_type, &party.identifier)?;
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
    }
    Ok(())
}
