//! Configuration text: see `gtmd::props::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gtmd::props::config(data));
