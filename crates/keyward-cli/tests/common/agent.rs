//! Raw ssh-agent protocol for the tests: an encoder of their own (so a bug
//! in the library's encoder cannot hide itself) and single requests to a
//! daemon's service socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const FAILURE: u8 = 5;
pub const REQUEST_IDENTITIES: u8 = 11;
pub const IDENTITIES_ANSWER: u8 = 12;
pub const SIGN_REQUEST: u8 = 13;
pub const SIGN_RESPONSE: u8 = 14;
pub const EXTENSION: u8 = 27;

/// Appends an SSH `string`: a big-endian u32 length, then the bytes.
pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Prefixes `body` with its length, as on the socket.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    put_string(&mut out, body);
    out
}

/// Encodes an SSH_AGENTC_SIGN_REQUEST body (no length prefix).
pub fn sign_request(blob: &[u8], data: &[u8], flags: u32) -> Vec<u8> {
    let mut body = vec![SIGN_REQUEST];
    put_string(&mut body, blob);
    put_string(&mut body, data);
    body.extend_from_slice(&flags.to_be_bytes());
    body
}

/// Encodes an SSH_AGENTC_EXTENSION body named `name` with `rest` after it.
pub fn extension(name: &str, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![EXTENSION];
    put_string(&mut body, name.as_bytes());
    body.extend_from_slice(rest);
    body
}

/// Encodes the `status@keyward` extension request.
pub fn status_request() -> Vec<u8> {
    extension("status@keyward", &[])
}

/// Reads one reply from `stream` and returns its body.
pub fn read_reply(stream: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// Sends `body` as one frame on `stream` and reads one reply body.
pub fn exchange(stream: &mut UnixStream, body: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(&frame(body))?;
    read_reply(stream)
}

/// Sends one request on a fresh connection, with `timeout` for reads and
/// writes. Returns `None` on any failure.
pub fn request(socket: &Path, body: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    exchange(&mut stream, body).ok()
}

/// Sends `bytes` as they are (length prefix included, so a test can send
/// a broken one) on a new connection and reads the reply body. Returns
/// `None` when the daemon closed the connection instead.
pub fn raw_request(socket: &Path, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream.write_all(bytes).unwrap();
    read_reply(&mut stream).ok()
}

/// Checks that the daemon lists its keys on a fresh connection.
pub fn serves(socket: &Path) -> bool {
    request(socket, &[REQUEST_IDENTITIES], Duration::from_secs(10)).is_some_and(|reply| reply.first() == Some(&IDENTITIES_ANSWER))
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

/// Checks that the daemon closes `stream` without a reply within `limit`.
/// A read that times out counts as not closed.
pub fn closed_by_peer(stream: &mut UnixStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}
