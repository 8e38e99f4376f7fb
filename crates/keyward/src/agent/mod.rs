//! The ssh-agent protocol (RFC 9987): frames, requests and replies.
//!
//! A frame is a `uint32` length followed by that many bytes; the first byte
//! is the message type. Keyward reads at most [`MAX_FRAME`] bytes of body.

pub mod extensions;
pub mod x25519;
pub mod session_bind;

use crate::wire::{Reader, WireError, Writer};

/// The largest frame body accepted; a longer length closes the connection.
pub const MAX_FRAME: usize = 256 * 1024;

pub const SSH_AGENT_FAILURE: u8 = 5;
pub const SSH_AGENT_SUCCESS: u8 = 6;
pub const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
pub const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
pub const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
pub const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
pub const SSH_AGENTC_ADD_IDENTITY: u8 = 17;
pub const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
pub const SSH_AGENTC_REMOVE_ALL_IDENTITIES: u8 = 19;
pub const SSH_AGENTC_ADD_SMARTCARD_KEY: u8 = 20;
pub const SSH_AGENTC_REMOVE_SMARTCARD_KEY: u8 = 21;
pub const SSH_AGENTC_LOCK: u8 = 22;
pub const SSH_AGENTC_UNLOCK: u8 = 23;
pub const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
pub const SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED: u8 = 26;
pub const SSH_AGENTC_EXTENSION: u8 = 27;
pub const SSH_AGENT_EXTENSION_FAILURE: u8 = 28;
pub const SSH_AGENT_EXTENSION_RESPONSE: u8 = 29;

/// A request from a client, borrowing from the frame it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    RequestIdentities,
    Sign { key_blob: &'a [u8], data: &'a [u8], flags: u32 },
    Extension { name: &'a [u8], body: &'a [u8] },
    /// A request that changes the agent's keys or locks it. Keys change
    /// only through the keystore and the admin socket, so these all fail.
    KeyManagement(u8),
    /// A message type this agent does not know.
    Unknown(u8),
}

impl<'a> Request<'a> {
    /// Parses a frame body. Trailing bytes after a known message are an
    /// error, so a message means exactly one thing.
    pub fn parse(body: &'a [u8]) -> Result<Request<'a>, WireError> {
        let mut reader = Reader::new(body);
        let message_type = reader.u8()?;
        let request = match message_type {
            SSH_AGENTC_REQUEST_IDENTITIES => Request::RequestIdentities,
            SSH_AGENTC_SIGN_REQUEST => {
                let key_blob = reader.string()?;
                let data = reader.string()?;
                let flags = reader.u32()?;
                Request::Sign { key_blob, data, flags }
            }
            SSH_AGENTC_EXTENSION => {
                let name = reader.string()?;
                // OpenSSH sends the extension's contents raw after the
                // name, not as a nested string.
                let body = reader.rest();
                Request::Extension { name, body }
            }
            SSH_AGENTC_ADD_IDENTITY
            | SSH_AGENTC_REMOVE_IDENTITY
            | SSH_AGENTC_REMOVE_ALL_IDENTITIES
            | SSH_AGENTC_ADD_SMARTCARD_KEY
            | SSH_AGENTC_REMOVE_SMARTCARD_KEY
            | SSH_AGENTC_LOCK
            | SSH_AGENTC_UNLOCK
            | SSH_AGENTC_ADD_ID_CONSTRAINED
            | SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED => return Ok(Request::KeyManagement(message_type)),
            other => return Ok(Request::Unknown(other)),
        };
        reader.finish()?;
        Ok(request)
    }
}

/// One entry of an identities answer.
pub struct Identity<'a> {
    pub key_blob: &'a [u8],
    pub comment: &'a str,
}

/// Encodes SSH_AGENT_FAILURE.
pub fn failure() -> Vec<u8> {
    vec![SSH_AGENT_FAILURE]
}

/// Encodes SSH_AGENT_SUCCESS.
pub fn success() -> Vec<u8> {
    vec![SSH_AGENT_SUCCESS]
}

/// Encodes SSH_AGENT_IDENTITIES_ANSWER.
pub fn identities_answer<'a>(identities: impl ExactSizeIterator<Item = Identity<'a>>) -> Vec<u8> {
    let mut body = vec![SSH_AGENT_IDENTITIES_ANSWER];
    body.put_u32(identities.len() as u32);
    for identity in identities {
        body.put_string(identity.key_blob);
        body.put_string(identity.comment.as_bytes());
    }
    body
}

/// Encodes SSH_AGENT_SIGN_RESPONSE around an SSH signature encoding.
pub fn sign_response(signature: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(signature.len() + 5);
    body.put_u8(SSH_AGENT_SIGN_RESPONSE);
    body.put_string(signature);
    body
}

/// Encodes a frame: the length prefix and the body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.put_string(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sign_request() {
        let mut body = vec![SSH_AGENTC_SIGN_REQUEST];
        body.put_string(b"key");
        body.put_string(b"data");
        body.put_u32(4);
        assert_eq!(Request::parse(&body).unwrap(), Request::Sign { key_blob: b"key", data: b"data", flags: 4 });
    }

    #[test]
    fn rejects_sign_request_with_trailing_bytes() {
        let mut body = vec![SSH_AGENTC_SIGN_REQUEST];
        body.put_string(b"key");
        body.put_string(b"data");
        body.put_u32(0);
        body.push(1);
        assert!(Request::parse(&body).is_err());
    }

    #[test]
    fn empty_body_is_an_error() {
        assert!(Request::parse(&[]).is_err());
    }

    #[test]
    fn key_management_and_unknown_are_recognised() {
        assert_eq!(Request::parse(&[SSH_AGENTC_LOCK, 1, 2]).unwrap(), Request::KeyManagement(SSH_AGENTC_LOCK));
        assert_eq!(Request::parse(&[200]).unwrap(), Request::Unknown(200));
    }

    #[test]
    fn extension_body_is_the_rest() {
        let mut body = vec![SSH_AGENTC_EXTENSION];
        body.put_string(b"query");
        body.extend_from_slice(b"raw");
        assert_eq!(Request::parse(&body).unwrap(), Request::Extension { name: b"query", body: b"raw" });
    }
}
