//! Micro-benchmark of the query paths: bytes in, bytes out, for a query mix over the sample
//! zone, through the fast path (prepared answers) and the general path. Run with
//! `cargo bench --bench query`. It prints nanoseconds per query; compare figures from the same
//! machine and run only.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gtmd::dns::{handle, Outcome, Transport, WireSettings};
use gtmd::snapshot::{Snapshot, Zones};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

fn main() {
    let zones =
        gtmd::zone::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/zones"))).unwrap();
    let snap = Snapshot {
        zones: Arc::new(Zones::new(zones)),
        ready: true,
        ..Default::default()
    }
    .prepared();
    let mix = [
        ("www.example.test.", RecordType::A),
        ("www.example.test.", RecordType::AAAA),
        ("nx.example.test.", RecordType::A),
        ("example.test.", RecordType::MX),
        ("example.test.", RecordType::TXT),
        ("alias.example.test.", RecordType::A),
        ("x.wild.example.test.", RecordType::A),
        ("foo.child.example.test.", RecordType::A),
    ];
    let queries: Vec<Vec<u8>> = mix
        .iter()
        .map(|(n, t)| {
            let mut m = Message::query();
            m.add_query(Query::query(Name::from_ascii(n).unwrap(), *t));
            m.to_vec().unwrap()
        })
        .collect();
    let settings = WireSettings::default();
    let client = [127, 0, 0, 1].into();
    println!(
        "{:<28} {:>6} {:>12} {:>12}",
        "name", "type", "fast ns", "general ns"
    );
    let mut out = Vec::with_capacity(1232);
    for (label, q) in mix.iter().zip(&queries) {
        let n = 200_000;
        let start = Instant::now();
        for _ in 0..n {
            assert!(snap
                .fast
                .answer(black_box(q), settings.udp_payload, false, &mut out));
            black_box(&out);
        }
        let fast = start.elapsed().as_nanos() as f64 / n as f64;
        let start = Instant::now();
        for _ in 0..n {
            let out = handle(&snap, black_box(q), client, Transport::Udp, &settings);
            assert!(matches!(out, Outcome::Reply(_)));
            black_box(out);
        }
        let general = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{:<28} {:>6} {:>12.0} {:>12.0}",
            label.0,
            label.1.to_string(),
            fast,
            general
        );
    }
}
