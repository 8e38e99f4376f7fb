//! RSA signatures (PKCS#1 v1.5 with SHA-256, SHA-512 or, where allowed,
//! SHA-1) through OpenSSL, which blinds private operations and uses
//! constant-time modular exponentiation.
//!
//! NOTE: OpenSSL keeps the private key's big integers and Montgomery
//! contexts in its own heap while the key is loaded; they are cleared when
//! the key is dropped (at seal). SECURITY.md describes what that leaves.

use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;

use super::KeyError;
use crate::wire::{mpint_body, Writer};

pub const ALGORITHM_SHA1: &str = "ssh-rsa";
pub const ALGORITHM_SHA256: &str = "rsa-sha2-256";
pub const ALGORITHM_SHA512: &str = "rsa-sha2-512";

/// The hash an RSA signature uses, chosen by the request's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaHash {
    Sha1,
    Sha256,
    Sha512,
}

impl RsaHash {
    pub fn algorithm(self) -> &'static str {
        match self {
            RsaHash::Sha1 => ALGORITHM_SHA1,
            RsaHash::Sha256 => ALGORITHM_SHA256,
            RsaHash::Sha512 => ALGORITHM_SHA512,
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            RsaHash::Sha1 => MessageDigest::sha1(),
            RsaHash::Sha256 => MessageDigest::sha256(),
            RsaHash::Sha512 => MessageDigest::sha512(),
        }
    }
}

pub struct RsaKey {
    pkey: PKey<Private>,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    pub fn from_pkcs1_der(der: &[u8], name: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::MalformedPrivate { name: name.to_owned() };
        let rsa = Rsa::private_key_from_der(der).map_err(|_| malformed())?;
        if rsa.p().is_none() || rsa.q().is_none() {
            return Err(malformed());
        }
        let n = rsa.n().to_vec();
        let e = rsa.e().to_vec();
        let pkey = PKey::from_rsa(rsa).map_err(|_| malformed())?;
        Ok(RsaKey { pkey, n, e })
    }

    pub fn bits(&self) -> u32 {
        self.pkey.bits()
    }

    pub fn public_blob(&self) -> Vec<u8> {
        public_blob(&self.e, &self.n)
    }

    /// The public exponent and modulus, big-endian.
    pub fn public_components(&self) -> (Vec<u8>, Vec<u8>) {
        (self.e.clone(), self.n.clone())
    }

    /// Signs `data`, returning the raw PKCS#1 v1.5 signature.
    pub fn sign(&self, hash: RsaHash, data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut signer = Signer::new(hash.digest(), &self.pkey)?;
        signer.update(data)?;
        signer.sign_to_vec()
    }
}

/// Encodes an RSA public key as an SSH `ssh-rsa` public-key blob.
pub fn public_blob(e: &[u8], n: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(n.len() + 32);
    blob.put_string(ALGORITHM_SHA1.as_bytes());
    blob.put_string(&mpint_body(e));
    blob.put_string(&mpint_body(n));
    blob
}

/// Builds the PKCS#1 DER of an RSA private key from its components, with
/// the CRT exponents computed when they are not given (OpenSSH stores only
/// n, e, d, iqmp, p, q).
pub fn pkcs1_der_from_components(
    n: &[u8],
    e: &[u8],
    d: &[u8],
    p: &[u8],
    q: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, openssl::error::ErrorStack> {
    use openssl::bn::BigNumContext;

    let mut ctx = BigNumContext::new_secure()?;
    let n = BigNum::from_slice(n)?;
    let e = BigNum::from_slice(e)?;
    let d = BigNum::from_secure_slice(d)?;
    let p = BigNum::from_secure_slice(p)?;
    let q = BigNum::from_secure_slice(q)?;

    let one = BigNum::from_u32(1)?;
    let mut p1 = BigNum::new_secure()?;
    p1.checked_sub(&p, &one)?;
    let mut q1 = BigNum::new_secure()?;
    q1.checked_sub(&q, &one)?;
    let mut dmp1 = BigNum::new_secure()?;
    dmp1.nnmod(&d, &p1, &mut ctx)?;
    let mut dmq1 = BigNum::new_secure()?;
    dmq1.nnmod(&d, &q1, &mut ctx)?;
    let mut iqmp = BigNum::new_secure()?;
    iqmp.mod_inverse(&q, &p, &mut ctx)?;

    let rsa = Rsa::from_private_components(n, e, d, p, q, dmp1, dmq1, iqmp)?;
    Ok(zeroize::Zeroizing::new(rsa.private_key_to_der()?))
}

trait SecureSlice: Sized {
    fn from_secure_slice(bytes: &[u8]) -> Result<Self, openssl::error::ErrorStack>;
}

impl SecureSlice for BigNum {
    fn from_secure_slice(bytes: &[u8]) -> Result<Self, openssl::error::ErrorStack> {
        let mut number = BigNum::new_secure()?;
        number.copy_from_slice(bytes)?;
        Ok(number)
    }
}
