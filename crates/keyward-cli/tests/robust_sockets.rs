//! Socket lifecycle: stale sockets, a second daemon, things in the way of a
//! socket, over-long paths and the signals the daemon handles.

mod common;

use std::os::unix::fs::DirBuilderExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{serves, state};
use common::{stderr, wait_timeout, wait_until, Env};
use rustix::process::Signal;

/// Runs the daemon in the foreground and expects it to exit by itself.
fn daemon_exits(env: &Env, adjust: impl FnOnce(&mut Command)) -> std::process::Output {
    let mut command = env.keyward();
    command.args(["daemon", "--foreground"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    adjust(&mut command);
    let mut child = command.spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status, status);
    output
}

fn make_socket_dir(env: &Env) {
    std::fs::DirBuilder::new().mode(0o700).create(&env.sockets).unwrap();
}

#[test]
fn stale_socket_replaced_after_sigkill() {
    let (env, daemon) = Env::running(&[("ed25519", "ed")]);
    daemon.signal(Signal::KILL);
    let mut daemon = daemon;
    daemon.child.wait().unwrap();
    assert!(env.agent_socket().exists(), "SIGKILL leaves the socket behind");
    assert!(!serves(&env.agent_socket()), "nobody serves the stale socket");

    let restarted = env.start_daemon();
    assert!(serves(&env.agent_socket()), "the restarted daemon serves");
    assert!(restarted.log_text().contains("replaced a stale socket"), "log:\n{}", restarted.log_text());
    std::mem::forget(daemon);
}

#[test]
fn second_daemon_reports_already_running() {
    let (env, daemon) = Env::running(&[("ed25519", "ed")]);
    let output = daemon_exits(&env, |_| {});
    assert!(!output.status.success());
    assert!(stderr(&output).contains("already running"), "{}", stderr(&output));
    assert!(stderr(&output).contains(&daemon.pid().to_string()), "names the pid: {}", stderr(&output));

    assert!(serves(&env.agent_socket()), "the first daemon keeps serving");
    assert_eq!(state(&env.agent_socket()), Some("unsealed"));
}

#[test]
fn regular_file_at_socket_path_is_left_alone() {
    let env = Env::new();
    env.init();
    make_socket_dir(&env);
    std::fs::write(env.agent_socket(), b"precious").unwrap();

    let output = daemon_exits(&env, |_| {});
    assert!(!output.status.success());
    assert!(stderr(&output).contains("is not a socket"), "{}", stderr(&output));
    assert_eq!(std::fs::read(env.agent_socket()).unwrap(), b"precious");
}

#[test]
fn symlink_at_socket_path_is_left_alone() {
    let env = Env::new();
    env.init();
    make_socket_dir(&env);
    let target = env.path("target-file");
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, env.agent_socket()).unwrap();

    let output = daemon_exits(&env, |_| {});
    assert!(!output.status.success());
    assert!(stderr(&output).contains("is not a socket"), "{}", stderr(&output));
    assert!(std::fs::symlink_metadata(env.agent_socket()).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
}

#[test]
fn directory_at_socket_path_is_left_alone() {
    let env = Env::new();
    env.init();
    make_socket_dir(&env);
    std::fs::create_dir(env.agent_socket()).unwrap();
    std::fs::write(env.agent_socket().join("inside"), b"precious").unwrap();

    let output = daemon_exits(&env, |_| {});
    assert!(!output.status.success());
    assert!(stderr(&output).contains("is not a socket"), "{}", stderr(&output));
    assert_eq!(std::fs::read(env.agent_socket().join("inside")).unwrap(), b"precious");
}

#[test]
fn overlong_socket_path_names_limit() {
    let env = Env::new();
    env.init();
    // `<dir>/agent.sock` is 108 bytes: one past what sun_path holds.
    let base = env.root.path().display().to_string();
    let padding = 108 - base.len() - "/".len() - "/agent.sock".len();
    let long_dir = env.root.path().join("d".repeat(padding));
    assert_eq!(long_dir.join("agent.sock").as_os_str().len(), 108);

    let output = Command::new(common::keyward_binary())
        .arg("--keystore")
        .arg(&env.keystore)
        .arg("--socket-dir")
        .arg(&long_dir)
        .args(["daemon", "--foreground"])
        .env("KEYWARD_TEST_INSECURE_KDF", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("107 bytes"), "names the limit: {message}");
    assert!(message.contains("108 bytes"), "names the length: {message}");
    assert!(!long_dir.join("agent.sock").exists());
    let truncated = long_dir.join("agent.soc");
    assert!(!truncated.exists(), "no truncated socket");
}

#[test]
fn sigterm_and_sigint_stop_and_remove_sockets() {
    for signal in [Signal::TERM, Signal::INT] {
        let (env, daemon) = Env::running(&[("ed25519", "ed")]);
        let mut daemon = daemon;
        daemon.signal(signal);
        let status = wait_timeout(&mut daemon.child, Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "{signal:?}: log:\n{}", daemon.log_text());
        assert!(!env.agent_socket().exists(), "{signal:?} removes the service socket");
        assert!(!env.admin_socket().exists(), "{signal:?} removes the admin socket");
        std::mem::forget(daemon);
    }
}

#[test]
fn sighup_reloads_and_stays_unsealed() {
    let (env, daemon) = Env::running(&[("ed25519", "ed")]);
    let before = daemon.log_text().matches("SIGHUP").count();
    daemon.signal(Signal::HUP);
    assert!(wait_until(Duration::from_secs(10), || daemon.log_text().matches("SIGHUP").count() > before));
    assert!(serves(&env.agent_socket()));
    assert_eq!(state(&env.agent_socket()), Some("unsealed"));
}

#[test]
fn sigusr1_seals_and_keeps_serving() {
    let (env, daemon) = Env::running(&[("ed25519", "ed")]);
    daemon.signal(Signal::USR1);
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || state(&env.agent_socket()) == Some("sealed")), "sealed within {:?}", started.elapsed());
    assert!(serves(&env.agent_socket()), "still answers while sealed");
}
