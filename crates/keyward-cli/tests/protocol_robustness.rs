//! Malformed and unwanted messages on the service socket: each gets
//! FAILURE or a closed connection, and the daemon keeps serving new
//! connections correctly afterwards.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::agent::{closed_by_peer, frame, put_string, raw_request, FAILURE, REQUEST_IDENTITIES};
use common::Env;

/// The identities answer a fresh connection gets.
fn identities(env: &Env) -> Vec<u8> {
    raw_request(&env.agent_socket(), &frame(&[REQUEST_IDENTITIES])).expect("the daemon answers a listing")
}

#[test]
fn malformed_requests_fail_and_daemon_keeps_serving() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed"), ("ecdsa-p256", "ec")]);
    let socket = env.agent_socket();
    let expected = identities(&env);
    assert_eq!(expected[0], 12, "the listing is not an identities answer");
    assert_eq!(&expected[1..5], &2u32.to_be_bytes(), "the listing does not hold both keys");

    let mut sign_bad_blob = vec![13];
    put_string(&mut sign_bad_blob, b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x05short");
    put_string(&mut sign_bad_blob, b"data");
    sign_bad_blob.extend_from_slice(&0u32.to_be_bytes());

    let mut unknown_extension = vec![27];
    put_string(&mut unknown_extension, b"no-such-extension@keyward.test");

    let mut add_identity = vec![17];
    put_string(&mut add_identity, b"ssh-ed25519");
    put_string(&mut add_identity, &[7u8; 32]);
    put_string(&mut add_identity, &[9u8; 64]);
    put_string(&mut add_identity, b"comment");

    let mut lock = vec![22];
    put_string(&mut lock, b"lock passphrase");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an empty frame", vec![]),
        ("an unknown message type", vec![200]),
        ("a sign request with a malformed key blob", sign_bad_blob),
        ("an unknown extension", unknown_extension),
        ("an add-identity request", add_identity),
        ("a remove-all request", vec![19]),
        ("a lock request", lock),
        ("a listing with trailing bytes", vec![11, 0]),
    ];
    for (what, body) in cases {
        let reply = raw_request(&socket, &frame(&body));
        assert_eq!(reply.as_deref(), Some(&[FAILURE][..]), "{what} did not get FAILURE");
        assert_eq!(identities(&env), expected, "a new connection lists other keys after {what}");
    }

    // The same connection keeps working after a FAILURE.
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(&frame(&[200])).unwrap();
    stream.write_all(&frame(&[11])).unwrap();
    let mut replies = vec![0u8; 4 + 1 + 4 + expected.len()];
    stream.read_exact(&mut replies).unwrap();
    assert_eq!(replies[4], FAILURE, "the first reply on the connection is not FAILURE");
    assert_eq!(&replies[9..], &expected[..], "the listing after a FAILURE on the same connection differs");
}

#[test]
fn oversized_frame_closes_connection() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let expected = identities(&env);

    let mut stream = UnixStream::connect(env.agent_socket()).unwrap();
    let length = 256 * 1024 + 1;
    stream.write_all(&(length as u32).to_be_bytes()).unwrap();
    // Some bytes of the announced body; the daemon must not wait for the rest.
    let _ = stream.write_all(&[11u8; 1024]);
    assert!(closed_by_peer(&mut stream, Duration::from_secs(20)), "a frame of {length} bytes did not close the connection");
    assert_eq!(identities(&env), expected, "a new connection lists other keys after an oversized frame");

    // The largest length is refused the same way.
    let reply = raw_request(&env.agent_socket(), &u32::MAX.to_be_bytes());
    assert_eq!(reply, None, "a frame of 4 GiB got a reply");
    assert_eq!(identities(&env), expected, "a new connection lists other keys after a 4 GiB length");

    // A frame of exactly 256 KiB is read and answered.
    let mut body = vec![200u8];
    body.resize(256 * 1024, 0);
    let reply = raw_request(&env.agent_socket(), &frame(&body));
    assert_eq!(reply.as_deref(), Some(&[FAILURE][..]), "a frame of exactly 256 KiB was not read and answered");
}

#[test]
fn truncated_frame_closes_connection() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let expected = identities(&env);

    let mut body = vec![13];
    put_string(&mut body, &[1u8; 40]);
    put_string(&mut body, &[2u8; 40]);
    body.extend_from_slice(&0u32.to_be_bytes());
    let whole = frame(&body);

    let mut stream = UnixStream::connect(env.agent_socket()).unwrap();
    stream.write_all(&whole[..4 + body.len() / 2]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_peer(&mut stream, Duration::from_secs(20)), "a truncated frame did not close the connection");
    assert_eq!(identities(&env), expected, "a new connection lists other keys after a truncated frame");

    // Half a length prefix, then the end of the stream.
    let mut stream = UnixStream::connect(env.agent_socket()).unwrap();
    stream.write_all(&[0, 0]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_peer(&mut stream, Duration::from_secs(20)), "half a length prefix did not close the connection");
    assert_eq!(identities(&env), expected, "a new connection lists other keys after half a length prefix");
}
