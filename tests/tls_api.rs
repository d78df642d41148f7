//! The API port with TLS and tokens, against real `muster agent` processes on 127.0.0.1, the
//! real `grpcurl`, `curl`, `serf` and the muster CLI: raft only between nodes with a
//! certificate of the cluster CA, client certificates with `--verify-incoming`, token scopes on
//! gRPC, REST, WebSocket and Serf RPC, readable refusals of plain HTTP, and SIGHUP reloads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{muster_bin, wait_for, Muster};
use serde_json::Value;

const READ: &str = "rrrrrrrrrrrrrrrrrrrrrrrr";
const WRITE: &str = "wwwwwwwwwwwwwwwwwwwwwwww";
const OPERATOR: &str = "oooooooooooooooooooooooo";

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(muster_bin()).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "muster {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA in `dir` and the files of one certificate: (cert, key).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: PathBuf) -> Pki {
        std::fs::create_dir_all(&dir).unwrap();
        run(&dir, &["tls", "ca", "create"]);
        Pki { dir }
    }

    fn ca(&self) -> String {
        self.dir.join("muster-agent-ca.pem").display().to_string()
    }

    /// A new certificate: `kind` is --server, --client or --cli.
    fn cert(&self, kind: &str, node: Option<&str>) -> (String, String) {
        let mut args = vec!["tls", "cert", "create", kind];
        if let Some(n) = node {
            args.extend(["--node", n]);
        }
        let out = run(&self.dir, &args);
        let saved: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("==> Saved ")).collect();
        let path = |p: &str| self.dir.join(p.trim_start_matches("./")).display().to_string();
        (path(saved[0]), path(saved[1]))
    }

    /// `muster agent` flags for a node with this CA and a new server certificate.
    fn node_flags(&self, node: &str) -> Vec<String> {
        let (cert, key) = self.cert("--server", Some(node));
        vec!["--tls-cert".into(), cert, "--tls-key".into(), key, "--tls-ca".into(), self.ca()]
    }
}

fn start(name: &str, flags: &[String], client: &[String]) -> Muster {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Muster::start_client(name, &flags, client.to_vec())
}

/// The status of the node at `m` through the CLI (`muster status --json`).
fn status(m: &Muster) -> Result<Value, String> {
    let out = Command::new(muster_bin())
        .args(["status", "--json", "--addr", &m.http.to_string()])
        .args(&m.client)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Raft voter names in `m`'s status.
fn raft_names(m: &Muster) -> Vec<String> {
    let Ok(s) = status(m) else { return Vec::new() };
    let mut names: Vec<String> = ["voters"]
        .iter()
        .filter_map(|k| s[k].as_array())
        .flatten()
        .filter_map(|x| x["name"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

fn grpcurl(args: &[&str]) -> (bool, String) {
    let out = Command::new("grpcurl").args(["-max-time", "10"]).args(args).output().expect("run grpcurl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("run curl");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn raft_and_the_api_need_the_cluster_ca() {
    // Proves a TLS cluster forms raft over TLS and forwards a follower's write to the leader,
    // while a node with another CA's certificate and a node without TLS never enter raft, a
    // client certificate cannot make raft calls, and plain HTTP/h2c get a readable refusal.
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path().join("pki"));
    let client = vec!["--ca-cert".to_string(), pki.ca()];
    let a =
        start("ta", &[&["--profile".into(), "local".into()][..], &pki.node_flags("ta")].concat(), &client);
    let join = ["--join".to_string(), a.gossip.to_string()];
    let b_flags = [&["--profile".into(), "local".into()][..], &join, &pki.node_flags("tb")].concat();
    let b = start("tb", &b_flags, &client);
    let e_flags = [&["--profile".into(), "local".into()][..], &join, &pki.node_flags("te")].concat();
    let e = start("te", &e_flags, &client);
    wait_for(Duration::from_secs(30), "three voters over TLS", || {
        (raft_names(&a) == ["ta", "tb", "te"]).then_some(())
    });

    // A write through the follower (or the leader) is forwarded over TLS and lands.
    let out = Command::new(muster_bin())
        .args(["services", "register", "--addr", &b.http.to_string(), "--ca-cert", &pki.ca()])
        .args(["--name", "tls-svc", "--type", "http", "--host", "10.1.2.3", "--port", "80", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "register through tb: {}", String::from_utf8_lossy(&out.stderr));

    // Another CA's node certificate, same cluster name: gossip joins, raft never does.
    let foreign = Pki::new(tmp.path().join("foreign"));
    let c_flags = [&["--profile".into(), "local".into()][..], &join, &foreign.node_flags("tc")].concat();
    let c = start("tc", &c_flags, &["--ca-cert".to_string(), foreign.ca()]);
    // No TLS at all.
    let d = start("td", &["--profile".into(), "local".into(), join[0].clone(), join[1].clone()], &[]);
    wait_for(Duration::from_secs(20), "tc and td alive in ta's gossip", || {
        (a.status_of("tc").as_deref() == Some("alive") && a.status_of("td").as_deref() == Some("alive"))
            .then_some(())
    });
    // The leader may list them as learners, but it cannot replicate to them, so they never
    // vote, and they never learn of its leadership.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(raft_names(&a), ["ta", "tb", "te"], "only the CA's nodes vote");
    let ours = |name: Option<&str>| matches!(name, Some("ta" | "tb" | "te"));
    let leader_of = |m: &Muster| status(m).ok().and_then(|s| s["leader"]["name"].as_str().map(String::from));
    assert!(ours(leader_of(&a).as_deref()));
    assert!(!ours(leader_of(&c).as_deref()), "tc follows no leader of ta's cluster");
    let d_status = Command::new(muster_bin())
        .args(["status", "--json", "--addr", &d.http.to_string()])
        .output()
        .unwrap();
    let d_leader = serde_json::from_slice::<Value>(&d_status.stdout)
        .map(|s| s["leader"]["name"].clone())
        .unwrap_or_default();
    assert!(!ours(d_leader.as_str()), "td follows no leader of ta's cluster: {d_leader}");

    // Raft calls: a client certificate of the right CA is not a node's.
    let (cert, key) = pki.cert("--client", None);
    let addr = a.http.to_string();
    let (ok, text) = grpcurl(&[
        "-cacert",
        &pki.ca(),
        "-cert",
        &cert,
        "-key",
        &key,
        "-d",
        "{}",
        &addr,
        "muster.raft.v1.Raft/Vote",
    ]);
    assert!(!ok && text.contains("PermissionDenied"), "{text}");
    assert!(text.contains("need a node certificate of cluster 'muster'"), "{text}");
    assert!(text.contains("showed a certificate for client.muster.muster"), "{text}");
    // The foreign node's certificate: Go's TLS does not offer a certificate the server's CA list
    // does not name, so the call arrives without one (or fails in the handshake).
    let (fcert, fkey) = foreign.cert("--server", Some("tx"));
    let (ok, text) = grpcurl(&[
        "-cacert",
        &pki.ca(),
        "-cert",
        &fcert,
        "-key",
        &fkey,
        "-d",
        "{}",
        &addr,
        "muster.raft.v1.Raft/Vote",
    ]);
    assert!(!ok && (text.contains("showed no certificate") || text.contains("Failed to dial")), "{text}");

    // Plain HTTP and h2c on the TLS port: a readable refusal.
    let body = curl(&[&format!("http://{addr}/health")]);
    assert!(body.contains("this port speaks TLS only"), "{body}");
    let (ok, text) = grpcurl(&["-plaintext", &addr, "list"]);
    assert!(!ok && text.contains("Unavailable") && text.contains("this port speaks TLS only"), "{text}");
    // With the CA, curl reads /health (open to anyone).
    let body = curl(&["--cacert", &pki.ca(), &format!("https://{addr}/health")]);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    drop((c, d, e));
}

/// `base`, then `-H "authorization: Bearer TOKEN"` when there is a token, then `tail`: the
/// arguments of a grpcurl or curl call with or without a token.
fn with_bearer(base: &[&str], token: Option<&str>, tail: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    if let Some(t) = token {
        args.extend(["-H".to_string(), format!("authorization: Bearer {t}")]);
    }
    args.extend(tail.iter().map(|s| s.to_string()));
    args
}

fn write_tokens(path: &Path, lines: &str) {
    std::fs::write(path, lines).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

#[test]
fn client_certificates_and_token_scopes_on_every_api() {
    // Proves --verify-incoming refuses a client without a certificate and serves one with a
    // CA certificate; with --tokens-file a token-less write is refused, a read token reads but
    // cannot write, a write token writes, on gRPC, REST, WebSocket and Serf RPC; SIGHUP reloads
    // the tokens file and the certificate.
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path().join("pki"));
    let tokens = tmp.path().join("tokens");
    write_tokens(&tokens, &format!("reader read {READ}\nwriter write {WRITE}\nops operator {OPERATOR}\n"));
    let (cli_cert, cli_key) = pki.cert("--cli", None);
    let client = vec![
        "--ca-cert".to_string(),
        pki.ca(),
        "--client-cert".into(),
        cli_cert.clone(),
        "--client-key".into(),
        cli_key.clone(),
        "--token".into(),
        READ.into(),
    ];
    let node_flags = pki.node_flags("v1");
    let flags = [
        &["--profile".into(), "local".into(), "--verify-incoming".into()][..],
        &["--tokens-file".into(), tokens.display().to_string()],
        &node_flags,
    ]
    .concat();
    let m = start("v1", &flags, &client);
    let addr = m.http.to_string();
    let ca = pki.ca();
    let tls = ["-cacert", ca.as_str(), "-cert", cli_cert.as_str(), "-key", cli_key.as_str()];

    // gRPC: no client certificate → refused in the handshake; with one → served.
    let (ok, text) = grpcurl(&["-cacert", &ca, &addr, "list"]);
    // TLS 1.3: the refusal is an alert after the client's Finished; Go sees either the alert
    // or the closed connection.
    assert!(!ok && (text.contains("certificate required") || text.contains("Failed to dial")), "{text}");
    assert!(m.log_text().contains("TLS handshake failed"), "the node logs why");
    let (ok, text) = grpcurl(&[&tls[..], &[&addr, "list"]].concat());
    assert!(ok && text.contains("muster.registry.v1.Registry"), "{text}");

    // gRPC scopes.
    let register = r#"{"name":"tok-svc","type":"http","host":"10.0.0.9","port":8080}"#;
    let reg = |auth: Option<&str>| {
        let args = with_bearer(&tls, auth, &["-d", register, &addr, "muster.registry.v1.Registry/Register"]);
        grpcurl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, text) = reg(None);
    assert!(
        !ok && text.contains("Unauthenticated") && text.contains("needs a token with scope write"),
        "{text}"
    );
    let (ok, text) = reg(Some("not-a-token-not-a-token"));
    assert!(!ok && text.contains("Unauthenticated") && text.contains("not valid on this node"), "{text}");
    let (ok, text) = reg(Some(READ));
    assert!(
        !ok && text.contains("PermissionDenied") && text.contains("token 'reader' has scope read"),
        "{text}"
    );
    let (ok, text) = reg(Some(WRITE));
    assert!(ok, "{text}");
    let list = |auth: &str| {
        let h = format!("authorization: Bearer {auth}");
        grpcurl(&[&tls[..], &["-H", &h, "-d", "{}", &addr, "muster.registry.v1.Registry/List"]].concat())
    };
    let (ok, text) = list(READ);
    assert!(ok && text.contains("tok-svc"), "{text}");
    let (ok, text) = grpcurl(&[&tls[..], &["-d", "{}", &addr, "muster.registry.v1.Registry/List"]].concat());
    assert!(!ok && text.contains("needs a token with scope read"), "{text}");

    // The CLI with a read token reads; its write is refused with the reason.
    let out = Command::new(muster_bin())
        .args(["services", "list", "--addr", &addr])
        .args(&m.client)
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tok-svc"));
    let out = Command::new(muster_bin())
        .args(["services", "deregister", "--addr", &addr])
        .args(&m.client)
        .arg("tok-svc")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("PERMISSION_DENIED"), "{err}");

    // REST.
    let url = |p: &str| format!("https://{addr}{p}");
    let rest = ["--cacert", ca.as_str(), "--cert", cli_cert.as_str(), "--key", cli_key.as_str()];
    let body = r#"{"name":"rest-svc","type":"http","host":"10.0.0.8","port":81}"#;
    let post = |auth: Option<&str>| {
        let u = url("/api/v1/services/register");
        let tail = ["-w", " %{http_code}", "-H", "content-type: application/json", "-d", body, &u];
        let args = with_bearer(&rest, auth, &tail);
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = post(None);
    assert!(out.ends_with(" 401") && out.contains("needs a token with scope write"), "{out}");
    let out = post(Some(READ));
    assert!(
        out.ends_with(" 403") && out.contains("token 'reader' has scope read; this call needs write"),
        "{out}"
    );
    let out = post(Some(WRITE));
    assert!(out.ends_with(" 201") && out.contains("rest-svc"), "{out}");
    let out = curl(&[&rest[..], &["-w", " %{http_code}", &url("/api/v1/services")]].concat());
    assert!(out.ends_with(" 401"), "{out}");
    let h = format!("Authorization: Bearer {READ}");
    let out = curl(&[&rest[..], &["-H", &h, &url("/api/v1/services")]].concat());
    assert!(out.contains("rest-svc") && out.contains("tok-svc"), "{out}");
    // Health stays open.
    let out = curl(&[&rest[..], &[&url("/health")]].concat());
    assert!(out.contains("\"status\":\"ok\""), "{out}");

    // WebSocket: without a token 401; with ?token= the upgrade succeeds.
    let ws = |query: &str| {
        let u = url(&format!("/api/v1/ws{query}"));
        let extra = [
            "--http1.1",
            "-i",
            "--max-time",
            "2",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ];
        curl(&[&rest[..], &extra[..], &[&u]].concat())
    };
    let out = ws("");
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    let out = ws(&format!("?token={READ}"));
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");

    // Serf RPC: tokens authenticate, scopes hold.
    let rpc = format!("-rpc-addr={}", m.rpc);
    let serf = |args: &[&str]| {
        let out = Command::new("serf").args(args).output().expect("run serf");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = serf(&["members", &rpc]);
    assert!(!ok && text.contains("Authentication required"), "{text}");
    let (ok, text) = serf(&["members", &rpc, &format!("-rpc-auth={READ}")]);
    assert!(ok && text.contains("v1"), "{text}");
    let (ok, text) = serf(&["event", &rpc, &format!("-rpc-auth={READ}"), "deploy"]);
    assert!(
        !ok && text.contains("Permission denied: the token's scope is read; event needs write"),
        "{text}"
    );
    let (ok, text) = serf(&["event", &rpc, &format!("-rpc-auth={WRITE}"), "deploy"]);
    assert!(ok, "{text}");
    let (ok, text) = serf(&["force-leave", &rpc, &format!("-rpc-auth={WRITE}"), "nobody"]);
    assert!(!ok && text.contains("force-leave needs operator"), "{text}");

    // SIGHUP: a new tokens file replaces the old one.
    let fresh = "ffffffffffffffffffffffff";
    write_tokens(&tokens, &format!("fresh write {fresh}\n"));
    m.proc.signal("HUP");
    wait_for(Duration::from_secs(10), "the reload", || {
        m.log_text().contains("auth: tokens reloaded").then_some(())
    });
    assert!(list(fresh).0, "the new token reads");
    let (ok, text) = list(READ);
    assert!(!ok && text.contains("not valid on this node"), "the removed token is refused: {text}");
    // A broken file keeps the tokens in use.
    write_tokens(&tokens, "broken line\n");
    m.proc.signal("HUP");
    wait_for(Duration::from_secs(10), "the failed reload", || {
        m.log_text().contains("auth: tokens reload failed").then_some(())
    });
    assert!(list(fresh).0, "the tokens in use stay");

    // SIGHUP: a new certificate at the same path is served to new connections.
    let before = served_cert(&addr, &ca, &cli_cert, &cli_key);
    let (cert, key) = pki.cert("--server", Some("v1"));
    std::fs::copy(&cert, &node_flags[1]).unwrap();
    std::fs::copy(&key, &node_flags[3]).unwrap();
    // Every SIGHUP reloads both; this is the third.
    m.proc.signal("HUP");
    wait_for(Duration::from_secs(10), "the certificate reload", || {
        (m.log_text().matches("tls: reloaded").count() == 3).then_some(())
    });
    let after = served_cert(&addr, &ca, &cli_cert, &cli_key);
    assert_ne!(before, after, "a new certificate is served");
    assert_eq!(after, pem_der(Path::new(&node_flags[1])));
    assert!(m.proc.log_text().contains("tls: reloaded"), "and the node kept running");
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// The certificate the node at `addr` serves to a new TLS connection.
fn served_cert(addr: &str, ca: &str, cert: &str, key: &str) -> Vec<u8> {
    let config =
        muster::tls::live::client_config(Path::new(ca), Some((Path::new(cert), Path::new(key))), &[b"h2"])
            .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    })
}

#[test]
fn token_create_prints_or_appends_a_valid_line() {
    // Proves `muster token create` prints a NAME SCOPE SECRET line, appends to a 0600 file,
    // refuses a duplicate name and a bad name, and that a node accepts the file it wrote.
    let tmp = tempfile::tempdir().unwrap();
    let line = run(tmp.path(), &["token", "create", "--name", "ci", "--scope", "write"]);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[..2], ["ci", "write"]);
    assert_eq!(fields[2].len(), 43);
    let file = tmp.path().join("tokens");
    let f = file.display().to_string();
    let out = run(tmp.path(), &["token", "create", "--name", "ci", "--scope", "read", "--file", &f]);
    assert!(out.starts_with("==> Added token 'ci' (read) to "), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let again = Command::new(muster_bin())
        .args(["token", "create", "--name", "ci", "--scope", "write", "--file", &f])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("line 2: token name 'ci' appears twice"));
    let bad = Command::new(muster_bin())
        .args(["token", "create", "--name", "b d", "--scope", "read"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--name: token name 'b d': use 1 to 64 of"));
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 1, "nothing written on refusal");
    let secret = std::fs::read_to_string(&file).unwrap().split_whitespace().nth(2).unwrap().to_string();
    let client = vec!["--token".to_string(), secret];
    let m = start("tk", &["--profile".into(), "local".into(), "--tokens-file".into(), f], &client);
    assert!(m.try_members().is_ok(), "the read token reads");
}
