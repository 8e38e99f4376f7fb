//! Admin-socket requests as the daemon reads them.
#![no_main]

use keyward::admin::AdminRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(request) = AdminRequest::parse(body) {
        // What parses must encode again.
        let _ = request.encode();
    }
});
