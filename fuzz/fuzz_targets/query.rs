//! Raw query bytes through the fast path and the general path: see `gtmd::props::query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gtmd::props::query(data));
