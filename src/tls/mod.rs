//! `muster tls`: a cluster CA and the certificates it signs, like `consul tls`. [`certs`] makes
//! the PEM strings (pure); this module reads the CA files and writes new files: never over an
//! existing one unless asked, atomically (a temporary file, then a link or rename), keys with
//! mode 0600 from their creation. Nothing is written when anything fails.
//! Must not import the node, the API or the CLI.

pub mod certs;
pub mod dial;
pub mod live;

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use certs::{CaSpec, CertError, LeafKind, LeafSpec, PemPair};

/// The CA certificate's file name, like consul's `consul-agent-ca.pem`.
pub const CA_CERT_FILE: &str = "muster-agent-ca.pem";
/// The CA key's file name.
pub const CA_KEY_FILE: &str = "muster-agent-ca-key.pem";
/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;
/// The highest `<n>` tried for `<cluster>-server-muster-<n>.pem`.
pub const INDEX_MAX: u32 = 9_999;
/// The largest CA file read (a PEM certificate or key is a few kB).
pub const CA_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Why a `muster tls` command failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("--dir {dir}: not a directory")]
    NoDir { dir: PathBuf },
    #[error("cannot read {what} {path} (give --{flag} FILE, or run `muster tls ca create` first)")]
    ReadCa {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("{what} {path} is larger than {CA_FILE_BYTES_MAX} bytes; it is not a PEM file")]
    CaTooLarge { what: &'static str, path: PathBuf },
    #[error("cannot use the CA in {cert} with the key {key}")]
    BadCa {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        cause: CertError,
    },
    #[error("{path} already exists; refusing to overwrite it (move it away, or pass --force)")]
    Exists { path: PathBuf },
    #[error("no free certificate index below {INDEX_MAX} for {prefix}-<n>.pem in {dir}")]
    NoFreeIndex { dir: PathBuf, prefix: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
}

/// Whether an existing file may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    Refuse,
    Replace,
}

/// Where a created certificate and key went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `muster tls ca create`: a new CA in `dir`.
pub fn ca_create(
    dir: &Path,
    spec: &CaSpec,
    overwrite: Overwrite,
    now: OffsetDateTime,
) -> Result<Written, TlsError> {
    check_dir(dir)?;
    let written = Written { cert: dir.join(CA_CERT_FILE), key: dir.join(CA_KEY_FILE) };
    refuse_existing(&written, overwrite)?;
    let pair = certs::create_ca(spec, now)?;
    write_pair(&written, &pair, overwrite)?;
    Ok(written)
}

/// `muster tls cert create`: a leaf certificate signed by the CA in `ca_cert` and `ca_key`,
/// written to `dir` under the first free index.
pub fn cert_create(
    dir: &Path,
    spec: &LeafSpec,
    ca_cert: &Path,
    ca_key: &Path,
    now: OffsetDateTime,
) -> Result<Written, TlsError> {
    check_dir(dir)?;
    certs::leaf_sans(spec)?;
    let cert_pem = read_ca_file("the CA certificate", "ca", ca_cert)?;
    let key_pem = read_ca_file("the CA key", "key", ca_key)?;
    let ca = certs::load_ca(&cert_pem, &key_pem).map_err(|cause| TlsError::BadCa {
        cert: ca_cert.to_path_buf(),
        key: ca_key.to_path_buf(),
        cause,
    })?;
    let pair = certs::create_leaf(spec, &ca, now)?;
    let prefix = leaf_prefix(spec);
    let written = next_free(dir, &prefix)?;
    write_pair(&written, &pair, Overwrite::Refuse)?;
    Ok(written)
}

/// `<cluster>-<kind>-muster`: the file names' stem before `-<n>.pem`.
pub fn leaf_prefix(spec: &LeafSpec) -> String {
    format!("{}-{}-{}", spec.cluster, spec.kind.word(), certs::DOMAIN)
}

/// The first `<prefix>-<n>.pem` / `<prefix>-<n>-key.pem` pair of which neither file exists.
pub fn next_free(dir: &Path, prefix: &str) -> Result<Written, TlsError> {
    (0..=INDEX_MAX)
        .map(|n| Written {
            cert: dir.join(format!("{prefix}-{n}.pem")),
            key: dir.join(format!("{prefix}-{n}-key.pem")),
        })
        .find(|w| !exists(&w.cert) && !exists(&w.key))
        .ok_or_else(|| TlsError::NoFreeIndex { dir: dir.to_path_buf(), prefix: prefix.to_string() })
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn check_dir(dir: &Path) -> Result<(), TlsError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(TlsError::NoDir { dir: dir.to_path_buf() })
    }
}

fn refuse_existing(written: &Written, overwrite: Overwrite) -> Result<(), TlsError> {
    if overwrite == Overwrite::Replace {
        return Ok(());
    }
    match [&written.cert, &written.key].into_iter().find(|p| exists(p)) {
        Some(path) => Err(TlsError::Exists { path: path.clone() }),
        None => Ok(()),
    }
}

fn read_ca_file(what: &'static str, flag: &'static str, path: &Path) -> Result<String, TlsError> {
    let read_err = |cause| TlsError::ReadCa { what, flag, path: path.to_path_buf(), cause };
    let len = fs::metadata(path).map_err(read_err)?.len();
    if len > CA_FILE_BYTES_MAX {
        return Err(TlsError::CaTooLarge { what, path: path.to_path_buf() });
    }
    fs::read_to_string(path).map_err(read_err)
}

/// Writes the certificate (0644) and the key (0600); if the second write fails, the first file
/// is removed again, so a failure leaves nothing behind.
fn write_pair(written: &Written, pair: &PemPair, overwrite: Overwrite) -> Result<(), TlsError> {
    write_file(&written.key, &pair.key_pem, KEY_MODE, overwrite)?;
    if let Err(e) = write_file(&written.cert, &pair.cert_pem, CERT_MODE, overwrite) {
        let _ = fs::remove_file(&written.key);
        return Err(e);
    }
    Ok(())
}

/// Writes `path` atomically: a temporary file in the same directory, created with `mode`, is
/// filled and synced, then hard-linked to `path` (which fails if `path` exists: no overwrite even
/// in a race) or, with [`Overwrite::Replace`], renamed over it.
pub fn write_file(path: &Path, contents: &str, mode: u32, overwrite: Overwrite) -> Result<(), TlsError> {
    let write_err = |cause| TlsError::Write { path: path.to_path_buf(), cause };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have cleared bits of `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        match overwrite {
            Overwrite::Refuse => fs::hard_link(&tmp, path),
            Overwrite::Replace => fs::rename(&tmp, path),
        }
    })();
    let _ = fs::remove_file(&tmp);
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(TlsError::Exists { path: path.to_path_buf() })
        }
        other => other.map_err(write_err),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod handshake_tests;
