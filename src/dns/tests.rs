use super::*;

fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap()
}

fn run(q: &[u8]) -> Option<Message> {
    let snap = Snapshot::default();
    match handle(&snap, q, [127, 0, 0, 1].into(), Transport::Udp) {
        Outcome::Reply(b) => Some(Message::from_vec(&b).unwrap()),
        _ => None,
    }
}

#[test]
fn short_packets_and_responses_are_dropped() {
    assert!(run(&[0, 1, 2]).is_none());
    let mut m = Message::query();
    m.metadata.message_type = MessageType::Response;
    assert!(run(&bytes(&m)).is_none());
}

#[test]
fn no_question_is_formerr_and_bad_opcode_is_notimp() {
    let m = Message::query();
    assert_eq!(
        run(&bytes(&m)).unwrap().response_code,
        ResponseCode::FormErr
    );
    let mut m = Message::query();
    m.metadata.op_code = OpCode::Status;
    m.add_query(Query::query("a.".parse().unwrap(), RecordType::A));
    assert_eq!(run(&bytes(&m)).unwrap().response_code, ResponseCode::NotImp);
}

#[test]
fn edns_version_one_is_badvers() {
    let mut m = Message::query();
    m.add_query(Query::query("a.".parse().unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_version(1);
    m.set_edns(e);
    let r = run(&bytes(&m)).unwrap();
    assert_eq!(u16::from(r.response_code), 16, "BADVERS");
    assert_eq!(r.edns.unwrap().version(), 0);
}

fn zone_snapshot(text: &str) -> Snapshot {
    let origin = hickory_proto::rr::Name::from_ascii("t.").unwrap();
    let z = crate::zone::parse_zone(text, std::path::Path::new("t.zone"), origin).unwrap();
    Snapshot {
        zones: std::sync::Arc::new(crate::dns::snapshot::Zones::new(vec![z])),
        ..Default::default()
    }
}

const HEAD: &str = "$TTL 60\n@ SOA ns hm 1 2 3 4 300\n NS ns\nns A 192.0.2.1\n";

#[test]
fn a_transfer_of_large_records_splits_into_whole_messages() {
    let big = format!("\"{}\"", "x".repeat(250));
    let mut text = HEAD.to_string();
    for i in 0..300 {
        text += &format!("t{i} TXT {}\n", [big.as_str(); 8].join(" "));
    }
    let mut snap = zone_snapshot(&text);
    snap.wire = std::sync::Arc::new(WireSettings {
        allow_transfer: vec!["127.0.0.0/8".parse().unwrap()],
        ..Default::default()
    });
    let q = Message::query()
        .add_query(Query::query("t.".parse().unwrap(), RecordType::AXFR))
        .to_owned();
    // A v4-mapped peer is judged as the IPv4 address it is.
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    let Outcome::Transfer(t) = handle(&snap, &bytes(&q), mapped, Transport::Tcp) else {
        panic!("no transfer for an allowed client");
    };
    let ms: Vec<Vec<u8>> = t.messages(&snap).collect();
    let mut txt = 0;
    for m in &ms {
        assert!(m.len() <= 65_535, "a {}-byte message", m.len());
        let m = Message::from_vec(m).unwrap();
        assert!(!m.truncation);
        txt += m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::TXT)
            .count();
    }
    assert_eq!(txt, 300, "every record arrives, in {} messages", ms.len());
    assert!(ms.len() >= 10, "{} messages for 600 KB", ms.len());
}

#[test]
fn an_ecs_address_longer_than_its_source_prefix_is_formerr() {
    let snap = zone_snapshot(&format!("{HEAD}www A 192.0.2.80\n"));
    let mut query = Message::query();
    query.add_query(Query::query("www.t.".parse().unwrap(), RecordType::A));
    query.set_edns(Edns::new());
    let good = bytes(&query);
    // OPT with an ECS option: family 1, SOURCE /24, SCOPE 0, and 3 or 4 address octets.
    let with_ecs = |octets: &[u8]| {
        let mut b = good.clone();
        let opt = b.len() - 11;
        let mut option = vec![0, 8, 0, 4 + octets.len() as u8, 0, 1, 24, 0];
        option.extend_from_slice(octets);
        b[opt + 10] = option.len() as u8;
        b.extend_from_slice(&option);
        b
    };
    let ask = |q: &[u8]| match handle(&snap, q, [127, 0, 0, 1].into(), Transport::Udp) {
        Outcome::Reply(b) => Message::from_vec(&b).unwrap(),
        o => panic!("{o:?}"),
    };
    let ok = ask(&with_ecs(&[198, 51, 100]));
    assert_eq!(ok.response_code, ResponseCode::NoError);
    assert_eq!(ok.answers.len(), 1);
    let long = ask(&with_ecs(&[198, 51, 100, 7]));
    assert_eq!(
        long.response_code,
        ResponseCode::FormErr,
        "RFC 7871 section 6"
    );
    assert!(long.edns.is_some());
    // The fast path leaves it to this path too.
    let mut out = Vec::new();
    assert!(!crate::dns::prepared::AnswerCache::build(&snap).answer(
        &with_ecs(&[198, 51, 100, 7]),
        [127, 0, 0, 1].into(),
        1232,
        false,
        &mut out
    ));
}

#[test]
fn a_signed_answer_too_big_for_udp_goes_out_truncated_and_signed() {
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::TSigner;
    // One TXT answer of about 460 bytes: it fits 512 alone, not with a TSIG record.
    let txt = format!("\"{}\" \"{}\"", "x".repeat(220), "y".repeat(220));
    let mut snap = zone_snapshot(&format!("{HEAD}big TXT {txt}\n"));
    let key = TSigner::new(
        b"0123456789abcdef0123456789abcdef".to_vec(),
        TsigAlgorithm::HmacSha256,
        "k.".parse().unwrap(),
        300,
    )
    .unwrap();
    snap.wire = std::sync::Arc::new(WireSettings {
        transfer: std::sync::Arc::new(crate::config::TransferSettings {
            keys: vec![key.clone()],
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut q = Message::query();
    q.add_query(Query::query("big.t.".parse().unwrap(), RecordType::TXT));
    let now = crate::base::state::now_secs();
    q.finalize(&key, now).unwrap();
    let mac = q.signature().unwrap().data.mac.clone();
    let ask = |t| match handle(&snap, &bytes(&q), [127, 0, 0, 1].into(), t) {
        Outcome::Reply(b) => b,
        o => panic!("{o:?}"),
    };
    let udp = ask(Transport::Udp);
    assert!(udp.len() <= 512, "{} bytes over UDP", udp.len());
    let m = Message::from_vec(&udp).unwrap();
    assert!(m.truncation && m.answers.is_empty());
    key.verify_message_byte(&udp, Some(&mac), true)
        .expect("the truncated answer is signed");
    let tcp = ask(Transport::Tcp);
    assert_eq!(Message::from_vec(&tcp).unwrap().answers.len(), 1);
    key.verify_message_byte(&tcp, Some(&mac), true)
        .expect("the whole answer is signed");
}

#[test]
fn equal_prepared_answers_are_kept_once() {
    // 1,000 names of one A record each: each answers A (and ANY, the same records) with its
    // own records, and NODATA (any other type, DS) or NXDOMAIN below it like every other name.
    let mut text = HEAD.to_string();
    for i in 0..1000 {
        text += &format!("h{i} A 10.0.{}.{}\n", i / 256, i % 256);
    }
    let snap = zone_snapshot(&text);
    let n = crate::dns::prepared::AnswerCache::build_all(&snap).distinct_templates();
    assert!((1000..1020).contains(&n), "{n} templates for 1,000 names");
}

/// The types asked of every name by the plain-names comparison.
const PLAIN_TYPES: [RecordType; 13] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::TXT,
    RecordType::MX,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CNAME,
    RecordType::DS,
    RecordType::ANY,
    RecordType::NAPTR,
    RecordType::CAA,
    RecordType::RRSIG,
    RecordType::Unknown(999),
];

/// A query for `qn` `t`: without EDNS (variant 0), with a 512-byte payload (1), with DO (2),
/// or with a client subnet (3).
fn query_variant(qn: &str, t: RecordType, variant: u8) -> Vec<u8> {
    use hickory_proto::op::Edns;
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    let mut m = Message::query();
    m.add_query(Query::query(
        hickory_proto::rr::Name::from_ascii(qn).unwrap(),
        t,
    ));
    if variant > 0 {
        let mut e = Edns::new();
        e.set_max_payload(if variant == 1 { 512 } else { 1232 });
        e.set_dnssec_ok(variant == 2);
        if variant == 3 {
            let subnet = ClientSubnet::new([198, 51, 100, 0].into(), 24, 0);
            e.options_mut().insert(EdnsOption::Subnet(subnet));
        }
        m.set_edns(e);
    }
    bytes(&m)
}

/// Plain names (see `prepared::PlainCheck`) have no prepared entry and are answered from the
/// zone's sets, and other names take their NODATA answers as the zone's: byte for byte what a
/// lookup for each answer would say, for every kind of name beside them (under a cut, a
/// wildcard, the SOA's names, a pool-bound name, CNAMEs, MX, SRV, PTR).
#[test]
fn plain_names_answer_byte_for_byte_as_their_templates_would() {
    use crate::dns::prepared::AnswerCache;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{LowerName, Name, RData, Record};
    let text = format!(
        "{HEAD}www A 192.0.2.2\n A 192.0.2.3\n AAAA 2001:db8::2\nt TXT \"a\" \"b\"\n TXT c\n\
         deep.ent A 192.0.2.4\ncaa CAA 0 issue \"ca.example\"\n\
         naptr NAPTR 100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.t.\n\
         *.w A 192.0.2.5\nx.w A 192.0.2.6\nunder.ns A 192.0.2.7\nx.hm TXT hm\n\
         sub NS ns.sub\nns.sub A 192.0.2.8\nin.sub A 192.0.2.9\nmx MX 10 www\n\
         c CNAME www\nc2 CNAME mx\nout CNAME www.example.\nmt TXT x\n MX 10 www\n\
         _s._tcp SRV 0 0 1 www\nptr PTR www.t.\n\
         big TXT \"{long}\"\n TXT \"{long}1\"\n TXT \"{long}2\"\n",
        long = "x".repeat(200)
    );
    let mut snap = zone_snapshot(&text);
    let pool = Name::from_ascii("pool.t.").unwrap();
    let a = Record::from_rdata(pool.clone(), 30, RData::A(A([192, 0, 2, 10].into())));
    snap.bound = [(
        LowerName::new(&pool),
        crate::dns::snapshot::Bound::fixed(vec![a], Vec::new()),
    )]
    .into_iter()
    .collect();
    let zones = snap.zones.clone();
    zones.get(0).unwrap();
    let plain = AnswerCache::build(&snap);
    let all = AnswerCache::build_all(&snap);
    // www, t, deep.ent, ent, caa, naptr, x.w, big, _tcp.
    assert_eq!(all.entries() - plain.entries(), 9);
    let names: Vec<String> = zones
        .iter()
        .flat_map(|z| z.nodes.keys().map(|n| n.to_string()))
        .chain(["pool.t.".into()])
        .collect();
    let (mut compared, mut out_plain, mut out_all) = (0, Vec::new(), Vec::new());
    for n in &names {
        for qn in [
            n.clone(),
            format!("zz.{n}"),
            format!("a.b.{n}"),
            n.to_uppercase(),
        ] {
            for &t in &PLAIN_TYPES {
                for variant in 0..4 {
                    let q = query_variant(&qn, t, variant);
                    for tcp in [false, true] {
                        let from = [127, 0, 0, 1].into();
                        let p = plain.answer(&q, from, 1232, tcp, &mut out_plain);
                        let a = all.answer(&q, from, 1232, tcp, &mut out_all);
                        let what = format!("{qn} {t} variant {variant} tcp {tcp}");
                        assert_eq!(p, a, "{what}: answered by one path only");
                        if p {
                            assert_eq!(out_plain, out_all, "{what}");
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 2000, "{compared} answers compared");
}
