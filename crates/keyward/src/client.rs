//! A blocking client for the daemon's service and admin sockets, for the
//! CLI, the age plugin and programs that link Keyward directly.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::admin::{AdminReply, AdminRequest, MAX_ADMIN_FRAME};
use crate::agent::extensions::{self, FailureCode, ListedKey, State};
use crate::agent::{self, MAX_FRAME};
use crate::wire::{Reader, Writer};

mod x25519;

pub use x25519::Unwrapped;

/// A failure to talk to the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("no Keyward daemon answers at {}", path.display())]
    NoDaemon { path: PathBuf, source: io::Error },
    #[error("the process serving {} runs as uid {uid}, which is neither root, this user nor the keystore's owner; not sending it anything", path.display())]
    UntrustedServer { path: PathBuf, uid: u32 },
    #[error("talking to the daemon failed: {0}")]
    Io(#[from] io::Error),
    #[error("the daemon sent an invalid reply: {0}")]
    Protocol(String),
}

fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path).map_err(|source| ClientError::NoDaemon { path: path.to_owned(), source })
}

fn write_frame(stream: &mut UnixStream, body: &[u8]) -> Result<(), ClientError> {
    let mut frame = Zeroizing::new(Vec::with_capacity(body.len() + 4));
    frame.put_string(body);
    stream.write_all(&frame)?;
    Ok(())
}

fn read_frame(stream: &mut UnixStream, max: usize) -> Result<Vec<u8>, ClientError> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = u32::from_be_bytes(length) as usize;
    if length > max {
        return Err(ClientError::Protocol(format!("reply of {length} bytes exceeds the {max}-byte limit")));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// A connection to the service socket (ssh-agent protocol).
pub struct AgentClient {
    stream: UnixStream,
}

impl AgentClient {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        Ok(AgentClient { stream: connect(path)? })
    }

    /// Sends one request body and returns the reply body.
    pub fn request(&mut self, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        write_frame(&mut self.stream, body)?;
        read_frame(&mut self.stream, MAX_FRAME)
    }

    /// Lists the SSH keys this caller may sign with: (public-key blob,
    /// comment).
    pub fn identities(&mut self) -> Result<Vec<(Vec<u8>, String)>, ClientError> {
        let reply = self.request(&[agent::SSH_AGENTC_REQUEST_IDENTITIES])?;
        let protocol = |_| ClientError::Protocol("malformed identities answer".into());
        let mut reader = Reader::new(&reply);
        if reader.u8().map_err(protocol)? != agent::SSH_AGENT_IDENTITIES_ANSWER {
            return Err(ClientError::Protocol("expected an identities answer".into()));
        }
        let count = reader.u32().map_err(protocol)?;
        let mut identities = Vec::new();
        for _ in 0..count {
            let blob = reader.string().map_err(protocol)?.to_vec();
            let comment = String::from_utf8_lossy(reader.string().map_err(protocol)?).into_owned();
            identities.push((blob, comment));
        }
        Ok(identities)
    }

    /// Asks for a signature. `Ok(None)` is the agent's FAILURE, which does
    /// not say why; [`AgentClient::status`] tells a sealed daemon apart.
    pub fn sign(&mut self, key_blob: &[u8], data: &[u8], flags: u32) -> Result<Option<Vec<u8>>, ClientError> {
        let mut body = vec![agent::SSH_AGENTC_SIGN_REQUEST];
        body.put_string(key_blob);
        body.put_string(data);
        body.put_u32(flags);
        let reply = self.request(&body)?;
        let mut reader = Reader::new(&reply);
        match reader.u8() {
            Ok(agent::SSH_AGENT_SIGN_RESPONSE) => {
                let signature = reader.string().map_err(|_| ClientError::Protocol("malformed sign response".into()))?;
                Ok(Some(signature.to_vec()))
            }
            Ok(agent::SSH_AGENT_FAILURE) => Ok(None),
            _ => Err(ClientError::Protocol("unexpected reply to a sign request".into())),
        }
    }

    /// Sends an extension request; returns its reply body, or the failure
    /// code (`None` when the daemon sent a plain FAILURE).
    pub fn extension(&mut self, name: &str, body: &[u8]) -> Result<Result<Vec<u8>, Option<FailureCode>>, ClientError> {
        let mut request = vec![agent::SSH_AGENTC_EXTENSION];
        request.put_string(name.as_bytes());
        request.extend_from_slice(body);
        let reply = self.request(&request)?;
        match extensions::parse_reply(name, &reply) {
            Ok(Ok(body)) => Ok(Ok(body.to_vec())),
            Ok(Err(code)) => Ok(Err(code)),
            Err(error) => Err(ClientError::Protocol(error.to_string())),
        }
    }

    /// Returns whether the daemon is sealed. Every client may ask.
    pub fn status(&mut self) -> Result<State, ClientError> {
        match self.extension(extensions::STATUS, &[])? {
            Ok(body) => extensions::parse_status_body(&body).map_err(|error| ClientError::Protocol(error.to_string())),
            Err(_) => Err(ClientError::Protocol("status@keyward was refused".into())),
        }
    }

    /// Decrypts the RSA block of a Mixmaster packet's first header with the
    /// key whose Mixmaster key ID is `key_id`, to exactly `out_len` bytes
    /// (24 or 216). A block with bad padding is not an error: it gives
    /// pseudo-random bytes, which the packet's own checks then reject.
    /// `Ok(Err(code))` is the daemon's refusal.
    pub fn mixmaster_rsa(
        &mut self,
        key_id: &[u8; 16],
        rsa_block: &[u8],
        out_len: u32,
    ) -> Result<Result<Zeroizing<Vec<u8>>, Option<FailureCode>>, ClientError> {
        let request = crate::mixmaster::RsaRequest { key_id: *key_id, rsa_block: rsa_block.to_vec(), out_len };
        match self.extension(crate::mixmaster::EXTENSION, &request.encode())? {
            Ok(body) => {
                let body = Zeroizing::new(body);
                crate::mixmaster::parse_reply_body(&body, out_len)
                    .map(Ok)
                    .map_err(|error| ClientError::Protocol(error.to_string()))
            }
            Err(code) => Ok(Err(code)),
        }
    }

    /// Lists the keys this caller may use, with the operations it may use them for.
    pub fn list(&mut self) -> Result<Vec<ListedKey>, ClientError> {
        match self.extension(extensions::LIST, &[])? {
            Ok(body) => extensions::parse_list_body(&body).map_err(|error| ClientError::Protocol(error.to_string())),
            Err(_) => Err(ClientError::Protocol("list@keyward was refused".into())),
        }
    }
}

/// A connection to the admin socket.
pub struct AdminClient {
    stream: UnixStream,
}

impl AdminClient {
    /// Connects and checks that the process serving the socket runs as one
    /// of `trusted_uids` before anything (a passphrase) is sent to it.
    pub fn connect(path: &Path, trusted_uids: &[u32]) -> Result<Self, ClientError> {
        let stream = connect(path)?;
        let credentials = rustix::net::sockopt::socket_peercred(&stream).map_err(io::Error::from)?;
        let uid = credentials.uid.as_raw();
        if !trusted_uids.contains(&uid) {
            return Err(ClientError::UntrustedServer { path: path.to_owned(), uid });
        }
        Ok(AdminClient { stream })
    }

    pub fn request(&mut self, request: &AdminRequest) -> Result<AdminReply, ClientError> {
        write_frame(&mut self.stream, &request.encode())?;
        let reply = read_frame(&mut self.stream, MAX_ADMIN_FRAME)?;
        AdminReply::parse(&reply).map_err(|error| ClientError::Protocol(error.to_string()))
    }
}
