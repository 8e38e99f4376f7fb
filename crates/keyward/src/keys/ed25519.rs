//! Ed25519 with ed25519-dalek. Only the 32-byte seed is kept; the expanded
//! secret is derived for each signature and wiped afterwards, so between
//! requests no copy of it exists outside protected memory.

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::Sha512;
use zeroize::Zeroizing;

use super::KeyError;
use crate::secret::SecretBuf;
use crate::wire::Writer;

pub const ALGORITHM: &str = "ssh-ed25519";

pub struct Ed25519Key {
    seed: SecretBuf,
    verifying: VerifyingKey,
}

impl Ed25519Key {
    pub fn from_seed(seed: SecretBuf, name: &str) -> Result<Self, KeyError> {
        let seed_array: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed.expose().try_into().map_err(|_| KeyError::MalformedPrivate { name: name.to_owned() })?,
        );
        let verifying = SigningKey::from_bytes(&seed_array).verifying_key();
        Ok(Ed25519Key { seed, verifying })
    }

    pub fn public_blob(&self) -> Vec<u8> {
        public_blob(self.verifying.as_bytes())
    }

    /// Signs `data`, returning the raw 64-byte signature.
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        let signature = self.sign_inner(data);
        // The expanded secret zeroizes itself on drop, but SHA-512's state
        // and moved copies stay in the frames below this one.
        keyward_protect::scrub_stack_after_operation();
        signature
    }

    #[inline(never)]
    fn sign_inner(&self, data: &[u8]) -> [u8; 64] {
        let seed: &[u8; 32] = self.seed.expose().try_into().expect("seed length checked at load");
        let expanded = ExpandedSecretKey::from(seed);
        raw_sign::<Sha512>(&expanded, data, &self.verifying).to_bytes()
    }
}

/// Encodes an Ed25519 public key as an SSH public-key blob.
pub fn public_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(51);
    blob.put_string(ALGORITHM.as_bytes());
    blob.put_string(public);
    blob
}
