//! The audit trail:
//! - every refusal is a line naming the peer, the key and the reason;
//! - "no such key" and "not allowed" look the same to the client but differ
//!   in the log;
//! - successes are lines only in `requests` mode;
//! - no payload or key bytes reach the file, which is 0600 and appended to;
//! - untrusted text is escaped, and `status --json` counts requests.

mod common;
mod policy_support;

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use common::{assert_success, audit_lines, is_root, ssh_keygen_new_key, Env};
use policy_support::{local_probe, probe_script, Client};

/// The marker the probe script puts into every request it signs.
const CANARY: &[u8] = b"kw-payload-canary-5f1e";

/// Generates an Ed25519 key with ssh-keygen and imports it, returning the
/// 32-byte seed the test can look for in the log.
fn import_known_key(env: &Env, name: &str) -> Vec<u8> {
    let file = env.path(&format!("{name}_source"));
    ssh_keygen_new_key(&file, "ed25519", &[]);
    let output = env.run_with_passphrase(&["import", "--name", name, file.to_str().unwrap()]);
    assert_success(&output, "keyward import");

    let pem = std::fs::read_to_string(&file).unwrap();
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    let decoded = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    let public_line = std::fs::read_to_string(file.with_extension("pub")).unwrap();
    let blob = base64::engine::general_purpose::STANDARD.decode(public_line.split_whitespace().nth(1).unwrap()).unwrap();
    let public = &blob[blob.len() - 32..];
    // The private section contains a `string` of 64 bytes: seed, then public key.
    let position = decoded
        .windows(68)
        .position(|window| window[..4] == [0, 0, 0, 64] && &window[36..] == public)
        .expect("the seed in the OpenSSH private key file");
    decoded[position + 4..position + 36].to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn refusals_are_logged_and_payloads_never() {
    assert!(is_root(), "this test runs clients as other uids with setpriv and needs root");
    let env = Env::with_keys(&[("ed25519", "mine"), ("ed25519", "secret")]);
    let seed = import_known_key(&env, "imported");
    let audit = env.path("audit.log");
    std::fs::write(&audit, b"{\"event\":\"earlier\"}\n").unwrap();
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = env.write_config(&format!(
        "[daemon]\nsocket_group = 4242\naudit_log = \"{}\"\n\n[[key]]\nname = \"mine\"\nusers = [1001]\noperations = [\"ssh-auth\"]\n\n\
         [[key]]\nname = \"imported\"\nusers = [1001]\noperations = [\"sign\"]\n",
        audit.display()
    ));
    let _daemon = env.start_daemon_with_config(&config);
    env.unseal();

    // A key the keystore does not hold.
    let stranger = env.path("stranger");
    ssh_keygen_new_key(&stranger, "ed25519", &[]);

    let client = Client::new(1001, 1001, &[]);
    let public = |name: &str| env.pubkey_file(name).display().to_string();
    assert!(!client.allowed(&env, &["sign", "raw", &public("mine")]), "raw data with an ssh-auth-only rule");
    assert!(!client.allowed(&env, &["sign", "userauth", &public("secret")]), "a key whose rule does not name the client");
    assert!(!client.allowed(&env, &["sign", "userauth", &format!("{}.pub", stranger.display())]), "a key the daemon does not hold");
    assert!(!client.allowed(&env, &["ext", "nothing@example.com"]), "an unknown extension");
    // Text chosen by the client reaches the log as the operation.
    assert!(!client.allowed(&env, &["ext", "evil\u{202e}moc.elpmaxe@x"]), "an unknown extension named with a bidi control");
    assert!(!client.allowed(&env, &["sign", "sshsig:ns\u{1b}[2J", &public("mine")]), "an SSHSIG namespace with an escape sequence");
    assert!(client.allowed(&env, &["sign", "userauth", &public("mine")]));
    assert!(client.allowed(&env, &["sign", "raw", &public("imported")]));
    assert!(client.allowed(&env, &["sign", "userauth", &public("imported")]));

    // A client whose executable name carries a right-to-left override.
    let disguised = env.path("py\u{202e}txt.exe");
    std::fs::copy("/usr/bin/python3.11", &disguised).unwrap();
    let output = client
        .command(&env, &disguised)
        .arg(probe_script(&env))
        .args(["sign", "raw", &public("secret")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", String::from_utf8_lossy(&output.stderr));

    let lines = audit_lines(&audit);
    assert_eq!(lines.first().map(|line| line["event"].clone()), Some("earlier".into()), "the log was not appended to");
    let refusals: Vec<&serde_json::Value> = lines.iter().filter(|line| line["event"] == "refused").collect();
    for line in &refusals {
        assert_eq!(line["uid"], 1001, "{line}");
        assert_eq!(line["gid"], 1001, "{line}");
        assert!(line["pid"].as_u64().is_some(), "no pid in {line}");
        assert!(line["exe"].as_str().is_some(), "no exe in {line}");
        assert!(line["time"].as_str().is_some_and(|time| time.len() >= 20), "no time in {line}");
        assert!(line["reason"].as_str().is_some(), "no reason in {line}");
        assert!(line["operation"].as_str().is_some(), "no operation in {line}");
    }
    let find = |key: Option<&str>, reason: &str, operation: &str| {
        refusals.iter().any(|line| {
            line["reason"] == reason
                && line["operation"] == operation
                && match key {
                    Some(key) => line["key"] == key && line["fingerprint"].as_str().is_some_and(|fp| fp.starts_with("SHA256:")),
                    None => line.get("key").is_none(),
                }
        })
    };
    assert!(find(Some("mine"), "not-allowed", "sign"), "no not-allowed line for mine:\n{lines:#?}");
    assert!(find(Some("secret"), "not-allowed", "ssh-auth"), "no not-allowed line for secret:\n{lines:#?}");
    assert!(find(None, "unknown-key", "ssh-auth"), "no unknown-key line:\n{lines:#?}");
    assert!(find(None, "unknown-extension", "nothing@example.com"), "no unknown-extension line:\n{lines:#?}");
    assert!(
        refusals.iter().any(|line| line["key"] == "secret" && line["exe"].as_str().is_some_and(|exe| exe.ends_with("py\u{202e}txt.exe"))),
        "no refusal naming the disguised executable"
    );
    assert!(!lines.iter().any(|line| line["event"] == "request"), "the default mode wrote a line per success");

    let raw = std::fs::read(&audit).unwrap();
    let text = String::from_utf8(raw.clone()).unwrap();
    assert!(!text.contains('\u{202e}'), "the right-to-left override reached the log unescaped");
    assert!(text.contains("\\u202e"), "the right-to-left override is not escaped as \\u202e");
    assert!(!raw.contains(&0x1b), "an escape character reached the log unescaped");
    assert!(refusals.iter().any(|line| line["operation"] == "sshsig:ns\u{1b}[2J"), "no refusal naming the escaped namespace");
    for (what, needle) in [
        ("payload", CANARY.to_vec()),
        ("payload (hex)", hex::encode(CANARY).into_bytes()),
        ("payload (base64)", base64::engine::general_purpose::STANDARD.encode(CANARY).into_bytes()),
        ("private key", seed.clone()),
        ("private key (hex)", hex::encode(&seed).into_bytes()),
        ("private key (base64)", base64::engine::general_purpose::STANDARD_NO_PAD.encode(&seed).into_bytes()),
        ("public key", env.run(&["pubkey", "imported"]).stdout.split(|&b| b == b' ').nth(1).unwrap().to_vec()),
    ] {
        assert!(!contains(&raw, &needle), "the audit log contains the {what}");
    }
    // The file existed with mode 0644 before the daemon started.
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the audit log must be readable by its owner only");

    // Counters: by reason, by key and by uid.
    let counters = &env.status_json()["counters"];
    assert_eq!(counters["refusals_by_reason"]["unknown-key"], 1, "{counters}");
    assert_eq!(counters["refusals_by_reason"]["not-allowed"], 4, "{counters}");
    assert_eq!(counters["refusals_by_reason"]["unknown-extension"], 2, "{counters}");
    assert_eq!(counters["per_key"]["mine"]["requests"], 3, "{counters}");
    assert_eq!(counters["per_key"]["mine"]["refusals"], 2, "{counters}");
    assert_eq!(counters["per_key"]["imported"]["requests"], 2, "{counters}");
    assert_eq!(counters["per_key"]["imported"]["refusals"], 0, "{counters}");
    assert_eq!(counters["per_key"]["secret"]["refusals"], 2, "{counters}");
    assert_eq!(counters["per_uid"]["1001"]["refusals"], 7, "{counters}");
    assert_eq!(counters["per_uid"]["1001"]["requests"], 10, "{counters}");
}

#[test]
fn requests_mode_writes_a_line_per_success() {
    let env = Env::with_keys(&[("ed25519", "ed")]);
    let audit = env.path("audit.log");
    let config = env.write_config(&format!("[daemon]\naudit = \"requests\"\naudit_log = \"{}\"\n", audit.display()));
    let _daemon = env.start_daemon_with_config(&config);
    env.unseal();

    let public = env.pubkey_file("ed");
    for _ in 0..3 {
        let status = local_probe(&env, &["sign", "raw", public.to_str().unwrap()]);
        assert_eq!(status.code(), Some(0));
    }
    let lines = audit_lines(&audit);
    let signatures: Vec<&serde_json::Value> = lines.iter().filter(|line| line["event"] == "request" && line["operation"] == "sign").collect();
    assert_eq!(signatures.len(), 3, "{lines:#?}");
    for line in signatures {
        assert_eq!(line["key"], "ed");
        assert!(line["fingerprint"].as_str().is_some_and(|fp| fp.starts_with("SHA256:")));
        assert_eq!(line["uid"], rustix::process::getuid().as_raw());
        assert!(line["pid"].as_u64().is_some());
    }
    assert!(!contains(&std::fs::read(&audit).unwrap(), CANARY), "the audit log contains the payload");
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the daemon created the audit log with mode {mode:o}");
}
