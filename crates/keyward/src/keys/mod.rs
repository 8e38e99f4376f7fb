//! Key types, their purposes, and the private-key operations the daemon
//! performs.
//!
//! A key's type and purpose are fixed when it is generated or imported and
//! are bound into its keystore entry; policy can narrow what a key may do,
//! never widen it.

mod ecdsa;
mod ed25519;
mod rsa;
mod types;

pub mod export;
pub mod generate;
pub mod import;
pub mod signing;
pub mod verify;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::keystore::EntryMeta;
use crate::secret::SecretBuf;

pub use types::{KeyType, Purpose};

/// Returns the OpenSSH-style fingerprint of a public-key blob:
/// `SHA256:` and the unpadded base64 of its SHA-256 digest.
pub fn fingerprint(public_blob: &[u8]) -> String {
    let digest = Sha256::digest(public_blob);
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

/// Returns the raw SHA-256 digest of a public-key blob, the form extensions
/// use to name a key.
pub fn fingerprint_bytes(public_blob: &[u8]) -> [u8; 32] {
    Sha256::digest(public_blob).into()
}

/// A key that could not be loaded, generated or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("unknown key type {0:?}")]
    UnknownType(String),
    #[error("unknown purpose {0:?}")]
    UnknownPurpose(String),
    #[error("purpose {purpose} is not valid for a {key_type} key")]
    PurposeNotValid { key_type: String, purpose: String },
    #[error("the private key of {name:?} does not match its stored public key")]
    Mismatch { name: String },
    #[error("the private key of {name:?} is malformed")]
    MalformedPrivate { name: String },
    #[error("invalid public key: {0}")]
    InvalidPublic(String),
    #[error("key generation failed: {0}")]
    Generation(String),
    #[error(transparent)]
    Memory(#[from] keyward_protect::MemoryError),
}

/// A key decrypted from the keystore and checked against its public key,
/// ready for private-key operations.
pub struct LoadedKey {
    pub meta: EntryMeta,
    pub key_type: KeyType,
    pub purpose: Purpose,
    pub fingerprint: String,
    pub fingerprint_bytes: [u8; 32],
    private: Private,
}

enum Private {
    Ed25519(ed25519::Ed25519Key),
    EcdsaP256(ecdsa::EcdsaP256Key),
    Rsa(rsa::RsaKey),
    /// Keys whose operations live outside this module (X25519):
    /// the checked private bytes.
    Raw(SecretBuf),
    /// A Mixmaster remailer key, ready for header RSA blocks.
    Mixmaster(Box<keyward_mixmaster::RsaBlockKey>),
}

impl LoadedKey {
    /// Parses a decrypted entry, derives its public key and checks that it
    /// equals the stored one.
    pub fn load(meta: EntryMeta, private: SecretBuf) -> Result<LoadedKey, KeyError> {
        let key_type = KeyType::parse(&meta.key_type)?;
        let purpose = Purpose::parse(&meta.purpose)?;
        let name = meta.name.clone();

        let (private, derived_public) = match key_type {
            KeyType::Ed25519 => {
                let key = ed25519::Ed25519Key::from_seed(private, &name)?;
                let public = key.public_blob();
                (Private::Ed25519(key), public)
            }
            KeyType::EcdsaP256 => {
                let key = ecdsa::EcdsaP256Key::from_scalar(private, &name)?;
                let public = key.public_blob();
                (Private::EcdsaP256(key), public)
            }
            KeyType::Rsa(_) => {
                let key = rsa::RsaKey::from_pkcs1_der(private.expose(), &name)?;
                let public = key.public_blob();
                (Private::Rsa(key), public)
            }
            KeyType::Mixmaster(bits) => {
                let key = rsa::RsaKey::from_pkcs1_der(private.expose(), &name)?;
                if key.bits() != bits {
                    return Err(KeyError::Mismatch { name });
                }
                let (e, n) = key.public_components();
                let block_key = keyward_mixmaster::RsaBlockKey::from_pkcs1_der(private.expose())
                    .map_err(|_| KeyError::MalformedPrivate { name: name.clone() })?;
                (Private::Mixmaster(Box::new(block_key)), mixmaster_public_blob(&e, &n))
            }
            KeyType::X25519 => {
                let public = crate::x25519::public_key_of(&private)
                    .map_err(|_| KeyError::MalformedPrivate { name: name.clone() })?;
                (Private::Raw(private), public.blob())
            }
        };

        if derived_public != meta.public_key {
            return Err(KeyError::Mismatch { name });
        }
        if let (KeyType::Rsa(bits), Private::Rsa(key)) = (key_type, &private) {
            if key.bits() != bits {
                return Err(KeyError::Mismatch { name });
            }
        }

        let fingerprint = fingerprint(&meta.public_key);
        let fingerprint_bytes = fingerprint_bytes(&meta.public_key);
        Ok(LoadedKey { meta, key_type, purpose, fingerprint, fingerprint_bytes, private })
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn public_blob(&self) -> &[u8] {
        &self.meta.public_key
    }

    /// The private bytes of keys whose operations live in other modules.
    pub fn raw_private(&self) -> Option<&SecretBuf> {
        match &self.private {
            Private::Raw(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The Mixmaster key of a `mixmaster-*` key, for header RSA blocks.
    pub fn mixmaster(&self) -> Option<&keyward_mixmaster::RsaBlockKey> {
        match &self.private {
            Private::Mixmaster(key) => Some(key),
            _ => None,
        }
    }

    /// Checks the key's validity window against `now`.
    pub fn is_valid_at(&self, now: u64) -> bool {
        let started = self.meta.not_before.is_none_or(|start| now >= start);
        let not_ended = self.meta.not_after.is_none_or(|end| now <= end);
        started && not_ended
    }
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("name", &self.meta.name)
            .field("type", &self.key_type)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Encodes a Mixmaster RSA public key as Keyward's public-key blob. The
/// type name differs from `ssh-rsa` so that the blob can never be taken for
/// an SSH key.
pub fn mixmaster_public_blob(e: &[u8], n: &[u8]) -> Vec<u8> {
    use crate::wire::{mpint_body, Writer};

    let mut blob = Vec::with_capacity(n.len() + 48);
    blob.put_string(MIXMASTER_ALGORITHM.as_bytes());
    blob.put_string(&mpint_body(e));
    blob.put_string(&mpint_body(n));
    blob
}

/// The type name inside a Mixmaster key's public-key blob.
pub const MIXMASTER_ALGORITHM: &str = "mixmaster-rsa@keyward";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing::FLAG_RSA_SHA2_256;

    fn meta(name: &str, key_type: KeyType, public_key: Vec<u8>) -> EntryMeta {
        EntryMeta {
            name: name.into(),
            key_type: key_type.to_string(),
            purpose: key_type.default_purpose().to_string(),
            public_key,
            comment: String::new(),
            created: 0,
            not_before: None,
            not_after: None,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn generated_keys_load_and_sign() {
        for key_type in [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::Rsa(2048)] {
            let generated = generate::generate(key_type).unwrap();
            let key = LoadedKey::load(meta("k", key_type, generated.public_blob), generated.private).unwrap();
            let signature = key.sign(b"data", FLAG_RSA_SHA2_256, false).unwrap();
            assert!(!signature.is_empty(), "{key_type}");
        }
    }

    #[test]
    fn ed25519_signature_verifies() {
        use ed25519_dalek::Verifier;

        let generated = generate::generate(KeyType::Ed25519).unwrap();
        let public: [u8; 32] = generated.public_blob[generated.public_blob.len() - 32..].try_into().unwrap();
        let key = LoadedKey::load(meta("k", KeyType::Ed25519, generated.public_blob), generated.private).unwrap();
        let encoded = key.sign(b"message", 0, false).unwrap();
        let mut reader = crate::wire::Reader::new(&encoded);
        assert_eq!(reader.string().unwrap(), b"ssh-ed25519");
        let raw: [u8; 64] = reader.string().unwrap().try_into().unwrap();
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        assert!(verifying.verify(b"message", &ed25519_dalek::Signature::from_bytes(&raw)).is_ok());
    }

    #[test]
    fn rejects_private_key_of_another_public_key() {
        let first = generate::generate(KeyType::Ed25519).unwrap();
        let second = generate::generate(KeyType::Ed25519).unwrap();
        let error = LoadedKey::load(meta("k", KeyType::Ed25519, first.public_blob), second.private).unwrap_err();
        assert!(matches!(error, KeyError::Mismatch { .. }));
    }

    #[test]
    fn rsa_without_sha2_flag_is_refused_unless_allowed() {
        let generated = generate::generate(KeyType::Rsa(2048)).unwrap();
        let key = LoadedKey::load(meta("k", KeyType::Rsa(2048), generated.public_blob), generated.private).unwrap();
        assert_eq!(key.sign(b"data", 0, false), Err(signing::SignRefusal::Sha1));
        assert!(key.sign(b"data", 0, true).is_ok());
    }
}
