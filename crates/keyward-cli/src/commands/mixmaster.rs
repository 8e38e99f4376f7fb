//! `keyward mixmaster unwrap`, the `[mixmaster]` settings, and the Mixmaster
//! parts of `import`, `keygen` and `pubkey`.
//!
//! `unwrap` processes one Type II message as a remailer receives it. The
//! daemon does the one private-key step (the first header's RSA block); this
//! process does everything symmetric, and keeps the replay cache and the
//! parts of multi-part messages in the state directory.
//!
//! Outcomes: 0 with the mail on stdout (final hop, or the packet for the
//! next remailer), 0 with nothing (dummy traffic, a part still waiting for
//! others), 1 with one line "dropped: invalid packet" (every invalid packet,
//! replays included; the reason goes to the debug log only), 3 or 4 when the
//! daemon is unreachable or sealed (nothing is recorded, so the mail system
//! can defer and retry).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use keyward::agent::extensions::FailureCode;
use keyward::client::{AgentClient, ClientError};
use keyward::config::{Config, MixmasterConfig};
use keyward::keys::KeyType;
use keyward::keystore::{Entry, EntryMeta};
use keyward_mixmaster::{
    format_final_mail, format_next_hop_mail, parse_final_payload, parse_packet, FinalMailConfig, Invalid,
    InvalidReason, Reassembly, RemailerInfo, ReplayCache, Unwrapped, SECONDS_PER_DAY,
};
use zeroize::Zeroizing;

use crate::cli::PassphraseSource;
use crate::context::{self, Context};
use crate::error::{CliError, ExitCode, Result};
use crate::passphrase;

/// Largest message read; a Type II message as mailed is about 28 KB.
const MAX_MESSAGE: u64 = 1 << 20;
/// Days the parts of an incomplete multi-part message are kept, counted
/// from the first part (Mixmaster's `PACKETEXP` default, 7 days).
const PARTIAL_RETENTION_DAYS: u64 = 7;
/// The line every dropped packet gets on stderr.
const DROPPED: &str = "dropped: invalid packet";

const REPLAY_FILE: &str = "replay";
const PARTIAL_DIR: &str = "partial";
const LOCK_FILE: &str = "lock";
const PARTIAL_MAGIC: &[u8] = b"keyward-mixmaster-partial 1\n";

/// Settings of the `[mixmaster]` config section.
pub struct Settings {
    /// Replay cache and partial messages; default `<keystore>/mixmaster`.
    pub state_dir: PathBuf,
    /// `From:` of delivered mail (Mixmaster's `ANONADDR`).
    pub anon_from: Option<String>,
    /// Abuse contact in the `Comments:` notice (Mixmaster's `COMPLAINTS`).
    pub complaints: Option<String>,
    /// Domain of `Message-ID:` of delivered mail.
    pub message_id_domain: Option<String>,
    /// Short remailer name in `key.txt` (Mixmaster's `SHORTNAME`).
    pub name: Option<String>,
    /// The remailer's address (Mixmaster's `REMAILERADDR`): `key.txt`, and
    /// `From:` of packets sent to the next remailer.
    pub address: Option<String>,
    /// Version in `key.txt` (`2:VERSION`) and in `Remailer-Type:`.
    pub version: String,
    /// Capability letters in `key.txt`.
    pub options: String,
}

/// Returns the domain part of an address such as `Name <user@domain>`.
fn domain_of(address: &str) -> Option<&str> {
    let inner = match (address.find('<'), address.rfind('>')) {
        (Some(start), Some(end)) if start < end => &address[start + 1..end],
        _ => address,
    };
    let domain = inner.rsplit_once('@')?.1.trim();
    (!domain.is_empty()).then_some(domain)
}

impl Settings {
    /// Reads the section. A setting this version does not know is an error,
    /// and so is a value with a control character, because it would end up
    /// in a mail header.
    pub fn from_config(config: &MixmasterConfig, keystore: &Path) -> Result<Settings> {
        let check = |name: &str, value: &str| -> Result<String> {
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err(CliError::failed(format!(
                    "[mixmaster] {name} must be non-empty text on one line without control characters"
                )));
            }
            Ok(value.to_owned())
        };
        let mut settings = Settings {
            state_dir: config.state_dir.clone().unwrap_or_else(|| keystore.join("mixmaster")),
            anon_from: config.anon_from.as_deref().map(|value| check("anon_from", value)).transpose()?,
            complaints: None,
            message_id_domain: None,
            name: None,
            address: None,
            version: "3.0".to_owned(),
            options: "C".to_owned(),
        };
        for (name, value) in &config.extra {
            let value = check(name, value)?;
            match name.as_str() {
                "complaints" => settings.complaints = Some(value),
                "message_id_domain" => settings.message_id_domain = Some(value),
                "name" => settings.name = Some(value),
                "address" => settings.address = Some(value),
                "version" => settings.version = value,
                "options" => settings.options = value,
                _ => {
                    return Err(CliError::failed(format!("unknown setting {name:?} in the [mixmaster] section")).hint(
                        "known settings: state_dir, anon_from, complaints, message_id_domain, name, address, version, options",
                    ))
                }
            }
        }
        for (name, value) in [("name", &settings.name), ("address", &settings.address), ("version", &Some(settings.version.clone())), ("options", &Some(settings.options.clone()))] {
            if value.as_deref().is_some_and(|text| text.contains(char::is_whitespace)) {
                return Err(CliError::failed(format!("[mixmaster] {name} must not contain spaces (it is one field of the key.txt line)")));
            }
        }
        Ok(settings)
    }

    /// Reads the config file of this keystore, if there is one.
    pub fn load(context: &Context, keystore: &Path) -> Result<Settings> {
        let config = match context.config_file(keystore) {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| CliError::failed(format!("cannot read {}: {error}", path.display())))?;
                Config::parse(&text).map_err(|error| CliError::failed(format!("{}: {error}", path.display())))?
            }
        };
        Settings::from_config(&config.mixmaster, keystore)
    }

    fn required<'a>(value: &'a Option<String>, name: &str, why: &str) -> Result<&'a str> {
        value.as_deref().ok_or_else(|| {
            CliError::failed(format!("the [mixmaster] section of the config file has no {name}; it is needed {why}"))
                .hint(format!("add e.g. {name} = \"...\" under [mixmaster] in keyward.toml"))
        })
    }

    /// Returns the settings delivered mail needs: `anon_from`, and the abuse
    /// address and Message-ID domain, which default to `abuse@` and the
    /// domain of `anon_from`.
    fn final_mail(&self) -> Result<FinalMailConfig> {
        let anon_from = Self::required(&self.anon_from, "anon_from", "for the From: line of delivered mail")?;
        let domain = domain_of(anon_from).map(str::to_owned);
        let complaints = match (&self.complaints, &domain) {
            (Some(address), _) => address.clone(),
            (None, Some(domain)) => format!("abuse@{domain}"),
            (None, None) => Self::required(&None, "complaints", "because anon_from names no domain")?.to_owned(),
        };
        let message_id_domain = match (&self.message_id_domain, domain) {
            (Some(value), _) => value.clone(),
            (None, Some(domain)) => domain,
            (None, None) => Self::required(&None, "message_id_domain", "because anon_from names no domain")?.to_owned(),
        };
        Ok(FinalMailConfig { anon_from: anon_from.to_owned(), complaints, message_id_domain })
    }
}

/// `keyward pubkey NAME --format mixmaster`: the `key.txt` block.
pub fn key_txt(context: &Context, keystore: &Path, entry: &EntryMeta) -> Result<String> {
    let key = keyward::mixmaster::PublicKey::parse(&entry.public_key)
        .map_err(|_| CliError::failed(format!("{:?} is a {} key, not a Mixmaster key", entry.name, entry.key_type)))?;
    let settings = Settings::load(context, keystore)?;
    let why = "for the capability line of key.txt";
    let info = RemailerInfo {
        name: Settings::required(&settings.name, "name", why)?,
        address: Settings::required(&settings.address, "address", why)?,
        version: &settings.version,
        options: &settings.options,
    };
    let created = entry.not_before.unwrap_or(entry.created);
    let expires = entry.not_after.ok_or_else(|| {
        CliError::failed(format!("{:?} has no expiry date, which key.txt needs", entry.name))
            .hint("generate a fresh key with `keyward keygen --type mixmaster-4096`")
    })?;
    Ok(key.key_txt(&info, created, expires))
}

/// Validity of a key about to be generated: for Mixmaster types, the dates
/// not given default to today and to the end of Mixmaster's lifetime (390
/// days for 1024-bit keys, 180 for larger ones). Other types keep theirs.
pub fn keygen_validity(key_type: KeyType, not_before: Option<u64>, not_after: Option<u64>) -> (Option<u64>, Option<u64>) {
    let KeyType::Mixmaster(bits) = key_type else { return (not_before, not_after) };
    let (created, expires) = keyward::mixmaster::fresh_key_validity(bits, context::now());
    // 1970-01-01 is stored as "no bound".
    let nonzero = |value: u64| (value != 0).then_some(value);
    (not_before.or(nonzero(created)), not_after.or(nonzero(expires)))
}

/// `keyward import --format secring.mix`: every key of the ring, named
/// NAME when it contains one key and NAME-<first 8 hex digits of the Mixmaster
/// key ID> when it contains several; all or nothing.
#[allow(clippy::too_many_arguments)]
pub fn import(
    context: &Context,
    name: &str,
    source_passphrase_fd: Option<i32>,
    purpose: Option<&str>,
    comment: Option<String>,
    source: PassphraseSource,
    file: &Path,
    ring: &[u8],
) -> Result<()> {
    let ring_passphrase = passphrase::source(source_passphrase_fd)?;
    let keys = keyward::mixmaster::import_secring(ring, &ring_passphrase)
        .map_err(|error| CliError::failed(format!("cannot import {}: {error}", file.display())))?;
    drop(ring_passphrase);

    let now = context::now();
    let several = keys.len() > 1;
    let mut entries = Vec::with_capacity(keys.len());
    for key in keys {
        let purpose = super::keys::resolve_purpose(key.key_type, purpose)?;
        let key_id = key.key_id.to_hex();
        let key_name = if several { format!("{name}-{}", &key_id[..8]) } else { name.to_owned() };
        if !keyward_mixmaster::key_usable(key.created, key.expires, now) {
            eprintln!(
                "warning: {key_name} (Mixmaster key {key_id}) is outside its validity ({} to {} plus 7 days); the daemon will refuse to use it",
                keyward_mixmaster::format_date(key.created),
                keyward_mixmaster::format_date(key.expires)
            );
        }
        let meta = EntryMeta {
            name: key_name,
            key_type: key.key_type.to_string(),
            purpose: purpose.to_string(),
            comment: comment.clone().unwrap_or_else(|| format!("Mixmaster key {key_id}")),
            public_key: key.public_blob,
            created: now,
            not_before: (key.created != 0).then_some(key.created),
            not_after: (key.expires != 0).then_some(key.expires),
            attributes: vec![(keyward::mixmaster::KEY_ID_ATTRIBUTE.to_owned(), key_id)],
        };
        entries.push(Entry { meta, private: key.private });
    }
    super::keys::add_entries(context, entries, source)?;
    eprintln!(
        "warning: this key sat on disk next to its passphrase, perhaps for years; treat it as exposed. \
Replace it soon: generate a fresh key (`keyward keygen --type mixmaster-4096 --name NEW`), publish its key.txt \
(`keyward pubkey NEW --format mixmaster`), and remove the imported one once senders use the new key."
    );
    Ok(())
}

/// The reason a packet is dropped, for the debug log only.
enum DropReason {
    /// The packet's own checks failed. A bad RSA block ends here too, at
    /// the same checks as a damaged header.
    Packet(Invalid),
    /// The daemon refused the key ID (unknown, expired) or the block.
    Key,
    Replay,
    Partial(&'static str),
    /// The next hop field contains more than one address.
    NextHop,
    TooLarge,
}

impl DropReason {
    fn describe(&self) -> String {
        match self {
            // Checks that a wrong RSA plaintext fails, reported as one.
            DropReason::Packet(invalid)
                if matches!(
                    invalid.reason(),
                    InvalidReason::BodyHmac
                        | InvalidReason::HeaderPartHmac
                        | InvalidReason::NextSlotsHmac
                        | InvalidReason::HeaderDigest
                        | InvalidReason::UnknownPacketType(_)
                ) =>
            {
                "the header does not decrypt and verify (damaged, or made for another key)".to_owned()
            }
            DropReason::Packet(invalid) => format!("{:?}", invalid.reason()),
            DropReason::Key => "the daemon refused the key ID or the block (no such key, or expired)".to_owned(),
            DropReason::Replay => "packet ID seen before (replay)".to_owned(),
            DropReason::Partial(why) => format!("multi-part message: {why}"),
            DropReason::NextHop => "the next hop field is not one address".to_owned(),
            DropReason::TooLarge => format!("message larger than {MAX_MESSAGE} bytes"),
        }
    }
}

enum Outcome {
    /// Print this mail.
    Mail(Vec<u8>),
    /// Dummy traffic or a part still waiting: print nothing.
    Nothing,
    Dropped(DropReason),
}

pub fn unwrap(context: &Context, file: &Path) -> Result<()> {
    init_logging();
    match process(context, file)? {
        Outcome::Mail(mail) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&mail)
                .and_then(|()| stdout.flush())
                .map_err(|error| CliError::failed(format!("cannot write the mail to standard output: {error}")))?;
            Ok(())
        }
        Outcome::Nothing => Ok(()),
        Outcome::Dropped(why) => {
            tracing::debug!(reason = %why.describe(), "dropped a packet");
            eprintln!("{DROPPED}");
            std::process::exit(ExitCode::Failed as i32);
        }
    }
}

/// Sets up logging to stderr, with debug lines only when `KEYWARD_LOG`
/// requests them.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

fn read_message(file: &Path) -> Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    let result = if file == Path::new("-") {
        std::io::stdin().lock().take(MAX_MESSAGE + 1).read_to_end(&mut bytes)
    } else {
        File::open(file).and_then(|handle| handle.take(MAX_MESSAGE + 1).read_to_end(&mut bytes))
    };
    result.map_err(|error| CliError::failed(format!("cannot read {}: {error}", file.display())))?;
    Ok((bytes.len() as u64 <= MAX_MESSAGE).then_some(bytes))
}

fn process(context: &Context, file: &Path) -> Result<Outcome> {
    let keystore = context.keystore_dir()?;
    let settings = Settings::load(context, &keystore)?;
    // Check the settings before any packet is touched, so that a missing
    // one never drops mail.
    let final_config = settings.final_mail()?;
    let address = Settings::required(&settings.address, "address", "for the From: line of packets sent on")?.to_owned();

    let Some(message) = read_message(file)? else { return Ok(Outcome::Dropped(DropReason::TooLarge)) };
    let packet = match parse_packet(&message) {
        Ok(packet) => packet,
        Err(invalid) => return Ok(Outcome::Dropped(DropReason::Packet(invalid))),
    };

    let plaintext = match rsa_step(context, &packet)? {
        Some(plaintext) => plaintext,
        None => return Ok(Outcome::Dropped(DropReason::Key)),
    };
    let now = context::now();
    let unwrapped = match packet.unwrap(&plaintext, now) {
        Ok(unwrapped) => unwrapped,
        Err(invalid) => return Ok(Outcome::Dropped(DropReason::Packet(invalid))),
    };
    drop(plaintext);

    let state = StateDir::lock(&settings.state_dir)?;
    let mut cache = state.load_replay_cache(now)?;
    if !cache.check_and_insert(unwrapped.packet_id(), now) {
        return Ok(Outcome::Dropped(DropReason::Replay));
    }
    let outcome = match unwrapped {
        Unwrapped::Final { mail, .. } => Outcome::Mail(format_final_mail(&mail, &final_config)),
        Unwrapped::Dummy { .. } => Outcome::Nothing,
        Unwrapped::Intermediate { next_hop_address, packet_for_next_hop, .. } => {
            if next_hop_address.is_empty() || next_hop_address.iter().any(|&b| b.is_ascii_control() || b == b' ') {
                return Ok(Outcome::Dropped(DropReason::NextHop));
            }
            let remailer_type = format!("Mixmaster {}", settings.version);
            Outcome::Mail(format_next_hop_mail(
                address.as_bytes(),
                &next_hop_address,
                remailer_type.as_bytes(),
                &packet_for_next_hop,
            ))
        }
        Unwrapped::Partial { message_id, chunk, chunks, payload, .. } => {
            let mut message = state.load_partial(&message_id, now)?;
            if let Err(error) = message.add(chunk, chunks, &payload) {
                tracing::debug!(%error, "part does not fit its message");
                return Ok(Outcome::Dropped(DropReason::Partial("part does not fit the parts received before")));
            }
            match message.reassembly.complete_payload() {
                None => {
                    state.save_partial(&message_id, &message)?;
                    Outcome::Nothing
                }
                Some(payload) => {
                    state.remove_partial(&message_id)?;
                    match parse_final_payload(&payload) {
                        Ok(Some(mail)) => Outcome::Mail(format_final_mail(&mail, &final_config)),
                        Ok(None) => Outcome::Nothing,
                        Err(invalid) => {
                            state.save_replay_cache(&cache)?;
                            return Ok(Outcome::Dropped(DropReason::Packet(invalid)));
                        }
                    }
                }
            }
        }
    };
    state.save_replay_cache(&cache)?;
    state.expire_partials(now)?;
    Ok(outcome)
}

/// Has the daemon decrypt the packet's RSA block. `None`: the daemon
/// refused the key ID or the block, so the packet is dropped. Errors leave
/// the packet untouched: exit 3 when the daemon cannot be reached, 4 when
/// it is sealed, 5 when this user may use no Mixmaster key at all (a policy
/// mistake must not drop mail).
fn rsa_step(context: &Context, packet: &keyward_mixmaster::Packet) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let unreachable = |error: ClientError| -> CliError {
        CliError::with_code(ExitCode::NoDaemon, format!("cannot use the daemon: {error}"))
            .hint("nothing was dropped; deliver the message again once the daemon runs")
    };
    let socket = context
        .agent_socket()
        .map_err(|error| CliError::with_code(ExitCode::NoDaemon, error.message))?;
    let mut client = AgentClient::connect(&socket)
        .map_err(|error| CliError::from(error).hint("nothing was dropped; deliver the message again once the daemon runs"))?;
    let out_len = packet.rsa_out_len as u32;
    match client.mixmaster_rsa(&packet.key_id.0, &packet.rsa_block, out_len).map_err(unreachable)? {
        Ok(plaintext) => Ok(Some(plaintext)),
        Err(Some(FailureCode::Sealed)) => Err(CliError::with_code(ExitCode::Sealed, "the daemon is sealed")
            .hint("nothing was dropped; unseal it with `keyward unseal` and deliver the message again")),
        Err(Some(FailureCode::InvalidRequest)) => Ok(None),
        Err(Some(FailureCode::Refused) | None) => {
            let keys = client.list().map_err(unreachable)?;
            let usable = keys.iter().any(|key| key.key_type.starts_with("mixmaster-") && key.operations.iter().any(|op| op == "mixmaster"));
            if usable {
                Ok(None)
            } else {
                Err(CliError::with_code(ExitCode::Refused, "the daemon lets this user use no Mixmaster key")
                    .hint("nothing was dropped; grant the operation with a [[key]] rule: operations = [\"mixmaster\"]"))
            }
        }
    }
}

/// The locked state directory.
struct StateDir {
    dir: PathBuf,
    /// Holds the `flock` until dropped.
    _lock: File,
}

/// The parts of one multi-part message received so far.
struct PartialMessage {
    /// Day (since 1970) the first part arrived.
    first_day: u64,
    reassembly: Reassembly,
    parts: BTreeMap<u8, Vec<u8>>,
    chunks: u8,
}

fn state_error(path: &Path, error: impl std::fmt::Display) -> CliError {
    CliError::failed(format!("Mixmaster state in {}: {error}", path.display()))
        .hint("nothing was dropped; fix the state directory and deliver the message again")
}

impl StateDir {
    /// Creates the directory (0700) and takes its exclusive lock, waiting
    /// for another `unwrap` that holds it.
    fn lock(dir: &Path) -> Result<StateDir> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.join(PARTIAL_DIR)).map_err(|error| state_error(dir, error))?;
        let path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(|error| state_error(&path, error))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|error| state_error(&path, error))?;
        Ok(StateDir { dir: dir.to_owned(), _lock: lock })
    }

    /// Reads the replay cache, without entries past their retention.
    fn load_replay_cache(&self, now: u64) -> Result<ReplayCache> {
        let path = self.dir.join(REPLAY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(state_error(&path, error)),
        };
        let mut cache = ReplayCache::new();
        for (number, line) in text.lines().enumerate() {
            let parsed = line.split_once(' ').and_then(|(id, day)| {
                let mut packet_id = [0u8; 16];
                hex::decode_to_slice(id, &mut packet_id).ok()?;
                Some((packet_id, day.parse::<u64>().ok()?))
            });
            let (packet_id, day) = parsed.ok_or_else(|| state_error(&path, format!("line {} is damaged", number + 1)))?;
            cache.insert_entry(packet_id, day);
        }
        cache.expire(now);
        Ok(cache)
    }

    fn save_replay_cache(&self, cache: &ReplayCache) -> Result<()> {
        let mut entries: Vec<([u8; 16], u64)> = cache.entries().collect();
        entries.sort_unstable_by_key(|(id, day)| (*day, *id));
        let mut text = String::with_capacity(entries.len() * 40);
        for (id, day) in entries {
            text.push_str(&format!("{} {day}\n", hex::encode(id)));
        }
        self.write_atomic(&self.dir.join(REPLAY_FILE), text.as_bytes())
    }

    fn partial_path(&self, message_id: &[u8; 16]) -> PathBuf {
        self.dir.join(PARTIAL_DIR).join(hex::encode(message_id))
    }

    fn load_partial(&self, message_id: &[u8; 16], now: u64) -> Result<PartialMessage> {
        let path = self.partial_path(message_id);
        match std::fs::read(&path) {
            Ok(bytes) => parse_partial(&bytes).ok_or_else(|| state_error(&path, "the file is damaged")),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(PartialMessage {
                first_day: now / SECONDS_PER_DAY,
                reassembly: Reassembly::new(0),
                parts: BTreeMap::new(),
                chunks: 0,
            }),
            Err(error) => Err(state_error(&path, error)),
        }
    }

    fn save_partial(&self, message_id: &[u8; 16], message: &PartialMessage) -> Result<()> {
        self.write_atomic(&self.partial_path(message_id), &encode_partial(message))
    }

    fn remove_partial(&self, message_id: &[u8; 16]) -> Result<()> {
        let path = self.partial_path(message_id);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(state_error(&path, error)),
            _ => Ok(()),
        }
    }

    /// Deletes incomplete messages whose first part is older than the
    /// retention period, and files that are not partial messages.
    fn expire_partials(&self, now: u64) -> Result<()> {
        let dir = self.dir.join(PARTIAL_DIR);
        let entries = std::fs::read_dir(&dir).map_err(|error| state_error(&dir, error))?;
        let today = now / SECONDS_PER_DAY;
        for entry in entries {
            let path = entry.map_err(|error| state_error(&dir, error))?.path();
            let expired = match std::fs::read(&path) {
                Ok(bytes) => parse_partial(&bytes).is_none_or(|message| message.first_day + PARTIAL_RETENTION_DAYS < today),
                Err(_) => false,
            };
            if expired {
                tracing::debug!(file = %path.display(), "deleting an expired or damaged partial message");
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Writes `bytes` to a temporary file in the same directory, syncs it
    /// and renames it over `path`, so a reader sees the old or the new
    /// contents, never a mix.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let temporary = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)?;
            if let Some(parent) = path.parent() {
                File::open(parent)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|error| state_error(path, error))
    }
}

impl PartialMessage {
    fn add(&mut self, chunk: u8, chunks: u8, payload: &[u8]) -> std::result::Result<(), keyward_mixmaster::ReassemblyError> {
        if self.parts.is_empty() {
            self.chunks = chunks;
            self.reassembly = Reassembly::new(chunks);
        }
        self.reassembly.add(chunk, chunks, payload)?;
        self.parts.entry(chunk).or_insert_with(|| payload.to_vec());
        Ok(())
    }
}

/// File format: the magic line, `uint64` first day, `byte` part count,
/// then per part `byte` part number, `uint32` length and the payload (all
/// big-endian).
fn encode_partial(message: &PartialMessage) -> Vec<u8> {
    let mut out = PARTIAL_MAGIC.to_vec();
    out.extend_from_slice(&message.first_day.to_be_bytes());
    out.push(message.chunks);
    for (chunk, payload) in &message.parts {
        out.push(*chunk);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out
}

fn parse_partial(bytes: &[u8]) -> Option<PartialMessage> {
    let rest = bytes.strip_prefix(PARTIAL_MAGIC)?;
    let first_day = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let chunks = *rest.get(8)?;
    let mut message = PartialMessage { first_day, reassembly: Reassembly::new(chunks), parts: BTreeMap::new(), chunks };
    let mut rest = &rest[9..];
    while !rest.is_empty() {
        let chunk = rest[0];
        let len = u32::from_be_bytes(rest.get(1..5)?.try_into().ok()?) as usize;
        let payload = rest.get(5..5 + len)?;
        message.reassembly.add(chunk, chunks, payload).ok()?;
        message.parts.insert(chunk, payload.to_vec());
        rest = &rest[5 + len..];
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_round_trips() {
        let mut message = PartialMessage { first_day: 20_791, reassembly: Reassembly::new(0), parts: BTreeMap::new(), chunks: 0 };
        message.add(3, 3, b"ccc").unwrap();
        message.add(1, 3, b"a").unwrap();
        let parsed = parse_partial(&encode_partial(&message)).unwrap();
        assert_eq!(parsed.first_day, 20_791);
        assert_eq!(parsed.reassembly.missing(), vec![2]);
        assert_eq!(parsed.parts, message.parts);
    }

    #[test]
    fn rejects_damaged_partial_file() {
        let mut message = PartialMessage { first_day: 1, reassembly: Reassembly::new(0), parts: BTreeMap::new(), chunks: 0 };
        message.add(1, 2, b"abc").unwrap();
        let bytes = encode_partial(&message);
        let header_len = PARTIAL_MAGIC.len() + 9;
        for cut in 0..bytes.len() {
            // Cut right after the header, the file is a message with no part.
            assert_eq!(parse_partial(&bytes[..cut]).is_some(), cut == header_len, "cut at {cut}");
        }
        assert!(parse_partial(&bytes).is_some());
        let mut wrong_chunk = bytes.clone();
        wrong_chunk[PARTIAL_MAGIC.len() + 9] = 5;
        assert!(parse_partial(&wrong_chunk).is_none());
    }

    #[test]
    fn domain_comes_from_address() {
        assert_eq!(domain_of("Anonymous <anon@remailer.invalid>"), Some("remailer.invalid"));
        assert_eq!(domain_of("anon@remailer.invalid"), Some("remailer.invalid"));
        assert_eq!(domain_of("Anonymous"), None);
    }
}
