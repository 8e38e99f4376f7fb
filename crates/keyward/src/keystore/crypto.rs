//! Key schedule, AEAD and MAC of the keystore, built on HKDF-SHA256,
//! XChaCha20-Poly1305 and HMAC-SHA256.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::format::{self, KEY_LEN, MAC_LEN, NONCE_LEN, TAG_LEN};
use super::{KdfParams, KeystoreError};
use crate::secret::SecretBuf;

const WRAP_AAD_PREFIX: &[u8] = b"keyward-keystore v1 wrap";
const ENTRY_AAD_PREFIX: &[u8] = b"keyward-keystore v1 entry";
const ENTRY_KEY_INFO: &[u8] = b"keyward keystore v1 entry";
const MAC_KEY_INFO: &[u8] = b"keyward keystore v1 mac";

/// The two keys derived from the keystore key.
pub struct Subkeys {
    pub entry_key: SecretBuf,
    pub mac_key: SecretBuf,
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

pub fn random_secret(len: usize) -> Result<SecretBuf, KeystoreError> {
    let mut out = SecretBuf::new(len).map_err(KeystoreError::Memory)?;
    OsRng.fill_bytes(out.expose_mut());
    Ok(out)
}

/// Derives the entry key and the MAC key from the keystore key, with the
/// keystore id as HKDF salt.
pub fn subkeys(keystore_key: &SecretBuf, keystore_id: &[u8; 16]) -> Result<Subkeys, KeystoreError> {
    let hkdf = Hkdf::<Sha256>::new(Some(keystore_id), keystore_key.expose());
    let mut entry_key = SecretBuf::new(KEY_LEN).map_err(KeystoreError::Memory)?;
    let mut mac_key = SecretBuf::new(KEY_LEN).map_err(KeystoreError::Memory)?;
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
    hkdf.expand(ENTRY_KEY_INFO, entry_key.expose_mut())
        .expect("32 bytes is a valid HKDF length");
    hkdf.expand(MAC_KEY_INFO, mac_key.expose_mut())
        .expect("32 bytes is a valid HKDF length");
    Ok(Subkeys { entry_key, mac_key })
}

pub fn wrap_aad(keystore_id: &[u8; 16], kdf: &KdfParams, salt: &[u8]) -> Vec<u8> {
    let mut aad = WRAP_AAD_PREFIX.to_vec();
    format::put_string(&mut aad, keystore_id);
    format::put_kdf(&mut aad, kdf, salt);
    aad
}

pub fn entry_aad(keystore_id: &[u8; 16], generation: u64, meta_bytes: &[u8]) -> Vec<u8> {
    let mut aad = ENTRY_AAD_PREFIX.to_vec();
    format::put_string(&mut aad, keystore_id);
    format::put_u64(&mut aad, generation);
    aad.extend_from_slice(meta_bytes);
    aad
}

/// Encrypts `plaintext` under `key`; returns the ciphertext with its tag.
pub fn seal(key: &SecretBuf, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new_from_slice(key.expose()).expect("keys are 32 bytes");
    // Reserve room for the tag so encryption never reallocates and leaves a
    // stray copy of the plaintext behind; the buffer is wiped on drop anyway.
    let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buffer.extend_from_slice(plaintext);
    cipher
        .encrypt_in_place(XNonce::from_slice(nonce), aad, &mut *buffer)
        .expect("a Vec buffer with room for the tag cannot fail");
    buffer.to_vec()
}

/// Decrypts `ciphertext` into protected memory; `None` if authentication fails.
pub fn open(
    key: &SecretBuf,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Option<SecretBuf>, KeystoreError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key.expose()).expect("keys are 32 bytes");
    // The plaintext passes through this heap buffer, wiped on drop.
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    if cipher
        .decrypt_in_place(XNonce::from_slice(nonce), aad, &mut *buffer)
        .is_err()
    {
        return Ok(None);
    }
    SecretBuf::from_slice(&buffer)
        .map(Some)
        .map_err(KeystoreError::Memory)
}

pub fn mac(mac_key: &SecretBuf, signed: &[u8]) -> [u8; MAC_LEN] {
    let mut hmac =
        <Hmac<Sha256> as Mac>::new_from_slice(mac_key.expose()).expect("HMAC takes any key length");
    hmac.update(signed);
    hmac.finalize().into_bytes().into()
}

/// Compares the MAC in constant time.
pub fn verify_mac(mac_key: &SecretBuf, signed: &[u8], expected: &[u8; MAC_LEN]) -> bool {
    let mut hmac =
        <Hmac<Sha256> as Mac>::new_from_slice(mac_key.expose()).expect("HMAC takes any key length");
    hmac.update(signed);
    hmac.verify_slice(expected).is_ok()
}
