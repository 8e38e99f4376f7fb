//! Shared pieces of the hardening tests: a scanner of another process's
//! memory through `/proc/PID/maps` and `/proc/PID/mem`, a daemon run as an
//! unprivileged uid, and helper processes made by re-running this test
//! binary (so no interpreter has to be installed).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Env};

/// The uid the tests run daemons and attackers as. No user needs to exist.
pub const UNPRIVILEGED_UID: u32 = 4242;

/// The environment variable that turns an ignored helper test into a helper
/// process; its value is the helper's argument.
pub const HELPER_ARGUMENT: &str = "KEYWARD_TEST_HELPER_ARGUMENT";

/// A byte string the scanner looks for, with a label for messages.
#[derive(Clone)]
pub struct Needle {
    pub label: String,
    pub bytes: Vec<u8>,
}

impl Needle {
    pub fn new(label: impl Into<String>, bytes: &[u8]) -> Needle {
        assert!(bytes.len() >= 12, "a needle shorter than 12 bytes could match by chance");
        Needle { label: label.into(), bytes: bytes.to_vec() }
    }

    /// Returns the needle and 16-byte windows at its start, middle and end,
    /// so a partial copy of a long value is found too.
    pub fn with_windows(label: &str, bytes: &[u8]) -> Vec<Needle> {
        let mut needles = vec![Needle::new(label, bytes)];
        if bytes.len() > 48 {
            let middle = bytes.len() / 2 - 8;
            for (place, start) in [("start", 0), ("middle", middle), ("end", bytes.len() - 16)] {
                needles.push(Needle::new(format!("{label} ({place} 16 bytes)"), &bytes[start..start + 16]));
            }
        }
        needles
    }
}

/// A place where a needle was found.
#[derive(Debug, Clone)]
pub struct Hit {
    pub label: String,
    pub address: u64,
    pub mapping: String,
}

/// What one scan of a process read and found.
#[derive(Debug, Default)]
pub struct Scan {
    pub bytes_read: u64,
    /// Mappings whose reads failed, with the error (EIO on memfd_secret).
    pub unreadable: Vec<(String, String)>,
    pub hits: Vec<Hit>,
}

impl Scan {
    pub fn found(&self, label_prefix: &str) -> Vec<&Hit> {
        self.hits.iter().filter(|hit| hit.label.starts_with(label_prefix)).collect()
    }

    /// Mappings that memfd_secret(2) made and that reads refused.
    pub fn unreadable_secretmem(&self) -> usize {
        self.unreadable.iter().filter(|(mapping, _)| mapping.contains("secretmem")).count()
    }

    pub fn describe(&self) -> String {
        let hits: Vec<String> =
            self.hits.iter().map(|hit| format!("  {} at {:#x} in {}", hit.label, hit.address, hit.mapping)).collect();
        let unreadable: Vec<String> =
            self.unreadable.iter().map(|(mapping, error)| format!("  {mapping}: {error}")).collect();
        format!(
            "read {} bytes\nhits:\n{}\nunreadable mappings:\n{}",
            self.bytes_read,
            hits.join("\n"),
            unreadable.join("\n")
        )
    }
}

/// Reads every readable mapping of `pid` and looks for each needle.
///
/// The process is stopped with SIGSTOP during the scan so it reads one
/// consistent state, and continued afterwards. Mappings that cannot be
/// read (memfd_secret pages give EIO, `[vvar]` and `[vsyscall]` fail too)
/// are listed in `unreadable` and skipped.
pub fn scan_process(pid: u32, needles: &[Needle]) -> Scan {
    let target = rustix::process::Pid::from_raw(pid as i32).expect("a valid pid");
    rustix::process::kill_process(target, rustix::process::Signal::STOP).expect("stop the scanned process");
    wait_for_state(pid, 'T');
    let scan = scan_stopped(pid, needles);
    rustix::process::kill_process(target, rustix::process::Signal::CONT).expect("continue the scanned process");
    scan
}

fn scan_stopped(pid: u32, needles: &[Needle]) -> Scan {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read /proc/PID/maps");
    let memory = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let finders: Vec<memchr::memmem::Finder> = needles.iter().map(|needle| memchr::memmem::Finder::new(&needle.bytes)).collect();
    let overlap = needles.iter().map(|needle| needle.bytes.len()).max().unwrap_or(1) - 1;
    let mut scan = Scan::default();
    const CHUNK: u64 = 1 << 20;

    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms)) = (fields.first(), fields.get(1)) else { continue };
        if !perms.starts_with('r') {
            continue;
        }
        let (start, end) = range.split_once('-').expect("maps range");
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let name = fields.get(5..).map(|rest| rest.join(" ")).unwrap_or_default();
        let mapping = format!("{range} {perms} {name}");

        let mut offset = start;
        let mut carry: Vec<u8> = Vec::new();
        while offset < end {
            let length = CHUNK.min(end - offset) as usize;
            let mut buffer = vec![0u8; length];
            if let Err(error) = memory.read_exact_at(&mut buffer, offset) {
                scan.unreadable.push((mapping.clone(), error.to_string()));
                break;
            }
            scan.bytes_read += length as u64;
            let base = offset - carry.len() as u64;
            let mut window = std::mem::take(&mut carry);
            window.extend_from_slice(&buffer);
            for (needle, finder) in needles.iter().zip(&finders) {
                for position in finder.find_iter(&window) {
                    scan.hits.push(Hit { label: needle.label.clone(), address: base + position as u64, mapping: mapping.clone() });
                }
            }
            let keep = overlap.min(window.len());
            carry = window[window.len() - keep..].to_vec();
            offset += length as u64;
        }
    }
    scan
}

/// Waits until `/proc/PID/stat` shows the process in `state` (e.g. 'T').
pub fn wait_for_state(pid: u32, state: char) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if process_state(pid) == Some(state) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("process {pid} did not reach state {state} within 10 s (now {:?})", process_state(pid));
}

pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain spaces; the state follows it.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Returns the `setpriv` arguments that run a program as
/// `UNPRIVILEGED_UID` with no supplementary groups.
pub fn setpriv_args() -> Vec<String> {
    let id = UNPRIVILEGED_UID.to_string();
    ["--reuid", &id, "--regid", &id, "--clear-groups", "--"].map(str::to_owned).to_vec()
}

/// Builds a command that runs `program` as `UNPRIVILEGED_UID`.
pub fn as_unprivileged(program: &Path) -> Command {
    let mut command = Command::new(common::require_program("setpriv"));
    command.args(setpriv_args()).arg(program);
    command
}

/// Hands the keystore (and a socket directory made here) to
/// `UNPRIVILEGED_UID`, so a daemon running as that uid can serve them.
pub fn give_to_unprivileged(env: &Env) {
    std::fs::create_dir_all(&env.sockets).unwrap();
    std::fs::set_permissions(&env.sockets, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for path in [&env.keystore, &env.sockets] {
        let status = Command::new("chown")
            .args(["-R", &format!("{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}")])
            .arg(path)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown {} failed", path.display());
    }
}

/// Wraps the daemon command of `Env::start_daemon_with` in `wrapper ARGS…`
/// and sets its standard streams again (a new `Command` loses them): the
/// log goes to the fixture's `daemon.log`.
pub fn wrap_daemon(env: &Env, command: &mut Command, wrapper: &Path, wrapper_args: &[String]) {
    common::wrap_with(command, wrapper, wrapper_args);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(env.path("daemon.log")).unwrap();
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
}

/// Wraps the daemon command so the daemon runs as `UNPRIVILEGED_UID`.
pub fn wrap_unprivileged(env: &Env, command: &mut Command) {
    wrap_daemon(env, command, &common::require_program("setpriv"), &setpriv_args());
}

/// Builds a command that re-runs this test binary as the ignored helper test
/// `name`, with `argument` in `HELPER_ARGUMENT`. A `program` such as
/// `setpriv ARGS…` wraps it; the test binary's path is appended to it.
pub fn helper_command(program: Option<Command>, name: &str, argument: &str) -> Command {
    let mut command = program.unwrap_or_else(|| Command::new(std::env::current_exe().unwrap()));
    if command.get_program() != std::env::current_exe().unwrap().as_os_str() {
        command.arg(std::env::current_exe().unwrap());
    }
    command
        .args(["--ignored", "--exact", name, "--nocapture", "--test-threads", "1", "-q"])
        .env(HELPER_ARGUMENT, argument);
    command
}

/// Spawns `command` with piped stdio and waits for the line `ready`.
pub fn spawn_until_ready(mut command: Command) -> (Child, std::process::ChildStdin, BufReader<std::process::ChildStdout>) {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn helper");
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("the helper exited before it was ready: {:?}", child.wait());
        }
        if line.trim() == "ready" {
            break;
        }
    }
    (child, stdin, stdout)
}

/// Runs inside a helper process: keeps the canary (hex in the helper
/// argument) on the heap of a non-dumpable process, like the daemon, until
/// stdin closes.
pub fn hold_canary_helper() {
    let Ok(hex) = std::env::var(HELPER_ARGUMENT) else { return };
    keyward_protect::process::harden_process().expect("harden the canary process");
    let canary: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    // The hex text stays in the environment; the scanner looks for the
    // decoded bytes, which exist only in this heap buffer.
    let kept_canary = std::hint::black_box(canary);
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    std::hint::black_box(&kept_canary);
}

/// Random bytes from the kernel.
pub fn random_bytes(length: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; length];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    bytes
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Creates a pipe that is already full, so a process writing to it blocks.
pub fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    let capacity = rustix::pipe::fcntl_getpipe_size(&writer).unwrap();
    let written = rustix::io::write(&writer, &vec![b'.'; capacity]).unwrap();
    assert_eq!(written, capacity, "the pipe took fewer bytes than its capacity");
    (reader, writer)
}

/// Waits until `pid` sleeps in a write to its stdout or stderr pipe:
/// `/proc/PID/wchan` names `pipe_write`, or, on kernels that show no
/// symbol there, `/proc/PID/syscall` shows write(2) on fd 1 or 2.
pub fn wait_blocked_in_pipe_write(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        let blocked = process_state(pid) == Some('S')
            && (wchan.contains("pipe_write") || syscall.starts_with(&format!("{WRITE_SYSCALL} 0x1 "))
                || syscall.starts_with(&format!("{WRITE_SYSCALL} 0x2 ")));
        if blocked {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("process {pid} did not block writing to its stdout or stderr pipe within 20 s");
}

/// The number of write(2) as `/proc/PID/syscall` shows it.
#[cfg(target_arch = "x86_64")]
const WRITE_SYSCALL: u32 = 1;
#[cfg(target_arch = "aarch64")]
const WRITE_SYSCALL: u32 = 64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const WRITE_SYSCALL: u32 = u32::MAX;

/// The standard stream a paused client blocks on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Runs `command` with stderr on a full pipe, so its first message blocks
/// it (Keyward's clients write their result last, after they are done
/// with the passphrase). Calls `inspect` with the blocked process's pid,
/// then drains the pipe and waits. Returns the exit status and stderr.
pub fn run_paused_at_first_message(command: Command, inspect: impl FnOnce(u32)) -> (std::process::ExitStatus, String) {
    run_paused_at_first_output(command, Stream::Stderr, inspect)
}

/// Like `run_paused_at_first_message`, on the stream given; the other
/// stream is discarded.
pub fn run_paused_at_first_output(mut command: Command, stream: Stream, inspect: impl FnOnce(u32)) -> (std::process::ExitStatus, String) {
    let (reader, writer) = full_pipe();
    match stream {
        Stream::Stdout => command.stdout(Stdio::from(writer)).stderr(Stdio::null()),
        Stream::Stderr => command.stdout(Stdio::null()).stderr(Stdio::from(writer)),
    };
    let mut child = command.spawn().unwrap();
    // The command holds the parent's copy of the write end: close it, or
    // the reader never sees end of file.
    drop(command);
    wait_blocked_in_pipe_write(child.id());
    inspect(child.id());
    let drained = drain_full_pipe(reader);
    let status = common::wait_timeout(&mut child, Duration::from_secs(20));
    (status, drained.join().unwrap())
}

/// Reads the read end of a pipe from [`full_pipe`] to its end on another
/// thread, which unblocks its writers. Returns what they wrote, without
/// the dots that filled the pipe.
pub fn drain_full_pipe(reader: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        std::fs::File::from(reader).read_to_end(&mut text).unwrap();
        String::from_utf8_lossy(&text).trim_start_matches('.').to_owned()
    })
}
