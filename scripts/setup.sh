#!/usr/bin/env bash
# Installs what building payhub needs on a fresh Debian machine, only if it
# is missing: clang and libclang-dev (RocksDB's bindings) and
# protobuf-compiler (the gRPC definitions in proto/). Safe to run repeatedly.
set -euo pipefail

missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
# clang-sys (RocksDB's bindings) loads an unversioned libclang.so or
# libclang-N.so: the runtime package alone (libclang.so.1) is not enough.
[ -n "${LIBCLANG_PATH:-}" ] || compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null ||
  compgen -G '/usr/lib/*/libclang-*.so' >/dev/null || missing+=(libclang-dev)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v curl >/dev/null 2>&1 || missing+=(curl)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Builds share one target directory outside the checkout, so a fresh clone
# reuses what an earlier one compiled (RocksDB's C++ is most of a cold build).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/payhub/target}"
mkdir -p "$CARGO_TARGET_DIR"
