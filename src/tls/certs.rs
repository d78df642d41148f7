//! Certificate generation for `muster tls`: a cluster CA and the leaf certificates it signs, as
//! PEM strings. Pure: no files, no clock (`now` is an argument); keys come from the system RNG.
//! Must not import the node, the API or the file-writing shell in `super`.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

/// The DNS domain of muster's role names (`server.<cluster>.muster`), like consul's `consul`.
pub const DOMAIN: &str = "muster";
/// The cluster name when `--cluster` is not given.
pub const CLUSTER_DEFAULT: &str = "muster";
/// Certificates start this long before `now`, so a host whose clock is a little behind the
/// one that made the certificate still accepts it.
pub const NOT_BEFORE_SKEW_S: i64 = 60;
/// The longest validity accepted for any certificate (100 years).
pub const DAYS_MAX: u32 = 36_500;
/// The DNS names a name-constrained CA always permits (plus `--additional-name-constraint`).
pub const NAME_CONSTRAINTS_DEFAULT: [&str; 2] = [DOMAIN, "localhost"];

/// Why a certificate could not be made. `Ca*` variants are about the CA files' contents; the
/// shell adds the file names.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("invalid value for --{flag}: {reason}")]
    BadFlag { flag: &'static str, reason: String },
    #[error("the CA certificate is not a PEM certificate: {reason}")]
    CaCert { reason: String },
    #[error("the CA certificate is not a CA (its basic constraints do not say CA:TRUE)")]
    NotCa,
    #[error("the CA key is not a PEM private key muster can sign with: {reason}")]
    CaKey { reason: String },
    #[error("the CA key does not belong to the CA certificate")]
    CaMismatch,
    #[error(
        "--{flag} {name} is outside the CA's name constraints (permitted: {permitted}); \
         use a name under one of them or a CA made without --name-constraint"
    )]
    OutsideNameConstraints { flag: &'static str, name: String, permitted: String },
    #[error("cannot generate the certificate")]
    Generate {
        #[source]
        cause: rcgen::Error,
    },
}

fn generate(cause: rcgen::Error) -> CertError {
    CertError::Generate { cause }
}

/// A certificate and its private key, PEM encoded (the key as PKCS#8 `PRIVATE KEY`).
#[derive(Clone, PartialEq, Eq)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("PemPair").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// What `muster tls ca create` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSpec {
    pub common_name: String,
    pub days: u32,
    /// DNS names the CA may sign for (RFC 5280 permitted subtrees); empty: no constraint.
    pub permitted_dns: Vec<String>,
}

/// Which kind of leaf certificate, like consul's `-server`, `-client` and `-cli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// A node's certificate: serves and calls other nodes (serverAuth + clientAuth).
    Server,
    /// A client's certificate (clientAuth).
    Client,
    /// A command-line tool's certificate (clientAuth).
    Cli,
}

impl LeafKind {
    /// The word in the file name: `<cluster>-<word>-muster-<n>.pem`.
    pub fn word(self) -> &'static str {
        match self {
            LeafKind::Server => "server",
            LeafKind::Client => "client",
            LeafKind::Cli => "cli",
        }
    }

    /// The role name every certificate of this kind carries, like consul's `server.dc1.consul`.
    pub fn role_name(self, cluster: &str) -> String {
        match self {
            LeafKind::Server => format!("server.{cluster}.{DOMAIN}"),
            LeafKind::Client => format!("client.{cluster}.{DOMAIN}"),
            LeafKind::Cli => format!("cli.client.{cluster}.{DOMAIN}"),
        }
    }
}

/// What `muster tls cert create` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    pub kind: LeafKind,
    /// The node's name; required for servers (a DNS SAN), optional for the other kinds.
    pub node: Option<String>,
    pub cluster: String,
    /// Extra SANs: IP addresses become IP SANs, anything else must be a DNS name.
    pub extra_sans: Vec<String>,
    pub days: u32,
}

/// A loaded CA, ready to sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    permitted_dns: Vec<String>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("permitted_dns", &self.permitted_dns).finish_non_exhaustive()
    }
}

impl Ca {
    /// The DNS names the CA's name constraints permit (empty: unconstrained).
    pub fn permitted_dns(&self) -> &[String] {
        &self.permitted_dns
    }
}

fn check_days(days: u32) -> Result<(), CertError> {
    if days == 0 || days > DAYS_MAX {
        return Err(CertError::BadFlag {
            flag: "days",
            reason: format!("{days} is not between 1 and {DAYS_MAX}"),
        });
    }
    Ok(())
}

/// True if `name` is a DNS name (labels of letters, digits and `-`, a leading `*.` allowed; the
/// last label not all digits, so a mistyped IP address such as `10.0.0.300` is no DNS name).
pub fn is_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    let numeric_tld = rest.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    !rest.is_empty()
        && !numeric_tld
        && name.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn validity(params: &mut CertificateParams, days: u32, now: OffsetDateTime) -> Result<(), CertError> {
    check_days(days)?;
    let now = now.replace_nanosecond(0).unwrap_or(now);
    params.not_before = now - Duration::seconds(NOT_BEFORE_SKEW_S);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

/// Makes a new self-signed ECDSA P-256 CA.
pub fn create_ca(spec: &CaSpec, now: OffsetDateTime) -> Result<PemPair, CertError> {
    for name in &spec.permitted_dns {
        if !is_dns_name(name) {
            return Err(CertError::BadFlag {
                flag: "additional-name-constraint",
                reason: format!("{name:?} is not a DNS name"),
            });
        }
    }
    if spec.common_name.trim().is_empty() {
        return Err(CertError::BadFlag { flag: "common-name", reason: "it is empty".into() });
    }
    let mut params = CertificateParams::default();
    validity(&mut params, spec.days, now)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = dn;
    // Path length 0: the CA signs leaf certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    if !spec.permitted_dns.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: spec
                .permitted_dns
                .iter()
                .map(|d| GeneralSubtree::DnsName(d.clone()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Reads a CA certificate and its key, checking that the certificate is a CA and the key is its.
pub fn load_ca(cert_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| CertError::CaCert { reason: e.to_string() })?;
    let x509 = pem.parse_x509().map_err(|e| CertError::CaCert { reason: e.to_string() })?;
    let is_ca = x509.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(CertError::NotCa);
    }
    let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::CaKey { reason: e.to_string() })?;
    if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
        return Err(CertError::CaMismatch);
    }
    let mut permitted_dns = Vec::new();
    if let Ok(Some(nc)) = x509.name_constraints() {
        for subtree in nc.value.permitted_subtrees.iter().flatten() {
            if let GeneralName::DNSName(name) = subtree.base {
                permitted_dns.push(name.to_string());
            }
        }
    }
    let issuer =
        Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| CertError::CaCert { reason: e.to_string() })?;
    Ok(Ca { issuer, permitted_dns })
}

/// The SANs of a leaf certificate, in order, each with the flag it came from.
pub fn leaf_sans(spec: &LeafSpec) -> Result<Vec<(SanType, &'static str)>, CertError> {
    if !is_dns_name(&spec.cluster) || spec.cluster.starts_with("*.") {
        return Err(CertError::BadFlag {
            flag: "cluster",
            reason: format!("{:?} is not a DNS name (letters, digits, '-', '.')", spec.cluster),
        });
    }
    let mut sans = vec![(dns("cluster", &spec.kind.role_name(&spec.cluster))?, "cluster")];
    if spec.kind == LeafKind::Server {
        sans.push((dns("server", "localhost")?, "server"));
        sans.push((SanType::IpAddress(IpAddr::from([127, 0, 0, 1])), "server"));
    }
    match (&spec.node, spec.kind) {
        (None, LeafKind::Server) => {
            return Err(CertError::BadFlag {
                flag: "node",
                reason: "a server certificate needs --node NAME".into(),
            })
        }
        (Some(node), _) if !is_dns_name(node) || node.starts_with("*.") => {
            return Err(CertError::BadFlag {
                flag: "node",
                reason: format!("{node:?} is not a DNS name (letters, digits, '-', '.')"),
            })
        }
        (Some(node), _) => sans.push((dns("node", node)?, "node")),
        (None, _) => {}
    }
    for san in &spec.extra_sans {
        let parsed = match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if is_dns_name(san) => dns("san", san)?,
            Err(_) => {
                return Err(CertError::BadFlag {
                    flag: "san",
                    reason: format!("{san:?} is neither an IP address nor a DNS name"),
                })
            }
        };
        sans.push((parsed, "san"));
    }
    let mut seen = Vec::new();
    sans.retain(|(san, _)| {
        let new = !seen.contains(san);
        seen.push(san.clone());
        new
    });
    Ok(sans)
}

fn dns(flag: &'static str, name: &str) -> Result<SanType, CertError> {
    let ia5 =
        name.try_into().map_err(|e: rcgen::Error| CertError::BadFlag { flag, reason: e.to_string() })?;
    Ok(SanType::DnsName(ia5))
}

fn within(name: &str, base: &str) -> bool {
    let (name, base) = (name.to_ascii_lowercase(), base.to_ascii_lowercase());
    name == base || name.ends_with(&format!(".{base}"))
}

/// Makes a leaf certificate signed by `ca`, with a new ECDSA P-256 key.
pub fn create_leaf(spec: &LeafSpec, ca: &Ca, now: OffsetDateTime) -> Result<PemPair, CertError> {
    let sans = leaf_sans(spec)?;
    if !ca.permitted_dns.is_empty() {
        for (san, flag) in &sans {
            if let SanType::DnsName(name) = san {
                if !ca.permitted_dns.iter().any(|base| within(name.as_str(), base)) {
                    return Err(CertError::OutsideNameConstraints {
                        flag,
                        name: name.as_str().to_string(),
                        permitted: ca.permitted_dns.join(", "),
                    });
                }
            }
        }
    }
    let mut params = CertificateParams::default();
    validity(&mut params, spec.days, now)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.kind.role_name(&spec.cluster));
    params.distinguished_name = dn;
    params.subject_alt_names = sans.into_iter().map(|(san, _)| san).collect();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match spec.kind {
        LeafKind::Server => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        LeafKind::Client | LeafKind::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let cert = params.signed_by(&key, &ca.issuer).map_err(generate)?;
    Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}
