//! ECDSA on NIST P-256 with SHA-256, as SSH's `ecdsa-sha2-nistp256`, using
//! the RustCrypto `p256` crate (RFC 6979 deterministic nonces).

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};

use super::KeyError;
use crate::secret::SecretBuf;
use crate::wire::{mpint_body, Writer};

pub const ALGORITHM: &str = "ecdsa-sha2-nistp256";
const CURVE: &str = "nistp256";

pub struct EcdsaP256Key {
    scalar: SecretBuf,
    public_sec1: Vec<u8>,
}

impl EcdsaP256Key {
    pub fn from_scalar(scalar: SecretBuf, name: &str) -> Result<Self, KeyError> {
        let signing = signing_key(&scalar).ok_or_else(|| KeyError::MalformedPrivate { name: name.to_owned() })?;
        let public_sec1 = signing.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        Ok(EcdsaP256Key { scalar, public_sec1 })
    }

    pub fn public_blob(&self) -> Vec<u8> {
        public_blob(&self.public_sec1)
    }

    /// Signs `data` with SHA-256, returning the SSH signature body
    /// (`mpint r`, `mpint s`).
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        // The SigningKey is rebuilt per signature so that the scalar outside
        // protected memory lives only for the length of one request; it
        // zeroizes on drop.
        let signing = signing_key(&self.scalar).expect("scalar checked at load");
        let signature: Signature = signing.sign(data);
        let (r, s) = signature.split_bytes();
        let mut body = Vec::with_capacity(72);
        body.put_string(&mpint_body(&r));
        body.put_string(&mpint_body(&s));
        body
    }
}

fn signing_key(scalar: &SecretBuf) -> Option<SigningKey> {
    SigningKey::from_slice(scalar.expose()).ok()
}

/// Encodes an uncompressed SEC1 P-256 point as an SSH public-key blob.
pub fn public_blob(sec1: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(104);
    blob.put_string(ALGORITHM.as_bytes());
    blob.put_string(CURVE.as_bytes());
    blob.put_string(sec1);
    blob
}
