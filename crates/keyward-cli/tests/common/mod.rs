//! A test fixture: a throwaway keystore, a daemon on sockets in a temp
//! directory, and helpers to drive the real `keyward` binary and OpenSSH.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSPHRASE: &str = "correct horse battery staple";

/// The `keyward` binary under test.
pub fn keyward_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keyward"))
}

/// Fails the test with a message when a program the test needs is missing.
pub fn require_program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| panic!("{name} is not installed; `.ci/run` installs it (apt-get)"))
}

pub fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// A temp directory holding a keystore and a socket directory.
pub struct Env {
    pub root: tempfile::TempDir,
    pub keystore: PathBuf,
    pub sockets: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let root = tempfile::Builder::new().prefix("kw").tempdir_in("/tmp").expect("temp dir");
        // Other uids in tests must be able to reach the socket directory.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let keystore = root.path().join("ks");
        let sockets = root.path().join("s");
        Env { root, keystore, sockets }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn agent_socket(&self) -> PathBuf {
        self.sockets.join("agent.sock")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.sockets.join("admin.sock")
    }

    /// A `keyward` command with this environment's places and the
    /// test-only cheap KDF.
    pub fn keyward(&self) -> Command {
        let mut command = Command::new(keyward_binary());
        command
            .arg("--keystore")
            .arg(&self.keystore)
            .arg("--socket-dir")
            .arg(&self.sockets)
            .env("KEYWARD_TEST_INSECURE_KDF", "1")
            .env_remove("KEYWARD_KEYSTORE")
            .env_remove("KEYWARD_SOCKET_DIR")
            .env_remove("KEYWARD_CONFIG")
            .env_remove("SSH_AUTH_SOCK");
        command
    }

    /// Runs `keyward ARGS` with `stdin` as input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .keyward()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run keyward");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, b"")
    }

    /// Runs a command that needs the passphrase, feeding it on stdin.
    pub fn run_with_passphrase(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--passphrase-fd", "0"]);
        self.run_with_input(&full, PASSPHRASE.as_bytes())
    }

    pub fn init(&self) {
        let output = self.run_with_passphrase(&["init"]);
        assert_success(&output, "keyward init");
    }

    pub fn keygen(&self, key_type: &str, name: &str) {
        let output = self.run_with_passphrase(&["keygen", "--type", key_type, "--name", name]);
        assert_success(&output, "keyward keygen");
    }

    pub fn keygen_with(&self, key_type: &str, name: &str, extra: &[&str]) {
        let mut args = vec!["keygen", "--type", key_type, "--name", name];
        args.extend_from_slice(extra);
        let output = self.run_with_passphrase(&args);
        assert_success(&output, "keyward keygen");
    }

    /// Writes the public key of `name` in OpenSSH format to a file.
    pub fn pubkey_file(&self, name: &str) -> PathBuf {
        let output = self.run(&["pubkey", name]);
        assert_success(&output, "keyward pubkey");
        let path = self.path(&format!("{name}.pub"));
        std::fs::write(&path, &output.stdout).unwrap();
        path
    }

    /// Starts `keyward daemon --foreground`, waiting until it listens.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(|_| {})
    }

    /// Starts the daemon after `adjust` changed its command (e.g. to run
    /// it as another uid).
    pub fn start_daemon_with(&self, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let log = self.path("daemon.log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut command = self.keyward();
        command.args(["daemon", "--foreground"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        adjust(&mut command);
        let child = command.spawn().expect("start the daemon");
        let daemon = Daemon { child, log };
        daemon.wait_for_socket(&self.agent_socket());
        daemon
    }

    pub fn unseal(&self) {
        let output = self.run_with_passphrase(&["unseal"]);
        assert_success(&output, "keyward unseal");
    }

    /// Init, two keys, a daemon, unsealed.
    pub fn running(key_types: &[(&str, &str)]) -> (Env, Daemon) {
        let env = Env::new();
        env.init();
        for (key_type, name) in key_types {
            env.keygen(key_type, name);
        }
        let daemon = env.start_daemon();
        env.unseal();
        (env, daemon)
    }
}

/// A daemon process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_for_socket(&self, socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the daemon did not listen on {} within 20 s; log:\n{}", socket.display(), self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, signal);
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(20));
        std::mem::forget(self);
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs an OpenSSH tool with `SSH_AUTH_SOCK` pointing at the daemon.
pub fn with_agent(program: &str, socket: &Path) -> Command {
    let mut command = Command::new(require_program(program));
    command.env("SSH_AUTH_SOCK", socket);
    command
}

/// Sends one raw frame body on a new connection and reads the reply body;
/// `None` when the daemon closed the connection instead.
pub fn raw_request(socket: &Path, frame: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;

    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream.write_all(frame).unwrap();
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}
