use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::dns::snapshot::{serial_of, Bound, Choice, Delta, Snapshot, ZoneVersion, Zones};
use crate::dns::{answer, handle, Answered, Outcome, Publication, Transport, WireSettings};

const ZONE: &str = "$TTL 60\n@ SOA ns hm 7 2 3 4 300\n NS ns\nns A 192.0.2.1\napp TXT \"x\"\n";

fn a(o: [u8; 4], ttl: u32) -> Record {
    Record::from_rdata(
        Name::from_ascii("app.t.").unwrap(),
        ttl,
        RData::A(A(o.into())),
    )
}

/// Zone `t.` with app.t. bound to 192.0.2.10 and .11 (weighted, one set each), at serial
/// 1001 whose journal holds the change from 1000 (.12 left, .11 came).
fn snapshot() -> Snapshot {
    let origin = Name::from_ascii("t.").unwrap();
    let z = crate::zone::parse_zone(ZONE, std::path::Path::new("t.zone"), origin).unwrap();
    let b = Bound {
        a: Choice::weighted(vec![
            (vec![a([192, 0, 2, 10], 30)], 0.5),
            (vec![a([192, 0, 2, 11], 30)], 0.5),
        ]),
        ..Default::default()
    };
    let live = vec![a([192, 0, 2, 10], 30), a([192, 0, 2, 11], 30)];
    Snapshot {
        zones: Arc::new(Zones::new(vec![z])),
        bound: [(
            hickory_proto::rr::LowerName::new(&"app.t.".parse().unwrap()),
            b,
        )]
        .into(),
        wire: Arc::new(WireSettings {
            allow_transfer: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        }),
        versions: vec![ZoneVersion {
            serial: 1001,
            live: Arc::new(live),
            journal: Arc::new(vec![Arc::new(Delta {
                from: 1000,
                to: 1001,
                from_soa: soa(1000),
                to_soa: soa(1001),
                removed: vec![a([192, 0, 2, 12], 30)],
                added: vec![a([192, 0, 2, 11], 30)],
            })]),
        }],
        ..Default::default()
    }
}

fn soa(serial: u32) -> Record {
    let s = SOA::new(
        "ns.t.".parse().unwrap(),
        "hm.t.".parse().unwrap(),
        serial,
        2,
        3,
        4,
        300,
    );
    Record::from_rdata("t.".parse().unwrap(), 60, RData::SOA(s))
}

fn local() -> IpAddr {
    [127, 0, 0, 1].into()
}

/// The records of every message of a transfer of `q`.
fn transfer(snap: &Snapshot, q: &Message) -> Vec<Record> {
    match handle(snap, &q.to_vec().unwrap(), local(), Transport::Tcp) {
        Outcome::Transfer(t) => t
            .messages(snap)
            .flat_map(|m| Message::from_vec(&m).unwrap().answers)
            .collect(),
        Outcome::Reply(b) => Message::from_vec(&b).unwrap().answers,
        o => panic!("{o:?}"),
    }
}

fn ixfr(from: u32) -> Message {
    let mut q = Message::query();
    q.add_query(Query::query("t.".parse().unwrap(), RecordType::IXFR));
    let soa = SOA::new(
        "ns.t.".parse().unwrap(),
        "hm.t.".parse().unwrap(),
        from,
        2,
        3,
        4,
        300,
    );
    q.add_authority(Record::from_rdata(
        "t.".parse().unwrap(),
        60,
        RData::SOA(soa),
    ));
    q
}

#[test]
fn an_axfr_carries_every_eligible_member_under_the_current_serial() {
    let snap = snapshot();
    let mut q = Message::query();
    q.add_query(Query::query("t.".parse().unwrap(), RecordType::AXFR));
    let rs = transfer(&snap, &q);
    assert_eq!(serial_of(&rs[0]), Some(1001));
    assert_eq!(serial_of(rs.last().unwrap()), Some(1001));
    let app: Vec<String> = rs
        .iter()
        .filter(|r| r.record_type() == RecordType::A && r.name.to_ascii() == "app.t.")
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(app, ["192.0.2.10", "192.0.2.11"]);
    assert!(
        rs.iter().any(|r| r.record_type() == RecordType::TXT),
        "the file's records too"
    );
}

#[test]
fn an_ixfr_answers_differences_or_the_soa_or_the_whole_zone() {
    let snap = snapshot();
    // From 1000: SOA 1001, SOA 1000, removed, SOA 1001, added, SOA 1001.
    let rs = transfer(&snap, &ixfr(1000));
    let serials: Vec<Option<u32>> = rs.iter().map(serial_of).collect();
    assert_eq!(
        serials,
        [Some(1001), Some(1000), None, Some(1001), None, Some(1001)]
    );
    assert_eq!(rs[2].data.to_string(), "192.0.2.12");
    assert_eq!(rs[4].data.to_string(), "192.0.2.11");
    // Up to date (or ahead): the current SOA alone.
    for theirs in [1001, 1005] {
        let rs = transfer(&snap, &ixfr(theirs));
        assert_eq!(rs.len(), 1);
        assert_eq!(serial_of(&rs[0]), Some(1001));
    }
    let log = snap.secondaries.get();
    assert_eq!(log["t."].transfers[&local()].kind, "IXFR-current");
    // Not in the journal: the whole zone, AXFR-style.
    let rs = transfer(&snap, &ixfr(900));
    assert!(rs.len() > 5 && serial_of(&rs[1]).is_none(), "{rs:?}");
    assert_eq!(
        snap.secondaries.get()["t."].transfers[&local()].kind,
        "IXFR-AXFR"
    );
    // Over UDP: the current SOA, which sends the client to TCP.
    let out = handle(
        &snap,
        &ixfr(1000).to_vec().unwrap(),
        local(),
        Transport::Udp,
    );
    let Outcome::Reply(b) = out else { panic!() };
    let m = Message::from_vec(&b).unwrap();
    assert_eq!((m.answers.len(), serial_of(&m.answers[0])), (1, Some(1001)));
}

#[test]
fn a_transfer_from_a_client_not_allowed_is_refused() {
    let snap = snapshot();
    let q = ixfr(1000).to_vec().unwrap();
    let Outcome::Reply(b) = handle(&snap, &q, [192, 0, 2, 9].into(), Transport::Tcp) else {
        panic!()
    };
    assert_eq!(
        Message::from_vec(&b).unwrap().response_code,
        ResponseCode::Refused
    );
}

#[test]
fn answers_carry_the_publications_serial_on_both_paths() {
    // The prepared answers that do not depend on health were built at an older serial and
    // are shared with the new publication, as the engine shares them.
    let mut old = snapshot();
    old.versions[0].serial = 1000;
    let old = Publication::new(old);
    let snap = snapshot();
    let fixed = old.answers.fixed().unwrap().clone();
    let p = Publication {
        answers: crate::dns::prepared::AnswerCache::with_fixed(fixed, &snap),
        snap,
    };
    let ask = |name: &str, t: RecordType, fast: bool| {
        let mut q = Message::query();
        q.add_query(Query::query(name.parse().unwrap(), t));
        let q = q.to_vec().unwrap();
        let mut out = Vec::new();
        if fast {
            assert!(matches!(
                answer(&p, &q, local(), Transport::Udp, &mut out),
                Answered::One
            ));
        } else {
            let Outcome::Reply(b) = handle(&p, &q, local(), Transport::Udp) else {
                panic!()
            };
            out = b;
        }
        let m = Message::from_vec(&out).unwrap();
        m.answers.iter().chain(&m.authorities).find_map(serial_of)
    };
    for fast in [true, false] {
        assert_eq!(
            ask("t.", RecordType::SOA, fast),
            Some(1001),
            "fast path: {fast}"
        );
        assert_eq!(
            ask("nx.t.", RecordType::A, fast),
            Some(1001),
            "NXDOMAIN, fast: {fast}"
        );
        assert_eq!(
            ask("ns.t.", RecordType::MX, fast),
            Some(1001),
            "NODATA, fast: {fast}"
        );
    }
}

#[test]
fn a_name_set_to_fail_is_left_out_and_topology_gives_the_default_answer() {
    let mut c = Choice::fixed(vec![a([192, 0, 2, 10], 30)]);
    c.servfail = true;
    assert!(c.transferred().is_empty());
    // Two client groups: the first (unmatched clients) answers .10, the second .11.
    let c = Choice::grouped(
        vec![
            vec![(vec![a([192, 0, 2, 10], 30)], 1.0)],
            vec![(vec![a([192, 0, 2, 11], 30)], 1.0)],
        ],
        None,
    );
    let t: Vec<String> = c.transferred().iter().map(|r| r.data.to_string()).collect();
    assert_eq!(t, ["192.0.2.10"]);
}
