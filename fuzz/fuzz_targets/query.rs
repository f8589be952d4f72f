//! Raw query bytes through the real request path, fast path and general path. Properties: no
//! panic; every response re-parses, carries the query's ID, and fits the UDP limit or has TC.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use gtmd::dns::{handle, Outcome, Transport, WireSettings};
use gtmd::snapshot::{Snapshot, Zones};
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static S: OnceLock<Snapshot> = OnceLock::new();
    S.get_or_init(|| {
        let zones = gtmd::zone::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../zones"))).unwrap();
        Snapshot { zones: Arc::new(Zones::new(zones)), ready: true, ..Default::default() }.prepared()
    })
}

fn check(query: &[u8], response: &[u8], limit: usize) {
    let m = Message::from_vec(response).expect("every response re-parses");
    assert_eq!(&response[..2], &query[..2], "the response carries the query's ID");
    assert!(response.len() <= limit || m.truncation, "UDP response over the limit without TC");
}

fuzz_target!(|data: &[u8]| {
    let settings = WireSettings::default();
    let limit = settings.udp_payload as usize;
    let mut out = Vec::new();
    if snapshot().fast.answer(data, [127, 0, 0, 1].into(), settings.udp_payload, false, &mut out) {
        check(data, &out, limit);
    }
    if let Outcome::Reply(r) = handle(snapshot(), data, [127, 0, 0, 1].into(), Transport::Udp, &settings) {
        check(data, &r, limit);
    }
});
