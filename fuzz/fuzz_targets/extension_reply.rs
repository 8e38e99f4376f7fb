//! Replies to Keyward's extensions as a client reads them: the envelope
//! (`parse_reply`) and the `status@keyward` and `list@keyward` bodies.
#![no_main]

use keyward::agent::extensions::{self, parse_list_body, parse_reply, parse_status_body};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = [extensions::QUERY, extensions::STATUS, extensions::LIST, extensions::SESSION_BIND];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, reply)) = data.split_first() else { return };
    let name = NAMES[usize::from(selector) % NAMES.len()];
    if let Ok(Ok(body)) = parse_reply(name, reply) {
        match name {
            extensions::STATUS => {
                let _ = parse_status_body(body);
            }
            extensions::LIST => {
                let _ = parse_list_body(body);
            }
            _ => {}
        }
    }
    // The bodies alone, so the fuzzer need not build an envelope first.
    let _ = parse_status_body(reply);
    let _ = parse_list_body(reply);
});
