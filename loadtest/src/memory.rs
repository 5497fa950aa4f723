//! Resident memory of the processes under test (`--watch-pid`), sampled
//! once a second from `/proc/<pid>/status` (Linux), for the soak's "flat
//! memory" check; and the CPU time they use, from `/proc/<pid>/stat`, for
//! what a payment costs (a figure that, unlike the throughput at
//! saturation, hardly depends on what else the machine is doing).

#![allow(clippy::float_arithmetic, reason = "memory figures for a chart")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Samples: pid -> (seconds since the start, resident KiB); and the CPU
/// time all of them had used, (seconds since the start, milliseconds).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub rss: BTreeMap<u32, Vec<(f64, u64)>>,
    pub cpu: Vec<(f64, u64)>,
}

/// The resident set size of `pid` in KiB, if it runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Linux reports CPU times in `/proc` in ticks of `USER_HZ`, which is 100
/// on every architecture it runs on (`sysconf(_SC_CLK_TCK)`).
const USER_HZ: u64 = 100;

/// The CPU time (user and system, all threads) `pid` has used so far, in
/// milliseconds, if it runs.
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // after it come the state (field 3) ... utime (14) and stime (15).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000 / USER_HZ)
}

/// The CPU time all of `pids` have used so far, in milliseconds (those that
/// do not run count for nothing).
pub fn cpu_ms_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|pid| cpu_ms(*pid)).sum()
}

/// What the watched processes spent on one phase of the run: CPU seconds,
/// the cores that is on average, and the milliseconds per committed payment.
pub fn cpu_summary(cpu_ms: u64, took: Duration, committed: u64) -> Value {
    let seconds = cpu_ms as f64 / 1_000.0;
    json!({
        "seconds": seconds,
        "cores": seconds / took.as_secs_f64().max(f64::EPSILON),
        "ms_per_payment": (committed > 0).then(|| cpu_ms as f64 / committed as f64),
    })
}

/// Samples `pids` every second until the returned handle is dropped.
pub fn watch(pids: Vec<u32>, begin: Instant) -> (Arc<Mutex<Samples>>, tokio::task::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let task = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let at = begin.elapsed().as_secs_f64();
                let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner());
                for pid in &pids {
                    if let Some(kib) = rss_kib(*pid) {
                        samples.rss.entry(*pid).or_default().push((at, kib));
                    }
                }
                samples.cpu.push((at, cpu_ms_of(&pids)));
            }
        })
    };
    (samples, task)
}

impl Samples {
    /// Per process: first, last and largest RSS, and the growth over the
    /// second half of the run (a leak grows steadily; a warm cache does not
    /// after warming up).
    pub fn summary(&self) -> Value {
        let per_pid: BTreeMap<String, Value> = self
            .rss
            .iter()
            .filter_map(|(pid, points)| {
                let first = points.first()?.1;
                let last = points.last()?.1;
                let max = points.iter().map(|(_, kib)| *kib).max()?;
                let half = points.get(points.len() / 2)?.1;
                Some((
                    pid.to_string(),
                    json!({
                        "first_kib": first,
                        "last_kib": last,
                        "max_kib": max,
                        "second_half_growth_kib": i128::from(last) - i128::from(half),
                    }),
                ))
            })
            .collect();
        json!(per_pid)
    }
}

/// What each minute of the run cost: the watched processes' CPU (cores on
/// average, milliseconds per payment committed in that minute), from the
/// CPU samples and the per-second committed counts `(second, committed)`.
/// A cost per payment that rises minute by minute under a steady load is
/// work that grows with the run (the soak's question); a last partial
/// minute is left out.
pub fn cpu_per_minute(cpu: &[(f64, u64)], committed: &[(f64, u64)]) -> Vec<Value> {
    let at = |t: f64| cpu.iter().rfind(|(s, _)| *s <= t).map(|(_, ms)| *ms);
    let end = cpu.last().map_or(0.0, |(s, _)| *s);
    let mut minutes = Vec::new();
    let mut minute = 0u32;
    while f64::from(minute + 1) * 60.0 <= end {
        let (from, to) = (f64::from(minute) * 60.0, f64::from(minute + 1) * 60.0);
        let (Some(before), Some(after)) = (at(from), at(to)) else {
            minute += 1;
            continue;
        };
        let used = after.saturating_sub(before);
        let payments: u64 = committed.iter().filter(|(t, _)| (from..to).contains(t)).map(|(_, n)| n).sum();
        minutes.push(json!({
            "minute": minute + 1,
            "cores": used as f64 / 60_000.0,
            "ms_per_payment": (payments > 0).then(|| used as f64 / payments as f64),
        }));
        minute += 1;
    }
    minutes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_summarised_minute_by_minute_for_the_whole_minutes_only() {
        // 0.5 cores in minute 1, 1.5 in minute 2, 10 payments a second;
        // a third minute only half sampled.
        let cpu: Vec<(f64, u64)> = (0..=150u32)
            .map(|s| (f64::from(s), u64::from(if s <= 60 { s * 500 } else { 30_000 + (s - 60) * 1_500 })))
            .collect();
        let committed: Vec<(f64, u64)> = (0..150u32).map(|s| (f64::from(s), 10)).collect();
        let minutes = cpu_per_minute(&cpu, &committed);
        assert_eq!(minutes.len(), 2, "{minutes:?}");
        assert_eq!(minutes[0]["cores"], json!(0.5));
        assert_eq!(minutes[0]["ms_per_payment"], json!(50.0));
        assert_eq!(minutes[1]["cores"], json!(1.5));
        assert_eq!(minutes[1]["ms_per_payment"], json!(150.0));
        assert!(cpu_per_minute(&[], &committed).is_empty());
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(rss_kib(u32::MAX), None);
    }

    #[test]
    fn this_process_has_used_cpu_time() {
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu_ms(std::process::id()).is_some_and(|ms| ms >= 10));
        assert_eq!(cpu_ms(u32::MAX), None);
        assert_eq!(cpu_ms_of(&[u32::MAX]), 0);
    }

    #[test]
    fn cpu_is_summarised_per_payment_and_per_core() {
        let summary = cpu_summary(3_000, Duration::from_secs(2), 600);
        assert_eq!(summary["seconds"], 3.0);
        assert_eq!(summary["cores"], 1.5);
        assert_eq!(summary["ms_per_payment"], 5.0);
        assert_eq!(cpu_summary(10, Duration::from_secs(1), 0)["ms_per_payment"], Value::Null);
    }

    #[test]
    fn growth_is_measured_over_the_second_half() {
        let samples = Samples {
            rss: BTreeMap::from([(7, vec![(0.0, 100), (1.0, 300), (2.0, 300), (3.0, 310)])]),
            cpu: Vec::new(),
        };
        let summary = samples.summary();
        assert_eq!(summary["7"]["first_kib"], 100);
        assert_eq!(summary["7"]["max_kib"], 310);
        assert_eq!(summary["7"]["second_half_growth_kib"], 10);
    }
}
