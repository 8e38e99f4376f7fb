//! The Mixmaster packet processor: the received mail, the raw packet, and
//! the symmetric unwrap under an arbitrary RSA plaintext; plus the daemon's
//! extension body and public-key blob parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// 2026-12-04 12:00:00 UTC.
const NOW: u64 = 1_796_385_600;

fuzz_target!(|data: &[u8]| {
    let _ = keyward_mixmaster::parse_packet(data);
    let _ = keyward_mixmaster::parse_final_payload(data);
    let _ = keyward::mixmaster::RsaRequest::parse(data);
    let _ = keyward::mixmaster::PublicKey::parse(data);

    // The first 216 bytes play the RSA plaintext, the rest the packet.
    if data.len() > 216 {
        let (plaintext, packet) = data.split_at(216);
        if let Ok(packet) = keyward_mixmaster::Packet::from_bytes(packet) {
            let _ = packet.unwrap_with_padding(&plaintext[..24], NOW, &[0u8; 512]);
            let _ = packet.unwrap_with_padding(plaintext, NOW, &[0u8; 512]);
        }
    }
});
