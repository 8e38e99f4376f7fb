//! Files of the keystore directory: reading with a size limit, the lock,
//! and the atomic, durable replacement of the keystore file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rustix::fs::{flock, FlockOperation};

use super::crypto::random_bytes;
use super::format::MAX_FILE_LEN;
use super::{KeystoreError, KEYSTORE_FILE, LOCK_FILE};

/// Prefix of temporary files; stale ones are removed at the next write.
pub const TEMP_PREFIX: &str = ".keystore.tmp-";

/// How long `lock` waits for another process to release the lock:
/// `LOCK_ATTEMPTS` tries `LOCK_RETRY` apart, about 5 seconds.
const LOCK_ATTEMPTS: u32 = 100;
const LOCK_RETRY: Duration = Duration::from_millis(50);

fn io_error(op: &'static str, path: &Path, source: io::Error) -> KeystoreError {
    KeystoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the keystore directory with mode 0700 if it is missing.
pub fn create_dir(dir: &Path) -> Result<(), KeystoreError> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(io_error("create directory", dir, e)),
    }
}

/// Reads the keystore file, refusing files over the size limit.
pub fn read_keystore(dir: &Path) -> Result<Vec<u8>, KeystoreError> {
    let path = dir.join(KEYSTORE_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeystoreError::NotFound { path })
        }
        Err(e) => return Err(io_error("open", &path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("read", &path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(KeystoreError::Malformed {
            what: format!("the file is larger than the limit of {MAX_FILE_LEN} bytes"),
        });
    }
    Ok(bytes)
}

/// An exclusive `flock` on `keystore.lock`, released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Takes the keystore lock, creating the lock file with mode 0600.
pub fn lock(dir: &Path) -> Result<LockGuard, KeystoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_error("open lock file", &path, e))?;

    for _ in 0..LOCK_ATTEMPTS {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                thread::sleep(LOCK_RETRY)
            }
            Err(e) => return Err(io_error("lock", &path, e.into())),
        }
    }
    Err(KeystoreError::Locked { path })
}

/// Replaces the keystore file with `bytes` so that a crash at any point leaves
/// either the old or the new file: write a temporary file in the same
/// directory, fsync it, rename it over the keystore, fsync the directory.
/// The caller holds the lock. On error the temporary file is removed.
pub fn write_atomic(dir: &Path, bytes: &[u8], _lock: &LockGuard) -> Result<(), KeystoreError> {
    remove_stale_temp_files(dir)?;

    let temp_path = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(random_bytes::<8>())));
    let result = write_and_rename(dir, &temp_path, bytes);
    if result.is_err() {
        // The rename either never happened or failed, so the temp file is ours.
        let _ = fs::remove_file(&temp_path);
    }
    result
}

fn write_and_rename(dir: &Path, temp_path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp_path)
        .map_err(|e| io_error("create", temp_path, e))?;
    hook::call("write", || file.write_all(bytes)).map_err(|e| io_error("write", temp_path, e))?;
    hook::call("fsync file", || file.sync_all()).map_err(|e| io_error("fsync", temp_path, e))?;
    drop(file);

    let target = dir.join(KEYSTORE_FILE);
    hook::call("rename", || fs::rename(temp_path, &target))
        .map_err(|e| io_error("rename", temp_path, e))?;

    // The new file is in place; the directory fsync makes the rename durable.
    hook::call("fsync directory", || File::open(dir)?.sync_all())
        .map_err(|e| io_error("fsync directory", dir, e))?;
    Ok(())
}

fn remove_stale_temp_files(dir: &Path) -> Result<(), KeystoreError> {
    let listing = fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
            let path: PathBuf = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove stale temporary file", &path, e)),
            }
        }
    }
    Ok(())
}

/// A seam around the write syscalls. Tests record the order of the calls
/// and make a chosen one fail; outside tests it only runs the call.
pub(crate) mod hook {
    #[cfg(not(test))]
    pub fn call<T>(
        _name: &'static str,
        op: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        op()
    }

    #[cfg(test)]
    pub use recording::*;

    #[cfg(test)]
    mod recording {
        use std::cell::RefCell;
        use std::io;

        thread_local! {
            static LOG: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
            static FAIL_AT: RefCell<Option<&'static str>> = const { RefCell::new(None) };
        }

        pub fn call<T>(name: &'static str, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
            LOG.with(|log| log.borrow_mut().push(name));
            if FAIL_AT.with(|fail| *fail.borrow() == Some(name)) {
                return Err(io::Error::other(format!("injected failure at {name}")));
            }
            op()
        }

        /// Returns and clears the calls made on this thread.
        pub fn take_log() -> Vec<&'static str> {
            LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
        }

        /// Makes the named call fail on this thread (`None` to stop).
        pub fn fail_at(name: Option<&'static str>) {
            FAIL_AT.with(|fail| *fail.borrow_mut() = name);
        }
    }
}
