//! Raw query bytes through the real request path. Properties: no panic; every response
//! re-parses, carries the query's ID, and fits the UDP limit or has TC set.
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
        Snapshot { zones: Arc::new(Zones::new(zones)), ready: true, ..Default::default() }
    })
}

fuzz_target!(|data: &[u8]| {
    let settings = WireSettings::default();
    if let Outcome::Reply(r) = handle(snapshot(), data, [127, 0, 0, 1].into(), Transport::Udp, &settings) {
        let m = Message::from_vec(&r).expect("every response re-parses");
        assert_eq!(&r[..2], &data[..2], "the response carries the query's ID");
        assert!(r.len() <= settings.udp_payload as usize || m.truncation);
    }
});
