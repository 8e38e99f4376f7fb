//! Mixmaster Type II keys in Keyward: importing `secring.mix`, the public
//! `key.txt` block, key validity, and the wire format of the
//! `mixmaster-rsa@keyward` extension (specified byte for byte in
//! `docs/PROTOCOL.md`).
//!
//! The daemon side of the extension is `service::mixmaster`; the formats and
//! the RSA operation itself are in the `keyward-mixmaster` crate.

use keyward_mixmaster::{KeyId, RemailerInfo, SecretKey, SecringError, SECONDS_PER_DAY};
use zeroize::Zeroizing;

use crate::keys::{mixmaster_public_blob, KeyType, MIXMASTER_ALGORITHM};
use crate::secret::SecretBuf;
use crate::wire::{mpint_magnitude, Reader, WireError, Writer};

/// Name of the extension that decrypts one header RSA block.
pub const EXTENSION: &str = "mixmaster-rsa@keyward";

/// The RSA plaintext lengths a request may state: 24 bytes for 1024-bit keys
/// (a 3DES key), 216 for the large-key "version A" format.
pub const OUT_LENS: [u32; 2] = [24, 216];

/// Entry attribute holding the Mixmaster key ID (32 lower-case hex digits).
pub const KEY_ID_ATTRIBUTE: &str = "mixmaster-key-id";

/// Key lifetime of a fresh 1024-bit key, as Mixmaster 3.0 sets it (390 days,
/// "13 months").
pub const LIFETIME_1024_DAYS: u64 = 390;
/// Key lifetime of a fresh larger key, as Mixmaster 3.2 sets it (180 days,
/// "6 months").
pub const LIFETIME_LARGE_DAYS: u64 = 180;

/// A `mixmaster-rsa@keyward` request body.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaRequest {
    pub key_id: [u8; 16],
    pub rsa_block: Vec<u8>,
    pub out_len: u32,
}

impl std::fmt::Debug for RsaRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaRequest")
            .field("key_id", &hex::encode(self.key_id))
            .field("rsa_block_len", &self.rsa_block.len())
            .field("out_len", &self.out_len)
            .finish()
    }
}

impl RsaRequest {
    /// Parses the extension's request body: `string key-id` (16 bytes),
    /// `string rsa-block`, `uint32 out-len`, and nothing after. The caller
    /// checks `out_len` against [`OUT_LENS`] and the block length against
    /// the key; this parser only checks the shape.
    pub fn parse(body: &[u8]) -> Result<RsaRequest, WireError> {
        let mut reader = Reader::new(body);
        let key_id: [u8; 16] = reader.string()?.try_into().map_err(|_| WireError("key ID is not 16 bytes"))?;
        let rsa_block = reader.string()?.to_vec();
        let out_len = reader.u32()?;
        reader.finish()?;
        Ok(RsaRequest { key_id, rsa_block, out_len })
    }

    /// Encodes the request body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.rsa_block.len() + 32);
        body.put_string(&self.key_id);
        body.put_string(&self.rsa_block);
        body.put_u32(self.out_len);
        body
    }
}

/// Encodes the reply body: `string plaintext`.
pub fn reply_body(plaintext: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(plaintext.len() + 4));
    body.put_string(plaintext);
    body
}

/// Parses the reply body; the plaintext must be exactly `out_len` bytes.
pub fn parse_reply_body(body: &[u8], out_len: u32) -> Result<Zeroizing<Vec<u8>>, WireError> {
    let mut reader = Reader::new(body);
    let plaintext = reader.string()?;
    reader.finish()?;
    if plaintext.len() != out_len as usize {
        return Err(WireError("plaintext length differs from the requested length"));
    }
    Ok(Zeroizing::new(plaintext.to_vec()))
}

/// Returns the Mixmaster key type for a modulus of `bits` bits: 1024 (the spec
/// format), or 2048, 3072 and 4096 (the large-key format). Other sizes
/// cannot be addressed by a Type II packet.
pub fn key_type_for_bits(bits: usize) -> Option<KeyType> {
    match bits {
        1024 | 2048 | 3072 | 4096 => Some(KeyType::Mixmaster(bits as u32)),
        _ => None,
    }
}

/// A Mixmaster public key taken from Keyward's public-key blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// Modulus, big-endian, no leading zeros.
    pub n: Vec<u8>,
    /// Public exponent, big-endian, no leading zeros.
    pub e: Vec<u8>,
}

impl PublicKey {
    /// Parses a `mixmaster-rsa@keyward` public-key blob: `string` type name,
    /// `mpint e`, `mpint n`.
    pub fn parse(blob: &[u8]) -> Result<PublicKey, WireError> {
        let mut reader = Reader::new(blob);
        if reader.string()? != MIXMASTER_ALGORITHM.as_bytes() {
            return Err(WireError("not a Mixmaster public key"));
        }
        let e = mpint_magnitude(reader.string()?)?.to_vec();
        let n = mpint_magnitude(reader.string()?)?.to_vec();
        reader.finish()?;
        if n.is_empty() || e.is_empty() {
            return Err(WireError("empty RSA component"));
        }
        Ok(PublicKey { n, e })
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        (self.n.len() - 1) * 8 + (8 - self.n[0].leading_zeros() as usize)
    }

    /// Computes the Mixmaster key ID, MD5(n ‖ e).
    pub fn key_id(&self) -> KeyId {
        KeyId::compute(&self.n, &self.e).unwrap_or(KeyId([0; 16]))
    }

    /// Formats the `key.txt` a remailer publishes, byte for byte as Mixmaster
    /// writes it: the capability line, an empty line, the
    /// `-----Begin Mix Key-----` block and an empty line. `created` and
    /// `expires` are seconds since the epoch; only their UTC dates are
    /// written.
    pub fn key_txt(&self, info: &RemailerInfo<'_>, created: u64, expires: u64) -> String {
        let key_id = self.key_id();
        format!(
            "{}\n{}\n",
            keyward_mixmaster::capability_line(info, key_id, created, expires),
            keyward_mixmaster::key_txt_block(&self.n, &self.e, self.bits(), key_id)
        )
    }
}

/// Returns the entry attributes a Mixmaster key gets: its key ID. Empty
/// for a blob that is not a Mixmaster public key.
pub fn key_attributes(public_blob: &[u8]) -> Vec<(String, String)> {
    match PublicKey::parse(public_blob) {
        Ok(key) => vec![(KEY_ID_ATTRIBUTE.to_owned(), key.key_id().to_hex())],
        Err(_) => Vec::new(),
    }
}

/// Start (00:00 UTC) of the day holding `secs`.
pub fn day_start(secs: u64) -> u64 {
    secs - secs % SECONDS_PER_DAY
}

/// Validity dates for a fresh key of `bits` bits made at `now`, as
/// Mixmaster sets them: created today, expiring after 390 days (1024-bit
/// keys, Mixmaster 3.0) or 180 days (larger keys, Mixmaster 3.2). Both are
/// 00:00 UTC of the day.
pub fn fresh_key_validity(bits: u32, now: u64) -> (u64, u64) {
    let created = day_start(now);
    let days = if bits == 1024 { LIFETIME_1024_DAYS } else { LIFETIME_LARGE_DAYS };
    (created, created + days * SECONDS_PER_DAY)
}

/// Returns whether a Mixmaster key with these stored validity bounds may decrypt
/// at `now`: from 00:00 UTC of its first day until 00:00 UTC of its last
/// day plus Mixmaster's 7-day grace period. A missing bound does not limit.
pub fn usable(not_before: Option<u64>, not_after: Option<u64>, now: u64) -> bool {
    let created = not_before.map_or(0, day_start);
    let expires = not_after.map_or(u64::MAX - keyward_mixmaster::KEY_GRACE_PERIOD_SECS, day_start);
    keyward_mixmaster::key_usable(created, expires, now)
}

/// One key read from a `secring.mix`, ready for the keystore.
pub struct ImportedRingKey {
    pub key_type: KeyType,
    pub key_id: KeyId,
    pub public_blob: Vec<u8>,
    /// PKCS#1 `RSAPrivateKey` DER.
    pub private: SecretBuf,
    /// 00:00 UTC of the `Created` date.
    pub created: u64,
    /// 00:00 UTC of the `Expires` date.
    pub expires: u64,
}

/// An error importing a `secring.mix`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingImportError {
    #[error(transparent)]
    Ring(#[from] SecringError),
    #[error("secring.mix key {key_id} has {bits} bits; Type II packets address only 1024-, 2048-, 3072- and 4096-bit keys")]
    UnsupportedSize { key_id: KeyId, bits: usize },
    #[error(transparent)]
    Memory(#[from] keyward_protect::MemoryError),
}

/// Reads every key of a `secring.mix` with its passphrase (the exact bytes
/// given). All or nothing: any bad block fails the whole ring.
pub fn import_secring(ring: &[u8], passphrase: &[u8]) -> Result<Vec<ImportedRingKey>, RingImportError> {
    let keys = keyward_mixmaster::parse_secring(ring, passphrase)?;
    keys.iter().map(ring_key).collect()
}

fn ring_key(key: &SecretKey) -> Result<ImportedRingKey, RingImportError> {
    let key_type =
        key_type_for_bits(key.bits()).ok_or(RingImportError::UnsupportedSize { key_id: key.key_id(), bits: key.bits() })?;
    let der = key.to_pkcs1_der();
    Ok(ImportedRingKey {
        key_type,
        key_id: key.key_id(),
        public_blob: mixmaster_public_blob(key.e(), key.n()),
        private: SecretBuf::from_slice(&der)?,
        created: key.created(),
        expires: key.expires(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let request = RsaRequest { key_id: [7; 16], rsa_block: vec![1; 128], out_len: 24 };
        assert_eq!(RsaRequest::parse(&request.encode()).unwrap(), request);
    }

    #[test]
    fn rejects_malformed_requests() {
        let good = RsaRequest { key_id: [7; 16], rsa_block: vec![1; 128], out_len: 24 }.encode();
        assert!(RsaRequest::parse(&good[..good.len() - 1]).is_err(), "truncated");
        assert!(RsaRequest::parse(&[good.clone(), vec![0]].concat()).is_err(), "trailing byte");
        let mut short_id = Vec::new();
        short_id.put_string(&[7; 15]);
        short_id.put_string(&[1; 128]);
        short_id.put_u32(24);
        assert!(RsaRequest::parse(&short_id).is_err(), "15-byte key ID");
        assert!(RsaRequest::parse(&[]).is_err());
    }

    #[test]
    fn reply_must_have_requested_length() {
        let body = reply_body(&[5; 24]);
        assert_eq!(*parse_reply_body(&body, 24).unwrap(), vec![5; 24]);
        assert!(parse_reply_body(&body, 216).is_err());
        assert!(parse_reply_body(&body[..10], 24).is_err());
    }

    #[test]
    fn public_key_round_trips_through_blob() {
        let n = [vec![0xc3], vec![0x11; 127]].concat();
        let blob = mixmaster_public_blob(&[1, 0, 1], &n);
        let key = PublicKey::parse(&blob).unwrap();
        assert_eq!(key.n, n);
        assert_eq!(key.e, vec![1, 0, 1]);
        assert_eq!(key.bits(), 1024);
        assert_eq!(key_attributes(&blob), vec![(KEY_ID_ATTRIBUTE.to_owned(), key.key_id().to_hex())]);
        let mut ssh_rsa = Vec::new();
        ssh_rsa.put_string(b"ssh-rsa");
        ssh_rsa.put_string(&[1, 0, 1]);
        ssh_rsa.put_string(&[vec![0], n.clone()].concat());
        assert!(PublicKey::parse(&ssh_rsa).is_err(), "an SSH key blob");
    }

    #[test]
    fn fresh_keys_get_mixmaster_lifetimes() {
        // 2026-12-04 12:00 UTC.
        let now = 1_796_385_600;
        let created = keyward_mixmaster::parse_date("2026-12-04").unwrap();
        assert_eq!(fresh_key_validity(1024, now), (created, keyward_mixmaster::parse_date("2027-12-29").unwrap()));
        assert_eq!(fresh_key_validity(4096, now), (created, keyward_mixmaster::parse_date("2027-06-02").unwrap()));
    }

    #[test]
    fn usable_applies_grace_period() {
        let created = keyward_mixmaster::parse_date("2026-12-04").unwrap();
        let expires = keyward_mixmaster::parse_date("2027-06-02").unwrap();
        assert!(usable(Some(created), Some(expires), created + 5));
        assert!(usable(Some(created), Some(expires + 86_399), expires + 7 * SECONDS_PER_DAY));
        assert!(!usable(Some(created), Some(expires), expires + 7 * SECONDS_PER_DAY + 1));
        assert!(!usable(Some(created + 3600), Some(expires), created - 1));
        assert!(usable(None, None, 0));
    }

    #[test]
    fn key_types_cover_packet_sizes() {
        assert_eq!(key_type_for_bits(1024), Some(KeyType::Mixmaster(1024)));
        assert_eq!(key_type_for_bits(3072), Some(KeyType::Mixmaster(3072)));
        assert_eq!(key_type_for_bits(1536), None);
        assert_eq!(key_type_for_bits(8192), None);
    }
}
