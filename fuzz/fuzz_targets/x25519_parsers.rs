//! The X25519 and age parsers: extension request bodies, age identity
//! files, the plugin identity line, stanza arguments and public-key blobs.
#![no_main]

use keyward::agent::x25519::{parse_agree_reply, parse_unwrap_reply, AgreeRequest, UnwrapRequest};
use keyward::x25519;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = UnwrapRequest::parse(data);
    let _ = AgreeRequest::parse(data);
    let _ = parse_unwrap_reply(data);
    let _ = parse_agree_reply(data, 3);
    let _ = x25519::X25519Public::from_blob(data);
    let _ = x25519::parse_plugin_identity_payload(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = x25519::parse_age_identity_file(text);
        let _ = x25519::parse_plugin_identity(text);
    }

    // A stanza: the first line holds the arguments, the rest is the body.
    let split = data.iter().position(|&byte| byte == b'\n').unwrap_or(data.len());
    if let Ok(line) = std::str::from_utf8(&data[..split]) {
        let args: Vec<String> = line.split(' ').map(str::to_owned).collect();
        let body = data.get(split + 1..).unwrap_or_default();
        let _ = x25519::parse_stanza(&args, body);
    }
});
