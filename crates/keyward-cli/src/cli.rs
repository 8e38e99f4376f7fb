//! Command-line syntax. The names here are a contract that scripts and
//! packages depend on; add to them, never rename.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "keyward", version, about = "Keeps private keys in a daemon's protected memory and serves signing and decryption over a unix socket")]
pub struct Cli {
    #[command(flatten)]
    pub places: Places,

    #[command(subcommand)]
    pub command: Command,
}

/// Places: each flag overrides an environment variable.
#[derive(Args, Clone, Debug, Default)]
pub struct Places {
    /// Keystore directory [env: KEYWARD_KEYSTORE] [default: /var/lib/keyward for root, else $XDG_DATA_HOME/keyward]
    #[arg(long, global = true, value_name = "DIR")]
    pub keystore: Option<PathBuf>,

    /// Socket directory holding agent.sock and admin.sock [env: KEYWARD_SOCKET_DIR] [default: /run/keyward for root, else $XDG_RUNTIME_DIR/keyward]
    #[arg(long, global = true, value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,

    /// Configuration file [env: KEYWARD_CONFIG] [default: keyward.toml in the keystore directory, if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Clone, Copy, Debug, Default)]
pub struct PassphraseSource {
    /// Read the keystore passphrase from this file descriptor (to EOF, one trailing newline removed) instead of the terminal
    #[arg(long, value_name = "N")]
    pub passphrase_fd: Option<i32>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a keystore protected by a new passphrase (calibrates the KDF for this machine)
    Init {
        #[command(flatten)]
        passphrase: PassphraseSource,
        /// Accept an empty passphrase (the keystore is then protected by nothing)
        #[arg(long)]
        allow_empty_passphrase: bool,
    },
    /// Generate a key, inside the daemon when it is unsealed on this keystore
    Keygen {
        /// Key type
        #[arg(long = "type", value_name = "TYPE", value_parser = ["ed25519", "ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096", "x25519", "mixmaster-1024", "mixmaster-4096"])]
        key_type: String,
        /// Name of the key in the keystore
        #[arg(long)]
        name: String,
        /// Comment shown by ssh-add -L and keyward list
        #[arg(long, default_value = "")]
        comment: String,
        /// Purpose of the key [default: sign for SSH types, decrypt for x25519, mixmaster for Mixmaster types]
        #[arg(long, value_parser = ["sign", "ssh-auth", "ssh-host", "sshsig", "decrypt", "agree", "mixmaster"])]
        purpose: Option<String>,
        /// First day the key may be used (YYYY-MM-DD, UTC)
        #[arg(long, value_name = "DATE")]
        not_before: Option<String>,
        /// Last day the key may be used (YYYY-MM-DD, UTC)
        #[arg(long, value_name = "DATE")]
        not_after: Option<String>,
        #[command(flatten)]
        passphrase: PassphraseSource,
    },
    /// Import private keys from a file
    Import {
        /// Name of the key (files with several keys get NAME-<key id prefix>)
        #[arg(long)]
        name: String,
        /// File format
        #[arg(long, value_enum, default_value_t = ImportFormat::Openssh)]
        format: ImportFormat,
        /// Read the file's own passphrase from this file descriptor (used as the exact bytes given)
        #[arg(long, value_name = "N")]
        source_passphrase_fd: Option<i32>,
        /// Purpose of the key [default: as for keygen]
        #[arg(long, value_parser = ["sign", "ssh-auth", "ssh-host", "sshsig", "decrypt", "agree", "mixmaster"])]
        purpose: Option<String>,
        /// Comment [default: the file's own comment, if it has one]
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        passphrase: PassphraseSource,
        /// The key file
        file: PathBuf,
    },
    /// List keys: names, types, purposes, fingerprints, validity, comments, attributes such as a Mixmaster key ID (works while sealed)
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a public key
    Pubkey {
        name: String,
        #[arg(long, value_enum, default_value_t = PubkeyFormat::Openssh)]
        format: PubkeyFormat,
    },
    /// Delete a key from the keystore (and from a running daemon); re-keys the keystore
    Remove {
        name: String,
        #[command(flatten)]
        passphrase: PassphraseSource,
    },
    /// Change the keystore passphrase; re-keys the keystore
    Passwd {
        #[command(flatten)]
        passphrase: PassphraseSource,
        /// Read the new passphrase from this file descriptor
        #[arg(long, value_name = "N")]
        new_passphrase_fd: Option<i32>,
    },
    /// Run the daemon; it detaches unless --foreground and starts sealed unless a passphrase source is given or a terminal is attached
    Daemon(DaemonArgs),
    /// Unseal the daemon with the keystore passphrase (admin socket)
    Unseal {
        #[command(flatten)]
        passphrase: PassphraseSource,
    },
    /// Seal the daemon: wipe every key from its memory (admin socket)
    Seal,
    /// Re-read the configuration without sealing (admin socket)
    Reload,
    /// Show the daemon's state; exits 0 when unsealed, 4 when sealed, 3 when no daemon is reachable
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Sign a file through the daemon; writes an armored SSH signature that ssh-keygen -Y verify accepts
    Sign {
        /// Name of the key
        #[arg(long)]
        key: String,
        /// SSHSIG namespace
        #[arg(long, default_value = "file")]
        namespace: String,
        /// File to sign, or - for standard input
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Decrypt an age file through the daemon, streaming, to standard output
    Decrypt {
        /// Name of the x25519 key [default: every x25519 key this user may decrypt with]
        #[arg(long)]
        key: Option<String>,
        /// age file (binary or armored), or - for standard input
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Mixmaster Type II remailer support
    #[command(subcommand)]
    Mixmaster(MixmasterCommand),
    /// Measure signing throughput and latency over an ssh-agent socket (any agent; batch mode needs Keyward)
    Bench(BenchArgs),
}

#[derive(Subcommand)]
pub enum MixmasterCommand {
    /// Process one Type II remailer message as received, doing the RSA step through the daemon; exits 0 (output on stdout, or nothing for a dummy or waiting part), 1 for a dropped packet, 3 or 4 when the daemon is unreachable or sealed (nothing dropped: defer and retry)
    Unwrap {
        /// The message as received by mail, or - for standard input
        #[arg(default_value = "-")]
        file: PathBuf,
    },
}


#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// The agent socket to load [default: none; required except for in-process and --populate]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Concurrent connections (threads for in-process)
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// How long to run
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// OpenSSH public-key file of the key to sign with
    #[arg(long, value_name = "FILE")]
    pub key_blob_from: Option<PathBuf>,
    /// sign: one request at a time; pipeline: DEPTH requests in flight per connection; batch: DEPTH signatures per batch@keyward request; in-process: sign without a daemon (the ceiling)
    #[arg(long, value_enum, default_value_t = BenchMode::Sign)]
    pub mode: BenchMode,
    /// Requests in flight per connection (pipeline) or items per batch (batch)
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// Add one more connection that sends a maximal frame a byte at a time, reconnecting when closed
    #[arg(long)]
    pub slow_client: bool,
    /// Socket the slow client connects to [default: --socket]; another agent's socket measures what the slow client costs the machine alone
    #[arg(long, value_name = "PATH")]
    pub slow_socket: Option<PathBuf>,
    /// Pause between the slow client's bytes, in microseconds
    #[arg(long, default_value_t = 100)]
    pub slow_interval_us: u64,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
    /// Instead of measuring: add N generated Ed25519 keys to the keystore (offline), to measure a daemon with many keys
    #[arg(long, value_name = "N")]
    pub populate: Option<usize>,
    #[command(flatten)]
    pub passphrase: PassphraseSource,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchMode {
    Sign,
    Pipeline,
    Batch,
    InProcess,
}

#[derive(Args, Clone, Debug)]
pub struct DaemonArgs {
    /// Stay in the foreground (for systemd and tests)
    #[arg(long)]
    pub foreground: bool,
    #[command(flatten)]
    pub passphrase: PassphraseSource,
    /// Unseal even when neither memfd_secret nor mlock is available
    #[arg(long)]
    pub allow_insecure_memory: bool,
    /// Where a detached daemon writes its log [default: daemon.log in the socket directory]
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Internal: the file descriptor a detached child reports readiness on
    #[arg(long, hide = true, value_name = "N")]
    pub ready_fd: Option<i32>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Openssh,
    Pkcs8,
    Age,
    #[value(name = "secring.mix")]
    SecringMix,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubkeyFormat {
    Openssh,
    Pem,
    Age,
    AgePlugin,
    Mixmaster,
}
