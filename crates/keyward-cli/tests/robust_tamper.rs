//! Tampered keystore files are rejected at unseal, through the daemon,
//! with a clear error and without running a KDF past the caps.
//!
//! Offsets follow docs/KEYSTORE.md for a 32-byte salt: the header ends
//! with `entry_count` at 188, entries start at 192 and the MAC `string`
//! (4 + 32 bytes) ends the file.

mod common;

use std::ops::Range;
use std::time::{Duration, Instant};

use common::agent::state;
use common::{stderr, Env};

const VERSION: usize = 16;
const KEYSTORE_ID: usize = 24;
const GENERATION: usize = 40;
const M_COST: usize = 60;
const T_COST: usize = 64;
const P_COST: usize = 68;
const ENTRY_COUNT: usize = 188;
const ENTRIES: usize = 192;
const MAC_LEN: usize = 36;

/// A refusal must come well inside this, start-up of the CLI included.
const FAST: Duration = Duration::from_secs(2);

struct EntryLayout {
    whole: Range<usize>,
    public_key: Range<usize>,
    not_after: Range<usize>,
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Finds each entry's byte ranges.
fn entries(bytes: &[u8]) -> Vec<EntryLayout> {
    assert_eq!(&bytes[..16], b"keyward-keystore");
    assert_eq!(u32_at(bytes, 72), 32, "the layout assumes a 32-byte salt");
    let count = u32_at(bytes, ENTRY_COUNT);
    let mut at = ENTRIES;
    let mut layouts = Vec::new();
    for _ in 0..count {
        let start = at;
        let skip_string = |at: &mut usize| {
            let length = u32_at(bytes, *at);
            let range = *at + 4..*at + 4 + length;
            *at += 4 + length;
            range
        };
        for _ in 0..3 {
            skip_string(&mut at); // name, type, purpose
        }
        let public_key = skip_string(&mut at);
        skip_string(&mut at); // comment
        at += 8 + 8; // created, not_before
        let not_after = at..at + 8;
        at += 8;
        for _ in 0..3 {
            skip_string(&mut at); // attributes, nonce, ciphertext
        }
        layouts.push(EntryLayout { whole: start..at, public_key, not_after });
    }
    assert_eq!(at, bytes.len() - MAC_LEN, "entries end where the MAC starts");
    layouts
}

/// Creates a keystore with three keys; returns it and its file as it was before the third.
fn base() -> (Env, Vec<u8>) {
    let env = Env::with_keys(&[("ed25519", "a"), ("ed25519", "b")]);
    let old = std::fs::read(env.keystore.join("keystore")).unwrap();
    env.keygen("ecdsa-p256", "c");
    (env, old)
}

fn copy_keystore(from: &Env) -> Env {
    let env = Env::new();
    std::fs::create_dir(&env.keystore).unwrap();
    std::fs::write(env.keystore.join("keystore"), std::fs::read(from.keystore.join("keystore")).unwrap()).unwrap();
    env
}

/// Starts a sealed daemon on a copy of `base`, replaces the keystore file
/// with `tampered`, and returns unseal's stderr and how long it took.
fn unseal_tampered(base: &Env, tampered: &[u8], production_kdf: bool) -> (String, Duration) {
    let env = copy_keystore(base);
    let daemon = env.start_daemon_with(|command| {
        if production_kdf {
            command.env_remove("KEYWARD_TEST_INSECURE_KDF");
        }
    });
    std::fs::write(env.keystore.join("keystore"), tampered).unwrap();
    let started = Instant::now();
    let output = env.run_with_passphrase(&["unseal"]);
    let elapsed = started.elapsed();
    assert!(!output.status.success(), "unseal of a tampered keystore succeeded");
    assert!(!stderr(&output).contains("no Keyward daemon"), "{}\nlog:\n{}", stderr(&output), daemon.log_text());
    assert_eq!(state(&env.agent_socket()), Some("sealed"), "the daemon stays sealed and serving");
    drop(daemon);
    (stderr(&output), elapsed)
}

fn check(name: &str, base: &Env, tampered: Vec<u8>, expected: &str) {
    let (message, elapsed) = unseal_tampered(base, &tampered, false);
    assert!(message.contains(expected), "{name}: expected {expected:?} in: {message}");
    assert!(elapsed < FAST, "{name}: the refusal took {elapsed:?}");
}

#[test]
fn control_untampered_copy_unseals() {
    let (base, _) = base();
    let env = copy_keystore(&base);
    let _daemon = env.start_daemon();
    env.unseal();
    assert_eq!(state(&env.agent_socket()), Some("unsealed"));
}

#[test]
fn edited_header_rejected() {
    let (base, _) = base();
    let original = std::fs::read(base.keystore.join("keystore")).unwrap();

    let mut id = original.clone();
    id[KEYSTORE_ID + 4] ^= 1;
    check("keystore id", &base, id, "incorrect passphrase, or the keystore header was changed");

    let mut generation = original.clone();
    generation[GENERATION + 7] ^= 1;
    check("generation", &base, generation, "modified or corrupted");

    let mut version = original.clone();
    put_u32(&mut version, VERSION, 2);
    check("version", &base, version, "format version 2");
}

#[test]
fn kdf_past_caps_rejected_fast() {
    let (base, _) = base();
    let original = std::fs::read(base.keystore.join("keystore")).unwrap();
    let cases: [(&str, usize, u32, &str); 4] = [
        ("m_cost", M_COST, 4 * 1024 * 1024, "more than the cap"),
        ("t_cost", T_COST, 1000, "more than the cap"),
        ("p_cost", P_COST, 64, "more than the cap"),
        ("m_cost × t_cost", M_COST, 2 * 1024 * 1024, "more than the cap"),
    ];
    for (name, offset, value, expected) in cases {
        let mut tampered = original.clone();
        put_u32(&mut tampered, offset, value);
        if name == "m_cost × t_cost" {
            put_u32(&mut tampered, T_COST, 16);
        }
        check(name, &base, tampered, expected);
    }
}

#[test]
fn kdf_below_floors_rejected() {
    let (base, _) = base();
    let mut tampered = std::fs::read(base.keystore.join("keystore")).unwrap();
    put_u32(&mut tampered, M_COST, 8);
    put_u32(&mut tampered, T_COST, 1);
    put_u32(&mut tampered, P_COST, 1);
    let (message, elapsed) = unseal_tampered(&base, &tampered, true);
    assert!(message.contains("less than the floor"), "{message}");
    assert!(elapsed < FAST, "the refusal took {elapsed:?}");
}

#[test]
fn rearranged_entries_rejected() {
    let (base, old) = base();
    let original = std::fs::read(base.keystore.join("keystore")).unwrap();
    let layout = entries(&original);
    assert_eq!(layout.len(), 3);
    let entry = |index: usize| original[layout[index].whole.clone()].to_vec();
    let head = &original[..ENTRIES];
    let mac = &original[original.len() - MAC_LEN..];

    let swapped = [head, &entry(1), &entry(0), &entry(2), mac].concat();
    check("swapped", &base, swapped, "modified or corrupted");

    let mut dropped = [head, &entry(0), &entry(2), mac].concat();
    put_u32(&mut dropped, ENTRY_COUNT, 2);
    check("dropped", &base, dropped, "modified or corrupted");

    // Entry `a` from the file as it was one write earlier.
    let old_layout = entries(&old);
    let old_a = old[old_layout[0].whole.clone()].to_vec();
    assert_ne!(old_a, entry(0), "each write re-encrypts the entries");
    let spliced = [head, &old_a, &entry(1), &entry(2), mac].concat();
    check("spliced", &base, spliced, "modified or corrupted");
}

#[test]
fn changed_public_key_or_validity_rejected() {
    let (base, _) = base();
    let original = std::fs::read(base.keystore.join("keystore")).unwrap();
    let layout = entries(&original);

    let mut public_key = original.clone();
    public_key[layout[0].public_key.end - 1] ^= 1;
    check("public key", &base, public_key, "modified or corrupted");

    let mut validity = original.clone();
    validity[layout[1].not_after.clone()].copy_from_slice(&4_000_000_000u64.to_be_bytes());
    check("validity", &base, validity, "modified or corrupted");
}
