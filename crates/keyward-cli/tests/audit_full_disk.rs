//! `audit = "requests"` with `audit_fail_closed`. The audit file lives on a
//! 64 KiB tmpfs in the daemon's private mount namespace. While it is full,
//! every request is refused and `status --json` reports the audit trail
//! unhealthy. Once space returns, requests are served again.

mod common;
mod policy_support;

use std::ffi::OsStr;
use std::process::Command;

use common::{is_root, require_program, wrap_with, Daemon, Env};
use policy_support::local_probe;

/// Runs `script` with `sh` inside the daemon's mount namespace.
fn in_namespace(daemon: &Daemon, script: &str) -> std::process::Output {
    Command::new(require_program("nsenter"))
        .arg("-t")
        .arg(daemon.pid().to_string())
        .args(["-m", "sh", "-c", script])
        .output()
        .unwrap()
}

#[test]
fn full_audit_disk_refuses_requests_until_space_returns() {
    assert!(is_root(), "mounting a tmpfs needs root");
    let env = Env::with_keys(&[("ed25519", "ed")]);
    let audit_dir = env.path("audit");
    std::fs::create_dir(&audit_dir).unwrap();
    let audit = audit_dir.join("audit.log");
    let config = env.write_config(&format!("[daemon]\naudit = \"requests\"\naudit_log = \"{}\"\n", audit.display()));

    // The daemon's own command, run by unshare after mounting the tmpfs.
    let mut command = env.keyward();
    command.arg("--config").arg(&config).args(["daemon", "--foreground"]);
    let mount_then_run = "mount -t tmpfs -o size=64k tmpfs \"$1\" && shift && exec \"$@\"";
    let unshare_args = [OsStr::new("-m"), OsStr::new("sh"), OsStr::new("-c"), OsStr::new(mount_then_run), OsStr::new("sh"), audit_dir.as_os_str()];
    wrap_with(&mut command, &require_program("unshare"), &unshare_args);
    let daemon = env.start_daemon_command(command);
    env.unseal();

    let public = env.pubkey_file("ed");
    let sign = || {
        let status = local_probe(&env, &["sign", "raw", public.to_str().unwrap()]);
        match status.code() {
            Some(0) => true,
            Some(5) => false,
            other => panic!("probe exited with {other:?}"),
        }
    };
    assert!(sign(), "signing failed before the disk was full");
    assert_eq!(env.status_json()["audit"]["healthy"], true);

    // Fill the tmpfs. The log's last page may still have room for a few
    // lines, so sign until the first refusal.
    in_namespace(&daemon, &format!("dd if=/dev/zero of={}/filler bs=4k count=64 2>/dev/null; true", audit_dir.display()));
    let served = (0..64).take_while(|_| sign()).count();
    assert!(served < 64, "requests were still served after 64 signatures on a full disk");
    for attempt in 0..3 {
        assert!(!sign(), "request {attempt} after the first refusal was served while the audit log cannot be written");
    }
    let listing = local_probe(&env, &["list"]);
    assert_eq!(listing.code(), Some(5), "request-identities was served while the audit log cannot be written");
    assert_eq!(env.status_json()["audit"]["healthy"], false, "status does not report the unwritable audit log");

    // Space returns: requests are served again and the log records the recovery.
    let removed = in_namespace(&daemon, &format!("rm {}/filler", audit_dir.display()));
    assert!(removed.status.success());
    assert!(sign(), "signing was still refused after space returned");
    assert_eq!(env.status_json()["audit"]["healthy"], true);
    let contents = in_namespace(&daemon, &format!("cat {}", audit.display()));
    let text = String::from_utf8_lossy(&contents.stdout);
    assert!(text.contains("\"event\":\"audit-recovered\""), "no recovery line:\n{text}");
    // Lines written after recovery start on a new line even where a
    // failed write left part of a line behind.
    let after = text.split("\"event\":\"audit-recovered\"").nth(1).unwrap();
    let mut served_after = 0;
    for line in after.lines().skip(1) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("a torn line after recovery: {line:?}"));
        if value["event"] == "request" && value["operation"] == "sign" {
            served_after += 1;
        }
    }
    assert_eq!(served_after, 1, "the signature served after recovery is not logged:\n{text}");
    println!("served {served} signatures on the full tmpfs before the first refusal");
}
