//! Unit tests of `muster tls`: the certificates' contents (SANs, EKUs, validity, CA-ness), the
//! CA checks, and the files (names, indices, modes, refusal to overwrite, nothing on error).

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::certs::{self, NAME_CONSTRAINTS_DEFAULT, NOT_BEFORE_SKEW_S};
use super::*;

/// 2025-01-02T03:04:05Z.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_735_787_045).unwrap()
}

fn ca_spec() -> CaSpec {
    CaSpec { common_name: "Muster Agent CA 1".into(), days: 1825, permitted_dns: Vec::new() }
}

fn server_spec(node: &str, sans: &[&str]) -> LeafSpec {
    LeafSpec {
        kind: LeafKind::Server,
        node: Some(node.into()),
        cluster: "muster".into(),
        extra_sans: sans.iter().map(|s| s.to_string()).collect(),
        days: 365,
    }
}

fn der(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    pem.contents
}

fn with_cert<R>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let der = der(pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    f(&cert)
}

/// The SANs as strings: DNS names as they are, IP addresses formatted.
fn sans(pem: &str) -> Vec<String> {
    with_cert(pem, |c| {
        let san = c.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                }
                GeneralName::IPAddress(b) => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    })
}

/// (serverAuth, clientAuth)
fn ekus(pem: &str) -> (bool, bool) {
    with_cert(pem, |c| {
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(!eku.any && !eku.code_signing && !eku.email_protection);
        (eku.server_auth, eku.client_auth)
    })
}

fn ca_and_leaf(spec: &LeafSpec) -> (PemPair, PemPair) {
    let ca = certs::create_ca(&ca_spec(), now()).unwrap();
    let loaded = certs::load_ca(&ca.cert_pem, &ca.key_pem).unwrap();
    (ca.clone(), certs::create_leaf(spec, &loaded, now()).unwrap())
}

#[test]
fn ca_is_a_self_signed_p256_ca_with_the_asked_validity() {
    // Proves the CA is CA:TRUE with path length 0, ECDSA P-256, self-signed, and valid from
    // now minus the skew for exactly --days.
    let ca = certs::create_ca(&ca_spec(), now()).unwrap();
    assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    with_cert(&ca.cert_pem, |c| {
        let bc = c.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        assert!(c.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert_eq!(c.subject().to_string(), "CN=Muster Agent CA 1");
        assert_eq!(c.issuer(), c.subject());
        assert_eq!(c.public_key().algorithm.algorithm, oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY);
        let curve = c.public_key().algorithm.parameters.as_ref().unwrap().as_oid().unwrap();
        assert_eq!(curve, oid_registry::OID_EC_P256);
        c.verify_signature(None).unwrap();
        assert_eq!(c.validity().not_before.to_datetime(), now() - Duration::seconds(NOT_BEFORE_SKEW_S));
        assert_eq!(c.validity().not_after.to_datetime(), now() + Duration::days(1825));
        assert!(c.name_constraints().unwrap().is_none());
    });
}

#[test]
fn server_cert_has_consul_like_sans_both_ekus_and_the_ca_signature() {
    // Proves a server certificate names its role, localhost, 127.0.0.1, the node and every
    // --san (IPs as IP SANs), allows serverAuth and clientAuth, is no CA and verifies with the CA.
    let (ca, leaf) = ca_and_leaf(&server_spec("n1", &["10.0.0.5", "n1.example.org", "::1"]));
    assert_eq!(
        sans(&leaf.cert_pem),
        ["server.muster.muster", "localhost", "127.0.0.1", "n1", "10.0.0.5", "n1.example.org", "::1"]
    );
    assert_eq!(ekus(&leaf.cert_pem), (true, true));
    let ca_der = der(&ca.cert_pem);
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    with_cert(&leaf.cert_pem, |c| {
        assert!(!c.basic_constraints().unwrap().unwrap().value.ca);
        assert_eq!(c.issuer(), ca_cert.subject());
        assert_eq!(c.subject().to_string(), "CN=server.muster.muster");
        c.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(c.validity().not_after.to_datetime(), now() + Duration::days(365));
    });
}

#[test]
fn client_and_cli_certs_are_client_auth_only() {
    // Proves --client and --cli certificates carry their role name (plus --node and --san if
    // given) and only the clientAuth usage, in the asked cluster.
    let mut spec = server_spec("ignored", &[]);
    spec.kind = LeafKind::Client;
    spec.node = None;
    spec.cluster = "prod".into();
    let (_, leaf) = ca_and_leaf(&spec);
    assert_eq!(sans(&leaf.cert_pem), ["client.prod.muster"]);
    assert_eq!(ekus(&leaf.cert_pem), (false, true));
    spec.kind = LeafKind::Cli;
    spec.node = Some("laptop".into());
    spec.extra_sans = vec!["192.168.1.9".into()];
    let (_, leaf) = ca_and_leaf(&spec);
    assert_eq!(sans(&leaf.cert_pem), ["cli.client.prod.muster", "laptop", "192.168.1.9"]);
    assert_eq!(ekus(&leaf.cert_pem), (false, true));
}

fn bad_flag(result: Result<impl std::fmt::Debug, CertError>) -> &'static str {
    match result {
        Err(CertError::BadFlag { flag, .. }) => flag,
        other => panic!("expected a flag error, got {other:?}"),
    }
}

#[test]
fn bad_input_names_the_flag() {
    // Proves days 0 or too many, a malformed SAN, a missing or malformed node and a bad
    // cluster name are refused with the flag they came from.
    let ca = certs::create_ca(&ca_spec(), now()).unwrap();
    let ca = certs::load_ca(&ca.cert_pem, &ca.key_pem).unwrap();
    let leaf = |spec: LeafSpec| certs::create_leaf(&spec, &ca, now());
    assert_eq!(bad_flag(leaf(LeafSpec { days: 0, ..server_spec("n1", &[]) })), "days");
    assert_eq!(bad_flag(leaf(LeafSpec { days: 36_501, ..server_spec("n1", &[]) })), "days");
    assert_eq!(bad_flag(leaf(server_spec("n1", &["bad name!"]))), "san");
    assert_eq!(bad_flag(leaf(server_spec("n1", &["10.0.0.300"]))), "san");
    assert_eq!(bad_flag(leaf(server_spec("n1", &[""]))), "san");
    assert_eq!(bad_flag(leaf(server_spec("n_1", &[]))), "node");
    assert_eq!(bad_flag(leaf(LeafSpec { node: None, ..server_spec("n1", &[]) })), "node");
    assert_eq!(bad_flag(leaf(LeafSpec { cluster: "a/b".into(), ..server_spec("n1", &[]) })), "cluster");
    assert_eq!(bad_flag(certs::create_ca(&CaSpec { days: 0, ..ca_spec() }, now())), "days");
    let err = leaf(server_spec("n1", &["bad name!"])).unwrap_err().to_string();
    assert_eq!(err, "invalid value for --san: \"bad name!\" is neither an IP address nor a DNS name");
}

#[test]
fn load_ca_refuses_garbage_a_leaf_and_a_foreign_key() {
    // Proves a CA that cannot sign is refused before anything is made: not PEM, a key that is
    // not a key, a leaf certificate as the CA, and a key of another CA.
    let (ca, leaf) = ca_and_leaf(&server_spec("n1", &[]));
    let other = certs::create_ca(&ca_spec(), now()).unwrap();
    let err = |c: &str, k: &str| certs::load_ca(c, k).unwrap_err();
    assert!(matches!(err("not a pem", &ca.key_pem), CertError::CaCert { .. }));
    assert!(matches!(err(&ca.cert_pem, "not a key"), CertError::CaKey { .. }));
    assert!(matches!(err(&leaf.cert_pem, &leaf.key_pem), CertError::NotCa));
    assert!(matches!(err(&ca.cert_pem, &other.key_pem), CertError::CaMismatch));
}

#[test]
fn name_constrained_ca_signs_only_names_under_its_constraints() {
    // Proves --name-constraint puts the permitted DNS subtrees in the CA, and a certificate
    // with a DNS name outside them is refused naming the flag, one inside them is made.
    let spec = CaSpec { permitted_dns: NAME_CONSTRAINTS_DEFAULT.map(String::from).to_vec(), ..ca_spec() };
    let ca = certs::create_ca(&spec, now()).unwrap();
    let ca = certs::load_ca(&ca.cert_pem, &ca.key_pem).unwrap();
    assert_eq!(ca.permitted_dns(), ["muster", "localhost"]);
    let err = certs::create_leaf(&server_spec("n1", &[]), &ca, now()).unwrap_err();
    assert!(matches!(err, CertError::OutsideNameConstraints { flag: "node", .. }), "{err:?}");
    let err = certs::create_leaf(&server_spec("n1.muster", &["evil.example"]), &ca, now()).unwrap_err();
    assert!(matches!(err, CertError::OutsideNameConstraints { flag: "san", .. }), "{err:?}");
    let leaf = certs::create_leaf(&server_spec("n1.muster", &["10.0.0.5"]), &ca, now()).unwrap();
    assert!(sans(&leaf.cert_pem).contains(&"n1.muster".to_string()));
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
fn ca_create_writes_0600_key_and_refuses_to_overwrite() {
    // Proves the CA files get their names and modes, a second run refuses naming the existing
    // file and changes nothing, --force replaces both, and no temporary file is left.
    let dir = tempfile::tempdir().unwrap();
    let w = ca_create(dir.path(), &ca_spec(), Overwrite::Refuse, now()).unwrap();
    assert_eq!(w.cert, dir.path().join("muster-agent-ca.pem"));
    assert_eq!(w.key, dir.path().join("muster-agent-ca-key.pem"));
    assert_eq!((mode(&w.cert), mode(&w.key)), (0o644, 0o600));
    let before = std::fs::read_to_string(&w.key).unwrap();
    let err = ca_create(dir.path(), &ca_spec(), Overwrite::Refuse, now()).unwrap_err();
    assert!(matches!(&err, TlsError::Exists { path } if *path == w.cert), "{err:?}");
    assert!(err.to_string().contains("muster-agent-ca.pem already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&w.key).unwrap(), before);
    ca_create(dir.path(), &ca_spec(), Overwrite::Replace, now()).unwrap();
    assert_ne!(std::fs::read_to_string(&w.key).unwrap(), before);
    assert_eq!(mode(&w.key), 0o600);
    assert_eq!(listing(dir.path()), ["muster-agent-ca-key.pem", "muster-agent-ca.pem"]);
    let missing = dir.path().join("nope");
    assert!(matches!(ca_create(&missing, &ca_spec(), Overwrite::Refuse, now()), Err(TlsError::NoDir { .. })));
}

#[test]
fn cert_create_takes_the_first_free_index() {
    // Proves leaf files are <cluster>-<kind>-muster-<n>.pem with n the first index of which
    // neither file exists, keys 0600, certificates 0644.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca_create(d, &ca_spec(), Overwrite::Refuse, now()).unwrap();
    let make = |spec: &LeafSpec| cert_create(d, spec, &ca.cert, &ca.key, now()).unwrap();
    let w0 = make(&server_spec("n1", &[]));
    assert_eq!(w0.cert, d.join("muster-server-muster-0.pem"));
    assert_eq!(w0.key, d.join("muster-server-muster-0-key.pem"));
    assert_eq!((mode(&w0.cert), mode(&w0.key)), (0o644, 0o600));
    assert_eq!(make(&server_spec("n2", &[])).cert, d.join("muster-server-muster-1.pem"));
    std::fs::write(d.join("muster-server-muster-2-key.pem"), "stray").unwrap();
    assert_eq!(make(&server_spec("n3", &[])).cert, d.join("muster-server-muster-3.pem"));
    let client =
        LeafSpec { kind: LeafKind::Client, node: None, cluster: "prod".into(), ..server_spec("x", &[]) };
    assert_eq!(make(&client).key, d.join("prod-client-muster-0-key.pem"));
    let cli = LeafSpec { kind: LeafKind::Cli, ..client };
    assert_eq!(make(&cli).cert, d.join("prod-cli-muster-0.pem"));
}

#[test]
fn cert_create_writes_nothing_on_bad_input() {
    // Proves missing CA files, an unreadable or foreign CA key and a malformed SAN each fail
    // with the file or flag named, and leave the directory as it was.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca_create(d, &ca_spec(), Overwrite::Refuse, now()).unwrap();
    let before = listing(d);
    let spec = server_spec("n1", &[]);
    let err = cert_create(d, &spec, &d.join("missing.pem"), &ca.key, now()).unwrap_err();
    assert!(matches!(&err, TlsError::ReadCa { flag: "ca", .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = cert_create(d, &spec, &ca.cert, &d.join("missing-key.pem"), now()).unwrap_err();
    assert!(matches!(&err, TlsError::ReadCa { flag: "key", .. }), "{err:?}");
    // A directory cannot be read as a file (root can read any mode, so no chmod 000 here).
    let err = cert_create(d, &spec, &ca.cert, d, now()).unwrap_err();
    assert!(matches!(&err, TlsError::ReadCa { flag: "key", .. }), "{err:?}");
    let other = tempfile::tempdir().unwrap();
    let other_ca = ca_create(other.path(), &ca_spec(), Overwrite::Refuse, now()).unwrap();
    let err = cert_create(d, &spec, &ca.cert, &other_ca.key, now()).unwrap_err();
    assert!(matches!(&err, TlsError::BadCa { cause: CertError::CaMismatch, .. }), "{err:?}");
    let err = cert_create(d, &server_spec("n1", &["no way"]), &ca.cert, &ca.key, now()).unwrap_err();
    assert!(matches!(&err, TlsError::Cert(CertError::BadFlag { flag: "san", .. })), "{err:?}");
    assert_eq!(listing(d), before);
}

#[test]
fn write_file_never_replaces_an_existing_file_when_refusing() {
    // Proves the link step itself refuses an existing file (the race a pre-check cannot see)
    // and leaves no temporary file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    std::fs::write(&path, "old").unwrap();
    let err = write_file(&path, "new", KEY_MODE, Overwrite::Refuse).unwrap_err();
    assert!(matches!(err, TlsError::Exists { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(listing(dir.path()), ["k.pem"]);
}
