//! What a run measured: every payment's outcome and latency, overall and
//! per second of the run, turned into the summary and the charts' series.

#![allow(clippy::float_arithmetic, reason = "throughput and latency statistics, never money")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// How one payment ended, as the load generator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    Aborted,
    /// Not accepted or not final in time; the kind names why.
    Error(String),
}

/// Latencies are recorded in microseconds, up to two minutes.
fn histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // 3 significant figures <= 5): creating it cannot fail.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// One second of the run: payments that finished in it.
#[derive(Debug, Clone)]
pub struct Second {
    pub committed: u64,
    pub aborted: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second { committed: 0, aborted: 0, errors: 0, latency_us: histogram() }
    }
}

/// Everything measured over one phase (a fixed rate, a fixed concurrency, or
/// one step of a ramp).
#[derive(Debug, Clone)]
pub struct Recorder {
    begin: Instant,
    pub latency_us: Histogram<u64>,
    pub committed: u64,
    pub aborted: u64,
    pub errors: BTreeMap<String, u64>,
    pub seconds: Vec<Second>,
    pub sent: u64,
    pub retries: u64,
}

impl Recorder {
    pub fn new(begin: Instant) -> Self {
        Recorder {
            begin,
            latency_us: histogram(),
            committed: 0,
            aborted: 0,
            errors: BTreeMap::new(),
            seconds: Vec::new(),
            sent: 0,
            retries: 0,
        }
    }

    /// Records a payment that started at `started` (its scheduled start in
    /// open loop) and ended now. Only committed payments have a latency.
    pub fn record(&mut self, started: Instant, outcome: Outcome) {
        let now = Instant::now();
        let micros = u64::try_from(now.duration_since(started).as_micros()).unwrap_or(u64::MAX).max(1);
        let index = usize::try_from(now.duration_since(self.begin).as_secs()).unwrap_or(usize::MAX);
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, Second::default);
        }
        let second = &mut self.seconds[index];
        match outcome {
            Outcome::Committed => {
                self.committed += 1;
                second.committed += 1;
                // Saturate rather than fail on a latency past the bounds.
                let micros = micros.min(self.latency_us.high());
                let _ = self.latency_us.record(micros);
                let _ = second.latency_us.record(micros);
            }
            Outcome::Aborted => {
                self.aborted += 1;
                second.aborted += 1;
            }
            Outcome::Error(kind) => {
                *self.errors.entry(kind).or_default() += 1;
                second.errors += 1;
            }
        }
    }

    /// Adds another phase's payments (a ramp's steps make up its run).
    pub fn merge(&mut self, other: &Recorder) {
        let _ = self.latency_us.add(&other.latency_us);
        self.committed += other.committed;
        self.aborted += other.aborted;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        self.sent += other.sent;
        self.retries += other.retries;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency percentiles in milliseconds, as the summary writes them.
    pub fn latency_ms(&self) -> Value {
        percentiles(&self.latency_us)
    }

    /// The phase's summary over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Value {
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        json!({
            "duration_s": seconds,
            "sent": self.sent,
            "completed": self.committed,
            "aborted": self.aborted,
            "errors": self.errors,
            "retries": self.retries,
            "throughput_per_s": self.committed as f64 / seconds,
            "latency_ms": self.latency_ms(),
        })
    }
}

impl Recorder {
    /// The run minute by minute (a soak's drift): for each minute, its
    /// payments' latency percentiles, the median of its seconds' p99 (what
    /// a typical second saw, which a few bad seconds do not move) and how
    /// many of its seconds had a p99 above one second. The last minute is
    /// included only if whole.
    pub fn per_minute(&self) -> Vec<Value> {
        self.seconds
            .chunks_exact(60)
            .enumerate()
            .map(|(index, seconds)| {
                let mut latency = histogram();
                let mut p99s = Vec::new();
                for second in seconds {
                    let _ = latency.add(&second.latency_us);
                    if !second.latency_us.is_empty() {
                        p99s.push(second.latency_us.value_at_quantile(0.99));
                    }
                }
                p99s.sort_unstable();
                let median = p99s.get(p99s.len() / 2).map(|&micros| micros as f64 / 1000.0);
                json!({
                    "minute": index + 1,
                    "completed": seconds.iter().map(|second| second.committed).sum::<u64>(),
                    "errors": seconds.iter().map(|second| second.errors).sum::<u64>(),
                    "latency_ms": percentiles(&latency),
                    "median_second_p99_ms": median,
                    "seconds_p99_over_1s": p99s.iter().filter(|&&micros| micros > 1_000_000).count(),
                })
            })
            .collect()
    }
}

/// p50 / p90 / p99 / p99.9 / max of a histogram in microseconds, in ms.
pub fn percentiles(histogram: &Histogram<u64>) -> Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    if histogram.is_empty() {
        return json!({ "p50": null, "p90": null, "p99": null, "p999": null, "max": null });
    }
    json!({
        "p50": ms(histogram.value_at_quantile(0.5)),
        "p90": ms(histogram.value_at_quantile(0.9)),
        "p99": ms(histogram.value_at_quantile(0.99)),
        "p999": ms(histogram.value_at_quantile(0.999)),
        "max": ms(histogram.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_and_only_commits_have_latencies() {
        let begin = Instant::now();
        let mut recorder = Recorder::new(begin);
        recorder.record(begin, Outcome::Committed);
        recorder.record(begin, Outcome::Aborted);
        recorder.record(begin, Outcome::Error("HTTP 500".into()));
        recorder.record(begin, Outcome::Error("HTTP 500".into()));
        assert_eq!((recorder.committed, recorder.aborted, recorder.error_count()), (1, 1, 2));
        assert_eq!(recorder.errors["HTTP 500"], 2);
        assert_eq!(recorder.latency_us.len(), 1);
        let second = &recorder.seconds[0];
        assert_eq!((second.committed, second.aborted, second.errors), (1, 1, 2));
        let summary = recorder.summary(Duration::from_secs(2));
        assert_eq!(summary["throughput_per_s"], 0.5);
        assert!(summary["latency_ms"]["p99"].is_number());
    }

    #[test]
    fn minutes_summarise_their_seconds_and_the_last_one_only_if_whole() {
        let begin = Instant::now();
        let mut recorder = Recorder::new(begin);
        recorder.seconds.resize_with(150, Second::default);
        // Minute 1: every second at 10 ms, but one at 2 s; minute 2 at 20 ms.
        for (index, second) in recorder.seconds.iter_mut().enumerate() {
            let micros = match index {
                7 => 2_000_000,
                0..60 => 10_000,
                _ => 20_000,
            };
            second.committed = 1;
            second.latency_us.record(micros).expect("within the bounds");
        }
        let minutes = recorder.per_minute();
        assert_eq!(minutes.len(), 2, "the half minute at the end is left out");
        let value = |minute: usize, key: &str| minutes[minute][key].as_f64().expect("a number");
        assert_eq!(value(0, "completed"), 60.0);
        assert_eq!(value(0, "seconds_p99_over_1s"), 1.0);
        assert!((value(0, "median_second_p99_ms") - 10.0).abs() < 0.1, "one bad second does not move it");
        assert!(minutes[0]["latency_ms"]["max"].as_f64().expect("a max") > 1_900.0);
        assert!((value(1, "median_second_p99_ms") - 20.0).abs() < 0.1);
        assert_eq!(value(1, "seconds_p99_over_1s"), 0.0);
    }

    #[test]
    fn an_empty_phase_has_no_percentiles() {
        let recorder = Recorder::new(Instant::now());
        assert!(recorder.latency_ms()["p50"].is_null());
    }
}
