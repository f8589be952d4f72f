//! Configuration text: either a clear error (with the file name) or a config that validates.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match gtmd::config::Config::parse(text, "fuzz.toml", Path::new("/nonexistent")) {
        Ok(c) => assert!(!c.listen.is_empty()),
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml")),
    }
});
