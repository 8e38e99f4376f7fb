//! Pipelined requests and `batch@keyward` on a real daemon: replies come in
//! request order, each batch item gets its own outcome, limits are refused
//! without harm to the connection.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::agent::{extension, frame, put_string, FAILURE, IDENTITIES_ANSWER, REQUEST_IDENTITIES, SIGN_REQUEST, SIGN_RESPONSE};
use common::Env;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

const EXTENSION_FAILURE: u8 = 28;
const EXTENSION_RESPONSE: u8 = 29;

/// SSH_AGENT_RSA_SHA2_512, the sign request flag for RSA with SHA-512.
const RSA_SHA2_512: u32 = 4;

/// A sign request without flags.
fn sign_request(blob: &[u8], data: &[u8]) -> Vec<u8> {
    common::agent::sign_request(blob, data, 0)
}

fn batch(items: &[Vec<u8>]) -> Vec<u8> {
    let mut rest = (items.len() as u32).to_be_bytes().to_vec();
    for item in items {
        put_string(&mut rest, item);
    }
    extension("batch@keyward", &rest)
}

/// Splits `count` `string`s off the front of `bytes`.
fn strings(mut bytes: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..count {
        let length = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(bytes[4..4 + length].to_vec());
        bytes = &bytes[4 + length..];
    }
    assert!(bytes.is_empty(), "trailing bytes");
    out
}

fn read_reply(stream: &mut UnixStream) -> Vec<u8> {
    common::agent::read_reply(stream).expect("a reply")
}

fn connect(env: &Env) -> UnixStream {
    let stream = UnixStream::connect(env.agent_socket()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}

fn public_blob(env: &Env, name: &str) -> Vec<u8> {
    env.public_key_blob(name)
}

/// Checks an Ed25519 SSH_AGENT_SIGN_RESPONSE against `data`.
fn assert_signs(reply: &[u8], blob: &[u8], data: &[u8]) {
    assert_eq!(reply[0], SIGN_RESPONSE, "expected a signature, got message {}", reply[0]);
    let signature = &strings(&reply[1..], 1)[0];
    let parts = strings(signature, 2);
    assert_eq!(parts[0], b"ssh-ed25519");
    let public = &strings(blob, 2)[1];
    let key = VerifyingKey::from_bytes(public.as_slice().try_into().unwrap()).unwrap();
    let signature = Signature::from_bytes(parts[1].as_slice().try_into().unwrap());
    key.verify(data, &signature).expect("the signature verifies for this request's data");
}

fn data_for(index: usize) -> Vec<u8> {
    format!("pipelined request number {index}").into_bytes()
}

#[test]
fn answers_pipelined_requests_in_order() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);

    // 50 requests in one write: signatures over distinct data, identity
    // lists and status queries mixed.
    let mut expected = Vec::new();
    let mut wire = Vec::new();
    for index in 0..50 {
        let body = match index % 5 {
            1 => {
                expected.push(None);
                vec![REQUEST_IDENTITIES]
            }
            3 => {
                expected.push(Some(Vec::new()));
                extension("status@keyward", &[])
            }
            _ => {
                expected.push(Some(data_for(index)));
                sign_request(&blob, &data_for(index))
            }
        };
        wire.extend_from_slice(&frame(&body));
    }
    stream.write_all(&wire).unwrap();

    for (index, expect) in expected.iter().enumerate() {
        let reply = read_reply(&mut stream);
        match expect {
            None => assert_eq!(reply[0], IDENTITIES_ANSWER, "reply {index}"),
            Some(data) if data.is_empty() => {
                assert_eq!(reply[0], EXTENSION_RESPONSE, "reply {index}");
                assert_eq!(&reply[reply.len() - 1..], &[1], "status says unsealed");
            }
            Some(data) => assert_signs(&reply, &blob, data),
        }
    }
}

#[test]
fn answers_past_in_flight_cap_in_order() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);
    let count = 300;
    let writer_stream = stream.try_clone().unwrap();
    let writer_blob = blob.clone();
    // Write from another thread: the daemon stops reading while its
    // in-flight cap is reached, so a single thread could block on write.
    let writer = std::thread::spawn(move || {
        let mut writer_stream = writer_stream;
        let mut wire = Vec::new();
        for index in 0..count {
            wire.extend_from_slice(&frame(&sign_request(&writer_blob, &data_for(index))));
        }
        writer_stream.write_all(&wire).unwrap();
    });
    for index in 0..count {
        assert_signs(&read_reply(&mut stream), &blob, &data_for(index));
    }
    writer.join().unwrap();
}

/// RSA signatures run on blocking threads and Ed25519 ones in groups on
/// the runtime's workers. Mixed on one connection, the replies still come
/// in request order.
#[test]
fn answers_mixed_rsa_and_ed25519_in_order() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed"), ("rsa-2048", "rsa")]);
    let ed = public_blob(&env, "ed");
    let rsa = public_blob(&env, "rsa");
    let mut stream = connect(&env);
    // Runs of Ed25519 requests of several lengths between RSA requests.
    let is_rsa = |index: usize| [3, 4, 12, 30, 31, 32, 59].contains(&index);
    let mut wire = Vec::new();
    for index in 0..60 {
        let body = if is_rsa(index) {
            common::agent::sign_request(&rsa, &data_for(index), RSA_SHA2_512)
        } else {
            sign_request(&ed, &data_for(index))
        };
        wire.extend_from_slice(&frame(&body));
    }
    stream.write_all(&wire).unwrap();
    for index in 0..60 {
        let reply = read_reply(&mut stream);
        if is_rsa(index) {
            assert_eq!(reply[0], SIGN_RESPONSE, "reply {index}");
            let signature = &strings(&reply[1..], 1)[0];
            assert_eq!(strings(signature, 2)[0], b"rsa-sha2-512", "reply {index}");
        } else {
            assert_signs(&reply, &ed, &data_for(index));
        }
    }
}

#[test]
fn batch_refusal_leaves_others_intact() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut unknown = blob.clone();
    let last = unknown.len() - 1;
    unknown[last] ^= 1;

    let items = vec![
        sign_request(&blob, b"first"),
        sign_request(&unknown, b"no such key"),
        extension("status@keyward", &[]),
        sign_request(&blob, b"fourth"),
        batch(&[sign_request(&blob, b"nested")]),
        vec![SIGN_REQUEST, 0, 0],
        extension("session-bind@openssh.com", &[]),
        sign_request(&blob, b"eighth"),
    ];
    let mut stream = connect(&env);
    stream.write_all(&frame(&batch(&items))).unwrap();
    let reply = read_reply(&mut stream);

    assert_eq!(reply[0], EXTENSION_RESPONSE);
    let name_end = 5 + "batch@keyward".len();
    assert_eq!(&reply[5..name_end], b"batch@keyward");
    let count = u32::from_be_bytes(reply[name_end..name_end + 4].try_into().unwrap()) as usize;
    assert_eq!(count, items.len());
    let replies = strings(&reply[name_end + 4..], count);

    assert_signs(&replies[0], &blob, b"first");
    assert_eq!(replies[1], [FAILURE], "unknown key is refused");
    assert_eq!(replies[2][0], EXTENSION_RESPONSE, "status inside a batch");
    assert_signs(&replies[3], &blob, b"fourth");
    assert_eq!(replies[4], [EXTENSION_FAILURE, 0, 0, 0, 3], "a batch inside a batch is invalid");
    assert_eq!(replies[5], [FAILURE], "a malformed item is refused");
    assert_eq!(replies[6], [EXTENSION_FAILURE, 0, 0, 0, 3], "session-bind inside a batch is invalid");
    assert_signs(&replies[7], &blob, b"eighth");

    // The connection still works afterwards.
    stream.write_all(&frame(&sign_request(&blob, b"after"))).unwrap();
    assert_signs(&read_reply(&mut stream), &blob, b"after");
}

#[test]
fn rejects_batch_over_item_limit() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);

    // 4097 tiny items: over the 4096-item cap, within the frame limit.
    let too_many: Vec<Vec<u8>> = (0..4097).map(|_| extension("status@keyward", &[])).collect();
    stream.write_all(&frame(&batch(&too_many))).unwrap();
    assert_eq!(read_reply(&mut stream), [EXTENSION_FAILURE, 0, 0, 0, 3]);

    // A count that promises more items than the body holds.
    let mut lying = 1000u32.to_be_bytes().to_vec();
    put_string(&mut lying, &sign_request(&blob, b"x"));
    stream.write_all(&frame(&extension("batch@keyward", &lying))).unwrap();
    assert_eq!(read_reply(&mut stream), [EXTENSION_FAILURE, 0, 0, 0, 3]);

    // An empty batch is a valid, empty answer.
    stream.write_all(&frame(&batch(&[]))).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply[0], EXTENSION_RESPONSE);
    assert_eq!(&reply[reply.len() - 4..], &[0, 0, 0, 0]);

    // The daemon still serves this connection.
    stream.write_all(&frame(&sign_request(&blob, b"still here"))).unwrap();
    assert_signs(&read_reply(&mut stream), &blob, b"still here");
}

#[test]
fn answers_batch_at_item_limit() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);
    // 4096 items, signatures and status queries alternating, so that both
    // the request and the replies fit in one frame each.
    let items: Vec<Vec<u8>> = (0..4096)
        .map(|index| if index % 2 == 0 { sign_request(&blob, &(index as u32).to_be_bytes()) } else { extension("status@keyward", &[]) })
        .collect();
    let body = batch(&items);
    assert!(body.len() <= 256 * 1024, "the test's batch fits in a frame");
    stream.write_all(&frame(&body)).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply[0], EXTENSION_RESPONSE, "got {:?}", &reply[..reply.len().min(8)]);
    let name_end = 5 + "batch@keyward".len();
    let replies = strings(&reply[name_end + 4..], 4096);
    for (index, item) in replies.iter().enumerate() {
        if index % 2 == 0 {
            assert_signs(item, &blob, &(index as u32).to_be_bytes());
        } else {
            assert_eq!(item[0], EXTENSION_RESPONSE, "item {index}");
        }
    }
}

#[test]
fn answers_frame_sent_byte_by_byte() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);
    let wire = [frame(&sign_request(&blob, b"one byte at a time")), frame(&[REQUEST_IDENTITIES])].concat();
    for byte in &wire {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
    }
    assert_signs(&read_reply(&mut stream), &blob, b"one byte at a time");
    assert_eq!(read_reply(&mut stream)[0], IDENTITIES_ANSWER);
}

/// Wake-ups of every thread of a process so far: the voluntary context
/// switches the kernel counted, which anyone may read.
fn wakeups(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else { continue };
        let count = status.lines().find_map(|line| line.strip_prefix("voluntary_ctxt_switches:")).expect("the status lists voluntary switches");
        total += count.trim().parse::<u64>().unwrap();
    }
    total
}

/// A frame trickled in with pauses between its bytes gets its signature.
/// Once the trickle shows, the daemon reads that connection after pauses
/// of 10 to 80 ms instead of waking for every byte. The next whole request
/// on the connection is then served as usual.
#[test]
fn trickled_frame_does_not_wake_daemon_per_byte() {
    let (env, daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);
    let data = vec![0x5a; 3000];
    let wire = frame(&sign_request(&blob, &data));

    let before = wakeups(daemon.pid());
    let began = std::time::Instant::now();
    for byte in &wire {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        std::thread::sleep(Duration::from_micros(100));
    }
    let reply = read_reply(&mut stream);
    let elapsed = began.elapsed();
    let woken = wakeups(daemon.pid()) - before;
    assert_signs(&reply, &blob, &data);
    // Paced, the daemon wakes for the first 10 ms of the frame, then at
    // most once every 10 ms (possibly waking a second worker), and for the
    // reply. Unpaced, it wakes about once for each of the 3,000+ bytes.
    let bound = 3 * (elapsed.as_millis() as u64 / 10) + 250;
    assert!(woken < bound, "{woken} wake-ups for {} bytes in {elapsed:?}; expected under {bound}", wire.len());

    stream.write_all(&frame(&sign_request(&blob, b"whole"))).unwrap();
    assert_signs(&read_reply(&mut stream), &blob, b"whole");
}

/// The 10 s a frame may take count only while the daemon waits to read.
/// Here the daemon holds the first half of a request while it is blocked
/// writing two large batch replies to a client that reads nothing for
/// 11 s. The request still gets its signature once the rest of it comes.
#[test]
fn frame_deadline_skips_time_spent_writing() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);
    // Two replies of about 230 KB each: more than the socket buffers hold.
    let items: Vec<Vec<u8>> = (0..2500).map(|index| sign_request(&blob, &(index as u32).to_be_bytes())).collect();
    let last = frame(&sign_request(&blob, b"after the wait"));
    let (head, tail) = last.split_at(last.len() / 2);
    let mut wire = [frame(&batch(&items)), frame(&batch(&items))].concat();
    wire.extend_from_slice(head);
    stream.write_all(&wire).unwrap();

    std::thread::sleep(Duration::from_secs(11));
    stream.write_all(tail).unwrap();
    for _ in 0..2 {
        let reply = read_reply(&mut stream);
        assert_eq!(reply[0], EXTENSION_RESPONSE, "a batch reply");
    }
    assert_signs(&read_reply(&mut stream), &blob, b"after the wait");
}

/// SIGTERM while clients keep RSA work in flight: the daemon stops serving
/// before it seals. No request gets a signature, or a refusal as sealed,
/// after the audit trail records the stop.
#[test]
fn stop_under_load_audits_nothing_after_stopped() {
    let env = Env::with_keys(&[("rsa-2048", "rsa")]);
    let audit = env.path("audit.log");
    let config = env.write_config(&format!("[daemon]\naudit = \"requests\"\naudit_log = \"{}\"\n", audit.display()));
    let daemon = env.start_daemon_with_config(&config);
    env.unseal();
    let rsa = public_blob(&env, "rsa");

    let burst = frame(&common::agent::sign_request(&rsa, b"under load", RSA_SHA2_512)).repeat(16);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut stream = connect(&env);
            let burst = burst.clone();
            std::thread::spawn(move || {
                // Until the daemon goes away.
                while stream.write_all(&burst).is_ok() {
                    for _ in 0..16 {
                        if common::agent::read_reply(&mut stream).is_err() {
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(daemon.stop().success(), "the daemon did not stop cleanly");
    for client in clients {
        client.join().unwrap();
    }

    let text = std::fs::read_to_string(&audit).unwrap();
    let events = common::audit_lines(&audit);
    let signed = events.iter().filter(|event| event["event"] == "request").count();
    assert!(signed > 0, "no signature was made before the stop:\n{text}");
    let stopped = events.iter().position(|event| event["event"] == "stopped").expect("the stop is recorded");
    assert_eq!(stopped, events.len() - 1, "lines after the stop:\n{}", text.lines().skip(stopped).collect::<Vec<_>>().join("\n"));
}

#[test]
fn closes_connection_on_oversized_frame() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let blob = public_blob(&env, "ed");
    let mut stream = connect(&env);
    // A valid request first: it is still answered before the connection
    // closes on the frame that follows it.
    let mut wire = frame(&sign_request(&blob, b"before"));
    wire.extend_from_slice(&(256 * 1024 + 1u32).to_be_bytes());
    wire.push(SIGN_REQUEST);
    stream.write_all(&wire).unwrap();
    assert_signs(&read_reply(&mut stream), &blob, b"before");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("the daemon closes the connection");
    assert!(rest.is_empty(), "no reply to an oversized frame");
}
