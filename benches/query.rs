//! Micro-benchmark of the query paths: bytes in, bytes out, for a query mix over the sample
//! zone, through the fast path (prepared answers) and the general path. Run with
//! `cargo bench --bench query`. It prints nanoseconds per query; compare figures from the same
//! machine and run only.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gtmd::dns::snapshot::{Bound, Choice, Snapshot, Zones};
use gtmd::dns::{handle, Outcome, Publication, Transport, WireSettings};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

fn main() {
    let mut zones =
        gtmd::zone::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/zones"))).unwrap();
    // A pool name answering one of four addresses per query, by weight.
    let app = Name::from_ascii("app.example.test.").unwrap();
    zones[0].ensure_node(&LowerName::new(&app));
    let sets = (1..=4)
        .map(|i| {
            let r = Record::from_rdata(app.clone(), 30, RData::A(A([192, 0, 2, i].into())));
            (vec![r], 0.25)
        })
        .collect();
    let mut bound = Bound::fixed(Vec::new(), Vec::new());
    bound.a = Choice::weighted(sets);
    let snap = Publication::new(Snapshot {
        zones: Arc::new(Zones::new(zones)),
        bound: [(LowerName::new(&app), bound)].into_iter().collect(),
        ready: true,
        ..Default::default()
    });
    let mix = [
        ("app.example.test.", RecordType::A),
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
            assert!(snap.answers.answer(
                black_box(q),
                [127, 0, 0, 1].into(),
                settings.udp_payload,
                false,
                &mut out
            ));
            black_box(&out);
        }
        let fast = start.elapsed().as_nanos() as f64 / n as f64;
        let start = Instant::now();
        for _ in 0..n {
            let out = handle(&snap, black_box(q), client, Transport::Udp);
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
    rebuild_cost();
    resign_cost();
    rrl_cost();
    topology_cost();
}

/// A topology name whose clients (ECS) are placed by a MaxMind database (20,000 networks,
/// 200 country rules), against the same name with 500 subnet rules: nanoseconds per query
/// through the whole query path. Needs MaxMind's writer (`libmaxmind-db-writer-perl`) to make
/// the database; skipped without it.
fn topology_cost() {
    use gtmd::steer::geo::{Database, Geo};
    use gtmd::steer::topology::Table;
    let dir = std::env::temp_dir().join(format!("gtmd-bench-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Networks: /16 to /24 in 1.0.0.0-223.255.255.255, each in one of 200 countries.
    let mut nets = Vec::new();
    for _ in 0..20_000 {
        let len = 16 + next() % 9;
        let a =
            ((1 + next() % 223) << 24 | (next() & 0x00ff_ffff)) as u32 & (u32::MAX << (32 - len));
        let c = format!("C{:03}", next() % 200);
        nets.push(format!(
            "[\"{}/{len}\",{{\"country\":{{\"iso_code\":\"{c}\"}}}}]",
            std::net::Ipv4Addr::from(a)
        ));
    }
    let json = dir.join("nets.json");
    std::fs::write(&json, format!("[{}]", nets.join(","))).unwrap();
    let db = dir.join("bench.mmdb");
    let writer = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/examples/geo/write-db.pl");
    let ok = std::process::Command::new("perl")
        .args([
            writer,
            json.to_str().unwrap(),
            db.to_str().unwrap(),
            "Bench-Country",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("topology by place: skipped (needs perl and libmaxmind-db-writer-perl)");
        return;
    }
    let geo = Geo::new(vec![
        Database::from_bytes(&db, std::fs::read(&db).unwrap()).unwrap()
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let covers = geo.covers().unwrap();
    let groups: Vec<u32> = covers
        .places
        .iter()
        .map(|p| {
            p.country
                .as_ref()
                .and_then(|c| c[1..].parse::<u32>().ok())
                .map_or(0, |n| n + 1)
        })
        .collect();
    let by_place = Table::with_places(&[], &covers, &groups);
    let built = started.elapsed();
    let subnets: Vec<Vec<ipnet::IpNet>> = (0..500)
        .map(|_| {
            let len = 16 + (next() % 9) as u8;
            let a = ((1 + next() % 223) << 24 | (next() & 0x00ff_ffff)) as u32;
            vec![ipnet::IpNet::new(std::net::Ipv4Addr::from(a).into(), len)
                .unwrap()
                .trunc()]
        })
        .collect();
    let by_subnet = Table::new(&subnets);
    // 10,000 client /24s, spread over the networks.
    let queries: Vec<Vec<u8>> = (0..10_000)
        .map(|_| {
            use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
            let a = ((1 + next() % 223) << 24 | (next() & 0x00ff_ff00)) as u32;
            let mut m = Message::query();
            m.add_query(Query::query(
                Name::from_ascii("app.example.test.").unwrap(),
                RecordType::A,
            ));
            let mut edns = hickory_proto::op::Edns::new();
            let subnet = ClientSubnet::new(std::net::Ipv4Addr::from(a).into(), 24, 0);
            edns.options_mut().insert(EdnsOption::Subnet(subnet));
            m.set_edns(edns);
            m.to_vec().unwrap()
        })
        .collect();
    let per_query = |table: Table, groups: usize| {
        let mut zones =
            gtmd::zone::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/zones"))).unwrap();
        let app = Name::from_ascii("app.example.test.").unwrap();
        zones[0].ensure_node(&LowerName::new(&app));
        let sets = (0..groups)
            .map(|g| {
                let ip = [192, 0, 2, (g % 250) as u8 + 1];
                let r = Record::from_rdata(app.clone(), 30, RData::A(A(ip.into())));
                vec![(vec![r], 1.0)]
            })
            .collect();
        let mut bound = Bound::fixed(Vec::new(), Vec::new());
        bound.a = Choice::grouped(sets, Some(Arc::new(table)));
        let snap = Publication::new(Snapshot {
            zones: Arc::new(Zones::new(zones)),
            bound: [(LowerName::new(&app), bound)].into_iter().collect(),
            ready: true,
            ..Default::default()
        });
        let n = 400_000;
        let start = Instant::now();
        for i in 0..n {
            let out = handle(
                &snap,
                black_box(&queries[i % queries.len()]),
                [127, 0, 0, 1].into(),
                Transport::Udp,
            );
            black_box(out);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let ranges = by_place.len();
    let (subnet_ns, place_ns) = (per_query(by_subnet, 501), per_query(by_place, 201));
    println!(
        "topology by place: {place_ns:.0} ns per ECS query (20,000 networks, 200 country rules; \
         table of {} IPv4 and {} IPv6 ranges, {:.1} MB, built in {:.0} ms), by subnet: \
         {subnet_ns:.0} ns (500 rules): {:.2}x",
        ranges.0,
        ranges.1,
        (ranges.0 * 8 + ranges.1 * 20) as f64 / 1e6,
        built.as_secs_f64() * 1000.0,
        place_ns / subnet_ns
    );
}

/// What a health change costs the engine: preparing every answer of a 10,000-name zone, against
/// preparing only the entries that hold pool records (the rest is reused).
fn rebuild_cost() {
    use gtmd::dns::prepared::AnswerCache;

    let dir = std::env::temp_dir().join("gtmd-bench-zone");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from("$TTL 300\n@ SOA ns hm 1 2 3 4 60\n NS ns\nns A 192.0.2.1\n");
    for i in 0..10_000 {
        text += &format!("h{i} A 192.0.2.{}\nh{i} TXT \"host {i}\"\n", i % 250 + 1);
    }
    text += "www CNAME app\n";
    std::fs::write(dir.join("big.test.zone"), text).unwrap();
    let mut zones = gtmd::zone::load_dir(&dir).unwrap();
    let app = Name::from_ascii("app.big.test.").unwrap();
    zones[0].ensure_node(&LowerName::new(&app));
    let zones = Arc::new(Zones::new(zones));
    let snap = |v4: &str| {
        let a = vec![Record::from_rdata(
            app.clone(),
            30,
            RData::A(A(v4.parse().unwrap())),
        )];
        Snapshot {
            zones: zones.clone(),
            bound: [(LowerName::new(&app), Bound::fixed(a, Vec::new()))]
                .into_iter()
                .collect(),
            ready: true,
            ..Default::default()
        }
    };
    let first = snap("192.0.2.10");
    let start = Instant::now();
    let full = AnswerCache::build(&first);
    let full_t = start.elapsed();
    let fixed = full.fixed().unwrap().clone();
    let second = snap("192.0.2.20");
    let start = Instant::now();
    let n = 1000;
    for _ in 0..n {
        black_box(AnswerCache::with_fixed(fixed.clone(), &second));
    }
    let live_t = start.elapsed() / n;
    println!("\nprepared answers for a 10,000-name zone: full build {full_t:?}; after a health change {live_t:?}");
}

/// What response rate limiting adds per UDP response: an exempt client (a scan of the exempt
/// list), one prefix answered again and again, and many prefixes (a bucket each), at rates never
/// reached so that every response is sent.
/// What a health change costs when every name of a 10,000-name zone is bound to the member that
/// fails (the worst case: every answer changes): preparing the answers unsigned, signed (one
/// new RRSIG per name, ECDSA P-256), and signed again when the member comes back (the
/// signatures of the earlier answers are reused from the cache).
fn resign_cost() {
    use gtmd::dns::prepared::AnswerCache;

    let dir = std::env::temp_dir().join("gtmd-bench-signed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from("$TTL 300\n@ SOA ns hm 1 2 3 4 60\n NS ns\nns A 192.0.2.1\n");
    for i in 0..10_000 {
        text += &format!("h{i} TXT \"host {i}\"\n");
    }
    std::fs::write(dir.join("big.test.zone"), text).unwrap();
    let origin = Name::from_ascii("big.test.").unwrap();
    let key = gtmd::zone::keys::generate(&origin, 13, true, &dir).unwrap();
    let spec = gtmd::zone::keys::KeySpec {
        path: key,
        sign: true,
        ksk: true,
    };
    let names: Vec<Name> = (0..10_000)
        .map(|i| Name::from_ascii(format!("h{i}.big.test.")).unwrap())
        .collect();
    for signed in [false, true] {
        let mut zones = gtmd::zone::load_dir(&dir).unwrap();
        if signed {
            let keys = gtmd::zone::keys::load(&origin, std::slice::from_ref(&spec)).unwrap();
            zones[0].sign_with(keys);
        }
        let zones = Arc::new(Zones::new(zones));
        let snap = |members: &[&str]| {
            let bound = names.iter().map(|n| {
                let a = members
                    .iter()
                    .map(|m| Record::from_rdata(n.clone(), 30, RData::A(A(m.parse().unwrap()))))
                    .collect();
                (LowerName::new(n), Bound::fixed(a, Vec::new()))
            });
            Snapshot {
                zones: zones.clone(),
                bound: bound.collect(),
                ready: true,
                ..Default::default()
            }
        };
        let (both, one) = (snap(&["192.0.2.10", "192.0.2.20"]), snap(&["192.0.2.10"]));
        let start = Instant::now();
        let full = AnswerCache::build(&both);
        let full_t = start.elapsed();
        let fixed = full.fixed().unwrap().clone();
        let start = Instant::now();
        black_box(AnswerCache::with_fixed(fixed.clone(), &one));
        let down_t = start.elapsed();
        let start = Instant::now();
        black_box(AnswerCache::with_fixed(fixed.clone(), &both));
        let back_t = start.elapsed();
        println!(
            "10,000 bound names, {}: full build {full_t:?}; a member down (every answer changes) {down_t:?}; \
             the member back {back_t:?}",
            if signed { "signed" } else { "unsigned" }
        );
    }
}

fn rrl_cost() {
    use gtmd::dns::rrl::{Rrl, RrlConfig, Verdict};
    use std::net::{IpAddr, Ipv4Addr};
    let response = [0u8; 12];
    let cases: [(&str, Vec<ipnet::IpNet>, u32); 3] = [
        ("exempt client", RrlConfig::default().exempt, 1),
        ("one prefix", Vec::new(), 1),
        ("100,000 prefixes", Vec::new(), 100_000),
    ];
    println!("\n{:<28} {:>12}", "rrl", "ns/response");
    for (label, exempt, prefixes) in cases {
        let rrl = Rrl::new(&RrlConfig {
            rate: 1_000_000_000,
            errors_rate: 1_000_000_000,
            exempt,
            ..Default::default()
        })
        .expect("limits on");
        let clients: Vec<IpAddr> = (0..prefixes)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0x7f00_0001 + (i << 8))))
            .collect();
        let (n, mut slips) = (2_000_000usize, 0);
        let start = Instant::now();
        for i in 0..n {
            let v = rrl.judge(black_box(clients[i % clients.len()]), &response, &mut slips);
            assert_eq!(v, Verdict::Send);
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!("{label:<28} {ns:>12.0}");
    }
}
