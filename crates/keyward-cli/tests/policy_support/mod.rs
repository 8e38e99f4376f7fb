//! Helpers shared by the policy, audit and forwarding tests: clients as
//! other uids through `setpriv`, a raw agent client script, and the audit
//! log.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{require_program, Env};

/// The group that may open the service socket (`socket_group`), given to
/// every test client so permission bits never decide a test.
pub const SOCKET_GID: u32 = 4242;

/// Copies the raw agent client script where every uid can read it and
/// returns its path.
pub fn probe_script(env: &Env) -> PathBuf {
    let path = env.path("agent_probe.py");
    if !path.exists() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/agent_probe.py");
        std::fs::copy(source, &path).unwrap();
    }
    path
}

/// The credentials a client runs with.
#[derive(Clone, Debug)]
pub struct Client {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups besides [`SOCKET_GID`].
    pub groups: Vec<u32>,
}

impl Client {
    pub fn new(uid: u32, gid: u32, groups: &[u32]) -> Client {
        Client { uid, gid, groups: groups.to_vec() }
    }

    /// `program ARGS` run with this client's ids and `SSH_AUTH_SOCK` set.
    pub fn command(&self, env: &Env, program: &Path) -> Command {
        let mut groups: Vec<String> = vec![SOCKET_GID.to_string()];
        groups.extend(self.groups.iter().map(u32::to_string));
        let mut command = Command::new(require_program("setpriv"));
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg(format!("--groups={}", groups.join(",")))
            .arg(program)
            .env("SSH_AUTH_SOCK", env.agent_socket())
            .env("HOME", env.root.path())
            .current_dir(env.root.path());
        command
    }

    /// Runs the probe script with `args`; returns its output.
    pub fn probe(&self, env: &Env, args: &[&str]) -> Output {
        let script = probe_script(env);
        let mut command = self.command(env, Path::new("/usr/bin/python3"));
        command.arg(script).args(args);
        command.output().unwrap()
    }

    /// Whether the agent served `args` (exit 0) or refused them (exit 5);
    /// anything else fails the test.
    pub fn allowed(&self, env: &Env, args: &[&str]) -> bool {
        let output = self.probe(env, args);
        match output.status.code() {
            Some(0) => true,
            Some(5) => false,
            other => panic!(
                "probe {args:?} as {self:?} exited with {other:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Returns the public-key blobs `ssh-add -L` shows this client, as the
    /// base64 field of each line.
    pub fn ssh_add_list(&self, env: &Env) -> Vec<String> {
        let output = self.command(env, &require_program("ssh-add")).arg("-L").output().unwrap();
        // ssh-add -L exits 1 with "The agent has no identities." when the
        // list is empty.
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.lines().filter(|line| line.starts_with("ssh-") || line.starts_with("ecdsa-")).map(|line| line.split_whitespace().nth(1).unwrap().to_owned()).collect()
    }
}

/// Returns the base64 public-key blob of `name`, as `ssh-add -L` prints it.
pub fn blob_of(env: &Env, name: &str) -> String {
    let line = std::fs::read_to_string(env.pubkey_file(name)).unwrap();
    line.split_whitespace().nth(1).unwrap().to_owned()
}

/// Writes the configuration file and returns its path.
pub fn write_config(env: &Env, text: &str) -> PathBuf {
    let path = env.path("keyward.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Parses the audit lines of a log. Lines that are not JSON (tracing output
/// on stderr) are skipped.
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()).filter(|value| value.get("event").is_some()).collect()
}

/// Waits until `check` holds on the audit lines, up to 10 s.
pub fn wait_for_line(path: &Path, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = audit_lines(path).into_iter().find(|line| check(line)) {
            return line;
        }
        if Instant::now() > deadline {
            panic!("no matching audit line in {}:\n{}", path.display(), std::fs::read_to_string(path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `keyward status --json` as JSON.
pub fn status(env: &Env) -> serde_json::Value {
    let output = env.run(&["status", "--json"]);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("status --json: {}", String::from_utf8_lossy(&output.stderr)))
}

impl Client {
    /// Returns what `list@keyward` shows this client: each key's name and
    /// its operations joined by commas.
    pub fn keyward_list(&self, env: &Env) -> Vec<(String, String)> {
        let output = self.probe(env, &["names"]);
        assert_eq!(output.status.code(), Some(0), "list@keyward failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let (name, operations) = line.split_once(' ').unwrap_or((line, ""));
                (name.to_owned(), operations.to_owned())
            })
            .collect()
    }
}
