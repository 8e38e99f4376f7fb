//! `keyward daemon`: start-up, detaching, the accept loops and signals.

mod audit;
mod connection;
mod limits;
mod sleep;
mod sockets;
mod state;
mod status;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use keyward::places::{ADMIN_SOCKET, AGENT_SOCKET};
use keyward::service::{AuditEvent, AuditSink, Service};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::DaemonArgs;
use crate::context::{self, Context};
use crate::error::{CliError, Result};
use crate::passphrase;
use state::DaemonState;

static STARTED: OnceLock<Instant> = OnceLock::new();

/// When the daemon started, for `uptime_s`.
pub fn started() -> Instant {
    *STARTED.get_or_init(Instant::now)
}

/// Test-only: idle sealing counted in seconds instead of minutes.
const TEST_IDLE_SECONDS: &str = "KEYWARD_TEST_IDLE_SECONDS";

pub fn run(context: &Context, args: DaemonArgs) -> Result<()> {
    // No core dumps and no same-uid ptrace before any secret is read, in
    // every mode.
    keyward_protect::process::harden_process().map_err(|error| CliError::failed(format!("cannot harden the process: {error}")))?;

    if !args.foreground && args.ready_fd.is_none() {
        return detach(context, &args);
    }
    started();
    init_logging();

    let keystore_dir = context.keystore_dir()?;
    let socket_dir = context.daemon_socket_dir()?;
    let config_file = context.config_file(&keystore_dir);
    let daemon_uid = rustix::process::getuid().as_raw();

    // Keep every page of the daemon, the crypto libraries' working copies
    // included, out of swap; and place secrets in the protected arena.
    if let Err(error) = keyward_protect::lock_all_memory() {
        tracing::warn!(%error, "cannot lock the daemon's memory (mlockall); key material in the crypto libraries' heaps could reach swap");
    }
    let memory = init_memory(keyward_protect::MemoryPolicy { allow_insecure: args.allow_insecure_memory });
    match &memory {
        Ok(mode) => tracing::info!(memory = mode.as_str(), "secret memory ready"),
        Err(error) => tracing::error!(%error, "no protected memory: unsealing is refused"),
    }

    let (config, policy) = state::load_config(config_file.as_ref(), daemon_uid).map_err(CliError::failed)?;
    let public = state::public_view(&keystore_dir).map_err(|error| {
        CliError::failed(format!("cannot read the keystore in {}: {error}", keystore_dir.display()))
            .hint("create one with `keyward init`, or point --keystore at it")
    })?;
    let audit = Arc::new(
        audit::Audit::new(&config.daemon.audit_log, config.daemon.audit, config.daemon.audit_fail_closed)
            .map_err(|error| CliError::failed(format!("cannot open the audit log: {error}")))?,
    );

    let socket_group = match &config.daemon.socket_group {
        None => None,
        Some(keyward::config::Principal::Id(gid)) => Some(*gid),
        Some(keyward::config::Principal::Name(name)) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|group| group.gid.as_raw())
                .ok_or_else(|| CliError::failed(format!("socket_group: no group named {name:?}")))?,
        ),
    };
    let mut dir = sockets::SocketDir::open(&socket_dir, daemon_uid)?;
    let agent_mode = if socket_group.is_some() { 0o660 } else { 0o600 };
    // Admins named in the configuration may be in any group, so their
    // access is checked by peer credentials alone; otherwise the mode
    // admits only root and the daemon's user.
    let admin_mode = if config.daemon.admins.is_empty() { 0o600 } else { 0o666 };
    // A passphrase at start: from the fd, or from the terminal when one is
    // attached. Without either the daemon starts sealed. It is read before
    // the sockets exist: clients meanwhile find no daemon rather than a
    // silent one, and a failed or interrupted prompt leaves no socket.
    let start_passphrase = match args.passphrase.passphrase_fd {
        Some(fd) => Some(passphrase::keystore(Some(fd), "")?),
        None if args.ready_fd.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            Some(passphrase::keystore(None, "Keystore passphrase (to unseal now): ")?)
        }
        None => None,
    };
    // The admin socket first, because a client that sees the service socket
    // appear may send an admin request at once (`keyward unseal` after start).
    let admin_socket = dir.bind(ADMIN_SOCKET, admin_mode, None)?;
    let agent_socket = dir.bind(AGENT_SOCKET, agent_mode, socket_group)?;

    for rule in &config.keys {
        if !public.iter().any(|key| key.meta.name == rule.name) {
            tracing::warn!(key = %rule.name, "the configuration has a rule for a key that does not exist");
        }
    }

    raise_file_limit(config.daemon.max_connections);
    let service = Service::new(policy, public, audit.clone());
    let state = Arc::new(DaemonState::new(
        service,
        audit.clone(),
        keystore_dir.clone(),
        dir.path.clone(),
        config_file,
        daemon_uid,
        config,
        memory.err().map(|error| error.to_string()),
    ));
    audit.record(&AuditEvent::new("started"));
    tracing::info!(socket = %agent_socket.path.display(), admin = %admin_socket.path.display(), keystore = %keystore_dir.display(), "serving");

    if let Some(passphrase) = start_passphrase {
        if let Err(failure) = state.unseal(&passphrase) {
            let error = CliError::failed(format!("cannot unseal: {}", failure.message));
            report_ready(args.ready_fd, Err(&error.to_string()));
            dir.remove_sockets();
            return Err(error);
        }
    }
    report_ready(args.ready_fd, Ok(state.service.state().as_str()));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::failed(format!("cannot start the runtime: {error}")))?;
    let outcome = runtime.block_on(serve(state.clone(), agent_socket.listener, admin_socket.listener));
    // Stop serving before sealing: connection tasks end at their next
    // await, and work on the blocking pool gets a moment to finish, so no
    // request is refused as sealed after the daemon recorded its stop.
    runtime.shutdown_timeout(Duration::from_secs(2));
    state.seal("stopping");
    dir.remove_sockets();
    audit.record(&AuditEvent::new("stopped"));
    tracing::info!("stopped");
    outcome
}

/// Sets up the secret arena, with the backing a test may force.
fn init_memory(policy: keyward_protect::MemoryPolicy) -> std::result::Result<keyward_protect::MemoryMode, keyward_protect::MemoryError> {
    match context::test_memory() {
        None => keyward_protect::init_memory(policy),
        Some(context::TestMemory::Mlock) => {
            tracing::warn!("test-only KEYWARD_TEST_MEMORY=mlock: not trying memfd_secret");
            keyward_protect::memory::init_memory_without_memfd_secret(policy)
        }
        Some(context::TestMemory::None) => {
            tracing::warn!("test-only KEYWARD_TEST_MEMORY=none: no secret arena");
            if policy.allow_insecure {
                Ok(keyward_protect::MemoryMode::None)
            } else {
                Err(keyward_protect::MemoryError::Unavailable(
                    "memfd_secret and mlock not tried (test-only KEYWARD_TEST_MEMORY=none). \
                     Run with --allow-insecure-memory to keep secrets in ordinary memory that can reach swap"
                        .to_owned(),
                ))
            }
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

async fn serve(state: Arc<DaemonState>, agent: std::os::unix::net::UnixListener, admin: std::os::unix::net::UnixListener) -> Result<()> {
    let listen = |listener: std::os::unix::net::UnixListener| -> Result<UnixListener> {
        listener.set_nonblocking(true).map_err(|error| CliError::failed(error.to_string()))?;
        UnixListener::from_std(listener).map_err(|error| CliError::failed(error.to_string()))
    };
    let agent = listen(agent)?;
    let admin = listen(admin)?;
    let signal_error = |error: std::io::Error| CliError::failed(format!("cannot install signal handlers: {error}"));
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let mut user1 = signal(SignalKind::user_defined1()).map_err(signal_error)?;
    let mut idle_check = tokio::time::interval(Duration::from_secs(1));
    let agent_counts = Arc::new(limits::ConnectionCounts::default());
    let admin_counts = Arc::new(limits::ConnectionCounts::default());
    tokio::spawn(sleep::watch(state.clone()));

    loop {
        tokio::select! {
            accepted = agent.accept() => match accepted {
                Ok((stream, _)) => {
                    let (max_total, max_per_uid) = connection_caps(&state);
                    if let Some(slot) = admit(&state, &agent_counts, &stream, max_total, max_per_uid, "service") {
                        let state = state.clone();
                        tokio::spawn(async move {
                            let _slot = slot;
                            connection::serve_agent(stream, state).await;
                        });
                    }
                }
                Err(error) => accept_failed(error).await,
            },
            accepted = admin.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(slot) = admit(&state, &admin_counts, &stream, ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS, "admin") {
                        let state = state.clone();
                        tokio::spawn(async move {
                            let _slot = slot;
                            connection::serve_admin(stream, state).await;
                        });
                    }
                }
                Err(error) => accept_failed(error).await,
            },
            _ = terminate.recv() => { tracing::info!("SIGTERM: sealing and stopping"); return Ok(()); }
            _ = interrupt.recv() => { tracing::info!("SIGINT: sealing and stopping"); return Ok(()); }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || state.reload()).await;
            }
            _ = user1.recv() => {
                tracing::info!("SIGUSR1: sealing");
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || state.seal("SIGUSR1")).await;
            }
            _ = idle_check.tick() => {
                if let Some(limit) = idle_limit(&state) {
                    if state.service.keys().is_some() && state.service.idle_for() >= limit {
                        let state = state.clone();
                        let _ = tokio::task::spawn_blocking(move || state.seal("idle")).await;
                    }
                }
            }
        }
    }
}

fn idle_limit(state: &DaemonState) -> Option<Duration> {
    if let Some(seconds) = std::env::var(TEST_IDLE_SECONDS).ok().and_then(|value| value.parse::<u64>().ok()) {
        return (seconds > 0).then(|| Duration::from_secs(seconds));
    }
    let minutes = state.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).daemon.idle_seal_minutes;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}

/// Admin-socket connections open at once. Admin commands are few and
/// short, and a non-admin gets an error reply and is closed at once.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// How often a rejected connection or a failed accept is logged; the ones
/// in between are counted in the next line.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

static ACCEPT_ERRORS: limits::RateLimit = limits::RateLimit::new(REPORT_INTERVAL);
/// One limit for each [`limits::Rejection`], so one reason cannot hide the other.
static REJECTIONS: [limits::RateLimit; 2] = [limits::RateLimit::new(REPORT_INTERVAL), limits::RateLimit::new(REPORT_INTERVAL)];

fn connection_caps(state: &DaemonState) -> (usize, usize) {
    let config = state.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    (config.daemon.max_connections, config.daemon.max_connections_per_uid)
}

/// Takes a connection slot for the peer of `stream`, or closes the stream
/// (by dropping it) when a cap is reached or the peer is unknown.
fn admit(
    state: &DaemonState,
    counts: &Arc<limits::ConnectionCounts>,
    stream: &tokio::net::UnixStream,
    max_total: usize,
    max_per_uid: usize,
    socket: &'static str,
) -> Option<limits::Slot> {
    let uid = match stream.peer_cred() {
        Ok(credentials) => credentials.uid(),
        Err(error) => {
            tracing::warn!(%error, socket, "cannot read the peer credentials; closing the connection");
            return None;
        }
    };
    match counts.acquire(uid, max_total, max_per_uid) {
        Ok(slot) => Some(slot),
        Err(rejection) => {
            if let Some(suppressed) = REJECTIONS[rejection as usize].check(Instant::now()) {
                tracing::warn!(
                    uid,
                    socket,
                    reason = rejection.as_str(),
                    open = counts.total(),
                    max_connections = max_total,
                    max_connections_per_uid = max_per_uid,
                    rejected_since_last_report = suppressed,
                    "connection rejected: too many open connections"
                );
                let mut event = AuditEvent::new("refused");
                event.uid = Some(uid);
                event.operation = Some("connect");
                event.reason = Some(rejection.as_str());
                state.audit.record(&event);
            }
            None
        }
    }
}

/// Keeps serving after an accept error (out of file descriptors, say),
/// pausing briefly so a full descriptor table does not spin the loop.
async fn accept_failed(error: std::io::Error) {
    if let Some(suppressed) = ACCEPT_ERRORS.check(Instant::now()) {
        tracing::warn!(%error, failed_since_last_report = suppressed, "accept failed; retrying shortly");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Raises the soft limit on open files to the hard limit, so the
/// connection caps, not the descriptor table, bound the connections.
fn raise_file_limit(max_connections: usize) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
    let current = match rustix::process::setrlimit(rustix::process::Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the limit on open files");
            limit.current
        }
    };
    if let Some(current) = current {
        // Some descriptors go to the runtime, the audit log and the keystore.
        if current < max_connections as u64 + 64 {
            tracing::warn!(
                open_files_limit = current,
                max_connections,
                "the limit on open files is below max_connections; connections past it fail until others close"
            );
        }
    }
}

/// Tells a waiting parent how start-up went.
fn report_ready(fd: Option<i32>, outcome: std::result::Result<&str, &str>) {
    let Some(fd) = fd else { return };
    let Ok(mut file) = keyward_protect::fd::take_fd(fd) else { return };
    let line = match outcome {
        Ok(state) => format!("ok {state}\n"),
        Err(error) => format!("{error}\n"),
    };
    let _ = file.write_all(line.as_bytes());
}

/// Starts the daemon again in the background with `--ready-fd`, in a new
/// session, and waits until it serves (or failed).
fn detach(context: &Context, args: &DaemonArgs) -> Result<()> {
    let socket_dir = context.daemon_socket_dir()?;
    let log_file = args.log_file.clone().unwrap_or_else(|| socket_dir.join("daemon.log"));

    // Ask for the passphrase here, where the terminal is.
    let passphrase = match args.passphrase.passphrase_fd {
        Some(fd) => Some(passphrase::read_fd(fd)?),
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            Some(zeroize::Zeroizing::new(passphrase::keystore(None, "Keystore passphrase (to unseal now): ")?.expose().to_vec()))
        }
        None => None,
    };

    let pipe_error = |error: rustix::io::Errno| CliError::failed(format!("cannot create a pipe: {error}"));
    let (ready_read, ready_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(pipe_error)?;
    inheritable(&ready_write)?;
    let mut command = std::process::Command::new(std::env::current_exe().map_err(|error| CliError::failed(error.to_string()))?);
    if let Some(dir) = &context.places.keystore {
        command.arg("--keystore").arg(dir);
    }
    command.arg("--socket-dir").arg(&socket_dir);
    if let Some(config) = &context.places.config {
        command.arg("--config").arg(config);
    }
    command.arg("daemon").arg("--ready-fd").arg(ready_write.as_raw_fd().to_string());
    if args.allow_insecure_memory {
        command.arg("--allow-insecure-memory");
    }

    let mut passphrase_pipe = None;
    if passphrase.is_some() {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(pipe_error)?;
        inheritable(&read)?;
        command.arg("--passphrase-fd").arg(read.as_raw_fd().to_string());
        passphrase_pipe = Some((read, write));
    }

    std::fs::create_dir_all(&socket_dir).ok();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .map_err(|error| CliError::failed(format!("cannot open the log file {}: {error}", log_file.display())))?;
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    command.process_group(0);

    let child = command.spawn().map_err(|error| CliError::failed(format!("cannot start the daemon: {error}")))?;
    drop(ready_write);
    if let (Some((read, write)), Some(passphrase)) = (passphrase_pipe, passphrase) {
        drop(read);
        let mut writer = std::fs::File::from(write);
        writer.write_all(&passphrase).map_err(|error| CliError::failed(format!("cannot pass the passphrase on: {error}")))?;
    }

    let mut outcome = String::new();
    let _ = std::fs::File::from(ready_read).read_to_string(&mut outcome);
    let outcome = outcome.trim();
    match outcome.strip_prefix("ok ") {
        Some(state) => {
            eprintln!("keyward daemon running (pid {}), {state}", child.id());
            eprintln!("SSH_AUTH_SOCK={}", Path::new(&socket_dir).join(AGENT_SOCKET).display());
            Ok(())
        }
        None if outcome.is_empty() => Err(CliError::failed(format!(
            "the daemon stopped during start-up; see {}",
            log_file.display()
        ))),
        None => Err(CliError::failed(outcome.trim_start_matches("error: ").to_owned())),
    }
}

fn inheritable(fd: &OwnedFd) -> Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
        .map_err(|error| CliError::failed(format!("cannot pass a pipe to the daemon: {error}")))
}
