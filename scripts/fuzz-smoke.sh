#!/usr/bin/env bash
# Runs every fuzz target for a short, fixed time (default 20 s each) from
# its checked-in seed corpus; fails on the first finding.
#
# Usage: scripts/fuzz-smoke.sh [SECONDS] [TARGET...]
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the
# stable toolchain. The targets are safe Rust above the C of OpenSSL, so
# they build without a sanitizer and with debug assertions (overflow
# checks) on; set FUZZ_SANITIZER=address to add AddressSanitizer.
set -euo pipefail
seconds=${1:-20}
shift || true
exec "$(dirname "$0")/fuzz-run.sh" "$seconds" "$@"
