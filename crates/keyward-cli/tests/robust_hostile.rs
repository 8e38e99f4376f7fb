//! Hostile clients: connection caps, stalled frames, clients that vanish
//! mid-request, SIGPIPE and running out of file descriptors.

mod common;
mod robust_support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{closed_by_peer, exchange, frame, request, serves, IDENTITIES_ANSWER, REQUEST_IDENTITIES};
use common::{wait_until, Env};
use robust_support::as_user;

const OTHER_UID: u32 = 2001;
const THIRD_UID: u32 = 2002;
/// The service socket's group in the cap test, given to both other uids.
const SOCKET_GROUP: u32 = 2001;

/// Creates a keystore with one key and a configuration file, before the daemon.
fn env_with_config(config: &str) -> Env {
    let env = Env::with_keys(&[("ed25519", "ed")]);
    std::fs::write(env.keystore.join("keyward.toml"), config).unwrap();
    env
}

/// Opens a connection and has it served once, so the daemon has accepted it.
fn served_connection(socket: &std::path::Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = exchange(&mut stream, &[REQUEST_IDENTITIES]).expect("served");
    assert_eq!(reply[0], IDENTITIES_ANSWER);
    stream
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|dir| dir.count()).unwrap_or(0)
}

#[test]
fn connection_caps_reject_and_recover() {
    let env = env_with_config(&format!("[daemon]\nsocket_group = {SOCKET_GROUP}\nmax_connections = 5\nmax_connections_per_uid = 3\n"));
    let daemon = env.start_daemon();
    env.unseal();
    let socket = env.agent_socket();

    // The wait for the socket left a connection; let the daemon count it out.
    std::thread::sleep(Duration::from_millis(200));
    let mut mine: Vec<UnixStream> = (0..3).map(|_| served_connection(&socket)).collect();
    let mut fourth = UnixStream::connect(&socket).unwrap();
    assert!(closed_by_peer(&mut fourth, Duration::from_secs(5)), "a fourth connection from one uid is closed");

    // Another uid still gets in, up to the global cap of five.
    let socket_for_other = socket.clone();
    let others: Vec<UnixStream> = as_user(OTHER_UID, SOCKET_GROUP, move || (0..2).map(|_| served_connection(&socket_for_other)).collect());
    let socket_for_third = socket.clone();
    let rejected = as_user(THIRD_UID, SOCKET_GROUP, move || {
        let mut stream = UnixStream::connect(&socket_for_third).unwrap();
        closed_by_peer(&mut stream, Duration::from_secs(5))
    });
    assert!(rejected, "a sixth connection is closed by the global cap");

    // A closed connection frees its slot.
    drop(mine.pop());
    let socket_for_third = socket.clone();
    assert!(wait_until(Duration::from_secs(5), move || {
        let socket = socket_for_third.clone();
        as_user(THIRD_UID, SOCKET_GROUP, move || request(&socket, &[REQUEST_IDENTITIES], Duration::from_secs(2)).is_some())
    }));

    let log = daemon.log_text();
    assert!(log.contains("too-many-connections-for-uid"), "log:\n{log}");
    assert!(log.contains("\"too-many-connections\""), "log:\n{log}");
    assert!(log.contains("connection rejected"), "log:\n{log}");
    drop(others);
}

#[test]
fn rejection_log_is_rate_limited() {
    let env = env_with_config("[daemon]\nmax_connections_per_uid = 1\n");
    let daemon = env.start_daemon();
    std::thread::sleep(Duration::from_millis(200));
    let _held = served_connection(&env.agent_socket());
    for _ in 0..200 {
        let mut stream = UnixStream::connect(env.agent_socket()).unwrap();
        assert!(closed_by_peer(&mut stream, Duration::from_secs(5)));
    }
    let lines = daemon.log_text().matches("connection rejected").count();
    assert!((1..=10).contains(&lines), "200 rejections in a few seconds logged {lines} lines");
}

#[test]
fn stalled_half_frame_closed_without_delaying_others() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let socket = env.agent_socket();

    let mut header_only = UnixStream::connect(&socket).unwrap();
    header_only.write_all(&[0, 0]).unwrap();
    let mut half_body = UnixStream::connect(&socket).unwrap();
    half_body.write_all(&frame(&[13, 0, 0, 0, 40])[..7]).unwrap();
    let stalled_at = Instant::now();

    // Others are served at full speed meanwhile.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        assert!(serves(&socket));
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "a request took {slowest:?} while two clients stalled");

    for (name, stream) in [("header", &mut header_only), ("half body", &mut half_body)] {
        assert!(closed_by_peer(stream, Duration::from_secs(20)), "{name}: closed");
        let elapsed = stalled_at.elapsed();
        assert!(elapsed >= Duration::from_secs(9), "{name}: closed after {elapsed:?}, before the 10 s deadline");
        assert!(elapsed < Duration::from_secs(16), "{name}: closed only after {elapsed:?}");
    }
}

#[test]
fn thousands_of_vanishing_clients_leave_daemon_healthy() {
    let (env, daemon) = Env::running(&[("ed25519", "ed")]);
    let socket = env.agent_socket();
    assert!(serves(&socket));
    std::thread::sleep(Duration::from_millis(200));
    let fds_before = open_fds(daemon.pid());

    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let request = frame(&[REQUEST_IDENTITIES]);
                for round in 0..750 {
                    let Ok(mut stream) = UnixStream::connect(&socket) else { continue };
                    // Full request, half a header, half a body, nothing.
                    let _ = match (round + worker) % 4 {
                        0 => stream.write_all(&request),
                        1 => stream.write_all(&request[..2]),
                        2 => stream.write_all(&frame(&[13, 0, 0, 0, 40])[..9]),
                        _ => Ok(()),
                    };
                    drop(stream);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }

    // Until the daemon has noticed that the vanished clients are gone, they
    // count against this uid's connection cap; after that it must serve.
    assert!(
        wait_until(Duration::from_secs(15), || serves(&socket)),
        "serves after 3,000 vanished clients"
    );
    assert!(
        wait_until(Duration::from_secs(15), || open_fds(daemon.pid()) <= fds_before + 2),
        "descriptors leaked: {} before, {} after",
        fds_before,
        open_fds(daemon.pid())
    );
    assert!(!daemon.log_text().contains("panicked"), "log:\n{}", daemon.log_text());
}

#[test]
fn writing_to_closed_client_does_not_kill() {
    // Control: an ordinary process with the default SIGPIPE action dies
    // when it writes to a pipe with no reader.
    let mut yes = Command::new("yes").stdout(Stdio::piped()).spawn().unwrap();
    drop(yes.stdout.take());
    assert_eq!(yes.wait().unwrap().signal(), Some(13), "`yes` dies of SIGPIPE");

    let (env, mut daemon) = Env::running(&[("ed25519", "ed")]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let ignored = status.lines().find_map(|line| line.strip_prefix("SigIgn:")).unwrap().trim().to_owned();
    let ignored = u64::from_str_radix(&ignored, 16).unwrap();
    assert_ne!(ignored & (1 << (13 - 1)), 0, "the daemon ignores SIGPIPE (SigIgn {ignored:x})");

    // Many requests, then close before reading: the daemon's replies go to
    // a closed socket.
    for _ in 0..200 {
        let mut stream = UnixStream::connect(env.agent_socket()).unwrap();
        let requests: Vec<u8> = (0..20).flat_map(|_| frame(&[REQUEST_IDENTITIES])).collect();
        stream.write_all(&requests).unwrap();
        stream.shutdown(std::net::Shutdown::Both).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon is still running");
    assert!(serves(&env.agent_socket()));
}

#[test]
fn running_out_of_descriptors_is_survived() {
    let env = Env::with_keys(&[("ed25519", "ed")]);
    let mut daemon = env.start_daemon_with(|command| {
        // SAFETY: setrlimit is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(|| {
                let limit = rustix::process::Rlimit { current: Some(64), maximum: Some(64) };
                rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).map_err(std::io::Error::from)
            });
        }
    });
    env.unseal();
    let socket = env.agent_socket();

    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let Ok(mut stream) = UnixStream::connect(&socket) else {
            refused += 1;
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        match exchange(&mut stream, &[REQUEST_IDENTITIES]) {
            Ok(_) => held.push(stream),
            Err(_) => refused += 1,
        }
    }
    assert!(held.len() >= 20, "only {} connections served under 64 descriptors", held.len());
    assert!(refused > 0, "all 100 connections were served under a 64-descriptor limit");

    drop(held);
    assert!(wait_until(Duration::from_secs(10), || serves(&socket)), "serves again once connections closed");
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon is still running");
    assert!(daemon.log_text().contains("accept failed"), "log:\n{}", daemon.log_text());
}
