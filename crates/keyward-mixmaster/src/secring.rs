//! `secring.mix`: the remailer's secret key ring, as `mixmaster -G` writes it.
//!
//! Each key block is text:
//!
//! ```text
//! -----Begin Mix Key-----
//! Created: YYYY-MM-DD
//! Expires: YYYY-MM-DD
//! <key ID, 32 hex digits>
//! 0
//! <IV, 8 bytes in base64>
//! <ciphertext in base64, 40 columns>
//! -----End Mix Key-----
//! ```
//!
//! The ciphertext is two-key 3DES-EDE-CBC under MD5(passphrase), with no salt,
//! work factor or MAC. Its plaintext is a 2-byte little-endian bit count, then
//! n, e, d at the modulus length and p, q, dmp1, dmq1, iqmp at half of it, all
//! big-endian, then zero padding to a multiple of 8. A wrong passphrase shows
//! only as garbage, so the parser checks the key ID and the whole RSA key.

use base64::Engine;
use md5::{Digest, Md5};
use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::rsa::RsaPrivateKeyBuilder;
use std::fmt;
use zeroize::Zeroizing;

use crate::date::parse_date;
use crate::keyid::KeyId;
use crate::symmetric::tdes2_cbc_decrypt;

const BEGIN: &str = "-----Begin Mix Key-----";
const END: &str = "-----End Mix Key-----";

/// Largest modulus accepted, in bits. Mixmaster makes at most 4096-bit keys.
const MAX_BITS: usize = 8192;
/// Smallest modulus accepted, in bits.
const MIN_BITS: usize = 512;

/// Error reading a `secring.mix`. Key blocks are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecringError {
    #[error("no key block found in secring.mix")]
    NoKeys,
    #[error("secring.mix key block {block} is truncated: {what} is missing")]
    Truncated { block: usize, what: &'static str },
    #[error("secring.mix key block {block} is malformed: {reason}")]
    Malformed { block: usize, reason: &'static str },
    #[error(
        "secring.mix key block {block} (key ID {key_id}) does not decrypt to a key with that ID: wrong passphrase, or a damaged block"
    )]
    WrongPassphrase { block: usize, key_id: KeyId },
    #[error(
        "secring.mix key block {block} (key ID {key_id}): the modulus is damaged (p·q matches the key ID, n does not)"
    )]
    DamagedModulus { block: usize, key_id: KeyId },
    #[error("secring.mix key block {block} (key ID {key_id}) is inconsistent: {reason}")]
    InconsistentKey { block: usize, key_id: KeyId, reason: &'static str },
}

/// One RSA key from `secring.mix`, checked for consistency.
///
/// Only [`parse_secring`] makes one, so every `SecretKey` is a consistent RSA
/// key. The components are big-endian without leading zeros. `Debug` shows
/// only the public parts.
pub struct SecretKey {
    key_id: KeyId,
    bits: usize,
    created: u64,
    expires: u64,
    n: Zeroizing<Vec<u8>>,
    e: Zeroizing<Vec<u8>>,
    d: Zeroizing<Vec<u8>>,
    p: Zeroizing<Vec<u8>>,
    q: Zeroizing<Vec<u8>>,
    dmp1: Zeroizing<Vec<u8>>,
    dmq1: Zeroizing<Vec<u8>>,
    iqmp: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("key_id", &self.key_id)
            .field("bits", &self.bits)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Key ID stated in the ring, equal to MD5(n ‖ e).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Seconds since the epoch at 00:00 UTC of the `Created` date.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// Seconds since the epoch at 00:00 UTC of the `Expires` date.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Modulus n.
    pub fn n(&self) -> &Zeroizing<Vec<u8>> {
        &self.n
    }

    /// Public exponent e.
    pub fn e(&self) -> &Zeroizing<Vec<u8>> {
        &self.e
    }

    /// Private exponent d.
    pub fn d(&self) -> &Zeroizing<Vec<u8>> {
        &self.d
    }

    /// First prime factor p.
    pub fn p(&self) -> &Zeroizing<Vec<u8>> {
        &self.p
    }

    /// Second prime factor q.
    pub fn q(&self) -> &Zeroizing<Vec<u8>> {
        &self.q
    }

    /// d mod (p-1).
    pub fn dmp1(&self) -> &Zeroizing<Vec<u8>> {
        &self.dmp1
    }

    /// d mod (q-1).
    pub fn dmq1(&self) -> &Zeroizing<Vec<u8>> {
        &self.dmq1
    }

    /// q⁻¹ mod p.
    pub fn iqmp(&self) -> &Zeroizing<Vec<u8>> {
        &self.iqmp
    }

    /// Encodes the key as a PKCS#1 `RSAPrivateKey` in DER.
    pub fn to_pkcs1_der(&self) -> Zeroizing<Vec<u8>> {
        let bn = |bytes: &[u8]| BigNum::from_slice(bytes).expect("BIGNUM allocation failed");
        let rsa = RsaPrivateKeyBuilder::new(bn(&self.n), bn(&self.e), bn(&self.d))
            .and_then(|b| b.set_factors(bn(&self.p), bn(&self.q)))
            .and_then(|b| b.set_crt_params(bn(&self.dmp1), bn(&self.dmq1), bn(&self.iqmp)))
            .expect("parse_secring checked the components, so OpenSSL accepts them")
            .build();
        Zeroizing::new(rsa.private_key_to_der().expect("OpenSSL encodes a complete RSA key"))
    }

    /// The public part as Mixmaster publishes it: 2-byte little-endian bit
    /// count, then n and e, each left-padded to the modulus length.
    pub fn public_blob(&self) -> Vec<u8> {
        public_blob(&self.n, &self.e, self.bits)
    }
}

pub(crate) fn public_blob(n: &[u8], e: &[u8], bits: usize) -> Vec<u8> {
    let len = bits.div_ceil(8);
    let mut out = Vec::with_capacity(2 + 2 * len);
    out.extend_from_slice(&(bits as u16).to_le_bytes());
    for value in [n, e] {
        let value = crate::keyid::strip_zeros(value);
        out.extend(std::iter::repeat_n(0u8, len.saturating_sub(value.len())));
        out.extend_from_slice(value);
    }
    out
}

/// One key block as text, before decryption.
struct RawBlock<'a> {
    created: Option<&'a str>,
    expires: Option<&'a str>,
    key_id: &'a str,
    iv: &'a str,
    body: Vec<&'a str>,
}

/// Parses every key block of a `secring.mix` and decrypts it with
/// `passphrase`, taken as the exact bytes given (no Unicode normalisation).
///
/// All or nothing: any block that fails to parse, decrypt or check makes the
/// whole ring fail, so an import never takes a partial ring.
pub fn parse_secring(bytes: &[u8], passphrase: &[u8]) -> Result<Vec<SecretKey>, SecringError> {
    let blocks = split_blocks(bytes)?;
    if blocks.is_empty() {
        return Err(SecringError::NoKeys);
    }
    let key: Zeroizing<[u8; 16]> = Zeroizing::new(Md5::digest(passphrase).into());
    blocks
        .iter()
        .enumerate()
        .map(|(i, raw)| decrypt_block(i + 1, raw, &key))
        .collect()
}

fn split_blocks(bytes: &[u8]) -> Result<Vec<RawBlock<'_>>, SecringError> {
    // Key blocks are ASCII; anything else in the file is outside a block and
    // ignored, as Mixmaster ignores it, so split on '\n' over the raw bytes.
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let mut blocks = Vec::new();
    while let Some(line) = lines.next() {
        if line != BEGIN.as_bytes() {
            continue;
        }
        let block = blocks.len() + 1;
        let malformed = |reason| SecringError::Malformed { block, reason };
        let mut next_line = |what| -> Result<&str, SecringError> {
            let line = lines.next().ok_or(SecringError::Truncated { block, what })?;
            std::str::from_utf8(line).map_err(|_| malformed("line is not ASCII text"))
        };
        let mut created = None;
        let mut expires = None;
        let mut line = next_line("the key ID line")?;
        while let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "created" => created = Some(value.trim()),
                "expires" => expires = Some(value.trim()),
                _ => {}
            }
            line = next_line("the key ID line")?;
        }
        let key_id = line.trim();
        let _flag = next_line("the line after the key ID")?;
        let iv = next_line("the IV line")?.trim();
        let mut body = Vec::new();
        loop {
            let line = next_line("the end line")?;
            if line == END {
                break;
            }
            body.push(line.trim());
        }
        blocks.push(RawBlock { created, expires, key_id, iv, body });
    }
    Ok(blocks)
}

fn decrypt_block(block: usize, raw: &RawBlock<'_>, key: &[u8; 16]) -> Result<SecretKey, SecringError> {
    let malformed = |reason| SecringError::Malformed { block, reason };
    let key_id = KeyId::from_hex(raw.key_id).map_err(|_| malformed("the key ID is not 32 hex digits"))?;
    let created = parse_date(raw.created.ok_or(malformed("the Created line is missing"))?)
        .ok_or(malformed("the Created date is not YYYY-MM-DD"))?;
    let expires = parse_date(raw.expires.ok_or(malformed("the Expires line is missing"))?)
        .ok_or(malformed("the Expires date is not YYYY-MM-DD"))?;

    let b64 = base64::engine::general_purpose::STANDARD;
    let iv: [u8; 8] = b64
        .decode(raw.iv)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(malformed("the IV is not 8 bytes of base64"))?;
    let joined: String = raw.body.concat();
    // An 8192-bit key blob is 5640 bytes, 7520 characters of base64.
    if joined.len() > 8192 {
        return Err(malformed("the key data is too long"));
    }
    let mut plain = Zeroizing::new(b64.decode(joined).map_err(|_| malformed("the key data is not valid base64"))?);
    if plain.is_empty() || plain.len() % 8 != 0 {
        return Err(malformed("the key data is not a whole number of 8-byte blocks"));
    }
    tdes2_cbc_decrypt(key, &iv, &mut plain);

    let fields = split_fields(&plain).ok_or(SecringError::WrongPassphrase { block, key_id })?;
    if KeyId::compute(fields.n, fields.e) != Some(key_id) {
        // Tell a damaged modulus from a wrong passphrase: with the right
        // passphrase and intact factors, p·q still gives the stated key ID.
        if product_matches_id(&fields, key_id) {
            return Err(SecringError::DamagedModulus { block, key_id });
        }
        return Err(SecringError::WrongPassphrase { block, key_id });
    }
    check_consistency(&fields).map_err(|reason| SecringError::InconsistentKey { block, key_id, reason })?;

    let own = |bytes: &[u8]| Zeroizing::new(crate::keyid::strip_zeros(bytes).to_vec());
    Ok(SecretKey {
        key_id,
        bits: fields.bits,
        created,
        expires,
        n: own(fields.n),
        e: own(fields.e),
        d: own(fields.d),
        p: own(fields.p),
        q: own(fields.q),
        dmp1: own(fields.dmp1),
        dmq1: own(fields.dmq1),
        iqmp: own(fields.iqmp),
    })
}

/// The fields of a decrypted key blob, borrowed from it.
struct Fields<'a> {
    bits: usize,
    n: &'a [u8],
    e: &'a [u8],
    d: &'a [u8],
    p: &'a [u8],
    q: &'a [u8],
    dmp1: &'a [u8],
    dmq1: &'a [u8],
    iqmp: &'a [u8],
}

/// Splits the plaintext; `None` when its length does not fit its bit count,
/// which is what a wrong passphrase usually gives.
fn split_fields(plain: &[u8]) -> Option<Fields<'_>> {
    let bits = usize::from(u16::from_le_bytes([plain[0], plain[1]]));
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return None;
    }
    let len = bits.div_ceil(8);
    let half = len.div_ceil(2);
    let need = 2 + 3 * len + 5 * half;
    if plain.len() < need || plain.len() > need + 8 {
        return None;
    }
    let mut rest = &plain[2..];
    let mut take = |size: usize| {
        let (head, tail) = rest.split_at(size);
        rest = tail;
        head
    };
    Some(Fields {
        bits,
        n: take(len),
        e: take(len),
        d: take(len),
        p: take(half),
        q: take(half),
        dmp1: take(half),
        dmq1: take(half),
        iqmp: take(half),
    })
}

fn bn(bytes: &[u8]) -> BigNum {
    BigNum::from_slice(bytes).expect("BIGNUM allocation failed")
}

fn product_matches_id(fields: &Fields<'_>, key_id: KeyId) -> bool {
    let mut ctx = BigNumContext::new().expect("BIGNUM context allocation failed");
    let mut product = BigNum::new().expect("BIGNUM allocation failed");
    if product.checked_mul(&bn(fields.p), &bn(fields.q), &mut ctx).is_err() {
        return false;
    }
    let product = product.to_vec();
    product.len() == fields.bits.div_ceil(8) && KeyId::compute(&product, fields.e) == Some(key_id)
}

/// Checks that the components form one RSA key.
fn check_consistency(f: &Fields<'_>) -> Result<(), &'static str> {
    let mut ctx = BigNumContext::new().expect("BIGNUM context allocation failed");
    let (n, e, d, p, q) = (bn(f.n), bn(f.e), bn(f.d), bn(f.p), bn(f.q));
    let (dmp1, dmq1, iqmp) = (bn(f.dmp1), bn(f.dmq1), bn(f.iqmp));
    let one = BigNum::from_u32(1).expect("BIGNUM allocation failed");

    if n.num_bits() as usize != f.bits {
        return Err("the bit count field does not match the modulus");
    }
    if e.num_bits() < 2 || !e.is_bit_set(0) {
        return Err("the public exponent is not an odd number above 1");
    }
    if p <= one || q <= one {
        return Err("a prime factor is 0 or 1");
    }
    let mut product = BigNum::new().expect("BIGNUM allocation failed");
    product.checked_mul(&p, &q, &mut ctx).map_err(|_| "p·q could not be computed")?;
    if product != n {
        return Err("p·q does not equal n");
    }
    let mut p1 = BigNum::new().expect("BIGNUM allocation failed");
    let mut q1 = BigNum::new().expect("BIGNUM allocation failed");
    p1.checked_sub(&p, &one).map_err(|_| "p-1 could not be computed")?;
    q1.checked_sub(&q, &one).map_err(|_| "q-1 could not be computed")?;

    // e·d ≡ 1 modulo both p-1 and q-1 is e·d ≡ 1 mod λ(n); a d computed
    // modulo φ(n) satisfies it too.
    let mut ed = BigNum::new().expect("BIGNUM allocation failed");
    ed.checked_mul(&e, &d, &mut ctx).map_err(|_| "e·d could not be computed")?;
    for modulus in [&p1, &q1] {
        if mod_of(&ed, modulus, &mut ctx)? != one {
            return Err("d is not the inverse of e modulo λ(n)");
        }
    }
    if mod_of(&d, &p1, &mut ctx)? != dmp1 {
        return Err("dmp1 is not d mod (p-1)");
    }
    if mod_of(&d, &q1, &mut ctx)? != dmq1 {
        return Err("dmq1 is not d mod (q-1)");
    }
    let mut iq = BigNum::new().expect("BIGNUM allocation failed");
    iq.mod_mul(&iqmp, &q, &p, &mut ctx).map_err(|_| "iqmp·q mod p could not be computed")?;
    if iq != one {
        return Err("iqmp is not the inverse of q modulo p");
    }
    if d >= n {
        return Err("d is not below n");
    }
    // Primality of p and q, and OpenSSL's own checks on top of the above.
    let rsa = RsaPrivateKeyBuilder::new(bn(f.n), bn(f.e), bn(f.d))
        .and_then(|b| b.set_factors(bn(f.p), bn(f.q)))
        .and_then(|b| b.set_crt_params(bn(f.dmp1), bn(f.dmq1), bn(f.iqmp)))
        .map_err(|_| "OpenSSL could not build the key")?
        .build();
    match rsa.check_key() {
        Ok(true) => Ok(()),
        _ => Err("OpenSSL's key check failed (p or q is not prime)"),
    }
}

fn mod_of(a: &BigNumRef, m: &BigNumRef, ctx: &mut BigNumContext) -> Result<BigNum, &'static str> {
    let mut r = BigNum::new().expect("BIGNUM allocation failed");
    r.nnmod(a, m, ctx).map_err(|_| "a modular reduction failed")?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ring_without_blocks() {
        assert_eq!(parse_secring(b"", b"x").unwrap_err(), SecringError::NoKeys);
        assert_eq!(parse_secring(b"hello\n", b"x").unwrap_err(), SecringError::NoKeys);
    }

    #[test]
    fn rejects_block_cut_after_begin() {
        let err = parse_secring(b"-----Begin Mix Key-----\nCreated: 2026-12-04\n", b"x").unwrap_err();
        assert!(matches!(err, SecringError::Truncated { block: 1, .. }), "{err:?}");
    }
}
