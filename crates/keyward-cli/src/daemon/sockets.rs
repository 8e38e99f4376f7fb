//! The socket directory: checked, locked, and holding the two sockets.
//!
//! The directory and every ancestor must be owned by root or the daemon's
//! user and not writable by anyone else (a root-owned sticky directory such
//! as /tmp excepted), so nobody else can swap a socket under us. A lock file
//! serialises daemons: whoever holds it may replace stale sockets, and a
//! second daemon fails at once. A daemon removes only the sockets it
//! created.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{CliError, Result};

/// The longest socket path the kernel accepts: `sun_path` is 108 bytes
/// including the terminating NUL.
pub const SOCKET_PATH_MAX: usize = 107;

const LOCK_FILE: &str = "daemon.lock";

/// A bound socket and the inode it created, so only that one is removed.
pub struct BoundSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
}

/// The locked socket directory.
pub struct SocketDir {
    pub path: PathBuf,
    dir: OwnedFd,
    _lock: File,
    created: Vec<(String, u64, u64)>,
}

impl SocketDir {
    /// Creates (if needed), checks and locks the socket directory.
    pub fn open(path: &Path, daemon_uid: u32) -> Result<SocketDir> {
        if !path.exists() {
            std::fs::DirBuilder::new().mode(0o755).create(path).map_err(|error| {
                CliError::failed(format!("cannot create the socket directory {}: {error}", path.display()))
            })?;
        }
        let path = path
            .canonicalize()
            .map_err(|error| CliError::failed(format!("cannot resolve the socket directory {}: {error}", path.display())))?;
        check_ancestors(&path, daemon_uid)?;

        let dir = rustix::fs::open(&path, OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|error| CliError::failed(format!("cannot open the socket directory {}: {error}", path.display())))?;
        let stat = rustix::fs::fstat(&dir).map_err(|error| CliError::failed(format!("cannot stat {}: {error}", path.display())))?;
        check_owner_and_mode(&path, stat.st_uid, stat.st_mode, daemon_uid, false)?;

        let lock = lock(&dir, &path)?;
        Ok(SocketDir { path, dir, _lock: lock, created: Vec::new() })
    }

    /// Binds `name` in the directory with `mode`, replacing a stale socket
    /// and refusing anything that is not a socket.
    pub fn bind(&mut self, name: &str, mode: u32, group: Option<u32>) -> Result<BoundSocket> {
        let path = self.path.join(name);
        let length = path.as_os_str().len();
        if length > SOCKET_PATH_MAX {
            return Err(CliError::failed(format!(
                "the socket path {} is {length} bytes long; the limit is {SOCKET_PATH_MAX} bytes",
                path.display()
            ))
            .hint("choose a shorter --socket-dir"));
        }

        match rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Socket => {
                // We hold the lock, so no live daemon owns this socket.
                rustix::fs::unlinkat(&self.dir, name, AtFlags::empty())
                    .map_err(|error| CliError::failed(format!("cannot remove the stale socket {}: {error}", path.display())))?;
                tracing::info!(path = %path.display(), "replaced a stale socket");
            }
            Ok(_) => {
                return Err(CliError::failed(format!("{} exists and is not a socket; leaving it alone", path.display()))
                    .hint("remove or rename it yourself, or choose another --socket-dir"))
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(error) => return Err(CliError::failed(format!("cannot check {}: {error}", path.display()))),
        }

        // Bind through the directory descriptor, so the socket lands in the
        // directory we checked even if a path component changed since.
        let bind_path = PathBuf::from(format!("/proc/self/fd/{}/{name}", std::os::fd::AsRawFd::as_raw_fd(&self.dir)));
        let old_umask = rustix::process::umask(Mode::from_raw_mode(0o077));
        let bound = UnixListener::bind(&bind_path);
        rustix::process::umask(old_umask);
        let listener = bound.map_err(|error| CliError::failed(format!("cannot listen on {}: {error}", path.display())))?;

        if let Some(gid) = group {
            rustix::fs::chownat(&self.dir, name, None, Some(rustix::fs::Gid::from_raw(gid)), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|error| CliError::failed(format!("cannot give {} to group {gid}: {error}", path.display())))?;
        }
        rustix::fs::chmodat(&self.dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
            .map_err(|error| CliError::failed(format!("cannot set the mode of {}: {error}", path.display())))?;

        let stat = rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|error| CliError::failed(format!("cannot stat {}: {error}", path.display())))?;
        self.created.push((name.to_owned(), stat.st_dev, stat.st_ino));
        Ok(BoundSocket { listener, path })
    }

    /// Removes the sockets this daemon created, and only those.
    pub fn remove_sockets(&mut self) {
        for (name, dev, ino) in self.created.drain(..) {
            match rustix::fs::statat(&self.dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if stat.st_dev == dev && stat.st_ino == ino => {
                    let _ = rustix::fs::unlinkat(&self.dir, name.as_str(), AtFlags::empty());
                }
                _ => tracing::warn!(socket = %name, "the socket was replaced by someone else; not removing it"),
            }
        }
    }
}

fn lock(dir: &OwnedFd, path: &Path) -> Result<File> {
    let fd = rustix::fs::openat(
        dir,
        LOCK_FILE,
        OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|error| CliError::failed(format!("cannot open the lock file in {}: {error}", path.display())))?;
    match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = std::fs::read_to_string(path.join(LOCK_FILE)).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
            return Err(CliError::failed(format!("a keyward daemon is already running on {}{who}", path.display()))
                .hint("stop it first, or use another --socket-dir"));
        }
        Err(error) => return Err(CliError::failed(format!("cannot lock {}: {error}", path.display()))),
    }
    let file = File::from(fd);
    let _ = file.set_len(0);
    let _ = std::io::Write::write_all(&mut &file, format!("{}\n", std::process::id()).as_bytes());
    let _ = file.as_fd();
    Ok(file)
}

fn check_owner_and_mode(path: &Path, uid: u32, mode: u32, daemon_uid: u32, is_ancestor: bool) -> Result<()> {
    if uid != 0 && uid != daemon_uid {
        return Err(CliError::failed(format!(
            "{} belongs to uid {uid}; the socket directory and its parents must belong to root or the daemon's user (uid {daemon_uid})",
            path.display()
        )));
    }
    let writable_by_others = mode & 0o022 != 0;
    let sticky_root = is_ancestor && uid == 0 && mode & 0o1000 != 0;
    if writable_by_others && !sticky_root {
        return Err(CliError::failed(format!(
            "{} is writable by others (mode {:o}); the socket directory and its parents must not be",
            path.display(),
            mode & 0o7777
        ))
        .hint(format!("chmod go-w {}", path.display())));
    }
    Ok(())
}

fn check_ancestors(path: &Path, daemon_uid: u32) -> Result<()> {
    for ancestor in path.ancestors().skip(1) {
        let metadata = std::fs::metadata(ancestor)
            .map_err(|error| CliError::failed(format!("cannot check {}: {error}", ancestor.display())))?;
        check_owner_and_mode(ancestor, metadata.uid(), metadata.permissions().mode(), daemon_uid, true)?;
    }
    Ok(())
}
