//! The gossip keyring (primary key first) and memberlist's AES-GCM payload encryption:
//! `[vsn][12-byte nonce][ciphertext + 16-byte tag]`, vsn 0 PKCS7-padded, vsn 1 not.
//! Upstream: hashicorp/memberlist `security.go`, `keyring.go`; Serf keeps the keyring file as
//! a JSON array of base64 keys (first = primary). Randomness only for nonces and new keys.

use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;

use super::error::WireError;

type Aes192Gcm = AesGcm<Aes192, U12>;

const VERSION_BYTES: usize = 1;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const BLOCK_BYTES: usize = 16;
/// Encryption version memberlist uses for protocol ≥ 2 (no padding).
pub const ENCRYPTION_VERSION: u8 = 1;
/// Bytes added to a packet by version-1 encryption.
pub const ENCRYPT_OVERHEAD_BYTES: usize = VERSION_BYTES + NONCE_BYTES + TAG_BYTES;

/// AES keys for gossip, primary first. `Debug` never prints key material.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.keys.len()).finish()
    }
}

fn check_key(k: &[u8]) -> Result<(), WireError> {
    match k.len() {
        16 | 24 | 32 => Ok(()),
        len => Err(WireError::KeyLength { len }),
    }
}

/// Decodes one of Serf's base64 (standard, padded) keys and checks its length.
pub fn decode_key(s: &str) -> Result<Vec<u8>, WireError> {
    let key = STANDARD.decode(s.trim()).map_err(|e| WireError::Base64 { reason: e.to_string() })?;
    check_key(&key)?;
    Ok(key)
}

/// A fresh 32-byte key in base64, like `serf keygen`.
pub fn generate_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    STANDARD.encode(key)
}

impl Keyring {
    /// A keyring with `primary` first, then `others` (duplicates of earlier keys dropped).
    pub fn new(primary: Vec<u8>, others: Vec<Vec<u8>>) -> Result<Self, WireError> {
        check_key(&primary)?;
        let mut ring = Keyring { keys: vec![primary] };
        for k in others {
            ring.install(k)?;
        }
        Ok(ring)
    }

    /// A keyring holding one base64 key (Serf's `-encrypt`).
    pub fn from_base64(s: &str) -> Result<Self, WireError> {
        Keyring::new(decode_key(s)?, Vec::new())
    }

    /// Serf's keyring file content: base64 keys, first is primary.
    pub fn from_base64_list(list: &[String]) -> Result<Self, WireError> {
        let mut keys = list.iter().map(|s| decode_key(s));
        let primary = keys.next().ok_or(WireError::EmptyKeyring)??;
        Keyring::new(primary, keys.collect::<Result<Vec<_>, _>>()?)
    }

    /// Base64 of every key, primary first (what Serf writes to its keyring file).
    pub fn to_base64_list(&self) -> Vec<String> {
        self.keys.iter().map(|k| STANDARD.encode(k)).collect()
    }

    /// The key new messages are encrypted with.
    pub fn primary(&self) -> &[u8] {
        // Invariant: `keys` is never empty (constructors require a primary, remove keeps it).
        self.keys.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// All keys, primary first; decryption tries them in this order.
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }

    /// Adds a secondary key; installing a key that is already present does nothing (like Go).
    pub fn install(&mut self, k: Vec<u8>) -> Result<(), WireError> {
        check_key(&k)?;
        if !self.keys.contains(&k) {
            self.keys.push(k);
        }
        Ok(())
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, k: &[u8]) -> Result<(), WireError> {
        let idx = self.keys.iter().position(|x| x == k).ok_or(WireError::KeyNotInstalled)?;
        let key = self.keys.remove(idx);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Drops a secondary key; removing an absent key does nothing (like Go), the primary is refused.
    pub fn remove(&mut self, k: &[u8]) -> Result<(), WireError> {
        if self.primary() == k {
            return Err(WireError::RemovePrimaryKey);
        }
        self.keys.retain(|x| x != k);
        Ok(())
    }

    /// `[vsn][nonce][ciphertext+tag]` of `msg` under the primary key, authenticating `additional`.
    pub fn encrypt(&self, vsn: u8, msg: &[u8], additional: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        self.encrypt_with_nonce(vsn, nonce, msg, additional)
    }

    pub(crate) fn encrypt_with_nonce(
        &self,
        vsn: u8,
        nonce: [u8; NONCE_BYTES],
        msg: &[u8],
        additional: &[u8],
    ) -> Result<Vec<u8>, WireError> {
        let padded;
        let plain = match vsn {
            0 => {
                let pad = BLOCK_BYTES - msg.len() % BLOCK_BYTES;
                let mut p = Vec::with_capacity(msg.len() + pad);
                p.extend_from_slice(msg);
                // pad is 1..=16, so it fits a byte.
                p.resize(msg.len() + pad, pad as u8);
                padded = p;
                &padded[..]
            }
            1 => msg,
            vsn => return Err(WireError::EncryptionVersion { vsn }),
        };
        let ct = seal(self.primary(), &nonce, plain, additional)?;
        let mut out = Vec::with_capacity(VERSION_BYTES + NONCE_BYTES + ct.len());
        out.push(vsn);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens `[vsn][nonce][ciphertext+tag]` with each key in turn; strips vsn 0 padding.
    pub fn decrypt(&self, buf: &[u8], additional: &[u8]) -> Result<Vec<u8>, WireError> {
        let vsn = *buf.first().ok_or(WireError::Empty { context: "encrypted payload" })?;
        let min = match vsn {
            0 => VERSION_BYTES + NONCE_BYTES + BLOCK_BYTES + TAG_BYTES,
            1 => VERSION_BYTES + NONCE_BYTES + TAG_BYTES,
            vsn => return Err(WireError::EncryptionVersion { vsn }),
        };
        if buf.len() < min {
            return Err(WireError::CiphertextTooShort { len: buf.len(), min });
        }
        let nonce = &buf[VERSION_BYTES..VERSION_BYTES + NONCE_BYTES];
        let ct = &buf[VERSION_BYTES + NONCE_BYTES..];
        let mut plain = self
            .keys
            .iter()
            .find_map(|k| open(k, nonce, ct, additional))
            .ok_or(WireError::NoKeyDecrypts { tried: self.keys.len() })?;
        if vsn == 0 {
            let len = plain.len();
            let pad = plain.last().copied().unwrap_or(0);
            if pad == 0 || usize::from(pad) > BLOCK_BYTES || usize::from(pad) > len {
                return Err(WireError::Padding { pad, len });
            }
            plain.truncate(len - usize::from(pad));
        }
        Ok(plain)
    }
}

fn seal(key: &[u8], nonce: &[u8], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, WireError> {
    let nonce = Nonce::from_slice(nonce);
    let payload = Payload { msg, aad };
    let sealed = match key.len() {
        16 => Aes128Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
        24 => Aes192Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
        _ => Aes256Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
    };
    match sealed {
        Ok(Ok(ct)) => Ok(ct),
        _ => Err(WireError::Encrypt),
    }
}

fn open(key: &[u8], nonce: &[u8], ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let nonce = Nonce::from_slice(nonce);
    let payload = Payload { msg: ct, aad };
    let opened = match key.len() {
        16 => Aes128Gcm::new_from_slice(key).map(|c| c.decrypt(nonce, payload)),
        24 => Aes192Gcm::new_from_slice(key).map(|c| c.decrypt(nonce, payload)),
        _ => Aes256Gcm::new_from_slice(key).map(|c| c.decrypt(nonce, payload)),
    };
    opened.ok()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_decrypt_all_key_sizes_and_versions() {
        // Proves both versions round-trip for 16/24/32-byte keys and the label is authenticated.
        for len in [16, 24, 32] {
            let ring = Keyring::new(vec![7u8; len], vec![]).unwrap();
            for vsn in [0u8, 1] {
                for msg in [&b""[..], b"x", &[9u8; 16], &[1u8; 1000]] {
                    let ct = ring.encrypt(vsn, msg, b"label").unwrap();
                    assert_eq!(ring.decrypt(&ct, b"label").unwrap(), msg);
                    assert!(ring.decrypt(&ct, b"other").is_err());
                }
            }
        }
        assert!(matches!(
            Keyring::new(vec![1; 16], vec![]).unwrap().encrypt(2, b"x", b""),
            Err(WireError::EncryptionVersion { vsn: 2 })
        ));
    }

    #[test]
    fn wrong_key_is_rejected_with_a_clear_error() {
        // Proves a ciphertext under another key fails naming the number of keys tried.
        let a = Keyring::new(vec![1; 32], vec![]).unwrap();
        let b = Keyring::new(vec![2; 32], vec![vec![3; 16]]).unwrap();
        let ct = a.encrypt(1, b"secret", b"").unwrap();
        let err = b.decrypt(&ct, b"").unwrap_err();
        assert_eq!(err, WireError::NoKeyDecrypts { tried: 2 });
        assert!(err.to_string().contains("no installed key could decrypt"));
        // A secondary key still decrypts.
        let c = Keyring::new(vec![2; 32], vec![vec![1; 32]]).unwrap();
        assert_eq!(c.decrypt(&ct, b"").unwrap(), b"secret");
    }

    #[test]
    fn keyring_management_follows_serf() {
        // Proves install/use/remove semantics and the base64 list format.
        let mut ring = Keyring::from_base64(&generate_key()).unwrap();
        let first = ring.primary().to_vec();
        ring.install(vec![5; 16]).unwrap();
        ring.install(vec![5; 16]).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.remove(&first), Err(WireError::RemovePrimaryKey));
        assert_eq!(ring.use_key(&[6; 16]), Err(WireError::KeyNotInstalled));
        ring.use_key(&[5; 16]).unwrap();
        assert_eq!(ring.primary(), &[5; 16]);
        ring.remove(&first).unwrap();
        assert_eq!(ring.keys().len(), 1);
        let list = ring.to_base64_list();
        assert_eq!(Keyring::from_base64_list(&list).unwrap(), ring);
        assert_eq!(Keyring::from_base64_list(&[]), Err(WireError::EmptyKeyring));
        let err = decode_key("AAAA").unwrap_err();
        assert!(err.to_string().contains("16, 24 or 32 bytes"), "{err}");
        assert!(matches!(decode_key("not base64!"), Err(WireError::Base64 { .. })));
        assert!(!format!("{ring:?}").contains('5'));
    }
}
