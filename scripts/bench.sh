#!/usr/bin/env bash
# Whole-cluster benchmark of muster against the real `serf agent`, on 127.0.0.1 only: join
# convergence, failure detection, user-event propagation, RSS and idle CPU per agent, for
# clusters of BENCH_SIZES nodes, each repeated BENCH_REPEATS times (medians). The measuring is
# done by scripts/bench.py; its docstring says what is measured and how.
#
#   make bench                                             # builds the release binary first
#   BENCH_SIZES="3 10 30" BENCH_REPEATS=3 scripts/bench.sh
#   BENCH_IMPLS=serf BENCH_SIZES=3 BENCH_REPEATS=1 scripts/bench.sh
#
# Environment (defaults): MUSTER_BIN ($CARGO_TARGET_DIR/release/muster), SERF_BIN (serf),
# BENCH_IMPLS ("muster serf"), BENCH_SIZES ("3 10 30"), BENCH_REPEATS (5), BENCH_TIMEOUT_S (120,
# the bound on every wait), BENCH_SETTLE_S (5, the rest after convergence before rss and cpu), BENCH_IDLE_S (10), BENCH_POLL_MS (20), BENCH_SEED (1, the kill phases), BENCH_KEEP=1 keeps the work
# directory with every agent's log.
# Output: the markdown table on stdout and in $CARGO_TARGET_DIR/bench/cluster-<date>.md
# (/tmp/bench/ when CARGO_TARGET_DIR is unset); progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import msgpack' 2>/dev/null || python3 -m pip install -q msgpack
serf_bin="${SERF_BIN:-serf}"
command -v "$serf_bin" >/dev/null 2>&1 || { echo "bench: $serf_bin not found (scripts/deps.sh installs it)" >&2; exit 1; }

export MUSTER_BIN="${MUSTER_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/muster-target}/release/muster}"
rev="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
git diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
muster_version="$("$MUSTER_BIN" version 2>/dev/null || true)"
BENCH_VERSIONS="${muster_version:-muster ?} (tree $rev, $MUSTER_BIN); serf $("$serf_bin" version 2>/dev/null | sed -n 1p)"
export BENCH_VERSIONS

out_dir="${CARGO_TARGET_DIR:-/tmp}/bench"
mkdir -p "$out_dir"
BENCH_OUT="$out_dir/cluster-$(date -u +%Y%m%dT%H%M%SZ).md"
export BENCH_OUT
BENCH_WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/muster-bench.XXXXXX")"
export BENCH_WORKDIR

py_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$py_pid" ] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true   # bench.py kills its agents on SIGTERM
    wait "$py_pid" 2>/dev/null || true
  fi
  # Belt and braces: agents bench.py left alive are listed in $BENCH_WORKDIR/pids.
  if [ -f "$BENCH_WORKDIR/pids" ]; then
    while read -r pid; do
      if grep -qaE 'serf|muster' "/proc/$pid/cmdline" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done <"$BENCH_WORKDIR/pids"
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: work directory kept: $BENCH_WORKDIR" >&2; else rm -rf "$BENCH_WORKDIR"; fi
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

# Run a copy, so that a rebuild during the run (other work in the same target dir) cannot swap
# or remove the binary under the benchmark.
if [ -x "$MUSTER_BIN" ]; then cp "$MUSTER_BIN" "$BENCH_WORKDIR/muster" && MUSTER_BIN="$BENCH_WORKDIR/muster"; fi

# In the background so that the INT/TERM trap runs at once instead of after python exits.
python3 scripts/bench.py &
py_pid=$!
wait "$py_pid"
