//! The daemon seals when logind announces sleep. A private dbus-daemon
//! replaces the system bus, and `dbus-send` plays logind by sending
//! `PrepareForSleep` on logind's object path and interface.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{parse_audit_lines, require_program, stderr, wait_timeout, wait_until, Daemon, Env};

/// A private message bus, killed by pid when dropped.
struct Bus {
    child: Child,
    address: String,
}

impl Bus {
    fn start(env: &Env) -> Bus {
        let program = require_program("dbus-daemon");
        let socket = env.path("bus");
        let mut child = Command::new(program)
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut address = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut address).expect("read the bus address");
        let address = address.trim().to_owned();
        assert!(address.starts_with("unix:path="), "dbus-daemon printed no bus address: {address:?}");
        Bus { child, address }
    }

    fn send_prepare_for_sleep(&self, starting: bool) {
        let status = Command::new(require_program("dbus-send"))
            .arg(format!("--bus={}", self.address))
            .args(["--type=signal", "/org/freedesktop/login1", "org.freedesktop.login1.Manager.PrepareForSleep"])
            .arg(format!("boolean:{starting}"))
            .status()
            .expect("run dbus-send");
        assert!(status.success(), "dbus-send failed: {status}");
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_timeout(&mut self.child, Duration::from_secs(5));
    }
}

fn status_code(env: &Env) -> Option<i32> {
    env.run(&["status"]).status.code()
}

fn sealed_audit_reasons(daemon: &Daemon) -> Vec<String> {
    parse_audit_lines(&daemon.log_text())
        .into_iter()
        .filter(|line| line["event"] == "sealed")
        .map(|line| line["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Starts a bus and an unsealed daemon that watches it for sleep.
fn unsealed_daemon_on_bus() -> (Env, Bus, Daemon) {
    let env = Env::with_keys(&[("ed25519", "ed")]);
    let bus = Bus::start(&env);
    let daemon = env.start_daemon_with(|command| {
        command.env("KEYWARD_TEST_SLEEP_BUS", &bus.address);
    });
    assert!(
        wait_until(Duration::from_secs(10), || daemon.log_text().contains("watching logind's PrepareForSleep")),
        "the daemon did not subscribe to PrepareForSleep; log:\n{}",
        daemon.log_text()
    );
    env.unseal();
    assert_eq!(status_code(&env), Some(0), "the daemon is not unsealed: {}", stderr(&env.run(&["status"])));
    (env, bus, daemon)
}

#[test]
fn prepare_for_sleep_seals_daemon() {
    let (env, bus, daemon) = unsealed_daemon_on_bus();

    bus.send_prepare_for_sleep(true);

    let mut code = None;
    wait_until(Duration::from_secs(5), || {
        code = status_code(&env);
        code == Some(4)
    });
    assert_eq!(code, Some(4), "the daemon is not sealed 5 s after PrepareForSleep(true); log:\n{}", daemon.log_text());
    assert_eq!(sealed_audit_reasons(&daemon), vec!["sleep".to_owned()], "log:\n{}", daemon.log_text());
}

#[test]
fn resume_signal_leaves_daemon_unsealed() {
    let (env, bus, daemon) = unsealed_daemon_on_bus();

    bus.send_prepare_for_sleep(false);

    assert!(
        wait_until(Duration::from_secs(5), || daemon.log_text().contains("the system resumed from sleep")),
        "the daemon did not receive PrepareForSleep(false); log:\n{}",
        daemon.log_text()
    );
    assert_eq!(status_code(&env), Some(0), "PrepareForSleep(false) sealed the daemon; log:\n{}", daemon.log_text());
    assert!(sealed_audit_reasons(&daemon).is_empty(), "log:\n{}", daemon.log_text());
}
