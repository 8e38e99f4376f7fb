//! Tests of the keystore API against real files in temporary directories,
//! with `KdfParams::insecure_test()` so the KDF is fast.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::file::hook;
use super::*;

const TEST: KdfPolicy = KdfPolicy::InsecureTest;

fn passphrase(text: &str) -> Passphrase {
    Passphrase::from_text(text).unwrap()
}

fn entry(name: &str) -> Entry {
    Entry {
        meta: EntryMeta {
            name: name.into(),
            key_type: "ssh-ed25519".into(),
            purpose: "ssh".into(),
            public_key: format!("public-{name}").into_bytes(),
            comment: format!("{name} comment"),
            created: 1_700_000_000,
            not_before: Some(1_700_000_000),
            not_after: None,
            attributes: vec![("origin".into(), "test".into())],
        },
        private: SecretBuf::from_slice(format!("private-{name}").as_bytes()).unwrap(),
    }
}

fn keystore_bytes(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(KEYSTORE_FILE)).unwrap()
}

fn write_keystore(dir: &Path, bytes: &[u8]) {
    fs::write(dir.join(KEYSTORE_FILE), bytes).unwrap();
}

/// Creates a keystore with passphrase "pw" holding entries `a` and `b`, at generation 2.
fn two_entry_keystore() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    create(
        tmp.path(),
        &passphrase("pw"),
        KdfParams::insecure_test(),
        TEST,
    )
    .unwrap();
    let (mut ks, _) = Unlocked::open(tmp.path(), &passphrase("pw"), TEST).unwrap();
    ks.add(vec![entry("a"), entry("b")]).unwrap();
    tmp
}

fn open_pw(dir: &Path) -> Result<(Unlocked, Vec<Entry>), KeystoreError> {
    Unlocked::open(dir, &passphrase("pw"), TEST)
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.meta.name.as_str()).collect()
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

/// Reassembles a file from its header, the given entries and a MAC.
fn assemble(parsed: &format::ParsedFile, entries: &[&[u8]], mac: &[u8]) -> Vec<u8> {
    let mut out = format::encode_header(&parsed.header);
    format::put_u32(&mut out, entries.len() as u32);
    for e in entries {
        out.extend_from_slice(e);
    }
    format::put_string(&mut out, mac);
    out
}

/// Replaces the MAC with one computed under `keystore_key`.
fn remac(bytes: &[u8], keystore_key: &SecretBuf) -> Vec<u8> {
    let parsed = format::parse(bytes).unwrap();
    let subkeys = crypto::subkeys(keystore_key, &parsed.header.keystore_id).unwrap();
    let mut out = bytes[..parsed.signed_len].to_vec();
    let mac = crypto::mac(&subkeys.mac_key, &out);
    format::put_string(&mut out, &mac);
    out
}

// Offsets of header fields: magic 16, version 4, id 4+16, generation 8,
// KDF name 4+8, then m, t and p.
const VERSION_AT: usize = 16;
const M_COST_AT: usize = 60;
const T_COST_AT: usize = 64;

#[test]
fn round_trips_create_add_open() {
    let tmp = two_entry_keystore();
    let (ks, entries) = open_pw(tmp.path()).unwrap();

    assert_eq!(names(&entries), ["a", "b"]);
    assert_eq!(entries[0].meta, entry("a").meta);
    assert_eq!(entries[1].private.expose(), b"private-b");
    let catalog = ks.catalog();
    assert_eq!(catalog.generation, 2);
    assert_eq!(catalog.version, 1);
    assert_eq!(catalog.kdf, KdfParams::insecure_test());
    assert_eq!(ks.dir(), tmp.path());
    assert_eq!(ks.reopen().unwrap().len(), 2);
}

#[test]
fn read_catalog_works_without_passphrase() {
    let tmp = two_entry_keystore();
    let catalog = read_catalog(tmp.path()).unwrap();
    let (ks, _) = open_pw(tmp.path()).unwrap();

    assert_eq!(catalog.entries.len(), 2);
    assert_eq!(catalog.entries[1], entry("b").meta);
    assert_eq!(catalog.keystore_id, ks.catalog().keystore_id);
}

#[test]
fn wrong_passphrase_is_rejected() {
    let tmp = two_entry_keystore();
    let err = Unlocked::open(tmp.path(), &passphrase("wrong"), TEST).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongPassphrase), "{err}");
}

#[test]
fn nfc_and_nfd_passphrases_open_same_keystore() {
    let tmp = tempfile::tempdir().unwrap();
    let nfc = "Gr\u{fc}\u{df}e";
    let nfd = "Gru\u{308}\u{df}e";
    assert_ne!(nfc.as_bytes(), nfd.as_bytes());

    create(
        tmp.path(),
        &passphrase(nfc),
        KdfParams::insecure_test(),
        TEST,
    )
    .unwrap();
    assert!(Unlocked::open(tmp.path(), &passphrase(nfd), TEST).is_ok());
    assert!(Unlocked::open(tmp.path(), &passphrase(nfc), TEST).is_ok());
}

#[test]
fn open_of_missing_keystore_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::NotFound { .. }), "{err}");
}

#[test]
fn create_over_existing_keystore_fails() {
    let tmp = two_entry_keystore();
    let before = keystore_bytes(tmp.path());
    let err = create(
        tmp.path(),
        &passphrase("other"),
        KdfParams::insecure_test(),
        TEST,
    )
    .unwrap_err();
    assert!(matches!(err, KeystoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(keystore_bytes(tmp.path()), before);
}

#[test]
fn create_sets_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new");
    create(&dir, &passphrase("pw"), KdfParams::insecure_test(), TEST).unwrap();

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(KEYSTORE_FILE)), 0o600);
    assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let tmp = two_entry_keystore();
    let original = keystore_bytes(tmp.path());
    assert!(open_pw(tmp.path()).is_ok());

    for offset in 0..original.len() {
        let mut bytes = original.clone();
        bytes[offset] ^= 0xff;
        write_keystore(tmp.path(), &bytes);
        assert!(
            open_pw(tmp.path()).is_err(),
            "flipping byte {offset} went undetected"
        );
    }
}

#[test]
fn swapped_entries_are_tampered() {
    let tmp = two_entry_keystore();
    let bytes = keystore_bytes(tmp.path());
    let parsed = format::parse(&bytes).unwrap();
    let a = &bytes[parsed.entries[0].span.clone()];
    let b = &bytes[parsed.entries[1].span.clone()];

    write_keystore(tmp.path(), &assemble(&parsed, &[b, a], &parsed.mac));
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered { .. }), "{err}");
}

#[test]
fn dropped_entry_is_tampered() {
    let tmp = two_entry_keystore();
    let bytes = keystore_bytes(tmp.path());
    let parsed = format::parse(&bytes).unwrap();
    let a = &bytes[parsed.entries[0].span.clone()];

    write_keystore(tmp.path(), &assemble(&parsed, &[a], &parsed.mac));
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered { .. }), "{err}");
}

#[test]
fn entry_from_earlier_generation_is_tampered() {
    let tmp = two_entry_keystore();
    let old = keystore_bytes(tmp.path());
    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    ks.add(vec![entry("c")]).unwrap();
    let new = keystore_bytes(tmp.path());

    let old_parsed = format::parse(&old).unwrap();
    let new_parsed = format::parse(&new).unwrap();
    let old_a = &old[old_parsed.entries[0].span.clone()];
    let b = &new[new_parsed.entries[1].span.clone()];
    let c = &new[new_parsed.entries[2].span.clone()];
    let spliced = assemble(&new_parsed, &[old_a, b, c], &new_parsed.mac);

    // With the MAC left as it was, the MAC check fails.
    write_keystore(tmp.path(), &spliced);
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("MAC"), "{err}");

    // Even with a valid MAC, the entry's AAD carries the generation.
    write_keystore(tmp.path(), &remac(&spliced, &ks.keys.keystore_key));
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("\"a\""), "{err}");
}

#[test]
fn edited_metadata_fails_entry_authentication() {
    let tmp = two_entry_keystore();
    let (ks, _) = open_pw(tmp.path()).unwrap();
    let bytes = keystore_bytes(tmp.path());
    let parsed = format::parse(&bytes).unwrap();

    // Changing the comment of "b" and fixing the MAC still fails on "b".
    let at =
        parsed.entries[1].span.start + find(&bytes[parsed.entries[1].span.clone()], b"b comment");
    let mut edited = bytes.clone();
    edited[at] = b'x';
    write_keystore(tmp.path(), &remac(&edited, &ks.keys.keystore_key));
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("\"b\""), "{err}");
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn edited_kdf_params_fail_unwrap() {
    let tmp = two_entry_keystore();
    let mut bytes = keystore_bytes(tmp.path());
    assert_eq!(bytes[T_COST_AT..T_COST_AT + 4], 1u32.to_be_bytes());
    bytes[T_COST_AT..T_COST_AT + 4].copy_from_slice(&2u32.to_be_bytes());

    write_keystore(tmp.path(), &bytes);
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongPassphrase), "{err}");
}

#[test]
fn edited_version_is_unsupported() {
    let tmp = two_entry_keystore();
    let mut bytes = keystore_bytes(tmp.path());
    bytes[VERSION_AT..VERSION_AT + 4].copy_from_slice(&2u32.to_be_bytes());

    write_keystore(tmp.path(), &bytes);
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::UnsupportedVersion(2)), "{err}");
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn kdf_caps_checked_before_derivation() {
    let three_gib = KdfParams {
        m_cost_kib: 3 * 1024 * 1024,
        t_cost: 1,
        p_cost: 1,
    };
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = create(tmp.path(), &passphrase("pw"), three_gib, TEST).unwrap_err();
    assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");
    assert!(!tmp.path().join(KEYSTORE_FILE).exists());

    let tmp = two_entry_keystore();
    let mut bytes = keystore_bytes(tmp.path());
    bytes[M_COST_AT..M_COST_AT + 4].copy_from_slice(&three_gib.m_cost_kib.to_be_bytes());
    write_keystore(tmp.path(), &bytes);
    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");
    let err = read_catalog(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");

    // A 3 GiB Argon2 run would take seconds; the rejections took far less.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn kdf_floors_enforced_under_production() {
    let tmp = tempfile::tempdir().unwrap();
    let err = create(
        tmp.path(),
        &passphrase("pw"),
        KdfParams::insecure_test(),
        KdfPolicy::Production,
    )
    .unwrap_err();
    assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");

    let tmp = two_entry_keystore();
    let err = Unlocked::open(tmp.path(), &passphrase("pw"), KdfPolicy::Production).unwrap_err();
    assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");

    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    let err = ks
        .change_passphrase(
            &passphrase("new"),
            KdfParams::insecure_test(),
            KdfPolicy::Production,
        )
        .unwrap_err();
    assert!(matches!(err, KeystoreError::KdfOutOfBounds { .. }), "{err}");
}

#[test]
fn add_of_duplicate_name_leaves_file_identical() {
    let tmp = two_entry_keystore();
    let before = keystore_bytes(tmp.path());
    let (mut ks, _) = open_pw(tmp.path()).unwrap();

    let err = ks.add(vec![entry("c"), entry("a")]).unwrap_err();
    assert!(
        matches!(err, KeystoreError::DuplicateName(ref n) if n == "a"),
        "{err}"
    );
    assert_eq!(keystore_bytes(tmp.path()), before);

    let err = ks.add(vec![entry("d"), entry("d")]).unwrap_err();
    assert!(
        matches!(err, KeystoreError::DuplicateName(ref n) if n == "d"),
        "{err}"
    );
    assert_eq!(keystore_bytes(tmp.path()), before);
    assert_eq!(ks.catalog().entries.len(), 2);
}

#[test]
fn add_of_invalid_entry_is_rejected() {
    let tmp = two_entry_keystore();
    let before = keystore_bytes(tmp.path());
    let (mut ks, _) = open_pw(tmp.path()).unwrap();

    let mut bad = entry("c");
    bad.meta.name = "has space".into();
    let err = ks.add(vec![bad]).unwrap_err();
    assert!(matches!(err, KeystoreError::InvalidEntry { .. }), "{err}");
    assert_eq!(keystore_bytes(tmp.path()), before);
}

#[test]
fn add_keeps_keystore_key_and_reencrypts() {
    let tmp = two_entry_keystore();
    let old = format::parse(&keystore_bytes(tmp.path())).unwrap();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    ks.add(vec![entry("c")]).unwrap();
    let new = format::parse(&keystore_bytes(tmp.path())).unwrap();

    assert_eq!(new.header.wrapped_key, old.header.wrapped_key);
    assert_eq!(new.header.generation, old.header.generation + 1);
    for i in 0..2 {
        assert_ne!(new.entries[i].nonce, old.entries[i].nonce);
        assert_ne!(new.entries[i].ciphertext, old.entries[i].ciphertext);
    }
}

#[test]
fn remove_rekeys_so_old_copy_opens_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    create(
        tmp.path(),
        &passphrase("pw"),
        KdfParams::insecure_test(),
        TEST,
    )
    .unwrap();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    ks.add(vec![entry("a"), entry("b"), entry("c")]).unwrap();
    let old_bytes = keystore_bytes(tmp.path());

    ks.remove("b").unwrap();
    let new_bytes = keystore_bytes(tmp.path());
    let old = format::parse(&old_bytes).unwrap();
    let new = format::parse(&new_bytes).unwrap();

    assert_ne!(new.header.wrapped_key, old.header.wrapped_key);
    assert_eq!(new.entries.len(), 2);
    assert_ne!(new.entries[0].ciphertext, old.entries[0].ciphertext);
    assert_ne!(new.entries[1].ciphertext, old.entries[2].ciphertext);

    // Open the old copy with the old passphrase, then try its keystore key
    // on the new file.
    let backup = tempfile::tempdir().unwrap();
    write_keystore(backup.path(), &old_bytes);
    let (old_ks, _) = open_pw(backup.path()).unwrap();
    let old_key = &old_ks.keys.keystore_key;
    assert_ne!(old_key.expose(), ks.keys.keystore_key.expose());

    let subkeys = crypto::subkeys(old_key, &new.header.keystore_id).unwrap();
    for raw in &new.entries {
        let aad = crypto::entry_aad(
            &new.header.keystore_id,
            new.header.generation,
            &raw.meta_bytes,
        );
        let opened = crypto::open(&subkeys.entry_key, &raw.nonce, &aad, &raw.ciphertext).unwrap();
        assert!(opened.is_none(), "old key decrypted {:?}", raw.meta.name);
    }
    assert!(!crypto::verify_mac(
        &subkeys.mac_key,
        &new_bytes[..new.signed_len],
        &new.mac
    ));

    let (_, entries) = open_pw(tmp.path()).unwrap();
    assert_eq!(names(&entries), ["a", "c"]);
}

#[test]
fn remove_of_unknown_name_fails() {
    let tmp = two_entry_keystore();
    let before = keystore_bytes(tmp.path());
    let (mut ks, _) = open_pw(tmp.path()).unwrap();

    let err = ks.remove("zz").unwrap_err();
    assert!(
        matches!(err, KeystoreError::NoSuchKey(ref n) if n == "zz"),
        "{err}"
    );
    assert_eq!(keystore_bytes(tmp.path()), before);
}

#[test]
fn change_passphrase_accepts_new_and_rejects_old() {
    let tmp = two_entry_keystore();
    let old = format::parse(&keystore_bytes(tmp.path())).unwrap();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    let new_kdf = KdfParams {
        m_cost_kib: 16,
        t_cost: 2,
        p_cost: 1,
    };
    ks.change_passphrase(&passphrase("new"), new_kdf, TEST)
        .unwrap();

    let err = open_pw(tmp.path()).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongPassphrase), "{err}");
    let (reopened, entries) = Unlocked::open(tmp.path(), &passphrase("new"), TEST).unwrap();
    assert_eq!(names(&entries), ["a", "b"]);
    assert_eq!(reopened.catalog().kdf, new_kdf);

    let new = format::parse(&keystore_bytes(tmp.path())).unwrap();
    assert_ne!(new.header.salt, old.header.salt);
    assert_ne!(new.header.wrapped_key, old.header.wrapped_key);
    assert!(ks.verify_passphrase(&passphrase("new")).is_ok());
    assert!(matches!(
        ks.verify_passphrase(&passphrase("pw")),
        Err(KeystoreError::WrongPassphrase)
    ));

    // The handle that changed it keeps working.
    ks.add(vec![entry("c")]).unwrap();
    assert_eq!(ks.reopen().unwrap().len(), 3);
}

#[test]
fn write_after_foreign_rekey_fails() {
    let tmp = two_entry_keystore();
    let (mut first, _) = open_pw(tmp.path()).unwrap();
    let (mut second, _) = open_pw(tmp.path()).unwrap();
    second
        .change_passphrase(&passphrase("new"), KdfParams::insecure_test(), TEST)
        .unwrap();
    let after_change = keystore_bytes(tmp.path());

    let err = first.add(vec![entry("c")]).unwrap_err();
    assert!(matches!(err, KeystoreError::ChangedOnDisk), "{err}");
    assert_eq!(keystore_bytes(tmp.path()), after_change);
    assert!(matches!(first.reopen(), Err(KeystoreError::ChangedOnDisk)));
}

#[test]
fn write_after_other_remove_uses_new_key() {
    let tmp = two_entry_keystore();
    let (mut first, _) = open_pw(tmp.path()).unwrap();
    let (mut second, _) = open_pw(tmp.path()).unwrap();
    second.remove("a").unwrap();

    first.add(vec![entry("c")]).unwrap();
    let (_, entries) = open_pw(tmp.path()).unwrap();
    assert_eq!(names(&entries), ["b", "c"]);
    assert_eq!(first.catalog().entries.len(), 2);
}

#[test]
fn write_detects_edited_header() {
    let tmp = two_entry_keystore();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    let mut bytes = keystore_bytes(tmp.path());
    bytes[T_COST_AT + 3] = 2;
    write_keystore(tmp.path(), &bytes);

    let err = ks.add(vec![entry("c")]).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered { .. }), "{err}");
}

#[test]
fn write_of_file_with_bad_mac_is_tampered() {
    let tmp = two_entry_keystore();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    let mut bytes = keystore_bytes(tmp.path());
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    write_keystore(tmp.path(), &bytes);

    let err = ks.add(vec![entry("c")]).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered { .. }), "{err}");
    assert_eq!(keystore_bytes(tmp.path()), bytes);
}

#[test]
fn writes_leave_no_temp_file() {
    let tmp = two_entry_keystore();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();
    ks.remove("a").unwrap();
    ks.change_passphrase(&passphrase("new"), KdfParams::insecure_test(), TEST)
        .unwrap();
    assert_eq!(dir_listing(tmp.path()), [KEYSTORE_FILE, LOCK_FILE]);
}

#[test]
fn write_removes_stale_temp_files() {
    let tmp = two_entry_keystore();
    let stale = tmp.path().join(format!("{}stale", file::TEMP_PREFIX));
    fs::write(&stale, b"left by a crash").unwrap();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();

    ks.add(vec![entry("c")]).unwrap();
    assert_eq!(dir_listing(tmp.path()), [KEYSTORE_FILE, LOCK_FILE]);
}

#[test]
fn write_syncs_file_then_renames_then_syncs_directory() {
    let tmp = two_entry_keystore();
    let (mut ks, _) = open_pw(tmp.path()).unwrap();

    hook::take_log();
    ks.add(vec![entry("c")]).unwrap();
    assert_eq!(
        hook::take_log(),
        ["write", "fsync file", "rename", "fsync directory"]
    );
}

#[test]
fn failed_write_keeps_old_file_and_removes_temp() {
    for step in ["write", "fsync file", "rename"] {
        let tmp = two_entry_keystore();
        let before = keystore_bytes(tmp.path());
        let (mut ks, _) = open_pw(tmp.path()).unwrap();

        hook::fail_at(Some(step));
        let result = ks.add(vec![entry("c")]);
        hook::fail_at(None);

        let err = result.unwrap_err();
        assert!(matches!(err, KeystoreError::Io { .. }), "{step}: {err}");
        assert_eq!(keystore_bytes(tmp.path()), before, "{step}");
        assert_eq!(
            dir_listing(tmp.path()),
            [KEYSTORE_FILE, LOCK_FILE],
            "{step}"
        );
        assert_eq!(ks.catalog().entries.len(), 2, "{step}");
        assert!(open_pw(tmp.path()).is_ok(), "{step}");
    }
}

#[test]
fn debug_output_hides_secrets() {
    let tmp = two_entry_keystore();
    let (ks, entries) = open_pw(tmp.path()).unwrap();

    let entry_debug = format!("{:?}", entries[0]);
    assert!(!entry_debug.contains("private-a"), "{entry_debug}");
    assert!(entry_debug.contains("REDACTED"), "{entry_debug}");

    let ks_debug = format!("{ks:?}");
    for secret in [ks.keys.kek.expose(), ks.keys.keystore_key.expose()] {
        assert!(!ks_debug.contains(&hex::encode(secret)), "{ks_debug}");
        assert!(!ks_debug.contains(&format!("{secret:?}")), "{ks_debug}");
    }
}

#[test]
fn verify_passphrase_checks_held_key() {
    let tmp = two_entry_keystore();
    let (ks, _) = open_pw(tmp.path()).unwrap();
    assert!(ks.verify_passphrase(&passphrase("pw")).is_ok());
    assert!(matches!(
        ks.verify_passphrase(&passphrase("pW")),
        Err(KeystoreError::WrongPassphrase)
    ));
}

#[test]
fn header_offsets_match_specification() {
    let tmp = two_entry_keystore();
    let bytes = keystore_bytes(tmp.path());
    let (ks, _) = open_pw(tmp.path()).unwrap();
    let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());

    assert_eq!(&bytes[0..16], b"keyward-keystore");
    assert_eq!(u32_at(VERSION_AT), 1);
    assert_eq!(u32_at(20), 16);
    assert_eq!(bytes[24..40], ks.catalog().keystore_id);
    assert_eq!(bytes[40..48], 2u64.to_be_bytes());
    assert_eq!(u32_at(48), 8);
    assert_eq!(&bytes[52..60], b"argon2id");
    assert_eq!(u32_at(M_COST_AT), 8);
    assert_eq!(u32_at(T_COST_AT), 1);
    assert_eq!(u32_at(68), 1);
    assert_eq!(u32_at(72), 32);
    assert_eq!(u32_at(108), 24);
    assert_eq!(u32_at(136), 48);
    assert_eq!(u32_at(188), 2);
    assert_eq!(u32_at(192), 1);
    assert_eq!(bytes[196], b'a');
    assert_eq!(u32_at(bytes.len() - 36), 32);
}

#[test]
fn parse_catalog_survives_mutated_input() {
    let tmp = two_entry_keystore();
    let original = keystore_bytes(tmp.path());
    assert!(parse_catalog(&original).is_ok());

    for len in 0..original.len() {
        assert!(
            parse_catalog(&original[..len]).is_err(),
            "truncated to {len} bytes"
        );
    }
    // Single-byte edits may still decode (a changed comment), but must not panic.
    for offset in 0..original.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut bytes = original.clone();
            bytes[offset] ^= mask;
            let _ = parse_catalog(&bytes);
        }
    }
    // Pseudo-random input from a fixed xorshift seed, so failures reproduce.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2_000 {
        let mut bytes = original.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % bytes.len() as u64) as usize;
            bytes[at] = (state >> 32) as u8;
        }
        let _ = parse_catalog(&bytes);
    }
}

#[test]
fn add_beyond_file_size_limit_is_full() {
    let tmp = two_entry_keystore();
    let before = keystore_bytes(tmp.path());
    let (mut ks, _) = open_pw(tmp.path()).unwrap();

    let big = |i: usize| {
        let mut e = entry(&format!("big{i}"));
        e.private = SecretBuf::new(MAX_PRIVATE_LEN).unwrap();
        e
    };
    let entries: Vec<Entry> = (0..64).map(big).collect();
    let err = ks.add(entries).unwrap_err();
    assert!(matches!(err, KeystoreError::Full { .. }), "{err}");
    assert_eq!(keystore_bytes(tmp.path()), before);
}
