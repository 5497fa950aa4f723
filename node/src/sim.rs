//! `payhub sim`: the outside world of a cluster in one process, what every
//! node reaches over HTTP: the switch simulator (`/switch/...`, with its
//! sweeper), the AMS API over a ledger of its own (`/ams/...`), the read-only
//! ledger API (`/ledger/accounts...`), `/health` and `/metrics`. It runs no
//! Raft: its state is one RocksDB of its own (the Ledger and Switch spaces).
//!
//! It reads the nodes' configuration format: `listen` and `data_dir` are its
//! own; the tenants say which DFSPs exist, their `endpoints` where the switch
//! delivers to (the nodes serving them, tried in turn), and their
//! `demo_parties` which accounts the AMS opens and the oracle knows (with
//! `seed_demo_parties`, on in the preset it layers the file over).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use metrics_exporter_prometheus::PrometheusHandle;

use connectors::ledger::Ledger;
use connectors::switch::{Switch, SwitchLimits, SWITCH_FSP_ID};
use storage::{Space, Store};

use crate::config::{Config, ConfigError, Overrides};
use crate::engine::seed_demo_parties;
use crate::http::ledger::{self, LedgerApi};

#[derive(Debug, Args)]
pub struct SimFlags {
    /// TOML configuration file (the nodes' format), layered over the demo
    /// preset; its tenants need `endpoints`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8090].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory [default: ./payhub-sim-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl SimFlags {
    /// The demo preset on the sim's own address and directory, then the
    /// file, the environment and the flags, as for a node.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let base = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            data_dir: PathBuf::from("payhub-sim-data"),
            ..Config::demo()
        };
        let overrides =
            Overrides { listen: self.listen, data_dir: self.data_dir.clone(), ..Overrides::default() };
        let config = Config::layer(base, self.config.as_deref(), &overrides)?;
        config.validate_sim()?;
        Ok(config)
    }
}

/// `payhub sim`: serves until SIGINT or SIGTERM.
pub fn main(flags: &SimFlags) -> anyhow::Result<()> {
    let config = flags.config()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

/// What a running sim holds.
#[derive(Debug)]
pub struct Sim {
    pub switch: Switch,
    router: Router,
    fspiop_router: Router,
}

impl Sim {
    /// Opens the sim's store and seeds it (idempotently).
    pub async fn start(config: &Config, metrics: PrometheusHandle) -> anyhow::Result<Sim> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let store = Store::open_with(
            &config.data_dir.join("db"),
            storage::StoreOptions { memory_mib: config.storage.memory_mib },
        )
        .context("cannot open storage")?;
        let ledger = Ledger::new(store.kv(Space::Ledger));
        let http = crate::tls::Clients::new(&config.fspiop.tls)?.of(SWITCH_FSP_ID);
        let endpoints: BTreeMap<String, Vec<String>> =
            config.tenants.iter().map(|t| (t.fsp_id.clone(), config.tenant_endpoints(t))).collect();
        let signer = config.fspiop.jws.signers()?.remove(SWITCH_FSP_ID);
        let switch = Switch::new(
            store.kv(Space::Switch),
            http,
            endpoints,
            signer,
            SwitchLimits { spread: config.simulator_spread, ..SwitchLimits::default() },
        )?;
        if config.seed_demo_parties {
            seed_demo_parties(config, Some(&ledger), Some(&switch)).await?;
        }
        let tenants = Arc::new(config.tenants());
        let fsp_ids: Vec<String> = config.tenants.iter().map(|t| t.fsp_id.clone()).collect();
        let health = move || {
            let body = serde_json::json!({ "status": "UP", "role": "sim", "dfsps": fsp_ids.clone() });
            async move { Json(body) }
        };
        let layered = |router: Router| {
            router
                .layer(DefaultBodyLimit::max(config.http_body_bytes_max))
                .layer(middleware::from_fn(crate::http::record_request))
        };
        let mut router = Router::new()
            .route("/health", get(health))
            .route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move { metrics.render() }
                }),
            )
            .merge(connectors::ams::router(ledger.clone()))
            .merge(ledger::routes(LedgerApi { ledger: ledger.clone(), tenants }));
        let fspiop_router = layered(switch.router());
        if config.fspiop.tls.listen.is_none() {
            router = router.merge(switch.router());
        }
        Ok(Sim { switch, router: layered(router), fspiop_router })
    }

    /// Everything but the switch when it has a TLS listener of its own
    /// (`fspiop.tls.listen`); else everything.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The switch simulator's routes.
    pub fn fspiop_router(&self) -> Router {
        self.fspiop_router.clone()
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let metrics = crate::install_metrics()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let tls = crate::tls::server_config(&config.fspiop.tls)?;
    let sim = Sim::start(&config, metrics).await?;
    let fspiop = axum_server::Handle::new();
    let fspiop_server = match (config.fspiop.tls.listen, tls) {
        (Some(listen), Some(tls)) => {
            Some(crate::tls::serve(listen, tls, sim.fspiop_router(), fspiop.clone())?)
        }
        _ => None,
    };
    sim.switch.spawn_sweeper();
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "payhub sim is ready");
    axum::serve(listener, sim.router()).with_graceful_shutdown(crate::shutdown_signal()).await?;
    if let Some(server) = fspiop_server {
        fspiop.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = server.await;
    }
    tracing::info!("payhub sim stopped");
    Ok(())
}
