//! Connections on the service and admin sockets.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use keyward::admin::{AdminReply, AdminRequest, MAX_ADMIN_FRAME};
use keyward::agent::{self, MAX_FRAME};
use keyward::policy::Peer;
use keyward::secret::Passphrase;
use keyward::service::{AuditEvent, AuditSink, Connection, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use zeroize::Zeroizing;

use super::state::{DaemonState, Failure};
use crate::context;

/// How long the rest of a frame may take once its first byte arrived. A
/// client that starts a frame and stalls loses its connection instead of
/// holding it forever.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// Reads the credentials the kernel recorded at `connect(2)`, before any
/// byte of the request is read.
pub fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let credentials = stream.peer_cred()?;
    let groups = keyward_protect::peer::peer_groups(stream.as_fd()).unwrap_or_default();
    let pid = credentials.pid();
    let exe = pid.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok()).map(|path| path.display().to_string());
    Ok(Peer { uid: credentials.uid(), gid: credentials.gid(), groups, pid, exe })
}

enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// Too long, truncated, stalled or failed: close the connection.
    Broken(&'static str),
}

async fn read_frame(stream: &mut UnixStream, max: usize) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut first = [0u8; 1];
    match stream.read(&mut first).await {
        Ok(0) => return Err(FrameError::Closed),
        Ok(_) => {}
        Err(_) => return Err(FrameError::Broken("read failed")),
    }
    let rest = async {
        let mut length = [0u8; 3];
        stream.read_exact(&mut length).await.map_err(|_| FrameError::Broken("truncated frame"))?;
        let length = u32::from_be_bytes([first[0], length[0], length[1], length[2]]) as usize;
        if length > max {
            return Err(FrameError::Broken("frame too long"));
        }
        let mut body = Zeroizing::new(vec![0u8; length]);
        stream.read_exact(&mut body).await.map_err(|_| FrameError::Broken("truncated frame"))?;
        Ok(body)
    };
    match tokio::time::timeout(FRAME_DEADLINE, rest).await {
        Ok(result) => result,
        Err(_) => Err(FrameError::Broken("frame deadline passed")),
    }
}

async fn write_frame(stream: &mut UnixStream, body: &[u8]) -> std::io::Result<()> {
    // Replies can carry age file keys and X25519 shared secrets, so the
    // framed copy is wiped as well.
    let frame = Zeroizing::new(agent::frame(body));
    stream.write_all(&frame).await
}

/// Serves one service-socket connection until the client leaves.
pub async fn serve_agent(mut stream: UnixStream, state: Arc<DaemonState>) {
    let peer = match peer_of(&stream) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(%error, "cannot read the peer credentials; closing the connection");
            return;
        }
    };
    let mut connection = Connection::new(peer);
    loop {
        let body = match read_frame(&mut stream, MAX_FRAME).await {
            Ok(body) => body,
            Err(FrameError::Closed) => return,
            Err(FrameError::Broken(why)) => {
                let mut event = AuditEvent::new("connection-closed").peer(&connection.peer);
                event.reason = Some(why);
                state.audit.record(&event);
                return;
            }
        };
        // An empty frame has no message type; it gets FAILURE like any
        // malformed request.
        let reply = state.service.handle(&mut connection, &body, context::now());
        let reply = Zeroizing::new(match reply {
            Reply::Ready(body) => body,
            Reply::Work(work) => match tokio::task::spawn_blocking(move || work.run()).await {
                Ok(body) => body,
                Err(_) => agent::failure(),
            },
        });
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// Serves one admin-socket connection.
pub async fn serve_admin(mut stream: UnixStream, state: Arc<DaemonState>) {
    let peer = match peer_of(&stream) {
        Ok(peer) => peer,
        Err(_) => return,
    };
    if !state.service.policy().is_admin(&peer) {
        let mut event = AuditEvent::new("refused").peer(&peer);
        event.operation = Some("admin");
        event.reason = Some("not-an-admin");
        state.audit.record(&event);
        let reply = AdminReply::Error { code: 5, message: "not allowed: this user is not an admin of the daemon".into() };
        let _ = write_frame(&mut stream, &reply.encode()).await;
        return;
    }
    loop {
        let body = match read_frame(&mut stream, MAX_ADMIN_FRAME).await {
            Ok(body) => body,
            Err(_) => return,
        };
        let reply = match AdminRequest::parse(&body) {
            Ok(request) => handle_admin(request, &state, &peer).await,
            Err(error) => AdminReply::Error { code: 1, message: format!("malformed admin request: {error}") },
        };
        drop(body);
        if write_frame(&mut stream, &reply.encode()).await.is_err() {
            return;
        }
    }
}

fn reply_of(result: Result<String, Failure>) -> AdminReply {
    match result {
        Ok(text) => AdminReply::Ok(text),
        Err(failure) => AdminReply::Error { code: failure.code, message: failure.message },
    }
}

fn passphrase_of(bytes: &[u8]) -> Result<Passphrase, Failure> {
    match Passphrase::from_utf8(bytes) {
        Some(Ok(passphrase)) => Ok(passphrase),
        Some(Err(error)) => Err(Failure::failed(error.to_string())),
        None => Err(Failure::failed("the passphrase is not valid UTF-8")),
    }
}

/// Runs blocking work (KDF, key generation, file writes) off the runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| Err(Failure::failed("the operation failed unexpectedly")))
}

async fn handle_admin(request: AdminRequest, state: &Arc<DaemonState>, peer: &Peer) -> AdminReply {
    let mut event = AuditEvent::new("admin").peer(peer);
    let name = format!("{request:?}").to_lowercase();
    event.operation = Some(&name);
    state.audit.record(&event);

    let state = Arc::clone(state);
    match request {
        AdminRequest::Status => {
            AdminReply::Ok(super::status::document(&state, super::started()).to_string())
        }
        AdminRequest::Unseal { passphrase } => {
            // Failed attempts slow further ones (DaemonState::unseal waits
            // on a blocking thread), on the admin socket only.
            reply_of(
                blocking(move || {
                    let passphrase = passphrase_of(&passphrase)?;
                    state.unseal(&passphrase)
                })
                .await
                .map(|count| format!("unsealed: {count} keys")),
            )
        }
        AdminRequest::Seal => {
            reply_of(blocking(move || {
                state.seal("requested");
                Ok("sealed".to_owned())
            })
            .await)
        }
        AdminRequest::Reload => reply_of(blocking(move || state.reload().map(|()| "configuration reloaded".to_owned())).await),
        AdminRequest::Keygen { key_type, name, purpose, comment, not_before, not_after } => reply_of(
            blocking(move || state.keygen(&key_type, &name, &purpose, &comment, not_before, not_after)).await,
        ),
        AdminRequest::Remove { name } => reply_of(blocking(move || state.remove(&name).map(|()| String::new())).await),
        AdminRequest::Passwd { old, new } => reply_of(
            blocking(move || {
                let old = passphrase_of(&old)?;
                let new = passphrase_of(&new)?;
                state.passwd(&old, &new).map(|()| String::new())
            })
            .await,
        ),
        AdminRequest::Import { keys } => reply_of(blocking(move || state.import(keys).map(|()| String::new())).await),
    }
}
