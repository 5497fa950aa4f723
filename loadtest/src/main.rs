//! `payhub-loadtest`: drives P2P payments through a node's channel API and
//! reports throughput and end-to-end latency (request to final state).
//!
//! Two modes: closed-loop (`--concurrency N` clients, each sending its next
//! payment when the previous one is final) and open-loop (`--rate R`
//! payments per second on a fixed schedule, so a slow system cannot slow the
//! offered load: latency counts from the scheduled start, which avoids
//! coordinated omission). Final states are found by polling
//! `GET /channel/transfer/{id}`.

#![allow(clippy::float_arithmetic, reason = "throughput and latency statistics, never money")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(
    name = "payhub-loadtest",
    about = "Drive P2P payments through payhub's channel API and measure them"
)]
struct Options {
    /// Base URL of the node (embedded demo or any cluster node).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Open-loop arrival rate in payments per second (overrides --concurrency).
    #[arg(long)]
    rate: Option<u32>,
    /// Closed-loop concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// How long to send payments, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Directory for `summary.json`.
    #[arg(long, default_value = "loadtest-out")]
    out: PathBuf,
    /// Amount of each payment (decimal string, USD).
    #[arg(long, default_value = "0.01")]
    amount: String,
    /// Give up on a payment that is not final after this many seconds.
    #[arg(long, default_value_t = 60)]
    payment_timeout: u64,
}

#[derive(Debug, Default)]
struct Tally {
    committed: u64,
    aborted: u64,
    errors: std::collections::BTreeMap<String, u64>,
}

struct Shared {
    options: Options,
    http: reqwest::Client,
    latency_us: Mutex<Histogram<u64>>,
    tally: Mutex<Tally>,
    /// This run's tag in correlation ids.
    run: u64,
    /// Creation requests repeated after a 503 or a lost connection.
    retries: std::sync::atomic::AtomicU64,
}

/// Demo parties: bluebank holds 27710000001..5, greenbank 27710000006..10.
fn payment(sequence: u64, amount: &str) -> (&'static str, Value) {
    let blue = format!("2771000000{}", 1 + sequence % 5);
    let green = format!("27710000{:03}", 6 + (sequence / 5) % 5);
    let (tenant, payer, payee) =
        if sequence % 2 == 0 { ("bluebank", blue, green) } else { ("greenbank", green, blue) };
    let body = json!({
        "payer": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": payer } },
        "payee": { "partyIdInfo": { "partyIdType": "MSISDN", "partyIdentifier": payee } },
        "amount": { "amount": amount, "currency": "USD" },
    });
    (tenant, body)
}

/// Sends one payment and waits for its final state; answers the outcome.
async fn run_one(shared: &Shared, sequence: u64) -> Result<&'static str, String> {
    let (tenant, body) = payment(sequence, &shared.options.amount);
    let base = &shared.options.target;
    let deadline = Instant::now() + Duration::from_secs(shared.options.payment_timeout);
    // A correlation id makes the request safe to repeat: a 503 (no shard
    // leader during a failover) or a lost connection is retried with it, as
    // a real client would, and counted as a retry rather than an error.
    let correlation = format!("loadtest-{}-{sequence}", shared.run);
    let response = loop {
        let sent = shared
            .http
            .post(format!("{base}/channel/transfer"))
            .header("Platform-TenantId", tenant)
            .header("X-CorrelationID", &correlation)
            .json(&body)
            .send()
            .await;
        let retry = match &sent {
            Ok(response) => response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            Err(error) => !error.is_timeout(),
        };
        if !retry || Instant::now() > deadline {
            break sent
                .map_err(|e| format!("send: {}", if e.is_timeout() { "timeout" } else { "connection" }))?;
        }
        shared.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let answer: Value = response.json().await.map_err(|_| "bad answer".to_owned())?;
    let id = answer["transactionId"].as_str().ok_or("no transactionId")?.to_owned();
    let mut poll_ms = 5;
    loop {
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
        poll_ms = (poll_ms * 2).min(100);
        let state: Value = shared
            .http
            .get(format!("{base}/channel/transfer/{id}"))
            .header("Platform-TenantId", tenant)
            .send()
            .await
            .map_err(|_| "poll failed".to_owned())?
            .json()
            .await
            .map_err(|_| "poll answer".to_owned())?;
        match state["transferState"].as_str() {
            Some("COMMITTED") => return Ok("COMMITTED"),
            Some("ABORTED") => return Ok("ABORTED"),
            _ if Instant::now() > deadline => return Err("not final in time".into()),
            _ => {}
        }
    }
}

async fn record(shared: &Shared, started: Instant, outcome: Result<&'static str, String>) {
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut tally = shared.tally.lock().await;
    match outcome {
        Ok("COMMITTED") => {
            tally.committed += 1;
            let _ = shared.latency_us.lock().await.record(micros.max(1));
        }
        Ok(_) => tally.aborted += 1,
        Err(kind) => *tally.errors.entry(kind).or_default() += 1,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build()?;
    let histogram = Histogram::new_with_bounds(1, 120_000_000, 3).context("histogram bounds")?;
    let run =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
            as u64;
    let shared = Arc::new(Shared {
        options,
        http,
        latency_us: Mutex::new(histogram),
        tally: Mutex::default(),
        run,
        retries: std::sync::atomic::AtomicU64::new(0),
    });
    let duration = Duration::from_secs(shared.options.duration);
    let begin = Instant::now();
    let mut tasks = Vec::new();
    match shared.options.rate {
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut sequence = 0u64;
            while begin.elapsed() < duration {
                // Latency counts from the scheduled start, not from when a
                // busy client got round to sending.
                let scheduled = begin + interval.mul_f64(sequence as f64);
                tokio::time::sleep_until(scheduled.into()).await;
                let shared = shared.clone();
                tasks.push(tokio::spawn(async move {
                    let outcome = run_one(&shared, sequence).await;
                    record(&shared, scheduled, outcome).await;
                }));
                sequence += 1;
            }
        }
        None => {
            let clients = u64::from(shared.options.concurrency.max(1));
            for client in 0..clients {
                let shared = shared.clone();
                tasks.push(tokio::spawn(async move {
                    let mut sequence = client;
                    while begin.elapsed() < duration {
                        let started = Instant::now();
                        let outcome = run_one(&shared, sequence).await;
                        record(&shared, started, outcome).await;
                        sequence += clients;
                    }
                }));
            }
        }
    }
    for task in tasks {
        task.await?;
    }
    let elapsed_s = begin.elapsed().as_secs_f64();
    let tally = shared.tally.lock().await;
    let latency = shared.latency_us.lock().await;
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let summary = json!({
        "mode": if shared.options.rate.is_some() { "open-loop" } else { "closed-loop" },
        "offered_rate_per_s": shared.options.rate,
        "concurrency": shared.options.rate.is_none().then_some(shared.options.concurrency),
        "duration_s": elapsed_s,
        "completed": tally.committed,
        "aborted": tally.aborted,
        "errors": tally.errors,
        "retries": shared.retries.load(std::sync::atomic::Ordering::Relaxed),
        "throughput_per_s": tally.committed as f64 / elapsed_s,
        "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": latency.max() as f64 / 1000.0 },
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    std::fs::create_dir_all(&shared.options.out)?;
    let path = shared.options.out.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
