#!/usr/bin/env bash
# Reproduces the figures of docs/PERFORMANCE.md: builds optimised binaries,
# starts a target, drives payments through it with payhub-loadtest, and
# stops it. Results (summary.json, latency.svg, throughput.svg, and for a
# ramp saturation.svg) go to bench-out/<target>-<time>/, with the target's
# logs and its /metrics at the end; the resident memory of every process of
# the target is sampled each second (summary.json `memory`, memory.svg).
#
#   scripts/bench.sh demo    [payhub-loadtest options]   # embedded single node
#   scripts/bench.sh cluster [payhub-loadtest options]   # 3 nodes in 3 zones on loopback
#
# Without options: closed loop, 64 clients, 60 s. For example:
#   scripts/bench.sh demo --rate 50 --ramp --ramp-step 50 --duration 20
#   scripts/bench.sh cluster --concurrency 128 --duration 300
# Every node fsyncs its Raft log (and the simulated AMS and switch their
# writes) as in production.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-demo}
shift || true
[ $# -gt 0 ] || set -- --concurrency 64 --duration 60

source scripts/setup.sh
cargo build --release --workspace --locked --quiet
bin="$CARGO_TARGET_DIR/release"
out="bench-out/$target-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$target" = cluster ]; then PROFILE=release DIR="$out/cluster" deploy/local/cluster.sh stop || true; fi
}
trap cleanup EXIT

source scripts/lib.sh

case "$target" in
  demo)
    address=127.0.0.1:18080
    PAYHUB_LOG=warn "$bin/payhub" demo --listen "$address" --data-dir "$out/data" >"$out/demo.log" 2>&1 &
    pids+=($!)
    wait_healthy "$address"
    watched=("${pids[@]}")
    ;;
  cluster)
    address=127.0.0.12:8080
    PROFILE=release DIR="$out/cluster" deploy/local/cluster.sh start >"$out/cluster-start.log"
    mapfile -t watched < <(cat "$out"/cluster/node-*.pid "$out"/cluster/sim.pid)
    # Leaders settle on their preferred nodes (hand-overs after 10 s).
    "$bin/payhub" status --node "$address" --wait-at-rest 120 >"$out/cluster-status.txt"
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac

watch=()
for pid in "${watched[@]}"; do watch+=(--watch-pid "$pid"); done
"$bin/payhub-loadtest" --target "http://$address" --out "$out" "${watch[@]}" "$@"
# What the nodes measured meanwhile (flow phases, commits, fsyncs per group).
case "$target" in
  demo) curl -fsS "http://$address/metrics" >"$out/metrics.txt" || true ;;
  cluster)
    for config in "$out"/cluster/node-*.toml; do
      node=$(basename "$config" .toml)
      listen=$(sed -n 's/^listen = "\(.*\)"$/\1/p' "$config")
      curl -fsS "http://$listen/metrics" >"$out/metrics-$node.txt" || true
    done
    ;;
esac
echo "results in $out" >&2
