//! Storage for secret bytes: private keys, the keystore key, passphrases.

use std::fmt;

use zeroize::Zeroize;

/// Where secret bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMode {
    /// `memfd_secret(2)` pages, removed from the kernel's direct map.
    MemfdSecret,
    /// `mlock`ed anonymous pages marked `MADV_DONTDUMP`.
    Mlock,
    /// Ordinary heap pages; only with an explicit insecure opt-in.
    None,
}

impl MemoryMode {
    /// Returns the name `keyward status` prints for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryMode::MemfdSecret => "memfd_secret",
            MemoryMode::Mlock => "mlock",
            MemoryMode::None => "none",
        }
    }
}

/// Failure to provide protected memory.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemoryError {
    /// The kernel refused every protected mapping; the message says why.
    Unavailable(String),
    /// The arena is full.
    Exhausted { requested: usize },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Unavailable(why) => write!(f, "protected memory is unavailable: {why}"),
            MemoryError::Exhausted { requested } => {
                write!(f, "protected memory is exhausted ({requested} bytes requested)")
            }
        }
    }
}

impl std::error::Error for MemoryError {}

/// A fixed-length buffer of secret bytes, wiped when dropped.
///
/// `Debug` prints only the length.
pub struct SecretBuf {
    // TODO: move into the protected arena; until then this is a zeroizing
    // heap buffer and `memory_mode()` reports `None`.
    bytes: Box<[u8]>,
}

impl SecretBuf {
    /// Allocates `len` zero bytes.
    pub fn new(len: usize) -> Result<Self, MemoryError> {
        Ok(SecretBuf { bytes: vec![0u8; len].into_boxed_slice() })
    }

    /// Copies `bytes` into a new buffer. The caller wipes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, MemoryError> {
        let mut buf = Self::new(bytes.len())?;
        buf.expose_mut().copy_from_slice(bytes);
        Ok(buf)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Borrows the secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Borrows the secret bytes for writing.
    pub fn expose_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Copies the buffer into new protected memory.
    pub fn try_clone(&self) -> Result<Self, MemoryError> {
        Self::from_slice(self.expose())
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBuf([REDACTED; {}])", self.len())
    }
}

/// Returns where new `SecretBuf`s are placed.
pub fn memory_mode() -> MemoryMode {
    MemoryMode::None
}
