#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and all tests (unit tests,
# openraft's storage suite, and the end-to-end tests that start the real
# binary, kill it mid-flight and check that no money is lost or doubled).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

started=$(date +%s)
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
# Clippy only type-checks and never links, so it does not need RocksDB's C++
# library: pointing ROCKSDB_LIB_DIR at an empty directory skips compiling it
# a second time (clippy's build-dependency features differ from the test
# build's, which would otherwise make it build its own copy, ~15 minutes).
mkdir -p "$CARGO_TARGET_DIR/clippy-no-rocksdb"
ROCKSDB_LIB_DIR="$CARGO_TARGET_DIR/clippy-no-rocksdb" \
  cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build" >&2
# Every binary of the workspace: the end-to-end tests run payhub-loadtest
# too, which no test target of its own package would build.
cargo build --workspace --all-targets --locked
echo "== tests" >&2
# Arguments go to nextest (a filter such as -E 'test(/^ttk::/)').
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --profile ci "$@"
else
  cargo test --workspace --locked --no-fail-fast
fi
echo "== all checks passed in $(( $(date +%s) - started )) s" >&2
