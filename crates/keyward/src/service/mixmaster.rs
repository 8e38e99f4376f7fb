//! The `mixmaster-rsa@keyward` extension: decrypts the RSA block of a
//! Mixmaster Type II packet's first header to a fixed-length result.
//!
//! This is the padding-oracle surface of a remailer. A block with bad
//! padding is not a refusal: `RsaBlockKey::decrypt_fixed` returns
//! pseudo-random bytes of the requested length in the same time, and this
//! handler replies, counts and audits that request exactly as a valid one.
//! Every refusal depends only on public values: the request's shape, the
//! daemon's state, the key ID, the caller and the clock.

use super::{Connection, Reply, Service, Work};
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
        // Key IDs are public; a remailer holds a handful of keys.
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
        Reply::Work(Work(Box::new(move || {
            let key = keys.iter().nth(index).expect("the key set is immutable");
            let block_key = key.mixmaster().expect("found by its Mixmaster key");
            // The result is the message for a valid block and the
            // rejection value for any other: both are answered alike.
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
        })))
    }
}
