//! Verification of SSH signatures made by other parties' keys, for
//! `session-bind@openssh.com`: the SSH server's host key signed the
//! session identifier, and the agent checks that before trusting the bind.
//!
//! Supported: `ssh-ed25519`, `ecdsa-sha2-nistp256`, and RSA keys with
//! `rsa-sha2-256` or `rsa-sha2-512` signatures. SHA-1 RSA signatures
//! (`ssh-rsa`) and other key types are rejected.

use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;

use crate::wire::{mpint_magnitude, Reader};

/// The smallest RSA modulus accepted, as OpenSSH's minimum.
const RSA_MIN_BITS: u32 = 1024;
/// The largest RSA modulus accepted, so a peer cannot make the check slow.
const RSA_MAX_BITS: u32 = 16384;

/// The reason a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed public key")]
    MalformedKey,
    #[error("malformed signature")]
    MalformedSignature,
    #[error("unsupported key type or signature algorithm")]
    Unsupported,
    #[error("the signature does not match")]
    Mismatch,
}

/// Verifies `signature` (the SSH encoding: `string algorithm`, `string
/// blob`) over `data` with the SSH public-key blob `public_blob`.
pub fn verify(public_blob: &[u8], signature: &[u8], data: &[u8]) -> Result<(), VerifyError> {
    let mut key = Reader::new(public_blob);
    let key_type = key.string().map_err(|_| VerifyError::MalformedKey)?;
    let mut sig = Reader::new(signature);
    let algorithm = sig.string().map_err(|_| VerifyError::MalformedSignature)?;
    let sig_blob = sig.string().map_err(|_| VerifyError::MalformedSignature)?;
    sig.finish().map_err(|_| VerifyError::MalformedSignature)?;

    match key_type {
        b"ssh-ed25519" => {
            let public = key.string().map_err(|_| VerifyError::MalformedKey)?;
            key.finish().map_err(|_| VerifyError::MalformedKey)?;
            if algorithm != b"ssh-ed25519" {
                return Err(VerifyError::Unsupported);
            }
            verify_ed25519(public, sig_blob, data)
        }
        b"ecdsa-sha2-nistp256" => {
            let curve = key.string().map_err(|_| VerifyError::MalformedKey)?;
            let point = key.string().map_err(|_| VerifyError::MalformedKey)?;
            key.finish().map_err(|_| VerifyError::MalformedKey)?;
            if curve != b"nistp256" {
                return Err(VerifyError::MalformedKey);
            }
            if algorithm != b"ecdsa-sha2-nistp256" {
                return Err(VerifyError::Unsupported);
            }
            verify_p256(point, sig_blob, data)
        }
        b"ssh-rsa" => {
            let e = key.string().map_err(|_| VerifyError::MalformedKey)?;
            let n = key.string().map_err(|_| VerifyError::MalformedKey)?;
            key.finish().map_err(|_| VerifyError::MalformedKey)?;
            let digest = match algorithm {
                b"rsa-sha2-256" => MessageDigest::sha256(),
                b"rsa-sha2-512" => MessageDigest::sha512(),
                _ => return Err(VerifyError::Unsupported),
            };
            verify_rsa(e, n, digest, sig_blob, data)
        }
        _ => Err(VerifyError::Unsupported),
    }
}

fn verify_ed25519(public: &[u8], signature: &[u8], data: &[u8]) -> Result<(), VerifyError> {
    let public: [u8; 32] = public.try_into().map_err(|_| VerifyError::MalformedKey)?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| VerifyError::MalformedSignature)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| VerifyError::MalformedKey)?;
    key.verify_strict(data, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| VerifyError::Mismatch)
}

fn verify_p256(point: &[u8], signature: &[u8], data: &[u8]) -> Result<(), VerifyError> {
    use p256::ecdsa::signature::Verifier;

    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| VerifyError::MalformedKey)?;
    let mut body = Reader::new(signature);
    let r = scalar_bytes(body.string().map_err(|_| VerifyError::MalformedSignature)?)?;
    let s = scalar_bytes(body.string().map_err(|_| VerifyError::MalformedSignature)?)?;
    body.finish().map_err(|_| VerifyError::MalformedSignature)?;
    let signature = p256::ecdsa::Signature::from_scalars(r, s).map_err(|_| VerifyError::MalformedSignature)?;
    key.verify(data, &signature).map_err(|_| VerifyError::Mismatch)
}

/// Decodes an `mpint` body into a 32-byte big-endian scalar.
fn scalar_bytes(mpint: &[u8]) -> Result<[u8; 32], VerifyError> {
    let magnitude = mpint_magnitude(mpint).map_err(|_| VerifyError::MalformedSignature)?;
    if magnitude.len() > 32 {
        return Err(VerifyError::MalformedSignature);
    }
    let mut scalar = [0u8; 32];
    scalar[32 - magnitude.len()..].copy_from_slice(magnitude);
    Ok(scalar)
}

fn verify_rsa(e: &[u8], n: &[u8], digest: MessageDigest, signature: &[u8], data: &[u8]) -> Result<(), VerifyError> {
    let e = mpint_magnitude(e).map_err(|_| VerifyError::MalformedKey)?;
    let n = mpint_magnitude(n).map_err(|_| VerifyError::MalformedKey)?;
    if n.len() > (RSA_MAX_BITS / 8) as usize || e.is_empty() || e.len() > 8 {
        return Err(VerifyError::MalformedKey);
    }
    let malformed = |_| VerifyError::MalformedKey;
    let rsa = Rsa::from_public_components(BigNum::from_slice(n).map_err(malformed)?, BigNum::from_slice(e).map_err(malformed)?)
        .map_err(malformed)?;
    if rsa.n().num_bits() < RSA_MIN_BITS as i32 {
        return Err(VerifyError::MalformedKey);
    }
    let key = PKey::from_rsa(rsa).map_err(malformed)?;
    let mut verifier = openssl::sign::Verifier::new(digest, &key).map_err(|_| VerifyError::Mismatch)?;
    verifier.update(data).map_err(|_| VerifyError::Mismatch)?;
    match verifier.verify(signature) {
        Ok(true) => Ok(()),
        _ => Err(VerifyError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing::{FLAG_RSA_SHA2_256, FLAG_RSA_SHA2_512};
    use crate::keys::{generate, KeyType, LoadedKey};
    use crate::keystore::EntryMeta;

    fn key(key_type: KeyType) -> LoadedKey {
        let generated = generate::generate(key_type).unwrap();
        let meta = EntryMeta {
            name: "host".into(),
            key_type: key_type.to_string(),
            purpose: key_type.default_purpose().to_string(),
            public_key: generated.public_blob,
            comment: String::new(),
            created: 0,
            not_before: None,
            not_after: None,
            attributes: Vec::new(),
        };
        LoadedKey::load(meta, generated.private).unwrap()
    }

    #[test]
    fn accepts_each_supported_type() {
        for (key_type, flags) in [
            (KeyType::Ed25519, 0),
            (KeyType::EcdsaP256, 0),
            (KeyType::Rsa(2048), FLAG_RSA_SHA2_256),
            (KeyType::Rsa(2048), FLAG_RSA_SHA2_512),
        ] {
            let host = key(key_type);
            let signature = host.sign(b"session id", flags, false).unwrap();
            assert_eq!(verify(host.public_blob(), &signature, b"session id"), Ok(()), "{key_type}");
        }
    }

    #[test]
    fn rejects_other_data_and_other_key() {
        for key_type in [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::Rsa(2048)] {
            let host = key(key_type);
            let other = key(key_type);
            let signature = host.sign(b"session id", FLAG_RSA_SHA2_256, false).unwrap();
            assert_eq!(verify(host.public_blob(), &signature, b"session iD"), Err(VerifyError::Mismatch), "{key_type}");
            assert_eq!(verify(other.public_blob(), &signature, b"session id"), Err(VerifyError::Mismatch), "{key_type}");
        }
    }

    #[test]
    fn rejects_sha1_rsa_signature() {
        let host = key(KeyType::Rsa(2048));
        let signature = host.sign(b"session id", 0, true).unwrap();
        assert_eq!(verify(host.public_blob(), &signature, b"session id"), Err(VerifyError::Unsupported));
    }

    #[test]
    fn rejects_truncated_and_mixed_inputs() {
        let host = key(KeyType::Ed25519);
        let ec = key(KeyType::EcdsaP256);
        let signature = host.sign(b"x", 0, false).unwrap();
        assert!(verify(host.public_blob(), &signature[..signature.len() - 1], b"x").is_err());
        assert!(verify(&host.public_blob()[..10], &signature, b"x").is_err());
        assert_eq!(verify(ec.public_blob(), &signature, b"x"), Err(VerifyError::Unsupported));
        assert!(verify(b"", b"", b"").is_err());
    }
}
