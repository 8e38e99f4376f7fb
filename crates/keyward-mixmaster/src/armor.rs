//! The transport form of a Type II packet inside a mail:
//!
//! ```text
//! ::
//! Remailer-Type: Mixmaster 3.0
//!
//! -----BEGIN REMAILER MESSAGE-----
//! 20480
//! <MD5 of the packet, base64>
//! <packet, base64 in 40 columns>
//! -----END REMAILER MESSAGE-----
//! ```

use base64::Engine;
use md5::{Digest, Md5};

/// Length of a Type II packet: 20 header slots of 512 bytes and a 10240-byte body.
pub const PACKET_LEN: usize = 20_480;

const ARMOR_BEGIN: &[u8] = b"-----BEGIN REMAILER MESSAGE-----";
const ARMOR_END: &[u8] = b"-----END REMAILER MESSAGE-----";
const REMAILER_TYPE: &[u8] = b"Remailer-Type:";

/// Defect that keeps a mail from holding a well-formed armoured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArmorError {
    #[error("no `::` line followed by `Remailer-Type:` before the packet")]
    MissingRemailerType,
    #[error("no -----BEGIN REMAILER MESSAGE----- line")]
    MissingBegin,
    #[error("no -----END REMAILER MESSAGE----- line")]
    MissingEnd,
    #[error("the armour's length line is not 20480")]
    BadLengthLine,
    #[error("the armour's MD5 line is not 16 bytes of base64")]
    BadDigestLine,
    #[error("the packet is not valid base64")]
    BadBase64,
    #[error("the packet is not 20480 bytes long")]
    BadPacketLength,
    #[error("the packet's MD5 does not match the armour's MD5 line")]
    DigestMismatch,
}

/// Finds the armoured packet in a received mail and checks its length and
/// MD5 line. Returns the `Remailer-Type:` value and the 20480-byte packet.
pub fn dearmor_packet(mail: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ArmorError> {
    let lines: Vec<&[u8]> = mail
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .collect();
    let begin = lines.iter().position(|l| *l == ARMOR_BEGIN).ok_or(ArmorError::MissingBegin)?;

    // The `::` line and the `Remailer-Type:` line come before the armour.
    let colons = lines[..begin].iter().position(|l| *l == b"::").ok_or(ArmorError::MissingRemailerType)?;
    let type_line = lines.get(colons + 1).filter(|l| l.starts_with(REMAILER_TYPE));
    let remailer_type = type_line.ok_or(ArmorError::MissingRemailerType)?[REMAILER_TYPE.len()..].trim_ascii().to_vec();

    let end = begin + lines[begin..].iter().position(|l| *l == ARMOR_END).ok_or(ArmorError::MissingEnd)?;
    if end < begin + 3 {
        return Err(ArmorError::MissingEnd);
    }
    if lines[begin + 1].trim_ascii() != b"20480" {
        return Err(ArmorError::BadLengthLine);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let digest: [u8; 16] = b64
        .decode(lines[begin + 2].trim_ascii())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ArmorError::BadDigestLine)?;
    let body: Vec<u8> = lines[begin + 3..end].iter().flat_map(|l| l.trim_ascii().iter().copied()).collect();
    if body.len() > PACKET_LEN * 4 / 3 + 8 {
        return Err(ArmorError::BadPacketLength);
    }
    let packet = b64.decode(&body).map_err(|_| ArmorError::BadBase64)?;
    if packet.len() != PACKET_LEN {
        return Err(ArmorError::BadPacketLength);
    }
    if <[u8; 16]>::from(Md5::digest(&packet)) != digest {
        return Err(ArmorError::DigestMismatch);
    }
    Ok((remailer_type, packet))
}

/// Formats the armour for a packet: the begin line, the length, the base64
/// MD5, the packet in 40-column base64 and the end line, each ending in `\n`.
pub fn armor_packet(packet: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let encoded = b64.encode(packet);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 40 + 128);
    out.push_str("-----BEGIN REMAILER MESSAGE-----\n");
    out.push_str(&packet.len().to_string());
    out.push('\n');
    out.push_str(&b64.encode(Md5::digest(packet)));
    out.push('\n');
    for line in encoded.as_bytes().chunks(40) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END REMAILER MESSAGE-----\n");
    out
}
