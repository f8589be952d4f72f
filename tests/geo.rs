//! Topology rules by place: MaxMind DB files written by MaxMind's own writer, clients sent as
//! EDNS client subnets over real UDP, answers and ECS scopes checked.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::geo::{asn, country, write_mmdb};
use common::*;
use hickory_proto::op::Message;

const NAME: &str = "app.example.test.";

/// An A query for the name carrying ECS `addr/source`, over UDP.
async fn with_ecs(dns: SocketAddr, addr: &str, source: u8) -> Message {
    ecs_query(dns, NAME, addr, source).await
}

/// The answer's addresses and the ECS scope prefix length of the reply.
async fn answer_for(dns: SocketAddr, addr: &str, source: u8) -> (Vec<String>, u8) {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let m = with_ecs(dns, addr, source).await;
    let scope = match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => s.scope_prefix(),
        _ => panic!("no ECS in the reply for {addr}/{source}"),
    };
    (addrs(&m), scope)
}

/// A country database: nested IPv4 networks of several sizes, IPv6 ones, a subdivision.
fn country_db(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("country.mmdb");
    let n = |s: &str, r| (s.to_string(), r);
    write_mmdb(
        &p,
        "Test-Country",
        &[
            n("10.0.0.0/8", country("NA", "US", None)),
            n("10.1.0.0/16", country("EU", "FR", None)),
            n("10.1.2.0/24", country("EU", "DE", Some("BY"))),
            n("198.51.100.0/24", country("EU", "DE", None)),
            n("203.0.113.0/25", country("AS", "JP", None)),
            n("2001:db8:1::/48", country("EU", "DE", None)),
            n("2001:db8:200::/40", country("NA", "US", None)),
        ],
    );
    p
}

fn config(dbs: &[&Path], rules: &str, eu: &Backend, us: &Backend, ap: &Backend) -> String {
    let list: Vec<String> = dbs
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!(
        "[geo]\ndatabases = [{}]\n\
         [checks.c]\ntype = \"tcp\"\nport = 1\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n\
         [pools.eu]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.1\", probe_address = \"127.0.0.1\", probe_port = {} }}]\n\
         [pools.us]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.11\", probe_address = \"127.0.0.1\", probe_port = {} }}]\n\
         [pools.ap]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.21\", probe_address = \"127.0.0.1\", probe_port = {} }}]\n\
         [names.\"{NAME}\"]\npools = [\"us\", \"eu\", \"ap\"]\npolicy = \"topology\"\nttl = 30\n{rules}",
        list.join(", "),
        eu.addr.port(),
        us.addr.port(),
        ap.addr.port(),
    )
}

fn rule(keys: &str, order: &str) -> String {
    format!("[[names.\"{NAME}\".topology]]\n{keys}\norder = [{order}]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_answered_by_country_continent_and_subdivision_with_the_database_networks_scope(
) {
    let dir = tempfile::tempdir().unwrap();
    let db = country_db(dir.path());
    let (eu, us, ap) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let rules = [
        rule("subdivision = [\"DE-BY\"]", "\"ap\""),
        rule("country = [\"DE\"]", "\"eu\""),
        rule("continent = [\"EU\", \"AS\"]", "\"ap\""),
        rule("clients = [\"10.9.0.0/16\"]", "\"eu\""),
    ]
    .concat();
    let g = start(
        &config(&[&db], &rules, &eu, &us, &ap),
        &repo().join("zones"),
    )
    .await;
    let want = |a: &str, s: u8| (vec![a.to_string()], s);
    // DE: the country rule, for the database's /24.
    assert_eq!(
        answer_for(g.dns, "198.51.100.0", 24).await,
        want("192.0.2.1", 24)
    );
    // A longer source in the same network: still the network's scope.
    assert_eq!(
        answer_for(g.dns, "198.51.100.64", 26).await,
        want("192.0.2.1", 24)
    );
    // Bavaria (DE-BY), nested in FR's /16 in US's /8: the first rule, for the /24.
    assert_eq!(
        answer_for(g.dns, "10.1.2.0", 24).await,
        want("192.0.2.21", 24)
    );
    // FR: by continent, for the /16 less DE-BY's /24 (the database's own pieces).
    let (a, scope) = answer_for(g.dns, "10.1.200.0", 24).await;
    assert_eq!(
        (a, (17..=24).contains(&scope)),
        (vec!["192.0.2.21".to_string()], true)
    );
    // JP: by continent AS; IPv6 DE by country.
    assert_eq!(
        answer_for(g.dns, "203.0.113.0", 25).await,
        want("192.0.2.21", 25)
    );
    assert_eq!(
        answer_for(g.dns, "2001:db8:1::", 48).await,
        want("192.0.2.1", 48)
    );
    // US matches no rule: the name's pools in order (us first), for the database's network.
    let (a, scope) = answer_for(g.dns, "2001:db8:200::", 48).await;
    assert_eq!((a, scope), (vec!["192.0.2.11".to_string()], 40));
    // A subnet rule wins over the database (10.9/16 is US by it).
    assert_eq!(
        answer_for(g.dns, "10.9.0.0", 16).await,
        want("192.0.2.1", 16)
    );
    // Not in the database at all: the default order, with a scope that stays outside every
    // listed network.
    let (a, scope) = answer_for(g.dns, "192.0.2.0", 24).await;
    assert_eq!(a, ["192.0.2.11"]);
    assert!((1..=24).contains(&scope), "{scope}");
    // IPv4-mapped IPv6 is the IPv4 network (the database's alias).
    assert_eq!(
        answer_for(g.dns, "::ffff:198.51.100.0", 120).await.0,
        ["192.0.2.1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_country_and_an_asn_database_are_intersected() {
    let dir = tempfile::tempdir().unwrap();
    let countries = country_db(dir.path());
    let asns = dir.path().join("asn.mmdb");
    write_mmdb(
        &asns,
        "Test-ASN",
        &[
            ("198.51.100.0/25".into(), asn(64500)),
            ("198.51.100.128/25".into(), asn(64501)),
        ],
    );
    let (eu, us, ap) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let rules = [
        rule("country = [\"DE\"]\nasn = [64501]", "\"ap\""),
        rule("country = [\"DE\"]", "\"eu\""),
    ]
    .concat();
    let g = start(
        &config(&[&countries, &asns], &rules, &eu, &us, &ap),
        &repo().join("zones"),
    )
    .await;
    let want = |a: &str, s: u8| (vec![a.to_string()], s);
    assert_eq!(
        answer_for(g.dns, "198.51.100.200", 32).await,
        want("192.0.2.21", 25)
    );
    assert_eq!(
        answer_for(g.dns, "198.51.100.0", 24).await,
        want("192.0.2.1", 25)
    );
}

#[test]
fn a_missing_or_broken_database_and_rules_without_one_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[checks.c]\ntype = \"tcp\"\nport = 80\n[pools.eu]\ncheck = \"c\"\nmembers = [{ address = \"192.0.2.1\" }]\n\
        [names.\"a.example.\"]\npools = [\"eu\"]\npolicy = \"topology\"\n\
        [[names.\"a.example.\".topology]]\ncountry = [\"DE\"]\norder = [\"eu\"]\n";
    let parse = |t: &str| gtmd::config::Config::parse(t, "g.toml", dir.path()).unwrap_err();
    let e = parse(base);
    assert!(e.to_string().contains("needs [geo] databases"), "{e}");
    let e = parse(&format!("[geo]\ndatabases = [\"none.mmdb\"]\n{base}"));
    assert_eq!(
        (e.line, e.path.as_str()),
        (Some(2), "geo.databases[0]"),
        "{e}"
    );
    assert!(e.msg.contains("cannot read"), "{e}");
    std::fs::write(dir.path().join("bad.mmdb"), b"not a database").unwrap();
    let e = parse(&format!("[geo]\ndatabases = [\"bad.mmdb\"]\n{base}"));
    assert!(e.msg.contains("not a MaxMind DB file"), "{e}");
    let both = base.replace(
        "country = [\"DE\"]",
        "country = [\"DE\"]\nclients = [\"10.0.0.0/8\"]",
    );
    let e = parse(&format!("[geo]\ndatabases = []\n{both}"));
    assert!(e.to_string().contains("name at least one"), "{e}");
    assert!(e.to_string().contains("not both"), "{e}");
}
