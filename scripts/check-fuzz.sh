#!/usr/bin/env bash
# A time-boxed smoke run of every fuzz target (10 s each) from its seed
# corpus; fails on any finding. scripts/fuzz-long.sh is for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/fuzz-smoke.sh "${FUZZ_SMOKE_SECONDS:-10}"
