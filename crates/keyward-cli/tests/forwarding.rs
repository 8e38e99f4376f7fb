//! A real `ssh -A` session to a test sshd on loopback. On the remote side,
//! the forwarded agent must list and sign only with keys whose rule sets
//! `forwarding = true`, only for user authentication, and refuse every
//! extension. The local `ssh` marks the forwarded connection with
//! `session-bind@openssh.com`, and the daemon verifies the bind against the
//! host key. The tests use Ed25519, ECDSA P-256 and RSA host keys.

mod common;
mod policy_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{assert_success, audit_lines, is_root, require_program, ssh_keygen_new_key, Daemon, Env, Sshd};
use policy_support::{local_probe, probe_script};

const CONFIG: &str = r#"
[daemon]
audit = "requests"
audit_log = "AUDIT"

[[key]]
name = "fwd"
users = [0]
operations = ["ssh-auth"]
forwarding = true

[[key]]
name = "local"
users = [0]
operations = ["sign"]
"#;

fn host_key(env: &Env, kind: &str, bits: &[&str]) -> PathBuf {
    let path = env.path(&format!("host_{kind}"));
    ssh_keygen_new_key(&path, kind, bits);
    path
}

/// Starts an unsealed daemon with `CONFIG` and the keys `fwd`, `local` and
/// `extra_keys` (type, name), and an sshd with Ed25519, ECDSA P-256 and
/// RSA host keys that lets `fwd` log in. Returns the audit log's path.
fn start_daemon_and_sshd(env: &Env, extra_keys: &[(&str, &str)]) -> (Daemon, Sshd, PathBuf) {
    env.init();
    env.keygen("ed25519", "fwd");
    env.keygen("ed25519", "local");
    for (key_type, name) in extra_keys {
        env.keygen(key_type, name);
    }
    let audit = env.path("audit.log");
    let config = env.write_config(&CONFIG.replace("AUDIT", audit.to_str().unwrap()));
    let daemon = env.start_daemon_with_config(&config);
    env.unseal();

    let keys = [host_key(env, "ed25519", &[]), host_key(env, "ecdsa", &["-b", "256"]), host_key(env, "rsa", &["-b", "2048"])];
    let mut sshd_config = String::from("AllowAgentForwarding yes\nLogLevel VERBOSE\n");
    for key in &keys {
        sshd_config.push_str(&format!("HostKey {}\n", key.display()));
    }
    let authorized = std::fs::read_to_string(env.pubkey_file("fwd")).unwrap();
    let sshd = Sshd::start(&env.path("sshd"), &authorized, &sshd_config);
    (daemon, sshd, audit)
}

/// Runs `remote_command` through `ssh -A` with the host key algorithm
/// `algorithm`; returns the remote command's stdout.
fn ssh_forwarded(env: &Env, sshd: &Sshd, algorithm: &str, remote_command: &str) -> String {
    let output = Command::new(require_program("ssh"))
        .args(["-F", "/dev/null", "-A", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "IdentitiesOnly=yes"])
        .arg("-o")
        // One known_hosts file per host key type: a host known under
        // another key type makes ssh turn agent forwarding off.
        .arg(format!("UserKnownHostsFile={}", env.path(&format!("known_hosts_{algorithm}")).display()))
        .arg("-o")
        .arg(format!("HostKeyAlgorithms={algorithm}"))
        .arg("-o")
        .arg(format!("IdentityFile={}", env.path("fwd.pub").display()))
        .arg("-p")
        .arg(sshd.port.to_string())
        .arg("root@127.0.0.1")
        .arg(remote_command)
        .env("SSH_AUTH_SOCK", env.agent_socket())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&output, &format!("ssh -A with host key {algorithm}"));
    String::from_utf8(output.stdout).unwrap()
}

/// Returns the SHA256 fingerprint of an OpenSSH public key file.
fn fingerprint(public: &Path) -> String {
    let output = Command::new(require_program("ssh-keygen")).arg("-lf").arg(public).output().unwrap();
    assert_success(&output, "ssh-keygen -lf");
    String::from_utf8(output.stdout).unwrap().split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn forwarded_agent_signs_only_forwarding_keys_for_auth() {
    assert!(is_root(), "sshd needs root");
    let env = Env::new();
    let (_daemon, sshd, audit) = start_daemon_and_sshd(&env, &[("ecdsa-p256", "own")]);
    let script = probe_script(&env);
    let public = |name: &str| env.pubkey_file(name).display().to_string();

    // Control: on the local, unforwarded socket root may sign anything
    // with "local" and "own".
    let local = local_probe(&env, &["sign", "raw", &public("local")]);
    assert_eq!(local.code(), Some(0), "the local control signature was refused");

    let probe = format!("/usr/bin/python3 {}", script.display());
    let checks: &[(&str, String)] = &[
        ("sign-fwd-userauth", format!("{probe} sign userauth {}", public("fwd"))),
        ("sign-fwd-raw", format!("{probe} sign raw {}", public("fwd"))),
        ("sign-fwd-sshsig", format!("{probe} sign sshsig:file {}", public("fwd"))),
        ("sign-local-userauth", format!("{probe} sign userauth {}", public("local"))),
        ("sign-own-userauth", format!("{probe} sign userauth {}", public("own"))),
        ("ext-query", format!("{probe} ext query")),
        ("ext-status", format!("{probe} ext status@keyward")),
        ("ext-list", format!("{probe} ext list@keyward")),
        ("ext-session-bind", format!("{probe} ext session-bind@openssh.com 00")),
        ("ext-unknown", format!("{probe} ext nothing@example.com")),
    ];
    let mut remote = String::from("ssh-add -L | awk '{print \"listed \" $2}'; ");
    for (label, command) in checks {
        remote.push_str(&format!("{command}; echo \"{label} $?\"; "));
    }
    let output = ssh_forwarded(&env, &sshd, "ssh-ed25519", &remote);

    let listed: Vec<&str> = output.lines().filter_map(|line| line.strip_prefix("listed ")).collect();
    assert_eq!(listed, vec![env.public_key_base64("fwd").as_str()], "the forwarded agent lists other keys:\n{output}");
    let result = |label: &str| {
        output.lines().find_map(|line| line.strip_prefix(&format!("{label} "))).unwrap_or_else(|| panic!("no {label} in:\n{output}")).to_owned()
    };
    assert_eq!(result("sign-fwd-userauth"), "0", "{output}");
    for (label, _) in &checks[1..] {
        assert_eq!(result(label), "5", "{label} was not refused through the forwarded agent:\n{output}");
    }

    // The forwarded connection was marked by a verified bind to this
    // host key, and each refusal was logged as such.
    let host = fingerprint(&env.path("host_ed25519.pub"));
    let lines = audit_lines(&audit);
    assert!(
        lines.iter().any(|line| line["operation"] == "session-bind-forwarding" && line["fingerprint"] == host.as_str()),
        "no verified forwarding bind for {host} in the audit log"
    );
    let forwarded = lines.iter().filter(|line| line["event"] == "refused" && line["reason"] == "forwarded").count();
    assert!(forwarded >= checks.len() - 3, "expected a 'forwarded' refusal per extension and per non-auth signature, found {forwarded}");
    assert!(lines.iter().any(|line| line["event"] == "refused" && line["reason"] == "forwarded" && line["key"] == "fwd" && line["operation"] == "sign"));
    // requests mode: the login signature and the remote signature are lines.
    let auth_signatures = lines.iter().filter(|line| line["event"] == "request" && line["key"] == "fwd" && line["operation"] == "ssh-auth").count();
    assert!(auth_signatures >= 2, "expected the login and the remote ssh-auth signatures as request lines:\n{}", std::fs::read_to_string(&audit).unwrap());
}

#[test]
fn session_bind_verifies_every_host_key_type() {
    assert!(is_root(), "sshd needs root");
    let env = Env::new();
    let (_daemon, sshd, audit) = start_daemon_and_sshd(&env, &[]);

    for (algorithm, host_file) in [
        ("ecdsa-sha2-nistp256", "host_ecdsa.pub"),
        ("rsa-sha2-512", "host_rsa.pub"),
        ("rsa-sha2-256", "host_rsa.pub"),
    ] {
        let output = ssh_forwarded(&env, &sshd, algorithm, "ssh-add -L 2>&1 | awk '{print $2}'");
        assert_eq!(output.lines().collect::<Vec<_>>(), vec![env.public_key_base64("fwd").as_str()], "host key {algorithm}; audit:\n{}", std::fs::read_to_string(&audit).unwrap());
        let host = fingerprint(&env.path(host_file));
        let binds = audit_lines(&audit)
            .into_iter()
            .filter(|line| line["operation"] == "session-bind-forwarding" && line["fingerprint"] == host.as_str())
            .count();
        assert!(binds >= 1, "no verified forwarding bind with the {algorithm} host key {host}");
        assert!(
            !audit_lines(&audit).iter().any(|line| line["reason"] == "bad-host-signature"),
            "a bind with the {algorithm} host key failed verification"
        );
    }
}
