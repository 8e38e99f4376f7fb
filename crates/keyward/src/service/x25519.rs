//! Handlers for the X25519 extensions: `x25519-unwrap@keyward` (policy
//! operation `decrypt`, key purpose `decrypt` or `agree`) and
//! `x25519-agree@keyward` (policy operation `agree`, key purpose `agree`).

use std::sync::Arc;

use super::{Connection, Cost, KeySet, Reply, Service, Work};
use crate::agent::extensions::{self, FailureCode};
use crate::agent::x25519::{self as wire, AgreeRequest, UnwrapRequest};
use crate::keys::KeyType;
use crate::x25519::{self, X25519Error};

const DECRYPT: &str = "decrypt";
const AGREE: &str = "agree";

impl Service {
    pub(super) fn x25519_unwrap(&self, connection: &Connection, body: &[u8], now: u64) -> Reply {
        let Ok(request) = UnwrapRequest::parse(body) else {
            let reply = extensions::failure(FailureCode::InvalidRequest);
            return Reply::Ready(self.refuse(connection, None, "malformed", Some(wire::UNWRAP), reply));
        };
        let keys = match self.x25519_key(connection, &request.fingerprint, DECRYPT, now) {
            Ok(keys) => keys,
            Err(reply) => return Reply::Ready(reply),
        };

        let service = self.clone();
        let peer = connection.peer.clone();
        Reply::Work(Work::one(Cost::Light, move || {
            let connection = Connection::new(peer);
            let key = keys.by_fingerprint(&request.fingerprint).expect("the key set is immutable");
            if keys.is_retired() {
                return service.refuse_key(&connection, key, "sealed", DECRYPT, extensions::failure(FailureCode::Sealed));
            }
            let Some(private) = key.raw_private() else {
                let reply = extensions::failure(FailureCode::Refused);
                return service.refuse_key(&connection, key, "not-x25519", DECRYPT, reply);
            };

            let file_key = match x25519::unwrap_stanza(private, &request.ephemeral_share, &request.stanza_body) {
                Ok(file_key) => Some(file_key),
                // A stanza for another key is an ordinary outcome: age
                // tries every identity on every stanza.
                Err(X25519Error::NotForThisKey) => None,
                Err(X25519Error::LowOrderPoint) => {
                    let reply = extensions::failure(FailureCode::InvalidRequest);
                    return service.refuse_key(&connection, key, "low-order-point", DECRYPT, reply);
                }
                Err(_) => {
                    let reply = extensions::failure(FailureCode::Refused);
                    return service.refuse_key(&connection, key, "malformed-private-key", DECRYPT, reply);
                }
            };

            if !service.succeeded(&connection.peer, key, DECRYPT) {
                return extensions::failure(FailureCode::Refused);
            }
            let body = wire::unwrap_reply_body(file_key.as_deref());
            extensions::response(wire::UNWRAP, &body)
        }))
    }

    pub(super) fn x25519_agree(&self, connection: &Connection, body: &[u8], now: u64) -> Reply {
        let Ok(request) = AgreeRequest::parse(body) else {
            let reply = extensions::failure(FailureCode::InvalidRequest);
            return Reply::Ready(self.refuse(connection, None, "malformed", Some(wire::AGREE), reply));
        };
        let keys = match self.x25519_key(connection, &request.fingerprint, AGREE, now) {
            Ok(keys) => keys,
            Err(reply) => return Reply::Ready(reply),
        };

        let service = self.clone();
        let peer = connection.peer.clone();
        Reply::Work(Work::one(Cost::Heavy, move || {
            let connection = Connection::new(peer);
            let key = keys.by_fingerprint(&request.fingerprint).expect("the key set is immutable");
            if keys.is_retired() {
                return service.refuse_key(&connection, key, "sealed", AGREE, extensions::failure(FailureCode::Sealed));
            }
            let results = match key.raw_private().map(|private| x25519::agree(private, &request.peers)) {
                Some(Ok(results)) => results,
                _ => {
                    let reply = extensions::failure(FailureCode::Refused);
                    return service.refuse_key(&connection, key, "malformed-private-key", AGREE, reply);
                }
            };
            // An all-zero result is rejected for that peer alone; the
            // others in the batch are still served.
            let results: Vec<_> = results.into_iter().map(Result::ok).collect();

            if !service.succeeded(&connection.peer, key, AGREE) {
                return extensions::failure(FailureCode::Refused);
            }
            let body = wire::agree_reply_body(&results);
            extensions::response(wire::AGREE, &body)
        }))
    }

    /// Finds the x25519 key named by `fingerprint` and checks that the peer
    /// may use it for `operation` now. On refusal, returns the reply.
    fn x25519_key(&self, connection: &Connection, fingerprint: &[u8; 32], operation: &'static str, now: u64) -> Result<Arc<KeySet>, Vec<u8>> {
        let refused = || extensions::failure(FailureCode::Refused);
        let Some(keys) = self.inner.keys.load_full() else {
            let name = self.public_name_by_fingerprint(fingerprint);
            let reply = extensions::failure(FailureCode::Sealed);
            return Err(self.refuse(connection, name.as_deref(), "sealed", Some(operation), reply));
        };
        let Some(key) = keys.by_fingerprint(fingerprint) else {
            return Err(self.refuse(connection, None, "unknown-key", Some(operation), refused()));
        };

        if key.key_type != KeyType::X25519 {
            return Err(self.refuse_key(connection, key, "not-x25519", operation, refused()));
        }
        let policy = self.inner.policy.load();
        if !policy.permits(&connection.peer, key.name(), key.purpose, operation, connection.forwarded) {
            return Err(self.refuse_key(connection, key, "not-allowed", operation, refused()));
        }
        if !key.is_valid_at(now) {
            return Err(self.refuse_key(connection, key, "outside-validity", operation, refused()));
        }
        if self.lifetime_expired(&policy, key.name(), now) {
            return Err(self.refuse_key(connection, key, "lifetime-expired", operation, refused()));
        }
        if !self.inner.audit.accepting() {
            return Err(self.refuse_key(connection, key, "audit-unavailable", operation, refused()));
        }
        Ok(keys)
    }

    fn public_name_by_fingerprint(&self, fingerprint: &[u8; 32]) -> Option<String> {
        self.inner
            .public
            .load()
            .iter()
            .find(|key| crate::keys::fingerprint_bytes(&key.meta.public_key) == *fingerprint)
            .map(|key| key.meta.name.clone())
    }
}

#[cfg(test)]
mod tests;
