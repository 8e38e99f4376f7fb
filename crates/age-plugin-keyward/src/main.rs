//! `age-plugin-keyward`: lets `age -d` and `rage -d` decrypt with X25519
//! keys held by the Keyward daemon.
//!
//! age starts the plugin for `AGE-PLUGIN-KEYWARD-1…` identity lines (from
//! `keyward pubkey NAME --format age-plugin`) and speaks the identity-v1
//! protocol of <https://c2sp.org/age-plugin> on stdin and stdout. The
//! identity names the key by fingerprint; the socket is found as every
//! Keyward client finds it.
#![forbid(unsafe_code)]

mod daemon;
mod identity;

use std::convert::Infallible;
use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use age_plugin::{run_state_machine, PluginHandler};
use keyward::places::{self, Environment, AGENT_SOCKET};

use crate::daemon::SocketDaemon;
use crate::identity::KeywardIdentities;

const USAGE: &str = "\
age-plugin-keyward: decrypt age files with X25519 keys held by the Keyward daemon

age runs this program; you do not run it yourself. To decrypt:

    keyward pubkey NAME --format age-plugin > keyward-identity.txt
    age -d -i keyward-identity.txt FILE.age

Senders encrypt to the key's recipient, from `keyward pubkey NAME --format age`.

Options:
    --socket-dir DIR   directory of the daemon's agent.sock (default: $KEYWARD_SOCKET_DIR,
                       else /run/keyward if a daemon listens there, else $XDG_RUNTIME_DIR/keyward)
    --version          print the version
";

struct Handler {
    socket: PathBuf,
}

impl PluginHandler for Handler {
    type RecipientV1 = Infallible;
    type IdentityV1 = KeywardIdentities<SocketDaemon>;

    fn identity_v1(self) -> io::Result<Self::IdentityV1> {
        Ok(KeywardIdentities::new(SocketDaemon::new(&self.socket)))
    }
}

fn main() -> ExitCode {
    let mut state_machine = None;
    let mut socket_dir = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if let Some(name) = text.strip_prefix("--age-plugin=") {
            state_machine = Some(name.to_owned());
        } else if text == "--socket-dir" {
            match args.next() {
                Some(dir) => socket_dir = Some(PathBuf::from(dir)),
                None => return usage_error("--socket-dir needs a directory"),
            }
        } else if let Some(dir) = text.strip_prefix("--socket-dir=") {
            socket_dir = Some(PathBuf::from(dir));
        } else if text == "--version" {
            println!("age-plugin-keyward {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        } else if text == "--help" || text == "-h" {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        } else {
            return usage_error(&format!("unknown argument {text:?}"));
        }
    }

    let Some(state_machine) = state_machine else {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    };
    // File keys pass through this process: no core dumps, no same-uid ptrace.
    if let Err(error) = keyward_protect::process::harden_process() {
        eprintln!("age-plugin-keyward: cannot harden the process: {error}");
        return ExitCode::FAILURE;
    }
    let socket = agent_socket(socket_dir.as_deref());
    match run_state_machine(&state_machine, Handler { socket }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("age-plugin-keyward: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("age-plugin-keyward: {message}\nhint: run `age-plugin-keyward --help`");
    ExitCode::from(2)
}

/// The daemon's service socket, found as every Keyward client finds it.
fn agent_socket(flag: Option<&Path>) -> PathBuf {
    let env = Environment {
        keyward_socket_dir: non_empty_var("KEYWARD_SOCKET_DIR"),
        xdg_runtime_dir: non_empty_var("XDG_RUNTIME_DIR"),
        ..Environment::default()
    };
    let listening = |dir: &Path| UnixStream::connect(dir.join(AGENT_SOCKET)).is_ok();
    let dir = places::client_socket_dir(flag, &env, listening).unwrap_or_else(|_| PathBuf::from(places::SYSTEM_SOCKET_DIR));
    dir.join(AGENT_SOCKET)
}

fn non_empty_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|value: &OsString| !value.is_empty()).map(PathBuf::from)
}
