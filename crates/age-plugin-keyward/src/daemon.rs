//! The daemon calls the plugin makes, behind a trait so the unwrapping
//! logic can be tested without a socket.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use keyward::agent::extensions::FailureCode;
use keyward::client::{AgentClient, ClientError, Unwrapped};
use keyward::x25519::{FILE_KEY_LEN, KEY_LEN, STANZA_BODY_LEN};
use zeroize::Zeroizing;

/// A failure to unwrap a stanza through the daemon.
#[derive(Debug)]
pub enum DaemonError {
    /// Nothing accepts connections at the socket.
    Unreachable { socket: PathBuf },
    /// The daemon runs but is sealed.
    Sealed { socket: PathBuf },
    /// No such key, or this caller may not use it to decrypt; the daemon
    /// does not say which.
    Refused,
    /// The daemon rejected the request as invalid (a low-order share).
    InvalidRequest,
    /// Talking to the daemon failed in another way.
    Failed(String),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Unreachable { socket } => write!(
                f,
                "no Keyward daemon at {}\nhint: start it with `keyward daemon`, or set KEYWARD_SOCKET_DIR to the directory of its agent.sock",
                socket.display()
            ),
            DaemonError::Sealed { socket } => write!(
                f,
                "the Keyward daemon at {} is sealed\nhint: run `keyward unseal`",
                socket.display()
            ),
            DaemonError::Refused => f.write_str("refused by policy"),
            DaemonError::InvalidRequest => f.write_str("the Keyward daemon rejected the stanza as invalid"),
            DaemonError::Failed(message) => f.write_str(message),
        }
    }
}

/// Unwraps age X25519 stanzas with daemon-held keys.
pub trait Daemon {
    /// Unwraps one stanza with the key whose raw fingerprint is given.
    /// `Ok(None)` means the stanza was made for another key.
    fn unwrap(
        &mut self,
        fingerprint: &[u8; 32],
        ephemeral_share: &[u8; KEY_LEN],
        stanza_body: &[u8; STANZA_BODY_LEN],
    ) -> Result<Option<Zeroizing<[u8; FILE_KEY_LEN]>>, DaemonError>;
}

/// The daemon behind a service socket, connected on first use.
pub struct SocketDaemon {
    socket: PathBuf,
    client: Option<AgentClient>,
}

impl SocketDaemon {
    pub fn new(socket: &Path) -> Self {
        SocketDaemon { socket: socket.to_owned(), client: None }
    }

    fn client(&mut self) -> Result<&mut AgentClient, DaemonError> {
        if self.client.is_none() {
            let client = AgentClient::connect(&self.socket).map_err(|error| self.client_error(error))?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn client_error(&self, error: ClientError) -> DaemonError {
        match error {
            ClientError::NoDaemon { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => DaemonError::Failed(format!(
                "this user may not connect to the Keyward daemon at {}: permission denied\nhint: the daemon's operator can admit a group with socket_group in keyward.toml",
                self.socket.display()
            )),
            ClientError::NoDaemon { .. } => DaemonError::Unreachable { socket: self.socket.clone() },
            other => DaemonError::Failed(format!("talking to the Keyward daemon at {} failed: {other}", self.socket.display())),
        }
    }
}

impl Daemon for SocketDaemon {
    fn unwrap(
        &mut self,
        fingerprint: &[u8; 32],
        ephemeral_share: &[u8; KEY_LEN],
        stanza_body: &[u8; STANZA_BODY_LEN],
    ) -> Result<Option<Zeroizing<[u8; FILE_KEY_LEN]>>, DaemonError> {
        let reply = self.client()?.x25519_unwrap(fingerprint, ephemeral_share, stanza_body);
        match reply {
            Ok(Ok(Unwrapped::FileKey(file_key))) => Ok(Some(file_key)),
            Ok(Ok(Unwrapped::NotForThisKey)) => Ok(None),
            Ok(Err(Some(FailureCode::Sealed))) => Err(DaemonError::Sealed { socket: self.socket.clone() }),
            Ok(Err(Some(FailureCode::Refused))) => Err(DaemonError::Refused),
            Ok(Err(Some(FailureCode::InvalidRequest))) => Err(DaemonError::InvalidRequest),
            Ok(Err(None)) => Err(DaemonError::Failed(format!(
                "the daemon at {} does not support x25519-unwrap@keyward\nhint: upgrade Keyward",
                self.socket.display()
            ))),
            Err(error) => {
                // The connection is in an unknown state; reconnect next time.
                self.client = None;
                Err(self.client_error(error))
            }
        }
    }
}
