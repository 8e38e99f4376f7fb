use std::str::FromStr;
use std::sync::Arc;

use age::Recipient as _;
use age_core::format::FileKey;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::agent::extensions::FailureCode;
use crate::agent::x25519::{self as wire, AgreeRequest, UnwrapRequest};
use crate::agent::{SSH_AGENTC_EXTENSION, SSH_AGENT_EXTENSION_FAILURE, SSH_AGENT_EXTENSION_RESPONSE, SSH_AGENT_FAILURE};
use crate::keys::{generate, KeyType, LoadedKey, Purpose};
use crate::keystore::EntryMeta;
use crate::policy::NoNames;
use crate::policy::{Peer, Policy};
use crate::service::{Connection, KeySet, NoAudit, PublicKeyInfo, Service};
use crate::wire::Writer;
use crate::x25519::{self, X25519Public, X25519Secret};

const DAEMON_UID: u32 = 500;
const NOW: u64 = 1_796_000_000;

struct Fixture {
    service: Service,
    decrypt_key: X25519Secret,
    agree_key: X25519Secret,
    signing_fingerprint: [u8; 32],
}

fn entry(name: &str, key_type: KeyType, purpose: Purpose, public_key: Vec<u8>) -> EntryMeta {
    EntryMeta {
        name: name.into(),
        key_type: key_type.to_string(),
        purpose: purpose.to_string(),
        public_key,
        comment: String::new(),
        created: 0,
        not_before: None,
        not_after: None,
        attributes: Vec::new(),
    }
}

fn load(name: &str, purpose: Purpose, secret: &X25519Secret) -> LoadedKey {
    let meta = entry(name, KeyType::X25519, purpose, secret.public_key().blob());
    LoadedKey::load(meta, secret.as_secret_buf().try_clone().unwrap()).unwrap()
}

fn fixture() -> Fixture {
    let decrypt_key = X25519Secret::generate().unwrap();
    let agree_key = X25519Secret::generate().unwrap();
    let signing = generate::generate(KeyType::Ed25519).unwrap();
    let signing_fingerprint = crate::keys::fingerprint_bytes(&signing.public_blob);
    let signing = LoadedKey::load(entry("ssh", KeyType::Ed25519, Purpose::Sign, signing.public_blob), signing.private).unwrap();

    let keys = vec![load("age", Purpose::Decrypt, &decrypt_key), load("mix", Purpose::Agree, &agree_key), signing];
    let public = keys.iter().map(|key| PublicKeyInfo::from_meta(key.meta.clone())).collect();
    let service = Service::new(Policy::default_for(DAEMON_UID), public, Arc::new(NoAudit));
    service.unseal(KeySet::new(keys));
    Fixture { service, decrypt_key, agree_key, signing_fingerprint }
}

fn connection(uid: u32) -> Connection {
    Connection::new(Peer { uid, gid: uid, groups: Vec::new(), pid: None, exe: None })
}

fn call(service: &Service, uid: u32, name: &str, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![SSH_AGENTC_EXTENSION];
    frame.put_string(name.as_bytes());
    frame.extend_from_slice(body);
    service.handle(&mut connection(uid), &frame, NOW).into_body()
}

fn failure_code(reply: &[u8]) -> Option<FailureCode> {
    assert_eq!(reply[0], SSH_AGENT_EXTENSION_FAILURE, "expected an extension failure: {reply:?}");
    FailureCode::from_u32(u32::from_be_bytes(reply[1..5].try_into().unwrap()))
}

fn response_body<'a>(name: &str, reply: &'a [u8]) -> &'a [u8] {
    assert_eq!(reply[0], SSH_AGENT_EXTENSION_RESPONSE, "expected a response: {reply:?}");
    let name_length = u32::from_be_bytes(reply[1..5].try_into().unwrap()) as usize;
    assert_eq!(&reply[5..5 + name_length], name.as_bytes());
    &reply[5 + name_length..]
}

fn stanza_for(public: X25519Public, file_key: [u8; 16]) -> ([u8; 32], [u8; 32]) {
    let recipient = age::x25519::Recipient::from_str(&public.to_age_recipient()).unwrap();
    let (stanzas, _) = recipient.wrap_file_key(&FileKey::new(Box::new(file_key))).unwrap();
    let parsed = x25519::parse_stanza(&stanzas[0].args, &stanzas[0].body).unwrap();
    (parsed.ephemeral_share, parsed.body)
}

fn unwrap_body(fingerprint: [u8; 32], (ephemeral_share, stanza_body): ([u8; 32], [u8; 32])) -> Vec<u8> {
    UnwrapRequest { fingerprint, ephemeral_share, stanza_body }.encode()
}

#[test]
fn unwrap_returns_file_key() {
    let fixture = fixture();
    let public = fixture.decrypt_key.public_key();
    let body = unwrap_body(public.fingerprint(), stanza_for(public, [0x5c; 16]));

    let reply = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &body);

    let file_key = wire::parse_unwrap_reply(response_body(wire::UNWRAP, &reply)).unwrap();
    assert_eq!(*file_key.unwrap(), [0x5c; 16]);
}

#[test]
fn unwrap_with_agree_key_is_allowed() {
    let fixture = fixture();
    let public = fixture.agree_key.public_key();
    let body = unwrap_body(public.fingerprint(), stanza_for(public, [3; 16]));

    let reply = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &body);

    assert_eq!(*wire::parse_unwrap_reply(response_body(wire::UNWRAP, &reply)).unwrap().unwrap(), [3; 16]);
}

#[test]
fn unwrap_of_other_keys_stanza_is_empty() {
    let fixture = fixture();
    let stranger = X25519Secret::generate().unwrap().public_key();
    let body = unwrap_body(fixture.decrypt_key.public_key().fingerprint(), stanza_for(stranger, [1; 16]));

    let reply = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &body);

    assert!(wire::parse_unwrap_reply(response_body(wire::UNWRAP, &reply)).unwrap().is_none());
}

#[test]
fn unwrap_refusals_look_alike() {
    let fixture = fixture();
    let public = fixture.decrypt_key.public_key();
    let stanza = stanza_for(public, [1; 16]);

    let other_uid = call(&fixture.service, DAEMON_UID + 1, wire::UNWRAP, &unwrap_body(public.fingerprint(), stanza));
    let unknown_key = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &unwrap_body([7; 32], stanza));
    let signing_key = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &unwrap_body(fixture.signing_fingerprint, stanza));

    assert_eq!(failure_code(&other_uid), Some(FailureCode::Refused));
    assert_eq!(other_uid, unknown_key);
    assert_eq!(other_uid, signing_key);
}

#[test]
fn unwrap_while_sealed_says_sealed() {
    let fixture = fixture();
    let public = fixture.decrypt_key.public_key();
    fixture.service.seal(std::time::Duration::from_secs(1));

    let reply = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &unwrap_body(public.fingerprint(), stanza_for(public, [1; 16])));

    assert_eq!(failure_code(&reply), Some(FailureCode::Sealed));
}

#[test]
fn unwrap_rejects_malformed_body_and_low_order_share() {
    let fixture = fixture();
    let fingerprint = fixture.decrypt_key.public_key().fingerprint();
    let good = unwrap_body(fingerprint, ([9; 32], [0; 32]));

    let truncated = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &good[..good.len() - 1]);
    let low_order = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &unwrap_body(fingerprint, ([0; 32], [0; 32])));

    assert_eq!(failure_code(&truncated), Some(FailureCode::InvalidRequest));
    assert_eq!(failure_code(&low_order), Some(FailureCode::InvalidRequest));
}

fn agree_results(fixture: &Fixture, peers: &[[u8; 32]]) -> Vec<Option<zeroize::Zeroizing<[u8; 32]>>> {
    let body = AgreeRequest { fingerprint: fixture.agree_key.public_key().fingerprint(), peers: peers.to_vec() }.encode();
    let reply = call(&fixture.service, DAEMON_UID, wire::AGREE, &body);
    wire::parse_agree_reply(response_body(wire::AGREE, &reply), peers.len()).unwrap()
}

#[test]
fn agree_matches_x25519_dalek_in_order() {
    let fixture = fixture();
    let ours = PublicKey::from(fixture.agree_key.public_key().0);

    for count in [1, 2, 1000] {
        let peers: Vec<StaticSecret> = (0..count).map(|_| StaticSecret::random_from_rng(rand_core::OsRng)).collect();
        let publics: Vec<[u8; 32]> = peers.iter().map(|peer| PublicKey::from(peer).to_bytes()).collect();

        let results = agree_results(&fixture, &publics);

        assert_eq!(results.len(), count);
        for (index, (peer, result)) in peers.iter().zip(&results).enumerate() {
            let expected = peer.diffie_hellman(&ours);
            assert_eq!(&**result.as_ref().unwrap(), expected.as_bytes(), "peer {index} of {count}");
        }
    }
}

#[test]
fn agree_rejects_low_order_peer_alone() {
    let fixture = fixture();
    let good = X25519Secret::generate().unwrap().public_key().0;

    let results = agree_results(&fixture, &[good, [0; 32], good]);

    assert!(results[0].is_some());
    assert!(results[1].is_none());
    assert_eq!(results[0].as_deref(), results[2].as_deref());
}

#[test]
fn agree_needs_agree_purpose() {
    let fixture = fixture();
    let body = AgreeRequest { fingerprint: fixture.decrypt_key.public_key().fingerprint(), peers: vec![[9; 32]] }.encode();

    let reply = call(&fixture.service, DAEMON_UID, wire::AGREE, &body);

    assert_eq!(failure_code(&reply), Some(FailureCode::Refused));
}

#[test]
fn agree_rejects_bad_peer_counts() {
    let fixture = fixture();
    let fingerprint = fixture.agree_key.public_key().fingerprint();
    let mut empty = Vec::new();
    empty.put_string(&fingerprint);
    empty.put_u32(0);
    let too_many = AgreeRequest { fingerprint, peers: vec![[9; 32]; wire::MAX_AGREE_PEERS + 1] }.encode();

    assert_eq!(failure_code(&call(&fixture.service, DAEMON_UID, wire::AGREE, &empty)), Some(FailureCode::InvalidRequest));
    assert_eq!(failure_code(&call(&fixture.service, DAEMON_UID, wire::AGREE, &too_many)), Some(FailureCode::InvalidRequest));
}

#[test]
fn unknown_x25519_extension_is_plain_failure() {
    let fixture = fixture();

    let reply = call(&fixture.service, DAEMON_UID, "x25519-export@keyward", &[]);

    assert_eq!(reply, vec![SSH_AGENT_FAILURE]);
}

#[test]
fn query_lists_x25519_extensions() {
    let fixture = fixture();

    let reply = call(&fixture.service, DAEMON_UID, "query", &[]);
    let body = response_body("query", &reply);

    assert!(body.windows(wire::UNWRAP.len()).any(|window| window == wire::UNWRAP.as_bytes()));
    assert!(body.windows(wire::AGREE.len()).any(|window| window == wire::AGREE.as_bytes()));
}

#[test]
fn rule_with_agree_also_allows_decrypt() {
    let fixture = fixture();
    let config = crate::config::Config::parse(
        "[[key]]\nname = \"mix\"\nusers = [1001]\noperations = [\"agree\"]\n\n[[key]]\nname = \"age\"\nusers = [1001]\noperations = [\"agree\"]\n",
    )
    .unwrap();
    fixture.service.set_policy(Policy::resolve(&config, DAEMON_UID, &NoNames).unwrap());
    let mix = fixture.agree_key.public_key();
    let age = fixture.decrypt_key.public_key();

    let unwrap_with_mix = call(&fixture.service, 1001, wire::UNWRAP, &unwrap_body(mix.fingerprint(), stanza_for(mix, [6; 16])));
    let agree_with_mix = call(
        &fixture.service,
        1001,
        wire::AGREE,
        &AgreeRequest { fingerprint: mix.fingerprint(), peers: vec![age.0] }.encode(),
    );
    let agree_with_age = call(
        &fixture.service,
        1001,
        wire::AGREE,
        &AgreeRequest { fingerprint: age.fingerprint(), peers: vec![mix.0] }.encode(),
    );
    let daemon_user = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &unwrap_body(mix.fingerprint(), stanza_for(mix, [6; 16])));

    assert_eq!(*wire::parse_unwrap_reply(response_body(wire::UNWRAP, &unwrap_with_mix)).unwrap().unwrap(), [6; 16]);
    assert_eq!(wire::parse_agree_reply(response_body(wire::AGREE, &agree_with_mix), 1).unwrap().len(), 1);
    // The purpose bounds the rule: a decrypt key never answers agree.
    assert_eq!(failure_code(&agree_with_age), Some(FailureCode::Refused));
    // A rule replaces the daemon user's default access.
    assert_eq!(failure_code(&daemon_user), Some(FailureCode::Refused));
}

#[test]
fn unwrap_refused_after_key_lifetime() {
    let fixture = fixture();
    let config = crate::config::Config::parse(&format!(
        "[[key]]\nname = \"age\"\nusers = [{DAEMON_UID}]\noperations = [\"decrypt\"]\nlifetime_minutes = 1\n"
    ))
    .unwrap();
    fixture.service.set_policy(Policy::resolve(&config, DAEMON_UID, &NoNames).unwrap());
    let public = fixture.decrypt_key.public_key();
    let body = unwrap_body(public.fingerprint(), stanza_for(public, [2; 16]));

    fixture.service.set_unsealed_at(NOW - 30);
    let within = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &body);
    fixture.service.set_unsealed_at(NOW - 61);
    let after = call(&fixture.service, DAEMON_UID, wire::UNWRAP, &body);

    assert_eq!(*wire::parse_unwrap_reply(response_body(wire::UNWRAP, &within)).unwrap().unwrap(), [2; 16]);
    assert_eq!(failure_code(&after), Some(FailureCode::Refused));
}
