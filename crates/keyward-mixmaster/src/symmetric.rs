//! The symmetric layers of Mixmaster, on top of RustCrypto ciphers.

use aes::cipher::{AsyncStreamCipher, BlockDecryptMut, BlockEncrypt, KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Decrypts `data` in place with two-key 3DES-EDE (K1 K2 K1) in CBC mode.
/// `data.len()` must be a multiple of 8 (callers check it).
pub(crate) fn tdes2_cbc_decrypt(key: &[u8; 16], iv: &[u8; 8], data: &mut [u8]) {
    let dec = cbc::Decryptor::<des::TdesEde2>::new(key.into(), iv.into());
    cbc_decrypt_blocks(dec, data);
}

/// Decrypts `data` in place with three-key 3DES-EDE in CBC mode.
/// `data.len()` must be a multiple of 8 (callers check it).
pub(crate) fn tdes3_cbc_decrypt(key: &[u8; 24], iv: &[u8; 8], data: &mut [u8]) {
    let dec = cbc::Decryptor::<des::TdesEde3>::new(key.into(), iv.into());
    cbc_decrypt_blocks(dec, data);
}

fn cbc_decrypt_blocks<C>(mut dec: cbc::Decryptor<C>, data: &mut [u8])
where
    C: aes::cipher::BlockDecryptMut + aes::cipher::BlockCipher + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U8>,
{
    debug_assert_eq!(data.len() % 8, 0);
    for block in data.chunks_exact_mut(8) {
        dec.decrypt_block_mut(block.into());
    }
}

/// AES-256-CFB128 decryption with OpenSSL's `AES_cfb128_encrypt` IV semantics.
///
/// Mixmaster's version-A code decrypts three buffers in a row with one IV
/// buffer, and each call starts at block offset 0 from whatever the previous
/// call left in it. After a final partial block of length r that buffer holds
/// the r ciphertext bytes followed by the 16 - r unused keystream bytes. Full
/// blocks go through `cfb-mode`; only that tail is handled here.
pub(crate) fn aes256_cfb128_decrypt(key: &[u8; 32], iv: &mut [u8; 16], data: &mut [u8]) {
    let full = data.len() - data.len() % 16;
    if full > 0 {
        let mut last_block = [0u8; 16];
        last_block.copy_from_slice(&data[full - 16..full]);
        cfb_mode::Decryptor::<aes::Aes256>::new(key.into(), (&*iv).into()).decrypt(&mut data[..full]);
        *iv = last_block;
    }
    let tail = &mut data[full..];
    if !tail.is_empty() {
        let cipher = aes::Aes256::new(key.into());
        let mut keystream = *iv;
        cipher.encrypt_block((&mut keystream).into());
        *iv = keystream;
        for (i, byte) in tail.iter_mut().enumerate() {
            iv[i] = *byte;
            *byte ^= keystream[i];
        }
    }
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Checks HMAC-SHA256 of `data` against `expected` in constant time.
pub(crate) fn hmac_sha256_verify(key: &[u8], data: &[u8], expected: &[u8]) -> bool {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.verify_slice(expected).is_ok()
}
