//! PKCS#8 and traditional OpenSSL key files given to `keyward import`.
//!
//! No passphrase, for the same reason as the OpenSSH target: encrypted
//! files choose their own KDF cost.
#![no_main]

use keyward::keys::import;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    if let Err(error) = import::pkcs8(file, None) {
        let _ = error.to_string();
    }
});
