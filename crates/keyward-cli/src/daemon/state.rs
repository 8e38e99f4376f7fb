//! The daemon's state and the operations that change it: unseal, seal,
//! reload, and keystore changes made inside the daemon.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward::admin::NewKey;
use keyward::config::Config;
use keyward::keys::{generate, KeyType, LoadedKey, Purpose};
use keyward::keystore::{self, Entry, EntryMeta, KdfPolicy, Unlocked};
use keyward::policy::{NameResolver, Policy};
use keyward::secret::{Passphrase, SecretBuf};
use keyward::service::{AuditEvent, KeySet, PublicKeyInfo, Service};

use super::audit::Audit;
use crate::context;

/// How long sealing waits for operations already running.
pub const SEAL_GRACE: Duration = Duration::from_secs(5);

/// An operation's failure, with the exit code the CLI reports.
pub struct Failure {
    pub code: u32,
    pub message: String,
}

impl Failure {
    pub fn failed(message: impl Into<String>) -> Self {
        Failure { code: 1, message: message.into() }
    }

    pub fn sealed() -> Self {
        Failure { code: 4, message: "the daemon is sealed".into() }
    }
}

pub struct DaemonState {
    pub service: Service,
    pub audit: Arc<Audit>,
    pub keystore_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub daemon_uid: u32,
    pub kdf_policy: KdfPolicy,
    pub config: Mutex<Config>,
    /// The open keystore while unsealed; `None` while sealed.
    unlocked: Mutex<Option<Unlocked>>,
    /// Failed unseal attempts since the last success.
    unseal_failures: Mutex<u32>,
    /// Serialises unseal attempts, so parallel attempts each wait out the
    /// delay instead of sharing one.
    unseal_gate: Mutex<()>,
    /// The reason no protected memory is available. Unsealing is refused while set.
    memory_error: Option<String>,
}

/// Looks names up in the system's user and group databases.
pub struct SystemNames;

impl NameResolver for SystemNames {
    fn user_id(&self, name: &str) -> Option<u32> {
        nix::unistd::User::from_name(name).ok().flatten().map(|user| user.uid.as_raw())
    }

    fn group_id(&self, name: &str) -> Option<u32> {
        nix::unistd::Group::from_name(name).ok().flatten().map(|group| group.gid.as_raw())
    }
}

/// Reads and resolves the configuration file.
pub fn load_config(path: Option<&PathBuf>, daemon_uid: u32) -> Result<(Config, Policy), String> {
    let config = match path {
        None => Config::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            Config::parse(&text).map_err(|error| format!("{}: {error}", path.display()))?
        }
    };
    let policy = Policy::resolve(&config, daemon_uid, &SystemNames).map_err(|error| match path {
        Some(path) => format!("{}: {error}", path.display()),
        None => error.to_string(),
    })?;
    Ok((config, policy))
}

/// Reads the public keys of the keystore (while sealed, unverified).
pub fn public_view(dir: &std::path::Path) -> Result<Vec<PublicKeyInfo>, String> {
    let catalog = keystore::read_catalog(dir).map_err(|error| error.to_string())?;
    Ok(catalog.entries.into_iter().map(PublicKeyInfo::from_meta).collect())
}

fn load_keys(entries: Vec<Entry>) -> Result<KeySet, String> {
    let mut keys = Vec::with_capacity(entries.len());
    for entry in entries {
        keys.push(LoadedKey::load(entry.meta, entry.private).map_err(|error| error.to_string())?);
    }
    Ok(KeySet::new(keys))
}

impl DaemonState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: Service,
        audit: Arc<Audit>,
        keystore_dir: PathBuf,
        socket_dir: PathBuf,
        config_file: Option<PathBuf>,
        daemon_uid: u32,
        config: Config,
        memory_error: Option<String>,
    ) -> Self {
        DaemonState {
            service,
            audit,
            keystore_dir,
            socket_dir,
            config_file,
            daemon_uid,
            kdf_policy: context::kdf_policy(),
            config: Mutex::new(config),
            unlocked: Mutex::new(None),
            unseal_failures: Mutex::new(0),
            unseal_gate: Mutex::new(()),
            memory_error,
        }
    }

    fn lifecycle(&self, event: &str, reason: Option<&str>) {
        let mut record = AuditEvent::new(event);
        record.reason = reason;
        use keyward::service::AuditSink;
        self.audit.record(&record);
    }

    /// Returns how long the next unseal attempt waits before its passphrase
    /// is checked: nothing before the first failure, then one second,
    /// doubling with each failure up to 30 seconds. The whole delay applies
    /// to every attempt, however long after the failure it comes.
    pub fn unseal_delay(&self) -> Duration {
        let failures = self.unseal_failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *failures {
            0 => Duration::ZERO,
            count => Duration::from_secs(1u64 << (count - 1).min(5)).min(Duration::from_secs(30)),
        }
    }

    /// Unseals with `passphrase`. Blocking: waits out the delay earlier
    /// failures imposed, then runs the KDF. Only admin-socket requests and
    /// the start-up passphrase come here, so service clients never wait.
    pub fn unseal(&self, passphrase: &Passphrase) -> Result<usize, Failure> {
        let result = self.unseal_inner(passphrase);
        // The KDF, decryption and key parsing left copies in returned frames.
        keyward_protect::scrub_stack();
        result
    }

    fn unseal_inner(&self, passphrase: &Passphrase) -> Result<usize, Failure> {
        let _gate = self.unseal_gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let delay = self.unseal_delay();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if unlocked.is_some() {
            return Ok(self.service.keys().map(|keys| keys.len()).unwrap_or(0));
        }
        if let Some(error) = &self.memory_error {
            return Err(Failure::failed(error.clone()));
        }
        let opened = Unlocked::open(&self.keystore_dir, passphrase, self.kdf_policy);
        let (store, entries) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let mut failures = self.unseal_failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                *failures = failures.saturating_add(1);
                drop(failures);
                self.lifecycle("unseal-failed", Some(&error.to_string()));
                tracing::warn!(%error, "unseal failed");
                return Err(Failure::failed(error.to_string()));
            }
        };
        let keys = load_keys(entries).map_err(|error| {
            self.lifecycle("unseal-failed", Some(&error));
            Failure::failed(error)
        })?;
        let count = keys.len();
        self.service.set_unsealed_at(context::now());
        self.service.unseal(keys);
        *unlocked = Some(store);
        *self.unseal_failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = 0;
        self.lifecycle("unsealed", None);
        tracing::info!(keys = count, "unsealed");
        Ok(count)
    }

    /// Seals: wipes every key. Blocking: waits for running operations.
    pub fn seal(&self, why: &str) {
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let was_unsealed = unlocked.take().is_some();
        if !self.service.seal(SEAL_GRACE) {
            tracing::warn!("operations were still running after the grace period; their keys are wiped when they finish");
        }
        if was_unsealed {
            self.lifecycle("sealed", Some(why));
            tracing::info!(reason = why, "sealed");
        }
    }

    /// Re-reads the configuration and reopens the audit file. A broken
    /// file, or an audit log that cannot be opened, keeps the old
    /// configuration in force. Never seals.
    pub fn reload(&self) -> Result<(), Failure> {
        let failed = |error: String| {
            self.lifecycle("reload-failed", Some(&error));
            tracing::error!(%error, "reload failed; the previous configuration stays in force");
            Failure::failed(format!("{error}; the previous configuration stays in force"))
        };
        let (config, policy) = match load_config(self.config_file.as_ref(), self.daemon_uid) {
            Ok(loaded) => loaded,
            Err(error) => {
                // SIGHUP after log rotation must reopen the file even when
                // the configuration was broken meanwhile.
                if let Err(reopen) = self.audit.reopen() {
                    tracing::error!(error = %reopen, "cannot reopen the audit log");
                }
                return Err(failed(error));
            }
        };
        if let Err(error) = self.audit.reconfigure(&config.daemon.audit_log, config.daemon.audit, config.daemon.audit_fail_closed) {
            let path = match &config.daemon.audit_log {
                keyward::config::AuditLog::File(path) => path.display().to_string(),
                keyward::config::AuditLog::Stderr => "stderr".to_owned(),
            };
            return Err(failed(format!("cannot open the audit log {path}: {error}")));
        }
        for rule in &config.keys {
            if !self.service.public_keys().iter().any(|key| key.meta.name == rule.name) {
                tracing::warn!(key = %rule.name, "the configuration has a rule for a key that does not exist");
            }
        }
        self.service.set_policy(policy);
        *self.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        if self.service.keys().is_none() {
            match public_view(&self.keystore_dir) {
                Ok(public) => self.service.set_public_keys(public),
                Err(error) => tracing::error!(%error, "cannot re-read the keystore's public keys"),
            }
        }
        self.lifecycle("reloaded", None);
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Applies a change to the open keystore and installs the new key set.
    fn change(&self, apply: impl FnOnce(&mut Unlocked) -> Result<(), keystore::KeystoreError>) -> Result<(), Failure> {
        let result = self.change_inner(apply);
        // Re-keying, decryption and key parsing left copies in returned frames.
        keyward_protect::scrub_stack();
        result
    }

    fn change_inner(&self, apply: impl FnOnce(&mut Unlocked) -> Result<(), keystore::KeystoreError>) -> Result<(), Failure> {
        let mut guard = self.unlocked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(unlocked) = guard.as_mut() else { return Err(Failure::sealed()) };
        apply(unlocked).map_err(|error| Failure::failed(error.to_string()))?;
        let entries = unlocked.reopen().map_err(|error| Failure::failed(error.to_string()))?;
        let keys = load_keys(entries).map_err(Failure::failed)?;
        // Swap the new set in; the old one is wiped once running
        // operations release it.
        self.service.unseal(keys);
        Ok(())
    }

    /// Generates a key inside the daemon. Returns its fingerprint.
    pub fn keygen(&self, key_type: &str, name: &str, purpose: &str, comment: &str, not_before: u64, not_after: u64) -> Result<String, Failure> {
        let key_type = KeyType::parse(key_type).map_err(|error| Failure::failed(error.to_string()))?;
        let purpose = Purpose::parse(purpose).map_err(|error| Failure::failed(error.to_string()))?;
        key_type.check_purpose(purpose).map_err(|error| Failure::failed(error.to_string()))?;
        let spec = generate::KeySpec {
            key_type,
            purpose,
            name,
            comment,
            created: context::now(),
            not_before: (not_before != 0).then_some(not_before),
            not_after: (not_after != 0).then_some(not_after),
        };
        let entry = generate::generate_entry(&spec).map_err(|error| Failure::failed(error.to_string()))?;
        let fingerprint = keyward::keys::fingerprint(&entry.meta.public_key);
        self.change(|unlocked| unlocked.add(vec![entry]))?;
        self.lifecycle("key-generated", None);
        tracing::info!(key = name, %fingerprint, "generated a key");
        Ok(fingerprint)
    }

    pub fn import(&self, keys: Vec<NewKey>) -> Result<(), Failure> {
        let now = context::now();
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let private = SecretBuf::from_slice(&key.private).map_err(|error| Failure::failed(error.to_string()))?;
            let meta = EntryMeta {
                name: key.name,
                key_type: key.key_type,
                purpose: key.purpose,
                public_key: key.public_key,
                comment: key.comment,
                created: now,
                not_before: (key.not_before != 0).then_some(key.not_before),
                not_after: (key.not_after != 0).then_some(key.not_after),
                attributes: key.attributes,
            };
            // Check each key before anything is written: all or nothing.
            LoadedKey::load(meta.clone(), private.try_clone().map_err(|error| Failure::failed(error.to_string()))?)
                .map_err(|error| Failure::failed(error.to_string()))?;
            entries.push(Entry { meta, private });
        }
        self.change(|unlocked| unlocked.add(entries))?;
        self.lifecycle("keys-imported", None);
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), Failure> {
        self.change(|unlocked| unlocked.remove(name))?;
        self.lifecycle("key-removed", None);
        tracing::info!(key = name, "removed a key; the keystore was re-keyed");
        Ok(())
    }

    pub fn passwd(&self, old: &Passphrase, new: &Passphrase) -> Result<(), Failure> {
        let policy = self.kdf_policy;
        self.change(|unlocked| {
            unlocked.verify_passphrase(old)?;
            let kdf = unlocked.catalog().kdf;
            unlocked.change_passphrase(new, kdf, policy)
        })?;
        self.lifecycle("passphrase-changed", None);
        Ok(())
    }
}
