//! Classification of the data a client asks to sign, and the purpose
//! checks that follow it.
#![no_main]

use keyward::keys::signing::{purpose_allows, SignedData};
use keyward::keys::Purpose;
use libfuzzer_sys::fuzz_target;

const PURPOSES: [Purpose; 7] =
    [Purpose::Sign, Purpose::SshAuth, Purpose::SshHost, Purpose::Sshsig, Purpose::Decrypt, Purpose::Agree, Purpose::Mixmaster];

fuzz_target!(|data: &[u8]| {
    let classified = SignedData::classify(data);
    let _ = classified.operation();
    let blob = keyward_fuzz::fixture().ed25519_blob.as_slice();
    for purpose in PURPOSES {
        let _ = purpose_allows(purpose, &classified, blob);
        let _ = purpose_allows(purpose, &classified, data);
    }
});
