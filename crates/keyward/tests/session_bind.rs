//! `session-bind@openssh.com` through the dispatcher: a valid bind gets
//! SUCCESS, a second one or one with a bad host signature FAILURE, and a
//! forwarded connection lists and signs only with forwarding-allowed keys,
//! for user authentication only, and gets no extensions.

mod common;

use keyward::agent::{self, extensions};
use keyward::keys::LoadedKey;
use keyward::service::Service;
use keyward::wire::{Reader, Writer};

use common::{connection, key, public_blob, sign_request, unsealed_service};

const NOW: u64 = 1_790_000_000;

fn service() -> Service {
    unsealed_service(
        "[[key]]\nname = \"fwd\"\nusers = [1000]\noperations = [\"sign\"]\nforwarding = true\n\
         [[key]]\nname = \"local\"\nusers = [1000]\noperations = [\"sign\"]\n",
        &["fwd", "local"],
    )
}

fn bind_request(host: &LoadedKey, session_id: &[u8], signed: &[u8], forwarding: bool) -> Vec<u8> {
    let signature = host.sign(signed, 0, false).unwrap();
    let mut body = vec![agent::SSH_AGENTC_EXTENSION];
    body.put_string(extensions::SESSION_BIND.as_bytes());
    body.put_string(host.public_blob());
    body.put_string(session_id);
    body.put_string(&signature);
    body.put_bool(forwarding);
    body
}

fn userauth(key_blob: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    data.put_string(&[9u8; 32]);
    data.put_u8(50);
    data.put_string(b"user");
    data.put_string(b"ssh-connection");
    data.put_string(b"publickey");
    data.put_bool(true);
    data.put_string(b"ssh-ed25519");
    data.put_string(key_blob);
    data
}

fn listed(reply: &[u8]) -> usize {
    let mut reader = Reader::new(reply);
    assert_eq!(reader.u8().unwrap(), agent::SSH_AGENT_IDENTITIES_ANSWER);
    reader.u32().unwrap() as usize
}

#[test]
fn valid_bind_succeeds_once() {
    let service = service();
    let host = key("host");
    let mut connection = connection();
    let reply = service.handle(&mut connection, &bind_request(&host, &[1; 32], &[1; 32], false), NOW).into_body();
    assert_eq!(reply, agent::success());
    assert!(!connection.forwarded);
    assert!(connection.binding.is_some());

    let again = service.handle(&mut connection, &bind_request(&host, &[2; 32], &[2; 32], true), NOW).into_body();
    assert_eq!(again, agent::failure(), "a second bind after one for authentication was accepted");
    assert!(!connection.forwarded, "a refused bind marked the connection forwarded");
}

#[test]
fn bind_with_bad_host_signature_fails() {
    let service = service();
    let host = key("host");
    let mut connection = connection();
    let reply = service.handle(&mut connection, &bind_request(&host, &[1; 32], &[3; 32], true), NOW).into_body();
    assert_eq!(reply, agent::failure());
    assert!(!connection.forwarded);
    assert!(connection.binding.is_none());
}

#[test]
fn forwarded_connection_signs_only_auth() {
    let service = service();
    let host = key("host");
    let fwd = public_blob(&service, "fwd");
    let local = public_blob(&service, "local");

    // Control: before the bind both keys list and sign anything.
    let mut plain = connection();
    assert_eq!(listed(&service.handle(&mut plain, &[agent::SSH_AGENTC_REQUEST_IDENTITIES], NOW).into_body()), 2);
    let reply = service.handle(&mut plain, &sign_request(&local, b"anything"), NOW).into_body();
    assert_eq!(reply[0], agent::SSH_AGENT_SIGN_RESPONSE);

    let mut connection = connection();
    let reply = service.handle(&mut connection, &bind_request(&host, &[1; 32], &[1; 32], true), NOW).into_body();
    assert_eq!(reply, agent::success());
    assert!(connection.forwarded);

    assert_eq!(listed(&service.handle(&mut connection, &[agent::SSH_AGENTC_REQUEST_IDENTITIES], NOW).into_body()), 1);
    let reply = service.handle(&mut connection, &sign_request(&fwd, &userauth(&fwd)), NOW).into_body();
    assert_eq!(reply[0], agent::SSH_AGENT_SIGN_RESPONSE, "user authentication with the forwarding key was refused");
    let reply = service.handle(&mut connection, &sign_request(&fwd, b"anything"), NOW).into_body();
    assert_eq!(reply, agent::failure(), "arbitrary data was signed over a forwarded connection");
    let reply = service.handle(&mut connection, &sign_request(&local, &userauth(&local)), NOW).into_body();
    assert_eq!(reply, agent::failure(), "a key without forwarding signed over a forwarded connection");

    for name in [extensions::QUERY, extensions::STATUS, extensions::LIST, extensions::SESSION_BIND] {
        let mut body = vec![agent::SSH_AGENTC_EXTENSION];
        body.put_string(name.as_bytes());
        assert_eq!(service.handle(&mut connection, &body, NOW).into_body(), agent::failure(), "{name} over a forwarded connection");
    }
}
