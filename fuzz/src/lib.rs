//! Shared fixture for the fuzz targets: fixed test keys (checked in under
//! `keys/`, never used anywhere else) and a dispatcher built from them.
#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};

use keyward::config::Config;
use keyward::keys::import::{self, ImportedKey};
use keyward::keys::LoadedKey;
use keyward::keystore::EntryMeta;
use keyward::policy::{NoNames, Policy};
use keyward::service::{KeySet, NoAudit, PublicKeyInfo, Service};

/// The uid the fuzzed daemon runs as.
pub const DAEMON_UID: u32 = 1000;
/// A uid that the configuration admits to the key `ec` only.
pub const RULE_UID: u32 = 1001;
/// `not_before` and `not_after` of the key `window`.
pub const WINDOW: (u64, u64) = (1_700_000_000, 1_800_000_000);

/// The configuration of the fuzzed daemon: one rule for another uid.
pub const CONFIG: &str = r#"
[daemon]
allow_sha1 = false

[[key]]
name = "ec"
users = [1001]
operations = ["ssh-auth"]
forwarding = false
"#;

pub struct Fixture {
    /// The sealed daemon, with the public view of the keys.
    pub sealed: Service,
    /// The same daemon, unsealed.
    pub unsealed: Service,
    /// The public-key blob of the key `ed`.
    pub ed25519_blob: Vec<u8>,
    /// The public-key blobs of every key, for building requests.
    pub blobs: Vec<Vec<u8>>,
}

fn imported(file: &[u8], openssh: bool) -> ImportedKey {
    let mut keys = if openssh { import::openssh(file, None) } else { import::pkcs8(file, None) }.expect("fixture key");
    keys.remove(0)
}

fn meta(name: &str, key: &ImportedKey, purpose: &str, window: Option<(u64, u64)>) -> EntryMeta {
    let key_type = match key.key_type {
        keyward::keys::KeyType::Ed25519 => "ed25519".to_owned(),
        keyward::keys::KeyType::EcdsaP256 => "ecdsa-p256".to_owned(),
        keyward::keys::KeyType::Rsa(bits) => format!("rsa-{bits}"),
        other => panic!("no fixture for {other:?}"),
    };
    EntryMeta {
        name: name.to_owned(),
        key_type,
        purpose: purpose.to_owned(),
        public_key: key.public_blob.clone(),
        comment: format!("fuzz {name}"),
        created: 1_600_000_000,
        not_before: window.map(|(start, _)| start),
        not_after: window.map(|(_, end)| end),
        attributes: Vec::new(),
    }
}

fn build() -> Fixture {
    let keys = [
        ("ed", imported(include_bytes!("../keys/ed25519"), true), "sign", None),
        ("ec", imported(include_bytes!("../keys/ecdsa"), true), "ssh-auth", None),
        ("rsa", imported(include_bytes!("../keys/rsa"), true), "sshsig", None),
        ("window", imported(include_bytes!("../keys/ed25519.p8"), false), "ssh-host", Some(WINDOW)),
        ("ec-sign", imported(include_bytes!("../keys/ecdsa.p8"), false), "sign", None),
    ];
    let blobs: Vec<Vec<u8>> = keys.iter().map(|(_, key, _, _)| key.public_blob.clone()).collect();
    let ed25519_blob = blobs[0].clone();

    let config = Config::parse(CONFIG).expect("fixture configuration");
    let policy = Policy::resolve(&config, DAEMON_UID, &NoNames).expect("fixture policy");
    let mut loaded = Vec::new();
    let mut public = Vec::new();
    for (name, key, purpose, window) in keys {
        let meta = meta(name, &key, purpose, window);
        public.push(PublicKeyInfo::from_meta(meta.clone()));
        loaded.push(LoadedKey::load(meta, key.private).expect("fixture key loads"));
    }

    let sealed = Service::new(policy.clone(), public.clone(), Arc::new(NoAudit));
    let unsealed = Service::new(policy, public, Arc::new(NoAudit));
    unsealed.unseal(KeySet::new(loaded));
    Fixture { sealed, unsealed, ed25519_blob, blobs }
}

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}
