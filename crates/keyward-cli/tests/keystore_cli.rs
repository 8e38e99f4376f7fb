//! The keystore file through the CLI: wrong passphrases, damaged and
//! edited files, and changing the passphrase. Edits are built by parsing
//! the format (keystore format version 1, as docs/KEYSTORE.md specifies).

mod common;

use std::ops::Range;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, ssh_keygen_sign, ssh_keygen_verify, stderr, Env, PASSPHRASE};

const NEW_PASSPHRASE: &str = "a new passphrase for the keystore";

/// Byte ranges of the parts of a keystore file.
struct Layout {
    version: Range<usize>,
    generation: Range<usize>,
    m_cost: Range<usize>,
    t_cost: Range<usize>,
    entry_count: Range<usize>,
    entries: Vec<Range<usize>>,
    mac: Range<usize>,
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

fn skip_string(bytes: &[u8], at: usize) -> usize {
    at + 4 + u32_at(bytes, at)
}

fn parse_layout(bytes: &[u8]) -> Layout {
    assert_eq!(&bytes[..16], b"keyward-keystore", "not a keystore file");
    let version = 16..20;
    let mut at = skip_string(bytes, 20); // keystore_id
    let generation = at..at + 8;
    at = skip_string(bytes, at + 8); // kdf name
    let m_cost = at..at + 4;
    let t_cost = at + 4..at + 8;
    at += 12;
    for _ in 0..3 {
        at = skip_string(bytes, at); // salt, wrap_nonce, wrapped_key
    }
    let entry_count = at..at + 4;
    let count = u32_at(bytes, at);
    at += 4;
    let mut entries = Vec::new();
    for _ in 0..count {
        let start = at;
        for _ in 0..5 {
            at = skip_string(bytes, at); // name, type, purpose, public_key, comment
        }
        at += 24; // created, not_before, not_after
        for _ in 0..3 {
            at = skip_string(bytes, at); // attributes, nonce, ciphertext
        }
        entries.push(start..at);
    }
    let mac = at..skip_string(bytes, at);
    assert_eq!(mac.end, bytes.len(), "bytes follow the MAC");
    Layout { version, generation, m_cost, t_cost, entry_count, entries, mac }
}

fn keystore_file(env: &Env) -> std::path::PathBuf {
    env.keystore.join("keystore")
}

/// Runs an offline keygen with `passphrase`; it must read and verify the
/// whole file before it writes.
fn keygen_with(env: &Env, passphrase: &str) -> Output {
    env.run_with_input(&["keygen", "--type", "ed25519", "--name", "probe", "--passphrase-fd", "0"], passphrase.as_bytes())
}

/// Asserts that a command failed with exit 1, a clear message, and no panic.
fn assert_clear_failure(output: &Output, what: &str) {
    let text = stderr(output);
    assert!(!text.contains("panicked"), "{what}: keyward panicked:\n{text}");
    assert_eq!(output.status.code(), Some(1), "{what}: keyward did not exit 1:\n{text}");
    assert!(text.starts_with("error: "), "{what}: no error message:\n{text}");
}

/// A keystore with three keys; returns the environment and the file.
fn keystore_with_keys() -> (Env, Vec<u8>) {
    let env = Env::with_keys(&[("ed25519", "first"), ("ecdsa-p256", "second"), ("ed25519", "third")]);
    let bytes = std::fs::read(keystore_file(&env)).unwrap();
    (env, bytes)
}

#[test]
fn keygen_with_wrong_passphrase_fails_clearly() {
    let env = Env::with_keys(&[("ed25519", "kept")]);
    let before = std::fs::read(keystore_file(&env)).unwrap();

    let output = keygen_with(&env, "wrong passphrase");
    assert_clear_failure(&output, "keygen with a wrong passphrase");
    assert!(stderr(&output).contains("incorrect passphrase"), "the message does not name the passphrase:\n{}", stderr(&output));
    assert_eq!(std::fs::read(keystore_file(&env)).unwrap(), before, "a failed keygen changed the keystore file");
}

#[test]
fn flipped_bytes_fail_keygen_without_panic() {
    let (env, original) = keystore_with_keys();
    let path = keystore_file(&env);
    let mut checked = 0;
    for offset in (0..original.len()).step_by(7) {
        let mut damaged = original.clone();
        damaged[offset] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let output = keygen_with(&env, PASSPHRASE);
        assert_clear_failure(&output, &format!("keygen on a file with byte {offset} flipped"));

        let output = env.run(&["list"]);
        assert!(!stderr(&output).contains("panicked"), "list panicked on byte {offset} flipped:\n{}", stderr(&output));
        checked += 1;
    }
    assert!(checked > 50, "only {checked} offsets were checked");
    std::fs::write(&path, &original).unwrap();
    assert_success(&keygen_with(&env, PASSPHRASE), "keygen on the restored file");
}

/// Starts a daemon on a (damaged) keystore. Returns `None` when it
/// stopped during start-up instead, with a clear message and no panic.
fn try_start_daemon(env: &Env) -> Option<common::Daemon> {
    let log = env.path("daemon.log");
    std::fs::write(&log, b"").unwrap();
    let mut command = env.keyward();
    command.args(["daemon", "--foreground"]).stdin(Stdio::null()).stdout(Stdio::null());
    command.stderr(std::fs::File::create(&log).unwrap());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(!text.contains("panicked"), "the daemon panicked at start:\n{text}");
            assert_eq!(status.code(), Some(1), "the daemon did not exit 1 at start:\n{text}");
            assert!(text.contains("error: "), "the daemon stopped without a message:\n{text}");
            return None;
        }
        let connect = std::os::unix::net::UnixStream::connect;
        if connect(env.agent_socket()).is_ok() && connect(env.admin_socket()).is_ok() {
            return Some(common::Daemon { child, log });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the daemon neither served nor stopped within 20 s");
}

#[test]
fn flipped_bytes_fail_unseal_without_panic() {
    let (env, original) = keystore_with_keys();
    let path = keystore_file(&env);
    let layout = parse_layout(&original);
    // One offset in each part: header fields, each entry, the MAC.
    let offsets = [
        3,
        layout.version.start + 3,
        layout.generation.end - 1,
        layout.m_cost.end - 1,
        layout.entry_count.end - 1,
        layout.entries[0].start + 5,
        layout.entries[1].end - 3,
        layout.entries[2].start + 40,
        layout.mac.end - 1,
    ];
    for offset in offsets {
        let mut damaged = original.clone();
        damaged[offset] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let Some(daemon) = try_start_daemon(&env) else { continue };
        let output = env.run_with_passphrase(&["unseal"]);
        assert_clear_failure(&output, &format!("unseal with byte {offset} flipped"));
        let output = env.run(&["status"]);
        assert_eq!(output.status.code(), Some(4), "the daemon is not sealed after a failed unseal with byte {offset} flipped");
        let log = daemon.log_text();
        drop(daemon);
        assert!(!log.contains("panicked"), "the daemon panicked on byte {offset} flipped:\n{log}");
    }
}

fn edited(original: &[u8], edit: impl FnOnce(&mut Vec<u8>, &Layout)) -> Vec<u8> {
    let layout = parse_layout(original);
    let mut bytes = original.to_vec();
    edit(&mut bytes, &layout);
    bytes
}

#[test]
fn structural_edits_are_detected() {
    let (env, original) = keystore_with_keys();
    let path = keystore_file(&env);

    // A keystore of its own with one key, for splicing its entry in.
    let foreign = {
        let other = Env::new();
        other.init();
        other.keygen("ed25519", "first");
        std::fs::read(keystore_file(&other)).unwrap()
    };

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "two entries swapped",
            edited(&original, |bytes, layout| {
                let first = original[layout.entries[0].clone()].to_vec();
                let second = original[layout.entries[1].clone()].to_vec();
                let mut swapped = second;
                swapped.extend_from_slice(&first);
                bytes.splice(layout.entries[0].start..layout.entries[1].end, swapped);
            }),
            "modified or corrupted",
        ),
        (
            "an entry dropped",
            edited(&original, |bytes, layout| {
                bytes.drain(layout.entries[2].clone());
                bytes[layout.entry_count.clone()].copy_from_slice(&2u32.to_be_bytes());
            }),
            "modified or corrupted",
        ),
        (
            "the last entry dropped without changing the count",
            edited(&original, |bytes, layout| {
                bytes.drain(layout.entries[2].clone());
            }),
            "malformed",
        ),
        (
            "m_cost edited",
            edited(&original, |bytes, layout| {
                let m_cost = u32_at(&original, layout.m_cost.start) as u32;
                bytes[layout.m_cost.clone()].copy_from_slice(&(m_cost + 8).to_be_bytes());
            }),
            "incorrect passphrase, or the keystore header was changed",
        ),
        (
            "t_cost edited",
            edited(&original, |bytes, layout| {
                let t_cost = u32_at(&original, layout.t_cost.start) as u32;
                bytes[layout.t_cost.clone()].copy_from_slice(&(t_cost + 1).to_be_bytes());
            }),
            "incorrect passphrase, or the keystore header was changed",
        ),
        (
            "m_cost over the cap",
            edited(&original, |bytes, layout| {
                bytes[layout.m_cost.clone()].copy_from_slice(&u32::MAX.to_be_bytes());
            }),
            "KDF parameters out of bounds",
        ),
        (
            "the version edited",
            edited(&original, |bytes, layout| {
                bytes[layout.version.clone()].copy_from_slice(&2u32.to_be_bytes());
            }),
            "format version 2",
        ),
        (
            "the generation edited",
            edited(&original, |bytes, layout| {
                let generation = u64::from_be_bytes(original[layout.generation.clone()].try_into().unwrap());
                bytes[layout.generation.clone()].copy_from_slice(&(generation + 1).to_be_bytes());
            }),
            "modified or corrupted",
        ),
        (
            "an entry from another keystore spliced in",
            edited(&original, |bytes, layout| {
                let other = parse_layout(&foreign);
                bytes.splice(layout.entries[0].clone(), foreign[other.entries[0].clone()].to_vec());
            }),
            "modified or corrupted",
        ),
    ];

    for (what, bytes, message) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let output = keygen_with(&env, PASSPHRASE);
        assert_clear_failure(&output, what);
        assert!(stderr(&output).contains(message), "{what}: the message does not say {message:?}:\n{}", stderr(&output));
    }

    // An entry from an older generation of this same keystore: a keygen
    // writes the next generation, then the old "first" entry goes back in.
    std::fs::write(&path, &original).unwrap();
    assert_success(&keygen_with(&env, PASSPHRASE), "keygen of a fourth key");
    let newer = std::fs::read(&path).unwrap();
    let newer_layout = parse_layout(&newer);
    let old_layout = parse_layout(&original);
    let mut spliced = newer.clone();
    spliced.splice(newer_layout.entries[0].clone(), original[old_layout.entries[0].clone()].to_vec());
    std::fs::write(&path, &spliced).unwrap();
    let output = keygen_with(&env, PASSPHRASE);
    assert_clear_failure(&output, "an entry of an older generation spliced back");
    assert!(stderr(&output).contains("modified or corrupted"), "the spliced entry is not reported as a modification:\n{}", stderr(&output));

    // Control: the unedited newer file still opens.
    std::fs::write(&path, &newer).unwrap();
    let output = env.run_with_input(&["keygen", "--type", "ed25519", "--name", "control", "--passphrase-fd", "0"], PASSPHRASE.as_bytes());
    assert_success(&output, "keygen on the unedited file");
}

/// Runs `keyward passwd` (offline, or through an unsealed daemon) with the
/// new passphrase on file descriptor 3.
fn passwd(env: &Env) -> Output {
    let new = env.path("new-passphrase");
    std::fs::write(&new, NEW_PASSPHRASE).unwrap();
    env.run_with_fd3(&["passwd", "--passphrase-fd", "0", "--new-passphrase-fd", "3"], PASSPHRASE.as_bytes(), &new)
}

fn sign_and_verify(env: &Env, name: &str) {
    let public = env.pubkey_file(name);
    let message = env.path("message.txt");
    std::fs::write(&message, format!("signed with {name}\n")).unwrap();
    let output = ssh_keygen_sign(&env.agent_socket(), &public, &message);
    assert_success(&output, &format!("ssh-keygen -Y sign with {name}"));
    let signature = env.path(&format!("{name}.sig"));
    std::fs::write(&signature, &output.stdout).unwrap();
    let verified = ssh_keygen_verify(env.root.path(), &env.public_key_line(name), "file", &message, &signature);
    assert!(verified.status.success(), "the {name} signature does not verify: {}", stderr(&verified));
}

#[test]
fn passwd_keeps_keys_and_rejects_old_passphrase() {
    let env = Env::with_keys(&[("ed25519", "ed"), ("ecdsa-p256", "ec")]);
    let old_copy = std::fs::read(keystore_file(&env)).unwrap();

    let output = passwd(&env);
    assert_success(&output, "keyward passwd");

    let output = keygen_with(&env, PASSPHRASE);
    assert_clear_failure(&output, "keygen with the old passphrase after passwd");
    assert!(stderr(&output).contains("incorrect passphrase"), "the old passphrase is not reported as incorrect:\n{}", stderr(&output));

    let daemon = env.start_daemon();
    let output = env.run_with_passphrase(&["unseal"]);
    assert_eq!(output.status.code(), Some(1), "unseal with the old passphrase did not exit 1: {}", stderr(&output));
    let output = env.run_with_input(&["unseal", "--passphrase-fd", "0"], NEW_PASSPHRASE.as_bytes());
    assert_success(&output, "unseal with the new passphrase");
    sign_and_verify(&env, "ed");
    sign_and_verify(&env, "ec");
    drop(daemon);

    // Control: the old copy still opens with the old passphrase, so the
    // refusal above comes from the change, not from a broken file.
    let old = Env::new();
    std::fs::create_dir(&old.keystore).unwrap();
    std::fs::write(keystore_file(&old), &old_copy).unwrap();
    assert_success(&keygen_with(&old, PASSPHRASE), "keygen on the old copy with the old passphrase");
    let output = keygen_with(&old, NEW_PASSPHRASE);
    assert_clear_failure(&output, "the new passphrase on the old copy");
}

#[test]
fn passwd_through_unsealed_daemon_keeps_serving() {
    let (env, _daemon) = Env::running(&[("ed25519", "ed")]);
    let output = passwd(&env);
    assert_success(&output, "keyward passwd through the daemon");
    sign_and_verify(&env, "ed");

    assert_success(&env.run(&["seal"]), "keyward seal");
    let output = env.run_with_passphrase(&["unseal"]);
    assert_eq!(output.status.code(), Some(1), "unseal with the old passphrase did not exit 1: {}", stderr(&output));
    let output = env.run_with_input(&["unseal", "--passphrase-fd", "0"], NEW_PASSPHRASE.as_bytes());
    assert_success(&output, "unseal with the new passphrase");
    sign_and_verify(&env, "ed");
}
