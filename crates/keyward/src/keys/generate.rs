//! Fresh keys from the operating system's random number generator.

use ed25519_dalek::SigningKey;
use openssl::rsa::Rsa;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::{ecdsa, ed25519, rsa, KeyError, KeyType, Purpose};
use crate::keystore::{Entry, EntryMeta};
use crate::secret::SecretBuf;

/// A generated key: its public-key blob and its private encoding as the
/// keystore stores it.
pub struct GeneratedKey {
    pub public_blob: Vec<u8>,
    pub private: SecretBuf,
}

/// The metadata of a key to generate, as `keygen` and the daemon take it.
pub struct KeySpec<'a> {
    pub key_type: KeyType,
    pub purpose: Purpose,
    pub name: &'a str,
    pub comment: &'a str,
    /// Seconds since the epoch.
    pub created: u64,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
}

/// Generates a key and builds its keystore entry, with the Mixmaster key-ID
/// attribute for Mixmaster keys.
pub fn generate_entry(spec: &KeySpec<'_>) -> Result<Entry, KeyError> {
    let generated = generate(spec.key_type);
    // Generation leaves copies of the private key in the frames it returned
    // from; wipe them before going on.
    keyward_protect::scrub_stack();
    let generated = generated?;

    let meta = EntryMeta {
        name: spec.name.to_owned(),
        key_type: spec.key_type.to_string(),
        purpose: spec.purpose.to_string(),
        attributes: crate::mixmaster::key_attributes(&generated.public_blob),
        public_key: generated.public_blob,
        comment: spec.comment.to_owned(),
        created: spec.created,
        not_before: spec.not_before,
        not_after: spec.not_after,
    };
    Ok(Entry { meta, private: generated.private })
}

/// Generates a key of `key_type`.
pub fn generate(key_type: KeyType) -> Result<GeneratedKey, KeyError> {
    match key_type {
        KeyType::Ed25519 => {
            let mut seed = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(seed.as_mut());
            let public = SigningKey::from_bytes(&seed).verifying_key();
            Ok(GeneratedKey {
                public_blob: ed25519::public_blob(public.as_bytes()),
                private: SecretBuf::from_slice(seed.as_ref())?,
            })
        }
        KeyType::EcdsaP256 => {
            let secret = p256::SecretKey::random(&mut OsRng);
            let public = secret.public_key().to_encoded_point(false);
            let scalar = Zeroizing::new(secret.to_bytes());
            Ok(GeneratedKey {
                public_blob: ecdsa::public_blob(public.as_bytes()),
                private: SecretBuf::from_slice(scalar.as_slice())?,
            })
        }
        KeyType::Rsa(bits) | KeyType::Mixmaster(bits) => {
            let rsa = Rsa::generate(bits).map_err(|error| KeyError::Generation(error.to_string()))?;
            let der = Zeroizing::new(rsa.private_key_to_der().map_err(|error| KeyError::Generation(error.to_string()))?);
            let (e, n) = (rsa.e().to_vec(), rsa.n().to_vec());
            let public_blob = match key_type {
                KeyType::Mixmaster(_) => super::mixmaster_public_blob(&e, &n),
                _ => rsa::public_blob(&e, &n),
            };
            Ok(GeneratedKey { public_blob, private: SecretBuf::from_slice(&der)? })
        }
        KeyType::X25519 => {
            let secret = crate::x25519::X25519Secret::generate().map_err(|error| KeyError::Generation(error.to_string()))?;
            Ok(GeneratedKey { public_blob: secret.public_key().blob(), private: secret.into_secret_buf() })
        }
    }
}
