//! The received packet: its armour and the first header section, up to the
//! RSA block that the daemon decrypts.

use crate::armor::{dearmor_packet, PACKET_LEN};
use crate::keyid::KeyId;
use crate::unwrap::{Invalid, InvalidReason};

/// Size of one header slot.
pub(crate) const SLOT_LEN: usize = 512;
/// Offset of the 10240-byte body in a packet.
const BODY_OFFSET: usize = 20 * SLOT_LEN;
/// Length of the encrypted part of a header section.
pub(crate) const HEADER_PART_LEN: usize = 328;
/// Offset of the RSA block in the first header section.
const RSA_OFFSET: usize = 17;

/// Layout of the first header section, given by its RSA length byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaFormat {
    /// Draft-conformant 1024-bit key: length byte 0x80, 128-byte block, a
    /// 24-byte 3DES key inside.
    Spec1024,
    /// Large key, "version A" (Mixmaster 3.0.2 and 3.2): length byte 2, 3 or 4
    /// for 2048, 3072 or 4096 bits, a 216-byte plaintext, AES-256-CFB128 and
    /// HMAC-SHA256. The header fills two slots.
    LargeA {
        /// Length of the RSA block in bytes (256, 384 or 512).
        rsa_len: usize,
    },
}

impl RsaFormat {
    fn from_length_byte(byte: u8) -> Result<RsaFormat, InvalidReason> {
        match byte {
            0x80 => Ok(RsaFormat::Spec1024),
            2..=4 => Ok(RsaFormat::LargeA { rsa_len: 128 * usize::from(byte) }),
            _ => Err(InvalidReason::UnknownRsaLengthByte(byte)),
        }
    }

    /// Length of the RSA block.
    pub fn rsa_len(&self) -> usize {
        match self {
            RsaFormat::Spec1024 => 128,
            RsaFormat::LargeA { rsa_len } => *rsa_len,
        }
    }

    /// Length of the RSA plaintext the packet needs (24 or 216).
    pub fn rsa_out_len(&self) -> usize {
        match self {
            RsaFormat::Spec1024 => 24,
            RsaFormat::LargeA { .. } => 216,
        }
    }

    /// Number of 512-byte slots the first header fills.
    pub(crate) fn header_slots(&self) -> usize {
        match self {
            RsaFormat::Spec1024 => 1,
            RsaFormat::LargeA { .. } => 2,
        }
    }
}

/// A received Type II packet, parsed up to the RSA block.
#[derive(Clone)]
pub struct Packet {
    /// Key ID in the first header section: which remailer key must decrypt it.
    pub key_id: KeyId,
    pub format: RsaFormat,
    /// The RSA block to pass to the daemon.
    pub rsa_block: Vec<u8>,
    /// The RSA plaintext length to request (24 or 216).
    pub rsa_out_len: usize,
    /// Value of the mail's `Remailer-Type:` line (empty for a bare packet).
    pub remailer_type: Vec<u8>,
    pub(crate) bytes: Vec<u8>,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("key_id", &self.key_id)
            .field("format", &self.format)
            .field("rsa_out_len", &self.rsa_out_len)
            .finish_non_exhaustive()
    }
}

/// Parses a remailer message as received by mail: the `::` and
/// `Remailer-Type:` lines, the armour with its length and MD5 line, and the
/// first header section of the 20480-byte packet.
pub fn parse_packet(mail: &[u8]) -> Result<Packet, Invalid> {
    let (remailer_type, bytes) = dearmor_packet(mail).map_err(|e| Invalid::new(InvalidReason::Armor(e)))?;
    let mut packet = Packet::from_bytes(&bytes)?;
    packet.remailer_type = remailer_type;
    Ok(packet)
}

impl Packet {
    /// Parses a bare 20480-byte packet (no mail, no armour).
    pub fn from_bytes(bytes: &[u8]) -> Result<Packet, Invalid> {
        if bytes.len() != PACKET_LEN {
            return Err(Invalid::new(InvalidReason::PacketLength));
        }
        let key_id = KeyId(bytes[..16].try_into().expect("16 bytes"));
        let format = RsaFormat::from_length_byte(bytes[16]).map_err(Invalid::new)?;
        let rsa_block = bytes[RSA_OFFSET..RSA_OFFSET + format.rsa_len()].to_vec();
        Ok(Packet {
            key_id,
            format,
            rsa_block,
            rsa_out_len: format.rsa_out_len(),
            remailer_type: Vec::new(),
            bytes: bytes.to_vec(),
        })
    }

    /// The whole 20480-byte packet.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The 8-byte 3DES IV of the first header section.
    pub(crate) fn header_iv(&self) -> [u8; 8] {
        let off = RSA_OFFSET + self.format.rsa_len();
        self.bytes[off..off + 8].try_into().expect("8 bytes")
    }

    /// The encrypted 328-byte part of the first header section.
    pub(crate) fn header_part(&self) -> &[u8] {
        let off = RSA_OFFSET + self.format.rsa_len() + 8;
        &self.bytes[off..off + HEADER_PART_LEN]
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.bytes[BODY_OFFSET..]
    }
}
