//! Reading and writing the SSH wire encoding (RFC 4251 section 5): the
//! `byte`, `uint32`, `uint64`, `boolean` and `string` types that the
//! ssh-agent protocol, the admin protocol and the keystore all use.
//!
//! The reader works on a borrowed slice, never allocates from a length field
//! and reports truncation as an error, so it is safe on hostile input.

use std::fmt;

/// The input ended early or held a value of the wrong shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// A cursor over SSH-encoded bytes.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Takes the next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.bytes.len() {
            return Err(WireError("message is truncated"));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_be_bytes(array))
    }

    /// Reads a `boolean`: RFC 4251 says any non-zero byte is true.
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }

    /// Reads a `string` as bytes.
    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// Reads a `string` that must be UTF-8.
    pub fn utf8(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.string()?).map_err(|_| WireError("string is not valid UTF-8"))
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError("message has trailing bytes"))
        }
    }
}

/// Appends SSH-encoded values to a byte vector.
pub trait Writer {
    fn put_u8(&mut self, value: u8);
    fn put_u32(&mut self, value: u32);
    fn put_u64(&mut self, value: u64);
    fn put_bool(&mut self, value: bool);
    fn put_string(&mut self, value: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, value: u8) {
        self.push(value);
    }

    fn put_u32(&mut self, value: u32) {
        self.extend_from_slice(&value.to_be_bytes());
    }

    fn put_u64(&mut self, value: u64) {
        self.extend_from_slice(&value.to_be_bytes());
    }

    fn put_bool(&mut self, value: bool) {
        self.push(u8::from(value));
    }

    fn put_string(&mut self, value: &[u8]) {
        let len = u32::try_from(value.len()).expect("SSH strings are shorter than 4 GiB");
        self.put_u32(len);
        self.extend_from_slice(value);
    }
}

/// Encodes an unsigned big-endian integer as an SSH `mpint` body: leading
/// zeros stripped, and a zero byte prepended when the top bit is set.
pub fn mpint_body(unsigned: &[u8]) -> Vec<u8> {
    let first = unsigned.iter().position(|&b| b != 0).unwrap_or(unsigned.len());
    let digits = &unsigned[first..];
    let mut out = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_some_and(|&b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

/// Decodes an SSH `mpint` body that must be non-negative, returning its
/// magnitude without leading zeros.
pub fn mpint_magnitude(body: &[u8]) -> Result<&[u8], WireError> {
    if body.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err(WireError("mpint is negative"));
    }
    let first = body.iter().position(|&b| b != 0).unwrap_or(body.len());
    Ok(&body[first..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_truncated_string() {
        let mut bytes = Vec::new();
        bytes.put_u32(10);
        bytes.extend_from_slice(b"short");
        assert_eq!(Reader::new(&bytes).string(), Err(WireError("message is truncated")));
    }

    #[test]
    fn round_trips_values() {
        let mut bytes = Vec::new();
        bytes.put_u8(7);
        bytes.put_u32(0xdead_beef);
        bytes.put_u64(1 << 40);
        bytes.put_bool(true);
        bytes.put_string(b"abc");
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u8().unwrap(), 7);
        assert_eq!(reader.u32().unwrap(), 0xdead_beef);
        assert_eq!(reader.u64().unwrap(), 1 << 40);
        assert!(reader.bool().unwrap());
        assert_eq!(reader.string().unwrap(), b"abc");
        assert!(reader.finish().is_ok());
    }

    #[test]
    fn mpint_adds_sign_byte() {
        assert_eq!(mpint_body(&[0, 0, 0x80, 1]), vec![0, 0x80, 1]);
        assert_eq!(mpint_body(&[0x7f]), vec![0x7f]);
        assert_eq!(mpint_magnitude(&[0, 0x80, 1]).unwrap(), &[0x80, 1]);
        assert!(mpint_magnitude(&[0x80]).is_err());
    }
}
