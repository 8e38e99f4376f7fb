//! Shared setup of the dispatcher tests: generated Ed25519 keys, an
//! unsealed `Service` under a given policy, and a connection from uid 1000.
#![allow(dead_code)]

use std::sync::Arc;

use keyward::agent;
use keyward::config::Config;
use keyward::keys::{generate, KeyType, LoadedKey};
use keyward::keystore::EntryMeta;
use keyward::policy::{Peer, Policy};
use keyward::service::{Connection, KeySet, NoAudit, PublicKeyInfo, Service};
use keyward::wire::Writer;

/// The uid (and gid) of the peer that [`connection`] makes and that the
/// policies of these tests name.
pub const PEER_UID: u32 = 1000;

pub use keyward::policy::NoNames;

/// Generates a fresh Ed25519 signing key called `name`.
pub fn key(name: &str) -> LoadedKey {
    let generated = generate::generate(KeyType::Ed25519).unwrap();
    let meta = EntryMeta {
        name: name.into(),
        key_type: "ed25519".into(),
        purpose: "sign".into(),
        public_key: generated.public_blob,
        comment: String::new(),
        created: 0,
        not_before: None,
        not_after: None,
        attributes: Vec::new(),
    };
    LoadedKey::load(meta, generated.private).unwrap()
}

/// Builds a service under the policy in `config` (TOML) for a daemon run
/// by [`PEER_UID`], and unseals it with a new Ed25519 key for each name.
pub fn unsealed_service(config: &str, names: &[&str]) -> Service {
    let config = Config::parse(config).unwrap();
    let policy = Policy::resolve(&config, PEER_UID, &NoNames).unwrap();
    let keys = KeySet::new(names.iter().map(|name| key(name)).collect());
    let public: Vec<PublicKeyInfo> = keys.iter().map(|key| PublicKeyInfo::from_meta(key.meta.clone())).collect();
    let service = Service::new(policy, public, Arc::new(NoAudit));
    service.unseal(keys);
    service
}

/// Creates the dispatcher state of a connection from uid and gid
/// [`PEER_UID`] with no supplementary groups.
pub fn connection() -> Connection {
    Connection::new(Peer { uid: PEER_UID, gid: PEER_UID, groups: Vec::new(), pid: None, exe: None })
}

/// Returns the public key blob of the unsealed key `name`.
pub fn public_blob(service: &Service, name: &str) -> Vec<u8> {
    service.keys().unwrap().by_name(name).unwrap().public_blob().to_vec()
}

/// Encodes an SSH_AGENTC_SIGN_REQUEST body with no flags.
pub fn sign_request(key_blob: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = vec![agent::SSH_AGENTC_SIGN_REQUEST];
    body.put_string(key_blob);
    body.put_string(data);
    body.put_u32(0);
    body
}
