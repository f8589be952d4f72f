//! Zone-file text: see `gtmd::props::zone`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gtmd::props::zone(data));
