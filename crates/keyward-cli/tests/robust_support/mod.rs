//! Helpers shared by the robustness tests: raw agent frames and small
//! probes of a running daemon.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Encodes an SSH `string`.
pub fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Prefixes `body` with its length, as on the socket.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

pub const REQUEST_IDENTITIES: &[u8] = &[11];
pub const IDENTITIES_ANSWER: u8 = 12;

pub fn status_request() -> Vec<u8> {
    let mut body = vec![27];
    body.extend(string(b"status@keyward"));
    body
}

/// Sends `body` on `stream` and reads one reply body.
pub fn exchange(stream: &mut UnixStream, body: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(&frame(body))?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let mut reply = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

/// Sends one request on a fresh connection, with a timeout. Returns `None` on any failure.
pub fn request(socket: &Path, body: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    exchange(&mut stream, body).ok()
}

/// Checks that the daemon lists its keys on a fresh connection.
pub fn serves(socket: &Path) -> bool {
    request(socket, REQUEST_IDENTITIES, Duration::from_secs(10)).is_some_and(|reply| reply.first() == Some(&IDENTITIES_ANSWER))
}

/// Returns the daemon's state from `status@keyward`: "sealed" or "unsealed".
pub fn state(socket: &Path) -> Option<&'static str> {
    let reply = request(socket, &status_request(), Duration::from_secs(10))?;
    match reply.last() {
        Some(0) => Some("sealed"),
        Some(1) => Some("unsealed"),
        _ => None,
    }
}

/// Polls `condition` every 20 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small xorshift generator: reproducible random delays without a
/// dependency. The seed is printed by the caller so a failure can be
/// replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn from_time() -> Rng {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng::new(seed)
    }

    pub fn seed(&self) -> u64 {
        self.0
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Returns a number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Runs `work` on a new thread whose credentials are `uid` and `gid` with no
/// supplementary groups. Linux keeps credentials per thread underneath the
/// C library, so connections made on that thread carry `uid` as their peer
/// credentials while the rest of the test stays root.
pub fn as_user<T: Send + 'static>(uid: u32, gid: u32, work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        rustix::thread::set_thread_groups(&[]).expect("drop supplementary groups (needs root)");
        rustix::thread::set_thread_res_gid(
            rustix::process::Gid::from_raw(gid),
            rustix::process::Gid::from_raw(gid),
            rustix::process::Gid::from_raw(gid),
        )
        .expect("set the thread's gid (needs root)");
        rustix::thread::set_thread_res_uid(
            rustix::process::Uid::from_raw(uid),
            rustix::process::Uid::from_raw(uid),
            rustix::process::Uid::from_raw(uid),
        )
        .expect("set the thread's uid (needs root)");
        work()
    })
    .join()
    .expect("the thread running as another uid panicked")
}

/// Checks that the daemon closes `stream` without a reply within `limit`.
pub fn closed_by_peer(stream: &mut UnixStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}
