#!/usr/bin/env bash
# A payhub cluster on this machine: N nodes (default 3) in Z zones (default 3)
# on loopback addresses 127.0.0.11, .12, ... (HTTP :8080, gRPC :9080), and the
# simulated outside world they pay through (switch simulator and the demo
# tenants' AMS) on 127.0.0.1:8090. Data and logs go to deploy/local/data.
#
#   deploy/local/cluster.sh start     # build, write configs, start, wait, show status
#   deploy/local/cluster.sh status    # payhub status
#   deploy/local/cluster.sh kill N    # SIGKILL node N (a crash)
#   deploy/local/cluster.sh restart N # start node N again
#   deploy/local/cluster.sh add       # start one more node, which joins the running cluster
#   deploy/local/cluster.sh stop      # stop everything (data is kept)
#   deploy/local/cluster.sh clean     # stop and delete the data
#
# NODES, ZONES, SHARDS and DIR in the environment change the shape and the place;
# SPREAD=1 makes the simulated switch send each message to the next node in
# turn (a load balancer in front of the nodes) instead of the last that answered;
# PROFILE=release runs optimised binaries (what scripts/bench.sh measures).
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${NODES:-3}
ZONES=${ZONES:-3}
SHARDS=${SHARDS:-8}
SPREAD=${SPREAD:-}
DIR=${DIR:-deploy/local/data}
PROFILE=${PROFILE:-debug}
action=${1:-start}

payhub() { "$CARGO_TARGET_DIR/$PROFILE/payhub" "$@"; }

build() {
  if [ "$PROFILE" = release ]; then
    cargo build --release --workspace --locked --quiet
  else
    cargo build --workspace --all-targets --locked --quiet
  fi
}

start_process() { # name, args...
  local name=$1
  shift
  nohup "$CARGO_TARGET_DIR/$PROFILE/payhub" "$@" >>"$DIR/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

source scripts/lib.sh

node_address() { # node id -> 127.0.0.(10+id)
  echo "127.0.0.$((10 + $1))"
}

start_node() { # node id
  start_process "node-$1" run --config "$DIR/node-$1.toml"
}

stop_pid_file() { # file, signal
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "-$2" "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

case "$action" in
  start)
    source scripts/setup.sh
    build
    mkdir -p "$DIR"
    payhub local-cluster --nodes "$NODES" --zones "$ZONES" --shards "$SHARDS" ${SPREAD:+--spread} --dir "$DIR" >/dev/null
    start_process sim sim --config "$DIR/sim.toml"
    wait_healthy 127.0.0.1:8090 "see $DIR/*.log"
    for id in $(seq 1 "$NODES"); do start_node "$id"; done
    for id in $(seq 1 "$NODES"); do wait_healthy "$(node_address "$id"):8080" "see $DIR/*.log"; done
    payhub status --node "$(node_address 1):8080"
    echo
    echo "Pay through any node, e.g.:"
    echo "  curl -s -X POST http://$(node_address 2):8080/channel/transfer -H 'Platform-TenantId: bluebank' \\"
    echo "    -H 'Content-Type: application/json' -d '{\"payer\":{\"partyIdInfo\":{\"partyIdType\":\"MSISDN\",\"partyIdentifier\":\"27710000001\"}},\"payee\":{\"partyIdInfo\":{\"partyIdType\":\"MSISDN\",\"partyIdentifier\":\"27710000006\"}},\"amount\":{\"amount\":\"10.00\",\"currency\":\"USD\"}}'"
    ;;
  status)
    source scripts/setup.sh >/dev/null
    payhub status --node "${2:-$(node_address 1):8080}"
    ;;
  kill)
    stop_pid_file "$DIR/node-$2.pid" KILL
    ;;
  restart)
    source scripts/setup.sh >/dev/null
    start_node "$2"
    wait_healthy "$(node_address "$2"):8080" "see $DIR/*.log"
    ;;
  add)
    source scripts/setup.sh >/dev/null
    count=$(find "$DIR" -maxdepth 1 -name 'node-*.toml' | wc -l)
    [ "$count" -gt 0 ] || { echo "no cluster in $DIR; run start first" >&2; exit 1; }
    id=$((count + 1))
    # Rewrites every node's configuration with one more member; the new node
    # joins (cluster.join). The running nodes follow the recorded topology,
    # not their files, so they need no restart.
    payhub local-cluster --nodes "$id" --joining 1 --zones "$ZONES" --shards "$SHARDS" --dir "$DIR" >/dev/null
    start_node "$id"
    wait_healthy "$(node_address "$id"):8080" "see $DIR/*.log"
    echo "node $id joined; its replicas fill and leaders move to it over the next seconds:"
    sleep 5
    payhub status --node "$(node_address 1):8080"
    ;;
  stop)
    for pid_file in "$DIR"/*.pid; do
      if [ -e "$pid_file" ]; then stop_pid_file "$pid_file" TERM; fi
    done
    # Give them a moment to shut down cleanly.
    for _ in $(seq 1 50); do
      pgrep -f "payhub (run|sim) --config $DIR/" >/dev/null || break
      sleep 0.1
    done
    ;;
  clean)
    "$0" stop
    rm -rf "$DIR"
    ;;
  *)
    sed -n '2,18p' "$0"
    exit 2
    ;;
esac
