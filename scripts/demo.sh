#!/usr/bin/env bash
# Starts the embedded default: one payhub node with the demo DFSPs bluebank and
# greenbank and the switch simulator, on 127.0.0.1:8080 with its data in
# ./payhub-data. Extra arguments go to `payhub demo` (e.g. --listen, --data-dir).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec cargo run --quiet -p node --bin payhub -- demo "$@"
