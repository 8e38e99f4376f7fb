//! Bodies of the ssh-agent extensions Keyward parses itself:
//! `session-bind@openssh.com` and `batch@keyward` (requests and replies).
#![no_main]

use keyward::agent::extensions::{parse_batch_body, parse_batch_reply};
use keyward::agent::session_bind::SessionBind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SessionBind::parse(data);
    let _ = parse_batch_body(data);
    let _ = parse_batch_reply(data);
});
