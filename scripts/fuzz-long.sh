#!/usr/bin/env bash
# Long fuzz runs: each target in turn for SECONDS (default 600). The corpus
# grows in target/fuzz/corpus/TARGET (under CARGO_TARGET_DIR when set),
# starting from the checked-in seeds; crashes land in fuzz/artifacts/TARGET.
#
# Usage: scripts/fuzz-long.sh [SECONDS] [TARGET...]
# FUZZ_JOBS=N runs N targets at once (default 1).
set -euo pipefail
seconds=${1:-600}
shift || true
FUZZ_KEEP_CORPUS=1 exec "$(dirname "$0")/fuzz-run.sh" "$seconds" "$@"
