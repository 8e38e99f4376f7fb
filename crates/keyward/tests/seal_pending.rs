//! Work accepted before a seal but not started yet refuses as sealed: a
//! queue of signatures cannot outlast `seal`.

mod common;

use std::time::Duration;

use common::{connection, public_blob, sign_request, unsealed_service};
use keyward::agent;
use keyward::service::Reply;

#[test]
fn queued_signature_refuses_after_seal() {
    let service = unsealed_service("", &["ed"]);
    let blob = public_blob(&service, "ed");
    let mut connection = connection();
    let queued = match service.handle(&mut connection, &sign_request(&blob, b"queued"), 0) {
        Reply::Work(work) => work,
        Reply::Ready(body) => panic!("a signature was refused before the seal: {body:?}"),
    };
    let before = match service.handle(&mut connection, &sign_request(&blob, b"control"), 0) {
        Reply::Work(work) => work,
        Reply::Ready(body) => panic!("a signature was refused before the seal: {body:?}"),
    };
    // The control runs while unsealed and signs.
    assert_eq!(before.run()[0], agent::SSH_AGENT_SIGN_RESPONSE);

    // The queued work keeps a reference to the key set, so seal waits for
    // it until the grace period ends and reports that work was left.
    assert!(!service.seal(Duration::from_millis(10)));
    assert_eq!(queued.run(), agent::failure(), "a signature was made after the seal");
}
