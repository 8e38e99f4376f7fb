//! X25519 keys: generation, the age text encodings (`age1…` recipients,
//! `AGE-SECRET-KEY-1…` identities, `AGE-PLUGIN-KEYWARD-1…` plugin identities),
//! and the two operations the daemon performs with them: unwrapping an age
//! X25519 recipient stanza and raw key agreement.
//!
//! The age formats follow the age specification (<https://c2sp.org/age>) as
//! implemented by age 1.1 and rage 0.11; the tests cross-check against the
//! `age` crate.

use std::fmt;

use base64::prelude::{Engine, BASE64_STANDARD_NO_PAD};
use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use keyward_protect::MemoryError;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::SecretBuf;
use crate::wire::{Reader, Writer};

/// Key type name in the SSH wire encoding of the public key, shown by `list`.
pub const KEY_TYPE_NAME: &str = "x25519@keyward";

/// Tag of an age X25519 recipient stanza.
pub const STANZA_TAG: &str = "X25519";

/// Length of an X25519 scalar, point or shared secret.
pub const KEY_LEN: usize = 32;

/// Length of an age file key.
pub const FILE_KEY_LEN: usize = 16;

/// Length of an X25519 stanza body: the file key plus the Poly1305 tag.
pub const STANZA_BODY_LEN: usize = FILE_KEY_LEN + 16;

/// Plugin name in `AGE-PLUGIN-KEYWARD-1…` identities; age runs the binary
/// `age-plugin-keyward` for them.
pub const PLUGIN_NAME: &str = "keyward";

/// Version byte that starts the payload of a plugin identity.
pub const PLUGIN_IDENTITY_VERSION: u8 = 1;

const RECIPIENT_HRP: &str = "age";
const SECRET_KEY_HRP: &str = "age-secret-key-";
const PLUGIN_IDENTITY_HRP: &str = "age-plugin-keyward-";
const STANZA_KEY_LABEL: &[u8] = b"age-encryption.org/v1/X25519";

/// Errors from X25519 key handling and the age encodings.
///
/// No variant carries secret bytes or the text of a secret key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X25519Error {
    /// X25519 gave the all-zero shared secret, so the peer's public key is a
    /// low-order point and the result would be known to anyone.
    #[error("the X25519 public key is a low-order point, so the shared secret would be all zeros")]
    LowOrderPoint,
    /// A stored private key is not 32 bytes.
    #[error("invalid X25519 private key: expected 32 bytes, got {0}")]
    PrivateKeyLength(usize),
    /// An ephemeral share or peer public key is not 32 bytes.
    #[error("invalid X25519 public key: expected 32 bytes, got {0}")]
    PublicKeyLength(usize),
    /// An X25519 stanza body is not 32 bytes.
    #[error("invalid X25519 stanza body: expected 32 bytes, got {0}")]
    BodyLength(usize),
    /// An X25519 stanza does not have exactly one argument.
    #[error("invalid X25519 stanza: expected 1 argument (the ephemeral share), got {0}")]
    ArgumentCount(usize),
    /// The ephemeral share is not canonical unpadded standard base64 of 32 bytes.
    #[error("invalid X25519 stanza: the ephemeral share is not canonical unpadded base64 of 32 bytes")]
    ShareEncoding,
    /// The stanza body does not decrypt under this key: it was made for another key.
    #[error("the stanza does not decrypt with this key")]
    NotForThisKey,
    /// A line of an age identity file is not a valid `AGE-SECRET-KEY-1…` identity.
    #[error("invalid age identity on line {line}: {reason}")]
    IdentityLine { line: usize, reason: &'static str },
    /// An age identity file contains no identity.
    #[error("no age identity (AGE-SECRET-KEY-1…) found")]
    NoIdentity,
    /// A string is not a valid `age1…` recipient.
    #[error("invalid age recipient: {0}")]
    Recipient(&'static str),
    /// A string or payload is not a valid `AGE-PLUGIN-KEYWARD-1…` identity.
    #[error("invalid Keyward plugin identity: {0}")]
    PluginIdentity(&'static str),
    /// A public-key blob is not `string "x25519@keyward" ‖ string key(32)`.
    #[error("invalid x25519@keyward public key blob: {0}")]
    Blob(&'static str),
    /// Protected memory for the secret could not be allocated.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// An X25519 private key (the 32-byte scalar as age stores it, unclamped).
///
/// Wiped when dropped; `Debug` prints only the public key.
pub struct X25519Secret {
    scalar: SecretBuf,
}

impl X25519Secret {
    /// Generates a key from the operating system's random number generator.
    pub fn generate() -> Result<Self, X25519Error> {
        let secret = StaticSecret::random_from_rng(rand_core::OsRng);
        let bytes = Zeroizing::new(secret.to_bytes());
        Self::from_bytes(&bytes)
    }

    /// Copies a 32-byte scalar into protected memory. The caller wipes its copy.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, X25519Error> {
        Ok(X25519Secret { scalar: SecretBuf::from_slice(bytes)? })
    }

    /// Copies a scalar from a slice, checking its length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, X25519Error> {
        let array: &[u8; KEY_LEN] =
            bytes.try_into().map_err(|_| X25519Error::PrivateKeyLength(bytes.len()))?;
        Self::from_bytes(array)
    }

    /// Borrows the 32 secret bytes, for storing the key in the keystore.
    pub fn expose(&self) -> &[u8] {
        self.scalar.expose()
    }

    /// Computes the public key.
    pub fn public_key(&self) -> X25519Public {
        public_key_of(&self.scalar).expect("the scalar is 32 bytes by construction")
    }

    /// Formats the key as an age identity line, `AGE-SECRET-KEY-1…`.
    pub fn to_age_identity(&self) -> Zeroizing<String> {
        let mut lower = Zeroizing::new(String::new());
        // Encoding 32 bytes cannot exceed the Bech32 code length.
        bech32::encode_lower_to_fmt::<Bech32, String>(
            &mut lower,
            Hrp::parse_unchecked(SECRET_KEY_HRP),
            self.scalar.expose(),
        )
        .expect("a 32-byte payload fits in Bech32");
        Zeroizing::new(lower.to_uppercase())
    }

    /// Borrows the protected buffer, for the operations below.
    pub fn as_secret_buf(&self) -> &SecretBuf {
        &self.scalar
    }

    /// Takes the protected buffer, for storing the key.
    pub fn into_secret_buf(self) -> SecretBuf {
        self.scalar
    }
}

/// Builds the x25519-dalek key from a stored scalar, checking its length.
fn static_secret(private: &SecretBuf) -> Result<StaticSecret, X25519Error> {
    let stored = private.expose();
    if stored.len() != KEY_LEN {
        return Err(X25519Error::PrivateKeyLength(stored.len()));
    }
    let mut bytes = [0u8; KEY_LEN];
    bytes.copy_from_slice(stored);
    let secret = StaticSecret::from(bytes);
    bytes.zeroize();
    Ok(secret)
}

/// Computes the public key of a stored scalar.
pub fn public_key_of(private: &SecretBuf) -> Result<X25519Public, X25519Error> {
    Ok(X25519Public(PublicKey::from(&static_secret(private)?).to_bytes()))
}

impl fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X25519Secret({})", self.public_key().fingerprint_text())
    }
}

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519Public(pub [u8; KEY_LEN]);

impl X25519Public {
    /// Parses an `age1…` recipient.
    pub fn from_age_recipient(text: &str) -> Result<Self, X25519Error> {
        let parsed = CheckedHrpstring::new::<Bech32>(text)
            .map_err(|_| X25519Error::Recipient("invalid Bech32 encoding"))?;
        if parsed.hrp() != Hrp::parse_unchecked(RECIPIENT_HRP) {
            return Err(X25519Error::Recipient("expected the prefix age1"));
        }
        let bytes: Vec<u8> = parsed.byte_iter().collect();
        let key: [u8; KEY_LEN] =
            bytes.try_into().map_err(|_| X25519Error::Recipient("expected a 32-byte key"))?;
        Ok(X25519Public(key))
    }

    /// Formats the key as the `age1…` recipient that senders encrypt to.
    pub fn to_age_recipient(&self) -> String {
        bech32::encode_lower::<Bech32>(Hrp::parse_unchecked(RECIPIENT_HRP), &self.0)
            .expect("a 32-byte payload fits in Bech32")
    }

    /// Encodes the key as an SSH wire blob: `string "x25519@keyward" ‖ string key`.
    pub fn blob(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(4 + KEY_TYPE_NAME.len() + 4 + KEY_LEN);
        blob.put_string(KEY_TYPE_NAME.as_bytes());
        blob.put_string(&self.0);
        blob
    }

    /// Parses the SSH wire blob that [`X25519Public::blob`] writes; trailing
    /// bytes are an error.
    pub fn from_blob(blob: &[u8]) -> Result<Self, X25519Error> {
        let mut reader = Reader::new(blob);
        let name = reader.string().map_err(|_| X25519Error::Blob("truncated key type"))?;
        if name != KEY_TYPE_NAME.as_bytes() {
            return Err(X25519Error::Blob("key type is not x25519@keyward"));
        }
        let key = reader.string().map_err(|_| X25519Error::Blob("truncated public key"))?;
        if !reader.is_empty() {
            return Err(X25519Error::Blob("trailing bytes after the public key"));
        }
        let key: [u8; KEY_LEN] =
            key.try_into().map_err(|_| X25519Error::Blob("public key is not 32 bytes"))?;
        Ok(X25519Public(key))
    }

    /// SHA-256 of the public-key blob: the raw fingerprint that requests
    /// and plugin identities name the key by.
    pub fn fingerprint(&self) -> [u8; 32] {
        crate::keys::fingerprint_bytes(&self.blob())
    }

    /// `SHA256:` and the unpadded base64 fingerprint, as OpenSSH prints it.
    pub fn fingerprint_text(&self) -> String {
        crate::keys::fingerprint(&self.blob())
    }
}

impl fmt::Debug for X25519Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X25519Public({})", self.to_age_recipient())
    }
}

/// Formats a raw key fingerprint as `SHA256:` and unpadded base64, the
/// form `keyward list` shows.
pub fn fingerprint_text(fingerprint: &[u8; 32]) -> String {
    format!("SHA256:{}", BASE64_STANDARD_NO_PAD.encode(fingerprint))
}

/// Parses an age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments and
/// blank lines. Returns the keys in file order; at least one is required.
///
/// Errors name the line number, never the line's text, because a line may
/// hold a secret key.
pub fn parse_age_identity_file(text: &str) -> Result<Vec<X25519Secret>, X25519Error> {
    let mut secrets = Vec::new();

    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let reject = |reason| X25519Error::IdentityLine { line: line_number, reason };

        if line.starts_with("age-encryption.org/") || line.starts_with("-----BEGIN AGE") {
            return Err(reject(
                "the identity file is itself age-encrypted; decrypt it first with `age -d`",
            ));
        }
        if line.starts_with("AGE-PLUGIN-") {
            return Err(reject("a plugin identity holds no key that can be imported"));
        }

        secrets.push(parse_age_secret_key(line).map_err(reject)?);
    }

    if secrets.is_empty() {
        return Err(X25519Error::NoIdentity);
    }
    Ok(secrets)
}

fn parse_age_secret_key(line: &str) -> Result<X25519Secret, &'static str> {
    let parsed = CheckedHrpstring::new::<Bech32>(line)
        .map_err(|_| "expected AGE-SECRET-KEY-1 followed by a valid Bech32 key")?;
    if parsed.hrp() != Hrp::parse_unchecked(SECRET_KEY_HRP) {
        return Err("expected the prefix AGE-SECRET-KEY-1");
    }

    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    let mut length = 0;
    for byte in parsed.byte_iter() {
        if length == KEY_LEN {
            return Err("the key is longer than 32 bytes");
        }
        bytes[length] = byte;
        length += 1;
    }
    if length != KEY_LEN {
        return Err("the key is shorter than 32 bytes");
    }

    X25519Secret::from_bytes(&bytes).map_err(|_| "protected memory is unavailable")
}

/// Formats the plugin identity line `AGE-PLUGIN-KEYWARD-1…` that names a key
/// by fingerprint. It contains no secret and no socket path.
pub fn plugin_identity(fingerprint: &[u8; 32]) -> String {
    let mut payload = Vec::with_capacity(1 + fingerprint.len());
    payload.push(PLUGIN_IDENTITY_VERSION);
    payload.extend_from_slice(fingerprint);
    bech32::encode_lower::<Bech32>(Hrp::parse_unchecked(PLUGIN_IDENTITY_HRP), &payload)
        .expect("a 33-byte payload fits in Bech32")
        .to_uppercase()
}

/// Parses a plugin identity line back to the key fingerprint it names.
pub fn parse_plugin_identity(text: &str) -> Result<[u8; 32], X25519Error> {
    let parsed = CheckedHrpstring::new::<Bech32>(text.trim())
        .map_err(|_| X25519Error::PluginIdentity("invalid Bech32 encoding"))?;
    if parsed.hrp() != Hrp::parse_unchecked(PLUGIN_IDENTITY_HRP) {
        return Err(X25519Error::PluginIdentity("expected the prefix AGE-PLUGIN-KEYWARD-1"));
    }
    let payload: Vec<u8> = parsed.byte_iter().collect();
    parse_plugin_identity_payload(&payload)
}

/// Parses the decoded payload of a plugin identity (what the age plugin
/// state machine passes to the plugin): the version byte, then the
/// 32-byte fingerprint.
pub fn parse_plugin_identity_payload(payload: &[u8]) -> Result<[u8; 32], X25519Error> {
    match payload.split_first() {
        Some((&PLUGIN_IDENTITY_VERSION, fingerprint)) => fingerprint
            .try_into()
            .map_err(|_| X25519Error::PluginIdentity("expected a 32-byte key fingerprint")),
        Some(_) => Err(X25519Error::PluginIdentity(
            "unsupported version; this identity needs a newer age-plugin-keyward",
        )),
        None => Err(X25519Error::PluginIdentity("empty payload")),
    }
}

/// The arguments of an age X25519 recipient stanza, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X25519Stanza {
    /// The sender's ephemeral public key.
    pub ephemeral_share: [u8; KEY_LEN],
    /// The file key encrypted with ChaCha20-Poly1305, tag included.
    pub body: [u8; STANZA_BODY_LEN],
}

/// Parses the arguments and body of a stanza tagged `X25519` as age does.
/// The one argument must be the canonical unpadded base64 of 32 bytes (no
/// padding, no stray trailing bits), the body must be 32 bytes, and the
/// share must not be a low-order point.
pub fn parse_stanza(args: &[String], body: &[u8]) -> Result<X25519Stanza, X25519Error> {
    let [share_text] = args else {
        return Err(X25519Error::ArgumentCount(args.len()));
    };
    let ephemeral_share = decode_share(share_text)?;
    let body: [u8; STANZA_BODY_LEN] =
        body.try_into().map_err(|_| X25519Error::BodyLength(body.len()))?;
    if is_low_order(&ephemeral_share) {
        return Err(X25519Error::LowOrderPoint);
    }
    Ok(X25519Stanza { ephemeral_share, body })
}

/// Decodes an ephemeral share from canonical unpadded standard base64.
pub fn decode_share(text: &str) -> Result<[u8; KEY_LEN], X25519Error> {
    // The base64 engine rejects padding and non-zero trailing bits, so only
    // the canonical 43-character encoding of 32 bytes decodes. The buffer
    // has one spare byte so that a longer input shows as a wrong length.
    let mut buffer = [0u8; KEY_LEN + 1];
    match BASE64_STANDARD_NO_PAD.decode_slice(text.as_bytes(), &mut buffer) {
        Ok(KEY_LEN) => Ok(buffer[..KEY_LEN].try_into().expect("length checked")),
        _ => Err(X25519Error::ShareEncoding),
    }
}

/// Tells whether X25519 with any key gives the all-zero result for `point`.
///
/// A clamped scalar is 8·m with 0 < m < ℓ, so the product is the identity
/// exactly when the point's order divides 8; the result therefore does not
/// depend on the scalar, and a fixed public one lets a client check a share
/// without the private key.
pub fn is_low_order(point: &[u8; KEY_LEN]) -> bool {
    let probe = x25519_dalek::x25519([0x5a; KEY_LEN], *point);
    is_all_zero(&probe)
}

/// Unwraps the file key from an age X25519 recipient stanza:
/// shared = X25519(secret, share), which must not be all zeros;
/// wrap key = HKDF-SHA256(salt = share ‖ our public key, info =
/// "age-encryption.org/v1/X25519"); file key = ChaCha20-Poly1305 decryption
/// of `body` under the wrap key with the all-zero nonce.
///
/// Returns only the file key. [`X25519Error::NotForThisKey`] means the body
/// did not authenticate, which is what a stanza for another key does.
pub fn unwrap_stanza(
    private: &SecretBuf,
    ephemeral_share: &[u8],
    body: &[u8],
) -> Result<Zeroizing<[u8; FILE_KEY_LEN]>, X25519Error> {
    let share: [u8; KEY_LEN] = ephemeral_share
        .try_into()
        .map_err(|_| X25519Error::PublicKeyLength(ephemeral_share.len()))?;
    if body.len() != STANZA_BODY_LEN {
        return Err(X25519Error::BodyLength(body.len()));
    }

    let static_secret = static_secret(private)?;
    let our_public = PublicKey::from(&static_secret);
    let shared = static_secret.diffie_hellman(&PublicKey::from(share));
    if is_all_zero(shared.as_bytes()) {
        return Err(X25519Error::LowOrderPoint);
    }

    let mut salt = [0u8; 2 * KEY_LEN];
    salt[..KEY_LEN].copy_from_slice(&share);
    salt[KEY_LEN..].copy_from_slice(our_public.as_bytes());
    let mut wrap_key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes())
        .expand(STANZA_KEY_LABEL, wrap_key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");

    let cipher = ChaCha20Poly1305::new((&*wrap_key).into());
    let plaintext = Zeroizing::new(
        cipher.decrypt(&[0u8; 12].into(), body).map_err(|_| X25519Error::NotForThisKey)?,
    );
    let mut file_key = Zeroizing::new([0u8; FILE_KEY_LEN]);
    file_key.copy_from_slice(&plaintext);
    Ok(file_key)
}

/// One result of [`agree`]: the shared secret, or why it was rejected.
pub type AgreeResult = Result<Zeroizing<[u8; KEY_LEN]>, X25519Error>;

/// Computes X25519(private, peer) for each peer, in order. An all-zero
/// result is an error for that peer alone.
pub fn agree(
    private: &SecretBuf,
    peers: &[[u8; KEY_LEN]],
) -> Result<Vec<AgreeResult>, X25519Error> {
    let static_secret = static_secret(private)?;
    let results = peers
        .iter()
        .map(|peer| {
            let shared = static_secret.diffie_hellman(&PublicKey::from(*peer));
            if is_all_zero(shared.as_bytes()) {
                Err(X25519Error::LowOrderPoint)
            } else {
                Ok(Zeroizing::new(shared.to_bytes()))
            }
        })
        .collect();
    Ok(results)
}

fn is_all_zero(bytes: &[u8; KEY_LEN]) -> bool {
    let folded = bytes.iter().fold(0u8, |acc, byte| acc | byte);
    folded.ct_eq(&0).into()
}

#[cfg(test)]
mod tests;
