//! Members that are domain names (load balancers known by name): the bound name answers one
//! CNAME among the healthy ones, and each member is probed at the addresses its name resolves
//! to. A second gtmd serves the load balancers' zone and is the resolver for their names, so
//! the test can make a name stop resolving.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use hickory_proto::rr::{RData, RecordType};

const NAME: &str = "www.app.test.";

/// The zone of the load balancers' names, lb.test., with `records` (one-second TTLs, and a
/// one-second negative TTL, so that a change is seen within a second).
fn lb_zone(dir: &Path, records: &str) {
    std::fs::write(
        dir.join("lb.test.zone"),
        format!(
            "$ORIGIN lb.test.\n$TTL 1\n@ SOA ns hostmaster 1 3600 600 86400 1\n@ NS ns\nns A 127.0.0.1\n{records}"
        ),
    )
    .unwrap();
}

/// The gtmd that serves lb.test., from a config file (so that a reload reads its zones again).
async fn lb_server(dir: &Path) -> Gtmd {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    lb_zone(&zones, "nlb-1 A 127.0.0.1\nnlb-2 A 127.0.0.1\n");
    let config = dir.join("gtmd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            zones.display().to_string()
        ),
    )
    .unwrap();
    start_file(&config).await
}

/// The zone of the bound name, app.test.
fn app_zones(dir: &Path) -> std::path::PathBuf {
    let zones = dir.join("app-zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(
        zones.join("app.test.zone"),
        "$ORIGIN app.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n",
    )
    .unwrap();
    zones
}

/// gtmd with www.app.test. bound to two load balancers by name (failover: eu, then us),
/// probed over HTTP at the ports of `eu` and `us`, resolving their names at `resolver`.
async fn gtmd_by_name(dir: &Path, resolver: SocketAddr, eu: &Backend, us: &Backend) -> Gtmd {
    let config = format!(
        "[probe]\nresolvers = [\"{resolver}\"]\n\
         [checks.web]\ntype = \"http\"\npath = \"/health\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 2\nrise = 2\n\
         [pools.eu]\ncheck = \"web\"\nmembers = [{{ cname = \"nlb-1.lb.test.\", name = \"eu-lb\", probe_port = {} }}]\n\
         [pools.us]\ncheck = \"web\"\nmembers = [{{ cname = \"nlb-2.lb.test.\", name = \"us-lb\", probe_port = {} }}]\n\
         [names.\"{NAME}\"]\npools = [\"eu\", \"us\"]\npolicy = \"failover\"\nttl = 20\n",
        eu.addr.port(),
        us.addr.port()
    );
    start(&config, &app_zones(dir)).await
}

/// The CNAME targets gtmd answers for NAME and `rtype`.
async fn targets(dns: SocketAddr, rtype: RecordType) -> Vec<String> {
    let m = udp(dns, &query_msg(NAME, rtype, true)).await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(n) => Some(n.0.to_string()),
            _ => None,
        })
        .collect()
}

/// Waits until NAME answers `want` as its CNAME; returns how long that took.
async fn until_target(dns: SocketAddr, want: &str, limit: Duration) -> Duration {
    let took = wait_until(limit, || async move {
        targets(dns, RecordType::A).await == [want]
    })
    .await;
    match took {
        Some(t) => t,
        None => panic!(
            "{NAME} still answers {:?}, not {want}, after {limit:?}",
            targets(dns, RecordType::A).await
        ),
    }
}

fn reload(admin: SocketAddr) {
    if let Err(e) = gtmd::ops::ctl::request(admin, "POST", "/reload", None, None) {
        panic!("reload: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_known_by_name_leaves_the_answer_when_its_backend_fails_or_its_name_stops_resolving(
) {
    let dir = tempfile::tempdir().unwrap();
    let lb = lb_server(dir.path()).await;
    let (mut eu, us) = (Backend::start().await, Backend::start().await);
    let g = gtmd_by_name(dir.path(), lb.dns, &eu, &us).await;
    // Both up: the first pool's name, for every type, as one CNAME.
    for t in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::CNAME,
    ] {
        assert_eq!(targets(g.dns, t).await, ["nlb-1.lb.test."], "{t}");
    }
    let m = udp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
    assert!(m.authoritative);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].ttl, 20);
    let eu_status = member(g.admin, "eu-lb").await;
    assert_eq!(eu_status["cname"], "nlb-1.lb.test.");
    assert!(eu_status["address"].is_null(), "{eu_status}");
    assert_eq!(eu_status["state"], "up", "{eu_status}");
    assert!(
        eu.hits.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "eu's backend was probed at the address its name resolves to"
    );

    // The backend behind eu's load balancer fails: us answers within the detection bound
    // (interval 200 ms × fall 2 + timeout 150 ms, with jitter and a query's polling).
    eu.refuse();
    let took = until_target(g.dns, "nlb-2.lb.test.", Duration::from_secs(3)).await;
    println!("backend refused: the answer moved in {took:?}");
    let m = udp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
    assert_eq!(m.answers[0].ttl, 5, "degraded TTL while a member is down");
    eu.restore().await;
    until_target(g.dns, "nlb-1.lb.test.", Duration::from_secs(3)).await;

    // eu's load balancer name stops resolving (NXDOMAIN): it leaves the answer within its
    // negative TTL (1 s) plus the detection bound, with the reason in /status.
    lb_zone(&dir.path().join("zones"), "nlb-2 A 127.0.0.1\n");
    reload(lb.admin);
    let took = until_target(g.dns, "nlb-2.lb.test.", Duration::from_secs(4)).await;
    println!("name stopped resolving: the answer moved in {took:?}");
    let s = member(g.admin, "eu-lb").await;
    assert_eq!(s["state"], "down", "{s}");
    let err = s["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("nlb-1.lb.test. does not resolve: NXDOMAIN"),
        "{err}"
    );
    let explain =
        gtmd::ops::ctl::request(g.admin, "GET", &format!("/explain?name={NAME}"), None, None)
            .unwrap();
    assert!(explain.contains("does not resolve: NXDOMAIN"), "{explain}");
    assert!(explain.contains("\"rtype\":\"CNAME\""), "{explain}");
    assert!(
        explain.contains("\"names\":[\"nlb-2.lb.test.\"]"),
        "{explain}"
    );

    // It resolves again (to a new address, whose backend is up): back in the answer.
    lb_zone(
        &dir.path().join("zones"),
        "nlb-1 A 127.0.0.1\nnlb-2 A 127.0.0.1\n",
    );
    reload(lb.admin);
    until_target(g.dns, "nlb-1.lb.test.", Duration::from_secs(4)).await;

    // Both pools down (fail-open): each name half the time, one per answer.
    eu.refuse();
    drop(us);
    wait_until(Duration::from_secs(3), || async {
        status(g.admin).await["names"][0]["all_down"] == true
    })
    .await
    .expect("all down within 3 s");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let t = targets(g.dns, RecordType::A).await;
        assert_eq!(t.len(), 1, "{t:?}");
        seen.insert(t[0].clone());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_carries_one_cname_and_an_in_zone_target_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Backend::start().await, Backend::start().await);
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(
        zones.join("app.test.zone"),
        "$ORIGIN app.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n\
         lb-a A 192.0.2.10\nlb-b A 192.0.2.11\n",
    )
    .unwrap();
    let config = format!(
        "[checks.web]\ntype = \"http\"\npath = \"/health\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         [pools.p]\ncheck = \"web\"\nmembers = [{{ cname = \"lb-a.app.test.\", probe_address = \"127.0.0.1\", probe_port = {} }}, {{ cname = \"lb-b.app.test.\", probe_address = \"127.0.0.1\", probe_port = {} }}]\n\
         [names.\"{NAME}\"]\npools = [\"p\"]\npolicy = \"weighted\"\n",
        a.addr.port(),
        b.addr.port()
    );
    let g = start_with(&config, "allow_transfer = [\"127.0.0.0/8\"]", &zones).await;
    // The target is in the zone: the answer follows it, as for a CNAME in the zone file.
    let m = udp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
    assert_eq!(m.answers.len(), 2, "{m:?}");
    let cname = match &m.answers[0].data {
        RData::CNAME(n) => n.0.to_string(),
        d => panic!("{d:?}"),
    };
    let want = if cname == "lb-a.app.test." {
        "192.0.2.10"
    } else {
        "192.0.2.11"
    };
    assert_eq!(addrs(&m), [want]);
    // A transfer carries one CNAME at the name (a zone cannot hold two).
    let out = std::process::Command::new("dig")
        .args([
            "+noall",
            "+answer",
            "-p",
            &g.dns.port().to_string(),
            "@127.0.0.1",
            "app.test.",
            "AXFR",
        ])
        .output()
        .expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let cnames: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(NAME) && l.contains("CNAME"))
        .collect();
    assert_eq!(cnames.len(), 1, "{text}");
}
