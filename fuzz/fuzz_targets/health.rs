//! Thresholds and probe outcomes through the health state machine: see `gtmd::props::health`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gtmd::props::health(data));
