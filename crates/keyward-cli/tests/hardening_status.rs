//! `keyward status --json` reports the protections the kernel actually
//! granted, as root and as an unprivileged uid, and the daemon refuses to
//! unseal without protected memory unless the operator accepts ordinary
//! memory.

mod common;
mod hardening_support;

use std::process::Command;

use common::{assert_success, stderr, Daemon, Env};
use hardening_support::{wrap_daemon, wrap_unprivileged};

fn protections(env: &Env) -> serde_json::Value {
    let output = env.run(&["status", "--json"]);
    assert_success(&output, "keyward status --json");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    status["protections"].clone()
}

fn host_has_swap() -> bool {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap();
    swaps.lines().skip(1).any(|line| !line.trim().is_empty())
}

/// Starts a daemon as `UNPRIVILEGED_UID` under `prlimit --memlock=BYTES`,
/// with `extra` daemon arguments.
fn start_unprivileged(env: &Env, memlock: u64, extra: &[&str]) -> Daemon {
    hardening_support::give_to_unprivileged(env);
    let prlimit = common::require_program("prlimit");
    env.start_daemon_with(|command| {
        command.args(extra);
        wrap_unprivileged(env, command);
        wrap_daemon(env, command, &prlimit, &[format!("--memlock={memlock}"), "--".to_owned()]);
    })
}

/// Signs a file with `ed` as the daemon's uid: with no rule for the key,
/// only the daemon's own user may use it.
fn sign_file(env: &Env) -> std::process::Output {
    let message = env.path("message.txt");
    std::fs::write(&message, b"status test\n").unwrap();
    let mut command = env.keyward();
    command.args(["sign", "--key", "ed"]).arg(&message);
    common::wrap_with(&mut command, &common::require_program("setpriv"), &hardening_support::setpriv_args());
    command.output().unwrap()
}

fn new_env() -> Env {
    Env::with_keys(&[("ed25519", "ed")])
}

#[test]
fn status_reports_root_protections() {
    if !common::is_root() {
        eprintln!("skipped: mlockall needs root or CAP_IPC_LOCK");
        return;
    }
    let env = new_env();
    let daemon = env.start_daemon();
    env.unseal();
    let protections = protections(&env);
    assert_eq!(protections["memory"], "memfd_secret", "{protections}");
    assert_eq!(protections["dumpable"], false, "{protections}");
    assert_eq!(protections["core_limit"], 0, "{protections}");
    assert_eq!(protections["mlockall"], true, "{protections}");
    assert_eq!(protections["swap_on_host"], host_has_swap(), "{protections}");
    // The same facts from the kernel's side.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let locked_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmLck:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(locked_kib > 0, "VmLck is 0 although status reports mlockall");
}

#[test]
fn status_reports_unprivileged_protections() {
    if !common::is_root() {
        eprintln!("skipped: the test switches uids with setpriv, which needs root");
        return;
    }
    let env = new_env();
    // The default non-root RLIMIT_MEMLOCK: memfd_secret fits, mlockall is
    // refused and reported as off.
    let _daemon = start_unprivileged(&env, 8 << 20, &[]);
    env.unseal();
    let protections = protections(&env);
    assert_eq!(protections["memory"], "memfd_secret", "{protections}");
    assert_eq!(protections["mlockall"], false, "{protections}");
    assert_eq!(protections["dumpable"], false, "{protections}");
    assert_eq!(protections["core_limit"], 0, "{protections}");
    let output = sign_file(&env);
    assert_success(&output, "keyward sign while unsealed as an unprivileged uid");
}

#[test]
fn unseal_without_protected_memory_is_refused() {
    if !common::is_root() {
        eprintln!("skipped: the test switches uids with setpriv, which needs root");
        return;
    }
    let env = new_env();
    let daemon = start_unprivileged(&env, 0, &[]);
    let output = env.run_with_passphrase(&["unseal"]);
    assert!(!output.status.success(), "unseal succeeded without protected memory");
    let message = stderr(&output);
    for expected in ["memfd_secret", "mlock", "RLIMIT_MEMLOCK 0 bytes", "LimitMEMLOCK", "--allow-insecure-memory"] {
        assert!(message.contains(expected), "the refusal does not mention {expected:?}:\n{message}");
    }
    drop(daemon);

    let env = new_env();
    let _daemon = start_unprivileged(&env, 0, &["--allow-insecure-memory"]);
    env.unseal();
    let protections = protections(&env);
    assert_eq!(protections["memory"], "none", "{protections}");
    assert_eq!(protections["mlockall"], false, "{protections}");
    let output = sign_file(&env);
    assert_success(&output, "keyward sign with insecure memory");
}

#[test]
fn test_memory_setting_forces_backing() {
    let env = new_env();
    let _daemon = env.start_daemon_with(|command: &mut Command| {
        command.env("KEYWARD_TEST_MEMORY", "mlock");
    });
    env.unseal();
    assert_eq!(protections(&env)["memory"], "mlock");
}
