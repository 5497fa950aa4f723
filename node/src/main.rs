//! `payhub`: the payment hub's one binary.
//!
//! `payhub demo` starts the embedded default (one node, two demo DFSPs and the
//! switch simulator); `payhub run --config FILE` starts a node as configured;
//! `payhub sim --config FILE` starts the simulated outside world a cluster
//! pays through (the switch simulator and the AMS, see `sim.rs`).
//! The node crate wires the others together and owns the HTTP surface; it
//! holds no business rules (those are in `actors`).

mod config;
mod effects;
mod engine;
mod forward;
mod http;
mod local;
mod requests;
mod sim;
mod status;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::config::{Config, Overrides};
use crate::engine::Engine;

/// mimalloc instead of the system allocator: a payment allocates and frees
/// many small buffers (HTTP, JSON, Raft entries) across threads, where
/// glibc's malloc spent about a tenth of the CPU (docs/PERFORMANCE.md).
/// The crate's `override` feature makes it `malloc` and `free` for the
/// whole process, so RocksDB's C++ allocations (the blocks it reads into
/// its cache) use it too: under glibc's they cost more and more as the
/// database grew (PERFORMANCE.md, change 16). Built without the `mimalloc`
/// feature the node keeps glibc's, for heap profilers that intercept
/// `malloc` (heaptrack).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "payhub", version, about = "A payment hub for DFSPs joining real-time payment schemes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the embedded default: one node holding the demo DFSPs bluebank
    /// and greenbank (parties MSISDN 27710000001..10, 1000.00 USD each) and
    /// the switch simulator they pay each other through.
    Demo(NodeFlags),
    /// Start a node from a configuration file (see docs/CONFIGURATION.md).
    Run(NodeFlags),
    /// Start the outside world of a cluster: the switch simulator and the AMS
    /// API (and the ledger API to read it), seeded from the tenants of a
    /// configuration file in the nodes' format. Runs no Raft.
    Sim(sim::SimFlags),
    /// Write the configuration files of a cluster on this machine (nodes on
    /// loopback addresses, zones in turn) and of its simulated switch and
    /// AMS; `deploy/local/cluster.sh` starts them.
    LocalCluster(local::LocalCluster),
    /// Show a cluster's nodes, zones, shards, leaders and replication lag,
    /// as the node at --node sees it.
    Status(StatusFlags),
}

#[derive(Debug, Args)]
struct StatusFlags {
    /// HTTP address of any node.
    #[arg(long, default_value = "127.0.0.1:8080")]
    node: String,
    /// Print the raw JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// First wait (at most this many seconds) until the cluster is at rest:
    /// every group led by its preferred replica, no replica moving.
    #[arg(long, value_name = "SECONDS")]
    wait_at_rest: Option<u64>,
}

#[derive(Debug, Args)]
struct NodeFlags {
    /// TOML configuration file, layered over the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory [default: ./payhub-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of transaction shards [default: 8].
    #[arg(long)]
    shards: Option<u32>,
    /// This node's id in the cluster [default: 1].
    #[arg(long)]
    node_id: Option<u64>,
    /// gRPC listen address [default: 127.0.0.1:9080].
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Zone (data centre) label [default: zone-a].
    #[arg(long)]
    zone: Option<String>,
    /// Join the running cluster of `cluster.members` (this node gets its
    /// share of replicas and leaders) instead of starting a new one. Only
    /// read when the data directory is empty.
    #[arg(long)]
    join: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAYHUB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let (base, flags) = match cli.command {
        Command::Demo(flags) => (Config::demo(), flags),
        Command::Run(flags) => (Config::default(), flags),
        Command::Sim(flags) => return sim::main(&flags),
        Command::LocalCluster(spec) => {
            for path in spec.write()? {
                println!("{}", path.display());
            }
            return Ok(());
        }
        Command::Status(flags) => {
            return tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(async {
                    if let Some(seconds) = flags.wait_at_rest {
                        status::wait_at_rest(&flags.node, seconds).await?;
                    }
                    status::print(&flags.node, flags.json).await
                });
        }
    };
    let overrides = Overrides {
        listen: flags.listen,
        data_dir: flags.data_dir,
        shard_count: flags.shards,
        node_id: flags.node_id,
        grpc_listen: flags.grpc_listen,
        zone: flags.zone,
        cluster: flags.join.then_some(config::ClusterOverrides { join: true }),
    };
    let config = Config::load(base, flags.config.as_deref(), &overrides)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

/// Histograms are exported as Prometheus histograms (buckets), so that
/// dashboards can aggregate them across nodes: latencies in seconds from
/// 0.5 ms to 30 s, and Raft append batch sizes in entries.
pub(crate) fn metrics_recorder() -> PrometheusBuilder {
    use metrics_exporter_prometheus::Matcher;
    const SECONDS: [f64; 16] =
        [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];
    const ENTRIES: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Full("payhub_raft_append_entries_batch".into()), &ENTRIES)
        })
        // set_buckets_for_metric fails only on an empty list; both are constants.
        .expect("bucket lists are not empty")
}

/// Installs the Prometheus recorder and its upkeep: histogram samples are
/// kept raw until they are folded into buckets, which happens on a scrape
/// or an upkeep; without upkeep a node nobody scrapes would keep every
/// sample it ever took.
pub(crate) fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = metrics_recorder().install_recorder().context("cannot install the metrics recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let tls = tls::server_config(&config.fspiop.tls)?;
    let engine = Engine::start(config).await?;
    let fspiop = axum_server::Handle::new();
    let fspiop_server = match (engine.config.fspiop.tls.listen, tls) {
        (Some(listen), Some(tls)) => {
            let server = tls::serve(listen, tls, http::fspiop_router(&engine), fspiop.clone())?;
            tracing::info!(%listen, "FSPIOP is served over TLS");
            Some(server)
        }
        _ => None,
    };
    engine.spawn_background();
    let app = http::router(http::AppState { engine: engine.clone(), metrics });
    tracing::info!(listen = %engine.config.listen, data_dir = %engine.config.data_dir.display(), "payhub is ready");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    if let Some(server) = fspiop_server {
        fspiop.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        let _ = server.await;
    }
    engine.shutdown().await;
    tracing::info!("payhub stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
