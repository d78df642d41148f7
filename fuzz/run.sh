#!/usr/bin/env bash
# `make fuzz`: runs the cargo-fuzz targets one after the other, FUZZ_TIME seconds each (600),
# one libFuzzer job with one worker, then prints a table (target, seconds, total execs,
# crashes). Exits non-zero when any target crashed, hung (-timeout) or ran out of memory,
# naming the input libFuzzer saved under fuzz/artifacts/<target>/.
#
#   FUZZ_TARGETS=gossip_packet,serf_rpc   a subset (comma separated; default: every target)
#   FUZZ_TIME=60                          seconds per target
#
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo fuzz use the sanitizer flags it needs.
# Builds go to $CARGO_TARGET_DIR like every other build; libFuzzer's own output goes to
# fuzz/logs/<target>.log; new inputs it finds go to fuzz/corpus/<target>/ (not committed).
set -euo pipefail

cd "$(dirname "$0")/.."

ALL_TARGETS="gossip_packet gossip_stream serf_rpc rest_json raft_rpc"
FUZZ_TIME=${FUZZ_TIME:-600}
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
TARGETS=${TARGETS//,/ }
# One bound per input for a hang, one for memory (libFuzzer's own flags).
TIMEOUT_S=10
RSS_LIMIT_MB=2048
# libFuzzer needs a moment past -max_total_time to finish; a run that outlives this is stuck.
WALL_SLACK_S=300

if ! [[ "$FUZZ_TIME" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz: FUZZ_TIME must be a whole number of seconds > 0 (got '$FUZZ_TIME')" >&2
    exit 2
fi
for t in $TARGETS; do
    if [[ " $ALL_TARGETS " != *" $t "* ]]; then
        echo "fuzz: unknown target '$t'; the targets are: ${ALL_TARGETS// /, }" >&2
        exit 2
    fi
done

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Same flags for build and run, so the run does not rebuild: release, debug assertions on
# (integer overflow is a crash), AddressSanitizer (cargo fuzz's default).
FLAGS=(--debug-assertions)
cargo fuzz build "${FLAGS[@]}"

mkdir -p fuzz/logs
rows=()
failed=()
for t in $TARGETS; do
    log="fuzz/logs/$t.log"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "fuzz: $t for ${FUZZ_TIME}s (log: $log)"
    start=$SECONDS
    rc=0
    # -jobs=1 would hand the run to a child process writing ./fuzz-0.log; a single process is
    # the same one job with one worker, with its output in our log.
    timeout "$((FUZZ_TIME + WALL_SLACK_S))" cargo fuzz run "${FLAGS[@]}" "$t" -- \
        -max_total_time="$FUZZ_TIME" -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT_S" \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    secs=$((SECONDS - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -n 1)
    crashes=0
    if [ "$rc" -ne 0 ]; then
        crashes=1
        what=${artifact:-"no input saved; see $log"}
        if [ "$rc" -eq 124 ]; then
            what="did not stop within $((FUZZ_TIME + WALL_SLACK_S))s; see $log"
        fi
        failed+=("$t: $what")
    fi
    rows+=("$(printf '%-14s %8s %14s %8s' "$t" "$secs" "${execs:-?}" "$crashes")")
done

echo
printf '%-14s %8s %14s %8s\n' target seconds execs crashes
for r in "${rows[@]}"; do
    echo "$r"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo
    for f in "${failed[@]}"; do
        echo "fuzz: FAILED $f" >&2
    done
    echo "fuzz: reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run ${FLAGS[*]} <target> <file>" >&2
    exit 1
fi
