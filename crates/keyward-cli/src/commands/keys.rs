//! Commands that work on the keystore: directly with the passphrase, or
//! through an unsealed daemon serving it so that no update is lost.

use std::path::Path;
use std::time::Duration;

use keyward::admin::{AdminRequest, NewKey};
use keyward::keys::import::{self, ImportError, ImportedKey};
use keyward::keys::{export, generate, KeyType, Purpose};
use keyward::keystore::{self, Entry, EntryMeta, KdfParams, KdfPolicy, Unlocked};
use zeroize::Zeroizing;

use super::{admin_request, daemon_for_keystore};
use crate::cli::{ImportFormat, PassphraseSource, PubkeyFormat};
use crate::context::{self, format_date, parse_date, Context};
use crate::display::escape;
use crate::error::{CliError, ExitCode, Result};
use crate::passphrase;

/// How long one KDF run should take on this machine, chosen at `init`.
const KDF_TARGET: Duration = Duration::from_secs(1);

pub fn init(context: &Context, source: PassphraseSource, allow_empty: bool) -> Result<()> {
    let dir = context.keystore_dir()?;
    if dir.join(keystore::KEYSTORE_FILE).exists() {
        return Err(CliError::failed(format!("a keystore already exists in {}", dir.display()))
            .hint("use `keyward passwd` to change its passphrase, or --keystore DIR for another one"));
    }
    harden()?;
    let passphrase = passphrase::new_keystore(source.passphrase_fd, allow_empty)?;

    let policy = context::kdf_policy();
    let kdf = match policy {
        KdfPolicy::InsecureTest => KdfParams::insecure_test(),
        KdfPolicy::Production => {
            eprintln!("Calibrating the key derivation for this machine (about a second per try)...");
            KdfParams::calibrate(KDF_TARGET)?
        }
    };
    keystore::create(&dir, &passphrase, kdf, policy)?;
    eprintln!(
        "Created a keystore in {} (Argon2id: {} MiB, {} passes).",
        dir.display(),
        kdf.m_cost_kib / 1024,
        kdf.t_cost
    );
    Ok(())
}

/// Opens the keystore with the passphrase, hardening the process first.
pub(super) fn open(dir: &Path, source: PassphraseSource) -> Result<(Unlocked, Vec<Entry>)> {
    harden()?;
    let passphrase = passphrase::keystore(source.passphrase_fd, "Keystore passphrase: ")?;
    let opened = Unlocked::open(dir, &passphrase, context::kdf_policy());
    // Decryption and key parsing leave copies in returned frames.
    keyward_protect::scrub_stack();
    Ok(opened?)
}

/// Hardens an offline command that will hold keystore secrets: no core
/// dumps, and secrets in protected memory where the kernel offers it.
pub fn harden() -> Result<()> {
    keyward_protect::process::harden_process().map_err(|error| CliError::failed(format!("cannot harden the process: {error}")))?;
    // Best effort: an offline command runs briefly and in the foreground.
    let _ = keyward_protect::init_memory(keyward_protect::MemoryPolicy { allow_insecure: true });
    Ok(())
}

pub(super) fn resolve_purpose(key_type: KeyType, purpose: Option<&str>) -> Result<Purpose> {
    let purpose = match purpose {
        Some(name) => Purpose::parse(name).map_err(|error| CliError::with_code(ExitCode::Usage, error.to_string()))?,
        None => key_type.default_purpose(),
    };
    key_type.check_purpose(purpose).map_err(|error| CliError::with_code(ExitCode::Usage, error.to_string()))?;
    Ok(purpose)
}

/// Tells a sealed daemon on this keystore to re-read the public keys.
fn notify_sealed_daemon(context: &Context, dir: &Path) {
    if let Ok(Some(mut daemon)) = daemon_for_keystore(context, dir) {
        let _ = admin_request(&mut daemon.client, &AdminRequest::Reload);
    }
}

#[allow(clippy::too_many_arguments)]
pub fn keygen(
    context: &Context,
    type_name: &str,
    name: &str,
    comment: &str,
    purpose: Option<&str>,
    not_before: Option<&str>,
    not_after: Option<&str>,
    source: PassphraseSource,
) -> Result<()> {
    let key_type = KeyType::parse(type_name).map_err(|error| CliError::with_code(ExitCode::Usage, error.to_string()))?;
    let purpose = resolve_purpose(key_type, purpose)?;
    let not_before = not_before.map(parse_date).transpose()?;
    let not_after = not_after.map(parse_date).transpose()?.map(|day| day + 86_399);
    let (not_before, not_after) = super::mixmaster::keygen_validity(key_type, not_before, not_after);
    let dir = context.keystore_dir()?;

    if let Some(mut daemon) = daemon_for_keystore(context, &dir)? {
        if daemon.unsealed {
            let request = AdminRequest::Keygen {
                key_type: key_type.to_string(),
                name: name.to_owned(),
                purpose: purpose.to_string(),
                comment: comment.to_owned(),
                not_before: not_before.unwrap_or(0),
                not_after: not_after.unwrap_or(0),
            };
            let fingerprint = admin_request(&mut daemon.client, &request)?;
            println!("{name} {key_type} {fingerprint}");
            return Ok(());
        }
    }

    let (mut unlocked, _entries) = open(&dir, source)?;
    let spec = generate::KeySpec { key_type, purpose, name, comment, created: context::now(), not_before, not_after };
    let entry = generate::generate_entry(&spec).map_err(|error| CliError::failed(error.to_string()))?;
    let fingerprint = keyward::keys::fingerprint(&entry.meta.public_key);
    unlocked.add(vec![entry])?;
    notify_sealed_daemon(context, &dir);
    println!("{name} {key_type} {fingerprint}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn import(
    context: &Context,
    name: &str,
    format: ImportFormat,
    source_passphrase_fd: Option<i32>,
    purpose: Option<&str>,
    comment: Option<String>,
    source: PassphraseSource,
    file: &Path,
) -> Result<()> {
    harden()?;
    let bytes = Zeroizing::new(
        std::fs::read(file).map_err(|error| CliError::failed(format!("cannot read {}: {error}", file.display())))?,
    );
    if format == ImportFormat::SecringMix {
        return super::mixmaster::import(context, name, source_passphrase_fd, purpose, comment, source, file, &bytes);
    }
    let parse = |passphrase: Option<&[u8]>| -> std::result::Result<Vec<ImportedKey>, ImportError> {
        match format {
            ImportFormat::Openssh => import::openssh(&bytes, passphrase),
            ImportFormat::Pkcs8 => import::pkcs8(&bytes, passphrase),
            ImportFormat::Age => import::age(&bytes),
            ImportFormat::SecringMix => {
                Err(ImportError::Unsupported("this import format is not available in this build".into()))
            }
        }
    };
    let imported = match parse(None) {
        Err(ImportError::NeedsPassphrase) => {
            let file_passphrase = passphrase::source(source_passphrase_fd)?;
            parse(Some(&file_passphrase))
        }
        other => other,
    }
    .map_err(|error| CliError::failed(format!("cannot import {}: {error}", file.display())));
    // The parser's by-value key structs left copies in returned frames.
    keyward_protect::scrub_stack();
    let imported = imported?;

    let now = context::now();
    let several = imported.len() > 1;
    let mut keys = Vec::new();
    for key in imported {
        let purpose = resolve_purpose(key.key_type, purpose)?;
        let key_name = if several {
            format!("{name}-{}", &hex::encode(keyward::keys::fingerprint_bytes(&key.public_blob))[..8])
        } else {
            name.to_owned()
        };
        let meta = EntryMeta {
            name: key_name,
            key_type: key.key_type.to_string(),
            purpose: purpose.to_string(),
            public_key: key.public_blob,
            comment: comment.clone().unwrap_or(key.comment),
            created: now,
            not_before: None,
            not_after: None,
            attributes: Vec::new(),
        };
        keys.push(Entry { meta, private: key.private });
    }
    add_entries(context, keys, source)
}

/// Adds entries through an unsealed daemon, or to the file.
pub(super) fn add_entries(context: &Context, entries: Vec<Entry>, source: PassphraseSource) -> Result<()> {
    let dir = context.keystore_dir()?;
    let summary: Vec<String> = entries
        .iter()
        .map(|entry| format!("{} {} {}", entry.meta.name, entry.meta.key_type, keyward::keys::fingerprint(&entry.meta.public_key)))
        .collect();

    if let Some(mut daemon) = daemon_for_keystore(context, &dir)? {
        if daemon.unsealed {
            let keys = entries
                .into_iter()
                .map(|entry| NewKey {
                    name: entry.meta.name,
                    key_type: entry.meta.key_type,
                    purpose: entry.meta.purpose,
                    comment: entry.meta.comment,
                    public_key: entry.meta.public_key,
                    not_before: entry.meta.not_before.unwrap_or(0),
                    not_after: entry.meta.not_after.unwrap_or(0),
                    attributes: entry.meta.attributes,
                    private: Zeroizing::new(entry.private.expose().to_vec()),
                })
                .collect();
            admin_request(&mut daemon.client, &AdminRequest::Import { keys })?;
            summary.iter().for_each(|line| println!("{line}"));
            return Ok(());
        }
    }

    let (mut unlocked, _) = open(&dir, source)?;
    unlocked.add(entries)?;
    notify_sealed_daemon(context, &dir);
    summary.iter().for_each(|line| println!("{line}"));
    Ok(())
}

pub fn list(context: &Context, json: bool) -> Result<()> {
    let dir = context.keystore_dir()?;
    let catalog = keystore::read_catalog(&dir)?;
    if json {
        let keys: Vec<serde_json::Value> = catalog
            .entries
            .iter()
            .map(|entry| {
                serde_json::json!({
                    "name": entry.name,
                    "type": entry.key_type,
                    "purpose": entry.purpose,
                    "fingerprint": keyward::keys::fingerprint(&entry.public_key),
                    "comment": entry.comment,
                    "created": entry.created,
                    "not_before": entry.not_before,
                    "not_after": entry.not_after,
                    "attributes": entry
                        .attributes
                        .iter()
                        .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&keys).expect("plain JSON values serialise"));
        return Ok(());
    }
    if catalog.entries.is_empty() {
        eprintln!("The keystore in {} holds no keys.", dir.display());
        return Ok(());
    }
    println!("{:<24} {:<15} {:<10} {:<51} {:<23} COMMENT", "NAME", "TYPE", "PURPOSE", "FINGERPRINT", "VALID");
    for entry in &catalog.entries {
        let validity = match (entry.not_before, entry.not_after) {
            (None, None) => "always".to_owned(),
            (start, end) => format!(
                "{}..{}",
                start.map(format_date).unwrap_or_default(),
                end.map(format_date).unwrap_or_default()
            ),
        };
        println!(
            "{:<24} {:<15} {:<10} {:<51} {:<23} {}",
            escape(&entry.name),
            escape(&entry.key_type),
            escape(&entry.purpose),
            keyward::keys::fingerprint(&entry.public_key),
            validity,
            escape(&entry.comment)
        );
        // Attributes such as a Mixmaster key's ID, one indented line each.
        for (name, value) in &entry.attributes {
            println!("    {}: {}", escape(name), escape(value));
        }
    }
    Ok(())
}

pub fn pubkey(context: &Context, name: &str, format: PubkeyFormat) -> Result<()> {
    let dir = context.keystore_dir()?;
    let catalog = keystore::read_catalog(&dir)?;
    let entry = catalog.entries.iter().find(|entry| entry.name == name).ok_or_else(|| {
        CliError::failed(format!("no key named {name:?} in {}", dir.display())).hint("`keyward list` shows the names")
    })?;
    if format == PubkeyFormat::Mixmaster {
        // key.txt byte for byte, its trailing empty line included.
        print!("{}", super::mixmaster::key_txt(context, &dir, entry)?);
        return Ok(());
    }
    let text = match format {
        PubkeyFormat::Openssh => export::openssh_line(&entry.public_key, &entry.comment),
        PubkeyFormat::Pem => export::pem(&entry.public_key),
        PubkeyFormat::Age => export::age_recipient(&entry.public_key),
        PubkeyFormat::AgePlugin => export::age_plugin_identity(&entry.public_key),
        PubkeyFormat::Mixmaster => {
            Err("this format is not available in this build".to_owned())
        }
    }
    .map_err(|error| CliError::failed(format!("cannot print {name:?} as {format:?}: {error}")))?;
    println!("{}", text.trim_end());
    Ok(())
}

pub fn remove(context: &Context, name: &str, source: PassphraseSource) -> Result<()> {
    let dir = context.keystore_dir()?;
    if let Some(mut daemon) = daemon_for_keystore(context, &dir)? {
        if daemon.unsealed {
            admin_request(&mut daemon.client, &AdminRequest::Remove { name: name.to_owned() })?;
            eprintln!("Removed {name:?}; the keystore was re-keyed.");
            return Ok(());
        }
    }
    let (mut unlocked, _) = open(&dir, source)?;
    unlocked.remove(name)?;
    notify_sealed_daemon(context, &dir);
    eprintln!("Removed {name:?}; the keystore was re-keyed.");
    Ok(())
}

pub fn passwd(context: &Context, source: PassphraseSource, new_fd: Option<i32>) -> Result<()> {
    let dir = context.keystore_dir()?;
    harden()?;
    let old = passphrase::keystore(source.passphrase_fd, "Current keystore passphrase: ")?;
    let new = passphrase::new_keystore(new_fd, false)?;

    if let Some(mut daemon) = daemon_for_keystore(context, &dir)? {
        if daemon.unsealed {
            let request = AdminRequest::Passwd {
                old: Zeroizing::new(old.expose().to_vec()),
                new: Zeroizing::new(new.expose().to_vec()),
            };
            admin_request(&mut daemon.client, &request)?;
            eprintln!("Changed the passphrase; the keystore was re-keyed.");
            return Ok(());
        }
    }

    let policy = context::kdf_policy();
    let (mut unlocked, _) = Unlocked::open(&dir, &old, policy)?;
    let kdf = unlocked.catalog().kdf;
    unlocked.change_passphrase(&new, kdf, policy)?;
    eprintln!("Changed the passphrase; the keystore was re-keyed.");
    Ok(())
}
