//! The TOML configuration file.
#![no_main]

use keyward::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    let text = String::from_utf8_lossy(file);
    if let Err(error) = Config::parse(&text) {
        let _ = error.to_string();
    }
});
