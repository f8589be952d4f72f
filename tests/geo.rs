//! Topology rules by place: MaxMind DB files written by MaxMind's own writer, clients sent as
//! EDNS client subnets over real UDP, answers and ECS scopes checked.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use common::geo::{asn, city_db, country, write_mmdb};
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
    let (eu, us, ap) = three_backends().await;
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
    // /explain says which rule took the client and where the databases place it.
    let url = format!("http://{}/explain?name={NAME}&client=10.1.2.0/24", g.admin);
    let e: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(e["topology"]["rule"], 0, "{e}");
    assert_eq!(e["topology"]["scope"], 24, "{e}");
    let place = e["topology"]["place"].as_str().unwrap_or_default();
    assert!(
        place.starts_with("country DE, subdivision DE-BY, continent EU"),
        "{e}"
    );
    // /status names the database in use, its type and build time.
    let st = status(g.admin).await;
    assert_eq!(st["geo"][0]["type"], "Test-Country", "{}", st["geo"]);
    assert!(st["geo"][0]["built"].as_u64().unwrap_or(0) > 1_600_000_000);
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
    let (eu, us, ap) = three_backends().await;
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

/// A database replaced on disk is taken by itself (no reload asked), read whole; a broken one
/// is refused and the last good one keeps answering; a good one again is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_database_is_taken_by_itself_and_a_broken_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    let write = |iso: &str, cont: &str| {
        let tmp = dir.path().join("new.mmdb");
        write_mmdb(
            &tmp,
            "Test-Country",
            &[("198.51.100.0/24".into(), country(cont, iso, None))],
        );
        std::fs::rename(&tmp, &db).unwrap(); // as geoipupdate does
    };
    write("DE", "EU");
    let (eu, us, ap) = three_backends().await;
    let rules = [
        rule("country = [\"DE\"]", "\"eu\""),
        rule("continent = [\"AS\"]", "\"ap\""),
    ]
    .concat();
    let path = dir.path().join("gtmd.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            repo().join("zones").display().to_string(),
            config(&[&db], &rules, &eu, &us, &ap)
        ),
    )
    .unwrap();
    let g = start_file(&path).await;
    let now = || async { answer_for(g.dns, "198.51.100.0", 24).await.0 };
    assert_eq!(now().await, ["192.0.2.1"]);
    let becomes = |want: &'static str| {
        let now = &now;
        async move {
            wait_until(std::time::Duration::from_secs(10), || async {
                now().await == [want]
            })
            .await
        }
    };
    // The database now places the network in Japan.
    write("JP", "AS");
    assert!(
        becomes("192.0.2.21").await.is_some(),
        "the new database was not taken"
    );
    let generation = status(g.admin).await["config_generation"].clone();
    // Written over in place with garbage: refused, the last good one answers.
    std::fs::write(&db, b"half a database").unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(now().await, ["192.0.2.21"]);
    assert_eq!(status(g.admin).await["config_generation"], generation);
    // A good one again.
    write("DE", "EU");
    assert!(
        becomes("192.0.2.1").await.is_some(),
        "the good database was not taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_answers_each_client_from_the_closest_healthy_pool_and_fails_over_by_distance() {
    let dir = tempfile::tempdir().unwrap();
    let db = city_db(dir.path());
    let (mut eu, us, mut ap) = three_backends().await;
    let located = config(&[&db], &rule("nearest = true", ""), &eu, &us, &ap)
        .replace("[pools.eu]\n", "[pools.eu]\nlocation = [50.11, 8.68]\n")
        .replace("[pools.us]\n", "[pools.us]\nlocation = [38.9, -77.04]\n")
        .replace("[pools.ap]\n", "[pools.ap]\nlocation = [35.68, 139.69]\n")
        .replace("order = []\n", "");
    let g = start(&located, &repo().join("zones")).await;
    let got = |a: &'static str, s: u8| {
        let dns = g.dns;
        async move { answer_for(dns, a, s).await.0 }
    };
    let (paris, boston, seoul) = (
        ("198.51.100.0", 24),
        ("203.0.113.0", 24),
        ("2001:db8:5::", 48),
    );
    assert_eq!(got(paris.0, paris.1).await, ["192.0.2.1"]);
    assert_eq!(got(boston.0, boston.1).await, ["192.0.2.11"]);
    assert_eq!(got(seoul.0, seoul.1).await, ["192.0.2.21"]);
    // Not located: the name's pools in order (us first).
    assert_eq!(got("10.0.0.0", 8).await, ["192.0.2.11"]);
    let url = format!(
        "http://{}/explain?name={NAME}&client=198.51.100.0/24",
        g.admin
    );
    let e: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(e["topology"]["nearest"], true, "{e}");
    let place = e["topology"]["place"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        place.contains("; eu 4") && place.contains("us 6"),
        "{place}"
    );
    // Frankfurt fails: Paris goes to the next nearest (Virginia, 6,200 km; Tokyo is 9,700).
    eu.refuse();
    let moved = wait_until(std::time::Duration::from_secs(5), || async {
        got(paris.0, paris.1).await == ["192.0.2.11"]
    })
    .await;
    assert!(
        moved.is_some(),
        "Paris still gets {:?}",
        got(paris.0, paris.1).await
    );
    assert_eq!(got(seoul.0, seoul.1).await, ["192.0.2.21"]);
    eu.restore().await;
    // Tokyo fails: Seoul goes to Frankfurt (8,600 km), not Virginia (11,200).
    ap.refuse();
    let moved = wait_until(std::time::Duration::from_secs(5), || async {
        got(seoul.0, seoul.1).await == ["192.0.2.1"]
    })
    .await;
    assert!(
        moved.is_some(),
        "Seoul still gets {:?}",
        got(seoul.0, seoul.1).await
    );
    assert_eq!(got(paris.0, paris.1).await, ["192.0.2.1"]);
    ap.restore().await;
}

#[test]
fn a_nearest_rule_needs_every_pool_located() {
    let dir = tempfile::tempdir().unwrap();
    let db = city_db(dir.path());
    let text = format!(
        "[geo]\ndatabases = [{:?}]\n[checks.c]\ntype = \"tcp\"\nport = 80\n\
         [pools.eu]\ncheck = \"c\"\nlocation = [50.1, 8.7]\nmembers = [{{ address = \"192.0.2.1\" }}]\n\
         [pools.us]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.2\" }}]\n\
         [names.\"a.example.\"]\npools = [\"eu\", \"us\"]\npolicy = \"topology\"\n\
         [[names.\"a.example.\".topology]]\nnearest = true\n",
        db.display().to_string()
    );
    let e = gtmd::config::Config::parse(&text, "g.toml", dir.path()).unwrap_err();
    assert_eq!(e.path, "names.\"a.example.\".topology[0].nearest", "{e}");
    assert!(e.msg.contains("[\"us\"]"), "{e}");
    let bad = text.replace("[50.1, 8.7]", "[95.0, 8.7]");
    let e = gtmd::config::Config::parse(&bad, "g.toml", dir.path()).unwrap_err();
    assert_eq!(e.path, "pools.eu.location", "{e}");
}

/// dist/examples/geo: every line of its clients.txt, on its own database and configuration
/// (its ports made ephemeral, its members probed at a test backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_geo_example_answers_every_line_of_its_clients_txt() {
    let ex = repo().join("dist/examples/geo");
    let backend = Backend::start().await;
    let text = std::fs::read_to_string(ex.join("gtmd.toml"))
        .unwrap()
        .replace("127.0.0.1:5395", "127.0.0.1:0")
        .replace("127.0.0.1:8395", "127.0.0.1:0")
        .replace("port = 8395", &format!("port = {}", backend.addr.port()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gtmd.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    for f in ["geo.mmdb", "zones/example.test.zone"] {
        std::fs::copy(ex.join(f), dir.path().join(f)).unwrap();
    }
    let g = start_file(&path).await;
    let lines = std::fs::read_to_string(ex.join("clients.txt")).unwrap();
    let mut checked = 0;
    for l in lines
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (net, want) = l.split_once(' ').unwrap();
        let (addr, len) = net.split_once('/').unwrap();
        let m = ecs_query(g.dns, "app.example.test.", addr, len.parse().unwrap()).await;
        assert_eq!(addrs(&m), [want.trim()], "clients.txt: {l}");
        checked += 1;
    }
    assert!(checked >= 4, "clients.txt holds {checked} lines");
}

/// With a capacity on every pool, a nearest rule's orders by distance are client groups of
/// the capacity spill too: the name builds, answers, and each located client still gets its
/// nearest pool while nothing is overloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_orders_are_groups_of_the_capacity_spill() {
    let dir = tempfile::tempdir().unwrap();
    let db = city_db(dir.path());
    let (eu, us, ap) = three_backends().await;
    let cfg = config(&[&db], &rule("nearest = true", ""), &eu, &us, &ap)
        .replace(
            "[pools.eu]\n",
            "[pools.eu]\nlocation = [50.11, 8.68]\ncapacity = 100\n",
        )
        .replace(
            "[pools.us]\n",
            "[pools.us]\nlocation = [38.9, -77.04]\ncapacity = 100\n",
        )
        .replace(
            "[pools.ap]\n",
            "[pools.ap]\nlocation = [35.68, 139.69]\ncapacity = 100\n",
        )
        .replace("order = []\n", "");
    let g = start(&cfg, &repo().join("zones")).await;
    assert_eq!(answer_for(g.dns, "198.51.100.0", 24).await.0, ["192.0.2.1"]);
    assert_eq!(
        answer_for(g.dns, "2001:db8:5::", 48).await.0,
        ["192.0.2.21"]
    );
    assert_eq!(answer_for(g.dns, "10.0.0.0", 8).await.0, ["192.0.2.11"]);
}

/// Databases laid out otherwise than GeoIP2's: IPinfo's plain strings (`country: "DE"`,
/// `asn: "AS64500"`), an ISP database's `traits.autonomous_system_number`, a record that is
/// not a map; an IPv6 database whose record above `::/96` holds every IPv4 address; an
/// IPv4-only database beside an IPv6 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_layouts_and_ip_versions_place_clients_as_a_lookup_does() {
    use common::geo::write_mmdb_as;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let ipinfo = dir.path().join("ipinfo.mmdb");
    write_mmdb_as(
        &ipinfo,
        "Test-IPinfo",
        &[
            (
                "198.51.100.0/24".into(),
                json!({"country": "DE", "continent": "EU", "asn": "AS64500"}),
            ),
            (
                "203.0.113.0/24".into(),
                json!({"country": "JP", "continent": "AS"}),
            ),
        ],
        6,
        true,
    );
    let wide = dir.path().join("wide.mmdb");
    write_mmdb_as(
        &wide,
        "Test-Wide",
        &[
            (
                "::/8".into(),
                json!({"traits": {"autonomous_system_number": 64501}}),
            ),
            ("2001:db8::/32".into(), country("EU", "DE", None)),
        ],
        6,
        false,
    );
    let v4 = dir.path().join("v4.mmdb");
    write_mmdb_as(
        &v4,
        "Test-V4",
        &[("192.0.2.0/24".into(), country("AS", "JP", None))],
        4,
        false,
    );
    let (eu, us, ap) = three_backends().await;
    let rules = [
        rule("asn = [64500]", "\"eu\""),
        rule("country = [\"JP\"]", "\"ap\""),
        rule("asn = [64501]", "\"ap\""),
        rule("country = [\"DE\"]", "\"eu\""),
    ]
    .concat();
    let want = |a: &str, s: u8| (vec![a.to_string()], s);
    let g = start(
        &config(&[&ipinfo], &rules, &eu, &us, &ap),
        &repo().join("zones"),
    )
    .await;
    assert_eq!(
        answer_for(g.dns, "198.51.100.0", 24).await,
        want("192.0.2.1", 24)
    );
    assert_eq!(
        answer_for(g.dns, "203.0.113.0", 24).await,
        want("192.0.2.21", 24)
    );
    drop(g);
    // Every IPv4 address is in ::/8 (no IPv4 subtree): AS 64501, for the whole /8's scope.
    let g = start(
        &config(&[&wide], &rules, &eu, &us, &ap),
        &repo().join("zones"),
    )
    .await;
    assert_eq!(answer_for(g.dns, "1.2.3.0", 24).await.0, ["192.0.2.21"]);
    assert_eq!(
        answer_for(g.dns, "2001:db8:1::", 48).await,
        want("192.0.2.1", 32)
    );
    drop(g);
    // An IPv4-only database beside an IPv6 one: /explain places an IPv6 client by the other.
    let g = start(
        &config(&[&v4, &wide], &rules, &eu, &us, &ap),
        &repo().join("zones"),
    )
    .await;
    assert_eq!(answer_for(g.dns, "192.0.2.0", 24).await.0, ["192.0.2.21"]);
    assert_eq!(answer_for(g.dns, "2001:db8::", 48).await.0, ["192.0.2.1"]);
    let url = format!("http://{}/explain?name={NAME}&client=2001:db8::1", g.admin);
    let e: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let place = e["topology"]["place"].as_str().unwrap_or_default();
    assert!(place.starts_with("country DE"), "{e}");
}

/// Names whose rules give every place the same group hold one client table (the databases
/// are walked once per build, not once per name); a name with other rules, or with the
/// same places but a subnet exception, gets its own; and each answers by its own rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_the_same_rules_share_one_table_and_keep_their_own_answers() {
    use gtmd::config::Policy;
    let dir = tempfile::tempdir().unwrap();
    let db = country_db(dir.path());
    let (eu, us, ap) = three_backends().await;
    let de = rule("country = [\"DE\"]", "\"eu\"");
    let mut cfg = config(&[&db], &de, &eu, &us, &ap);
    // Two more names: one with the same rule, one that sends Germany to "ap".
    let other = |name: &str, order: &str, extra: &str| {
        format!(
            "[names.\"{name}\"]\npools = [\"us\", \"eu\", \"ap\"]\npolicy = \"topology\"\nttl = 30\n\
             [[names.\"{name}\".topology]]\n{extra}country = [\"DE\"]\norder = [{order}]\n"
        )
    };
    cfg.push_str(&other("same.example.test.", "\"eu\"", ""));
    cfg.push_str(&other("ap.example.test.", "\"ap\"", ""));
    cfg.push_str(&other("except.example.test.", "\"eu\"", ""));
    cfg.push_str("[[names.\"except.example.test.\".topology]]\nclients = [\"198.51.100.0/25\"]\norder = [\"ap\"]\n");
    let parsed = gtmd::config::Config::parse(&cfg, "g.toml", dir.path()).unwrap();
    let table = |n: &str| {
        let b = parsed
            .names
            .iter()
            .find(|b| b.name.to_ascii() == n)
            .unwrap();
        match &b.policy {
            Policy::Topology { table, .. } => table.clone(),
            p => panic!("{p:?}"),
        }
    };
    let (app, same) = (table(NAME), table("same.example.test."));
    assert!(
        std::sync::Arc::ptr_eq(&app, &same),
        "equal rules, one table"
    );
    let (ap_t, except) = (table("ap.example.test."), table("except.example.test."));
    // "ap" for Germany is still group 1 of its own name: the same table serves.
    assert!(
        std::sync::Arc::ptr_eq(&app, &ap_t),
        "same groups, one table"
    );
    assert!(!std::sync::Arc::ptr_eq(&app, &except), "a subnet exception");
    let g = start(&cfg, &repo().join("zones")).await;
    let ask =
        |n: &'static str| async move { addrs(&ecs_query(g.dns, n, "198.51.100.128", 25).await) };
    assert_eq!(ask(NAME).await, ["192.0.2.1"]);
    assert_eq!(ask("same.example.test.").await, ["192.0.2.1"]);
    assert_eq!(ask("ap.example.test.").await, ["192.0.2.21"]);
    assert_eq!(ask("except.example.test.").await, ["192.0.2.1"]);
    let low = addrs(&ecs_query(g.dns, "except.example.test.", "198.51.100.0", 25).await);
    assert_eq!(low, ["192.0.2.21"], "the exception wins over the place");
}
