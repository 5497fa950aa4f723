#!/usr/bin/env bash
# Helpers shared by the scripts that start payhub processes (sourced).

# Waits up to 60 s until http://ADDRESS/health answers 200; HINT says where
# to look when it does not.
wait_healthy() { # address [hint]
  for _ in $(seq 1 300); do
    if curl -fsS "http://$1/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "no healthy answer from $1${2:+; $2}" >&2
  return 1
}
