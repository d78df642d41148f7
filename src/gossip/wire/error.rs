//! The one error type of the wire codecs, [`WireError`]. Every message is lowercase and carries
//! the context (sizes, types, labels) needed to tell what was wrong with the bytes.
//! Must not import anything but `thiserror`.

use thiserror::Error;

/// Everything that can go wrong while encoding or decoding memberlist/Serf bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// A msgpack body did not decode into the expected Go struct.
    #[error("cannot decode {context}: {reason}")]
    Msgpack { context: &'static str, reason: String },
    /// A msgpack body could not be encoded (should not happen for the wire structs).
    #[error("cannot encode {context}: {reason}")]
    Encode { context: &'static str, reason: String },
    /// The buffer ended before the item was complete.
    #[error("truncated {context}: need {need} bytes, have {have}")]
    Truncated { context: &'static str, need: usize, have: usize },
    /// A buffer that must hold at least a type byte was empty.
    #[error("empty {context}")]
    Empty { context: &'static str },
    /// A type byte that no version of the protocol defines.
    #[error("unknown {context} message type {ty}")]
    UnknownType { context: &'static str, ty: u8 },
    /// A known type byte in a place where it is not allowed.
    #[error("message type {ty} is not valid in {context}")]
    UnexpectedType { context: &'static str, ty: u8 },
    /// A length or count field above the limit we are willing to buffer.
    #[error("{context} of {len} exceeds the limit of {max}")]
    TooLarge { context: &'static str, len: usize, max: usize },
    /// A compound packet announced more parts than the buffer holds.
    #[error("compound message truncated: {truncated} of {total} parts missing")]
    CompoundTruncated { truncated: usize, total: usize },
    /// The hasCrc header did not match the payload.
    #[error("crc mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    /// The packet/stream label differs from ours (an empty label means none).
    #[error("{context} label {got:?} does not match ours {want:?} (\"\" = no label)")]
    LabelMismatch { context: &'static str, got: String, want: String },
    /// A label header with length zero.
    #[error("label header is present but empty")]
    EmptyLabel,
    /// Labels are at most 255 bytes long.
    #[error("label of {len} bytes is too long, the limit is 255")]
    LabelTooLong { len: usize },
    /// The LZW bit stream is corrupt.
    #[error("lzw {context} failed: {reason}")]
    Lzw { context: &'static str, reason: String },
    /// A compress message with an algorithm other than LZW (0).
    #[error("cannot decompress unknown algorithm {algo}, only lzw (0) is known")]
    UnknownCompression { algo: u64 },
    /// A key that is not 16, 24 or 32 bytes long.
    #[error("key must be 16, 24 or 32 bytes after base64 decoding, got {len} bytes")]
    KeyLength { len: usize },
    /// A key that is not valid base64 (standard alphabet, padded).
    #[error("key is not valid base64: {reason}")]
    Base64 { reason: String },
    /// A keyring without any key.
    #[error("keyring is empty: at least a primary key is required")]
    EmptyKeyring,
    /// `use_key` of a key that was never installed.
    #[error("key is not installed in the keyring; install it first")]
    KeyNotInstalled,
    /// `remove` of the primary key.
    #[error("removing the primary key is not allowed; make another key primary first")]
    RemovePrimaryKey,
    /// Encryption versions are 0 (padded) and 1.
    #[error("unsupported encryption version {vsn}, known versions are 0 and 1")]
    EncryptionVersion { vsn: u8 },
    /// Too short to be `[vsn][nonce][ciphertext][tag]`.
    #[error("encrypted payload of {len} bytes is too small, need at least {min}")]
    CiphertextTooShort { len: usize, min: usize },
    /// No installed key authenticated the ciphertext (wrong key or wrong label).
    #[error(
        "no installed key could decrypt the message (tried {tried} keys); check the gossip key and label"
    )]
    NoKeyDecrypts { tried: usize },
    /// Version 0 plaintext with an impossible PKCS7 padding byte.
    #[error("invalid pkcs7 padding byte {pad} in a {len}-byte plaintext")]
    Padding { pad: u8, len: usize },
    /// The AEAD refused to encrypt (only on absurd lengths).
    #[error("aes-gcm encryption failed")]
    Encrypt,
    /// Encrypted input but we have no keyring.
    #[error("{context} is encrypted but no keyring is configured")]
    EncryptedWithoutKeyring { context: &'static str },
    /// Plain input while a keyring is configured with verify_incoming.
    #[error("encryption is configured but the {context} is not encrypted")]
    NotEncrypted { context: &'static str },
    /// Tags encode to more than memberlist's meta limit.
    #[error("encoded tags are {size} bytes, the limit is {max}; use fewer or shorter tags")]
    TagsTooLarge { size: usize, max: usize },
}

impl WireError {
    /// Wraps an rmp-serde decode error with what we were decoding.
    pub(crate) fn msgpack(context: &'static str, err: impl std::fmt::Display) -> Self {
        WireError::Msgpack { context, reason: err.to_string() }
    }
}
