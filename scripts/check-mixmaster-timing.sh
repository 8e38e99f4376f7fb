#!/usr/bin/env bash
# A short run of the Mixmaster RSA timing check (Welch's t-test between a
# valid block and each kind of bad padding, plus a deliberately leaky
# variant that the statistic must flag). Two shared cores are too noisy to
# gate on, so this reports and never fails the run; scripts/mixmaster-timing.sh
# takes more samples for a real measurement.
cd "$(dirname "$0")/.." || exit 0
timeout 300 bash scripts/mixmaster-timing.sh --bits 1024 --samples 3000 || true
exit 0
