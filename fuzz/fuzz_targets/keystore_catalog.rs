//! The keystore file, read without the passphrase (`keyward list` and the
//! sealed daemon read it this way).
#![no_main]

use keyward::keystore::parse_catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    let _ = parse_catalog(file);
});
