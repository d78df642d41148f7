//! `muster tls` as an operator runs it: the real binary makes a CA and a server certificate in
//! a temporary directory; the files, their modes and contents, and the refusals on a second run
//! and on bad input are checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use common::muster_bin;

fn muster(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(muster_bin()).args(args).current_dir(dir).output().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn ca_then_server_cert_then_refusals() {
    // Proves `tls ca create` and `tls cert create --server --node n1 --san 10.0.0.5` write the
    // consul-like files with 0600 keys, the certificate carries the SANs, a second CA run
    // refuses and changes nothing, a second cert run takes index 1, and bad input writes nothing.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = muster(d, &["tls", "ca", "create"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "==> Saved ./muster-agent-ca.pem\n==> Saved ./muster-agent-ca-key.pem\n");
    assert_eq!(mode(&d.join("muster-agent-ca-key.pem")), 0o600);
    assert_eq!(mode(&d.join("muster-agent-ca.pem")), 0o644);

    let out = muster(d, &["tls", "cert", "create", "--server", "--node", "n1", "--san", "10.0.0.5"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "==> Using muster-agent-ca.pem and muster-agent-ca-key.pem\n\
         ==> Saved ./muster-server-muster-0.pem\n==> Saved ./muster-server-muster-0-key.pem\n"
    );
    assert_eq!(mode(&d.join("muster-server-muster-0-key.pem")), 0o600);
    assert_eq!(mode(&d.join("muster-server-muster-0.pem")), 0o644);
    let pem = std::fs::read(d.join("muster-server-muster-0.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let sans = format!("{:?}", cert.subject_alternative_name().unwrap().unwrap().value.general_names);
    for want in ["server.muster.muster", "localhost", "[127, 0, 0, 1]", "\"n1\"", "[10, 0, 0, 5]"] {
        assert!(sans.contains(want), "{want} missing from {sans}");
    }

    let ca_before = std::fs::read(d.join("muster-agent-ca-key.pem")).unwrap();
    let out = muster(d, &["tls", "ca", "create"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "muster: ./muster-agent-ca.pem already exists; refusing to overwrite it (move it away, or pass --force)\n"
    );
    assert_eq!(std::fs::read(d.join("muster-agent-ca-key.pem")).unwrap(), ca_before);

    let out = muster(d, &["tls", "cert", "create", "--server", "--node", "n2"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("muster-server-muster-1.pem"));

    let before = listing(d);
    let out = muster(d, &["tls", "cert", "create", "--server", "--node", "n3", "--san", "not a name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid value for --san: \"not a name\""), "{}", text(&out.stderr));
    let out = muster(d, &["tls", "cert", "create", "--client", "--ca", "nope.pem"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the CA certificate nope.pem"), "{}", text(&out.stderr));
    let out = muster(d, &["tls", "cert", "create", "--node", "n3"]);
    assert_eq!(out.status.code(), Some(2), "clap requires one of --server, --client, --cli");
    let out = muster(d, &["tls", "cert", "create", "--server", "--client", "--node", "n3"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses two kinds");
    assert_eq!(listing(d), before);
}
