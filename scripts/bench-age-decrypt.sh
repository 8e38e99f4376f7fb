#!/usr/bin/env bash
# Times age decryption three ways in one run, on the same files:
#   age -d -i KEY            age 1.1.1 holding the X25519 key itself
#   age -d -i PLUGIN-ID      age asking the daemon through age-plugin-keyward
#   keyward decrypt          the age crate, asking the daemon for the file key
# Only the file key comes from the daemon, so the three should differ by a
# constant (one socket round trip, plus process start for the plugin), not
# by throughput.
#
# Usage: scripts/bench-age-decrypt.sh [SIZE...]   (default: 10M 1G; sizes as
# `head -c` takes them). Set KEYWARD_BIN_DIR to the directory holding the
# `keyward` and `age-plugin-keyward` binaries (default: target/release).
# Each method runs KEYWARD_BENCH_REPEAT times (default 3) and the fastest
# run is reported. Files go to a temp directory under ${TMPDIR:-/tmp}; 1G
# needs about 2 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir="${KEYWARD_BIN_DIR:-target/release}"
bin_dir="$(cd "$bin_dir" && pwd)"
for program in "$bin_dir/keyward" "$bin_dir/age-plugin-keyward"; do
    [ -x "$program" ] || { echo "error: $program not found" >&2; echo "hint: cargo build --release -p keyward-cli -p age-plugin-keyward, or set KEYWARD_BIN_DIR" >&2; exit 1; }
done
command -v age >/dev/null || { echo "error: age is not installed" >&2; echo "hint: apt-get install age" >&2; exit 1; }

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10M 1G)

work="$(mktemp -d "${TMPDIR:-/tmp}/kw-bench-age.XXXXXX")"
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

export KEYWARD_TEST_INSECURE_KDF=1 KEYWARD_KEYSTORE="$work/ks" KEYWARD_SOCKET_DIR="$work/s"
export PATH="$bin_dir:$PATH"
passphrase="bench passphrase"

echo "$passphrase" | keyward init --passphrase-fd 0 >/dev/null 2>&1
echo "$passphrase" | keyward keygen --type x25519 --name bench --passphrase-fd 0 >/dev/null
echo "$passphrase" | keyward daemon --foreground --passphrase-fd 0 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do keyward status >/dev/null 2>&1 && break; sleep 0.1; done
keyward status >/dev/null

recipient="$(keyward pubkey bench --format age)"
keyward pubkey bench --format age-plugin >"$work/plugin-identity.txt"
age-keygen -o "$work/own-key.txt" 2>/dev/null
own_recipient="$(grep -o 'age1[0-9a-z]*' "$work/own-key.txt")"

repeat="${KEYWARD_BENCH_REPEAT:-3}"

# Prints the fastest wall-clock seconds of $repeat runs of one command,
# output discarded.
seconds() {
    local start end elapsed best=""
    for _ in $(seq "$repeat"); do
        start=$(date +%s.%N)
        "$@" >/dev/null
        end=$(date +%s.%N)
        elapsed=$(echo "$end - $start" | bc)
        if [ -z "$best" ] || [ "$(echo "$elapsed < $best" | bc)" = 1 ]; then best=$elapsed; fi
    done
    echo "$best"
}

echo "machine: $(nproc) cores, $(uname -r); age $(age --version); binaries in $bin_dir; best of $repeat runs"
printf '%-8s %-34s %10s %12s\n' size method seconds "MiB/s"
for size in "${sizes[@]}"; do
    head -c "$size" /dev/urandom >"$work/plain"
    age -r "$recipient" -r "$own_recipient" -o "$work/file.age" "$work/plain"
    expected="$(sha256sum <"$work/plain" | cut -d' ' -f1)"
    mib=$(echo "scale=3; $(stat -c %s "$work/plain") / 1048576" | bc)
    rm "$work/plain"

    # Every method must give the same plaintext before it is timed.
    for check in "age -d -i $work/own-key.txt" "age -d -i $work/plugin-identity.txt" "keyward decrypt"; do
        actual="$($check "$work/file.age" | sha256sum | cut -d' ' -f1)"
        [ "$actual" = "$expected" ] || { echo "error: $check gave a different plaintext" >&2; exit 1; }
    done

    for method in "age -d (key in process)" "age -d (age-plugin-keyward)" "keyward decrypt"; do
        case "$method" in
            "age -d (key in process)") time=$(seconds age -d -i "$work/own-key.txt" "$work/file.age") ;;
            "age -d (age-plugin-keyward)") time=$(seconds age -d -i "$work/plugin-identity.txt" "$work/file.age") ;;
            "keyward decrypt") time=$(seconds keyward decrypt "$work/file.age") ;;
        esac
        printf '%-8s %-34s %10.3f %12.1f\n' "$size" "$method" "$time" "$(echo "$mib / $time" | bc -l)"
    done
    rm "$work/file.age"
done
