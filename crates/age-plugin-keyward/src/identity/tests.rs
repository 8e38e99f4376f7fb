use std::collections::HashMap;
use std::str::FromStr;

use age::Recipient as _;
use age_core::format::{FileKey, Stanza};
use age_core::secrecy::{ExposeSecret, SecretString};
use age_plugin::identity::{Error, IdentityPluginV1};
use age_plugin::Callbacks;
use keyward::x25519::{self, X25519Secret, FILE_KEY_LEN, KEY_LEN, STANZA_BODY_LEN};
use zeroize::Zeroizing;

use super::KeywardIdentities;
use crate::daemon::{Daemon, DaemonError};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Serving,
    Sealed,
    Unreachable,
}

/// An in-process stand-in for the daemon: holds keys, may refuse some.
struct FakeDaemon {
    keys: HashMap<[u8; 32], X25519Secret>,
    refused: Vec<[u8; 32]>,
    mode: Mode,
    calls: usize,
}

impl Daemon for FakeDaemon {
    fn unwrap(
        &mut self,
        fingerprint: &[u8; 32],
        ephemeral_share: &[u8; KEY_LEN],
        stanza_body: &[u8; STANZA_BODY_LEN],
    ) -> Result<Option<Zeroizing<[u8; FILE_KEY_LEN]>>, DaemonError> {
        self.calls += 1;
        match self.mode {
            Mode::Sealed => return Err(DaemonError::Sealed { socket: "/tmp/test/agent.sock".into() }),
            Mode::Unreachable => return Err(DaemonError::Unreachable { socket: "/tmp/test/agent.sock".into() }),
            Mode::Serving => {}
        }
        if self.refused.contains(fingerprint) {
            return Err(DaemonError::Refused);
        }
        let secret = self.keys.get(fingerprint).ok_or(DaemonError::Refused)?;
        match x25519::unwrap_stanza(secret.as_secret_buf(), ephemeral_share, stanza_body) {
            Ok(file_key) => Ok(Some(file_key)),
            Err(x25519::X25519Error::NotForThisKey) => Ok(None),
            Err(_) => Err(DaemonError::InvalidRequest),
        }
    }
}

struct NoCallbacks;

impl Callbacks<Error> for NoCallbacks {
    fn message(&mut self, _: &str) -> age_core::plugin::Result<()> {
        Ok(Err(age_core::plugin::Error::Unsupported))
    }
    fn confirm(&mut self, _: &str, _: &str, _: Option<&str>) -> age_core::plugin::Result<bool> {
        Ok(Err(age_core::plugin::Error::Unsupported))
    }
    fn request_public(&mut self, _: &str) -> age_core::plugin::Result<String> {
        Ok(Err(age_core::plugin::Error::Unsupported))
    }
    fn request_secret(&mut self, _: &str) -> age_core::plugin::Result<SecretString> {
        Ok(Err(age_core::plugin::Error::Unsupported))
    }
    fn error(&mut self, _: Error) -> age_core::plugin::Result<()> {
        Ok(Ok(()))
    }
}

fn daemon_with(secrets: Vec<X25519Secret>) -> FakeDaemon {
    let keys = secrets.into_iter().map(|secret| (secret.public_key().fingerprint(), secret)).collect();
    FakeDaemon { keys, refused: Vec::new(), mode: Mode::Serving, calls: 0 }
}

fn payload(secret: &X25519Secret) -> Vec<u8> {
    let mut payload = vec![x25519::PLUGIN_IDENTITY_VERSION];
    payload.extend_from_slice(&secret.public_key().fingerprint());
    payload
}

fn stanza_to(secret: &X25519Secret, file_key: [u8; 16]) -> Stanza {
    let recipient = age::x25519::Recipient::from_str(&secret.public_key().to_age_recipient()).unwrap();
    recipient.wrap_file_key(&FileKey::new(Box::new(file_key))).unwrap().0.remove(0)
}

fn copy(stanza: &Stanza) -> Stanza {
    Stanza { tag: stanza.tag.clone(), args: stanza.args.clone(), body: stanza.body.clone() }
}

fn other_stanza() -> Stanza {
    Stanza { tag: "ssh-ed25519".into(), args: vec!["AAAA".into()], body: vec![1; 32] }
}

fn messages(errors: &[Error]) -> Vec<String> {
    errors
        .iter()
        .map(|error| match error {
            Error::Identity { index, message } => format!("identity {index}: {message}"),
            Error::Internal { message } => format!("internal: {message}"),
            Error::Stanza { file_index, stanza_index, message } => format!("stanza {file_index}/{stanza_index}: {message}"),
        })
        .collect()
}

fn run(plugin: &mut KeywardIdentities<FakeDaemon>, files: Vec<Vec<Stanza>>) -> HashMap<usize, Result<FileKey, Vec<Error>>> {
    plugin.unwrap_file_keys(files, NoCallbacks).unwrap()
}

#[test]
fn unwraps_our_stanza_among_others() {
    let ours = X25519Secret::generate().unwrap();
    let stranger = X25519Secret::generate().unwrap();
    let mut plugin = KeywardIdentities::new(daemon_with(vec![X25519Secret::from_slice(ours.expose()).unwrap()]));
    assert!(plugin.add_identity(0, "keyward", &payload(&ours)).is_ok());

    let files = vec![vec![other_stanza(), stanza_to(&stranger, [4; 16]), stanza_to(&ours, [4; 16])]];
    let results = run(&mut plugin, files);

    let file_key = results[&0].as_ref().ok().expect("a file key");
    assert_eq!(file_key.expose_secret(), &[4; 16]);
}

#[test]
fn second_identity_unwraps_when_first_does_not_match() {
    let first = X25519Secret::generate().unwrap();
    let second = X25519Secret::generate().unwrap();
    let stanza = stanza_to(&second, [8; 16]);
    let daemon = daemon_with(vec![X25519Secret::from_slice(first.expose()).unwrap(), X25519Secret::from_slice(second.expose()).unwrap()]);
    let mut plugin = KeywardIdentities::new(daemon);
    assert!(plugin.add_identity(0, "keyward", &payload(&first)).is_ok());
    assert!(plugin.add_identity(1, "keyward", &payload(&second)).is_ok());

    let results = run(&mut plugin, vec![vec![stanza]]);

    assert_eq!(results[&0].as_ref().ok().unwrap().expose_secret(), &[8; 16]);
    assert_eq!(plugin.daemon.calls, 2);
}

#[test]
fn file_for_another_key_has_no_entry() {
    let ours = X25519Secret::generate().unwrap();
    let stranger = X25519Secret::generate().unwrap();
    let mut plugin = KeywardIdentities::new(daemon_with(vec![X25519Secret::from_slice(ours.expose()).unwrap()]));
    assert!(plugin.add_identity(0, "keyward", &payload(&ours)).is_ok());

    let results = run(&mut plugin, vec![vec![stanza_to(&stranger, [1; 16]), other_stanza()]]);

    assert!(results.is_empty(), "age must report that no identity matched");
}

#[test]
fn sealed_daemon_is_one_clear_error() {
    let ours = X25519Secret::generate().unwrap();
    let mut daemon = daemon_with(vec![X25519Secret::from_slice(ours.expose()).unwrap()]);
    daemon.mode = Mode::Sealed;
    let mut plugin = KeywardIdentities::new(daemon);
    assert!(plugin.add_identity(0, "keyward", &payload(&ours)).is_ok());

    let results = run(&mut plugin, vec![vec![stanza_to(&ours, [1; 16]), stanza_to(&ours, [1; 16])]]);

    let errors = messages(results[&0].as_ref().err().expect("an error"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("is sealed"), "{errors:?}");
    assert!(errors[0].contains("keyward unseal"), "{errors:?}");
    assert_eq!(plugin.daemon.calls, 1);
}

#[test]
fn missing_daemon_names_socket_and_hint() {
    let ours = X25519Secret::generate().unwrap();
    let mut daemon = daemon_with(Vec::new());
    daemon.mode = Mode::Unreachable;
    let mut plugin = KeywardIdentities::new(daemon);
    assert!(plugin.add_identity(0, "keyward", &payload(&ours)).is_ok());

    let results = run(&mut plugin, vec![vec![stanza_to(&ours, [1; 16])]]);

    let errors = messages(results[&0].as_ref().err().unwrap());
    assert!(errors[0].contains("no Keyward daemon at /tmp/test/agent.sock"), "{errors:?}");
    assert!(errors[0].contains("KEYWARD_SOCKET_DIR"), "{errors:?}");
}

#[test]
fn refusal_is_reported_only_without_file_key() {
    let refused = X25519Secret::generate().unwrap();
    let allowed = X25519Secret::generate().unwrap();
    let mut daemon = daemon_with(vec![X25519Secret::from_slice(allowed.expose()).unwrap()]);
    daemon.refused.push(refused.public_key().fingerprint());
    let mut plugin = KeywardIdentities::new(daemon);
    assert!(plugin.add_identity(0, "keyward", &payload(&refused)).is_ok());
    assert!(plugin.add_identity(1, "keyward", &payload(&allowed)).is_ok());

    let served = run(&mut plugin, vec![vec![stanza_to(&allowed, [2; 16])]]);
    let not_served = run(&mut plugin, vec![vec![stanza_to(&refused, [2; 16]), stanza_to(&refused, [2; 16])]]);

    assert_eq!(served[&0].as_ref().ok().unwrap().expose_secret(), &[2; 16]);
    let errors = messages(not_served[&0].as_ref().err().unwrap());
    assert_eq!(errors.len(), 1, "one error per refused identity: {errors:?}");
    assert!(errors[0].starts_with("identity 0:"), "{errors:?}");
    assert!(errors[0].contains("refused by policy"), "{errors:?}");
    assert!(errors[0].contains(&refused.public_key().fingerprint_text()), "{errors:?}");
}

#[test]
fn malformed_stanzas_are_stanza_errors() {
    let ours = X25519Secret::generate().unwrap();
    let good = stanza_to(&ours, [5; 16]);
    let mut non_canonical = copy(&good);
    // The last base64 character carries two unused bits; setting one keeps
    // the bytes but makes the encoding non-canonical.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let last = non_canonical.args[0].pop().unwrap();
    let index = alphabet.find(last).unwrap() | 1;
    non_canonical.args[0].push(alphabet.as_bytes()[index] as char);
    let mut short_body = copy(&good);
    short_body.body.pop();
    let low_order = Stanza { tag: "X25519".into(), args: vec!["A".repeat(43)], body: vec![0; 32] };
    let no_args = Stanza { tag: "X25519".into(), args: Vec::new(), body: vec![0; 32] };

    for (bad, expected) in [
        (non_canonical, "canonical unpadded base64"),
        (short_body, "expected 32 bytes, got 31"),
        (low_order, "low-order point"),
        (no_args, "expected 1 argument"),
    ] {
        let mut plugin = KeywardIdentities::new(daemon_with(vec![X25519Secret::from_slice(ours.expose()).unwrap()]));
        assert!(plugin.add_identity(0, "keyward", &payload(&ours)).is_ok());

        // The good stanza comes second: a malformed stanza still makes the
        // file invalid, as age's own X25519 identities treat it.
        let results = run(&mut plugin, vec![vec![bad, copy(&good)]]);

        let errors = messages(results[&0].as_ref().err().expect("a stanza error"));
        assert!(errors[0].starts_with("stanza 0/0: invalid X25519 recipient stanza"), "{errors:?}");
        assert!(errors[0].contains(expected), "{errors:?}");
    }
}

#[test]
fn rejects_foreign_and_malformed_identities() {
    let mut plugin = KeywardIdentities::new(daemon_with(Vec::new()));

    let foreign = plugin.add_identity(0, "yubikey", &[1; 33]);
    let wrong_version = plugin.add_identity(1, "keyward", &[2; 33]);
    let short = plugin.add_identity(2, "keyward", &[1; 20]);

    assert!(matches!(foreign, Err(Error::Identity { index: 0, .. })));
    assert!(matches!(wrong_version, Err(Error::Identity { index: 1, .. })));
    assert!(matches!(short, Err(Error::Identity { index: 2, .. })));
}

#[test]
fn files_are_answered_independently() {
    let ours = X25519Secret::generate().unwrap();
    let stranger = X25519Secret::generate().unwrap();
    let mut plugin = KeywardIdentities::new(daemon_with(vec![X25519Secret::from_slice(ours.expose()).unwrap()]));
    assert!(plugin.add_identity(0, "keyward", &payload(&ours)).is_ok());

    let results = run(&mut plugin, vec![vec![stanza_to(&stranger, [1; 16])], vec![stanza_to(&ours, [9; 16])]]);

    assert!(!results.contains_key(&0));
    assert_eq!(results[&1].as_ref().ok().unwrap().expose_secret(), &[9; 16]);
}
