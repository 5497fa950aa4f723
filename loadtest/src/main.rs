//! `payhub-loadtest`: drives P2P payments through a node's channel API and
//! reports throughput and end-to-end latency (request to final state).
//!
//! Three modes: closed-loop (`--concurrency N` clients, each sending its next
//! payment when the previous one is final), open-loop (`--rate R` payments
//! per second on a fixed schedule, so a slow system cannot slow the offered
//! load: latency counts from the scheduled start, which avoids coordinated
//! omission), and ramp (`--ramp`: open-loop steps of rising rate until the
//! system saturates). Final states are read with `GET
//! /channel/transfer/{id}` and `Prefer: wait=5`, which the node answers
//! when the payment is final (polling a node that does not wait). Prints
//! progress every second, then the summary; writes `summary.json` and SVG
//! charts to `--out`.

#![allow(clippy::float_arithmetic, reason = "throughput and latency statistics, never money")]

mod charts;
mod memory;
mod record;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use crate::charts::Line;
use crate::record::{percentiles, Outcome, Recorder};

/// How long one read of a payment asks the node to wait for its end.
const WAIT_SECONDS: u64 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "payhub-loadtest",
    about = "Drive P2P payments through payhub's channel API and measure them",
    long_about = "Drive P2P payments (lookup, quote, reserve, transfer, commit) between the demo \
                  tenants through payhub's channel API, and measure each from request to final state.\n\n\
                  Closed loop by default (--concurrency clients); open loop with --rate; --ramp steps \
                  the rate up from --rate by --ramp-step every --duration seconds until the system \
                  saturates. Prints progress each second and a summary (throughput, errors by kind, \
                  latency p50/p90/p99/p99.9/max) and, unless ramping, one line per whole minute \
                  (a soak's drift: the minute's p99 and the median of its seconds' p99); writes \
                  summary.json, latency.svg, throughput.svg and, for a ramp, saturation.svg to --out."
)]
struct Options {
    /// Base URL of the node (embedded demo or any cluster node).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Open-loop arrival rate in payments per second (overrides
    /// --concurrency); with --ramp, the first step's rate.
    #[arg(long)]
    rate: Option<u32>,
    /// Closed-loop concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// How long to send payments, in seconds (with --ramp: per step).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Step the open-loop rate up until the system saturates.
    #[arg(long, requires = "rate")]
    ramp: bool,
    /// Rate added at each ramp step [default: --rate].
    #[arg(long)]
    ramp_step: Option<u32>,
    /// Highest rate a ramp tries.
    #[arg(long, default_value_t = 100_000)]
    ramp_max: u32,
    /// A ramp step saturates when its p99 exceeds this (ms), when it
    /// completes under 90% of the offered rate, or when over 1% of its
    /// payments fail.
    #[arg(long, default_value_t = 1_000)]
    slo_p99_ms: u64,
    /// Directory for summary.json and the charts.
    #[arg(long, default_value = "loadtest-out")]
    out: PathBuf,
    /// Amount of each payment (decimal string, USD).
    #[arg(long, default_value = "0.01")]
    amount: String,
    /// Give up on a payment that is not final after this many seconds.
    #[arg(long, default_value_t = 60)]
    payment_timeout: u64,
    /// Sample this process's resident memory every second and measure the
    /// CPU time it uses (repeatable; Linux): summary.json gets `memory` and
    /// `cpu` (seconds, cores, milliseconds per committed payment; also per
    /// ramp step, and `cpu.per_minute` for each whole minute of the run, to
    /// see a cost that grows during a soak), and memory.svg is drawn.
    #[arg(long = "watch-pid", value_name = "PID")]
    watch_pids: Vec<u32>,
}

/// How a phase offers load.
#[derive(Debug, Clone, Copy)]
enum Load {
    Rate(u32),
    Concurrency(u32),
}

struct Shared {
    options: Options,
    http: reqwest::Client,
    /// This run's tag in correlation ids.
    run: u64,
    /// Payments sent so far in the whole run (each one's sequence number).
    sequence: AtomicU64,
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
async fn run_one(shared: &Shared, sequence: u64, retries: &AtomicU64) -> Result<&'static str, String> {
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
        // As a well-behaved client: wait what Retry-After says (a busy or
        // electing node), or 100 ms after a lost connection, spread by a
        // little jitter so that refused clients do not return in step.
        let wait = match &sent {
            Ok(response) if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                let seconds = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                Some(Duration::from_secs(seconds))
            }
            Ok(_) => None,
            Err(error) if error.is_timeout() => None,
            Err(_) => Some(Duration::from_millis(100)),
        };
        let Some(wait) = wait.filter(|_| Instant::now() < deadline) else {
            break sent
                .map_err(|e| format!("send: {}", if e.is_timeout() { "timeout" } else { "connection" }))?;
        };
        retries.fetch_add(1, Ordering::Relaxed);
        let jitter = Duration::from_millis(sequence.wrapping_mul(7919) % 100);
        tokio::time::sleep(wait + jitter).await;
    };
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let answer: Value = response.json().await.map_err(|_| "bad answer".to_owned())?;
    let id = answer["transactionId"].as_str().ok_or("no transactionId")?.to_owned();
    // Waits for the final state with `Prefer: wait` (one request that the
    // node answers when the payment ends); a node that does not apply the
    // preference is polled, 5 ms at first, backing off to 100 ms.
    let mut poll_ms = 5;
    loop {
        let response = shared
            .http
            .get(format!("{base}/channel/transfer/{id}"))
            .header("Platform-TenantId", tenant)
            .header("Prefer", format!("wait={}", WAIT_SECONDS))
            .send()
            .await
            .map_err(|_| "poll failed".to_owned())?;
        let waited = response.headers().contains_key("preference-applied");
        let state: Value = response.json().await.map_err(|_| "poll answer".to_owned())?;
        match state["transferState"].as_str() {
            Some("COMMITTED") => return Ok("COMMITTED"),
            Some("ABORTED") => return Ok("ABORTED"),
            _ if Instant::now() > deadline => return Err("not final in time".into()),
            _ if waited => {}
            _ => {
                tokio::time::sleep(Duration::from_millis(poll_ms)).await;
                poll_ms = (poll_ms * 2).min(100);
            }
        }
    }
}

/// Runs one phase of load for `duration`; answers what it measured.
async fn phase(shared: &Arc<Shared>, load: Load, duration: Duration, label: &str) -> (Recorder, Duration) {
    let begin = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::new(begin)));
    let retries = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(progress(label.to_owned(), begin, recorder.clone(), sent.clone()));
    let finish =
        |recorder: &Arc<Mutex<Recorder>>, started: Instant, outcome: Result<&'static str, String>| {
            let outcome = match outcome {
                Ok("COMMITTED") => Outcome::Committed,
                Ok(_) => Outcome::Aborted,
                Err(kind) => Outcome::Error(kind),
            };
            recorder.lock().unwrap_or_else(|p| p.into_inner()).record(started, outcome);
        };
    let mut tasks = Vec::new();
    match load {
        Load::Rate(rate) => {
            let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut index = 0u64;
            loop {
                // Latency counts from the scheduled start, not from when a
                // busy client got round to sending.
                let scheduled = begin + interval.mul_f64(index as f64);
                if scheduled.duration_since(begin) >= duration {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let (shared, recorder, retries) = (shared.clone(), recorder.clone(), retries.clone());
                let sequence = shared.sequence.fetch_add(1, Ordering::Relaxed);
                sent.fetch_add(1, Ordering::Relaxed);
                tasks.push(tokio::spawn(async move {
                    let outcome = run_one(&shared, sequence, &retries).await;
                    finish(&recorder, scheduled, outcome);
                }));
                index += 1;
            }
        }
        Load::Concurrency(clients) => {
            for _ in 0..clients.max(1) {
                let (shared, recorder, retries, sent) =
                    (shared.clone(), recorder.clone(), retries.clone(), sent.clone());
                tasks.push(tokio::spawn(async move {
                    while begin.elapsed() < duration {
                        let started = Instant::now();
                        let sequence = shared.sequence.fetch_add(1, Ordering::Relaxed);
                        sent.fetch_add(1, Ordering::Relaxed);
                        let outcome = run_one(&shared, sequence, &retries).await;
                        finish(&recorder, started, outcome);
                    }
                }));
            }
        }
    }
    for task in tasks {
        if let Err(error) = task.await {
            eprintln!("a payment task failed: {error}");
        }
    }
    progress.abort();
    let elapsed = begin.elapsed();
    let mut recorder = recorder.lock().unwrap_or_else(|p| p.into_inner()).clone();
    recorder.sent = sent.load(Ordering::Relaxed);
    recorder.retries = retries.load(Ordering::Relaxed);
    (recorder, elapsed)
}

/// Prints a line to stderr every second while a phase runs.
async fn progress(label: String, begin: Instant, recorder: Arc<Mutex<Recorder>>, sent: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let line = {
            let recorder = recorder.lock().unwrap_or_else(|p| p.into_inner());
            let done = recorder.committed + recorder.aborted + recorder.error_count();
            let last = begin.elapsed().as_secs().saturating_sub(1) as usize;
            let (rate, p99) = recorder.seconds.get(last).map_or((0, None), |s| {
                (s.committed, (!s.latency_us.is_empty()).then(|| s.latency_us.value_at_quantile(0.99)))
            });
            format!(
                "{label} {:>4}s  sent {:>7}  committed {:>7}  aborted {:>5}  errors {:>5}  in flight {:>5}  last second: {:>5}/s p99 {}",
                begin.elapsed().as_secs(),
                sent.load(Ordering::Relaxed),
                recorder.committed,
                recorder.aborted,
                recorder.error_count(),
                sent.load(Ordering::Relaxed).saturating_sub(done),
                rate,
                p99.map_or_else(|| "-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
            )
        };
        eprintln!("{line}");
    }
}

/// Whether a ramp step of `window` (the time it sent for; its payments'
/// tails come after) missed its targets (see `--slo-p99-ms`).
fn saturated(recorder: &Recorder, window: Duration, rate: u32, slo_p99_ms: u64) -> bool {
    let offered = f64::from(rate);
    let achieved = recorder.committed as f64 / window.as_secs_f64().max(f64::EPSILON);
    let failed = recorder.error_count() as f64 / (recorder.sent.max(1) as f64);
    let p99_ms = if recorder.latency_us.is_empty() {
        u64::MAX
    } else {
        recorder.latency_us.value_at_quantile(0.99) / 1000
    };
    achieved < 0.9 * offered || failed > 0.01 || p99_ms > slo_p99_ms
}

/// The per-second series of a phase, shifted by `offset_s` (ramp steps
/// follow each other on one time axis).
fn timeline(recorder: &Recorder, offset_s: f64) -> Vec<Value> {
    recorder
        .seconds
        .iter()
        .enumerate()
        .map(|(i, second)| {
            json!({
                "t_s": offset_s + i as f64,
                "completed": second.committed,
                "aborted": second.aborted,
                "errors": second.errors,
                "latency_ms": percentiles(&second.latency_us),
            })
        })
        .collect()
}

/// One line per minute of the run (summary.json `per_minute` has them).
fn print_minutes(minutes: &[Value]) {
    let ms = |value: &Value| value.as_f64().map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0} ms"));
    for minute in minutes {
        println!(
            "minute {:>3}: {:>7} committed  p50 {:>8}  p99 {:>8}  median second's p99 {:>8}  seconds with p99 > 1 s: {}",
            minute["minute"].as_u64().unwrap_or_default(),
            minute["completed"].as_u64().unwrap_or_default(),
            ms(&minute["latency_ms"]["p50"]),
            ms(&minute["latency_ms"]["p99"]),
            ms(&minute["median_second_p99_ms"]),
            minute["seconds_p99_over_1s"],
        );
    }
}

fn series(timeline: &[Value], pick: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    timeline.iter().filter_map(|p| Some((p["t_s"].as_f64()? + 0.5, pick(p)?))).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build()?;
    let run =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
            as u64;
    let shared = Arc::new(Shared { options, http, run, sequence: AtomicU64::new(0) });
    let options = &shared.options;
    let duration = Duration::from_secs(options.duration);
    let watched_since = Instant::now();
    let (memory, sampler) = memory::watch(options.watch_pids.clone(), watched_since);
    let cpu_at_start = memory::cpu_ms_of(&options.watch_pids);
    let mut steps = Vec::new();
    let mut points = Vec::new();
    let (total, elapsed, mode, saturation) = if options.ramp {
        let start = options.rate.unwrap_or(1).max(1);
        let step = options.ramp_step.unwrap_or(start).max(1);
        let mut total = Recorder::new(Instant::now());
        let mut elapsed = Duration::ZERO;
        let mut saturation = None;
        let mut rate = start;
        while rate <= options.ramp_max {
            let cpu_before = memory::cpu_ms_of(&options.watch_pids);
            let (recorder, took) = phase(&shared, Load::Rate(rate), duration, &format!("[{rate}/s]")).await;
            let mut summary = recorder.summary(took);
            if !options.watch_pids.is_empty() {
                let used = memory::cpu_ms_of(&options.watch_pids).saturating_sub(cpu_before);
                summary["cpu"] = memory::cpu_summary(used, took, recorder.committed);
            }
            eprintln!("step {rate}/s: {summary}");
            points.extend(timeline(&recorder, elapsed.as_secs_f64()));
            let mut step_summary = json!({ "offered_rate_per_s": rate });
            merge_object(&mut step_summary, summary);
            steps.push(step_summary);
            total.merge(&recorder);
            elapsed += took;
            if saturated(&recorder, duration, rate, options.slo_p99_ms) {
                saturation = Some(rate);
                break;
            }
            rate = rate.saturating_add(step);
        }
        (total, elapsed, "ramp", saturation)
    } else {
        let (load, mode) = match options.rate {
            Some(rate) => (Load::Rate(rate), "open-loop"),
            None => (Load::Concurrency(options.concurrency), "closed-loop"),
        };
        let (recorder, took) = phase(&shared, load, duration, "").await;
        points.extend(timeline(&recorder, 0.0));
        (recorder, took, mode, None)
    };

    let mut summary = json!({
        "mode": mode,
        "target": options.target,
        "offered_rate_per_s": options.rate,
        "concurrency": options.rate.is_none().then_some(options.concurrency),
    });
    merge_object(&mut summary, total.summary(elapsed));
    // A ramp's steps are its minutes (each has its own summary).
    if !options.ramp {
        summary["per_minute"] = Value::from(total.per_minute());
    }
    if options.ramp {
        summary["steps"] = Value::from(steps.clone());
        // The highest step that met its targets, and the one that did not.
        let sustained =
            steps.iter().rfind(|s| s["offered_rate_per_s"].as_u64().map(|r| r as u32) != saturation).cloned();
        summary["sustained"] = sustained.unwrap_or(Value::Null);
        summary["saturated_at_rate_per_s"] = saturation.map_or(Value::Null, Value::from);
    }
    sampler.abort();
    let mut memory = memory.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !options.watch_pids.is_empty() {
        summary["memory"] = memory.summary();
        // The last sample closes the last minute (the sampler ticks each
        // second and may have stopped just short of it).
        let cpu_at_end = memory::cpu_ms_of(&options.watch_pids);
        memory.cpu.push((watched_since.elapsed().as_secs_f64(), cpu_at_end));
        let used = cpu_at_end.saturating_sub(cpu_at_start);
        summary["cpu"] = memory::cpu_summary(used, elapsed, total.committed);
        let committed: Vec<(f64, u64)> =
            points.iter().filter_map(|p| Some((p["t_s"].as_f64()?, p["completed"].as_u64()?))).collect();
        summary["cpu"]["per_minute"] = Value::from(memory::cpu_per_minute(&memory.cpu, &committed));
    }
    summary["timeline"] = Value::from(points.clone());
    let printed = {
        let mut printed = summary.clone();
        if let Some(object) = printed.as_object_mut() {
            object.remove("timeline");
            object.remove("per_minute");
        }
        printed
    };
    println!("{}", serde_json::to_string_pretty(&printed)?);
    print_minutes(summary["per_minute"].as_array().map_or(&[], Vec::as_slice));

    std::fs::create_dir_all(&options.out)?;
    let path = options.out.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)?;
    let latency = |key: &'static str| move |p: &Value| p["latency_ms"][key].as_f64();
    charts::draw(
        &options.out.join("latency.svg"),
        "End-to-end latency of committed payments, per second",
        "seconds",
        "ms",
        &[
            Line { name: "p50", points: series(&points, latency("p50")) },
            Line { name: "p99", points: series(&points, latency("p99")) },
            Line { name: "max", points: series(&points, latency("max")) },
        ],
    )?;
    charts::draw(
        &options.out.join("throughput.svg"),
        "Payments committed per second",
        "seconds",
        "payments/s",
        &[Line { name: "committed/s", points: series(&points, |p| p["completed"].as_f64()) }],
    )?;
    if !memory.rss.is_empty() {
        let lines: Vec<(String, Vec<(f64, f64)>)> = memory
            .rss
            .iter()
            .map(|(pid, points)| {
                (format!("pid {pid}"), points.iter().map(|(t, kib)| (*t, *kib as f64 / 1024.0)).collect())
            })
            .collect();
        let lines: Vec<Line<'_>> =
            lines.iter().map(|(name, points)| Line { name, points: points.clone() }).collect();
        charts::draw(&options.out.join("memory.svg"), "Resident memory", "seconds", "MiB", &lines)?;
    }
    if options.ramp {
        let by_rate = |key: &'static str| {
            steps
                .iter()
                .filter_map(|s| Some((s["offered_rate_per_s"].as_f64()?, s["latency_ms"][key].as_f64()?)))
                .collect::<Vec<_>>()
        };
        charts::draw(
            &options.out.join("saturation.svg"),
            "Latency percentiles against offered rate",
            "offered payments/s",
            "ms",
            &[
                Line { name: "p50", points: by_rate("p50") },
                Line { name: "p90", points: by_rate("p90") },
                Line { name: "p99", points: by_rate("p99") },
            ],
        )?;
    }
    eprintln!("wrote {} and the charts in {}", path.display(), options.out.display());
    Ok(())
}

/// Adds `extra`'s fields to `target` (both JSON objects).
fn merge_object(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}
