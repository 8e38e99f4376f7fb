//! Admin-socket replies as the CLI reads them.
#![no_main]

use keyward::admin::AdminReply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(reply) = AdminReply::parse(body) {
        let encoded = reply.encode();
        assert!(AdminReply::parse(&encoded).is_ok(), "an encoded reply does not parse");
    }
});
