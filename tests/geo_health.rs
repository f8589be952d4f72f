//! Rules by place under health changes: a `nearest` name failing over by distance while a
//! stream of client queries runs (every answer checked against the detection bound and the
//! recovery objective's TTLs), and a country-steered name whose client groups' measured
//! traffic decides the capacity spill. MaxMind DB files written by MaxMind's own writer,
//! real UDP, real TCP backends stopped and started.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::geo::{city_db, country, write_mmdb};
use common::*;
use hickory_proto::op::ResponseCode;

const NAME: &str = "app.example.test.";
/// Probes every 100 ms with an 80 ms timeout, down after 1 failure: a failed pool is out of
/// the answers within interval (+10% jitter) + timeout, plus time to publish and deliver (the
/// bound of `tests/drill.rs`).
const DETECTION: Duration = Duration::from_millis(110 + 80 + 400);

fn pool(name: &str, at: &str, address: &str, b: &Backend, extra: &str) -> String {
    format!(
        "[pools.{name}]\ncheck = \"c\"\nlocation = {at}\n{extra}members = [{{ address = \"{address}\", \
         probe_address = \"127.0.0.1\", probe_port = {} }}]\n",
        b.addr.port()
    )
}

const CHECK: &str = "[checks.c]\ntype = \"tcp\"\nport = 1\ninterval = \"100ms\"\ntimeout = \"80ms\"\nrise = 1\nfall = 1\n";

/// One answer the load saw: when, the rcode, the addresses and their TTL.
struct Seen {
    at: Instant,
    rcode: Option<ResponseCode>,
    addrs: Vec<String>,
    ttl: Option<u32>,
}

/// Asks for the name as a client in Paris (ECS 198.51.100.0/24), one query after another,
/// until `stop`.
async fn paris_load(dns: SocketAddr, seen: Arc<Mutex<Vec<Seen>>>, stop: Arc<AtomicBool>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut id = 0u16;
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        let q = {
            use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
            let mut m = query_msg(NAME, hickory_proto::rr::RecordType::A, true);
            let s = ClientSubnet::new("198.51.100.0".parse().unwrap(), 24, 0);
            m.edns
                .as_mut()
                .unwrap()
                .options_mut()
                .insert(EdnsOption::Subnet(s));
            m
        };
        let m = udp_ask(&sock, dns, q, id).await;
        seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            rcode: m.as_ref().map(|m| m.metadata.response_code),
            addrs: m.as_ref().map(addrs).unwrap_or_default(),
            ttl: m.as_ref().and_then(|m| m.answers.first().map(|r| r.ttl)),
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Frankfurt fails under a steady stream of Paris clients: every query is answered, none names
/// Frankfurt later than the detection bound after it failed, each goes to the next nearest
/// (Virginia, never Tokyo), with the degraded TTL the recovery objective gives while it is
/// down and the healthy one before and after; Frankfurt takes them back once it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_fails_over_by_distance_within_the_detection_bound_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let db = city_db(dir.path());
    let (mut eu, us, ap) = three_backends().await;
    let config = format!(
        "[geo]\ndatabases = [{:?}]\n{CHECK}{}{}{}\
         [names.\"{NAME}\"]\npools = [\"us\", \"eu\", \"ap\"]\npolicy = \"topology\"\nttl = 30\n\
         recover_within = \"10s\"\n[[names.\"{NAME}\".topology]]\nnearest = true\n",
        db.display().to_string(),
        pool("eu", "[50.11, 8.68]", "192.0.2.1", &eu, ""),
        pool("us", "[38.9, -77.04]", "192.0.2.11", &us, ""),
        pool("ap", "[35.68, 139.69]", "192.0.2.21", &ap, ""),
    );
    let g = start(&config, &repo().join("zones")).await;
    let paris = || async { addrs(&ecs_query(g.dns, NAME, "198.51.100.0", 24).await) };
    wait_until(Duration::from_secs(5), || async {
        paris().await == ["192.0.2.1"]
    })
    .await
    .expect("Paris is answered from Frankfurt");
    let rec = status(g.admin).await["names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == NAME)
        .expect("the name in /status")["recovery"]
        .clone();
    let (ttl, degraded) = (
        rec["ttl"].as_u64().unwrap(),
        rec["degraded_ttl"].as_u64().unwrap(),
    );
    assert!(degraded < ttl, "{rec}");

    let (seen, stop) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicBool::new(false)),
    );
    let load = tokio::spawn(paris_load(g.dns, seen.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    eu.refuse();
    let failed = Instant::now();
    wait_until(Duration::from_secs(5), || async {
        paris().await == ["192.0.2.11"]
    })
    .await
    .expect("Paris moves to Virginia");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    eu.restore().await;
    let restored = Instant::now();
    wait_until(Duration::from_secs(5), || async {
        paris().await == ["192.0.2.1"]
    })
    .await
    .expect("Paris comes back to Frankfurt");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let seen = seen.lock().unwrap();
    let first = |from: Instant, a: &str| {
        seen.iter()
            .find(|s| s.at > from && s.addrs == [a])
            .map(|s| s.at - from)
    };
    let (moved, back) = (first(failed, "192.0.2.11"), first(restored, "192.0.2.1"));
    println!(
        "{} answers; Paris moved to Virginia {moved:?} after Frankfurt failed, back {back:?} after it recovered",
        seen.len()
    );
    let bad: Vec<String> = seen
        .iter()
        .filter(|s| s.rcode != Some(ResponseCode::NoError) || s.addrs.len() != 1)
        .map(|s| format!("{:?} {:?} at {:?}", s.rcode, s.addrs, s.at - failed))
        .take(5)
        .collect();
    assert!(bad.is_empty(), "unanswered or wrong: {bad:?}");
    assert!(
        seen.iter().all(|s| s.addrs != ["192.0.2.21"]),
        "Tokyo is farther"
    );
    let late: Vec<Duration> = seen
        .iter()
        .filter(|s| s.at > failed + DETECTION && s.at < restored && s.addrs == ["192.0.2.1"])
        .map(|s| s.at - failed)
        .take(5)
        .collect();
    assert!(
        late.is_empty(),
        "Frankfurt answered after it failed: {late:?}"
    );
    assert!(
        moved.is_some_and(|m| m <= DETECTION),
        "moved after {moved:?}"
    );
    // The TTLs: the healthy one before the failure, the degraded one while Virginia stands in.
    let ttls = |keep: &dyn Fn(&Seen) -> bool| {
        let mut t: Vec<u32> = seen
            .iter()
            .filter(|s| keep(s))
            .filter_map(|s| s.ttl)
            .collect();
        t.dedup();
        t
    };
    assert_eq!(ttls(&|s| s.at < failed), [ttl as u32]);
    assert_eq!(
        ttls(&|s| s.at > failed && s.at < restored && s.addrs == ["192.0.2.11"]),
        [degraded as u32]
    );
}

/// The client groups of country rules carry their measured traffic into the capacity spill:
/// German clients (unmatched, 40% of queries) use eu, American ones (40%) us, Japanese ones
/// (20%) ap, with capacities 60, 60 and 40. When us fails, its clients split by the spare
/// capacity left by the others' measured traffic (eu 20, ap 20: 50:50), not by equal shares
/// (which would give 80:20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_groups_measured_traffic_decides_the_capacity_spill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    write_mmdb(
        &db,
        "Test-Country",
        &[
            ("10.0.0.0/8".into(), country("EU", "DE", None)),
            ("198.51.100.0/24".into(), country("NA", "US", None)),
            ("203.0.113.0/24".into(), country("AS", "JP", None)),
        ],
    );
    let (eu, mut us, ap) = three_backends().await;
    let config = format!(
        "[geo]\ndatabases = [{:?}]\n{CHECK}{}{}{}\
         [names.\"{NAME}\"]\npools = [\"eu\", \"us\", \"ap\"]\npolicy = \"topology\"\n\
         [[names.\"{NAME}\".topology]]\ncountry = [\"US\"]\norder = [\"us\"]\n\
         [[names.\"{NAME}\".topology]]\ncontinent = [\"AS\"]\norder = [\"ap\"]\n",
        db.display().to_string(),
        pool("eu", "[50.11, 8.68]", "192.0.2.1", &eu, "capacity = 60\n"),
        pool("us", "[38.9, -77.04]", "192.0.2.2", &us, "capacity = 60\n"),
        pool("ap", "[35.68, 139.69]", "192.0.2.3", &ap, "capacity = 40\n"),
    );
    let g = start(&config, &repo().join("zones")).await;
    let clients = ["10.0.0.1", "198.51.100.1", "203.0.113.1"];
    spill_follows_measured_traffic(&g, NAME, clients, &mut us).await;
}
