//! Real `ssh` logins to an `sshd` started by the test on 127.0.0.1: the
//! user key, and in one test the server's host key, live only in the
//! daemon; no private key file exists for them.

mod common;

use common::{assert_success, root_or_skip, stderr, stdout, Env, Sshd};

/// Logs in with `name`'s key and returns the output of `ssh`.
fn login(env: &Env, sshd: &Sshd, name: &str, strict: &str, extra: &[&str]) -> std::process::Output {
    let identity = env.pubkey_file(name);
    let private = identity.with_extension("");
    assert!(!private.exists(), "a private key file {} exists next to the public key", private.display());
    sshd.client(&env.agent_socket(), &identity, &env.path("known_hosts"), strict, extra).output().unwrap()
}

/// Returns the fingerprint `keyward list --json` shows for `name`.
fn fingerprint(env: &Env, name: &str) -> String {
    let output = env.run(&["list", "--json"]);
    assert_success(&output, "keyward list --json");
    let keys: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let key = keys.as_array().unwrap().iter().find(|key| key["name"] == name).expect("the key is listed");
    key["fingerprint"].as_str().unwrap().to_owned()
}

fn is_private_key(bytes: &[u8]) -> bool {
    let first_line = bytes.split(|&byte| byte == b'\n').next().unwrap_or_default();
    first_line.starts_with(b"-----BEGIN ") && first_line.ends_with(b"PRIVATE KEY-----")
}

/// Files under `dir` that hold a private key in PEM or OpenSSH format.
fn private_key_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(private_key_files(&path));
        } else if std::fs::read(&path).is_ok_and(|bytes| is_private_key(&bytes)) {
            found.push(path);
        }
    }
    found
}

#[test]
fn ssh_logs_in_with_daemon_held_ed25519_key() {
    if !root_or_skip("ssh_logs_in_with_daemon_held_ed25519_key") {
        return;
    }
    let (env, _daemon) = Env::running(&[("ed25519", "login-ed")]);
    let authorized = format!("{}\n", env.public_key_line("login-ed"));
    let sshd = Sshd::start(&env.path("sshd"), &authorized, "");

    let output = login(&env, &sshd, "login-ed", "accept-new", &[]);
    assert_success(&output, "ssh with the daemon's Ed25519 key");
    let host_key = sshd.dir.join("ssh_host_ed25519_key");
    let files = private_key_files(env.root.path());
    assert_eq!(files, vec![host_key], "private key files other than sshd's own host key exist");
    assert_eq!(stdout(&output).trim(), "logged-in", "the remote command did not run");
    let log = sshd.log_text();
    assert!(log.contains("Accepted publickey for root"), "sshd did not accept a public key:\n{log}");
    let expected = fingerprint(&env, "login-ed");
    assert!(log.contains(&format!("ED25519 {expected}")), "sshd accepted a key other than {expected}:\n{log}");
}

#[test]
fn ssh_logs_in_with_daemon_rsa_sha512() {
    if !root_or_skip("ssh_logs_in_with_daemon_rsa_sha512") {
        return;
    }
    let (env, _daemon) = Env::running(&[("rsa-2048", "login-rsa")]);
    let authorized = format!("{}\n", env.public_key_line("login-rsa"));
    // Both sides accept rsa-sha2-512 only, so a login proves the daemon
    // made an RSA signature with SHA-512.
    let sshd = Sshd::start(&env.path("sshd"), &authorized, "PubkeyAcceptedAlgorithms rsa-sha2-512\n");

    let output = login(&env, &sshd, "login-rsa", "accept-new", &["-o", "PubkeyAcceptedAlgorithms=rsa-sha2-512"]);
    assert_success(&output, "ssh with the daemon's RSA key");
    let host_key = sshd.dir.join("ssh_host_ed25519_key");
    let files = private_key_files(env.root.path());
    assert_eq!(files, vec![host_key], "private key files other than sshd's own host key exist");
    assert_eq!(stdout(&output).trim(), "logged-in", "the remote command did not run");
    let log = sshd.log_text();
    let expected = fingerprint(&env, "login-rsa");
    assert!(log.contains("Accepted publickey for root"), "sshd did not accept a public key:\n{log}");
    assert!(log.contains(&format!("RSA {expected}")), "sshd accepted a key other than {expected}:\n{log}");
    assert!(log.contains("rsa-sha2-512"), "sshd's log does not mention rsa-sha2-512:\n{log}");
}

#[test]
fn sshd_serves_daemon_held_host_key() {
    if !root_or_skip("sshd_serves_daemon_held_host_key") {
        return;
    }
    let env = Env::with_keys(&[("ed25519", "user")]);
    env.keygen_with("ed25519", "host", &["--purpose", "ssh-host"]);
    env.keygen_with("ed25519", "other-host", &["--purpose", "ssh-host"]);
    let _daemon = env.start_daemon();
    env.unseal();

    let host_public = env.pubkey_file("host");
    assert!(!host_public.with_extension("").exists(), "a private host key file exists");
    let authorized = format!("{}\n", env.public_key_line("user"));
    let extra = format!("HostKey {}\nHostKeyAgent {}\n", host_public.display(), env.agent_socket().display());
    let sshd = Sshd::start(&env.path("sshd"), &authorized, &extra);

    // Control: a known_hosts line with another key makes the same client
    // fail, so the check below is not passing by accident.
    let known_hosts = env.path("known_hosts");
    let host_pattern = format!("[127.0.0.1]:{}", sshd.port);
    std::fs::write(&known_hosts, format!("{host_pattern} {}\n", env.public_key_line("other-host"))).unwrap();
    let output = login(&env, &sshd, "user", "yes", &[]);
    assert!(!output.status.success(), "ssh logged in although known_hosts names another host key");
    assert!(
        stderr(&output).contains("Host key verification failed"),
        "ssh failed for another reason than the host key:\n{}",
        stderr(&output)
    );

    std::fs::write(&known_hosts, format!("{host_pattern} {}\n", env.public_key_line("host"))).unwrap();
    let output = login(&env, &sshd, "user", "yes", &[]);
    assert_success(&output, "ssh verifying the daemon-held host key");
    assert_eq!(stdout(&output).trim(), "logged-in", "the remote command did not run");
    let files = private_key_files(env.root.path());
    assert!(files.is_empty(), "private key files exist although the daemon holds every key: {files:?}");
}
