//! Client calls for the X25519 extensions.
//!
//! Replies carry file keys and shared secrets, so every buffer that holds
//! one is wiped when dropped.

use zeroize::Zeroizing;

use super::{AgentClient, ClientError};
use crate::agent::extensions::{self, FailureCode};
use crate::agent::x25519::{self as wire, AgreeRequest, UnwrapRequest};
use crate::agent::SSH_AGENTC_EXTENSION;
use crate::wire::Writer;
use crate::x25519::{FILE_KEY_LEN, KEY_LEN, STANZA_BODY_LEN};

/// What the daemon did with an unwrap request it served.
pub enum Unwrapped {
    /// The stanza decrypted; this is the age file key.
    FileKey(Zeroizing<[u8; FILE_KEY_LEN]>),
    /// The stanza does not decrypt with this key: it was made for another.
    NotForThisKey,
}

impl AgentClient {
    /// Asks the daemon to unwrap one age X25519 stanza with the key whose
    /// raw fingerprint is `fingerprint`. `Ok(Err(code))` is a refusal:
    /// sealed, refused (no such key or not allowed), or invalid request
    /// (a low-order share); `None` when the daemon sent a plain FAILURE.
    pub fn x25519_unwrap(
        &mut self,
        fingerprint: &[u8; 32],
        ephemeral_share: &[u8; KEY_LEN],
        stanza_body: &[u8; STANZA_BODY_LEN],
    ) -> Result<Result<Unwrapped, Option<FailureCode>>, ClientError> {
        let request = UnwrapRequest { fingerprint: *fingerprint, ephemeral_share: *ephemeral_share, stanza_body: *stanza_body };
        let reply = self.secret_extension(wire::UNWRAP, &request.encode())?;
        let body = match extensions::parse_reply(wire::UNWRAP, &reply) {
            Ok(Ok(body)) => body,
            Ok(Err(code)) => return Ok(Err(code)),
            Err(error) => return Err(ClientError::Protocol(error.to_string())),
        };
        match wire::parse_unwrap_reply(body) {
            Ok(Some(file_key)) => Ok(Ok(Unwrapped::FileKey(file_key))),
            Ok(None) => Ok(Ok(Unwrapped::NotForThisKey)),
            Err(error) => Err(ClientError::Protocol(error.to_string())),
        }
    }

    /// Asks the daemon for X25519(key, peer) for each peer (1 to 4096), in
    /// order. A `None` result is a peer whose result was all zeros (a
    /// low-order point), rejected alone.
    #[allow(clippy::type_complexity)]
    pub fn x25519_agree(
        &mut self,
        fingerprint: &[u8; 32],
        peers: &[[u8; KEY_LEN]],
    ) -> Result<Result<Vec<Option<Zeroizing<[u8; KEY_LEN]>>>, Option<FailureCode>>, ClientError> {
        if peers.is_empty() || peers.len() > wire::MAX_AGREE_PEERS {
            return Err(ClientError::Protocol(format!(
                "an agree request takes 1 to {} peers, not {}",
                wire::MAX_AGREE_PEERS,
                peers.len()
            )));
        }
        let request = AgreeRequest { fingerprint: *fingerprint, peers: peers.to_vec() };
        let reply = self.secret_extension(wire::AGREE, &request.encode())?;
        let body = match extensions::parse_reply(wire::AGREE, &reply) {
            Ok(Ok(body)) => body,
            Ok(Err(code)) => return Ok(Err(code)),
            Err(error) => return Err(ClientError::Protocol(error.to_string())),
        };
        wire::parse_agree_reply(body, peers.len()).map(Ok).map_err(|error| ClientError::Protocol(error.to_string()))
    }

    /// Sends an extension request whose reply holds secrets; the whole
    /// reply frame is wiped when dropped.
    fn secret_extension(&mut self, name: &str, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut request = Vec::with_capacity(body.len() + name.len() + 5);
        request.push(SSH_AGENTC_EXTENSION);
        request.put_string(name.as_bytes());
        request.extend_from_slice(body);
        Ok(Zeroizing::new(self.request(&request)?))
    }
}
