#!/usr/bin/env bash
# Hostile load against one daemon while an honest client signs; prints the
# honest client's latency (goal: p99 under 5 ms, no failures).
#
# Everything runs on unix sockets in a temp directory, so nothing leaves
# the machine. Needs root: the load generator gives each client thread its
# own uid. Not a timed test; run it by hand or from CI's optional steps.
#
# Usage: scripts/load.sh [SECONDS]   (default 30)
# Environment: LOAD_IDLE, LOAD_GARBAGE, LOAD_STALLED, LOAD_CHURN (see
# crates/keyward-cli/examples/hostile_load.rs), PROFILE=release for an
# optimised build (default: the debug build the tests use).
set -euo pipefail

seconds=${1:-30}
profile=${PROFILE:-debug}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}

if [ "$(id -u)" != 0 ]; then
    echo "load.sh: run as root (the load generator switches uids per thread)" >&2
    exit 2
fi

build_flags=()
[ "$profile" = release ] && build_flags=(--release)
(cd "$root" && cargo build -q -p keyward-cli --bin keyward --example hostile_load "${build_flags[@]}")
keyward=$target/$profile/keyward
load=$target/$profile/examples/hostile_load

honest_uid=3100
attacker_uids=3001,3002,3003,3004,3005,3006
group=3000

work=$(mktemp -d /tmp/keyward-load.XXXXXX)
chmod 755 "$work"
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

export KEYWARD_TEST_INSECURE_KDF=1
k=("$keyward" --keystore "$work/ks" --socket-dir "$work/s")
printf 'load-test passphrase' > "$work/pw"
"${k[@]}" init --passphrase-fd 3 3<"$work/pw"
"${k[@]}" keygen --type ed25519 --name load --passphrase-fd 3 3<"$work/pw"
# The global cap must leave room above the attackers' connections: with
# the default of 1024, 1,000 idle connections from several uids plus the
# stalled ones would lock the honest client out.
cat > "$work/ks/keyward.toml" <<TOML
[daemon]
socket_group = $group
max_connections = 4096
max_connections_per_uid = 256

[[key]]
name = "load"
users = [$honest_uid]
operations = ["sign"]
TOML

"${k[@]}" daemon --foreground 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
    [ -S "$work/s/agent.sock" ] && break
    sleep 0.1
done
"${k[@]}" unseal --passphrase-fd 3 3<"$work/pw"

echo "load: ${seconds} s against pid $daemon_pid ($profile build)"
"$load" "$work/s/agent.sock" "$seconds" "$honest_uid" "$attacker_uids" "$group"

echo "daemon: $(grep -c 'connection rejected' "$work/daemon.log" || true) rate-limited rejection lines," \
    "$(grep -c '"connection-closed"' "$work/daemon.log" || true) connection-closed audit lines," \
    "$(ls /proc/"$daemon_pid"/fd | wc -l) descriptors open at the end"
if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "load: the daemon died; log:" >&2
    tail -20 "$work/daemon.log" >&2
    exit 1
fi
