#!/usr/bin/env python3
"""Whole-cluster benchmark of muster against HashiCorp Serf agents, all on 127.0.0.1.

For each cluster size N (BENCH_SIZES), each repeat (BENCH_REPEATS) and each implementation
(BENCH_IMPLS: `muster agent --profile lan --insecure-gossip`, `serf agent -profile=lan`, both
gossiping in clear text), it starts N standalone agents on distinct loopback ports, waits until
each answers Serf's RPC (msgpack objects back to back over TCP, see shared/SERF-WIRE.md "Serf
RPC"), opens a `stream` subscription for `user` events on every node, and measures:

  join    t0: nodes 1..N-1 are asked at once (RPC `join`, pipelined) to join node 0. Done when
          every node's RPC `members` lists N members `alive`; every node is polled each
          BENCH_POLL_MS over persistent connections, and a node counts from the first poll that
          satisfied it.
  settle  after convergence, muster's nodes also merge their one-node raft clusters into one:
          the bench waits until every muster node's `GET /health` names the same raft leader
          and counts N members (voters + learners); then both implementations rest
          BENCH_SETTLE_S, so that rss and cpu see an idle cluster, not the end of the joins.
  rss     VmRSS (/proc/PID/status) of each agent after settling; median over agents.
  cpu     CPU time (the sum over the agent's threads of /proc/PID/task/TID/schedstat, in ns)
          over a BENCH_IDLE_S idle window after settling, as %
          of one core; median over agents.
  event   t0: one user event (Coalesce false) sent through node 0's RPC `event`. Done when every
          node's stream has delivered it.
  detect  t0: `kill -9` of the last node, at a random moment within one probe interval (1 s on
          lan) after the event, so that the kill does not fall at the same phase of the
          agents' probe rounds in every repeat (BENCH_SEED seeds the draw). Done when every
          survivor lists it `failed`.

Repeats of the implementations are interleaved so that machine noise hits both alike. A table
cell is the median over the repeats that finished; a wait longer than BENCH_TIMEOUT_S is
reported as a timeout, never waited out. Progress goes to stderr; the markdown table goes to
stdout and to the file BENCH_OUT names. Every agent is killed on exit, Ctrl-C and SIGTERM included (and
dies with this process through PR_SET_PDEATHSIG); live pids are listed in $BENCH_WORKDIR/pids.
"""
import collections
import contextlib
import json
import ctypes
import os
import random
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack

ENV = os.environ
SIZES = [int(n) for n in ENV.get("BENCH_SIZES", "3 10 30").split()]
REPEATS = int(ENV.get("BENCH_REPEATS", "5"))
IMPLS = ENV.get("BENCH_IMPLS", "muster serf").split()
TIMEOUT_S = float(ENV.get("BENCH_TIMEOUT_S", "120"))
IDLE_S = float(ENV.get("BENCH_IDLE_S", "10"))
SETTLE_S = float(ENV.get("BENCH_SETTLE_S", "5"))
PHASE = random.Random(ENV.get("BENCH_SEED", "1"))
POLL_S = float(ENV.get("BENCH_POLL_MS", "20")) / 1000
MUSTER_BIN = ENV.get("MUSTER_BIN", "")
SERF_BIN = ENV.get("SERF_BIN", "serf")
WORKDIR = ENV.get("BENCH_WORKDIR", "")  # bench.sh makes it; a direct run makes and removes one
LOAD_AT_START = os.getloadavg()[0]
PREFLIGHT_TIMEOUT_S = 20  # how long a lone agent may take to answer RPC before "unavailable"
METRICS = [("join", "join ms", "{:.0f}"), ("detect", "detect ms", "{:.0f}"),
           ("event", "event ms", "{:.1f}"), ("rss", "RSS MB", "{:.1f}"),
           ("cpu", "idle CPU %", "{:.2f}")]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchTimeout(Exception):
    """A wait took longer than BENCH_TIMEOUT_S."""


class RpcError(Exception):
    """The agent answered an RPC with an error, or not as the protocol says."""


class Rpc:
    """One Serf RPC connection: handshake on connect, then requests matched to replies by Seq."""

    def __init__(self, port, timeout_s=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
        self.seq = 0
        self.call("handshake", {"Version": 1})

    def send(self, command, body=None):
        """Writes one request (header, then body if any) and returns its Seq."""
        self.seq += 1
        data = msgpack.packb({"Command": command, "Seq": self.seq})
        if body is not None:
            data += msgpack.packb(body, use_bin_type=True)
        self.sock.sendall(data)
        return self.seq

    def feed(self):
        """Reads what the socket has (blocking up to its timeout) into the unpacker."""
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RpcError("connection closed by the agent")
        self.unpacker.feed(chunk)

    def read(self):
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                self.feed()

    def reply(self, seq, has_body):
        """Reads the response to `seq`: its header and, for commands that have one, its body."""
        header = self.read()
        if header.get("Seq") != seq:
            raise RpcError(f"reply Seq {header.get('Seq')} to request Seq {seq}")
        if header.get("Error"):
            raise RpcError(header["Error"])
        return self.read() if has_body else None

    def call(self, command, body=None, has_body=False):
        return self.reply(self.send(command, body), has_body)


PORT_MIN, PORT_SPAN = 20000, 12000  # below Linux's ephemeral range (32768+)
_next_port = PORT_MIN + os.getpid() % PORT_SPAN


def free_port():
    """A loopback port free for both TCP and UDP right now (gossip needs both)."""
    global _next_port
    while True:
        port, _next_port = _next_port, PORT_MIN + (_next_port + 1 - PORT_MIN) % PORT_SPAN
        try:
            with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the agent dies if the bench does


class Agent:
    """One agent process with its own ports, data dir and log file."""

    def __init__(self, impl, index, run_dir):
        self.impl, self.name = impl, ("b" if impl == "muster" else "g") + str(index)
        self.gossip, self.rpc = free_port(), free_port()
        self.log_path = os.path.join(run_dir, self.name + ".log")
        if impl == "muster":
            data_dir = os.path.join(run_dir, self.name)
            self.http = free_port()
            self.cmd = [MUSTER_BIN, "agent", "--node", self.name,
                        "--bind", f"127.0.0.1:{self.gossip}", "--http-addr", f"127.0.0.1:{self.http}",
                        "--rpc-addr", f"127.0.0.1:{self.rpc}", "--discovery", "serf",
                        "--data-dir", data_dir, "--profile", "lan",
                        # Like for like with the serf agents below, which gossip in clear text.
                        "--insecure-gossip"]
        else:
            self.cmd = [SERF_BIN, "agent", f"-node={self.name}", f"-bind=127.0.0.1:{self.gossip}",
                        f"-rpc-addr=127.0.0.1:{self.rpc}", "-profile=lan", "-log-level=warn"]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=dict(ENV, LOG_LEVEL="warn"),
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self.pid = self.proc.pid

    def log_tail(self, lines=3):
        with open(self.log_path, errors="replace") as f:
            return " / ".join(line.strip() for line in f.readlines()[-lines:]) or "(empty log)"

    def connect(self, deadline):
        """Waits until the agent answers an RPC handshake; returns the connection."""
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RpcError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                return Rpc(self.rpc)
            except (OSError, RpcError) as e:
                last = str(e) or type(e).__name__
            time.sleep(0.05)
        raise BenchTimeout(f"{self.name} did not answer RPC on 127.0.0.1:{self.rpc} ({last})")

    def kill(self):
        self.proc.kill()  # a no-op once the process has been reaped
        self.proc.wait()


@contextlib.contextmanager
def cluster(impl, n):
    """Starts N agents of one implementation; kills them (and removes their files) on exit."""
    run_dir, agents = tempfile.mkdtemp(prefix=f"{impl}-{n}-", dir=WORKDIR), []
    try:
        for i in range(n):
            agents.append(Agent(impl, i, run_dir))
        write_pids(agents)
        yield agents
    finally:
        for a in agents:
            a.kill()
        write_pids([])
        if ENV.get("BENCH_KEEP") != "1":
            shutil.rmtree(run_dir, ignore_errors=True)


def write_pids(agents):
    """Lists the live agents for bench.sh, which kills whatever is left if we die."""
    with open(os.path.join(WORKDIR, "pids"), "w") as f:
        f.writelines(f"{a.pid}\n" for a in agents)


def poll_members(conns, done_when, deadline, what):
    """Polls `members` on every connection (pipelined) each POLL_S until done_when(members)
    has held once for each; returns the time the last one first held."""
    done, last = {}, {}
    while len(done) < len(conns):
        if time.monotonic() > deadline:
            i = next(i for i in range(len(conns)) if i not in done)
            seen = collections.Counter(m["Status"] for m in last.get(i, []))
            raise BenchTimeout(f"{what}: {len(done)}/{len(conns)} nodes after {TIMEOUT_S:.0f}s; "
                               f"node {i} sees {dict(seen)}")
        tick = time.monotonic()
        pending = [(i, conns[i].send("members")) for i in range(len(conns)) if i not in done]
        for i, seq in pending:
            last[i] = conns[i].reply(seq, True)["Members"]
            if done_when(last[i]):
                done[i] = time.monotonic()
        time.sleep(max(0.0, tick + POLL_S - time.monotonic()))
    return max(done.values())


def raft_view(agent):
    """(leader, voters + learners) from a muster node's `GET /health`; None when it has none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.http}/health", timeout=2) as r:
            raft = json.load(r).get("raft") or {}
    except (OSError, ValueError):
        return None
    if not raft.get("leader"):
        return None
    return raft["leader"], raft.get("voters", 0) + raft.get("learners", 0)


def settle(impl, agents, deadline):
    """Waits until muster's raft clusters merged (one leader, N members seen by every node),
    then BENCH_SETTLE_S for every implementation."""
    if impl == "muster":
        while True:
            views = [raft_view(a) for a in agents]
            if all(views) and len({v[0] for v in views}) == 1 and all(v[1] == len(agents) for v in views):
                break
            if time.monotonic() > deadline:
                raise BenchTimeout(f"settle: raft views {collections.Counter(views)}")
            time.sleep(0.2)
    time.sleep(SETTLE_S)


def proc_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def proc_cpu_ns(pid):
    """CPU time of each thread of `pid` in nanoseconds, by thread id: the first field of
    /proc/PID/task/TID/schedstat (the scheduler's own account, not stat's 10 ms ticks)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
    return out


def cpu_between(before, after):
    """CPU seconds between two proc_cpu_ns samples: threads in both count their difference,
    threads born in between count whole; a thread that ended in between loses its last part."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def measure_event(conn0, streams, name, deadline):
    """Sends user event `name` through conn0; returns when every stream has delivered it."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(streams):
        sel.register(s.sock, selectors.EVENT_READ, i)
    sel.register(conn0.sock, selectors.EVENT_READ, "reply")
    got = {}
    t0 = time.monotonic()
    seq = conn0.send("event", {"Name": name, "Payload": b"bench", "Coalesce": False})
    while len(got) < len(streams):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchTimeout(f"event: {len(got)}/{len(streams)} streams after {TIMEOUT_S:.0f}s")
        for key, _ in sel.select(min(left, 1.0)):
            if key.data == "reply":
                sel.unregister(conn0.sock)
                conn0.reply(seq, False)  # raises if the agent refused the event
                continue
            stream = streams[key.data]
            stream.feed()
            for obj in stream.unpacker:
                if obj.get("Event") == "user" and obj.get("Name") == name:
                    got.setdefault(key.data, time.monotonic())
    sel.close()
    return (max(got.values()) - t0) * 1000


def run_once(impl, n, rep):
    """One repetition: returns {metric: value or error string}; stops at the first failure."""
    res = {}
    with cluster(impl, n) as agents:
        metric, conns, streams = "join", [], []
        try:
            deadline = time.monotonic() + TIMEOUT_S
            conns += [a.connect(deadline) for a in agents]
            streams += [a.connect(deadline) for a in agents]
            for s in streams:
                s.call("stream", {"Type": "user"})
                s.sock.setblocking(False)
            # join: all at once, then poll everyone's member list
            seed = f"127.0.0.1:{agents[0].gossip}"
            t0 = time.monotonic()
            joins = [(c, c.send("join", {"Existing": [seed], "Replay": False})) for c in conns[1:]]
            for c, seq in joins:
                c.reply(seq, True)
            alive = lambda ms: sum(m["Status"] == "alive" for m in ms) == n
            res["join"] = (poll_members(conns, alive, t0 + TIMEOUT_S, "join") - t0) * 1000
            # rss and idle cpu once the cluster settled
            metric = "settle"
            settle(impl, agents, time.monotonic() + TIMEOUT_S)
            metric = "rss"
            res["rss"] = statistics.median(proc_rss_mb(a.pid) for a in agents)
            metric = "cpu"
            before, t0 = [proc_cpu_ns(a.pid) for a in agents], time.monotonic()
            time.sleep(IDLE_S)
            after, elapsed = [proc_cpu_ns(a.pid) for a in agents], time.monotonic() - t0
            res["cpu"] = statistics.median(100 * cpu_between(a, b) / elapsed for a, b in zip(before, after))
            # user event through node 0, seen by every stream
            metric = "event"
            res["event"] = measure_event(conns[0], streams, f"bench-{n}-{rep}",
                                         time.monotonic() + TIMEOUT_S)
            # failure detection of the last node by every survivor
            metric = "detect"
            victim = agents[-1]
            failed = lambda ms: any(m["Name"] == victim.name and m["Status"] == "failed" for m in ms)
            time.sleep(PHASE.uniform(0.0, 1.0))
            t0 = time.monotonic()
            victim.kill()
            res["detect"] = (poll_members(conns[:-1], failed, t0 + TIMEOUT_S, "detect") - t0) * 1000
        except BenchTimeout as e:
            res[metric] = f"timeout ({e})"
        except (OSError, RpcError, KeyError) as e:
            res[metric] = f"error ({type(e).__name__}: {e})"
        for c in conns + streams:
            c.sock.close()
    return res


def preflight(impl):
    """None when one lone agent of `impl` starts and answers RPC `members`; else the reason."""
    if impl == "muster" and not (MUSTER_BIN and os.access(MUSTER_BIN, os.X_OK)):
        return f"MUSTER_BIN {MUSTER_BIN!r} is not an executable"
    try:
        with cluster(impl, 1) as agents:
            agent = agents[0]
            try:
                conn = agent.connect(time.monotonic() + PREFLIGHT_TIMEOUT_S)
            except BenchTimeout as e:
                hint = " (is src/serf_rpc served by node.rs?)" if impl == "muster" else ""
                return f"{e} within {PREFLIGHT_TIMEOUT_S}s{hint}; log: {agent.log_tail()}"
            members = conn.call("members", has_body=True)["Members"]
            conn.sock.close()
            if not any(m.get("Name") == agent.name for m in members):
                return f"`members` does not list the agent itself: {members!r}"
    except (OSError, RpcError, KeyError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def show(res, metric, fmt):
    value = res.get(metric, "-")
    return fmt.format(value) if isinstance(value, float) else value


def cell(results, metric, fmt):
    values = [r[metric] for r in results if isinstance(r.get(metric), float)]
    problems = [r.get(metric, "skipped") for r in results if not isinstance(r.get(metric), float)]
    if not values:
        return problems[0] if problems else "—"
    text = fmt.format(statistics.median(values))
    return text + (f" ({len(problems)}/{len(results)} failed: {problems[0]})" if problems else "")


def header():
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    return [
        f"# muster cluster benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, "
        f"Linux {os.uname().release}.",
        f"Workload: sizes {' '.join(map(str, SIZES))}, {REPEATS} repeats (medians), LAN profile, "
        f"127.0.0.1, members poll every {POLL_S * 1000:.0f} ms, settle {SETTLE_S:.0f} s, idle window {IDLE_S:.0f} s "
        f"(CPU time from each thread's schedstat, in ns), timeout {TIMEOUT_S:.0f} s.",
        f"Versions: {ENV.get('BENCH_VERSIONS', '?')}.",
        f"Load average (1 min) at start {LOAD_AT_START:.2f}, at end {os.getloadavg()[0]:.2f}; "
        "other work on the machine shows up as outliers (see the samples below the table).",
        "",
    ]


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unavailable = {}
    for impl in IMPLS:
        log(f"preflight {impl}")
        reason = preflight(impl)
        if reason:
            unavailable[impl] = reason
            log(f"{impl} unavailable: {reason}")
    results = {(impl, n): [] for impl in IMPLS for n in SIZES}
    for n in SIZES:
        for rep in range(REPEATS):
            for impl in (i for i in IMPLS if i not in unavailable):
                log(f"{impl} N={n} repeat {rep + 1}/{REPEATS} ...")
                res = run_once(impl, n, rep)
                results[(impl, n)].append(res)
                log(f"{impl} N={n} repeat {rep + 1}/{REPEATS}: " + ", ".join(
                    f"{m} {show(res, m, fmt)}" for m, _, fmt in METRICS)
                    + f" (load {os.getloadavg()[0]:.1f})")
    lines = header()
    lines.append("| impl | N | " + " | ".join(label for _, label, _ in METRICS) + " |")
    lines.append("|---|---:|" + "---:|" * len(METRICS))
    for impl in IMPLS:
        for n in SIZES:
            if impl in unavailable:
                cells = [f"unavailable: {unavailable[impl]}"] + [""] * (len(METRICS) - 1)
            else:
                cells = [cell(results[(impl, n)], m, fmt) for m, _, fmt in METRICS]
            lines.append(f"| {impl} | {n} | " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines += ["", "Samples, one per repeat in run order:", ""]
    for (impl, n), runs in results.items():
        if runs:
            lines.append(f"- {impl} N={n}: " + "; ".join(
                f"{m} " + " ".join(show(r, m, fmt) for r in runs) for m, _, fmt in METRICS))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if ENV.get("BENCH_OUT"):
        with open(ENV["BENCH_OUT"], "w") as f:
            f.write(text)
        log(f"table written to {ENV['BENCH_OUT']}")


if __name__ == "__main__":
    own_workdir = not WORKDIR
    WORKDIR = WORKDIR or tempfile.mkdtemp(prefix="muster-bench.")
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; agents killed")
        sys.exit(130)
    finally:
        if own_workdir and ENV.get("BENCH_KEEP") != "1":
            shutil.rmtree(WORKDIR, ignore_errors=True)
