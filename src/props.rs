//! Properties that must hold for any input. Each function takes arbitrary bytes and panics if
//! its property is broken; the fuzz targets in `fuzz/` call them, and `props::corpus` below
//! replays the committed corpora through them on stable Rust.
//!
//! | function | input | property |
//! | --- | --- | --- |
//! | [`query`] | a UDP query's bytes | no panic; every response re-parses, carries the query's ID and question, and fits the client's UDP size or has TC |
//! | [`config`] | configuration text | a config that validates, or an error naming the file |
//! | [`zone`] | zone-file text | a zone whose records all lie in it and whose answers re-parse, or an error naming the file and line |
//! | [`health`] | thresholds, then probe outcomes | the state changes exactly when `fall`/`rise` consecutive results say so, never before |

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::dns::snapshot::{Bound, Choice, Snapshot, Zones};
use crate::dns::{handle, Outcome, Publication, Transport, WireSettings};
use crate::steer::health::{Health, State, Thresholds};

/// The sample zone, a weighted name (`app.`, four addresses) and a topology name (`geo.`,
/// 198.51.100.0/24 gets another answer) as the query path serves them.
fn snapshot() -> &'static Publication {
    static S: OnceLock<Publication> = OnceLock::new();
    S.get_or_init(|| {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/zones"));
        let mut zones = crate::zone::load_dir(dir).expect("the sample zone loads");
        let record =
            |n: &Name, i: u8| Record::from_rdata(n.clone(), 30, RData::A(A([192, 0, 2, i].into())));
        let app = Name::from_ascii("app.example.test.").expect("a valid name");
        let geo = Name::from_ascii("geo.example.test.").expect("a valid name");
        let mut bound = std::collections::HashMap::new();
        let mut weighted = Bound::fixed(Vec::new(), Vec::new());
        weighted.a = Choice::weighted((1..=4).map(|i| (vec![record(&app, i)], 0.25)).collect());
        bound.insert(LowerName::new(&app), weighted);
        let net = "198.51.100.0/24".parse().expect("a valid prefix");
        let table = Arc::new(crate::steer::topology::Table::new(&[vec![net]]));
        let mut topo = Bound::fixed(Vec::new(), Vec::new());
        topo.a = Choice::grouped(
            vec![
                vec![(vec![record(&geo, 30)], 1.0)],
                vec![(vec![record(&geo, 40)], 1.0)],
            ],
            Some(table),
        );
        bound.insert(LowerName::new(&geo), topo);
        for n in [&app, &geo] {
            zones[0].ensure_node(&LowerName::new(n));
        }
        Publication::new(Snapshot {
            zones: Arc::new(Zones::new(zones)),
            bound,
            ready: true,
            ..Default::default()
        })
    })
}

/// The most a UDP response to `query` may hold: the client's EDNS size (at least 512) up to
/// ours, or 512 without EDNS (RFC 6891 section 6.2.3, RFC 1035 section 4.2.1).
fn udp_limit(query: Option<&Message>, ours: u16) -> usize {
    match query.and_then(|q| q.edns.as_ref()) {
        Some(e) => e.max_payload().clamp(512, ours.max(512)) as usize,
        None => 512,
    }
}

fn check_response(query: &[u8], parsed: Option<&Message>, response: &[u8], limit: usize) {
    let m = Message::from_vec(response).expect("every response re-parses");
    assert_eq!(
        &response[..2],
        &query[..2],
        "the response carries the query's ID"
    );
    assert!(
        response.len() <= limit || m.metadata.truncation,
        "a UDP response of {} bytes over the client's {limit} without TC",
        response.len()
    );
    if let Some(q) = parsed {
        if q.queries.len() == 1 && m.metadata.response_code != ResponseCode::FormErr {
            let asked: &Query = &q.queries[0];
            assert_eq!(
                m.queries.first(),
                Some(asked),
                "the response carries the question"
            );
        }
    }
}

/// Raw bytes as a UDP query, through the fast path and the general path.
pub fn query(data: &[u8]) {
    let snap = snapshot();
    let settings = WireSettings::default();
    let parsed = Message::from_vec(data).ok();
    let limit = udp_limit(parsed.as_ref(), settings.udp_payload);
    // The client's address matters to topology names: take one of three from the input.
    let sources: [IpAddr; 3] = [
        [127, 0, 0, 1].into(),
        [198, 51, 100, 7].into(),
        "2001:db8::1".parse().expect("a valid address"),
    ];
    let source = sources[data.len() % 3];
    let mut out = Vec::new();
    if snap
        .answers
        .answer(data, source, settings.udp_payload, false, &mut out)
    {
        check_response(data, parsed.as_ref(), &out, limit);
    }
    if let Outcome::Reply(r) = handle(snap, data, source, Transport::Udp) {
        check_response(data, parsed.as_ref(), &r, limit);
    }
}

/// Configuration text: it validates, or the error names the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::config::Config::parse(text, "fuzz.toml", Path::new("/nonexistent")) {
        Ok(c) => assert!(!c.listen.is_empty(), "a valid config listens somewhere"),
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml"), "{e}"),
    }
}

/// Zone-file text for `example.test.`: a zone whose records all lie inside it and whose
/// answers re-parse, or an error naming the file and line.
pub fn zone(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // $INCLUDE reads other files (even /dev/zero): not what this property is about.
    if text.to_ascii_uppercase().contains("$INCLUDE") {
        return;
    }
    let origin = Name::from_ascii("example.test.").expect("a valid name");
    let file = Path::new("fuzz.zone");
    let z = match crate::zone::parse_zone(text, file, origin) {
        Ok(z) => z,
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.zone"), "{e}");
            return;
        }
    };
    let names: Vec<Name> = z.all_records().map(|r| r.name).collect();
    for n in &names {
        assert!(
            z.origin.zone_of(&LowerName::new(n)),
            "{n} is outside the zone"
        );
    }
    // The general path only (the query target covers the fast path): cheaper per input.
    let snap = Snapshot {
        zones: Arc::new(Zones::new(vec![z])),
        ready: true,
        ..Default::default()
    };
    for n in names.iter().take(8) {
        for t in [
            RecordType::A,
            RecordType::ANY,
            RecordType::NS,
            RecordType::TXT,
        ] {
            let mut m = Message::query();
            m.add_query(Query::query(n.clone(), t));
            let q = m.to_vec().expect("a query serializes");
            if let Outcome::Reply(r) = handle(&snap, &q, [127, 0, 0, 1].into(), Transport::Udp) {
                check_response(&q, Some(&m), &r, 512);
            }
        }
    }
}

/// Probe outcomes: `data[0]` and `data[1]` give `fall` and `rise` (1 to 8), then each bit of
/// the rest is one probe result. The state changes exactly when `fall` failures (or `rise`
/// successes) in a row since the last change say so.
pub fn health(data: &[u8]) {
    let (Some(&f), Some(&r)) = (data.first(), data.get(1)) else {
        return;
    };
    let t = Thresholds {
        fall: u32::from(f % 8) + 1,
        rise: u32::from(r % 8) + 1,
    };
    let mut h = Health::new();
    // Results since the last change of state.
    let mut run: Vec<bool> = Vec::new();
    for ok in data[2..]
        .iter()
        .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1))
    {
        let before = h.state;
        let tr = h.observe(ok, t);
        run.push(ok);
        let agreeing_tail = |want: bool, n: u32| {
            run.len() >= n as usize && run[run.len() - n as usize..].iter().all(|&x| x == want)
        };
        let expected = match before {
            State::Unknown => Some(if ok { State::Up } else { State::Down }),
            State::Up if agreeing_tail(false, t.fall) => Some(State::Down),
            State::Down if agreeing_tail(true, t.rise) => Some(State::Up),
            _ => None,
        };
        assert_eq!(
            tr.map(|x| x.to),
            expected,
            "after {run:?} from {before:?} with {t:?}"
        );
        assert_eq!(tr.is_some(), h.state != before);
        if tr.is_some() {
            run.clear();
        }
    }
}

/// Replays every committed fuzz corpus file (fuzz/corpus/TARGET/*) through the property its
/// fuzz target asserts, on stable Rust: CI runs the corpora without a fuzzer.
#[cfg(test)]
mod corpus {
    use std::path::Path;

    fn replay(target: &str, property: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| property(&data));
            assert!(r.is_ok(), "{} breaks the {target} property", path.display());
            n += 1;
        }
        assert!(n > 0, "{} is empty", dir.display());
        println!("{target}: {n} inputs");
    }

    #[test]
    fn query_corpus_holds() {
        replay("query", super::query);
    }

    #[test]
    fn config_corpus_holds() {
        replay("config", super::config);
    }

    #[test]
    fn zone_corpus_holds() {
        replay("zone", super::zone);
    }

    #[test]
    fn health_corpus_holds() {
        replay("health", super::health);
    }
}
