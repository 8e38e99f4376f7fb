//! Peer credentials beyond what `SO_PEERCRED` gives.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Upper bound on supplementary groups (`NGROUPS_MAX` on Linux since 2.6.4).
const MAX_GROUPS: usize = 65536;

/// Returns the supplementary groups of the process at the other end of a
/// connected unix socket, as the kernel recorded them at `connect(2)` or
/// `socketpair(2)`, via `getsockopt(SO_PEERGROUPS)` (Linux 4.13 and later).
pub fn peer_groups(socket: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut capacity = 64;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; capacity];
        let mut len = (capacity * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is valid for `len` bytes, and the kernel writes at
        // most `len` bytes and stores the length it wrote (or needs) in `len`.
        let ret = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if ret == 0 {
            groups.truncate(len as usize / size_of::<libc::gid_t>());
            return Ok(groups);
        }

        let err = io::Error::last_os_error();
        // ERANGE: the buffer is too small and `len` now contains the size needed.
        let needed = len as usize / size_of::<libc::gid_t>();
        if err.raw_os_error() == Some(libc::ERANGE) && capacity < MAX_GROUPS {
            capacity = needed.clamp(capacity * 2, MAX_GROUPS);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn own_groups() -> Vec<u32> {
        let mut groups: Vec<u32> = rustix::process::getgroups()
            .unwrap()
            .into_iter()
            .map(|gid| gid.as_raw())
            .collect();
        groups.sort_unstable();
        groups
    }

    #[test]
    fn socketpair_peer_has_own_groups() {
        let (left, _right) = UnixStream::pair().unwrap();
        let mut groups = peer_groups(left.as_fd()).unwrap();
        groups.sort_unstable();
        assert_eq!(groups, own_groups());
    }

    #[test]
    fn peer_groups_reports_many_groups() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: setgroups needs root (CAP_SETGID)");
            return;
        }
        // 200 groups overflow the first 64-entry buffer, so the ERANGE retry runs.
        let expected: Vec<u32> = (40_000..40_200).collect();
        let for_thread = expected.clone();
        let groups = std::thread::spawn(move || {
            // The raw setgroups system call changes only this thread's
            // credentials, which socketpair(2) records as the peer's.
            let gids: Vec<_> = for_thread
                .iter()
                .map(|&g| rustix::process::Gid::from_raw(g))
                .collect();
            rustix::thread::set_thread_groups(&gids).unwrap();
            let (left, _right) = UnixStream::pair().unwrap();
            peer_groups(left.as_fd()).unwrap()
        })
        .join()
        .unwrap();

        let mut sorted = groups;
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn peer_groups_rejects_non_socket() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let err = peer_groups(file.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }
}
