#!/usr/bin/env bash
# Shared by fuzz-smoke.sh and fuzz-long.sh: builds the targets once, then
# runs each for SECONDS and prints the executions it reached.
#
# Usage: scripts/fuzz-run.sh SECONDS [TARGET...]
set -euo pipefail
seconds=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
target_dir=${CARGO_TARGET_DIR:-$root/target}/fuzz
jobs=${FUZZ_JOBS:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s "$sanitizer" -a --target-dir "$target_dir"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
run_one() {
    local target=$1 corpus
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
        # Long runs grow a corpus next to the build, outside the repository.
        corpus="$target_dir/corpus/$target"
        mkdir -p "$corpus"
    else
        corpus=$(mktemp -d)
    fi
    cp -r "corpus/$target/." "$corpus/"
    if cargo fuzz run -s "$sanitizer" -a --target-dir "$target_dir" "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$target" 2>&1; then
        local runs
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$target" | grep -o '[0-9]*$' || echo '?')
        printf '%-18s ok      %12s executions in %s s\n' "$target" "$runs" "$seconds"
    else
        printf '%-18s FAILED  see below\n' "$target"
        tail -40 "$logs/$target"
        return 1
    fi
    [ -n "${FUZZ_KEEP_CORPUS:-}" ] || rm -rf "$corpus"
}

running=0
for target in "${targets[@]}"; do
    if [ "$jobs" -gt 1 ]; then
        run_one "$target" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
            wait -n || status=1
            running=$((running - 1))
        fi
    else
        run_one "$target" || status=1
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
