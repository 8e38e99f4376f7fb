//! `lifetime_minutes`: a key may be used only that long after unsealing.

mod common;

use keyward::agent;
use keyward::service::Connection;

use common::{connection, public_blob, sign_request, unsealed_service};

const UNSEALED: u64 = 1_790_000_000;

#[test]
fn key_lifetime_ends_signing_after_unseal() {
    let service = unsealed_service(
        "[[key]]\nname = \"short\"\nusers = [1000]\noperations = [\"sign\"]\nlifetime_minutes = 60\n\
         [[key]]\nname = \"long\"\nusers = [1000]\noperations = [\"sign\"]\n",
        &["short", "long"],
    );
    service.set_unsealed_at(UNSEALED);
    let mut connection = connection();

    let sign = |connection: &mut Connection, name: &str, now: u64| {
        let body = sign_request(&public_blob(&service, name), b"data");
        service.handle(connection, &body, now).into_body()[0] == agent::SSH_AGENT_SIGN_RESPONSE
    };
    assert!(sign(&mut connection, "short", UNSEALED + 59 * 60));
    assert!(!sign(&mut connection, "short", UNSEALED + 60 * 60), "the key signed after its lifetime");
    assert!(sign(&mut connection, "long", UNSEALED + 600 * 60), "a key without a lifetime stopped signing");
    assert_eq!(service.counters().refusals_by_reason.get("lifetime-expired"), Some(&1));
}
