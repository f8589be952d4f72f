//! Topology by place against Knot DNS's `mod-geoip` on the same database and the same
//! mapping: for 2,000 client subnets sent as ECS, the records and the ECS scope of both
//! servers' answers. Needs knotd with its geoip module (Debian `knot-module-geoip`) and
//! MaxMind's writer (`libmaxmind-db-writer-perl`); `.ci/run` installs them.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use common::geo::{country, write_mmdb};
use common::*;
use hickory_proto::op::Message;

const NAME: &str = "app.example.test.";
/// (continent, country) of the database's records.
const PLACES: [(&str, &str); 7] = [
    ("EU", "DE"),
    ("EU", "FR"),
    ("NA", "US"),
    ("AS", "JP"),
    ("AS", "IN"),
    ("SA", "BR"),
    ("OC", "AU"),
];
/// The mapping, as gtmd's rules in order (country rules before continent ones, which is the
/// order Knot's most specific view gives) and Knot's views: (rule key, value, Knot's geo,
/// answer).
const MAP: [(&str, &str, &str, &str); 5] = [
    ("country", "DE", "EU;DE", "192.0.2.1"),
    ("country", "JP", "AS;JP", "192.0.2.3"),
    ("continent", "EU", "EU", "192.0.2.2"),
    ("continent", "AS", "AS", "192.0.2.4"),
    ("continent", "SA", "SA", "192.0.2.5"),
];
/// What a client no rule takes gets: gtmd's first pool, Knot's zone record.
const DEFAULT: &str = "192.0.2.11";

/// A small deterministic generator (xorshift), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn v4_net(r: &mut Rng) -> (String, Ipv4Addr, u8) {
    let len = 8 + r.below(21) as u8; // /8 to /28
    let a = ((1 + r.below(222)) as u32) << 24 | (r.next() as u32 & 0x00ff_ffff);
    let a = a & (u32::MAX << (32 - len));
    (
        format!("{}/{len}", Ipv4Addr::from(a)),
        Ipv4Addr::from(a),
        len,
    )
}

fn v6_net(r: &mut Rng) -> (String, Ipv6Addr, u8) {
    let len = 20 + r.below(45) as u8; // /20 to /64
    let a = (0x2000u128 << 112) | ((r.next() as u128) << 64 | r.next() as u128) >> 3;
    let a = a & (u128::MAX << (128 - len));
    (
        format!("{}/{len}", Ipv6Addr::from(a)),
        Ipv6Addr::from(a),
        len,
    )
}

/// The database's networks, and 2,000 client subnets (most inside a listed network, some
/// anywhere), as (address, source prefix length).
/// A database's networks and their records, as the writer takes them.
type Nets = Vec<(String, serde_json::Value)>;

fn world(r: &mut Rng) -> (Nets, Vec<(IpAddr, u8)>) {
    let mut nets = Vec::new();
    let mut inside = Vec::new();
    for i in 0..400 {
        let (cont, iso) = PLACES[r.below(PLACES.len() as u64) as usize];
        if i % 3 == 2 {
            let (s, a, len) = v6_net(r);
            inside.push((IpAddr::V6(a), len));
            nets.push((s, country(cont, iso, None)));
        } else {
            let (s, a, len) = v4_net(r);
            inside.push((IpAddr::V4(a), len));
            nets.push((s, country(cont, iso, None)));
        }
    }
    let mut clients = Vec::new();
    for i in 0..2000 {
        let (base, len) = inside[r.below(inside.len() as u64) as usize];
        let client = match (base, i % 10) {
            (_, 9) => {
                let a = Ipv4Addr::from(r.next() as u32 & 0xffff_ff00);
                (IpAddr::V4(a), 24)
            }
            (IpAddr::V4(b), k) => {
                let host =
                    (r.next() as u32) & !(u32::MAX.checked_shl(32 - len as u32).unwrap_or(0));
                let source = if k % 2 == 0 { 24 } else { 32 };
                let a = (u32::from(b) | host) & (u32::MAX << (32 - source));
                (IpAddr::V4(Ipv4Addr::from(a)), source as u8)
            }
            (IpAddr::V6(b), k) => {
                let host = (r.next() as u128) << 64
                    & !(u128::MAX.checked_shl(128 - len as u32).unwrap_or(0));
                let source = if k % 2 == 0 { 48 } else { 56 };
                let a = (u128::from(b) | host) & (u128::MAX << (128 - source));
                (IpAddr::V6(Ipv6Addr::from(a)), source as u8)
            }
        };
        clients.push(client);
    }
    (nets, clients)
}

/// Knot on the zone and the geoip module's mapping; stopped on drop.
fn start_knot(dir: &Path, db: &Path, port: u16) -> KillOnDrop {
    let d = dir.display();
    let mut views = format!("{}:\n", NAME.trim_end_matches('.'));
    for (_, _, geo, a) in MAP {
        views += &format!("  - geo: \"{geo}\"\n    A: {a}\n");
    }
    std::fs::write(dir.join("geo.conf"), views).unwrap();
    std::fs::write(
        dir.join("example.test.zone"),
        format!("{ZONE}app 30 IN A {DEFAULT}\n"),
    )
    .unwrap();
    let conf = format!(
        "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    edns-client-subnet: on\n\
         database:\n    storage: {d}\n\
         mod-geoip:\n  - id: geo\n    config-file: {d}/geo.conf\n    ttl: 30\n    mode: geodb\n\
         \x20   geodb-file: {db}\n    geodb-key: [ continent/code, country/iso_code ]\n\
         zone:\n  - domain: example.test.\n    file: {d}/example.test.zone\n    storage: {d}\n\
         \x20   module: mod-geoip/geo\n",
        db = db.display()
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).unwrap();
    daemon(&installed("knotd", "knot"), &["-c"], &path)
}

const ZONE: &str = "$ORIGIN example.test.\n$TTL 3600\n\
    @ IN SOA ns1 hostmaster 1 7200 3600 1209600 30\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

/// The answer's addresses and the reply's ECS scope (`None`: no ECS in the reply).
fn read(m: &Message) -> (Vec<String>, Option<u8>) {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let scope = match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
        _ => None,
    };
    let mut a = addrs(m);
    a.sort();
    (a, scope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_by_place_equal_knots_geoip_module_for_two_thousand_client_subnets() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (nets, clients) = world(&mut rng);
    let db = dir.path().join("country.mmdb");
    write_mmdb(&db, "Test-Country", &nets);
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(zones.join("example.test.zone"), ZONE).unwrap();
    let backend = Backend::start().await;
    let member = |a: &str| {
        format!(
            "members = [{{ address = \"{a}\", probe_address = \"127.0.0.1\", probe_port = {} }}]",
            backend.addr.port()
        )
    };
    let mut cfg = format!(
        "[geo]\ndatabases = [{:?}]\n[checks.c]\ntype = \"tcp\"\nport = 1\n",
        db.display().to_string()
    );
    let mut pools = vec![format!("\"p{}\"", DEFAULT.replace('.', "_"))];
    cfg += &format!(
        "[pools.{}]\ncheck = \"c\"\n{}\n",
        &pools[0][1..pools[0].len() - 1],
        member(DEFAULT)
    );
    for (_, _, _, a) in MAP {
        let p = format!("p{}", a.replace('.', "_"));
        if !pools.contains(&format!("\"{p}\"")) {
            cfg += &format!("[pools.{p}]\ncheck = \"c\"\n{}\n", member(a));
            pools.push(format!("\"{p}\""));
        }
    }
    cfg += &format!(
        "[names.\"{NAME}\"]\npools = [{}]\npolicy = \"topology\"\nttl = 30\n",
        pools.join(", ")
    );
    for (key, value, _, a) in MAP {
        cfg += &format!(
            "[[names.\"{NAME}\".topology]]\n{key} = [\"{value}\"]\norder = [\"p{}\"]\n",
            a.replace('.', "_")
        );
    }
    let g = start(&cfg, &zones).await;
    let port = free_addr().port();
    let _knot = start_knot(dir.path(), &db, port);
    let knot: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_answering("knotd", knot, "example.test.").await;
    let (mut same, mut knot_unscoped, mut differ) = (0, 0, Vec::new());
    let mut answers = std::collections::BTreeMap::new();
    for (addr, source) in &clients {
        let a = addr.to_string();
        let (ours, theirs) = (
            read(&ecs_query(g.dns, NAME, &a, *source).await),
            read(&ecs_query(knot, NAME, &a, *source).await),
        );
        *answers.entry(ours.0.join(",")).or_insert(0) += 1;
        // Knot leaves the scope at 0 when no view took the client (it answers from the
        // zone): RFC 7871 says scope 0 holds for every address, which is not so when other
        // clients get other answers. gtmd gives the scope of the network that decided
        // (gdnsd's behaviour), so only the records are compared there.
        let scoped = theirs.1 != Some(0);
        if ours.0 == theirs.0 && (!scoped || ours.1 == theirs.1) {
            same += 1;
            knot_unscoped += usize::from(!scoped);
        } else {
            differ.push(format!("{a}/{source}: gtmd {ours:?}, knot {theirs:?}"));
        }
    }
    eprintln!(
        "{same} of {} equal ({knot_unscoped} where Knot gave scope 0); answers: {answers:?}",
        clients.len()
    );
    assert!(
        differ.is_empty(),
        "{} differ:\n{}",
        differ.len(),
        differ[..differ.len().min(20)].join("\n")
    );
    // Every answer of the mapping was given to some client.
    for (_, _, _, a) in MAP {
        assert!(
            answers.keys().any(|k| k == a),
            "no client got {a}: {answers:?}"
        );
    }
}
