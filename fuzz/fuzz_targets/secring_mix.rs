//! `secring.mix` parsing, the importer of Mixmaster remailer keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the passphrase length, so the fuzzer can also
    // reach the decrypted part with inputs made under a known passphrase.
    let Some((&length, rest)) = data.split_first() else { return };
    let length = usize::from(length).min(rest.len()).min(32);
    let (passphrase, ring) = rest.split_at(length);
    let _ = keyward_mixmaster::parse_secring(ring, passphrase);
});
