//! A test fixture: a throwaway keystore, a daemon on sockets in a temp
//! directory, and helpers to drive the real `keyward` binary and OpenSSH.
//! Raw ssh-agent requests are in the `agent` submodule.
#![allow(dead_code)]

pub mod agent;

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
        self.with_places(Command::new(keyward_binary()))
    }

    /// Runs `keyward ARGS` with `stdin` as input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut command = self.keyward();
        command.args(args);
        output_with_input(command, stdin)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, b"")
    }

    /// Runs a command that needs the passphrase, feeding it on stdin.
    pub fn run_with_passphrase(&self, args: &[&str]) -> Output {
        self.run_with_given_passphrase(args, PASSPHRASE.as_bytes())
    }

    /// Runs `keyward ARGS --passphrase-fd 0` with `passphrase` on stdin.
    pub fn run_with_given_passphrase(&self, args: &[&str], passphrase: &[u8]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--passphrase-fd", "0"]);
        self.run_with_input(&full, passphrase)
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
        let mut command = self.keyward();
        command.args(["daemon", "--foreground"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(self.daemon_log_file());
        adjust(&mut command);
        self.spawn_daemon(command)
    }

    /// Starts the daemon with `--config config`.
    pub fn start_daemon_with_config(&self, config: &Path) -> Daemon {
        self.start_daemon_with(|command| {
            command.arg("--config").arg(config);
        })
    }

    /// Opens `daemon.log` for appending, as the daemon's stderr.
    fn daemon_log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new().create(true).append(true).open(self.path("daemon.log")).unwrap()
    }

    /// Spawns a prepared daemon command and waits until it listens.
    fn spawn_daemon(&self, mut command: Command) -> Daemon {
        let child = command.spawn().expect("start the daemon");
        let daemon = Daemon { child, log: self.path("daemon.log") };
        daemon.wait_for_socket(&self.agent_socket());
        // The daemon binds the admin socket after the service socket.
        daemon.wait_for_socket(&self.admin_socket());
        daemon
    }

    pub fn unseal(&self) {
        let output = self.run_with_passphrase(&["unseal"]);
        assert_success(&output, "keyward unseal");
    }

    /// Creates a keystore in a new environment with a generated key for
    /// each (type, name), and starts no daemon.
    pub fn with_keys(key_types: &[(&str, &str)]) -> Env {
        let env = Env::new();
        env.init();
        for (key_type, name) in key_types {
            env.keygen(key_type, name);
        }
        env
    }

    /// Creates a keystore like [`Env::with_keys`], starts a daemon on it
    /// and unseals it.
    pub fn running(key_types: &[(&str, &str)]) -> (Env, Daemon) {
        let env = Env::with_keys(key_types);
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

/// Makes `command` run under `wrapper ARGS…`, keeping its own program,
/// arguments and environment, e.g. to run it under `prlimit` or `setpriv`.
pub fn wrap_with(command: &mut Command, wrapper: &Path, wrapper_args: &[impl AsRef<std::ffi::OsStr>]) {
    let mut replaced = Command::new(wrapper);
    replaced.args(wrapper_args).arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => replaced.env(key, value),
            None => replaced.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        replaced.current_dir(dir);
    }
    *command = replaced;
}

/// Runs `command` with `stdin` as its standard input and collects its
/// output.
pub fn output_with_input(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run the command");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Makes a key pair with `ssh-keygen -t key_type EXTRA` and no passphrase,
/// in `path` and `path.pub`.
pub fn ssh_keygen_new_key(path: &Path, key_type: &str, extra: &[&str]) {
    let output = Command::new(require_program("ssh-keygen"))
        .args(["-q", "-t", key_type, "-N", "", "-f"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    assert_success(&output, &format!("ssh-keygen -t {key_type}"));
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

/// Whether this process is root; tests that start sshd or change uids need it.
/// Prints why the calling test is skipped when it is not.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("skipping {test}: it must run as root (to start sshd or to switch uids)");
    false
}

/// Finds a free TCP port on 127.0.0.1 by binding port 0.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// Builds a command that runs `program` as another uid and gid through
/// `setpriv`, with exactly the supplementary `groups` given.
pub fn as_user(uid: u32, gid: u32, groups: &[u32], program: &Path) -> Command {
    let mut command = Command::new(require_program("setpriv"));
    command.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
    if groups.is_empty() {
        command.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        command.arg(format!("--groups={}", list.join(",")));
    }
    command.arg(program);
    command
}

impl Env {
    /// Adds this environment's places and the test-only cheap KDF to a
    /// command that runs the `keyward` binary (directly, or as the last
    /// argument of a launcher such as `setpriv`).
    pub fn with_places(&self, mut command: Command) -> Command {
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

    /// Links (or copies) `binary` into this environment's `bin` directory,
    /// so other uids can run it even when the build directory is private.
    pub fn reachable_copy(&self, binary: &Path) -> PathBuf {
        let dir = self.path("bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let target = dir.join(binary.file_name().unwrap());
        if !target.exists() && std::fs::hard_link(binary, &target).is_err() {
            std::fs::copy(binary, &target).unwrap();
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        target
    }

    /// A `keyward` command run as `uid` and `gid` with the supplementary
    /// `groups`, through `setpriv`.
    pub fn keyward_as(&self, uid: u32, gid: u32, groups: &[u32]) -> Command {
        self.with_places(as_user(uid, gid, groups, &self.reachable_copy(&keyward_binary())))
    }

    /// Runs `keyward ARGS` with `stdin` as standard input and the file
    /// `fd3` open as file descriptor 3 (for `--new-passphrase-fd 3` and
    /// `--source-passphrase-fd 3`).
    pub fn run_with_fd3(&self, args: &[&str], stdin: &[u8], fd3: &Path) -> Output {
        let mut shell = Command::new("/bin/sh");
        shell.args(["-c", "exec 3<\"$KEYWARD_TEST_FD3\"; exec \"$@\"", "sh"]).env("KEYWARD_TEST_FD3", fd3);
        shell.arg(keyward_binary());
        let mut command = self.with_places(shell);
        command.args(args);
        output_with_input(command, stdin)
    }

    /// Starts a daemon from a prepared `keyward ... daemon --foreground`
    /// command, logging to `daemon.log`, and waits until it listens.
    pub fn start_daemon_command(&self, mut command: Command) -> Daemon {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(self.daemon_log_file());
        self.spawn_daemon(command)
    }

    /// Returns the OpenSSH public key line of `name`, without its comment.
    pub fn public_key_line(&self, name: &str) -> String {
        let output = self.run(&["pubkey", name]);
        assert_success(&output, "keyward pubkey");
        stdout(&output).split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// Writes the public key file of `name` and returns its base64 key
    /// blob, as `ssh-add -L` prints it.
    pub fn public_key_base64(&self, name: &str) -> String {
        let line = std::fs::read_to_string(self.pubkey_file(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// Writes the public key file of `name` and returns its key blob.
    pub fn public_key_blob(&self, name: &str) -> Vec<u8> {
        use base64::Engine as _;

        base64::engine::general_purpose::STANDARD.decode(self.public_key_base64(name)).unwrap()
    }

    /// Writes the configuration file `keyward.toml` and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("keyward.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Returns `keyward status --json` as JSON.
    pub fn status_json(&self) -> serde_json::Value {
        let output = self.run(&["status", "--json"]);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("status --json: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

/// Polls `condition` every 20 ms until it is true or `limit` passes.
/// Returns whether it became true.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parses the audit lines in `text`. Lines that are not JSON (tracing
/// output on stderr) or carry no `event` are skipped.
pub fn parse_audit_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()).filter(|value| value.get("event").is_some()).collect()
}

/// Parses the audit lines of the file at `path`; none when it is missing.
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    parse_audit_lines(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Waits until `check` holds on an audit line of the file at `path`, up
/// to 10 s, and returns that line.
pub fn wait_for_audit_line(path: &Path, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut found = None;
    let appeared = wait_until(Duration::from_secs(10), || {
        found = audit_lines(path).into_iter().find(|line| check(line));
        found.is_some()
    });
    assert!(appeared, "no matching audit line in {}:\n{}", path.display(), std::fs::read_to_string(path).unwrap_or_default());
    found.unwrap()
}

/// Extracts the key lines (type and base64, no comment) `ssh-add -L` prints for a
/// client; empty when the agent lists no keys. `ssh-add -L` exits 1 with
/// no keys, so the exit status is not checked here.
pub fn listed_keys(output: &Output) -> Vec<String> {
    stdout(output)
        .lines()
        .filter(|line| line.starts_with("ssh-") || line.starts_with("ecdsa-"))
        .map(|line| line.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Signs `message`, fed on stdin, with `ssh-keygen -Y sign -n file` and the
/// key of the public key file `public`, through the agent at `socket`.
/// The signature is on the output's stdout.
pub fn ssh_keygen_sign(socket: &Path, public: &Path, message: &Path) -> Output {
    with_agent("ssh-keygen", socket)
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(public)
        .stdin(std::fs::File::open(message).unwrap())
        .output()
        .unwrap()
}

/// Signs the file `message` with `ssh-keygen -Y sign -n file` and the key
/// of the public key file `public`, through the agent at `socket`.
/// ssh-keygen writes the signature to `message` with `.sig` appended.
pub fn ssh_keygen_sign_file(socket: &Path, public: &Path, message: &Path) -> Output {
    with_agent("ssh-keygen", socket).args(["-Y", "sign", "-n", "file", "-f"]).arg(public).arg(message).output().unwrap()
}

/// Verifies an SSHSIG signature with `ssh-keygen -Y verify` against
/// `public_line` (an OpenSSH public key line); returns the output.
pub fn ssh_keygen_verify(dir: &Path, public_line: &str, namespace: &str, message: &Path, signature: &Path) -> Output {
    let allowed = dir.join("allowed_signers");
    std::fs::write(&allowed, format!("signer@test {public_line}\n")).unwrap();
    Command::new(require_program("ssh-keygen"))
        .args(["-Y", "verify", "-n", namespace, "-I", "signer@test", "-f"])
        .arg(&allowed)
        .arg("-s")
        .arg(signature)
        .stdin(std::fs::File::open(message).unwrap())
        .output()
        .unwrap()
}

/// An `sshd` on 127.0.0.1 with its configuration, host key, authorized
/// keys and pid file in a directory of its own. Killed when dropped.
pub struct Sshd {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Sshd {
    /// Starts sshd with `authorized_keys` as its only authorized keys and
    /// `extra_config` added to its configuration. Unless `extra_config`
    /// sets `HostKey`, sshd gets an Ed25519 host key file of its own.
    pub fn start(dir: &Path, authorized_keys: &str, extra_config: &str) -> Sshd {
        let sshd = require_program("sshd");
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        std::fs::create_dir_all(dir).unwrap();
        let authorized = dir.join("authorized_keys");
        std::fs::write(&authorized, authorized_keys).unwrap();

        let mut host_config = String::new();
        if !extra_config.lines().any(|line| line.starts_with("HostKey ")) {
            let host_key = dir.join("ssh_host_ed25519_key");
            if !host_key.exists() {
                ssh_keygen_new_key(&host_key, "ed25519", &[]);
            }
            host_config = format!("HostKey {}\n", host_key.display());
        }

        let log = dir.join("sshd.log");
        let config = dir.join("sshd_config");
        // A port found free may be taken by a parallel test before sshd
        // binds it; try a few.
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\n{host_config}{extra_config}\nPidFile {pid}\nAuthorizedKeysFile {authorized}\n\
                     StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel DEBUG1\n",
                    pid = dir.join("sshd.pid").display(),
                    authorized = authorized.display(),
                ),
            )
            .unwrap();
            let log_file = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("start sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                // Its own log line, not a TCP connect: another test's sshd
                // may listen on the same port when this one failed to bind.
                let listening = format!("Server listening on 127.0.0.1 port {port}");
                if std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&listening)) {
                    return Sshd { child, port, dir: dir.to_owned(), log };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An `ssh` client for this server that uses only the agent at
    /// `agent_socket` and the public key file `identity`, runs
    /// `echo logged-in`, and never prompts (BatchMode).
    /// `options` go before the destination.
    pub fn client(&self, agent_socket: &Path, identity: &Path, known_hosts: &Path, strict: &str, options: &[&str]) -> Command {
        let mut command = with_agent("ssh", agent_socket);
        command
            .arg("-F")
            .arg("/dev/null")
            .args(["-o", "IdentitiesOnly=yes", "-o"])
            .arg(format!("IdentityFile={}", identity.display()))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-o")
            .arg(format!("StrictHostKeyChecking={strict}"))
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "UpdateHostKeys=no", "-p"])
            .arg(self.port.to_string())
            .args(options)
            .args(["root@127.0.0.1", "echo", "logged-in"])
            .stdin(Stdio::null());
        command
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
