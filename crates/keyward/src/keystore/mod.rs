//! The keystore: one file holding named key entries, each private key
//! encrypted under a key unwrapped by the passphrase. The byte layout, key
//! schedule and write procedure are specified in `docs/KEYSTORE.md`.
//!
//! The keystore does not know key types: it stores type and purpose as
//! strings, the public key as bytes and the private key as opaque secret
//! bytes. Callers check that a private key matches its public key.
//!
//! NOTE: putting back an older complete copy of the file (rollback) is not
//! detected; that needs state kept outside the keystore.

mod crypto;
mod file;
mod format;
mod kdf;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

use crate::secret::{Passphrase, SecretBuf};
use format::{Header, ParsedFile};

pub use format::{
    MAX_COMMENT_LEN, MAX_ENTRIES, MAX_FILE_LEN, MAX_NAME_LEN, MAX_PRIVATE_LEN, MAX_PUBLIC_KEY_LEN,
    MAX_STRING_LEN, VERSION,
};
pub use kdf::{
    MAX_M_COST_KIB, MAX_P_COST, MAX_T_COST, MAX_WORK, MIN_M_COST_KIB, MIN_P_COST, MIN_T_COST,
    MIN_WORK,
};

/// Name of the keystore file inside the keystore directory.
pub const KEYSTORE_FILE: &str = "keystore";
/// Name of the lock file, `flock`ed exclusively for every write.
pub const LOCK_FILE: &str = "keystore.lock";

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Number of lanes.
    pub p_cost: u32,
}

/// Policy for the lower bounds of KDF parameters. The caps always apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdfPolicy {
    /// Floors enforced.
    Production,
    /// Floors skipped, for tests that need a fast KDF.
    InsecureTest,
}

/// Public metadata of one entry, readable without the passphrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// Unique name matching `[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}`.
    pub name: String,
    pub key_type: String,
    pub purpose: String,
    /// At most 16 KiB.
    pub public_key: Vec<u8>,
    /// At most 1024 bytes of UTF-8.
    pub comment: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// Seconds since the Unix epoch; `Some(0)` cannot be stored.
    pub not_before: Option<u64>,
    /// Seconds since the Unix epoch; `Some(0)` cannot be stored.
    pub not_after: Option<u64>,
    pub attributes: Vec<(String, String)>,
}

/// The keystore's metadata. From [`read_catalog`] or [`parse_catalog`] it is
/// unverified, since checking the MAC needs the passphrase; from
/// [`Unlocked::catalog`] it is verified.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub version: u32,
    pub keystore_id: [u8; 16],
    pub generation: u64,
    pub kdf: KdfParams,
    pub entries: Vec<EntryMeta>,
}

/// A decrypted entry.
pub struct Entry {
    pub meta: EntryMeta,
    /// The private key bytes, at most [`MAX_PRIVATE_LEN`].
    pub private: SecretBuf,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("meta", &self.meta)
            .field("private", &"[REDACTED]")
            .finish()
    }
}

/// Errors from the keystore. Messages never contain secret bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The keystore file does not exist.
    #[error("no keystore at {path}; create one first")]
    NotFound { path: PathBuf },
    /// `create` found a keystore already there.
    #[error("a keystore already exists at {path}")]
    AlreadyExists { path: PathBuf },
    /// A file system operation failed.
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file breaks the format or its limits.
    #[error("the keystore file is malformed: {what}")]
    Malformed { what: String },
    /// The file has a format version this build cannot read.
    #[error("the keystore file has format version {0}, but this build reads only version 1")]
    UnsupportedVersion(u32),
    /// KDF parameters are outside the caps, or below the floors.
    #[error("KDF parameters out of bounds: {what}")]
    KdfOutOfBounds { what: String },
    /// The keystore key did not unwrap.
    #[error("incorrect passphrase, or the keystore header was changed")]
    WrongPassphrase,
    /// The MAC or an entry's authentication failed.
    #[error("the keystore file was modified or corrupted: {what}")]
    Tampered { what: String },
    /// Another process changed the passphrase since this handle opened the keystore.
    #[error("the keystore was re-keyed by another process since it was opened; open it again")]
    ChangedOnDisk,
    /// An added entry's name is already in use.
    #[error("a key named {0:?} already exists in the keystore")]
    DuplicateName(String),
    /// No entry has this name.
    #[error("no key named {0:?} in the keystore")]
    NoSuchKey(String),
    /// An entry to be written breaks a limit of the format.
    #[error("invalid key entry {name:?}: {what}")]
    InvalidEntry { name: String, what: String },
    /// A write would exceed the entry count or file size limit.
    #[error("the keystore is full: {what}; remove keys first")]
    Full { what: String },
    /// Another process held the lock for too long.
    #[error("the keystore lock {path} is held by another process; try again later")]
    Locked { path: PathBuf },
    /// Protected memory for a secret could not be allocated.
    #[error("could not allocate protected memory for a secret: {0}")]
    Memory(#[source] keyward_protect::MemoryError),
}

/// Reads the catalog without the passphrase. The result is unverified.
pub fn read_catalog(dir: &Path) -> Result<Catalog, KeystoreError> {
    parse_catalog(&file::read_keystore(dir)?)
}

/// Decodes a keystore file without verifying it. Malformed input of any kind
/// returns an error; the fuzz-style tests feed it truncated and flipped files.
pub fn parse_catalog(bytes: &[u8]) -> Result<Catalog, KeystoreError> {
    Ok(catalog_of(&format::parse(bytes)?))
}

/// Creates an empty keystore in `dir`, creating `dir` with mode 0700 if it is
/// missing. Fails if a keystore file is already there.
pub fn create(
    dir: &Path,
    passphrase: &Passphrase,
    kdf: KdfParams,
    policy: KdfPolicy,
) -> Result<(), KeystoreError> {
    kdf.check(policy)?;
    file::create_dir(dir)?;
    let lock = file::lock(dir)?;

    let path = dir.join(KEYSTORE_FILE);
    match path.symlink_metadata() {
        Ok(_) => return Err(KeystoreError::AlreadyExists { path }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(KeystoreError::Io {
                op: "inspect",
                path,
                source: e,
            })
        }
    }

    let keystore_id = crypto::random_bytes::<16>();
    let salt = crypto::random_bytes::<{ format::SALT_LEN }>().to_vec();
    let kek = kdf::derive_kek(passphrase, &salt, &kdf)?;
    let keys = Keys::wrap(
        keystore_id,
        kdf,
        salt,
        kek,
        crypto::random_secret(format::KEY_LEN)?,
    );

    let bytes = encode_file(&keys, 1, &[])?;
    file::write_atomic(dir, &bytes, &lock)
}

/// An opened keystore: the directory and the keys needed to read and write it.
pub struct Unlocked {
    dir: PathBuf,
    keys: Keys,
    catalog: Catalog,
}

impl fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlocked")
            .field("dir", &self.dir)
            .field("keystore_id", &hex::encode(self.keys.keystore_id))
            .field("generation", &self.catalog.generation)
            .field("kdf", &self.keys.kdf)
            .finish_non_exhaustive()
    }
}

impl Unlocked {
    /// Opens the keystore in `dir` and decrypts every entry.
    ///
    /// Checks the KDF caps (and floors under `Production`) before deriving
    /// the key-encryption key, then unwraps the keystore key
    /// (`WrongPassphrase` on failure), checks the MAC and decrypts each entry
    /// (`Tampered` on failure).
    pub fn open(
        dir: &Path,
        passphrase: &Passphrase,
        policy: KdfPolicy,
    ) -> Result<(Unlocked, Vec<Entry>), KeystoreError> {
        let bytes = file::read_keystore(dir)?;
        let parsed = format::parse(&bytes)?;
        let header = &parsed.header;
        header.kdf.check(policy)?;

        let kek = kdf::derive_kek(passphrase, &header.salt, &header.kdf)?;
        let keystore_key = unwrap_key(header, &kek)?.ok_or(KeystoreError::WrongPassphrase)?;
        let entries = decrypt_verified(&parsed, &bytes, &keystore_key)?;

        let keys = Keys::from_header(header, kek, keystore_key);
        let catalog = catalog_of(&parsed);
        Ok((
            Unlocked {
                dir: dir.to_path_buf(),
                keys,
                catalog,
            },
            entries,
        ))
    }

    /// Reads the keystore again and decrypts it with the held keys. If
    /// another process re-keyed it under the same passphrase (`remove`),
    /// the new keystore key is unwrapped and used for this read.
    pub fn reopen(&self) -> Result<Vec<Entry>, KeystoreError> {
        let bytes = file::read_keystore(&self.dir)?;
        let parsed = format::parse(&bytes)?;
        let keystore_key = self.key_for(&parsed.header)?;
        decrypt_verified(&parsed, &bytes, &keystore_key)
    }

    /// Adds entries. All are added or none; a name already in the keystore or
    /// repeated in `entries` fails with `DuplicateName`. Keeps the keystore key.
    pub fn add(&mut self, entries: Vec<Entry>) -> Result<(), KeystoreError> {
        for entry in &entries {
            check_entry(entry)?;
        }
        self.write(Rekey::Keep, move |current| {
            let mut names: std::collections::HashSet<String> =
                current.iter().map(|e| e.meta.name.clone()).collect();
            for entry in entries {
                if !names.insert(entry.meta.name.clone()) {
                    return Err(KeystoreError::DuplicateName(entry.meta.name));
                }
                current.push(entry);
            }
            Ok(())
        })
    }

    /// Removes the named entry and re-keys the keystore, so that an older copy
    /// of the file and the passphrase no longer yield a key for the new file.
    pub fn remove(&mut self, name: &str) -> Result<(), KeystoreError> {
        self.write(Rekey::NewKeystoreKey, |current| {
            let index = current
                .iter()
                .position(|e| e.meta.name == name)
                .ok_or_else(|| KeystoreError::NoSuchKey(name.to_string()))?;
            current.remove(index);
            Ok(())
        })
    }

    /// Sets a new passphrase and KDF parameters, with a fresh salt and a
    /// fresh keystore key.
    pub fn change_passphrase(
        &mut self,
        new: &Passphrase,
        kdf: KdfParams,
        policy: KdfPolicy,
    ) -> Result<(), KeystoreError> {
        kdf.check(policy)?;
        let salt = crypto::random_bytes::<{ format::SALT_LEN }>().to_vec();
        let kek = kdf::derive_kek(new, &salt, &kdf)?;
        self.write(Rekey::NewPassphrase { kdf, salt, kek }, |_| Ok(()))
    }

    /// Checks `passphrase` against the held key-encryption key, deriving with
    /// the held salt and parameters and comparing in constant time.
    pub fn verify_passphrase(&self, passphrase: &Passphrase) -> Result<(), KeystoreError> {
        let kek = kdf::derive_kek(passphrase, &self.keys.salt, &self.keys.kdf)?;
        if bool::from(kek.expose().ct_eq(self.keys.kek.expose())) {
            Ok(())
        } else {
            Err(KeystoreError::WrongPassphrase)
        }
    }

    /// Returns the verified metadata as of the last read or write through this handle.
    pub fn catalog(&self) -> Catalog {
        self.catalog.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Read-modify-write under the lock: re-read and verify the file with the
    /// held keys, apply `change`, then write the result atomically with every
    /// entry re-encrypted under the next generation.
    fn write(
        &mut self,
        rekey: Rekey,
        change: impl FnOnce(&mut Vec<Entry>) -> Result<(), KeystoreError>,
    ) -> Result<(), KeystoreError> {
        let lock = file::lock(&self.dir)?;
        let bytes = file::read_keystore(&self.dir)?;
        let parsed = format::parse(&bytes)?;
        let header = &parsed.header;
        let keystore_key = self.key_for(header)?;
        let mut entries = decrypt_verified(&parsed, &bytes, &keystore_key)?;

        change(&mut entries)?;

        let generation =
            header
                .generation
                .checked_add(1)
                .ok_or_else(|| KeystoreError::Malformed {
                    what: "the generation counter is at its maximum".into(),
                })?;
        let kek = self.keys.kek.try_clone().map_err(KeystoreError::Memory)?;
        let keys = match rekey {
            Rekey::Keep => Keys::from_header(header, kek, keystore_key),
            Rekey::NewKeystoreKey => Keys::wrap(
                header.keystore_id,
                header.kdf,
                header.salt.clone(),
                kek,
                crypto::random_secret(format::KEY_LEN)?,
            ),
            Rekey::NewPassphrase { kdf, salt, kek } => Keys::wrap(
                header.keystore_id,
                kdf,
                salt,
                kek,
                crypto::random_secret(format::KEY_LEN)?,
            ),
        };
        let new_bytes = encode_file(&keys, generation, &entries)?;
        file::write_atomic(&self.dir, &new_bytes, &lock)?;

        self.catalog = Catalog {
            version: VERSION,
            keystore_id: keys.keystore_id,
            generation,
            kdf: keys.kdf,
            entries: entries.into_iter().map(|e| e.meta).collect(),
        };
        self.keys = keys;
        Ok(())
    }

    /// Finds the keystore key for a header read from disk, using only the
    /// held key-encryption key.
    fn key_for(&self, header: &Header) -> Result<SecretBuf, KeystoreError> {
        let held = &self.keys;
        let same_kdf = header.keystore_id == held.keystore_id
            && header.kdf == held.kdf
            && header.salt == held.salt;
        let same_wrap =
            header.wrap_nonce == held.wrap_nonce && header.wrapped_key == held.wrapped_key;

        if same_kdf && same_wrap {
            return held.keystore_key.try_clone().map_err(KeystoreError::Memory);
        }
        if same_wrap {
            // Our wrapped key under a different id, salt or parameters: the
            // header was edited, since a re-key always wraps a fresh key.
            return Err(KeystoreError::Tampered {
                what: "the keystore header was changed".into(),
            });
        }
        if same_kdf {
            // Another process re-keyed under the same passphrase (remove).
            if let Some(key) = unwrap_key(header, &held.kek)? {
                return Ok(key);
            }
        }
        Err(KeystoreError::ChangedOnDisk)
    }
}

/// The key material of one keystore state.
struct Keys {
    keystore_id: [u8; 16],
    kdf: KdfParams,
    salt: Vec<u8>,
    kek: SecretBuf,
    keystore_key: SecretBuf,
    wrap_nonce: [u8; format::NONCE_LEN],
    wrapped_key: Vec<u8>,
}

impl Keys {
    /// Wraps `keystore_key` under `kek` with a fresh nonce.
    fn wrap(
        keystore_id: [u8; 16],
        kdf: KdfParams,
        salt: Vec<u8>,
        kek: SecretBuf,
        keystore_key: SecretBuf,
    ) -> Keys {
        let wrap_nonce = crypto::random_bytes::<{ format::NONCE_LEN }>();
        let aad = crypto::wrap_aad(&keystore_id, &kdf, &salt);
        let wrapped_key = crypto::seal(&kek, &wrap_nonce, &aad, keystore_key.expose());
        Keys {
            keystore_id,
            kdf,
            salt,
            kek,
            keystore_key,
            wrap_nonce,
            wrapped_key,
        }
    }

    /// Keeps the wrap found in `header`, which `keystore_key` came from.
    fn from_header(header: &Header, kek: SecretBuf, keystore_key: SecretBuf) -> Keys {
        Keys {
            keystore_id: header.keystore_id,
            kdf: header.kdf,
            salt: header.salt.clone(),
            kek,
            keystore_key,
            wrap_nonce: header.wrap_nonce,
            wrapped_key: header.wrapped_key.clone(),
        }
    }
}

/// The change a write makes to the keystore key.
enum Rekey {
    Keep,
    NewKeystoreKey,
    NewPassphrase {
        kdf: KdfParams,
        salt: Vec<u8>,
        kek: SecretBuf,
    },
}

fn catalog_of(parsed: &ParsedFile) -> Catalog {
    Catalog {
        version: parsed.header.version,
        keystore_id: parsed.header.keystore_id,
        generation: parsed.header.generation,
        kdf: parsed.header.kdf,
        entries: parsed.entries.iter().map(|e| e.meta.clone()).collect(),
    }
}

fn check_entry(entry: &Entry) -> Result<Vec<u8>, KeystoreError> {
    let invalid = |what: String| KeystoreError::InvalidEntry {
        name: entry.meta.name.clone(),
        what,
    };
    if entry.private.len() > MAX_PRIVATE_LEN {
        return Err(invalid(format!(
            "the private key is longer than {MAX_PRIVATE_LEN} bytes"
        )));
    }
    format::encode_meta(&entry.meta).map_err(invalid)
}

/// Unwraps the keystore key; `None` if the KEK or the header does not match.
fn unwrap_key(header: &Header, kek: &SecretBuf) -> Result<Option<SecretBuf>, KeystoreError> {
    let aad = crypto::wrap_aad(&header.keystore_id, &header.kdf, &header.salt);
    let key = crypto::open(kek, &header.wrap_nonce, &aad, &header.wrapped_key)?;
    Ok(key.filter(|k| k.len() == format::KEY_LEN))
}

/// Checks the MAC, then decrypts every entry.
fn decrypt_verified(
    parsed: &ParsedFile,
    bytes: &[u8],
    keystore_key: &SecretBuf,
) -> Result<Vec<Entry>, KeystoreError> {
    let header = &parsed.header;
    let subkeys = crypto::subkeys(keystore_key, &header.keystore_id)?;
    if !crypto::verify_mac(&subkeys.mac_key, &bytes[..parsed.signed_len], &parsed.mac) {
        return Err(KeystoreError::Tampered {
            what: "the MAC does not match; entries were dropped, reordered or edited".into(),
        });
    }

    let mut entries = Vec::with_capacity(parsed.entries.len());
    for raw in &parsed.entries {
        let aad = crypto::entry_aad(&header.keystore_id, header.generation, &raw.meta_bytes);
        let private = crypto::open(&subkeys.entry_key, &raw.nonce, &aad, &raw.ciphertext)?
            .ok_or_else(|| KeystoreError::Tampered {
                what: format!("entry {:?} failed authentication", raw.meta.name),
            })?;
        entries.push(Entry {
            meta: raw.meta.clone(),
            private,
        });
    }
    Ok(entries)
}

/// Encodes a whole file, encrypting every entry with a fresh nonce under
/// `generation`, and appends the MAC.
fn encode_file(keys: &Keys, generation: u64, entries: &[Entry]) -> Result<Vec<u8>, KeystoreError> {
    let header = Header {
        version: VERSION,
        keystore_id: keys.keystore_id,
        generation,
        kdf: keys.kdf,
        salt: keys.salt.clone(),
        wrap_nonce: keys.wrap_nonce,
        wrapped_key: keys.wrapped_key.clone(),
    };
    if entries.len() > MAX_ENTRIES as usize {
        return Err(KeystoreError::Full {
            what: format!(
                "{} keys, more than the limit of {MAX_ENTRIES}",
                entries.len()
            ),
        });
    }
    let mut encoded_metas = Vec::with_capacity(entries.len());
    for entry in entries {
        encoded_metas.push(check_entry(entry)?);
    }

    // Check the final size before encrypting anything.
    let mut out = format::encode_header(&header);
    let entries_len: u64 = entries
        .iter()
        .zip(&encoded_metas)
        .map(|(entry, meta)| {
            (meta.len() + 4 + format::NONCE_LEN + 4 + entry.private.len() + format::TAG_LEN) as u64
        })
        .sum();
    let total_len = out.len() as u64 + 4 + entries_len + 4 + format::MAC_LEN as u64;
    if total_len > MAX_FILE_LEN {
        return Err(KeystoreError::Full {
            what: format!(
                "the file would be {total_len} bytes, more than the limit of {MAX_FILE_LEN}"
            ),
        });
    }

    let subkeys = crypto::subkeys(&keys.keystore_key, &keys.keystore_id)?;
    format::put_u32(&mut out, entries.len() as u32);
    for (entry, meta_bytes) in entries.iter().zip(&encoded_metas) {
        let nonce = crypto::random_bytes::<{ format::NONCE_LEN }>();
        let aad = crypto::entry_aad(&keys.keystore_id, generation, meta_bytes);
        let ciphertext = crypto::seal(&subkeys.entry_key, &nonce, &aad, entry.private.expose());
        format::put_entry(&mut out, meta_bytes, &nonce, &ciphertext);
    }
    debug_assert_eq!(out.len() as u64 + 4 + format::MAC_LEN as u64, total_len);

    let mac = crypto::mac(&subkeys.mac_key, &out);
    format::put_string(&mut out, &mac);
    Ok(out)
}

#[cfg(test)]
mod tests;
