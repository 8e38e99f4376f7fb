//! `lifetime_minutes`: a key may be used only that long after unsealing.

use std::sync::Arc;

use keyward::agent;
use keyward::config::Config;
use keyward::keys::{generate, KeyType, LoadedKey};
use keyward::keystore::EntryMeta;
use keyward::policy::{NameResolver, Peer, Policy};
use keyward::service::{Connection, KeySet, NoAudit, PublicKeyInfo, Service};
use keyward::wire::Writer;

const UNSEALED: u64 = 1_790_000_000;

struct NoNames;

impl NameResolver for NoNames {
    fn user_id(&self, _: &str) -> Option<u32> {
        None
    }
    fn group_id(&self, _: &str) -> Option<u32> {
        None
    }
}

fn key(name: &str) -> LoadedKey {
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

#[test]
fn key_lifetime_ends_signing_after_unseal() {
    let config = Config::parse(
        "[[key]]\nname = \"short\"\nusers = [1000]\noperations = [\"sign\"]\nlifetime_minutes = 60\n\
         [[key]]\nname = \"long\"\nusers = [1000]\noperations = [\"sign\"]\n",
    )
    .unwrap();
    let policy = Policy::resolve(&config, 1000, &NoNames).unwrap();
    let keys = KeySet::new(vec![key("short"), key("long")]);
    let public: Vec<PublicKeyInfo> = keys.iter().map(|key| PublicKeyInfo::from_meta(key.meta.clone())).collect();
    let service = Service::new(policy, public, Arc::new(NoAudit));
    service.set_unsealed_at(UNSEALED);
    service.unseal(keys);
    let mut connection = Connection::new(Peer { uid: 1000, gid: 1000, groups: Vec::new(), pid: None, exe: None });

    let sign = |connection: &mut Connection, name: &str, now: u64| {
        let blob = service.keys().unwrap().by_name(name).unwrap().public_blob().to_vec();
        let mut body = vec![agent::SSH_AGENTC_SIGN_REQUEST];
        body.put_string(&blob);
        body.put_string(b"data");
        body.put_u32(0);
        service.handle(connection, &body, now).into_body()[0] == agent::SSH_AGENT_SIGN_RESPONSE
    };
    assert!(sign(&mut connection, "short", UNSEALED + 59 * 60));
    assert!(!sign(&mut connection, "short", UNSEALED + 60 * 60), "the key signed after its lifetime");
    assert!(sign(&mut connection, "long", UNSEALED + 600 * 60), "a key without a lifetime stopped signing");
    assert_eq!(service.counters().refusals_by_reason.get("lifetime-expired"), Some(&1));
}
