//! Tests against vectors made with the real Mixmaster programs (brainx 3.0
//! for 1024-bit keys, 3.2.0 for 4096-bit version-A keys), in `tests/data/`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use keyward_mixmaster::{
    capability_line, format_final_mail, format_next_hop_mail, key_txt_block, key_usable, parse_date,
    parse_final_payload, parse_packet, parse_secring, FinalMailConfig, InvalidReason, KeyId, Reassembly, RemailerInfo,
    RsaBlockKey, SecretKey, SecringError, Unwrapped,
};
use serde_json::Value;

/// 2026-12-04 12:00:00 UTC, the day the vectors were made.
const NOW: u64 = 1_796_385_600;

fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(data_path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn jsonl(rel: &str) -> Vec<Value> {
    String::from_utf8(read(rel)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// Key folder → passphrase (exact bytes).
const PASSPHRASES: [(&str, &str); 4] = [
    ("r1024", "mixtest-S-1024"),
    ("r4096", "Grüße aus S-4096"),
    ("r1024-hop2", "mixtest-S-1024-hop2"),
    ("r4096-hop2", "Grüße aus S-4096, Hop 2"),
];

struct Loaded {
    secret: SecretKey,
    block_key: RsaBlockKey,
}

fn keys() -> &'static HashMap<&'static str, Loaded> {
    static KEYS: OnceLock<HashMap<&'static str, Loaded>> = OnceLock::new();
    KEYS.get_or_init(|| {
        PASSPHRASES
            .iter()
            .map(|(dir, pass)| {
                let mut ring = parse_secring(&read(&format!("{dir}/secring.mix")), pass.as_bytes()).unwrap();
                assert_eq!(ring.len(), 1, "{dir}");
                let secret = ring.remove(0);
                let block_key = RsaBlockKey::from_pkcs1_der(&secret.to_pkcs1_der()).unwrap();
                (*dir, Loaded { secret, block_key })
            })
            .collect()
    })
}

fn config() -> FinalMailConfig {
    FinalMailConfig {
        anon_from: "Anonymous <anon@remailer.invalid>".into(),
        complaints: "abuse@remailer.invalid".into(),
        message_id_domain: "remailer.invalid".into(),
    }
}

/// Decrypts the packet's RSA block with the folder's key and unwraps it.
fn unwrap_mail(key_dir: &str, mail: &[u8], padding: &[u8; 512]) -> Result<Unwrapped, keyward_mixmaster::Invalid> {
    let packet = parse_packet(mail)?;
    let key = &keys()[key_dir];
    assert_eq!(packet.key_id, key.secret.key_id(), "packet is for another key");
    let plain = key.block_key.decrypt_fixed(&packet.rsa_block, packet.rsa_out_len).unwrap();
    packet.unwrap_with_padding(&plain, NOW, padding)
}

fn expect_final(result: Unwrapped) -> keyward_mixmaster::FinalMail {
    match result {
        Unwrapped::Final { mail, .. } => mail,
        other => panic!("expected a final-hop mail, got {other:?}"),
    }
}

#[test]
fn secring_keys_match_manifest() {
    let expected = [
        ("r1024", "b1db59dab510b4fffe3e3a9c558d5b80", 1024, "2026-12-04", "2027-12-29"),
        ("r4096", "53a5b02286f01f9a786488859b90b915", 4096, "2026-12-04", "2027-06-02"),
        ("r1024-hop2", "65e0a91f706edf5d2b94bceec652f6b5", 1024, "2026-12-04", "2027-12-29"),
        ("r4096-hop2", "ab12b4dc46d013895b0cef6fb6a3baf6", 4096, "2026-12-04", "2027-06-02"),
    ];
    for (dir, id, bits, created, expires) in expected {
        let key = &keys()[dir].secret;
        assert_eq!(key.key_id().to_hex(), id, "{dir}");
        assert_eq!(key.bits(), bits, "{dir}");
        assert_eq!(key.created(), parse_date(created).unwrap(), "{dir}");
        assert_eq!(key.expires(), parse_date(expires).unwrap(), "{dir}");
        assert_eq!(keys()[dir].block_key.key_id(), key.key_id(), "{dir}: DER round trip");
        assert!(key_usable(key.created(), key.expires(), NOW), "{dir}");
        assert!(!format!("{key:?}").contains(&hex::encode(key.d().as_slice())[..16]), "Debug shows d");
    }
}

#[test]
fn key_txt_reproduced_from_secring() {
    let remailers = [
        ("r1024", "s1k", "3.0"),
        ("r4096", "s4k", "3.2.0"),
        ("r1024-hop2", "s1k2", "3.0"),
        ("r4096-hop2", "s4k2", "3.2.0"),
    ];
    for (dir, name, version) in remailers {
        let key = &keys()[dir].secret;
        let address = format!("{name}@remailer.invalid");
        let info = RemailerInfo { name, address: &address, version, options: "C" };
        let text = format!(
            "{}\n{}\n",
            capability_line(&info, key.key_id(), key.created(), key.expires()),
            key_txt_block(key.n(), key.e(), key.bits(), key.key_id())
        );
        assert_eq!(text.as_bytes(), read(&format!("{dir}/key.txt")), "{dir}/key.txt");
        assert_eq!(keys()[dir].block_key.key_txt_block(), key_txt_block(key.n(), key.e(), key.bits(), key.key_id()));
    }
}

#[test]
fn rsa_blocks_ok_lines_give_expected_plaintext() {
    let lines = jsonl("rsa_blocks.jsonl");
    let ok: Vec<_> = lines.iter().filter(|l| l["expected"] == "ok").collect();
    assert_eq!(ok.len(), 20);
    for line in ok {
        let key = &keys()[line["key"].as_str().unwrap()].block_key;
        assert_eq!(key.key_id().to_hex(), line["key_id"].as_str().unwrap());
        let out_len = line["plaintext_len"].as_u64().unwrap() as usize;
        let plain = key.decrypt_fixed(&unhex(&line["rsa_block"]), out_len).unwrap();
        assert_eq!(*plain, unhex(&line["expected_plaintext"]), "{}", line["case"]);
    }
}

#[test]
fn more_packets_rsa_blocks_give_expected_plaintext() {
    for line in jsonl("more_packets.jsonl") {
        let key = &keys()[line["key_dir"].as_str().unwrap()].block_key;
        let out_len = line["plaintext_len"].as_u64().unwrap() as usize;
        let plain = key.decrypt_fixed(&unhex(&line["rsa_block"]), out_len).unwrap();
        assert_eq!(*plain, unhex(&line["expected_plaintext"]), "{} {}", line["key"], line["case"]);
    }
}

#[test]
fn rsa_blocks_reject_lines_give_rejection_value() {
    let ok: HashMap<String, Vec<u8>> = jsonl("rsa_blocks.jsonl")
        .iter()
        .filter(|l| l["expected"] == "ok")
        .map(|l| (l["packet"].as_str().unwrap().to_string(), unhex(&l["expected_plaintext"])))
        .collect();
    let mut rejects: Vec<Value> = jsonl("rsa_blocks.jsonl").into_iter().filter(|l| l["expected"] == "reject").collect();
    rejects.extend(jsonl("rsa_blocks_extra.jsonl"));
    assert_eq!(rejects.len(), 16);

    let mut seen = Vec::new();
    for line in &rejects {
        let case = format!("{} {}", line["key"], line["case"]);
        let key = &keys()[line["key"].as_str().unwrap()].block_key;
        let out_len = if line["bits"] == 1024 { 24 } else { 216 };
        let block = unhex(&line["rsa_block"]);
        let first = key.decrypt_fixed(&block, out_len).unwrap();
        let second = key.decrypt_fixed(&block, out_len).unwrap();
        assert_eq!(first.len(), out_len, "{case}");
        assert_eq!(first, second, "{case}: not deterministic");
        let real = &ok[line["derived_from"].as_str().unwrap()];
        assert_ne!(&*first, real, "{case}: gave the real session key");
        if let Some(openssl) = line.get("openssl_plaintext").and_then(Value::as_str) {
            assert_ne!(*first, hex::decode(openssl).unwrap(), "{case}: gave the wrong-length plaintext");
        }
        assert!(!seen.iter().any(|s: &Vec<u8>| s[..] == first[..]), "{case}: same rejection value as another block");
        seen.push(first.to_vec());

        let packet = parse_packet(&read(line["packet"].as_str().unwrap())).unwrap();
        assert_eq!(packet.rsa_block, block, "{case}");
        // A bad block ends at the same checks as any corrupted header: the
        // packet type and MD5 digest (1024-bit) or the body HMAC (version A).
        let reason = packet.unwrap_with_padding(&first, NOW, &[0; 512]).unwrap_err().reason().clone();
        if out_len == 24 {
            assert!(
                matches!(reason, InvalidReason::HeaderDigest | InvalidReason::UnknownPacketType(_)),
                "{case}: {reason:?}"
            );
        } else {
            assert_eq!(reason, InvalidReason::BodyHmac, "{case}");
        }
    }
}

#[test]
fn rsa_block_key_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RsaBlockKey>();
}

#[test]
fn rsa_block_key_rejects_invalid_der() {
    assert!(RsaBlockKey::from_pkcs1_der(b"").is_err());
    assert!(RsaBlockKey::from_pkcs1_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
}

#[test]
fn decrypt_fixed_rejects_bad_request_shapes() {
    let key = &keys()["r1024"].block_key;
    let block = vec![1u8; 128];
    for out_len in [0, 23, 25, 117, 216] {
        assert!(key.decrypt_fixed(&block, out_len).is_err(), "out_len {out_len}");
    }
    assert!(key.decrypt_fixed(&block[..127], 24).is_err());
    assert!(key.decrypt_fixed(&[block.clone(), vec![0]].concat(), 24).is_err());
    let big = &keys()["r4096"].block_key;
    assert!(big.decrypt_fixed(&vec![1u8; 512], 216).is_ok());
    assert!(big.decrypt_fixed(&vec![0xffu8; 512], 216).is_ok(), "c ≥ n takes the rejection path");
}

#[test]
fn final_hop_packets_deliver_expected_mail() {
    let lines = jsonl("rsa_blocks.jsonl");
    for line in lines.iter().filter(|l| l["expected"] == "ok") {
        let case = format!("{} {}", line["key"], line["case"]);
        let result = unwrap_mail(line["key"].as_str().unwrap(), &read(line["packet"].as_str().unwrap()), &[0; 512]);
        let unwrapped = result.unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(hex::encode(unwrapped.packet_id()), line["packet_id"].as_str().unwrap(), "{case}");
        let mail = expect_final(unwrapped);
        let delivered = read(line["delivered"].as_str().unwrap());
        assert_eq!(
            String::from_utf8_lossy(&format_final_mail(&mail, &config())),
            String::from_utf8_lossy(&delivered),
            "{case}"
        );
    }
}

#[test]
fn final_hop_fields_match_delivered_mail() {
    let lines = jsonl("rsa_blocks.jsonl");
    let line = lines.iter().find(|l| l["key"] == "r4096" && l["case"] == "packet-05").unwrap();
    let mail = expect_final(unwrap_mail("r4096", &read(line["packet"].as_str().unwrap()), &[0; 512]).unwrap());
    assert_eq!(mail.recipients, vec![b"alice@example.invalid,bob@example.invalid".to_vec()]);
    assert_eq!(mail.subject.as_deref(), Some(&b"Vector S/r4096 05 two recipients"[..]));
    assert_eq!(mail.body, read("r4096/input/05.txt"));
}

#[test]
fn two_hop_packets_forward_then_deliver() {
    let lines = jsonl("more_packets.jsonl");
    let mut checked = 0;
    for line in lines.iter().filter(|l| l["hop"] == 1 && l["packet_type"] == 0) {
        let case = format!("{} {}", line["key"], line["case"]);
        let forwarded_mail = read(line["forwarded"].as_str().unwrap());
        let forwarded = parse_packet(&forwarded_mail).unwrap();
        let random: [u8; 512] = forwarded.bytes()[9728..10240].try_into().unwrap();

        let result = unwrap_mail(line["key_dir"].as_str().unwrap(), &read(line["packet"].as_str().unwrap()), &random);
        let Unwrapped::Intermediate { packet_id, next_hop_address, packet_for_next_hop } = result.unwrap() else {
            panic!("{case}: not an intermediate hop");
        };
        assert_eq!(hex::encode(packet_id), line["packet_id"].as_str().unwrap(), "{case}");
        assert_eq!(next_hop_address, line["next_hop"].as_str().unwrap().as_bytes(), "{case}");
        assert_eq!(packet_for_next_hop[..9728], forwarded.bytes()[..9728], "{case}: header slots");
        assert_eq!(packet_for_next_hop[10240..], forwarded.bytes()[10240..], "{case}: body");

        // With the real remailer's random bytes the whole mail is identical.
        let first_remailer = if line["key"] == "r1024" { "s1k@remailer.invalid" } else { "s4k@remailer.invalid" };
        let incoming = parse_packet(&read(line["packet"].as_str().unwrap())).unwrap();
        let mail = format_next_hop_mail(
            first_remailer.as_bytes(),
            &next_hop_address,
            &incoming.remailer_type,
            &packet_for_next_hop,
        );
        assert_eq!(String::from_utf8(mail).unwrap(), String::from_utf8(forwarded_mail.clone()).unwrap(), "{case}");

        // The second remailer delivers what the real one delivered.
        let hop2 = format!("{}-hop2", line["key"].as_str().unwrap());
        let second = unwrap_mail(&hop2, &forwarded_mail, &[0; 512]).unwrap();
        match line["delivered"].as_str() {
            Some(delivered) => {
                let mail = expect_final(second);
                assert_eq!(format_final_mail(&mail, &config()), read(delivered), "{case}");
            }
            None => assert!(matches!(second, Unwrapped::Dummy { .. }), "{case}: {second:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 12, "5 two-hop packets and 1 two-hop dummy per key");
}

#[test]
fn dummy_packets_are_consumed() {
    for dir in ["r1024", "r4096"] {
        let result = unwrap_mail(dir, &read(&format!("{dir}/dummy/01.eml")), &[0; 512]).unwrap();
        assert!(matches!(result, Unwrapped::Dummy { .. }), "{dir}: {result:?}");
    }
}

#[test]
fn partial_packets_reassemble_to_delivered_mail() {
    let lines = jsonl("more_packets.jsonl");
    for dir in ["r1024", "r4096"] {
        let mut reassembly: Option<Reassembly> = None;
        let mut message_ids = Vec::new();
        for line in lines.iter().filter(|l| l["key"] == dir && l["group"] == "partial") {
            let result = unwrap_mail(dir, &read(line["packet"].as_str().unwrap()), &[0; 512]).unwrap();
            let Unwrapped::Partial { message_id, chunk, chunks, payload, .. } = result else {
                panic!("{dir}: not a partial packet");
            };
            assert_eq!(u64::from(chunk), line["chunk"].as_u64().unwrap());
            assert_eq!(payload.len() as u64, line["payload_len"].as_u64().unwrap());
            message_ids.push(message_id);
            let r = reassembly.get_or_insert_with(|| Reassembly::new(chunks));
            assert!(r.complete_payload().is_none() || chunk == 1);
            r.add(chunk, chunks, &payload).unwrap();
        }
        assert!(message_ids.windows(2).all(|w| w[0] == w[1]), "{dir}: message IDs differ");
        let payload = reassembly.unwrap().complete_payload().expect("all parts present");
        let mail = parse_final_payload(&payload).unwrap().expect("not a dummy");
        assert_eq!(format_final_mail(&mail, &config()), read(&format!("{dir}/partial/delivered/01.eml")), "{dir}");
    }
}

#[test]
fn negative_and_extra_packets_are_dropped() {
    for dir in ["r1024", "r4096"] {
        for sub in ["negative", "extra"] {
            let entries = std::fs::read_dir(data_path(&format!("{dir}/{sub}"))).unwrap();
            let mut count = 0;
            for entry in entries {
                let path = entry.unwrap().path();
                let result = unwrap_mail(dir, &std::fs::read(&path).unwrap(), &[0; 512]);
                assert!(result.is_err(), "{}: {result:?}", path.display());
                count += 1;
            }
            assert!(count >= 3, "{dir}/{sub}");
        }
    }
}

#[test]
fn packets_outside_time_window_are_dropped() {
    let lines = jsonl("rsa_blocks.jsonl");
    let line = lines.iter().find(|l| l["key"] == "r1024" && l["case"] == "packet-03").unwrap();
    let packet = parse_packet(&read(line["packet"].as_str().unwrap())).unwrap();
    let plain = unhex(&line["expected_plaintext"]);
    let stamp = parse_date(line["packet_timestamp"].as_str().unwrap()).unwrap();
    assert!(packet.unwrap_with_padding(&plain, stamp, &[0; 512]).is_ok());
    assert!(packet.unwrap_with_padding(&plain, stamp - 1, &[0; 512]).is_err(), "future");
    assert!(packet.unwrap_with_padding(&plain, stamp + 7 * 86_400, &[0; 512]).is_ok());
    assert!(packet.unwrap_with_padding(&plain, stamp + 8 * 86_400, &[0; 512]).is_err(), "too old");
}

#[test]
fn tampered_packets_are_dropped() {
    // The 1024-bit format protects only the 328-byte header part, by an MD5
    // over its first 72 bytes for a final hop. Version A also has HMACs over
    // the whole part and over the body.
    let cases: [(&str, &[usize]); 2] = [("r1024", &[153, 200, 230]), ("r4096", &[537, 700, 10_240, 20_000])];
    for (dir, offsets) in cases {
        let case = "packet-01";
        let lines = jsonl("rsa_blocks.jsonl");
        let line = lines.iter().find(|l| l["key"] == dir && l["case"] == case).unwrap();
        let packet = parse_packet(&read(line["packet"].as_str().unwrap())).unwrap();
        let plain = unhex(&line["expected_plaintext"]);
        for &offset in offsets {
            let mut bytes = packet.bytes().to_vec();
            bytes[offset] ^= 1;
            let tampered = keyward_mixmaster::Packet::from_bytes(&bytes).unwrap();
            let result = tampered.unwrap_with_padding(&plain, NOW, &[0; 512]);
            assert!(result.is_err(), "{dir} byte {offset}");
        }
        let mut wrong = plain.clone();
        wrong[0] ^= 0x80; // not bit 0: DES ignores the parity bits
        assert!(packet.unwrap_with_padding(&wrong, NOW, &[0; 512]).is_err(), "{dir} wrong key");
        assert!(packet.unwrap_with_padding(&plain[1..], NOW, &[0; 512]).is_err(), "{dir} short plaintext");
    }
}

// ----- secring_cases

const CASE_PASS: &str = "case-S-pässword";

#[test]
fn secring_case_two_keys_one_expired() {
    let ring = parse_secring(&read("secring_cases/two_keys_one_expired/secring.mix"), CASE_PASS.as_bytes()).unwrap();
    assert_eq!(ring.len(), 2);
    let (a, b) = (&ring[0], &ring[1]);
    assert_eq!(a.key_id().to_hex(), "7c7172ee0d8b5552d6f7b64a9c7215a4");
    assert_eq!(b.key_id().to_hex(), "b0933d6ed0de3c61921025cd593f0985");
    assert!(!key_usable(a.created(), a.expires(), NOW), "key A is expired");
    assert!(key_usable(b.created(), b.expires(), NOW), "key B is valid");

    let cases = jsonl("secring_cases/cases.jsonl");
    for (key, case) in [(a, "two_keys_one_expired/key-A"), (b, "two_keys_one_expired/key-B")] {
        let line = cases.iter().find(|l| l["case"] == case).unwrap();
        let block_key = RsaBlockKey::from_pkcs1_der(&key.to_pkcs1_der()).unwrap();
        let plain = block_key.decrypt_fixed(&unhex(&line["rsa_block"]), 24).unwrap();
        assert_eq!(*plain, unhex(&line["rsa_plaintext"]), "{case}");
    }

    // The packet to key A is also too old, apart from the expired key.
    let line = cases.iter().find(|l| l["case"] == "two_keys_one_expired/key-A").unwrap();
    let packet = parse_packet(&read(line["packet"].as_str().unwrap())).unwrap();
    assert_eq!(packet.key_id, a.key_id());
    let result = packet.unwrap_with_padding(&unhex(&line["rsa_plaintext"]), NOW, &[0; 512]);
    assert_eq!(result.unwrap_err().reason(), &InvalidReason::OldTimestamp);

    let line = cases.iter().find(|l| l["case"] == "two_keys_one_expired/key-B").unwrap();
    let packet = parse_packet(&read(line["packet"].as_str().unwrap())).unwrap();
    assert_eq!(packet.key_id, b.key_id());
    let mail = expect_final(packet.unwrap_with_padding(&unhex(&line["rsa_plaintext"]), NOW, &[0; 512]).unwrap());
    assert_eq!(format_final_mail(&mail, &config()), read("secring_cases/packets/to_valid_key_B.delivered.eml"));

    let key_txt = format!(
        "{}\n{}\n",
        capability_line(
            &RemailerInfo { name: "s1c", address: "s1c@remailer.invalid", version: "3.0", options: "C" },
            b.key_id(),
            b.created(),
            b.expires()
        ),
        key_txt_block(b.n(), b.e(), b.bits(), b.key_id())
    );
    assert_eq!(key_txt.as_bytes(), read("secring_cases/two_keys_one_expired/key.txt"));
}

#[test]
fn secring_case_right_passphrase_delivers() {
    let ring = parse_secring(&read("secring_cases/wrong_passphrase/secring.mix"), CASE_PASS.as_bytes()).unwrap();
    assert_eq!(ring.len(), 1);
    assert_eq!(ring[0].key_id().to_hex(), "7848ef62e99e4f58f0107c40734a10ff");
    let block_key = RsaBlockKey::from_pkcs1_der(&ring[0].to_pkcs1_der()).unwrap();
    let packet = parse_packet(&read("secring_cases/packets/to_key_C.eml")).unwrap();
    let plain = block_key.decrypt_fixed(&packet.rsa_block, packet.rsa_out_len).unwrap();
    let mail = expect_final(packet.unwrap_with_padding(&plain, NOW, &[0; 512]).unwrap());
    assert_eq!(format_final_mail(&mail, &config()), read("secring_cases/packets/to_key_C.delivered.eml"));
}

#[test]
fn secring_rejects_wrong_passphrase() {
    let ring = read("secring_cases/wrong_passphrase/secring.mix");
    let id = KeyId::from_hex("7848ef62e99e4f58f0107c40734a10ff").unwrap();
    let wrong = hex::decode("636173652d532d70617373776f7264").unwrap();
    assert_eq!(parse_secring(&ring, &wrong).unwrap_err(), SecringError::WrongPassphrase { block: 1, key_id: id });
}

#[test]
fn secring_rejects_nfd_passphrase() {
    let ring = read("secring_cases/wrong_passphrase/secring.mix");
    let id = KeyId::from_hex("7848ef62e99e4f58f0107c40734a10ff").unwrap();
    let nfd = hex::decode("636173652d532d7061cc887373776f7264").unwrap();
    assert_eq!(parse_secring(&ring, &nfd).unwrap_err(), SecringError::WrongPassphrase { block: 1, key_id: id });
}

#[test]
fn secring_rejects_truncated_ring() {
    let err = parse_secring(&read("secring_cases/truncated/secring.mix"), CASE_PASS.as_bytes()).unwrap_err();
    assert!(matches!(err, SecringError::Truncated { block: 1, .. }), "{err:?}");
}

#[test]
fn secring_rejects_damaged_modulus() {
    let err = parse_secring(&read("secring_cases/corrupted_n/secring.mix"), CASE_PASS.as_bytes()).unwrap_err();
    let id = KeyId::from_hex("7848ef62e99e4f58f0107c40734a10ff").unwrap();
    assert_eq!(err, SecringError::DamagedModulus { block: 1, key_id: id });
}

#[test]
fn secring_rejects_damaged_prime() {
    let err = parse_secring(&read("secring_cases/corrupted_p/secring.mix"), CASE_PASS.as_bytes()).unwrap_err();
    let id = KeyId::from_hex("7848ef62e99e4f58f0107c40734a10ff").unwrap();
    assert_eq!(err, SecringError::InconsistentKey { block: 1, key_id: id, reason: "p·q does not equal n" });
}

#[test]
fn secring_is_all_or_nothing() {
    // A good ring followed by a damaged block fails as a whole.
    let mut ring = read("secring_cases/wrong_passphrase/secring.mix");
    ring.extend_from_slice(&read("secring_cases/corrupted_p/secring.mix"));
    let err = parse_secring(&ring, CASE_PASS.as_bytes()).unwrap_err();
    assert!(matches!(err, SecringError::InconsistentKey { block: 2, .. }), "{err:?}");
}
