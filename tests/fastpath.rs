//! The fast path gives exactly the general path's answers: every name of the sample zone
//! (plus a pool-bound name) with many types, missing names below every name, mixed case, and
//! EDNS variants, each answered both ways and compared.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use gtmd::dns::snapshot::{Bound, Snapshot, Zones};
use gtmd::dns::{handle, Outcome, Publication, Transport, WireSettings};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The pool name app.example.test. answering `v4` (and one IPv6 address).
fn snapshot_with(zones: Arc<Zones>, v4: &[&str]) -> Snapshot {
    let app = Name::from_ascii("app.example.test.").unwrap();
    let bound = Bound::fixed(
        v4.iter()
            .map(|a| Record::from_rdata(app.clone(), 30, RData::A(A(a.parse().unwrap()))))
            .collect(),
        vec![Record::from_rdata(
            app.clone(),
            30,
            RData::AAAA(AAAA("2001:db8::10".parse().unwrap())),
        )],
    );
    Snapshot {
        zones,
        bound: [(LowerName::new(&app), bound)].into_iter().collect(),
        ready: true,
        ..Default::default()
    }
}

/// The sample zone plus names whose answers hold the pool's records.
fn zones() -> Arc<Zones> {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.test.zone"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("example.test.zone"),
        text + "toapp CNAME app\nmxapp MX 10 app\n",
    )
    .unwrap();
    let mut zones = gtmd::zone::load_dir(dir.path()).unwrap();
    zones[0].ensure_node(&LowerName::new(
        &Name::from_ascii("app.example.test.").unwrap(),
    ));
    Arc::new(Zones::new(zones))
}

fn snapshot() -> Publication {
    Publication::new(snapshot_with(zones(), &["192.0.2.10", "192.0.2.20"]))
}

/// Each record as text with names lowercased: compression may carry the question's case.
fn norm(m: &Message) -> String {
    let sec = |rs: &[Record]| {
        rs.iter()
            .map(|r| r.to_string().to_lowercase())
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "{:?}\n{:?}\n{:?}\n{}\n--\n{}\n--\n{}",
        m.metadata,
        m.queries,
        m.edns,
        sec(&m.answers),
        sec(&m.authorities),
        sec(&m.additionals)
    )
}

fn mixed_case(name: &str, rng: &mut StdRng) -> String {
    name.chars()
        .map(|c| {
            if rng.random_bool(0.5) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn fast_path_answers_equal_the_general_path() {
    let (hits, total) = compare_all(&snapshot());
    eprintln!("fast path answered {hits} of {total} queries");
    assert!(
        hits * 10 >= total * 9,
        "fast path answered only {hits} of {total}"
    );
}

#[test]
fn after_a_health_change_live_answers_are_rebuilt_and_the_rest_is_shared() {
    let zones = zones();
    let before = Publication::new(snapshot_with(zones.clone(), &["192.0.2.10", "192.0.2.20"]));
    let after = snapshot_with(zones, &["192.0.2.20"]);
    let fixed = before.answers.fixed().unwrap().clone();
    let answers = gtmd::dns::prepared::AnswerCache::with_fixed(fixed.clone(), &after);
    let after = Publication {
        snap: after,
        answers,
    };
    assert!(Arc::ptr_eq(&fixed, after.answers.fixed().unwrap()));
    let (hits, total) = compare_all(&after);
    assert!(
        hits * 10 >= total * 9,
        "fast path answered only {hits} of {total}"
    );
    // The names whose answers hold pool records follow the new health.
    let mut out = Vec::new();
    for (name, t, want) in [
        ("app.example.test.", RecordType::A, 1),
        ("toapp.example.test.", RecordType::A, 2),
        ("mxapp.example.test.", RecordType::MX, 1),
    ] {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        assert!(
            after.answers.answer(
                &m.to_vec().unwrap(),
                [127, 0, 0, 1].into(),
                1232,
                false,
                &mut out
            ),
            "{name}"
        );
        let r = Message::from_vec(&out).unwrap();
        let v4: Vec<String> = r
            .answers
            .iter()
            .chain(&r.additionals)
            .filter_map(|r| r.data.ip_addr())
            .filter(|a| a.is_ipv4())
            .map(|a| a.to_string())
            .collect();
        assert_eq!(v4, vec!["192.0.2.20"], "{name}");
        assert_eq!(r.answers.len(), want, "{name}");
    }
}

/// Answers a broad set of queries both ways and compares; returns (fast answers, queries).
fn compare_all(snap: &Publication) -> (usize, usize) {
    let settings = WireSettings::default();
    let client: IpAddr = [127, 0, 0, 1].into();
    let mut rng = StdRng::seed_from_u64(7);
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::NS,
        RecordType::MX,
        RecordType::TXT,
        RecordType::SOA,
        RecordType::CNAME,
        RecordType::SRV,
        RecordType::CAA,
        RecordType::PTR,
        RecordType::DS,
        RecordType::ANY,
        RecordType::HTTPS,
        RecordType::TLSA,
        RecordType::NAPTR,
        RecordType::Unknown(999),
    ];
    let mut names: Vec<String> = snap
        .zones
        .iter()
        .flat_map(|z| z.nodes.keys().map(|n| n.to_string()))
        .collect();
    names.sort();
    let mut qnames = Vec::new();
    for n in &names {
        // Below a wildcard too: it is their closest encloser, so they are NXDOMAIN.
        qnames.push(n.clone());
        qnames.push(format!("zz.{n}"));
        qnames.push(format!("a.b.{n}"));
    }
    qnames.extend(["example.org.".into(), "test.".into(), ".".into()]);
    let (mut total, mut fast_hits) = (0, 0);
    let mut out = Vec::new();
    for qn in &qnames {
        for &t in &types {
            for variant in 0..6 {
                let name = if variant == 1 {
                    mixed_case(qn, &mut rng)
                } else {
                    qn.clone()
                };
                let mut m = Message::query();
                m.add_query(Query::query(Name::from_ascii(&name).unwrap(), t));
                m.metadata.recursion_desired = variant % 2 == 0;
                if variant >= 2 {
                    let mut e = Edns::new();
                    e.set_max_payload([1232, 512, 4096, 1232][variant - 2]);
                    e.set_dnssec_ok(variant == 3);
                    if variant == 4 {
                        e.options_mut()
                            .insert(EdnsOption::Unknown(65001, vec![1, 2, 3]));
                    }
                    if variant == 5 {
                        let subnet = ClientSubnet::new([198, 51, 100, 0].into(), 24, 0);
                        e.options_mut().insert(EdnsOption::Subnet(subnet));
                    }
                    m.set_edns(e);
                }
                let q = m.to_vec().unwrap();
                for tcp in [false, true] {
                    total += 1;
                    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                    let Outcome::Reply(general) = handle(snap, &q, client, transport) else {
                        panic!("general path did not reply to {name} {t}");
                    };
                    if !snap
                        .answers
                        .answer(&q, client, settings.udp_payload, tcp, &mut out)
                    {
                        continue;
                    }
                    fast_hits += 1;
                    let (g, f) = (
                        Message::from_vec(&general).unwrap(),
                        Message::from_vec(&out).unwrap(),
                    );
                    assert_eq!(norm(&f), norm(&g), "{name} {t} variant {variant} tcp {tcp}");
                    if !tcp {
                        assert!(out.len() <= settings.udp_payload as usize);
                    }
                }
            }
        }
    }
    (fast_hits, total)
}

/// A topology name answers by client subnet; with one answer per client group both paths
/// are deterministic, so they must agree exactly, ECS scope included, for clients given by
/// ECS (both families, several prefix lengths, source 0) and by source address.
#[test]
fn topology_answers_and_scopes_agree_between_the_paths() {
    use gtmd::dns::snapshot::Choice;
    use gtmd::steer::topology::Table;
    let app = Name::from_ascii("app.example.test.").unwrap();
    let a = |ip: &str| Record::from_rdata(app.clone(), 30, RData::A(A(ip.parse().unwrap())));
    let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<_>>();
    let table = Table::new(&[
        nets(&["198.51.100.0/24", "2001:db8:1::/48"]),
        nets(&["198.51.0.0/16", "127.0.0.0/8"]),
    ]);
    let choice = Choice::grouped(
        vec![
            vec![(vec![a("192.0.2.1")], 1.0)],
            vec![(vec![a("192.0.2.2")], 1.0)],
            vec![(vec![a("192.0.2.3")], 1.0)],
        ],
        Some(Arc::new(table)),
    );
    let mut bound = Bound::fixed(Vec::new(), Vec::new());
    bound.a = choice;
    let snap = Publication::new(Snapshot {
        zones: zones(),
        bound: [(LowerName::new(&app), bound)].into_iter().collect(),
        ready: true,
        ..Default::default()
    });
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let clients: [(&str, Option<u8>); 9] = [
        ("198.51.100.0", Some(24)),
        ("198.51.7.0", Some(24)),
        ("198.51.0.0", Some(16)),
        ("198.0.0.0", Some(8)),
        ("192.0.2.0", Some(24)),
        ("2001:db8:1::", Some(48)),
        ("2001:db8:2::", Some(48)),
        ("0.0.0.0", Some(0)),
        ("127.0.0.1", None),
    ];
    for (addr, source) in clients {
        for name in [
            "app.example.test.",
            "toapp.example.test.",
            "mxapp.example.test.",
        ] {
            let t = if name.starts_with("mx") {
                RecordType::MX
            } else {
                RecordType::A
            };
            let mut m = Message::query();
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
            let mut e = Edns::new();
            if let Some(s) = source {
                let subnet = ClientSubnet::new(addr.parse().unwrap(), s, 0);
                e.options_mut().insert(EdnsOption::Subnet(subnet));
            }
            m.set_edns(e);
            let q = m.to_vec().unwrap();
            let src: IpAddr = if source.is_none() {
                addr.parse().unwrap()
            } else {
                [10, 9, 9, 9].into()
            };
            let Outcome::Reply(general) = handle(&snap, &q, src, Transport::Udp) else {
                panic!("no reply");
            };
            assert!(
                snap.answers.answer(&q, src, 1232, false, &mut out),
                "{addr} {name}"
            );
            let (g, f) = (
                Message::from_vec(&general).unwrap(),
                Message::from_vec(&out).unwrap(),
            );
            assert_eq!(norm(&f), norm(&g), "{addr}/{source:?} {name}");
            seen.insert(format!(
                "{:?}",
                g.answers
                    .iter()
                    .chain(&g.additionals)
                    .filter_map(|r| r.data.ip_addr())
                    .collect::<Vec<_>>()
            ));
        }
    }
    // Every group was reached.
    assert!(seen.len() >= 3, "{seen:?}");
}
