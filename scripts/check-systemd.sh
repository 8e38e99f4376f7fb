#!/usr/bin/env bash
# Checks the shipped systemd units offline (no systemd as PID 1 needed).
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash dist/systemd/verify.sh
