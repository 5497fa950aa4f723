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

/// Samples: pid -> (seconds since the start, resident KiB).
#[derive(Debug, Clone, Default)]
pub struct Samples(pub BTreeMap<u32, Vec<(f64, u64)>>);

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
                        samples.0.entry(*pid).or_default().push((at, kib));
                    }
                }
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
            .0
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let samples = Samples(BTreeMap::from([(7, vec![(0.0, 100), (1.0, 300), (2.0, 300), (3.0, 310)])]));
        let summary = samples.summary();
        assert_eq!(summary["7"]["first_kib"], 100);
        assert_eq!(summary["7"]["max_kib"], 310);
        assert_eq!(summary["7"]["second_half_growth_kib"], 10);
    }
}
