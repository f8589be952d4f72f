//! Malformed input through the real request path, on stable Rust: a deterministic stream of
//! mutated and random queries. Properties: no panic; every response re-parses, carries the
//! query's ID, and fits the UDP limit (or has TC set).

use std::path::Path;
use std::sync::Arc;

use gtmd::dns::snapshot::{Snapshot, Zones};
use gtmd::dns::{handle, Outcome, Transport, WireSettings};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seeds() -> Vec<Vec<u8>> {
    let names = [
        "www.example.test.",
        "big.example.test.",
        "x.wild.example.test.",
        "foo.child.example.test.",
        "example.org.",
    ];
    let types = [
        RecordType::A,
        RecordType::TXT,
        RecordType::ANY,
        RecordType::AXFR,
        RecordType::NS,
    ];
    let mut v = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(n).unwrap(), types[i]));
        v.push(m.to_vec().unwrap());
        m.set_edns(Edns::new());
        v.push(m.to_vec().unwrap());
    }
    v
}

#[test]
fn mutated_queries_never_panic_and_responses_are_well_formed() {
    let zones = gtmd::zone::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("zones")).unwrap();
    let snap = Snapshot {
        zones: Arc::new(Zones::new(zones)),
        ready: true,
        ..Default::default()
    };
    let settings = WireSettings::default();
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(0x67746d64);
    let (mut replies, mut drops) = (0u32, 0u32);
    for i in 0..60_000u32 {
        let mut q = seeds[i as usize % seeds.len()].clone();
        match i % 4 {
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..q.len());
                    q[at] = rng.random();
                }
            }
            1 => q.truncate(rng.random_range(0..q.len())),
            2 => {
                let extra: Vec<u8> = (0..rng.random_range(1..40)).map(|_| rng.random()).collect();
                q.extend(extra);
            }
            _ => q = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            match handle(&snap, &q, [127, 0, 0, 1].into(), transport) {
                Outcome::Drop => drops += 1,
                Outcome::Reply(r) => {
                    replies += 1;
                    let m = Message::from_vec(&r)
                        .unwrap_or_else(|e| panic!("response to {q:02x?} does not parse: {e}"));
                    assert_eq!(&r[..2], &q[..2], "the ID is the query's");
                    if transport == Transport::Udp {
                        assert!(r.len() <= settings.udp_payload as usize || m.truncation);
                    }
                }
                Outcome::Transfer(t) => {
                    for r in t.messages(&snap) {
                        Message::from_vec(&r).unwrap();
                    }
                }
            }
        }
    }
    assert!(
        replies > 10_000 && drops > 1_000,
        "{replies} replies, {drops} drops: the mix exercises both"
    );
}
