//! Mixmaster key IDs: MD5 of the modulus and the public exponent.

use md5::{Digest, Md5};
use std::fmt;

/// A Mixmaster key ID: MD5(n ‖ e), where n and e are big-endian and each
/// left-padded with zeros to the modulus length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

/// Error from [`KeyId::from_hex`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Mixmaster key ID: expected 32 hex digits")]
pub struct KeyIdParseError;

impl KeyId {
    /// Computes the key ID of a public key given as big-endian n and e (leading
    /// zeros allowed). Returns `None` when e is longer than n.
    pub fn compute(n: &[u8], e: &[u8]) -> Option<KeyId> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let len = n.len();
        if e.len() > len {
            return None;
        }
        let mut hasher = Md5::new();
        hasher.update(n);
        hasher.update(vec![0u8; len - e.len()]);
        hasher.update(e);
        Some(KeyId(hasher.finalize().into()))
    }

    /// Parses 32 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<KeyId, KeyIdParseError> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(text, &mut out).map_err(|_| KeyIdParseError)?;
        Ok(KeyId(out))
    }

    /// The key ID as 32 lower-case hex digits, as Mixmaster writes it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

pub(crate) fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}
