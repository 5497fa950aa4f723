#!/usr/bin/env bash
# Starts the embedded default: one payhub node with the demo DFSPs bluebank and
# greenbank and the switch simulator, on 127.0.0.1:8080 with its data in
# ./payhub-data. Extra arguments go to `payhub demo` (e.g. --listen, --data-dir).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The same build selection as scripts/test.sh, so the two commands share one
# compiled RocksDB (a narrower selection unifies build features differently
# and would compile RocksDB's C++ again).
cargo build --workspace --all-targets --locked --quiet
exec "$CARGO_TARGET_DIR/debug/payhub" demo "$@"
