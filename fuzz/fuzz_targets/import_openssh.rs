//! OpenSSH private key files given to `keyward import`.
//!
//! No passphrase: with one, the file's bcrypt rounds (chosen by the file)
//! would make single inputs take seconds.
#![no_main]

use keyward::keys::import;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    if let Err(error) = import::openssh(file, None) {
        let _ = error.to_string();
    }
});
