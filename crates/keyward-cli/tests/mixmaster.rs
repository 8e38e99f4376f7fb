//! Mixmaster Type II end to end: `secring.mix` import, the
//! `mixmaster-rsa@keyward` extension and `keyward mixmaster unwrap` with a
//! running daemon, against packets and mails made by the real Mixmaster
//! programs (the test data of the keyward-mixmaster crate).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_success, output_with_input, stderr, stdout, Daemon, Env};
use keyward::agent::extensions::FailureCode;
use keyward::client::AgentClient;
use serde_json::Value;

/// 2026-12-04 12:00:00 UTC: the vectors' packets are dated 2026-12-01 to
/// 2026-12-04, so the clock is pinned for every command and the daemon.
const NOW: &str = "1796385600";

/// The key folders, the passphrase of each ring (exact UTF-8 bytes), the
/// remailer name and the Mixmaster version it advertises.
const RINGS: [(&str, &str, &str, &str); 4] = [
    ("r1024", "mixtest-S-1024", "s1k", "3.0"),
    ("r4096", "Grüße aus S-4096", "s4k", "3.2.0"),
    ("r1024-hop2", "mixtest-S-1024-hop2", "s1k2", "3.0"),
    ("r4096-hop2", "Grüße aus S-4096, Hop 2", "s4k2", "3.2.0"),
];

const CASE_PASS: &str = "case-S-pässword";

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keyward-mixmaster/tests/data").join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(data(rel)).unwrap_or_else(|error| panic!("reading {rel}: {error}"))
}

fn jsonl(rel: &str) -> Vec<Value> {
    String::from_utf8(read(rel)).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn unhex(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap()).unwrap()
}

/// Runs `keyward ARGS` at the pinned time with `input` on stdin.
fn kw(env: &Env, args: &[&str], input: &[u8]) -> Output {
    let mut command = env.keyward();
    command.args(args).env("KEYWARD_TEST_NOW", NOW);
    output_with_input(command, input)
}

/// The `[mixmaster]` section of a remailer named `name`.
fn write_config(env: &Env, name: &str, version: &str) {
    let config = format!(
        "[mixmaster]\nanon_from = \"Anonymous <anon@remailer.invalid>\"\ncomplaints = \"abuse@remailer.invalid\"\n\
         name = \"{name}\"\naddress = \"{name}@remailer.invalid\"\nversion = \"{version}\"\n"
    );
    std::fs::write(env.keystore.join("keyward.toml"), config).unwrap();
}

/// A keystore, its daemon (pinned clock) unsealed, and a config.
fn daemon() -> (Env, Daemon) {
    let env = Env::new();
    env.init();
    write_config(&env, "s1k", "3.0");
    let daemon = env.start_daemon_with(|command| {
        command.env("KEYWARD_TEST_NOW", NOW);
    });
    env.unseal();
    (env, daemon)
}

fn import(env: &Env, name: &str, ring: &str, passphrase: &[u8]) -> Output {
    let path = data(ring);
    kw(env, &["import", "--format", "secring.mix", "--name", name, "--source-passphrase-fd", "0", path.to_str().unwrap()], passphrase)
}

/// A daemon holding the four remailer keys of the vectors, named after
/// their folders.
fn daemon_with_rings() -> (Env, Daemon) {
    let (env, daemon) = daemon();
    for (dir, passphrase, _, _) in RINGS {
        let output = import(&env, dir, &format!("{dir}/secring.mix"), passphrase.as_bytes());
        assert_success(&output, &format!("import {dir}"));
    }
    (env, daemon)
}

fn unwrap_file(env: &Env, path: &Path) -> Output {
    kw(env, &["mixmaster", "unwrap", path.to_str().unwrap()], b"")
}

fn unwrap_bytes(env: &Env, message: &[u8]) -> Output {
    kw(env, &["mixmaster", "unwrap", "-"], message)
}

#[track_caller]
fn assert_dropped(output: &Output, what: &str) {
    assert_eq!(output.status.code(), Some(1), "{what}: {}", stderr(output));
    assert!(output.stdout.is_empty(), "{what}: printed {}", stdout(output));
    assert_eq!(stderr(output), "dropped: invalid packet\n", "{what}");
}

#[track_caller]
fn assert_mail(output: &Output, expected: &[u8], what: &str) {
    assert_success(output, what);
    assert_eq!(stdout(output), String::from_utf8_lossy(expected), "{what}");
}

#[test]
fn final_hop_packets_deliver_the_real_remailers_mail() {
    let (env, _daemon) = daemon_with_rings();
    let lines = jsonl("rsa_blocks.jsonl");
    let mut count = 0;
    for line in lines.iter().filter(|line| line["expected"] == "ok") {
        let case = format!("{} {}", line["key"], line["case"]);
        let output = unwrap_file(&env, &data(line["packet"].as_str().unwrap()));
        assert_mail(&output, &read(line["delivered"].as_str().unwrap()), &case);
        count += 1;
    }
    assert_eq!(count, 20);
}

#[test]
fn intermediate_hops_forward_to_the_second_remailer() {
    let (env, _daemon) = daemon_with_rings();
    let lines = jsonl("more_packets.jsonl");
    let mut count = 0;
    for line in lines.iter().filter(|line| line["hop"] == 1 && line["packet_type"] == 0) {
        let case = format!("{} {}", line["key"], line["case"]);
        let (name, version) = if line["key"] == "r1024" { ("s1k", "3.0") } else { ("s4k", "3.2.0") };
        write_config(&env, name, version);
        let first = unwrap_file(&env, &data(line["packet"].as_str().unwrap()));
        assert_success(&first, &case);

        // The mail the real first remailer sent, apart from the 512 random
        // bytes of the new header slot (and so the armour's MD5 line).
        let real = read(line["forwarded"].as_str().unwrap());
        let ours = keyward_mixmaster::parse_packet(&first.stdout).unwrap();
        let theirs = keyward_mixmaster::parse_packet(&real).unwrap();
        assert_eq!(ours.bytes()[..9728], theirs.bytes()[..9728], "{case}: header slots");
        assert_eq!(ours.bytes()[10240..], theirs.bytes()[10240..], "{case}: body");
        let head = |mail: &[u8]| mail[..mail.windows(2).position(|w| w == b"\n\n").unwrap()].to_vec();
        assert_eq!(head(&first.stdout), head(&real), "{case}: mail header");

        let second = unwrap_bytes(&env, &first.stdout);
        match line["delivered"].as_str() {
            Some(delivered) => assert_mail(&second, &read(delivered), &format!("{case} hop 2")),
            None => {
                assert_success(&second, &case);
                assert!(second.stdout.is_empty(), "{case}: a dummy printed {}", stdout(&second));
            }
        }
        count += 1;
    }
    assert_eq!(count, 12, "5 two-hop packets and one two-hop dummy per key size");
}

#[test]
fn dummies_and_waiting_parts_print_nothing() {
    let (env, _daemon) = daemon_with_rings();
    for dir in ["r1024", "r4096"] {
        let output = unwrap_file(&env, &data(&format!("{dir}/dummy/01.eml")));
        assert_success(&output, dir);
        assert!(output.stdout.is_empty(), "{dir}: dummy printed {}", stdout(&output));
        assert!(output.stderr.is_empty(), "{dir}: {}", stderr(&output));

        // Parts fed in the order 3, 2, 1, as the vectors were.
        let parts = [3, 2, 1].map(|chunk| unwrap_file(&env, &data(&format!("{dir}/partial/packets/01.{chunk}.eml"))));
        for output in &parts[..2] {
            assert_success(output, dir);
            assert!(output.stdout.is_empty(), "{dir}: a waiting part printed {}", stdout(output));
        }
        assert_mail(&parts[2], &read(&format!("{dir}/partial/delivered/01.eml")), &format!("{dir} partial"));
    }
    // The parts of a delivered message are gone from the state directory.
    let partial = env.keystore.join("mixmaster/partial");
    assert_eq!(std::fs::read_dir(partial).unwrap().count(), 0);
}

#[test]
fn invalid_packets_are_dropped_with_one_message() {
    let (env, _daemon) = daemon_with_rings();
    let mut count = 0;
    for dir in ["r1024", "r4096"] {
        for sub in ["negative", "extra"] {
            for entry in std::fs::read_dir(data(&format!("{dir}/{sub}"))).unwrap() {
                let path = entry.unwrap().path();
                assert_dropped(&unwrap_file(&env, &path), &path.display().to_string());
                count += 1;
            }
        }
    }
    assert_eq!(count, 16);

    let good = read("r1024/packets/01.eml");
    assert_dropped(&unwrap_bytes(&env, b"not a remailer message\n"), "text");
    assert_dropped(&unwrap_bytes(&env, &good[..good.len() / 2]), "truncated");
    // A packet for a key the daemon does not hold.
    let other = read("secring_cases/packets/to_key_C.eml");
    assert_dropped(&unwrap_bytes(&env, &other), "unknown key");

    // With debug logging the reason shows, and a bad RSA block reads like
    // any other header that does not verify.
    let path = data("r1024/negative/n1_random_c_lt_n.eml");
    let mut command = env.keyward();
    command.args(["mixmaster", "unwrap", path.to_str().unwrap()]).env("KEYWARD_TEST_NOW", NOW).env("KEYWARD_LOG", "debug");
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("does not decrypt and verify"), "{text}");
    assert!(!text.to_lowercase().contains("padding"), "{text}");
}

#[test]
fn replayed_packet_is_dropped() {
    let (env, _daemon) = daemon_with_rings();
    let packet = data("r4096/packets/02.eml");
    assert_mail(&unwrap_file(&env, &packet), &read("r4096/delivered/02.eml"), "first time");
    assert_dropped(&unwrap_file(&env, &packet), "second time");
    let replay = std::fs::read_to_string(env.keystore.join("mixmaster/replay")).unwrap();
    assert_eq!(replay.lines().count(), 1, "{replay}");
}

#[test]
fn sealed_or_stopped_daemon_drops_nothing() {
    let (env, daemon) = daemon_with_rings();
    let packet = data("r1024/packets/03.eml");

    assert_success(&env.run(&["seal"]), "seal");
    let sealed = unwrap_file(&env, &packet);
    assert_eq!(sealed.status.code(), Some(4), "{}", stderr(&sealed));
    assert!(sealed.stdout.is_empty());
    assert!(!env.keystore.join("mixmaster/replay").exists(), "a sealed run recorded the packet");

    env.unseal();
    assert_mail(&unwrap_file(&env, &packet), &read("r1024/delivered/03.eml"), "after unseal");

    daemon.stop();
    let stopped = unwrap_file(&env, &data("r1024/packets/04.eml"));
    assert_eq!(stopped.status.code(), Some(3), "{}", stderr(&stopped));
    assert!(stopped.stdout.is_empty());
    let replay = std::fs::read_to_string(env.keystore.join("mixmaster/replay")).unwrap();
    assert_eq!(replay.lines().count(), 1, "only the packet processed while unsealed: {replay}");
}

fn counters(env: &Env) -> Value {
    let output = env.run(&["status", "--json"]);
    assert_success(&output, "status");
    serde_json::from_slice::<Value>(&output.stdout).unwrap()["counters"].clone()
}

#[test]
fn extension_decrypts_blocks_with_fixed_length() {
    let (env, _daemon) = daemon_with_rings();
    let mut client = AgentClient::connect(&env.agent_socket()).unwrap();
    let before = counters(&env);

    let mut ok_lines = jsonl("rsa_blocks.jsonl").into_iter().filter(|line| line["expected"] == "ok").collect::<Vec<_>>();
    ok_lines.extend(jsonl("more_packets.jsonl"));
    let mut real_keys = std::collections::HashMap::new();
    for line in &ok_lines {
        let key_id: [u8; 16] = unhex(&line["key_id"]).try_into().unwrap();
        let out_len = line["plaintext_len"].as_u64().unwrap() as u32;
        let plaintext = client.mixmaster_rsa(&key_id, &unhex(&line["rsa_block"]), out_len).unwrap().unwrap();
        assert_eq!(*plaintext, unhex(&line["expected_plaintext"]), "{} {}", line["key"], line["case"]);
        real_keys.insert(line["packet"].as_str().unwrap().to_owned(), plaintext.to_vec());
    }
    assert_eq!(ok_lines.len(), 52);

    let mut rejects: Vec<Value> = jsonl("rsa_blocks.jsonl").into_iter().filter(|line| line["expected"] == "reject").collect();
    rejects.extend(jsonl("rsa_blocks_extra.jsonl"));
    for line in &rejects {
        let case = format!("{} {}", line["key"], line["case"]);
        let key_id: [u8; 16] = unhex(&line["key_id"]).try_into().unwrap();
        let out_len = if line["bits"] == 1024 { 24 } else { 216 };
        let block = unhex(&line["rsa_block"]);
        let first = client.mixmaster_rsa(&key_id, &block, out_len).unwrap().unwrap();
        let again = client.mixmaster_rsa(&key_id, &block, out_len).unwrap().unwrap();
        assert_eq!(first.len(), out_len as usize, "{case}");
        assert_eq!(first, again, "{case}: not deterministic");
        assert_ne!(&*first, &real_keys[line["derived_from"].as_str().unwrap()], "{case}: gave the real session key");
    }
    assert_eq!(rejects.len(), 16);

    // Bad blocks are counted as requests, like good ones, and never as
    // refusals.
    let after = counters(&env);
    let requests = |counters: &Value| counters["requests"].as_u64().unwrap();
    assert_eq!(after["refusals"], before["refusals"]);
    assert!(requests(&after) >= requests(&before) + 52 + 32, "{before} {after}");

    // Requests of the wrong shape, and keys the daemon does not hold.
    let r1024: [u8; 16] = hex::decode("b1db59dab510b4fffe3e3a9c558d5b80").unwrap().try_into().unwrap();
    let block = vec![1u8; 128];
    for out_len in [0, 23, 25, 117, 216] {
        let reply = client.mixmaster_rsa(&r1024, &block, out_len).unwrap();
        assert_eq!(reply, Err(Some(FailureCode::InvalidRequest)), "out_len {out_len}");
    }
    assert_eq!(client.mixmaster_rsa(&r1024, &block[..127], 24).unwrap(), Err(Some(FailureCode::InvalidRequest)));
    assert_eq!(client.mixmaster_rsa(&[9; 16], &block, 24).unwrap(), Err(Some(FailureCode::Refused)));
    let garbage = client.extension(keyward::mixmaster::EXTENSION, b"\0\0\0\x10short").unwrap();
    assert_eq!(garbage, Err(Some(FailureCode::InvalidRequest)));
}

#[test]
fn secring_cases_import_as_documented() {
    let (env, _daemon) = daemon();
    let list = |env: &Env| stdout(&env.run(&["list", "--json"]));
    let empty = list(&env);

    // Refused: wrong passphrase, the right one in NFD, a truncated ring,
    // a damaged modulus, a damaged prime. Nothing is imported.
    let nfd = hex::decode("636173652d532d7061cc887373776f7264").unwrap();
    let cases: [(&str, &[u8]); 5] = [
        ("secring_cases/wrong_passphrase/secring.mix", b"case-S-password"),
        ("secring_cases/wrong_passphrase/secring.mix", &nfd),
        ("secring_cases/truncated/secring.mix", CASE_PASS.as_bytes()),
        ("secring_cases/corrupted_n/secring.mix", CASE_PASS.as_bytes()),
        ("secring_cases/corrupted_p/secring.mix", CASE_PASS.as_bytes()),
    ];
    for (ring, passphrase) in cases {
        let output = import(&env, "c", ring, passphrase);
        assert_eq!(output.status.code(), Some(1), "{ring}: {}", stderr(&output));
        assert!(stderr(&output).starts_with("error: cannot import"), "{ring}: {}", stderr(&output));
        assert_eq!(list(&env), empty, "{ring}: the keystore changed");
    }
    // A good ring with a damaged block after it imports nothing either.
    let mut mixed = read("secring_cases/wrong_passphrase/secring.mix");
    mixed.extend(read("secring_cases/corrupted_p/secring.mix"));
    let mixed_path = env.path("mixed.mix");
    std::fs::write(&mixed_path, mixed).unwrap();
    let output = kw(&env, &["import", "--format", "secring.mix", "--name", "m", "--source-passphrase-fd", "0", mixed_path.to_str().unwrap()], CASE_PASS.as_bytes());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(list(&env), empty);

    // The right passphrase: one key, named as given, with its dates.
    let output = import(&env, "c", "secring_cases/wrong_passphrase/secring.mix", CASE_PASS.as_bytes());
    assert_success(&output, "import key C");
    assert!(stderr(&output).contains("keyward keygen --type mixmaster-4096"), "{}", stderr(&output));
    let keys: Vec<Value> = serde_json::from_str(&list(&env)).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "c");
    assert_eq!(keys[0]["type"], "mixmaster-1024");
    assert_eq!(keys[0]["purpose"], "mixmaster");
    assert_eq!(keys[0]["not_before"], keyward_mixmaster::parse_date("2026-12-04").unwrap());
    assert_eq!(keys[0]["not_after"], keyward_mixmaster::parse_date("2027-12-29").unwrap());
    assert_mail(
        &unwrap_file(&env, &data("secring_cases/packets/to_key_C.eml")),
        &read("secring_cases/packets/to_key_C.delivered.eml"),
        "key C",
    );

    // Two keys: each named NAME-<8 hex digits of its key ID>; the expired
    // one is imported but refused.
    let output = import(&env, "ab", "secring_cases/two_keys_one_expired/secring.mix", CASE_PASS.as_bytes());
    assert_success(&output, "import two keys");
    assert!(stderr(&output).contains("ab-7c7172ee"), "no expiry warning: {}", stderr(&output));
    let names: Vec<String> =
        serde_json::from_str::<Vec<Value>>(&list(&env)).unwrap().iter().map(|key| key["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["c", "ab-7c7172ee", "ab-b0933d6e"]);
    // The listing shows each Mixmaster key's ID, whose first 8 hex digits
    // name the key, in JSON and as an indented line of the table.
    let keys: Vec<Value> = serde_json::from_str(&list(&env)).unwrap();
    let key_id = keys[1]["attributes"]["mixmaster-key-id"].as_str().expect("a key ID attribute");
    assert_eq!(key_id.len(), 32, "{key_id}");
    assert!(key_id.starts_with("7c7172ee"), "{key_id}");
    let table = stdout(&env.run(&["list"]));
    assert!(table.contains(&format!("\n    mixmaster-key-id: {key_id}\n")), "{table}");

    let mut client = AgentClient::connect(&env.agent_socket()).unwrap();
    for line in jsonl("secring_cases/cases.jsonl").iter().filter(|line| line["case"].as_str().unwrap().starts_with("two_keys")) {
        let key_id: [u8; 16] = unhex(&line["key_id"]).try_into().unwrap();
        let reply = client.mixmaster_rsa(&key_id, &unhex(&line["rsa_block"]), 24).unwrap();
        if line["expected"] == "ok" {
            assert_eq!(*reply.unwrap(), unhex(&line["rsa_plaintext"]), "key B");
        } else {
            assert_eq!(reply, Err(Some(FailureCode::Refused)), "expired key A");
        }
    }
    assert_dropped(&unwrap_file(&env, &data("secring_cases/packets/to_expired_key_A.eml")), "packet to key A");
    assert_mail(
        &unwrap_file(&env, &data("secring_cases/packets/to_valid_key_B.eml")),
        &read("secring_cases/packets/to_valid_key_B.delivered.eml"),
        "key B",
    );
}

#[test]
fn pubkey_prints_the_remailers_key_txt() {
    let (env, _daemon) = daemon_with_rings();
    for (dir, _, name, version) in RINGS {
        write_config(&env, name, version);
        let output = kw(&env, &["pubkey", dir, "--format", "mixmaster"], b"");
        assert_success(&output, dir);
        assert_eq!(stdout(&output), String::from_utf8(read(&format!("{dir}/key.txt"))).unwrap(), "{dir}");
    }
}

#[test]
fn keygen_sets_mixmaster_validity_and_publishes_key() {
    let (env, _daemon) = daemon();
    let output = kw(&env, &["keygen", "--type", "mixmaster-1024", "--name", "fresh"], b"");
    assert_success(&output, "keygen in the daemon");
    let keys: Vec<Value> = serde_json::from_slice(&env.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(keys[0]["type"], "mixmaster-1024");
    assert_eq!(keys[0]["purpose"], "mixmaster");
    assert_eq!(keys[0]["not_before"], keyward_mixmaster::parse_date("2026-12-04").unwrap());
    assert_eq!(keys[0]["not_after"], keyward_mixmaster::parse_date("2027-12-29").unwrap());

    let output = kw(&env, &["pubkey", "fresh", "--format", "mixmaster"], b"");
    assert_success(&output, "pubkey");
    let text = stdout(&output);
    let fields: Vec<&str> = text.lines().next().unwrap().split(' ').collect();
    assert_eq!(fields[..2], ["s1k", "s1k@remailer.invalid"]);
    assert_eq!(fields[3..], ["2:3.0", "C", "2026-12-04", "2027-12-29"]);
    assert_eq!(text.lines().nth(3), Some(fields[2]), "key ID in the key block");
    assert_eq!(text.lines().nth(4), Some("258"), "a 1024-bit public key is 258 bytes");

    // The daemon uses it at once: a block of the right length gives 24 bytes.
    let key_id: [u8; 16] = hex::decode(fields[2]).unwrap().try_into().unwrap();
    let mut client = AgentClient::connect(&env.agent_socket()).unwrap();
    assert_eq!(client.mixmaster_rsa(&key_id, &[1; 128], 24).unwrap().unwrap().len(), 24);

    // Other sizes than Mixmaster's are not offered.
    let output = kw(&env, &["keygen", "--type", "mixmaster-2048", "--name", "x"], b"");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn missing_setting_drops_nothing() {
    let (env, _daemon) = daemon_with_rings();
    let packet = data("r1024/packets/05.eml");
    let config = env.keystore.join("keyward.toml");

    std::fs::write(&config, "[mixmaster]\naddress = \"s1k@remailer.invalid\"\n").unwrap();
    let output = unwrap_file(&env, &packet);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with("error: the [mixmaster] section of the config file has no anon_from"), "{}", stderr(&output));
    assert!(output.stdout.is_empty());

    std::fs::write(&config, "[mixmaster]\nanon_from = \"Anonymous <anon@remailer.invalid>\"\naddress = \"s1k@remailer.invalid\"\nfrom = \"x\"\n").unwrap();
    let output = unwrap_file(&env, &packet);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with("error: unknown setting \"from\""), "{}", stderr(&output));
    assert!(!env.keystore.join("mixmaster/replay").exists(), "a failed run recorded the packet");

    // complaints and message_id_domain default to the domain of anon_from,
    // which reproduces the delivered mail.
    std::fs::write(&config, "[mixmaster]\nanon_from = \"Anonymous <anon@remailer.invalid>\"\naddress = \"s1k@remailer.invalid\"\n").unwrap();
    assert_mail(&unwrap_file(&env, &packet), &read("r1024/delivered/05.eml"), "after fixing the config");
}
