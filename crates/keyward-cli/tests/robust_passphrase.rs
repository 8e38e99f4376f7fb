//! Passphrases: non-ASCII text, Unicode normalisation forms, invalid UTF-8
//! and the empty passphrase.

mod common;

use common::agent::state;
use common::{assert_success, stderr, Env};

/// "Grüße, Tōkyō 東京 🔑" composed (NFC): ü, ß, ō as single code points.
const NFC: &str = "Gr\u{fc}\u{df}e, T\u{14d}ky\u{14d} \u{6771}\u{4eac} \u{1f511}";
/// The same text decomposed (NFD): u and o followed by combining marks.
const NFD: &str = "Gru\u{308}\u{df}e, To\u{304}kyo\u{304} \u{6771}\u{4eac} \u{1f511}";

#[test]
fn nfc_and_nfd_open_same_keystore() {
    assert_ne!(NFC.as_bytes(), NFD.as_bytes(), "the two forms differ as bytes");
    let env = Env::new();
    assert_success(&env.run_with_given_passphrase(&["init"], NFC.as_bytes()), "init with an NFC passphrase");
    assert_success(&env.run_with_given_passphrase(&["keygen", "--type", "ed25519", "--name", "composed"], NFC.as_bytes()), "keygen, NFC");
    assert_success(&env.run_with_given_passphrase(&["keygen", "--type", "ed25519", "--name", "decomposed"], NFD.as_bytes()), "keygen, NFD");

    // Control: a different text is rejected.
    let wrong = env.run_with_given_passphrase(&["keygen", "--type", "ed25519", "--name", "wrong"], "Grusse, Tokyo".as_bytes());
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("incorrect passphrase"), "{}", stderr(&wrong));

    // The daemon unseals with the decomposed form too.
    let _daemon = env.start_daemon();
    assert_success(&env.run_with_given_passphrase(&["unseal"], NFD.as_bytes()), "unseal, NFD");
    assert_eq!(state(&env.agent_socket()), Some("unsealed"));
}

#[test]
fn invalid_utf8_passphrase_rejected() {
    let fresh = Env::new();
    let output = fresh.run_with_given_passphrase(&["init"], b"pass\xff\xfeword");
    assert_eq!(output.status.code(), Some(1), "init: {}", stderr(&output));
    assert!(stderr(&output).contains("not valid UTF-8"), "init: {}", stderr(&output));
    assert!(!fresh.keystore.join("keystore").exists(), "no keystore was created");

    let env = Env::new();
    env.init();
    let output = env.run_with_given_passphrase(&["keygen", "--type", "ed25519", "--name", "k"], b"pass\xff\xfeword");
    assert_eq!(output.status.code(), Some(1), "keygen: {}", stderr(&output));
    assert!(stderr(&output).contains("not valid UTF-8"), "keygen: {}", stderr(&output));
}

#[test]
fn empty_passphrase_needs_explicit_flag() {
    let env = Env::new();
    let output = env.run_with_given_passphrase(&["init"], b"");
    assert!(!output.status.success(), "init accepted an empty passphrase");
    assert!(stderr(&output).contains("passphrase is empty"), "{}", stderr(&output));
    assert!(stderr(&output).contains("--allow-empty-passphrase"), "names the flag: {}", stderr(&output));
    assert!(!env.keystore.join("keystore").exists(), "no keystore was created");

    // A trailing newline alone is stripped, so it is empty too.
    let output = env.run_with_given_passphrase(&["init"], b"\n");
    assert!(!output.status.success(), "init accepted a lone newline");

    assert_success(&env.run_with_given_passphrase(&["init", "--allow-empty-passphrase"], b""), "init --allow-empty-passphrase");
    assert_success(&env.run_with_given_passphrase(&["keygen", "--type", "ed25519", "--name", "k"], b""), "keygen with the empty passphrase");
}
