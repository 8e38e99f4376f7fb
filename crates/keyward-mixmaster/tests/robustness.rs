//! Parsers never panic on arbitrary bytes, and the RSA operation always
//! returns the stated length.

use std::sync::OnceLock;

use keyward_mixmaster::{parse_final_payload, parse_packet, parse_secring, Packet, RsaBlockKey, PACKET_LEN};
use proptest::prelude::*;

fn data(rel: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)).unwrap()
}

fn block_key() -> &'static RsaBlockKey {
    static KEY: OnceLock<RsaBlockKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let ring = parse_secring(&data("r1024/secring.mix"), b"mixtest-S-1024").unwrap();
        RsaBlockKey::from_pkcs1_der(&ring[0].to_pkcs1_der()).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn secring_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_secring(&bytes, b"x");
    }

    #[test]
    fn secring_parser_survives_mutated_ring(pos in 0usize..1200, byte in any::<u8>(), cut in 0usize..1300) {
        let mut ring = data("r1024/secring.mix");
        let pos = pos % ring.len();
        ring[pos] = byte;
        ring.truncate(cut.min(ring.len()));
        let _ = parse_secring(&ring, b"mixtest-S-1024");
    }

    #[test]
    fn packet_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_packet(&bytes);
        let _ = Packet::from_bytes(&bytes);
    }

    #[test]
    fn packet_parser_survives_mutated_mail(pos in any::<usize>(), byte in any::<u8>()) {
        let mut mail = data("r4096/packets/01.eml");
        let pos = pos % mail.len();
        mail[pos] = byte;
        if let Ok(packet) = parse_packet(&mail) {
            let _ = packet.unwrap_with_padding(&[0u8; 216], 1_796_385_600, &[0; 512]);
        }
    }

    #[test]
    fn unwrap_survives_arbitrary_packet(
        seed in proptest::collection::vec(any::<u8>(), 64),
        len_byte in prop::sample::select(vec![0x80u8, 2, 3, 4]),
        kind in any::<u8>(),
        plaintext in proptest::collection::vec(any::<u8>(), 216),
    ) {
        let mut bytes: Vec<u8> = seed.iter().cycle().take(PACKET_LEN).copied().collect();
        bytes[16] = len_byte;
        bytes[200] = kind;
        let packet = Packet::from_bytes(&bytes).unwrap();
        let _ = packet.unwrap_with_padding(&plaintext[..packet.rsa_out_len], 0, &[0; 512]);
        let _ = packet.unwrap_with_padding(&plaintext[..packet.rsa_out_len], u64::MAX, &[0; 512]);
    }

    #[test]
    fn final_payload_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_final_payload(&bytes);
        let mut gzip = vec![0x1f, 0x8b, 8, 0x1e];
        gzip.extend_from_slice(&bytes);
        let mut payload = vec![1u8];
        payload.extend_from_slice(&[b'a'; 80]);
        payload.push(0);
        payload.extend_from_slice(&gzip);
        let _ = parse_final_payload(&payload);
    }

    #[test]
    fn decrypt_fixed_always_returns_stated_length(block in proptest::collection::vec(any::<u8>(), 128)) {
        let out = block_key().decrypt_fixed(&block, 24).unwrap();
        prop_assert_eq!(out.len(), 24);
        prop_assert_eq!(out, block_key().decrypt_fixed(&block, 24).unwrap());
    }
}

#[test]
fn secring_parser_is_fast_on_many_begin_lines() {
    let mut ring = Vec::new();
    for _ in 0..20_000 {
        ring.extend_from_slice(b"-----Begin Mix Key-----\nCreated: 2026-12-04\n");
    }
    let start = std::time::Instant::now();
    assert!(parse_secring(&ring, b"x").is_err());
    assert!(start.elapsed().as_secs() < 2);
}

#[test]
fn packet_parser_is_fast_on_large_mail() {
    let mut mail = b"::\nRemailer-Type: Mixmaster 3.0\n\n-----BEGIN REMAILER MESSAGE-----\n20480\n".to_vec();
    mail.extend(std::iter::repeat_n(b'A', 4 << 20));
    let start = std::time::Instant::now();
    assert!(parse_packet(&mail).is_err());
    assert!(start.elapsed().as_secs() < 2);
}
