//! The node's protections from files: TLS certificates (`--tls-*`) and API tokens
//! (`--tokens-file`), read at start (a bad file stops the start) and again on SIGHUP (a bad
//! file is logged and the old one stays in use).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::tls::live::{LiveTls, Paths};
use crate::tokens::{SharedTokens, Tokens};

/// The largest tokens file read.
const TOKENS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The node's TLS, or none without `--tls-*`.
pub fn load_tls(config: &Config) -> anyhow::Result<Option<Arc<LiveTls>>> {
    let Some(files) = &config.tls else { return Ok(None) };
    let paths = Paths { cert: files.cert.clone(), key: files.key.clone(), ca: files.ca.clone() };
    let (live, summary) = LiveTls::load(paths, &config.cluster, config.verify_incoming)?;
    tracing::info!(cert = %summary, verify_incoming = config.verify_incoming,
        "tls: the API port serves TLS only; node-to-node calls need this cluster's node certificate");
    Ok(Some(Arc::new(live)))
}

/// Reads and parses a tokens file. Warns when others than the owner may read it.
fn read_tokens(path: &Path) -> anyhow::Result<Tokens> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read --tokens-file {}", path.display()))?;
    let mode = file.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
    let mut text = String::new();
    file.take(TOKENS_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read --tokens-file {} (is it UTF-8 text?)", path.display()))?;
    if text.len() as u64 > TOKENS_FILE_BYTES_MAX {
        anyhow::bail!("--tokens-file {} is larger than {TOKENS_FILE_BYTES_MAX} bytes", path.display());
    }
    let tokens = Tokens::parse(&text).with_context(|| format!("--tokens-file {}", path.display()))?;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777),
            "SECURITY: the tokens file may be read by other users; chmod 600 it");
    }
    Ok(tokens)
}

/// The node's tokens, or none without `--tokens-file`. A file with no tokens is refused: it
/// would lock every caller out.
pub fn load_tokens(config: &Config) -> anyhow::Result<Option<Arc<SharedTokens>>> {
    let Some(path) = &config.tokens_file else { return Ok(None) };
    let tokens = read_tokens(path)?;
    if tokens.is_empty() {
        anyhow::bail!(
            "--tokens-file {} holds no token; add lines `NAME SCOPE SECRET` (make one with `muster token create`)",
            path.display()
        );
    }
    tracing::info!(path = %path.display(), tokens = tokens.len(), "auth: API calls need a token");
    Ok(Some(Arc::new(SharedTokens::new(tokens))))
}

/// Reads the certificates and the tokens file again on every SIGHUP until `shutdown`.
/// Installed before the node serves, so a SIGHUP never stops the node.
pub fn reload_on_sighup(
    tls: Option<Arc<LiveTls>>,
    tokens: Option<(Arc<SharedTokens>, PathBuf)>,
    shutdown: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            tracing::info!("node: SIGHUP: reading certificates and tokens again");
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(summary) => tracing::info!(cert = %summary, "tls: reloaded; new connections use it"),
                    Err(e) => {
                        tracing::error!(error = %e, "tls: reload failed; the previous certificates stay in use")
                    }
                }
            }
            if let Some((shared, path)) = &tokens {
                match read_tokens(path) {
                    Ok(t) if t.is_empty() => tracing::error!(path = %path.display(),
                        "auth: the tokens file holds no token now; the previous tokens stay in use"),
                    Ok(t) => {
                        let n = t.len();
                        shared.replace(t);
                        tracing::info!(path = %path.display(), tokens = n, "auth: tokens reloaded");
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "auth: tokens reload failed; the previous tokens stay in use"
                    ),
                }
            }
        }
    })
}
