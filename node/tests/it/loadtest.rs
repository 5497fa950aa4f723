//! The load generator works end to end (a smoke run of a few seconds against
//! the embedded demo): it prints the summary and writes summary.json and the
//! charts. It checks the tool, never the machine's speed.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::node::Node;

/// `payhub-loadtest` is built next to `payhub` (same workspace, same profile).
fn loadtest_binary() -> PathBuf {
    let payhub = PathBuf::from(env!("CARGO_BIN_EXE_payhub"));
    payhub.with_file_name(format!("payhub-loadtest{}", std::env::consts::EXE_SUFFIX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_ramp_against_the_demo_writes_its_summary_and_charts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node")).await;
    let out = dir.path().join("out");
    let target = format!("http://{}", node.listen);
    let binary = loadtest_binary();
    let pid = node.pid().expect("the node runs").to_string();
    assert!(binary.exists(), "{} is not built (cargo build --workspace)", binary.display());
    let run = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args(["--target", &target, "--rate", "5", "--ramp", "--ramp-step", "5", "--ramp-max", "10"])
            // The targets must not depend on this machine's speed.
            .args(["--slo-p99-ms", "60000", "--duration", "2", "--payment-timeout", "20"])
            .args(["--watch-pid", &pid, "--out"])
            .arg(&out)
            .output()
            .expect("run payhub-loadtest")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // Progress lines while it ran, and the summary on stdout.
    assert!(stderr.contains("committed"), "{stderr}");
    let printed: Value = serde_json::from_slice(&run.stdout).expect("the summary is JSON");
    let written: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out/summary.json")).expect("summary.json written"),
    )
    .expect("summary.json is JSON");
    assert_eq!(printed["completed"], written["completed"]);
    // Two steps (5/s, 10/s) of 2 s: some payments, none failed.
    let completed = written["completed"].as_u64().expect("completed");
    assert!(completed > 0, "{printed}");
    assert_eq!(written["errors"], serde_json::json!({}), "{printed}");
    assert_eq!(written["steps"].as_array().map(Vec::len), Some(2), "{printed}");
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(written["latency_ms"][key].is_number(), "latency_ms.{key} in {printed}");
    }
    assert!(written["throughput_per_s"].as_f64().is_some_and(|t| t > 0.0));
    // The node's memory was sampled.
    let pid = node.pid().expect("the node runs").to_string();
    assert!(written["memory"][&pid]["max_kib"].as_u64().is_some_and(|kib| kib > 0), "{printed}");
    // And what its payments cost it in CPU time, in all and at each step.
    // (CPU time is counted in 10 ms ticks: a short step may show none.)
    assert!(written["cpu"]["ms_per_payment"].as_f64().is_some_and(|ms| ms > 0.0), "{printed}");
    let steps = written["steps"].as_array().expect("steps");
    assert!(steps.iter().all(|s| s["cpu"]["ms_per_payment"].is_number()), "{printed}");
    for chart in ["latency.svg", "throughput.svg", "saturation.svg", "memory.svg"] {
        let svg = std::fs::read_to_string(dir.path().join("out").join(chart)).expect(chart);
        assert!(svg.starts_with("<svg"), "{chart}");
    }
    drop(node);
}
