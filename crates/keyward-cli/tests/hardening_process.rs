//! Process hardening seen from outside: a same-uid process cannot ptrace
//! the daemon, and a crash of the daemon leaves no core file. Each check
//! runs the same attack on an ordinary process first and requires it to
//! work there (root can always attach, so the attacker is unprivileged).

mod common;
mod hardening_support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_until, Env};
use hardening_support::{as_unprivileged, helper_command, UNPRIVILEGED_UID};

/// Names the variable holding the command the attacker spawns as its own
/// child (arguments separated by newlines).
const CHILD_COMMAND: &str = "KEYWARD_TEST_HELPER_CHILD";

/// `kernel.yama.ptrace_scope`, or 0 (classic ptrace rules) without Yama.
fn ptrace_scope() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").map(|text| text.trim().parse().unwrap_or(0)).unwrap_or(0)
}

/// Runs inside the attacker: PTRACE_ATTACH to the pid in the helper
/// argument and prints `attached` or `denied: ERRNO`.
#[test]
#[ignore = "a helper process for the tests in this file, not a test"]
fn helper_ptrace_attach() {
    let Ok(argument) = std::env::var(hardening_support::HELPER_ARGUMENT) else { return };
    let pid = nix::unistd::Pid::from_raw(argument.parse().expect("a pid"));
    println!("{}", attach_and_detach(pid));
}

/// Runs inside the attacker: spawns the command in `CHILD_COMMAND` as its
/// own child (Yama's ptrace_scope 1 allows tracing descendants), waits
/// until the path in the helper argument accepts connections, if any,
/// then attaches and prints the result like `helper_ptrace_attach`.
#[test]
#[ignore = "a helper process for the tests in this file, not a test"]
fn helper_ptrace_attach_child() {
    let Ok(wait_for) = std::env::var(hardening_support::HELPER_ARGUMENT) else { return };
    let command = std::env::var(CHILD_COMMAND).expect("the child command");
    let mut words = command.split('\n');
    let mut child = Command::new(words.next().unwrap())
        .args(words)
        .env_remove(hardening_support::HELPER_ARGUMENT)
        .env_remove(CHILD_COMMAND)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    if !wait_for.is_empty() {
        let listening = wait_until(Duration::from_secs(20), || std::os::unix::net::UnixStream::connect(&wait_for).is_ok());
        assert!(listening, "the child did not listen on {wait_for}");
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let result = attach_and_detach(pid);
    // A successful attach can leave the child in a group stop, where
    // SIGTERM stays pending: continue it too.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    let _ = child.wait();
    println!("{result}");
}

fn attach_and_detach(pid: nix::unistd::Pid) -> String {
    match nix::sys::ptrace::attach(pid) {
        Ok(()) => {
            let _ = nix::sys::wait::waitpid(pid, None);
            let _ = nix::sys::ptrace::detach(pid, None);
            "attached".to_owned()
        }
        Err(errno) => format!("denied: {errno}"),
    }
}

/// Runs a helper as `UNPRIVILEGED_UID` and returns its last output line.
fn run_attacker(name: &str, argument: &str, child: Option<&[String]>) -> String {
    let mut setpriv = Command::new(common::require_program("setpriv"));
    setpriv.args(hardening_support::setpriv_args());
    let mut command = helper_command(Some(setpriv), name, argument);
    if let Some(child) = child {
        command.env(CHILD_COMMAND, child.join("\n")).env("KEYWARD_TEST_INSECURE_KDF", "1");
    }
    let mut attacker = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("run the attacker");
    let status = common::wait_timeout(&mut attacker, Duration::from_secs(60));
    assert!(status.success(), "the attacker failed: {status:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut attacker.stdout.take().unwrap(), &mut text).unwrap();
    text.lines()
        .map(str::trim)
        .rfind(|line| line.starts_with("attached") || line.starts_with("denied"))
        .unwrap_or_else(|| panic!("no result from the attacker:\n{text}"))
        .to_owned()
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Creates a keystore with one key and hands it to `UNPRIVILEGED_UID`.
fn unprivileged_env() -> Env {
    let env = Env::with_keys(&[("ed25519", "ed")]);
    hardening_support::give_to_unprivileged(&env);
    env
}

#[test]
fn same_uid_cannot_ptrace_daemon() {
    if !common::is_root() {
        eprintln!("skipped: the test switches uids with setpriv, which needs root");
        return;
    }
    let scope = ptrace_scope();
    if scope >= 2 {
        eprintln!("skipped: kernel.yama.ptrace_scope is {scope}, so no unprivileged process may attach to anything and the control cannot pass");
        return;
    }
    let env = unprivileged_env();
    let daemon = env.start_daemon_with(|command| hardening_support::wrap_unprivileged(&env, command));
    assert_eq!(uid_of(daemon.pid()), UNPRIVILEGED_UID, "the daemon does not run as the unprivileged uid");
    env.unseal();

    if scope == 0 {
        // Control: the attacker attaches to an ordinary process of its uid
        // that is not its descendant.
        let mut sleeper = as_unprivileged(Path::new("/bin/sleep")).arg("60").spawn().unwrap();
        wait_for_uid(sleeper.id(), UNPRIVILEGED_UID);
        let control = run_attacker("helper_ptrace_attach", &sleeper.id().to_string(), None);
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert_eq!(control, "attached", "the attacker could not attach to an ordinary process of its uid");

        let result = run_attacker("helper_ptrace_attach", &daemon.pid().to_string(), None);
        assert!(result.starts_with("denied"), "a same-uid process attached to the daemon: {result}");
    } else {
        eprintln!("kernel.yama.ptrace_scope is 1: only the parent-attacker case below applies");
    }

    // The attacker as the parent, which Yama's scope 1 also permits.
    let control = run_attacker("helper_ptrace_attach_child", "", Some(&["/bin/sleep".to_owned(), "60".to_owned()]));
    assert_eq!(control, "attached", "the attacker could not attach to its own child");
    let env2 = unprivileged_env();
    let mut daemon_command = vec![common::keyward_binary().display().to_string()];
    daemon_command.extend([
        "--keystore".to_owned(),
        env2.keystore.display().to_string(),
        "--socket-dir".to_owned(),
        env2.sockets.display().to_string(),
        "daemon".to_owned(),
        "--foreground".to_owned(),
    ]);
    let result = run_attacker("helper_ptrace_attach_child", env2.agent_socket().to_str().unwrap(), Some(&daemon_command));
    assert!(result.starts_with("denied"), "the daemon's parent, of the same uid, attached to it: {result}");
}

fn wait_for_uid(pid: u32, uid: u32) {
    let switched = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
            status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some(&uid.to_string()))
        })
    });
    assert!(switched, "process {pid} did not switch to uid {uid}");
}

/// Returns the soft and hard values of a line of /proc/PID/limits.
fn limit_of(pid: u32, name: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("no {name} in /proc/{pid}/limits"));
    let mut values = line[name.len()..].split_whitespace();
    (values.next().unwrap().to_owned(), values.next().unwrap().to_owned())
}

fn core_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("core"))
        .collect()
}

fn prlimit_core_unlimited() -> Vec<String> {
    vec!["--core=unlimited".to_owned(), "--".to_owned()]
}

#[test]
fn daemon_crash_leaves_no_core() {
    if !common::is_root() {
        eprintln!("skipped: /proc/PID/cwd of the non-dumpable daemon is readable only by root");
        return;
    }
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let pattern = pattern.trim();
    if pattern.starts_with('|') || pattern.contains('/') {
        eprintln!("skipped: core_pattern is {pattern:?}, not a file relative to the working directory");
        return;
    }
    let prlimit = common::require_program("prlimit");
    let env = Env::with_keys(&[("ed25519", "ed")]);
    let workdir = env.path("work");
    std::fs::create_dir(&workdir).unwrap();

    // Control: an ordinary process under the same wrapper in the same
    // directory dumps core.
    let mut sleeper = Command::new(&prlimit).args(prlimit_core_unlimited()).args(["/bin/sleep", "60"]).current_dir(&workdir).spawn().unwrap();
    let started = wait_until(Duration::from_secs(10), || {
        limit_of(sleeper.id(), "Max core file size").0 == "unlimited" && process_name(sleeper.id()) == "sleep"
    });
    assert!(started, "sleep did not start under prlimit");
    signal(sleeper.id(), rustix::process::Signal::SEGV);
    let status = sleeper.wait().unwrap();
    assert_eq!(status.signal(), Some(libc_sigsegv()), "sleep did not die of SIGSEGV: {status:?}");
    assert!(status.core_dumped(), "the control process did not dump core: is core dumping off on this host? {status:?}");
    let control_cores = core_files(&workdir);
    assert!(!control_cores.is_empty(), "the control process left no core file in {}", workdir.display());
    for name in control_cores {
        std::fs::remove_file(workdir.join(name)).unwrap();
    }

    // The daemon starts with the same unlimited core size and lowers it.
    let mut daemon = env.start_daemon_with(|command| {
        hardening_support::wrap_daemon(&env, command, &prlimit, &prlimit_core_unlimited());
        command.current_dir(&workdir);
    });
    env.unseal();
    let pid = daemon.pid();
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), workdir, "the daemon's working directory");
    assert_eq!(limit_of(pid, "Max core file size"), ("0".to_owned(), "0".to_owned()), "the daemon's core size limit");

    // Rust's runtime catches the first SIGSEGV for its stack-overflow check,
    // restores the default action and returns. A SIGSEGV from kill(2) is
    // not raised again by a faulting instruction, so a second one is sent.
    signal(pid, rustix::process::Signal::SEGV);
    wait_until(Duration::from_secs(2), || daemon.child.try_wait().unwrap().is_some());
    if daemon.child.try_wait().unwrap().is_none() {
        signal(pid, rustix::process::Signal::SEGV);
    }
    let status = common::wait_timeout(&mut daemon.child, Duration::from_secs(20));
    // The child is reaped: the fixture must not signal its pid again.
    std::mem::forget(daemon);
    assert_eq!(status.signal(), Some(libc_sigsegv()), "the daemon did not die of SIGSEGV: {status:?}");
    assert!(!status.core_dumped(), "the kernel reports a core dump of the daemon: {status:?}");
    assert!(core_files(&workdir).is_empty(), "the daemon left a core file: {:?}", core_files(&workdir));
}

fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), signal).unwrap();
}

fn libc_sigsegv() -> i32 {
    rustix::process::Signal::SEGV.as_raw()
}
