//! File descriptors handed to the process by number (`--passphrase-fd N`).

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

/// Takes ownership of the open file descriptor `fd` as a `File`.
///
/// Fails with `EBADF` when `fd` is not open, so a wrong number is an error
/// rather than undefined behaviour. The caller must not use `fd` elsewhere
/// afterwards; the `File` closes it.
pub fn take_fd(fd: RawFd) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only queries the descriptor table; it has no effect
    // on memory and fails cleanly with EBADF for a closed descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and the caller hands
    // over ownership of it, so no other owner will close it.
    Ok(unsafe { File::from_raw_fd(fd) })
}
