//! OpenSSH's `session-bind@openssh.com` extension (OpenSSH PROTOCOL.agent,
//! OpenSSH 8.9 and later).
//!
//! `ssh` sends it on each agent connection it opens, right after the key
//! exchange: the server's host key, the session identifier, the host key's
//! signature over that identifier, and whether the connection serves a
//! forwarded agent (`ssh -A`) rather than the client's own
//! authentication. The agent checks the signature, so a bind names a host
//! that really took part in that session.
//!
//! ```text
//! string  hostkey
//! string  session identifier
//! string  signature
//! bool    is_forwarding
//! ```

use crate::keys::verify::{self, VerifyError};
use crate::wire::{Reader, WireError};

/// The maximum session identifier length: SSH session identifiers are hash
/// outputs of at most 64 bytes (SHA-512).
const MAX_SESSION_ID: usize = 64;

/// A parsed `session-bind@openssh.com` request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionBind<'a> {
    pub host_key: &'a [u8],
    pub session_id: &'a [u8],
    pub signature: &'a [u8],
    pub is_forwarding: bool,
}

impl<'a> SessionBind<'a> {
    /// Parses the extension body (the bytes after the extension name).
    pub fn parse(body: &'a [u8]) -> Result<SessionBind<'a>, WireError> {
        let mut reader = Reader::new(body);
        let host_key = reader.string()?;
        let session_id = reader.string()?;
        let signature = reader.string()?;
        let is_forwarding = reader.bool()?;
        reader.finish()?;
        if session_id.is_empty() || session_id.len() > MAX_SESSION_ID {
            return Err(WireError("session identifier has an invalid length"));
        }
        Ok(SessionBind { host_key, session_id, signature, is_forwarding })
    }

    /// Checks the host key's signature over the session identifier.
    pub fn verify(&self) -> Result<(), VerifyError> {
        verify::verify(self.host_key, self.signature, self.session_id)
    }
}

/// The host a connection was bound to, kept for the connection's lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The bound host key's fingerprint (`SHA256:...`).
    pub host_key_fingerprint: String,
    /// The bind's `is_forwarding` flag: the connection serves a forwarded
    /// agent.
    pub forwarding: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Writer;

    fn body(session_id: &[u8], forwarding: bool) -> Vec<u8> {
        let mut body = Vec::new();
        body.put_string(b"hostkey");
        body.put_string(session_id);
        body.put_string(b"signature");
        body.put_bool(forwarding);
        body
    }

    #[test]
    fn parses_bind_body() {
        let data = body(&[1u8; 32], true);
        let bind = SessionBind::parse(&data).unwrap();
        assert_eq!(bind.host_key, b"hostkey");
        assert_eq!(bind.session_id, &[1u8; 32]);
        assert!(bind.is_forwarding);
    }

    #[test]
    fn rejects_trailing_bytes_and_long_session_id() {
        let mut data = body(&[1u8; 32], false);
        data.push(0);
        assert!(SessionBind::parse(&data).is_err());
        assert!(SessionBind::parse(&body(&[1u8; 65], false)).is_err());
        assert!(SessionBind::parse(&body(&[], false)).is_err());
        assert!(SessionBind::parse(&data[..10]).is_err());
    }
}
