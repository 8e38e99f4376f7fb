#!/bin/sh
# Timing check of the Mixmaster RSA operation (dudect-style Welch t-test).
# Reports only: always exits 0. Arguments go to the example, e.g.
#   scripts/mixmaster-timing.sh --bits 4096 --samples 3000
# The dev profile builds dependencies (OpenSSL, RustCrypto) with opt-level 3.
cd "$(dirname "$0")/.." || exit 0
cargo run --quiet -p keyward-mixmaster --example timing -- "$@"
exit 0
