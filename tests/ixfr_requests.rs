//! IXFR requests over real TCP: a request whose authority section is not the zone's one SOA
//! (another name's SOA, two SOAs) or that carries an answer record is FORMERR (RFC 1995
//! section 3); the well-formed one gets the current SOA.

use crate::common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

fn soa(owner: &str, serial: u32) -> Record {
    let s = SOA::new(
        Name::from_ascii("ns.example.test.").unwrap(),
        Name::from_ascii("hm.example.test.").unwrap(),
        serial,
        2,
        3,
        4,
        300,
    );
    Record::from_rdata(Name::from_ascii(owner).unwrap(), 60, RData::SOA(s))
}

fn ixfr(authority: Vec<Record>, answers: Vec<Record>) -> Message {
    let mut q = query_msg("example.test.", RecordType::IXFR, false);
    q.authorities = authority;
    q.answers = answers;
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ixfr_requests_without_exactly_the_zones_soa_in_authority_are_formerr() {
    let g = start(
        "[zones.\"example.test.\"]\nallow_transfer = [\"127.0.0.0/8\"]\n",
        &repo().join("zones"),
    )
    .await;
    let current = tcp(g.dns, &query_msg("example.test.", RecordType::SOA, false)).await;
    let RData::SOA(s) = &current.answers[0].data else {
        panic!("{current:?}")
    };
    let serial = s.serial;
    // Well formed, up to date: the current SOA alone.
    let ok = tcp(g.dns, &ixfr(vec![soa("example.test.", serial)], vec![])).await;
    assert_eq!(ok.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ok.answers.len(), 1);
    let www = Record::from_rdata(
        Name::from_ascii("www.example.test.").unwrap(),
        60,
        RData::A(A([192, 0, 2, 1].into())),
    );
    let bad: [(&str, Message); 3] = [
        (
            "another name's SOA",
            ixfr(vec![soa("other.test.", serial)], vec![]),
        ),
        (
            "two SOAs",
            ixfr(
                vec![soa("example.test.", serial), soa("example.test.", 1)],
                vec![],
            ),
        ),
        (
            "an answer record",
            ixfr(vec![soa("example.test.", serial)], vec![www]),
        ),
    ];
    for (what, q) in bad {
        let r = tcp(g.dns, &q).await;
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::FormErr,
            "an IXFR request with {what}: {r:?}"
        );
    }
}
