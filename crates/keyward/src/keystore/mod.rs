//! The keystore file: specified in `docs/KEYSTORE.md`.
//! (Interface placeholder; replaced by the real module.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::{Passphrase, SecretBuf};

pub const KEYSTORE_FILE: &str = "keystore";
pub const LOCK_FILE: &str = "keystore.lock";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    pub fn calibrate(_target: Duration) -> KdfParams {
        KdfParams { m_cost_kib: 262144, t_cost: 1, p_cost: 1 }
    }
    pub fn insecure_test() -> KdfParams {
        KdfParams { m_cost_kib: 8, t_cost: 1, p_cost: 1 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdfPolicy {
    Production,
    InsecureTest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub name: String,
    pub key_type: String,
    pub purpose: String,
    pub public_key: Vec<u8>,
    pub comment: String,
    pub created: u64,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
    pub attributes: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Catalog {
    pub version: u32,
    pub keystore_id: [u8; 16],
    pub generation: u64,
    pub kdf: KdfParams,
    pub entries: Vec<EntryMeta>,
}

pub struct Entry {
    pub meta: EntryMeta,
    pub private: SecretBuf,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    #[error("no keystore at {}", path.display())]
    NotFound { path: PathBuf },
    #[error("incorrect passphrase, or the keystore header was changed")]
    WrongPassphrase,
}

pub fn read_catalog(dir: &Path) -> Result<Catalog, KeystoreError> {
    Err(KeystoreError::NotFound { path: dir.to_owned() })
}

pub fn create(dir: &Path, _passphrase: &Passphrase, _kdf: KdfParams, _policy: KdfPolicy) -> Result<(), KeystoreError> {
    Err(KeystoreError::NotFound { path: dir.to_owned() })
}

pub struct Unlocked {
    dir: PathBuf,
}

impl Unlocked {
    pub fn open(dir: &Path, _passphrase: &Passphrase, _policy: KdfPolicy) -> Result<(Unlocked, Vec<Entry>), KeystoreError> {
        Err(KeystoreError::NotFound { path: dir.to_owned() })
    }
    pub fn reopen(&self) -> Result<Vec<Entry>, KeystoreError> {
        Err(KeystoreError::WrongPassphrase)
    }
    pub fn add(&mut self, _entries: Vec<Entry>) -> Result<(), KeystoreError> {
        Err(KeystoreError::WrongPassphrase)
    }
    pub fn remove(&mut self, _name: &str) -> Result<(), KeystoreError> {
        Err(KeystoreError::WrongPassphrase)
    }
    pub fn change_passphrase(&mut self, _new: &Passphrase, _kdf: KdfParams, _policy: KdfPolicy) -> Result<(), KeystoreError> {
        Err(KeystoreError::WrongPassphrase)
    }
    pub fn verify_passphrase(&self, _passphrase: &Passphrase) -> Result<(), KeystoreError> {
        Err(KeystoreError::WrongPassphrase)
    }
    pub fn catalog(&self) -> Catalog {
        Catalog { version: 1, keystore_id: [0; 16], generation: 0, kdf: KdfParams::insecure_test(), entries: Vec::new() }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
