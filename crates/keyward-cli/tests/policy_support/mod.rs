//! Helpers shared by the policy, audit and forwarding tests: clients as
//! other uids through `setpriv`, and a raw agent client script.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

use crate::common::{as_user, listed_keys, require_program, Env};

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

/// Runs the probe script with `args` as this test's own uid, against the
/// daemon of `env`; returns its exit status (0 served, 5 refused).
pub fn local_probe(env: &Env, args: &[&str]) -> ExitStatus {
    Command::new("/usr/bin/python3").arg(probe_script(env)).args(args).env("SSH_AUTH_SOCK", env.agent_socket()).status().unwrap()
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
        let mut groups = vec![SOCKET_GID];
        groups.extend(&self.groups);
        let mut command = as_user(self.uid, self.gid, &groups, program);
        command
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
        listed_keys(&output).iter().map(|line| line.split_whitespace().nth(1).unwrap().to_owned()).collect()
    }
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
