//! Encoding and decoding of the keystore file, format version 1.
//!
//! Integers are big-endian and a `string` is a uint32 length followed by that
//! many bytes, as in RFC 4251. Decoding checks every length against the
//! remaining input and a fixed limit before allocating, so no field can make
//! the parser allocate more than the input size.

use std::ops::Range;

use super::kdf::KDF_NAME;
use super::{EntryMeta, KdfParams, KeystoreError};

/// The first 16 bytes of every keystore file.
pub const MAGIC: &[u8; 16] = b"keyward-keystore";
/// The format version this code writes.
pub const VERSION: u32 = 1;

/// Maximum size of a keystore file.
pub const MAX_FILE_LEN: u64 = 64 * 1024 * 1024;
/// Maximum number of entries.
pub const MAX_ENTRIES: u32 = 100_000;
/// Maximum length of any string field.
pub const MAX_STRING_LEN: usize = 1024 * 1024;
/// Maximum length of an entry's public key.
pub const MAX_PUBLIC_KEY_LEN: usize = 16 * 1024;
/// Maximum length of an entry name.
pub const MAX_NAME_LEN: usize = 64;
/// Maximum length of an entry comment, in UTF-8 bytes.
pub const MAX_COMMENT_LEN: usize = 1024;
/// Poly1305 tag length appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Maximum length of a private key, so that its ciphertext fits a string.
pub const MAX_PRIVATE_LEN: usize = MAX_STRING_LEN - TAG_LEN;

pub const KEYSTORE_ID_LEN: usize = 16;
pub const NONCE_LEN: usize = 24;
pub const KEY_LEN: usize = 32;
pub const MAC_LEN: usize = 32;
pub const SALT_LEN: usize = 32;
pub const MIN_SALT_LEN: usize = 16;
pub const MAX_SALT_LEN: usize = 64;

/// Smallest possible encoded entry: a one-byte name, empty type, purpose,
/// public key, comment and attributes, three uint64s, a nonce and a
/// ciphertext holding only the tag.
const MIN_ENTRY_LEN: usize = (4 + 1) + 4 * 5 + 8 * 3 + (4 + NONCE_LEN) + (4 + TAG_LEN);

/// Everything in the file before the entries, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub keystore_id: [u8; KEYSTORE_ID_LEN],
    pub generation: u64,
    pub kdf: KdfParams,
    pub salt: Vec<u8>,
    pub wrap_nonce: [u8; NONCE_LEN],
    pub wrapped_key: Vec<u8>,
}

/// One entry as stored: its metadata, the exact bytes of that metadata (name
/// through attributes, part of the entry's AAD), and the encrypted private key.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub meta: EntryMeta,
    pub meta_bytes: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
    /// Byte range of the whole entry in the file, used by tests that splice entries.
    #[cfg_attr(not(test), allow(dead_code))]
    pub span: Range<usize>,
}

/// A decoded file whose MAC and ciphertexts have not been checked yet.
#[derive(Clone, Debug)]
pub struct ParsedFile {
    pub header: Header,
    pub entries: Vec<RawEntry>,
    /// Length of the MAC input: every byte from the magic through the last entry.
    pub signed_len: usize,
    pub mac: [u8; MAC_LEN],
}

fn malformed(what: impl Into<String>) -> KeystoreError {
    KeystoreError::Malformed { what: what.into() }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], KeystoreError> {
        if len > self.remaining() {
            return Err(malformed(format!(
                "{what} needs {len} bytes at offset {}, but the file ends after {}",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, KeystoreError> {
        let raw = self.take(4, what)?;
        Ok(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, KeystoreError> {
        let raw = self.take(8, what)?;
        let mut out = [0u8; 8];
        out.copy_from_slice(raw);
        Ok(u64::from_be_bytes(out))
    }

    /// Reads a string of at most `max` bytes.
    fn string(&mut self, max: usize, what: &str) -> Result<&'a [u8], KeystoreError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(malformed(format!(
                "{what} is {len} bytes, more than the limit of {max}"
            )));
        }
        self.take(len, what)
    }

    /// Reads a string of exactly `N` bytes.
    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], KeystoreError> {
        let raw = self.string(MAX_STRING_LEN, what)?;
        raw.try_into()
            .map_err(|_| malformed(format!("{what} is {} bytes, expected {N}", raw.len())))
    }

    fn utf8(&mut self, max: usize, what: &str) -> Result<String, KeystoreError> {
        let raw = self.string(max, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| malformed(format!("{what} is not valid UTF-8")))
    }
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends a string. Callers keep `bytes` within the limits checked on
/// decoding, so the length always fits a uint32.
pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Checks an entry name against `[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}`.
pub fn check_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("the name is empty".into());
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err(format!(
            "the name is {} bytes, more than the limit of {MAX_NAME_LEN}",
            bytes.len()
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err("the name must start with an ASCII letter or digit".into());
    }
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"._@+-".contains(b);
    if !bytes.iter().all(allowed) {
        return Err("the name may contain only ASCII letters, digits and . _ @ + -".into());
    }
    Ok(())
}

/// Encodes an entry's metadata, name through attributes, checking every limit
/// the decoder enforces. The error names the broken rule.
pub fn encode_meta(meta: &EntryMeta) -> Result<Vec<u8>, String> {
    check_name(&meta.name)?;
    if meta.key_type.len() > MAX_STRING_LEN || meta.purpose.len() > MAX_STRING_LEN {
        return Err("the key type or purpose is longer than 1 MiB".into());
    }
    if meta.public_key.len() > MAX_PUBLIC_KEY_LEN {
        return Err(format!(
            "the public key is {} bytes, more than the limit of {MAX_PUBLIC_KEY_LEN}",
            meta.public_key.len()
        ));
    }
    if meta.comment.len() > MAX_COMMENT_LEN {
        return Err(format!(
            "the comment is {} bytes, more than the limit of {MAX_COMMENT_LEN}",
            meta.comment.len()
        ));
    }
    // Zero stands for "no bound" in the file, so Some(0) would read back as None.
    if meta.not_before == Some(0) || meta.not_after == Some(0) {
        return Err("a validity bound of 0 is not representable; use None".into());
    }

    let mut attributes = Vec::new();
    for (name, value) in &meta.attributes {
        put_string(&mut attributes, name.as_bytes());
        put_string(&mut attributes, value.as_bytes());
    }
    if attributes.len() > MAX_STRING_LEN {
        return Err("the attributes encode to more than 1 MiB".into());
    }

    let mut out = Vec::new();
    put_string(&mut out, meta.name.as_bytes());
    put_string(&mut out, meta.key_type.as_bytes());
    put_string(&mut out, meta.purpose.as_bytes());
    put_string(&mut out, &meta.public_key);
    put_string(&mut out, meta.comment.as_bytes());
    put_u64(&mut out, meta.created);
    put_u64(&mut out, meta.not_before.unwrap_or(0));
    put_u64(&mut out, meta.not_after.unwrap_or(0));
    put_string(&mut out, &attributes);
    Ok(out)
}

/// Encodes the header: magic through wrapped_key.
pub fn encode_header(header: &Header) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, header.version);
    put_string(&mut out, &header.keystore_id);
    put_u64(&mut out, header.generation);
    put_kdf(&mut out, &header.kdf, &header.salt);
    put_string(&mut out, &header.wrap_nonce);
    put_string(&mut out, &header.wrapped_key);
    out
}

/// Appends the KDF name, its three parameters and the salt, as in the file.
pub fn put_kdf(out: &mut Vec<u8>, kdf: &KdfParams, salt: &[u8]) {
    put_string(out, KDF_NAME.as_bytes());
    put_u32(out, kdf.m_cost_kib);
    put_u32(out, kdf.t_cost);
    put_u32(out, kdf.p_cost);
    put_string(out, salt);
}

/// Appends one entry: its encoded metadata, nonce and ciphertext.
pub fn put_entry(out: &mut Vec<u8>, meta_bytes: &[u8], nonce: &[u8; NONCE_LEN], ciphertext: &[u8]) {
    out.extend_from_slice(meta_bytes);
    put_string(out, nonce);
    put_string(out, ciphertext);
}

/// Decodes a whole file. Checks structure, limits and KDF caps; checks
/// neither the MAC nor any ciphertext.
pub fn parse(bytes: &[u8]) -> Result<ParsedFile, KeystoreError> {
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(malformed(format!(
            "the file is {} bytes, more than the limit of {MAX_FILE_LEN}",
            bytes.len()
        )));
    }
    let mut r = Reader { bytes, pos: 0 };

    if r.take(MAGIC.len(), "magic").ok() != Some(&MAGIC[..]) {
        return Err(malformed(
            "it does not start with \"keyward-keystore\"; it is not a keystore file",
        ));
    }
    let version = r.u32("version")?;
    if version != VERSION {
        return Err(KeystoreError::UnsupportedVersion(version));
    }
    let header = parse_header_after_version(&mut r, version)?;

    let count = r.u32("entry count")?;
    if count > MAX_ENTRIES {
        return Err(malformed(format!(
            "entry count {count} is more than the limit of {MAX_ENTRIES}"
        )));
    }
    if count as usize * MIN_ENTRY_LEN > r.remaining() {
        return Err(malformed(format!(
            "entry count {count} does not fit the rest of the file"
        )));
    }
    let mut entries: Vec<RawEntry> = Vec::with_capacity(count as usize);
    let mut names = std::collections::HashSet::with_capacity(count as usize);
    for index in 0..count {
        let entry = parse_entry(&mut r, index)?;
        if !names.insert(entry.meta.name.clone()) {
            return Err(malformed(format!(
                "the name {:?} appears twice",
                entry.meta.name
            )));
        }
        entries.push(entry);
    }

    let signed_len = r.pos;
    let mac = r.fixed::<MAC_LEN>("mac")?;
    if r.remaining() != 0 {
        return Err(malformed(format!("{} bytes follow the MAC", r.remaining())));
    }
    Ok(ParsedFile {
        header,
        entries,
        signed_len,
        mac,
    })
}

fn parse_header_after_version(r: &mut Reader<'_>, version: u32) -> Result<Header, KeystoreError> {
    let keystore_id = r.fixed::<KEYSTORE_ID_LEN>("keystore id")?;
    let generation = r.u64("generation")?;
    if generation == 0 {
        return Err(malformed("generation is 0; the first generation is 1"));
    }

    let kdf_name = r.string(MAX_STRING_LEN, "KDF name")?;
    if kdf_name != KDF_NAME.as_bytes() {
        return Err(malformed(format!(
            "unknown KDF {:?}; expected \"{KDF_NAME}\"",
            String::from_utf8_lossy(kdf_name)
        )));
    }
    let kdf = KdfParams {
        m_cost_kib: r.u32("m_cost")?,
        t_cost: r.u32("t_cost")?,
        p_cost: r.u32("p_cost")?,
    };
    // A tampered file must never make a reader run a larger KDF than the caps allow.
    kdf.check_caps()?;

    let salt = r.string(MAX_SALT_LEN, "salt")?;
    if salt.len() < MIN_SALT_LEN {
        return Err(malformed(format!(
            "the salt is {} bytes, less than the minimum of {MIN_SALT_LEN}",
            salt.len()
        )));
    }
    let wrap_nonce = r.fixed::<NONCE_LEN>("wrap nonce")?;
    let wrapped_key = r.fixed::<{ KEY_LEN + TAG_LEN }>("wrapped key")?;

    Ok(Header {
        version,
        keystore_id,
        generation,
        kdf,
        salt: salt.to_vec(),
        wrap_nonce,
        wrapped_key: wrapped_key.to_vec(),
    })
}

fn parse_entry(r: &mut Reader<'_>, index: u32) -> Result<RawEntry, KeystoreError> {
    let start = r.pos;
    let what = |field: &str| format!("entry {index} {field}");

    let name = r.utf8(MAX_NAME_LEN, &what("name"))?;
    check_name(&name).map_err(|e| malformed(format!("entry {index}: {e}")))?;
    let key_type = r.utf8(MAX_STRING_LEN, &what("type"))?;
    let purpose = r.utf8(MAX_STRING_LEN, &what("purpose"))?;
    let public_key = r.string(MAX_PUBLIC_KEY_LEN, &what("public key"))?.to_vec();
    let comment = r.utf8(MAX_COMMENT_LEN, &what("comment"))?;
    let created = r.u64(&what("created"))?;
    let not_before = r.u64(&what("not_before"))?;
    let not_after = r.u64(&what("not_after"))?;
    let attribute_bytes = r.string(MAX_STRING_LEN, &what("attributes"))?;
    let attributes = parse_attributes(attribute_bytes, index)?;
    let meta_bytes = r.bytes[start..r.pos].to_vec();

    let nonce = r.fixed::<NONCE_LEN>(&what("nonce"))?;
    let ciphertext = r.string(MAX_STRING_LEN, &what("ciphertext"))?;
    if ciphertext.len() < TAG_LEN {
        return Err(malformed(format!(
            "entry {index} ciphertext is shorter than its tag"
        )));
    }

    let meta = EntryMeta {
        name,
        key_type,
        purpose,
        public_key,
        comment,
        created,
        not_before: (not_before != 0).then_some(not_before),
        not_after: (not_after != 0).then_some(not_after),
        attributes,
    };
    Ok(RawEntry {
        meta,
        meta_bytes,
        nonce,
        ciphertext: ciphertext.to_vec(),
        span: start..r.pos,
    })
}

fn parse_attributes(bytes: &[u8], index: u32) -> Result<Vec<(String, String)>, KeystoreError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let name = r.utf8(MAX_STRING_LEN, &format!("entry {index} attribute name"))?;
        let value = r.utf8(MAX_STRING_LEN, &format!("entry {index} attribute value"))?;
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> EntryMeta {
        EntryMeta {
            name: name.into(),
            key_type: "ssh-ed25519".into(),
            purpose: "ssh".into(),
            public_key: vec![1, 2, 3],
            comment: "laptop".into(),
            created: 1_700_000_000,
            not_before: None,
            not_after: Some(1_800_000_000),
            attributes: vec![("host".into(), "example".into())],
        }
    }

    fn header() -> Header {
        Header {
            version: VERSION,
            keystore_id: [7; 16],
            generation: 3,
            kdf: KdfParams::insecure_test(),
            salt: vec![9; 32],
            wrap_nonce: [1; 24],
            wrapped_key: vec![2; 48],
        }
    }

    fn file(entries: &[EntryMeta]) -> Vec<u8> {
        let mut out = encode_header(&header());
        put_u32(&mut out, entries.len() as u32);
        for m in entries {
            put_entry(&mut out, &encode_meta(m).unwrap(), &[5; 24], &[6; 20]);
        }
        put_string(&mut out, &[0; 32]);
        out
    }

    #[test]
    fn parse_round_trips_encoding() {
        let bytes = file(&[meta("a"), meta("b")]);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.header, header());
        assert_eq!(parsed.entries.len(), 2);
        assert_eq!(parsed.entries[0].meta, meta("a"));
        assert_eq!(parsed.entries[1].meta, meta("b"));
        assert_eq!(parsed.entries[1].ciphertext, vec![6; 20]);
        assert_eq!(parsed.signed_len, bytes.len() - 36);
    }

    #[test]
    fn parse_rejects_trailing_bytes() {
        let mut bytes = file(&[meta("a")]);
        bytes.push(0);
        assert!(matches!(
            parse(&bytes),
            Err(KeystoreError::Malformed { .. })
        ));
    }

    #[test]
    fn parse_rejects_every_truncation() {
        let bytes = file(&[meta("a")]);
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len]).is_err(), "truncated to {len} bytes");
        }
    }

    #[test]
    fn parse_rejects_duplicate_names() {
        let bytes = file(&[meta("a"), meta("a")]);
        let err = parse(&bytes).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn parse_rejects_entry_count_beyond_file() {
        let mut bytes = file(&[]);
        let count_at = bytes.len() - 36 - 4;
        bytes[count_at..count_at + 4].copy_from_slice(&50_000u32.to_be_bytes());
        let err = parse(&bytes).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");

        bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = parse(&bytes).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn parse_rejects_huge_length_field_without_allocating() {
        let mut bytes = file(&[meta("a")]);
        // The keystore id's length field follows the magic and version.
        bytes[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            parse(&bytes),
            Err(KeystoreError::Malformed { .. })
        ));
    }

    #[test]
    fn parse_rejects_unknown_version_naming_it() {
        let mut bytes = file(&[]);
        bytes[16..20].copy_from_slice(&2u32.to_be_bytes());
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, KeystoreError::UnsupportedVersion(2)));
        assert!(err.to_string().contains('2'));
    }

    #[test]
    fn parse_rejects_oversized_file() {
        let bytes = vec![0u8; MAX_FILE_LEN as usize + 1];
        assert!(matches!(
            parse(&bytes),
            Err(KeystoreError::Malformed { .. })
        ));
    }

    #[test]
    fn names_follow_the_pattern() {
        for good in [
            "a",
            "A9",
            "work.laptop",
            "me@host",
            "x+y-z_w",
            &"a".repeat(64),
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".a", "-a", "a b", "ä", "a/b", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encode_meta_rejects_out_of_limit_fields() {
        let mut m = meta("a");
        m.comment = "c".repeat(MAX_COMMENT_LEN + 1);
        assert!(encode_meta(&m).is_err());

        let mut m = meta("a");
        m.public_key = vec![0; MAX_PUBLIC_KEY_LEN + 1];
        assert!(encode_meta(&m).is_err());

        let mut m = meta("a");
        m.not_before = Some(0);
        assert!(encode_meta(&m).is_err());
    }
}
