//! ssh-agent frame bodies as the service socket reads them.
#![no_main]

use keyward::agent::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = Request::parse(body);
});
