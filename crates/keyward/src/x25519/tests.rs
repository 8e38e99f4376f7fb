use std::str::FromStr;

use age::Recipient as _;
use age_core::format::{FileKey, Stanza};
use age_core::secrecy::ExposeSecret;
use base64::prelude::{Engine, BASE64_STANDARD, BASE64_STANDARD_NO_PAD};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

use super::*;

// Test key pair from the age crate's own x25519 tests (age 0.12.1).
const TEST_SK: &str = "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33";
const TEST_PK: &str = "age1t7rxyev2z3rw82stdlrrepyc39nvn86l5078zqkf5uasdy86jp6svpy7pa";

// Low-order points of Curve25519 and their non-canonical encodings, as
// libsodium's X25519 blocklist lists them.
const LOW_ORDER_POINTS: [&str; 7] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

fn low_order_points() -> Vec<[u8; 32]> {
    LOW_ORDER_POINTS
        .iter()
        .map(|text| hex::decode(text).unwrap().try_into().unwrap())
        .collect()
}

fn test_secret() -> X25519Secret {
    parse_age_identity_file(TEST_SK).unwrap().pop().unwrap()
}

/// Wraps `file_key` to `recipient` with the age crate and returns the stanza.
fn age_stanza(recipient: &str, file_key: [u8; 16]) -> Stanza {
    let recipient = age::x25519::Recipient::from_str(recipient).unwrap();
    let (mut stanzas, _) = recipient.wrap_file_key(&FileKey::new(Box::new(file_key))).unwrap();
    assert_eq!(stanzas.len(), 1);
    stanzas.pop().unwrap()
}

#[test]
fn recipient_matches_age_test_vector() {
    let secret = test_secret();

    assert_eq!(secret.public_key().to_age_recipient(), TEST_PK);
    assert_eq!(secret.to_age_identity().as_str(), TEST_SK);
}

#[test]
fn generated_key_encodings_match_age_crate() {
    for _ in 0..16 {
        let secret = X25519Secret::generate().unwrap();
        let identity = age::x25519::Identity::from_str(&secret.to_age_identity()).unwrap();

        assert_eq!(identity.to_public().to_string(), secret.public_key().to_age_recipient());
        assert_eq!(identity.to_string().expose_secret(), secret.to_age_identity().as_str());
    }
}

#[test]
fn recipient_round_trips() {
    let public = X25519Public::from_age_recipient(TEST_PK).unwrap();

    assert_eq!(public.to_age_recipient(), TEST_PK);
    assert_eq!(public, test_secret().public_key());
}

#[test]
fn recipient_rejects_bad_input() {
    let mut bad_checksum = TEST_PK.to_owned();
    bad_checksum.pop();
    bad_checksum.push('q');
    let short = bech32::encode_lower::<Bech32>(Hrp::parse_unchecked("age"), &[1u8; 31]).unwrap();

    for text in [bad_checksum.as_str(), TEST_SK, short.as_str(), "", "age1"] {
        let result = X25519Public::from_age_recipient(text);
        assert!(matches!(result, Err(X25519Error::Recipient(_))), "accepted {text:?}");
    }
}

#[test]
fn identity_file_skips_comments_and_blank_lines() {
    let other = X25519Secret::generate().unwrap();
    let text = format!(
        "# created: 2026-12-04T20:00:00Z\n# public key: {TEST_PK}\n\n{TEST_SK}\r\n  \n{}\n",
        other.to_age_identity().as_str()
    );

    let secrets = parse_age_identity_file(&text).unwrap();

    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[0].public_key().to_age_recipient(), TEST_PK);
    assert_eq!(secrets[1].public_key(), other.public_key());
}

#[test]
fn identity_file_rejects_bad_line_without_echoing_it() {
    let mut corrupted = TEST_SK.to_owned();
    corrupted.replace_range(20..21, "Q");
    let text = format!("# comment\n{TEST_SK}\n{corrupted}\n");

    let error = parse_age_identity_file(&text).unwrap_err();

    assert!(matches!(error, X25519Error::IdentityLine { line: 3, .. }), "{error:?}");
    let message = error.to_string();
    assert!(!message.contains(&corrupted[16..]), "message echoes the key: {message}");
    assert!(!format!("{error:?}").contains(&corrupted[16..]));
}

#[test]
fn identity_file_rejects_other_identity_kinds() {
    let plugin_line = plugin_identity(&[7; 32]);
    let recipient_line = TEST_PK;
    let long = bech32::encode_lower::<Bech32>(Hrp::parse_unchecked("age-secret-key-"), &[1; 33])
        .unwrap()
        .to_uppercase();

    for text in [
        plugin_line.as_str(),
        recipient_line,
        long.as_str(),
        "age-encryption.org/v1",
        "-----BEGIN AGE ENCRYPTED FILE-----",
        "AGE-SECRET-KEY-1",
    ] {
        let result = parse_age_identity_file(text);
        assert!(
            matches!(result, Err(X25519Error::IdentityLine { line: 1, .. })),
            "accepted {text:?}"
        );
    }
}

#[test]
fn identity_file_without_identity_is_rejected() {
    for text in ["", "\n\n", "# only a comment\n"] {
        assert!(matches!(parse_age_identity_file(text), Err(X25519Error::NoIdentity)));
    }
}

#[test]
fn secret_debug_shows_no_secret() {
    let secret = test_secret();
    let shown = format!("{secret:?}");

    assert!(shown.starts_with("X25519Secret(SHA256:"), "{shown}");
    assert!(!shown.contains(&TEST_SK[16..30]));
    assert!(!shown.contains(&hex::encode(secret.expose())));
}

#[test]
fn blob_round_trips_and_fingerprint_is_openssh_style() {
    let public = test_secret().public_key();
    let blob = public.blob();

    assert_eq!(&blob[..4], &[0, 0, 0, 14]);
    assert_eq!(&blob[4..18], b"x25519@keyward");
    assert_eq!(&blob[18..22], &[0, 0, 0, 32]);
    assert_eq!(&blob[22..], &public.0);
    assert_eq!(X25519Public::from_blob(&blob).unwrap(), public);

    let expected: [u8; 32] = Sha256::digest(&blob).into();
    assert_eq!(public.fingerprint(), expected);
    let text = public.fingerprint_text();
    assert_eq!(text, format!("SHA256:{}", BASE64_STANDARD_NO_PAD.encode(expected)));
    assert_eq!(text.len(), 7 + 43);
}

#[test]
fn blob_parser_rejects_malformed_blobs() {
    let blob = test_secret().public_key().blob();
    let mut trailing = blob.clone();
    trailing.push(0);
    let mut wrong_type = blob.clone();
    wrong_type[4] = b'y';
    let mut short_key = blob[..blob.len() - 1].to_vec();
    short_key[21] = 31;

    for bad in [
        &blob[..blob.len() - 1],
        &blob[..3],
        &[][..],
        &trailing,
        &wrong_type,
        &short_key,
        &[0xff, 0xff, 0xff, 0xff][..],
    ] {
        assert!(matches!(X25519Public::from_blob(bad), Err(X25519Error::Blob(_))), "{bad:?}");
    }
}

#[test]
fn plugin_identity_round_trips() {
    let fingerprint = test_secret().public_key().fingerprint();
    let line = plugin_identity(&fingerprint);

    assert!(line.starts_with("AGE-PLUGIN-KEYWARD-1"), "{line}");
    assert_eq!(line, line.to_uppercase());
    assert_eq!(parse_plugin_identity(&line).unwrap(), fingerprint);
}

#[test]
fn plugin_identity_decodes_as_age_plugin_does() {
    // age-plugin 0.7 decodes identity lines with the long Bech32 variant of
    // age-core and derives the plugin name from the HRP.
    let line = plugin_identity(&[9; 32]);
    let (hrp, payload) = age_core::primitives::bech32_decode(
        &line,
        |_| "invalid",
        |_| Ok(()),
        |hrp, bytes| Ok((hrp, bytes.collect::<Vec<u8>>())),
    )
    .unwrap();

    assert_eq!(hrp.as_str().to_lowercase(), "age-plugin-keyward-");
    assert_eq!(parse_plugin_identity_payload(&payload).unwrap(), [9; 32]);
}

#[test]
fn plugin_identity_payload_rejects_bad_version_and_length() {
    let mut future = vec![2u8];
    future.extend_from_slice(&[0; 32]);
    let mut short = vec![1u8];
    short.extend_from_slice(&[0; 31]);
    let mut long = vec![1u8];
    long.extend_from_slice(&[0; 33]);

    for payload in [&future[..], &short[..], &long[..], &[][..]] {
        let result = parse_plugin_identity_payload(payload);
        assert!(matches!(result, Err(X25519Error::PluginIdentity(_))), "{payload:?}");
    }
    assert!(parse_plugin_identity(TEST_PK).is_err());
}

#[test]
fn unwrap_recovers_file_key_from_age_stanza() {
    let secret = X25519Secret::generate().unwrap();
    let file_key = [0x42; 16];
    let stanza = age_stanza(&secret.public_key().to_age_recipient(), file_key);

    assert_eq!(stanza.tag, STANZA_TAG);
    let parsed = parse_stanza(&stanza.args, &stanza.body).unwrap();
    let unwrapped = unwrap_stanza(secret.as_secret_buf(), &parsed.ephemeral_share, &parsed.body).unwrap();

    assert_eq!(*unwrapped, file_key);
}

#[test]
fn unwrap_rejects_stanza_for_another_key() {
    let ours = X25519Secret::generate().unwrap();
    let theirs = X25519Secret::generate().unwrap();
    let stanza = age_stanza(&theirs.public_key().to_age_recipient(), [1; 16]);
    let parsed = parse_stanza(&stanza.args, &stanza.body).unwrap();

    let result = unwrap_stanza(ours.as_secret_buf(), &parsed.ephemeral_share, &parsed.body);

    assert!(matches!(result, Err(X25519Error::NotForThisKey)));
}

#[test]
fn unwrap_rejects_tampered_body() {
    let secret = X25519Secret::generate().unwrap();
    let stanza = age_stanza(&secret.public_key().to_age_recipient(), [1; 16]);
    let mut parsed = parse_stanza(&stanza.args, &stanza.body).unwrap();
    parsed.body[0] ^= 1;

    let result = unwrap_stanza(secret.as_secret_buf(), &parsed.ephemeral_share, &parsed.body);

    assert!(matches!(result, Err(X25519Error::NotForThisKey)));
}

#[test]
fn unwrap_rejects_low_order_shares() {
    let secret = test_secret();

    for point in low_order_points() {
        let result = unwrap_stanza(secret.as_secret_buf(), &point, &[0; 32]);
        assert!(matches!(result, Err(X25519Error::LowOrderPoint)), "{}", hex::encode(point));
    }
}

#[test]
fn unwrap_rejects_wrong_lengths() {
    let secret = test_secret();
    let share = secret.public_key().0;

    assert!(matches!(
        unwrap_stanza(secret.as_secret_buf(), &share[..31], &[0; 32]),
        Err(X25519Error::PublicKeyLength(31))
    ));
    assert!(matches!(
        unwrap_stanza(secret.as_secret_buf(), &[9; 33], &[0; 32]),
        Err(X25519Error::PublicKeyLength(33))
    ));
    assert!(matches!(unwrap_stanza(secret.as_secret_buf(), &share, &[0; 31]), Err(X25519Error::BodyLength(31))));
    assert!(matches!(unwrap_stanza(secret.as_secret_buf(), &share, &[0; 48]), Err(X25519Error::BodyLength(48))));
}

#[test]
fn stanza_parser_rejects_non_canonical_base64() {
    let share = [0xff; 32];
    let canonical = BASE64_STANDARD_NO_PAD.encode(share);
    assert_eq!(decode_share(&canonical).unwrap(), share);

    // The last of the 43 characters carries 4 bits of data and 2 padding
    // bits; setting a padding bit gives a non-canonical encoding of the same
    // bytes.
    let last = canonical.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let index = alphabet.find(last).unwrap();
    let mut non_canonical = canonical.clone();
    non_canonical.pop();
    non_canonical.push(alphabet.as_bytes()[index | 1] as char);
    assert_ne!(non_canonical, canonical);

    let padded = BASE64_STANDARD.encode(share);
    assert!(canonical.contains('/'));
    let url_safe = canonical.replace('+', "-").replace('/', "_");
    let too_short = BASE64_STANDARD_NO_PAD.encode([1u8; 31]);
    let too_long = BASE64_STANDARD_NO_PAD.encode([1u8; 33]);
    let with_space = format!(" {canonical}");

    for text in [
        non_canonical.as_str(),
        padded.as_str(),
        url_safe.as_str(),
        too_short.as_str(),
        too_long.as_str(),
        with_space.as_str(),
        "",
    ] {
        let result = parse_stanza(&[text.to_owned()], &[0; 32]);
        assert!(matches!(result, Err(X25519Error::ShareEncoding)), "accepted {text:?}");
    }
}

#[test]
fn stanza_parser_rejects_wrong_shapes() {
    let share = BASE64_STANDARD_NO_PAD.encode(test_secret().public_key().0);

    assert!(matches!(parse_stanza(&[], &[0; 32]), Err(X25519Error::ArgumentCount(0))));
    assert!(matches!(
        parse_stanza(&[share.clone(), share.clone()], &[0; 32]),
        Err(X25519Error::ArgumentCount(2))
    ));
    assert!(matches!(parse_stanza(std::slice::from_ref(&share), &[0; 31]), Err(X25519Error::BodyLength(31))));
    assert!(matches!(parse_stanza(std::slice::from_ref(&share), &[0; 33]), Err(X25519Error::BodyLength(33))));
    assert!(matches!(parse_stanza(&[share], &[]), Err(X25519Error::BodyLength(0))));
}

#[test]
fn stanza_parser_rejects_low_order_shares() {
    for point in low_order_points() {
        let arg = BASE64_STANDARD_NO_PAD.encode(point);
        let result = parse_stanza(&[arg], &[0; 32]);
        assert!(matches!(result, Err(X25519Error::LowOrderPoint)), "{}", hex::encode(point));
    }
}

#[test]
fn low_order_check_agrees_with_real_keys() {
    let points: Vec<[u8; 32]> = low_order_points();
    let secrets: Vec<X25519Secret> = (0..8).map(|_| X25519Secret::generate().unwrap()).collect();

    for point in &points {
        assert!(is_low_order(point));
        for secret in &secrets {
            assert!(matches!(agree(secret.as_secret_buf(), &[*point]).unwrap()[0], Err(X25519Error::LowOrderPoint)));
        }
    }
    for secret in &secrets {
        assert!(!is_low_order(&secret.public_key().0));
    }
}

#[test]
fn agree_matches_x25519_dalek() {
    let ours = X25519Secret::generate().unwrap();
    let our_public = PublicKey::from(ours.public_key().0);
    let peers: Vec<StaticSecret> =
        (0..5).map(|_| StaticSecret::random_from_rng(rand_core::OsRng)).collect();
    let peer_publics: Vec<[u8; 32]> =
        peers.iter().map(|peer| PublicKey::from(peer).to_bytes()).collect();

    let results = agree(ours.as_secret_buf(), &peer_publics).unwrap();

    assert_eq!(results.len(), peers.len());
    for (peer, result) in peers.iter().zip(&results) {
        let expected = peer.diffie_hellman(&our_public);
        assert_eq!(&**result.as_ref().unwrap(), expected.as_bytes());
    }
}

#[test]
fn agree_rejects_low_order_items_alone() {
    let ours = test_secret();
    let good = X25519Secret::generate().unwrap().public_key().0;
    let peers = [good, [0; 32], good];

    let results = agree(ours.as_secret_buf(), &peers).unwrap();

    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(X25519Error::LowOrderPoint)));
    assert!(results[2].is_ok());
    assert_eq!(**results[0].as_ref().unwrap(), **results[2].as_ref().unwrap());
}

#[test]
fn agree_with_no_peers_is_empty() {
    assert!(agree(test_secret().as_secret_buf(), &[]).unwrap().is_empty());
}

#[test]
fn operations_reject_stored_key_of_wrong_length() {
    let short = SecretBuf::from_slice(&[1; 31]).unwrap();

    assert!(matches!(public_key_of(&short), Err(X25519Error::PrivateKeyLength(31))));
    assert!(matches!(agree(&short, &[[9; 32]]), Err(X25519Error::PrivateKeyLength(31))));
    assert!(matches!(
        unwrap_stanza(&short, &[9; 32], &[0; 32]),
        Err(X25519Error::PrivateKeyLength(31))
    ));
}

#[test]
fn loaded_key_checks_x25519_public_key() {
    use crate::keys::{generate, KeyType, LoadedKey};
    use crate::keystore::EntryMeta;

    let meta = |public_key: Vec<u8>| EntryMeta {
        name: "age".into(),
        key_type: "x25519".into(),
        purpose: "decrypt".into(),
        public_key,
        comment: String::new(),
        created: 0,
        not_before: None,
        not_after: None,
        attributes: Vec::new(),
    };
    let first = generate::generate(KeyType::X25519).unwrap();
    let second = generate::generate(KeyType::X25519).unwrap();
    let first_blob = first.public_blob.clone();

    let loaded = LoadedKey::load(meta(first.public_blob), first.private).unwrap();
    assert_eq!(loaded.fingerprint_bytes, X25519Public::from_blob(&first_blob).unwrap().fingerprint());
    assert!(loaded.raw_private().is_some());

    let mismatched = LoadedKey::load(meta(first_blob), second.private);
    assert!(mismatched.is_err());
}

#[test]
fn import_reads_age_identity_file() {
    let file = format!("# key\n{TEST_SK}\n");

    let imported = crate::keys::import::age(file.as_bytes()).unwrap();

    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].key_type, crate::keys::KeyType::X25519);
    assert_eq!(crate::keys::export::age_recipient(&imported[0].public_blob).unwrap(), TEST_PK);
    let identity = crate::keys::export::age_plugin_identity(&imported[0].public_blob).unwrap();
    assert_eq!(parse_plugin_identity(&identity).unwrap(), test_secret().public_key().fingerprint());
    assert!(crate::keys::import::age(b"\xff\xfe").is_err());
    assert!(crate::keys::import::age(b"# nothing\n").is_err());
}

#[test]
fn parsers_survive_random_input() {
    use crate::agent::x25519 as wire;
    use rand_core::RngCore;

    let mut rng = rand_core::OsRng;
    for round in 0..3000 {
        let mut bytes = vec![0u8; (round % 140) as usize];
        rng.fill_bytes(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);

        let _ = X25519Public::from_blob(&bytes);
        let _ = parse_plugin_identity_payload(&bytes);
        let _ = parse_plugin_identity(&text);
        let _ = X25519Public::from_age_recipient(&text);
        let _ = parse_age_identity_file(&text);
        let _ = decode_share(&text);
        let _ = parse_stanza(&[text.to_string()], &bytes);
        let _ = wire::UnwrapRequest::parse(&bytes);
        let _ = wire::AgreeRequest::parse(&bytes);
        let _ = wire::parse_unwrap_reply(&bytes);
        let _ = wire::parse_agree_reply(&bytes, (round % 5) as usize);
    }
}

#[test]
fn parsers_survive_truncation_of_valid_input() {
    use crate::agent::x25519 as wire;

    let unwrap = wire::UnwrapRequest { fingerprint: [1; 32], ephemeral_share: [2; 32], stanza_body: [3; 32] }.encode();
    let agree = wire::AgreeRequest { fingerprint: [1; 32], peers: vec![[2; 32]; 3] }.encode();
    let blob = test_secret().public_key().blob();
    let plugin = plugin_identity(&[5; 32]);

    for cut in 0..unwrap.len() {
        assert!(wire::UnwrapRequest::parse(&unwrap[..cut]).is_err(), "accepted {cut} bytes");
    }
    for cut in 0..agree.len() {
        assert!(wire::AgreeRequest::parse(&agree[..cut]).is_err(), "accepted {cut} bytes");
    }
    for cut in 0..blob.len() {
        assert!(X25519Public::from_blob(&blob[..cut]).is_err(), "accepted {cut} bytes");
    }
    for cut in 0..plugin.len() {
        assert!(parse_plugin_identity(&plugin[..cut]).is_err(), "accepted {cut} characters");
    }
    for cut in 0..TEST_SK.len() {
        assert!(parse_age_identity_file(&TEST_SK[..cut]).is_err(), "accepted {cut} characters");
    }
}
