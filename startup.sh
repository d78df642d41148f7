#!/usr/bin/env bash
# Runs the muster node of this host in the background and looks after it.
#
#   ./startup.sh start      start `muster agent` (refused when it already runs), wait until its
#                           /health answers, print its status
#   ./startup.sh status     the node's raft view (`muster status`) and stack (`muster stack
#                           status`); exit 3 when the node is not running
#   ./startup.sh monitor    status every 2 s until Ctrl-C (or for MONITOR_SECS seconds)
#   ./startup.sh stop       SIGTERM, wait for the node to leave the cluster and stop its stack,
#                           SIGKILL after STOP_TIMEOUT seconds
#
# The node's settings come from the environment, as muster reads them: MUSTER_NODE, SERF_JOIN,
# ROLE, DISCOVERY_BACKEND, MUSTER_ENCRYPT, MUSTER_KEYRING_FILE, MUSTER_STACK_FILE, MUSTER_BIND,
# MUSTER_ADVERTISE, MUSTER_HTTP_ADDR, MUSTER_RPC_ADDR, MUSTER_PROFILE, MUSTER_STACK_STOP_TIMEOUT,
# LOG_LEVEL, LOG_FORMAT, ... (see `muster agent --help`). The lan and wan profiles (lan is the
# default) encrypt gossip: give every host of the fleet the same MUSTER_ENCRYPT key (`muster
# keygen` makes one) the first time; once the node has run, its data dir keeps the keyring.
# This script adds:
#   MUSTER_DATA_DIR  the node's data directory (default ./data); the pid file muster.pid, the log
#                    muster.log and the API address muster.addr are kept there
#   MUSTER_BIN       the muster binary (default $CARGO_TARGET_DIR/release/muster when built,
#                    else `muster` on PATH)
#   START_TIMEOUT    seconds `start` waits for /health (default 30)
#   STOP_TIMEOUT     seconds `stop` waits after SIGTERM before SIGKILL (default 30)
#   MONITOR_SECS     seconds `monitor` runs (default: until Ctrl-C)
set -euo pipefail

prog="$(basename "$0")"

usage() {
    cat <<EOF
usage: $prog start|status|monitor|stop

  start    run the muster node in the background (settings from the environment)
  status   show the node's status and its Docker stack (exit 3 when it is not running)
  monitor  show the status every 2 s until Ctrl-C (MONITOR_SECS bounds it)
  stop     stop the node: SIGTERM, then SIGKILL after STOP_TIMEOUT (30) seconds
EOF
}

die() {
    echo "$prog: $*" >&2
    exit 1
}

# A whole number of seconds from the environment variable $1, else the default $2.
seconds() {
    local value="${!1:-$2}"
    [[ "$value" =~ ^[0-9]+$ ]] || die "$1 must be a whole number of seconds, not '$value'"
    echo "$value"
}

data_dir="${MUSTER_DATA_DIR:-./data}"
pid_file="$data_dir/muster.pid"
log_file="$data_dir/muster.log"
addr_file="$data_dir/muster.addr"

# The muster binary: $MUSTER_BIN, else the release build, else muster on PATH.
muster_bin() {
    if [[ -n "${MUSTER_BIN:-}" ]]; then
        [[ -x "$MUSTER_BIN" ]] || die "MUSTER_BIN=$MUSTER_BIN is not an executable file"
        echo "$MUSTER_BIN"
    elif [[ -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/release/muster" ]]; then
        echo "$CARGO_TARGET_DIR/release/muster"
    elif command -v muster >/dev/null 2>&1; then
        command -v muster
    else
        die "no muster binary: set MUSTER_BIN, build one with 'make release', or 'make install'"
    fi
}

# The address a client on this host uses for the API listener $1 (flag syntax of --http-addr):
# an unspecified IP becomes loopback, a bare IP gets port 9999, ":PORT" means 127.0.0.1.
client_addr() {
    local addr="$1"
    case "$addr" in
        :*) addr="127.0.0.1$addr" ;;
        \[*\]:*) ;;
        \[*\]) addr="$addr:9999" ;;
        *:*:*) addr="[$addr]:9999" ;;
        *:*) ;;
        *) addr="$addr:9999" ;;
    esac
    case "$addr" in
        0.0.0.0:*) addr="127.0.0.1:${addr#0.0.0.0:}" ;;
        \[::\]:*) addr="[::1]:${addr#\[::\]:}" ;;
    esac
    echo "$addr"
}

# The pid of the running node, or nothing. A pid file whose process is gone, or is no longer a
# muster agent (the pid was reused), is stale and is removed.
running_pid() {
    [[ -f "$pid_file" ]] || return 0
    local pid
    pid="$(tr -dc '0-9' <"$pid_file")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' agent '; then
        echo "$pid"
    else
        rm -f "$pid_file"
    fi
}

# The API address the running node was started with (recorded by `start`).
node_addr() {
    if [[ -s "$addr_file" ]]; then
        cat "$addr_file"
    else
        client_addr "${MUSTER_HTTP_ADDR:-0.0.0.0:9999}"
    fi
}

healthy() {
    curl -fsS --max-time 2 -o /dev/null "http://$1/health" 2>/dev/null
}

cmd_start() {
    local bin pid addr start_timeout deadline log_lines
    start_timeout="$(seconds START_TIMEOUT 30)"
    pid="$(running_pid)"
    [[ -z "$pid" ]] || die "muster is already running (pid $pid, data dir $data_dir); './$prog stop' first"
    bin="$(muster_bin)"
    command -v curl >/dev/null || die "curl is needed to wait for the node's /health"
    mkdir -p "$data_dir"
    data_dir="$(cd "$data_dir" && pwd)"
    pid_file="$data_dir/muster.pid"
    log_file="$data_dir/muster.log"
    addr_file="$data_dir/muster.addr"
    addr="$(client_addr "${MUSTER_HTTP_ADDR:-0.0.0.0:9999}")"

    echo "starting muster: $bin agent --data-dir $data_dir (log: $log_file)"
    echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) $prog start" >>"$log_file"
    log_lines="$(wc -l <"$log_file")"
    nohup "$bin" agent --data-dir "$data_dir" >>"$log_file" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_file"
    echo "$addr" >"$addr_file"

    deadline=$((SECONDS + start_timeout))
    until healthy "$addr"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file"
            echo "$prog: muster exited during start; its log ($log_file) ends:" >&2
            tail -n "+$((log_lines + 1))" "$log_file" | tail -n 20 >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "$prog: muster (pid $pid) runs, but http://$addr/health did not answer within" \
                "${start_timeout}s; it may still be looking for its cluster (see $log_file)" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "muster is running (pid $pid), API at $addr"
    # Give the cluster a moment to elect its server, so the status below shows it.
    deadline=$((SECONDS + 10))
    until curl -fsS --max-time 2 "http://$addr/health" 2>/dev/null | grep -q '"leader":"[^"]'; do
        if ((SECONDS >= deadline)); then
            echo "no server is elected yet; './$prog status' shows when there is one"
            break
        fi
        sleep 0.5
    done
    echo
    "$bin" status --addr "$addr"
}

cmd_status() {
    local pid addr bin rc=0
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        echo "muster is not running (no live pid in $pid_file)"
        exit 3
    fi
    bin="$(muster_bin)"
    addr="$(node_addr)"
    echo "muster is running (pid $pid), API at $addr, data dir $data_dir"
    echo
    "$bin" status --addr "$addr" || rc=1
    echo
    "$bin" stack status --addr "$addr" || rc=1
    return "$rc"
}

cmd_monitor() {
    local monitor_secs deadline=0
    monitor_secs="$(seconds MONITOR_SECS 0)"
    ((monitor_secs == 0)) || deadline=$((SECONDS + monitor_secs))
    trap 'echo; exit 0' INT TERM
    while :; do
        if [[ -t 1 ]]; then
            printf '\033[H\033[2J'
        fi
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ)  (every 2 s; Ctrl-C ends)"
        (cmd_status) || true
        if ((deadline > 0 && SECONDS >= deadline)); then
            break
        fi
        sleep 2
    done
}

cmd_stop() {
    local pid stop_timeout deadline
    stop_timeout="$(seconds STOP_TIMEOUT 30)"
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        echo "muster is not running"
        return 0
    fi
    echo "stopping muster (pid $pid): SIGTERM, waiting up to ${stop_timeout}s"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + stop_timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "$prog: muster (pid $pid) did not stop within ${stop_timeout}s: SIGKILL;" \
                "its stack containers may be left running ('make emergency-stop' removes them)" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    rm -f "$pid_file"
    echo "muster stopped"
}

case "${1:-}" in
    start) cmd_start ;;
    status) cmd_status ;;
    monitor) cmd_monitor ;;
    stop) cmd_stop ;;
    -h | --help | help) usage ;;
    "")
        usage >&2
        exit 2
        ;;
    *)
        echo "$prog: unknown command '$1'" >&2
        usage >&2
        exit 2
        ;;
esac
