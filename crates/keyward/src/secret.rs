//! Secret values: passphrases and key bytes. None of these types prints its
//! contents through `Debug`, and each is wiped when dropped.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

pub use keyward_protect::SecretBuf;

/// A keystore passphrase, normalised to Unicode NFC so that the same text
/// typed on systems that compose characters differently unlocks the same
/// keystore.
pub struct Passphrase(SecretBuf);

impl Passphrase {
    /// Normalises `text` to NFC and stores it in protected memory.
    pub fn from_text(text: &str) -> Result<Self, keyward_protect::MemoryError> {
        // A String that grows by reallocation frees its old buffer without
        // wiping it, so grow by hand: copy into a bigger zeroizing buffer
        // and let the old one be wiped. NFC is at most three times longer
        // than its input in UTF-8 (UAX #15), so this rarely happens.
        let mut normalised = Zeroizing::new(String::with_capacity(text.len() * 3 + 4));
        for character in text.nfc() {
            if normalised.len() + character.len_utf8() > normalised.capacity() {
                let mut bigger = Zeroizing::new(String::with_capacity(normalised.capacity() * 2));
                bigger.push_str(&normalised);
                normalised = bigger;
            }
            normalised.push(character);
        }
        Ok(Passphrase(SecretBuf::from_slice(normalised.as_bytes())?))
    }

    /// Decodes `bytes` as UTF-8 and normalises it; `None` if it is not UTF-8.
    pub fn from_utf8(bytes: &[u8]) -> Option<Result<Self, keyward_protect::MemoryError>> {
        let text = std::str::from_utf8(bytes).ok()?;
        Some(Self::from_text(text))
    }

    /// The NFC-normalised UTF-8 bytes, as fed to the KDF.
    pub fn expose(&self) -> &[u8] {
        self.0.expose()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends `data` to `buffer`, growing it by copying into a bigger
/// zeroizing buffer: `Vec`'s own growth would free the old allocation
/// without wiping it.
pub fn extend_wiped(buffer: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let needed = buffer.len() + data.len();
    if needed > buffer.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(buffer.capacity() * 2)));
        grown.extend_from_slice(buffer);
        *buffer = grown;
    }
    buffer.extend_from_slice(data);
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_wiped_grows_and_keeps_bytes() {
        let mut buffer = Zeroizing::new(Vec::with_capacity(4));
        extend_wiped(&mut buffer, b"abc");
        assert_eq!(buffer.capacity(), 4, "no growth while the data fits");
        extend_wiped(&mut buffer, b"defgh");
        assert_eq!(buffer.as_slice(), b"abcdefgh");
        assert!(buffer.capacity() >= 8);
        extend_wiped(&mut buffer, &[]);
        assert_eq!(buffer.as_slice(), b"abcdefgh");
    }

    #[test]
    fn from_text_normalises_expanding_input() {
        // U+FB2C and U+1D160 grow under NFC (three code points each), the
        // second to three times its UTF-8 length.
        for text in ["Gru\u{308}\u{df}e", "\u{fb2c}", &"\u{1d160}".repeat(50), &"\u{fb2c}a\u{1d160}".repeat(40), ""] {
            let expected: String = text.nfc().collect();
            let passphrase = Passphrase::from_text(text).unwrap();
            assert_eq!(passphrase.expose(), expected.as_bytes(), "NFC of {text:?}");
        }
    }
}
