#!/usr/bin/env bash
# Side-by-side benchmark of Keyward and OpenSSH's ssh-agent on this machine.
#
# Both daemons get the same keys (an Ed25519 and an RSA-3072 key made by
# ssh-keygen; ssh-add loads them into ssh-agent, `keyward import` into a
# Keyward keystore) and are loaded alternately, in one run, by the same
# generator (`keyward bench`). Prints the ratios the performance goals are
# stated in, writes every measurement as JSON lines and draws
# docs/bench.svg (throughput against the number of clients).
#
# Environment: BENCH_SECONDS (per measurement, default 5), BENCH_NO_BUILD=1
# to skip the release build, BENCH_KEYS (keys for the memory and start-up
# measurement, default 10000), BENCH_OUT (results file).
#
# Everything runs under a temp directory: its own sockets, keystore and
# agent, stopped and removed at the end. Timing uses the test-only cheap
# KDF (KEYWARD_TEST_INSECURE_KDF=1), so the start-up figure leaves out the
# passphrase KDF, which costs what `keyward init` calibrated (about 1 s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_SECONDS=${BENCH_SECONDS:-5}
MANY_KEYS=${BENCH_KEYS:-10000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
K=$TARGET/release/keyward

if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p keyward-cli)
fi
for program in ssh-agent ssh-add ssh-keygen python3; do
    command -v "$program" >/dev/null || { echo "bench.sh: $program is not installed" >&2; exit 1; }
done

T=$(mktemp -d /tmp/kwbench.XXXXXX)
OUT=${BENCH_OUT:-$T/results.jsonl}
AGENT_PID=
KEYWARD_PID=
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
    [ -n "$KEYWARD_PID" ] && kill "$KEYWARD_PID" 2>/dev/null || true
    sleep 0.2
    rm -rf "$T"
}
trap cleanup EXIT

export KEYWARD_TEST_INSECURE_KDF=1
unset KEYWARD_KEYSTORE KEYWARD_SOCKET_DIR KEYWARD_CONFIG SSH_AUTH_SOCK
printf 'bench passphrase' > "$T/pw"

wait_for_socket() {
    for _ in $(seq 200); do
        [ -S "$1" ] && return 0
        sleep 0.05
    done
    echo "bench.sh: no socket at $1" >&2
    exit 1
}

# Starts a detached Keyward daemon on keystore $1, sockets $2; sets
# KEYWARD_PID. Unseals at start.
start_keyward() {
    local line
    line=$("$K" --keystore "$1" --socket-dir "$2" daemon --passphrase-fd 3 3<"$T/pw" 2>&1)
    KEYWARD_PID=$(echo "$line" | sed -n 's/.*(pid \([0-9]*\)).*/\1/p')
    [ -n "$KEYWARD_PID" ] || { echo "bench.sh: the daemon did not start: $line" >&2; exit 1; }
}

stop_keyward() {
    kill "$KEYWARD_PID"
    while kill -0 "$KEYWARD_PID" 2>/dev/null; do sleep 0.05; done
    KEYWARD_PID=
}

echo "== keys and daemons (under $T)"
ssh-keygen -q -t ed25519 -N '' -C bench-ed25519 -f "$T/ed25519"
ssh-keygen -q -t rsa -b 3072 -N '' -C bench-rsa -f "$T/rsa3072"

ssh-agent -D -a "$T/ssh-agent.sock" >"$T/ssh-agent.log" 2>&1 &
AGENT_PID=$!
wait_for_socket "$T/ssh-agent.sock"
SSH_AUTH_SOCK="$T/ssh-agent.sock" ssh-add -q "$T/ed25519" "$T/rsa3072"

"$K" --keystore "$T/ks" --socket-dir "$T/s" init --passphrase-fd 3 3<"$T/pw" >/dev/null
"$K" --keystore "$T/ks" --socket-dir "$T/s" import --format openssh --name ed --passphrase-fd 3 3<"$T/pw" "$T/ed25519" >/dev/null
"$K" --keystore "$T/ks" --socket-dir "$T/s" import --format openssh --name rsa --passphrase-fd 3 3<"$T/pw" "$T/rsa3072" >/dev/null
start_keyward "$T/ks" "$T/s"

SA=$T/ssh-agent.sock
KW=$T/s/agent.sock
: >"$OUT"

# measure LABEL AGENT ARGS...: one `keyward bench` run, tagged.
measure() {
    local label=$1 agent=$2
    shift 2
    local json
    json=$("$K" bench --json --seconds "$RUN_SECONDS" "$@")
    echo "{\"label\":\"$label\",\"agent\":\"$agent\",\"result\":$json}" >>"$OUT"
    printf '%-28s %-10s %s\n' "$label" "$agent" "$json"
}

echo "== Ed25519 sign, one request at a time, by number of clients"
for clients in 1 2 4 8 16 32; do
    measure "ed25519-sign-c$clients" ssh-agent --socket "$SA" --key-blob-from "$T/ed25519.pub" --clients "$clients"
    measure "ed25519-sign-c$clients" keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --clients "$clients"
done

echo "== Ed25519 pipelining and batches against the in-process ceiling (same crate, one thread per core)"
CORES=$(nproc)
measure ed25519-in-process-1 keyward --mode in-process --clients "$CORES"
measure ed25519-pipeline keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --mode pipeline --clients 4 --depth 32
measure ed25519-batch keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --mode batch --clients 2 --depth 512
measure ed25519-in-process-2 keyward --mode in-process --clients "$CORES"
measure ed25519-pipeline ssh-agent --socket "$SA" --key-blob-from "$T/ed25519.pub" --mode pipeline --clients 4 --depth 32

echo "== RSA-3072 sign, 16 clients"
measure rsa3072-sign-c16 ssh-agent --socket "$SA" --key-blob-from "$T/rsa3072.pub" --clients 16
measure rsa3072-sign-c16 keyward --socket "$KW" --key-blob-from "$T/rsa3072.pub" --clients 16

echo "== One client sending a 256 KiB frame a byte at a time, 16 others signing (3 rounds, alternating, with controls)"
# Two slow clients: one pausing 100 us between bytes, one writing bytes as
# fast as it can. Each is also aimed at ssh-agent instead (the control),
# to see what it costs the machine without Keyward serving it.
for round in 1 2 3; do
    measure "ed25519-c16-calm-$round" keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --clients 16
    measure "ed25519-c16-slow-$round" keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --clients 16 --slow-client
    measure "ed25519-c16-slow-elsewhere-$round" keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --clients 16 --slow-client --slow-socket "$SA"
    measure "ed25519-c16-flood-$round" keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --clients 16 --slow-client --slow-interval-us 0
    measure "ed25519-c16-flood-elsewhere-$round" keyward --socket "$KW" --key-blob-from "$T/ed25519.pub" --clients 16 --slow-client --slow-interval-us 0 --slow-socket "$SA"
done
measure ed25519-c16-calm-1 ssh-agent --socket "$SA" --key-blob-from "$T/ed25519.pub" --clients 16
measure ed25519-c16-slow-1 ssh-agent --socket "$SA" --key-blob-from "$T/ed25519.pub" --clients 16 --slow-client

echo "== Resident memory, sealed and unsealed, with the two bench keys"
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
echo "{\"label\":\"rss-2-keys\",\"agent\":\"keyward\",\"result\":{\"rss_kib\":$(rss_kib "$KEYWARD_PID")}}" >>"$OUT"
stop_keyward

echo "== $MANY_KEYS Ed25519 keys: start plus unseal time and resident memory"
"$K" --keystore "$T/many" --socket-dir "$T/s-many" init --passphrase-fd 3 3<"$T/pw" >/dev/null
"$K" --keystore "$T/many" --socket-dir "$T/s-many" bench --populate "$MANY_KEYS" --passphrase-fd 3 3<"$T/pw" >/dev/null
began=$(date +%s.%N)
start_keyward "$T/many" "$T/s-many"
ended=$(date +%s.%N)
start_ms=$(python3 -c "print(round(($ended - $began) * 1000))")
sleep 0.5
many_rss=$(rss_kib "$KEYWARD_PID")
echo "{\"label\":\"many-keys\",\"agent\":\"keyward\",\"result\":{\"keys\":$MANY_KEYS,\"start_unseal_ms\":$start_ms,\"rss_kib\":$many_rss}}" >>"$OUT"
echo "start+unseal with $MANY_KEYS keys: ${start_ms} ms, RSS ${many_rss} KiB"
stop_keyward

echo "== Summary"
python3 "$ROOT/scripts/bench_report.py" "$OUT" "$ROOT/docs/bench.svg"
