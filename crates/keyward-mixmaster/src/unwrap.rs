//! Processing a packet after the RSA step: the header's symmetric layers, its
//! checks, and the result for the remailer (deliver, forward, drop).
//!
//! Every failure is one [`Invalid`] value. Its [`InvalidReason`] exists for a
//! debug log only. A caller must treat every reason the same way (drop the
//! packet with one message), so that no one outside can distinguish a bad RSA
//! block from any other defect.

use std::fmt;
use std::io::Read;

use md5::{Digest, Md5};
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::armor::{ArmorError, PACKET_LEN};
use crate::date::SECONDS_PER_DAY;
use crate::packet::{Packet, RsaFormat, HEADER_PART_LEN, SLOT_LEN};
use crate::symmetric::{aes256_cfb128_decrypt, hmac_sha256, hmac_sha256_verify, tdes3_cbc_decrypt};

/// Oldest packet accepted, in days before today (UTC). A replay cache must
/// keep packet IDs for longer than this.
pub const MAX_PACKET_AGE_DAYS: u64 = 7;
/// Days a packet timestamp may lie after today (UTC). Mixmaster accepts none.
pub const FUTURE_TOLERANCE_DAYS: u64 = 0;

/// Largest user data accepted after decompression, in bytes.
const MAX_DECOMPRESSED: u64 = 16 << 20;
/// Payload capacity of one packet body: 10240 bytes minus the length field.
const MAX_BODY_PAYLOAD: usize = 10_236;
/// Length of one destination or header field in a final-hop payload.
const FIELD_LEN: usize = 80;

/// Cause of a dropped packet, for a debug log only (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    Armor(ArmorError),
    PacketLength,
    UnknownRsaLengthByte(u8),
    RsaPlaintextLength,
    BodyHmac,
    HeaderPartHmac,
    NextSlotsHmac,
    HeaderDigest,
    UnknownPacketType(u8),
    MissingTimestamp,
    FutureTimestamp,
    OldTimestamp,
    BadChunkNumber,
    BodyLength,
    Payload(&'static str),
    Decompression,
}

/// A dropped packet. `Display` gives the same text for every reason.
#[derive(Clone, PartialEq, Eq)]
pub struct Invalid {
    reason: InvalidReason,
}

impl Invalid {
    pub(crate) fn new(reason: InvalidReason) -> Invalid {
        Invalid { reason }
    }

    /// The specific reason, for a debug log only.
    pub fn reason(&self) -> &InvalidReason {
        &self.reason
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid packet")
    }
}

impl fmt::Debug for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid({:?})", self.reason)
    }
}

impl std::error::Error for Invalid {}

fn invalid<T>(reason: InvalidReason) -> Result<T, Invalid> {
    Err(Invalid::new(reason))
}

/// A final-hop mail as the packet states it. Fields are raw bytes, as the
/// sender wrote them (Mixmaster does not re-encode them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalMail {
    /// Destination fields, one per field (a field may list several addresses
    /// separated by commas).
    pub recipients: Vec<Vec<u8>>,
    /// Value of the first `Subject:` header, trimmed.
    pub subject: Option<Vec<u8>>,
    /// Header lines in order, `Subject:` included, continuation fields joined.
    pub headers: Vec<Vec<u8>>,
    pub body: Vec<u8>,
}

/// Result of processing a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwrapped {
    /// Final hop: deliver `mail`.
    Final { packet_id: [u8; 16], mail: FinalMail },
    /// Intermediate hop: send `packet_for_next_hop` to `next_hop_address`.
    Intermediate { packet_id: [u8; 16], next_hop_address: Vec<u8>, packet_for_next_hop: Vec<u8> },
    /// Dummy traffic (destination `null:`): record the packet ID, send nothing.
    Dummy { packet_id: [u8; 16] },
    /// One part of a multi-part message. `payload` is this part's share of the
    /// whole final-hop payload; see [`crate::Reassembly`].
    Partial { packet_id: [u8; 16], message_id: [u8; 16], chunk: u8, chunks: u8, payload: Vec<u8> },
}

impl Unwrapped {
    /// The packet ID, for the replay cache.
    pub fn packet_id(&self) -> [u8; 16] {
        match self {
            Unwrapped::Final { packet_id, .. }
            | Unwrapped::Intermediate { packet_id, .. }
            | Unwrapped::Dummy { packet_id }
            | Unwrapped::Partial { packet_id, .. } => *packet_id,
        }
    }
}

/// Keys of the version-A symmetric layers, from the 216-byte RSA plaintext.
struct LargeKeys {
    hmac_key: Zeroizing<[u8; 64]>,
    header_key: Zeroizing<[u8; 32]>,
    body_key: Zeroizing<[u8; 32]>,
    iv: Zeroizing<[u8; 16]>,
}

impl LargeKeys {
    /// Derives the AES keys and IV: HMAC-SHA256 under the HMAC key of a label
    /// followed by the 32-byte AES pre-key.
    fn derive(plain: &[u8]) -> (LargeKeys, Zeroizing<[u8; 32]>) {
        let hmac_key: [u8; 64] = plain[24..88].try_into().expect("64 bytes");
        let pre_key = &plain[184..216];
        let derive = |label: &[u8]| Zeroizing::new(hmac_sha256(&hmac_key, &[label, pre_key]));
        let tte_key = derive(b"tte-crypt");
        let iv_full = derive(b"aes-iv");
        let iv: [u8; 16] = iv_full[..16].try_into().expect("16 bytes");
        let keys = LargeKeys {
            header_key: derive(b"header-crypt"),
            body_key: derive(b"body-crypt"),
            hmac_key: Zeroizing::new(hmac_key),
            iv: Zeroizing::new(iv),
        };
        (keys, tte_key)
    }
}

/// The decrypted 328-byte header part, checked.
struct HeaderPart {
    packet_id: [u8; 16],
    inner_key: Zeroizing<[u8; 24]>,
    kind: HeaderKind,
}

enum HeaderKind {
    Intermediate { ivs: [[u8; 8]; 19], next_hop: Vec<u8> },
    Final { iv: [u8; 8] },
    Partial { chunk: u8, chunks: u8, message_id: [u8; 16], iv: [u8; 8] },
}

fn parse_header_part(dec: &[u8], now: u64) -> Result<HeaderPart, Invalid> {
    let packet_id: [u8; 16] = dec[..16].try_into().expect("16 bytes");
    let inner_key = Zeroizing::new(<[u8; 24]>::try_from(&dec[16..40]).expect("24 bytes"));
    let mut off = 41;
    let kind = match dec[40] {
        0 => {
            let mut ivs = [[0u8; 8]; 19];
            for (i, iv) in ivs.iter_mut().enumerate() {
                iv.copy_from_slice(&dec[off + 8 * i..off + 8 * i + 8]);
            }
            let field = &dec[off + 152..off + 152 + FIELD_LEN];
            off += 152 + FIELD_LEN;
            HeaderKind::Intermediate { ivs, next_hop: field_value(field) }
        }
        1 => {
            // Message ID (16) is only used by type 2; the IV follows it.
            let iv = dec[off + 16..off + 24].try_into().expect("8 bytes");
            off += 24;
            HeaderKind::Final { iv }
        }
        2 => {
            let (chunk, chunks) = (dec[off], dec[off + 1]);
            let message_id = dec[off + 2..off + 18].try_into().expect("16 bytes");
            let iv = dec[off + 18..off + 26].try_into().expect("8 bytes");
            off += 26;
            HeaderKind::Partial { chunk, chunks, message_id, iv }
        }
        other => return invalid(InvalidReason::UnknownPacketType(other)),
    };

    // Timestamp: "0000", NUL, days since 1970 as 2 bytes little-endian. Then
    // MD5 of everything before the digest.
    let digest_ok = Md5::digest(&dec[..off + 7]).as_slice().ct_eq(&dec[off + 7..off + 23]);
    if !bool::from(digest_ok) {
        return invalid(InvalidReason::HeaderDigest);
    }
    if &dec[off..off + 5] != b"0000\0" {
        return invalid(InvalidReason::MissingTimestamp);
    }

    let days = u64::from(u16::from_le_bytes([dec[off + 5], dec[off + 6]]));
    let today = now / SECONDS_PER_DAY;
    if days > today + FUTURE_TOLERANCE_DAYS {
        return invalid(InvalidReason::FutureTimestamp);
    }
    if days + MAX_PACKET_AGE_DAYS < today {
        return invalid(InvalidReason::OldTimestamp);
    }

    if let HeaderKind::Partial { chunk, chunks, .. } = kind {
        if chunk == 0 || chunk > chunks {
            return invalid(InvalidReason::BadChunkNumber);
        }
    }
    Ok(HeaderPart { packet_id, inner_key, kind })
}

/// The value of an 80-byte field: up to the first NUL, then up to the first
/// line break.
fn field_value(field: &[u8]) -> Vec<u8> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let value = &field[..end];
    let end = value.iter().position(|&b| b == b'\n').unwrap_or(value.len());
    value[..end].to_vec()
}

impl Packet {
    /// Processes the packet given the RSA plaintext of its first header
    /// (from [`crate::RsaBlockKey::decrypt_fixed`]) and the time `now` in
    /// seconds since the epoch. An intermediate hop's new header slot gets
    /// random bytes from the operating system.
    pub fn unwrap(&self, rsa_plaintext: &[u8], now: u64) -> Result<Unwrapped, Invalid> {
        let mut padding = [0u8; SLOT_LEN];
        OsRng.fill_bytes(&mut padding);
        self.unwrap_with_padding(rsa_plaintext, now, &padding)
    }

    /// [`unwrap`](Packet::unwrap) with the 512 bytes appended to an
    /// intermediate hop's header given by the caller (they must be random for
    /// real traffic).
    pub fn unwrap_with_padding(
        &self,
        rsa_plaintext: &[u8],
        now: u64,
        padding: &[u8; SLOT_LEN],
    ) -> Result<Unwrapped, Invalid> {
        if rsa_plaintext.len() != self.rsa_out_len {
            return invalid(InvalidReason::RsaPlaintextLength);
        }
        let des_key: [u8; 24] = rsa_plaintext[..24].try_into().expect("24 bytes");
        let des_key = Zeroizing::new(des_key);
        let mut header = Zeroizing::new(self.header_part().to_vec());
        let mut large = None;

        if let RsaFormat::LargeA { .. } = self.format {
            let (keys, tte_key) = LargeKeys::derive(rsa_plaintext);
            if !hmac_sha256_verify(&*keys.hmac_key, self.body(), &rsa_plaintext[120..152]) {
                return invalid(InvalidReason::BodyHmac);
            }
            if !hmac_sha256_verify(&*keys.hmac_key, &header, &rsa_plaintext[152..184]) {
                return invalid(InvalidReason::HeaderPartHmac);
            }
            let mut iv = *keys.iv;
            aes256_cfb128_decrypt(&tte_key, &mut iv, &mut header);
            large = Some((keys, iv));
        }

        tdes3_cbc_decrypt(&des_key, &self.header_iv(), &mut header);
        debug_assert_eq!(header.len(), HEADER_PART_LEN);
        let part = parse_header_part(&header, now)?;

        // Version A: the body, then the slots after the header, each AES pass
        // starting from the IV state the previous one left.
        let mut body = Zeroizing::new(self.body().to_vec());
        let slots_start = self.format.header_slots() * SLOT_LEN;
        let mut trail = Zeroizing::new(self.bytes[slots_start..slots_start + 19 * SLOT_LEN].to_vec());
        if let Some((keys, mut iv)) = large {
            if matches!(part.kind, HeaderKind::Intermediate { .. })
                && !hmac_sha256_verify(&*keys.hmac_key, &self.bytes[1024..2048], &rsa_plaintext[88..120])
            {
                return invalid(InvalidReason::NextSlotsHmac);
            }
            aes256_cfb128_decrypt(&keys.body_key, &mut iv, &mut body);
            if matches!(part.kind, HeaderKind::Intermediate { .. }) {
                // NOTE: the 19th slot read here is the first 512 bytes of the
                // body, because Mixmaster 3.2 reads 19 slots from offset 1024.
                aes256_cfb128_decrypt(&keys.header_key, &mut iv, &mut trail);
            }
        }

        let packet_id = part.packet_id;
        match part.kind {
            HeaderKind::Intermediate { ivs, next_hop } => {
                let mut next = Vec::with_capacity(PACKET_LEN);
                for (i, slot) in trail.chunks_exact(SLOT_LEN).enumerate() {
                    let mut slot = slot.to_vec();
                    tdes3_cbc_decrypt(&part.inner_key, &ivs[i], &mut slot);
                    next.extend_from_slice(&slot);
                }
                next.extend_from_slice(padding);
                tdes3_cbc_decrypt(&part.inner_key, &ivs[18], &mut body);
                next.extend_from_slice(&body);
                debug_assert_eq!(next.len(), PACKET_LEN);
                Ok(Unwrapped::Intermediate { packet_id, next_hop_address: next_hop, packet_for_next_hop: next })
            }
            HeaderKind::Final { iv } => {
                tdes3_cbc_decrypt(&part.inner_key, &iv, &mut body);
                let payload = body_payload(&body)?;
                match parse_final_payload(payload)? {
                    Some(mail) => Ok(Unwrapped::Final { packet_id, mail }),
                    None => Ok(Unwrapped::Dummy { packet_id }),
                }
            }
            HeaderKind::Partial { chunk, chunks, message_id, iv } => {
                tdes3_cbc_decrypt(&part.inner_key, &iv, &mut body);
                let payload = body_payload(&body)?.to_vec();
                Ok(Unwrapped::Partial { packet_id, message_id, chunk, chunks, payload })
            }
        }
    }
}

/// The payload of a decrypted body: a 4-byte little-endian length, then data.
fn body_payload(body: &[u8]) -> Result<&[u8], Invalid> {
    let len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_BODY_PAYLOAD {
        return invalid(InvalidReason::BodyLength);
    }
    Ok(&body[4..4 + len])
}

/// Parses a final-hop payload (one packet's, or the reassembled parts of a
/// multi-part message): destination fields, header fields and user data.
/// Returns `None` for dummy traffic (a destination starting with `null:`).
pub fn parse_final_payload(payload: &[u8]) -> Result<Option<FinalMail>, Invalid> {
    let (recipients, rest) = read_fields(payload, "destination fields")?;
    let (fields, data) = read_fields(rest, "header fields")?;
    let has_prefix = |r: &[u8], prefix: &[u8]| r.len() >= prefix.len() && r[..prefix.len()].eq_ignore_ascii_case(prefix);
    if recipients.iter().any(|r| has_prefix(r, b"null:")) {
        return Ok(None);
    }
    if recipients.iter().any(|r| has_prefix(r, b"post:")) {
        return invalid(InvalidReason::Payload("Usenet (post:) destinations are not supported"));
    }
    if recipients.is_empty() {
        return invalid(InvalidReason::Payload("no destination field"));
    }
    let mut lines = fields;
    let mut data = decompress(data)?;

    // "##" on the first line: an RFC 822 message follows, whose header lines
    // join the packet's.
    let first_line_end = data.iter().position(|&b| b == b'\n');
    if let Some(end) = first_line_end {
        if data[..end].strip_suffix(b"\r").unwrap_or(&data[..end]) == b"##" {
            let rest = &data[end + 1..];
            let (head, body) = match find(rest, b"\n\n") {
                Some(i) => (&rest[..i], &rest[i + 2..]),
                None => (rest, &[][..]),
            };
            lines.extend(head.split(|&b| b == b'\n').map(<[u8]>::to_vec));
            data = body.to_vec();
        }
    }

    // A header longer than one field continues in the next field, which
    // starts with white space; Mixmaster joins them by dropping the line break.
    let mut headers: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        match (line.first(), headers.last_mut()) {
            (Some(b' ' | b'\t'), Some(previous)) => previous.extend_from_slice(&line),
            _ => headers.push(line),
        }
    }
    let subject = headers.iter().find_map(|h| {
        let (name, value) = h.split_at(h.iter().position(|&b| b == b':')?);
        name.eq_ignore_ascii_case(b"subject").then(|| value[1..].trim_ascii().to_vec())
    });
    Ok(Some(FinalMail { recipients, subject, headers, body: data }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads a count byte and that many 80-byte fields.
fn read_fields<'a>(data: &'a [u8], what: &'static str) -> Result<(Vec<Vec<u8>>, &'a [u8]), Invalid> {
    let (&count, rest) = data.split_first().ok_or(Invalid::new(InvalidReason::Payload(what)))?;
    let len = usize::from(count) * FIELD_LEN;
    if rest.len() < len {
        return invalid(InvalidReason::Payload(what));
    }
    let fields = rest[..len].chunks_exact(FIELD_LEN).map(field_value).collect();
    Ok((fields, &rest[len..]))
}

/// Inflates Mixmaster's gzip form (10-byte gzip header, optional header
/// fields, raw deflate, no CRC32/ISIZE trailer); other data passes unchanged.
fn decompress(data: &[u8]) -> Result<Vec<u8>, Invalid> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    if data.len() < 10 || data[..2] != [0x1f, 0x8b] {
        return Ok(data.to_vec());
    }

    let bad = || Invalid::new(InvalidReason::Decompression);
    if data[2] != 8 {
        return Err(bad());
    }
    let flags = data[3];
    let mut off = 10;
    if flags & FEXTRA != 0 {
        let len = data.get(off..off + 2).ok_or_else(bad)?;
        off += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = data.get(off..).and_then(|rest| rest.iter().position(|&b| b == 0)).ok_or_else(bad)?;
            off += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        off += 2;
    }

    let stream = data.get(off..).ok_or_else(bad)?;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(stream)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|_| bad())?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_display_hides_reason() {
        let a = Invalid::new(InvalidReason::HeaderDigest);
        let b = Invalid::new(InvalidReason::OldTimestamp);
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(a.to_string(), "invalid packet");
    }

    #[test]
    fn final_payload_rejects_truncated_fields() {
        assert!(parse_final_payload(&[]).is_err());
        assert!(parse_final_payload(&[1, b'a']).is_err());
        let mut payload = vec![1u8];
        payload.extend_from_slice(&[b'a'; 80]);
        assert!(parse_final_payload(&payload).is_err(), "header count missing");
    }

    #[test]
    fn final_payload_detects_dummy() {
        let mut payload = vec![1u8];
        let mut field = b"null:".to_vec();
        field.resize(80, 0);
        payload.extend_from_slice(&field);
        payload.push(0);
        assert_eq!(parse_final_payload(&payload).unwrap(), None);
    }
}
