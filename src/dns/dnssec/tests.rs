use std::sync::Arc;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::RData;

use super::*;
use crate::dns::prepared::AnswerCache;
use crate::dns::snapshot::{ZoneVersion, Zones};
use crate::zone::keys::{generate, load, KeySpec};

const ZONE: &str = "$TTL 60\n@ SOA ns hm 1 2 3 4 300\n NS ns\nns A 192.0.2.1\nwww A 192.0.2.2\n\
*.w TXT \"x\"\nsub NS ns.sub\nns.sub A 192.0.2.3\nx.y A 192.0.2.4\n";

fn signed_snapshot(serial: u32) -> Snapshot {
    let origin = Name::from_ascii("t.").unwrap();
    let mut z =
        crate::zone::parse_zone(ZONE, std::path::Path::new("t.zone"), origin.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = generate(&origin, 13, true, dir.path()).unwrap();
    let spec = KeySpec {
        path: base,
        sign: true,
        ksk: true,
    };
    z.sign_with(load(&origin, &[spec]).unwrap());
    Snapshot {
        zones: Arc::new(Zones::new(vec![z])),
        versions: vec![ZoneVersion {
            serial,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Asks `snap` (fast path first, as the server does) with the DO bit.
fn ask(p: &crate::dns::Publication, name: &str, t: RecordType, fast: bool) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    let mut e = Edns::new();
    e.set_dnssec_ok(true);
    m.set_edns(e);
    let q = m.to_vec().unwrap();
    let mut out = Vec::new();
    let answered = p
        .answers
        .answer(&q, [127, 0, 0, 1].into(), 1232, false, &mut out);
    assert_eq!(answered, fast, "{name} {t}: answered by the prepared path");
    let r = crate::dns::answer(
        p,
        &q,
        [127, 0, 0, 1].into(),
        crate::dns::Transport::Udp,
        &mut out,
    );
    assert!(matches!(r, crate::dns::Answered::One));
    Message::from_vec(&out).unwrap()
}

/// Every RRSIG in `m` verifies against the zone's DNSKEY over the records it covers.
fn verify_all(snap: &Snapshot, m: &Message) -> usize {
    let keys = snap.zones.get(0).unwrap().keys.clone().unwrap();
    let records: Vec<&Record> = m
        .answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .collect();
    let mut n = 0;
    for r in &records {
        let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data else {
            continue;
        };
        let covered: Vec<Record> = records
            .iter()
            .filter(|o| o.name == r.name && o.record_type() == sig.input().type_covered)
            .map(|o| (*o).clone())
            .collect();
        let key = keys
            .keys
            .iter()
            .find(|k| k.tag == sig.input().key_tag)
            .unwrap();
        key.dnskey
            .verify_rrsig(&r.name, DNSClass::IN, sig, covered.iter())
            .unwrap_or_else(|e| panic!("{} {}: {e}", r.name, sig.input().type_covered));
        n += 1;
    }
    n
}

fn nsec(m: &Message) -> (Name, Name, Vec<RecordType>) {
    m.authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => Some((
                r.name.clone(),
                n.next_domain_name().clone(),
                n.type_bit_maps().collect(),
            )),
            _ => None,
        })
        .expect("an NSEC in authority")
}

#[test]
fn a_missing_name_is_noerror_with_an_nsec_at_the_name_that_says_nxname() {
    let p = crate::dns::Publication::new(signed_snapshot(1));
    let m = ask(&p, "nope.t.", RecordType::A, false);
    assert_eq!(m.response_code, ResponseCode::NoError);
    let (owner, next, types) = nsec(&m);
    assert_eq!(
        (owner.to_string(), next.to_string()),
        ("nope.t.".into(), "\\000.nope.t.".into())
    );
    assert_eq!(types, [RecordType::RRSIG, RecordType::NSEC, NXNAME]);
    assert_eq!(verify_all(&p.snap, &m), 2, "SOA and NSEC signed");
}

#[test]
fn nodata_lists_the_types_the_name_has_but_not_the_one_asked() {
    let p = crate::dns::Publication::new(signed_snapshot(1));
    let m = ask(&p, "www.t.", RecordType::TXT, true);
    let (_, _, types) = nsec(&m);
    assert_eq!(types, [RecordType::A, RecordType::RRSIG, RecordType::NSEC]);
    assert_eq!(verify_all(&p.snap, &m), 2);
    // An empty non-terminal has nothing but the NSEC and its signature.
    let m = ask(&p, "y.t.", RecordType::A, true);
    assert_eq!(nsec(&m).2, [RecordType::RRSIG, RecordType::NSEC]);
}

#[test]
fn a_referral_proves_the_delegation_has_no_ds_and_leaves_glue_unsigned() {
    let p = crate::dns::Publication::new(signed_snapshot(1));
    let m = ask(&p, "a.sub.t.", RecordType::A, true);
    assert!(!m.metadata.authoritative);
    let (owner, _, types) = nsec(&m);
    assert_eq!(owner.to_string(), "sub.t.");
    assert_eq!(types, [RecordType::NS, RecordType::RRSIG, RecordType::NSEC]);
    assert_eq!(verify_all(&p.snap, &m), 1, "only the NSEC is signed");
    assert_eq!(m.additionals.len(), 1, "the glue, unsigned");
}

#[test]
fn wildcard_answers_are_signed_as_the_name_asked() {
    let p = crate::dns::Publication::new(signed_snapshot(1));
    let m = ask(&p, "k.w.t.", RecordType::TXT, false);
    let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &m.answers[1].data else {
        panic!("{m}")
    };
    assert_eq!(sig.input().num_labels, 3);
    assert_eq!(verify_all(&p.snap, &m), 1);
}

#[test]
fn prepared_answers_shared_across_publications_carry_the_new_serial_signed() {
    let first = signed_snapshot(1);
    let fixed = AnswerCache::build(&first);
    let mut second = signed_snapshot(7);
    second.zones = first.zones.clone(); // same zones and keys: the fixed part is reused
    let answers = AnswerCache::with_fixed(fixed.fixed().unwrap().clone(), &second);
    let p = crate::dns::Publication {
        snap: second,
        answers,
    };
    let m = ask(&p, "www.t.", RecordType::TXT, true);
    let soa = m
        .authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .unwrap();
    assert_eq!(crate::dns::snapshot::serial_of(soa), Some(7));
    verify_all(&p.snap, &m);
    // Without the DO bit: the same answer, unsigned.
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("www.t.").unwrap(),
        RecordType::A,
    ));
    let mut out = Vec::new();
    assert!(p.answers.answer(
        &q.to_vec().unwrap(),
        [127, 0, 0, 1].into(),
        1232,
        false,
        &mut out
    ));
    assert_eq!(Message::from_vec(&out).unwrap().answers.len(), 1);
}

#[test]
fn an_answer_signed_per_query_name_is_replayed_within_its_publication_only() {
    let publish = |serial| {
        let mut snap = signed_snapshot(serial);
        snap.id = crate::dns::snapshot::next_id();
        crate::dns::Publication::new(snap)
    };
    let p = publish(7);
    for (name, t) in [("nope.t.", RecordType::A), ("a.w.t.", RecordType::TXT)] {
        let first = ask(&p, name, t, false);
        let again = ask(&p, name, t, true);
        assert_eq!(first.answers, again.answers, "{name}");
        assert_eq!(first.authorities, again.authorities, "{name}");
        assert!(verify_all(&p, &again) >= 1, "{name}: {again}");
    }
    // A new publication (here with a new serial) makes its own.
    let p = publish(8);
    let m = ask(&p, "nope.t.", RecordType::A, false);
    let serial = m.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    });
    assert_eq!(serial, Some(8));
    // A snapshot without an id keeps nothing.
    let p = crate::dns::Publication::new(signed_snapshot(9));
    ask(&p, "nope.t.", RecordType::A, false);
    ask(&p, "nope.t.", RecordType::A, false);
}
