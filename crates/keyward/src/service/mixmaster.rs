//! The `mixmaster-rsa@keyward` extension: decrypts the RSA block of a
//! Mixmaster Type II packet's first header to a fixed-length result.
//!
//! This is the padding-oracle surface of a remailer. A block with bad
//! padding is not a refusal: `RsaBlockKey::decrypt_fixed` returns
//! pseudo-random bytes of the requested length in the same time, and this
//! handler replies, counts and audits that request exactly as a valid one.
//! Every refusal depends only on public values: the request's shape, the
//! daemon's state, the key ID, the caller and the clock.

use super::{Connection, Cost, Reply, Service, Work};
use crate::agent::extensions::{self, FailureCode};
use crate::mixmaster::{self, RsaRequest, EXTENSION};

/// The policy operation and audit name of the extension.
const OPERATION: &str = "mixmaster";

impl Service {
    pub(super) fn mixmaster_rsa(&self, connection: &Connection, body: &[u8], now: u64) -> Reply {
        let failure = extensions::failure;
        let request = match RsaRequest::parse(body) {
            Ok(request) if mixmaster::OUT_LENS.contains(&request.out_len) => request,
            _ => {
                let reply = failure(FailureCode::InvalidRequest);
                return Reply::Ready(self.refuse(connection, None, "malformed", Some(EXTENSION), reply));
            }
        };
        let Some(keys) = self.inner.keys.load_full() else {
            return Reply::Ready(self.refuse(connection, None, "sealed", Some(EXTENSION), failure(FailureCode::Sealed)));
        };
        // Key IDs are public, and a remailer has a handful of keys.
        let Some(index) = keys.iter().position(|key| key.mixmaster().is_some_and(|m| m.key_id().0 == request.key_id))
        else {
            let reply = failure(FailureCode::Refused);
            return Reply::Ready(self.refuse(connection, None, "unknown-key", Some(EXTENSION), reply));
        };
        let key = keys.iter().nth(index).expect("the index came from this key set");
        let policy = self.inner.policy.load();
        if !policy.permits(&connection.peer, key.name(), key.purpose, OPERATION, connection.forwarded) {
            return Reply::Ready(self.refuse_key(connection, key, "not-allowed", OPERATION, failure(FailureCode::Refused)));
        }
        if !mixmaster::usable(key.meta.not_before, key.meta.not_after, now) {
            let reply = failure(FailureCode::Refused);
            return Reply::Ready(self.refuse_key(connection, key, "outside-validity", OPERATION, reply));
        }
        let block_key = key.mixmaster().expect("found by its Mixmaster key");
        if request.rsa_block.len() != block_key.modulus_len() {
            let reply = failure(FailureCode::InvalidRequest);
            return Reply::Ready(self.refuse_key(connection, key, "malformed", OPERATION, reply));
        }
        if !self.inner.audit.accepting() {
            let reply = failure(FailureCode::Refused);
            return Reply::Ready(self.refuse_key(connection, key, "audit-unavailable", OPERATION, reply));
        }

        let service = self.clone();
        let peer = connection.peer.clone();
        Reply::Work(Work::one(Cost::Heavy, move || {
            let key = keys.iter().nth(index).expect("the key set is immutable");
            if keys.is_retired() {
                return service.refuse_key(&Connection::new(peer), key, "sealed", OPERATION, failure(FailureCode::Sealed));
            }
            let block_key = key.mixmaster().expect("found by its Mixmaster key");
            // The result is the message for a valid block and the
            // rejection value for any other. Both get the same reply.
            match block_key.decrypt_fixed(&request.rsa_block, request.out_len as usize) {
                Ok(plaintext) => {
                    if !service.succeeded(&peer, key, OPERATION) {
                        return failure(FailureCode::Refused);
                    }
                    extensions::response(EXTENSION, &mixmaster::reply_body(&plaintext))
                }
                // Unreachable after the checks above; the error depends
                // on the request's lengths only.
                Err(_) => {
                    let connection = Connection::new(peer);
                    service.refuse_key(&connection, key, "malformed", OPERATION, failure(FailureCode::InvalidRequest))
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use openssl::bn::BigNum;
    use openssl::rsa::{Padding, Rsa};

    use super::*;
    use crate::agent::extensions::parse_reply;
    use crate::agent::SSH_AGENTC_EXTENSION;
    use crate::config::Config;
    use crate::keys::{generate, KeyType, LoadedKey};
    use crate::keystore::EntryMeta;
    use crate::policy::{NoNames, Peer, Policy};
    use crate::service::{AuditEvent, AuditSink, KeySet};
    use crate::wire::Writer;

    const DAEMON_UID: u32 = 500;
    /// 2026-12-04 12:00 UTC.
    const NOW: u64 = 1_796_385_600;
    const DAY: u64 = 86_400;

    /// Keeps every audit line, to compare good and bad blocks.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl AuditSink for Recorder {
        fn record(&self, event: &AuditEvent<'_>) {
            self.0.lock().unwrap().push(serde_json::to_string(event).unwrap());
        }
        fn record_success(&self, event: &AuditEvent<'_>) -> bool {
            self.record(event);
            true
        }
    }

    struct Fixture {
        service: Service,
        audit: Arc<Recorder>,
        key_id: [u8; 16],
        public: Rsa<openssl::pkey::Public>,
    }

    /// A service holding one fresh 1024-bit Mixmaster key valid from
    /// `NOW - 1 day` to `expires`.
    fn fixture(expires: u64) -> Fixture {
        let generated = generate::generate(KeyType::Mixmaster(1024)).unwrap();
        let public = mixmaster::PublicKey::parse(&generated.public_blob).unwrap();
        let meta = EntryMeta {
            name: "remailer".into(),
            key_type: "mixmaster-1024".into(),
            purpose: "mixmaster".into(),
            public_key: generated.public_blob.clone(),
            comment: String::new(),
            created: NOW,
            not_before: Some(NOW - DAY),
            not_after: Some(expires),
            attributes: Vec::new(),
        };
        let key = LoadedKey::load(meta, generated.private).unwrap();
        let policy = Policy::resolve(&Config::default(), DAEMON_UID, &NoNames).unwrap();
        let audit = Arc::new(Recorder::default());
        let service = Service::new(policy, Vec::new(), audit.clone());
        service.unseal(KeySet::new(vec![key]));
        let rsa = Rsa::from_public_components(BigNum::from_slice(&public.n).unwrap(), BigNum::from_slice(&public.e).unwrap()).unwrap();
        Fixture { service, audit, key_id: public.key_id().0, public: rsa }
    }

    fn connection(uid: u32) -> Connection {
        Connection::new(Peer { uid, gid: uid, groups: Vec::new(), pid: None, exe: None })
    }

    fn call(service: &Service, uid: u32, body: &[u8], now: u64) -> Result<Vec<u8>, Option<FailureCode>> {
        let mut frame = vec![SSH_AGENTC_EXTENSION];
        frame.put_string(EXTENSION.as_bytes());
        frame.extend_from_slice(body);
        let reply = service.handle(&mut connection(uid), &frame, now).into_body();
        match parse_reply(EXTENSION, &reply).unwrap() {
            Ok(body) => Ok(mixmaster::parse_reply_body(body, 24).unwrap().to_vec()),
            Err(code) => Err(code),
        }
    }

    fn request(key_id: [u8; 16], block: &[u8], out_len: u32) -> Vec<u8> {
        RsaRequest { key_id, rsa_block: block.to_vec(), out_len }.encode()
    }

    fn encrypt(public: &Rsa<openssl::pkey::Public>, message: &[u8]) -> Vec<u8> {
        let mut block = vec![0u8; public.size() as usize];
        public.public_encrypt(message, &mut block, Padding::PKCS1).unwrap();
        block
    }

    #[test]
    fn decrypts_valid_block() {
        let f = fixture(NOW + 30 * DAY);
        let block = encrypt(&f.public, &[7; 24]);
        assert_eq!(call(&f.service, DAEMON_UID, &request(f.key_id, &block, 24), NOW), Ok(vec![7; 24]));
    }

    #[test]
    fn bad_padding_is_answered_like_a_valid_block() {
        let f = fixture(NOW + 30 * DAY);
        let good = encrypt(&f.public, &[7; 24]);
        let wrong_length = encrypt(&f.public, &[7; 23]);
        let random = vec![0x35u8; 128];

        let first = call(&f.service, DAEMON_UID, &request(f.key_id, &wrong_length, 24), NOW).unwrap();
        assert_eq!(first.len(), 24);
        assert_ne!(first[..23], [7; 23]);
        assert_eq!(call(&f.service, DAEMON_UID, &request(f.key_id, &random, 24), NOW).unwrap().len(), 24);
        call(&f.service, DAEMON_UID, &request(f.key_id, &good, 24), NOW).unwrap();

        let counters = f.service.counters();
        assert_eq!(counters.requests, 3);
        assert_eq!(counters.refusals, 0);
        assert_eq!(counters.per_key["remailer"].requests, 3);
        let lines = f.audit.0.lock().unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|line| line == &lines[0]), "audit lines differ: {lines:?}");
    }

    #[test]
    fn refuses_by_public_values_only() {
        let f = fixture(NOW + 30 * DAY);
        let block = encrypt(&f.public, &[7; 24]);
        let refused = Err(Some(FailureCode::Refused));
        let invalid = Err(Some(FailureCode::InvalidRequest));

        assert_eq!(call(&f.service, DAEMON_UID, &request([9; 16], &block, 24), NOW), refused, "unknown key ID");
        assert_eq!(call(&f.service, DAEMON_UID + 1, &request(f.key_id, &block, 24), NOW), refused, "another user");
        assert_eq!(call(&f.service, DAEMON_UID, &request(f.key_id, &block, 216), NOW), invalid, "216 for a 1024-bit key");
        assert_eq!(call(&f.service, DAEMON_UID, &request(f.key_id, &block, 23), NOW), invalid, "out-len 23");
        assert_eq!(call(&f.service, DAEMON_UID, &request(f.key_id, &block[1..], 24), NOW), invalid, "short block");
        assert_eq!(call(&f.service, DAEMON_UID, &[0, 0, 0, 16], NOW), invalid, "truncated body");

        f.service.seal(std::time::Duration::from_secs(1));
        assert_eq!(call(&f.service, DAEMON_UID, &request(f.key_id, &block, 24), NOW), Err(Some(FailureCode::Sealed)));
    }

    #[test]
    fn refuses_key_past_grace_period() {
        let expires = NOW - NOW % DAY - 7 * DAY;
        let f = fixture(expires);
        let block = encrypt(&f.public, &[7; 24]);
        let body = request(f.key_id, &block, 24);
        assert_eq!(call(&f.service, DAEMON_UID, &body, expires + 7 * DAY), Ok(vec![7; 24]), "last moment of grace");
        assert_eq!(call(&f.service, DAEMON_UID, &body, expires + 7 * DAY + 1), Err(Some(FailureCode::Refused)));
        assert_eq!(call(&f.service, DAEMON_UID, &body, NOW - 2 * DAY), Err(Some(FailureCode::Refused)), "before creation");
    }
}
