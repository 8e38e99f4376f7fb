//! The per-packet private-key operation: RSAES-PKCS1-v1_5 decryption of a
//! header's RSA block, with a fixed-length result and implicit rejection.
//!
//! This is the padding-oracle surface of a remailer, so it reveals nothing
//! about the padding:
//!
//! * The caller states the message length it expects (24 bytes for 1024-bit
//!   keys, 216 for large keys). The result always has exactly that length.
//! * The RSA private operation runs in OpenSSL without padding
//!   (`RSA_NO_PADDING`, blinded and constant-time in OpenSSL 3), so the full
//!   k-byte encoded message EM comes back for every ciphertext below n.
//! * EM is checked for PKCS#1 v1.5 type 2 padding around a message of exactly
//!   the stated length, in constant time with `subtle`: EM[0] = 0x00,
//!   EM[1] = 0x02, EM[2..k-len-1] all non-zero (at least 8 bytes),
//!   EM[k-len-1] = 0x00.
//! * A rejection value is always computed: HMAC-SHA256 under a secret derived
//!   from the private key, over the ciphertext, expanded with HKDF-Expand
//!   (SHA-256) to the stated length. The result is selected byte by byte
//!   between the message and the rejection value with
//!   `ConditionallySelectable`. There is no early return, branch, log or error
//!   on bad padding. A bad block gives pseudo-random bytes, the same for the
//!   same ciphertext, and the packet's MD5 or HMAC checks then reject them.
//!
//! The only error, [`BlockError::InvalidRequest`], depends on public values:
//! the stated length and the ciphertext length. A ciphertext numerically at or
//! above n (also public) makes OpenSSL fail; that case takes the same path as
//! bad padding and returns the rejection value.

use hkdf::Hkdf;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::keyid::KeyId;
use crate::symmetric::hmac_sha256;

/// HMAC key that derives the rejection secret from the private exponent.
const REJECTION_SECRET_LABEL: &[u8] = b"keyward-mixmaster implicit rejection secret v1";
/// HKDF-Expand info prefix for the rejection value.
const REJECTION_VALUE_LABEL: &[u8] = b"keyward-mixmaster rejection value v1";
/// Message lengths a Mixmaster RSA block carries.
const ALLOWED_OUT_LENS: [usize; 2] = [24, 216];
/// PKCS#1 v1.5 overhead: 00 02, at least 8 padding bytes, 00.
const PKCS1_OVERHEAD: usize = 11;

/// Errors of [`RsaBlockKey`]. None of them depends on the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The request has the wrong shape: a stated length other than 24 or 216,
    /// a ciphertext whose length differs from the modulus length, or a key
    /// too small for the stated length.
    #[error("invalid Mixmaster RSA request: the length must be 24 or 216 and the block as long as the modulus")]
    InvalidRequest,
    /// The DER is not a usable RSA private key.
    #[error("invalid RSA private key (expected PKCS#1 RSAPrivateKey DER)")]
    InvalidKey,
}

/// An RSA private key ready for [`decrypt_fixed`](RsaBlockKey::decrypt_fixed).
pub struct RsaBlockKey {
    pkey: PKey<Private>,
    modulus_bits: usize,
    n: Vec<u8>,
    e: Vec<u8>,
    modulus_len: usize,
    key_id: KeyId,
    rejection_secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RsaBlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaBlockKey")
            .field("key_id", &self.key_id)
            .field("modulus_len", &self.modulus_len)
            .finish_non_exhaustive()
    }
}

impl RsaBlockKey {
    /// Loads a PKCS#1 `RSAPrivateKey` DER and derives the rejection secret:
    /// HMAC-SHA256 keyed with a fixed label over d, big-endian and
    /// left-padded to the modulus length.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<RsaBlockKey, BlockError> {
        let rsa = Rsa::private_key_from_der(der).map_err(|_| BlockError::InvalidKey)?;
        let modulus_len = rsa.size() as usize;
        let modulus_bits = rsa.n().num_bits() as usize;
        let (n, e) = (rsa.n().to_vec(), rsa.e().to_vec());
        let key_id = KeyId::compute(&n, &e).ok_or(BlockError::InvalidKey)?;
        let d = Zeroizing::new(
            rsa.d()
                .to_vec_padded(modulus_len as i32)
                .map_err(|_| BlockError::InvalidKey)?,
        );
        let rejection_secret = Zeroizing::new(hmac_sha256(REJECTION_SECRET_LABEL, &[&d]));
        let pkey = PKey::from_rsa(rsa).map_err(|_| BlockError::InvalidKey)?;
        Ok(RsaBlockKey { pkey, modulus_bits, n, e, modulus_len, key_id, rejection_secret })
    }

    /// Modulus length k in bytes; the RSA block must be this long.
    pub fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    /// Mixmaster key ID of the public key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Formats the `key.txt` block of the public key (see [`crate::key_txt_block`]).
    pub fn key_txt_block(&self) -> String {
        crate::keytxt::key_txt_block(&self.n, &self.e, self.modulus_bits, self.key_id)
    }

    /// Decrypts a Mixmaster RSA block to exactly `out_len` bytes.
    ///
    /// Returns the PKCS#1 v1.5 message when the padding is valid and the
    /// message is exactly `out_len` bytes long, and otherwise a pseudo-random
    /// value of that length determined by the key and the ciphertext. The two
    /// cases take the same code path (see the module documentation).
    pub fn decrypt_fixed(&self, ciphertext: &[u8], out_len: usize) -> Result<Zeroizing<Vec<u8>>, BlockError> {
        let k = self.modulus_len;
        if !ALLOWED_OUT_LENS.contains(&out_len) || ciphertext.len() != k || k < out_len + PKCS1_OVERHEAD {
            return Err(BlockError::InvalidRequest);
        }

        let mut em = Zeroizing::new(vec![0u8; k]);
        let op_ok = self.raw_decrypt(ciphertext, &mut em);

        let separator = k - out_len - 1;
        let mut valid = op_ok & em[0].ct_eq(&0x00) & em[1].ct_eq(&0x02) & em[separator].ct_eq(&0x00);
        for byte in &em[2..separator] {
            valid &= !byte.ct_eq(&0x00);
        }

        let rejection = self.rejection_value(ciphertext, out_len);
        let mut out = Zeroizing::new(vec![0u8; out_len]);
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::conditional_select(&rejection[i], &em[separator + 1 + i], valid);
        }
        Ok(out)
    }

    /// Runs the raw RSA private operation into `em` (k bytes). Returns false,
    /// with `em` all zero, when OpenSSL refuses the ciphertext, which it does
    /// only for c ≥ n, a public property.
    fn raw_decrypt(&self, ciphertext: &[u8], em: &mut [u8]) -> Choice {
        let result = PkeyCtx::new(&self.pkey).and_then(|mut ctx| {
            ctx.decrypt_init()?;
            ctx.set_rsa_padding(Padding::NONE)?;
            ctx.decrypt(ciphertext, Some(em))
        });
        match result {
            Ok(len) if len == em.len() => Choice::from(1),
            _ => {
                em.iter_mut().for_each(|b| *b = 0);
                Choice::from(0)
            }
        }
    }

    fn rejection_value(&self, ciphertext: &[u8], out_len: usize) -> Zeroizing<Vec<u8>> {
        let prk = Zeroizing::new(hmac_sha256(&*self.rejection_secret, &[ciphertext]));
        let hkdf = Hkdf::<Sha256>::from_prk(&*prk).expect("a 32-byte PRK is valid for HKDF-SHA256");
        let mut info = REJECTION_VALUE_LABEL.to_vec();
        info.extend_from_slice(&(out_len as u16).to_be_bytes());
        let mut out = Zeroizing::new(vec![0u8; out_len]);
        hkdf.expand(&info, &mut out).expect("at most 216 bytes is within HKDF's limit");
        out
    }
}
