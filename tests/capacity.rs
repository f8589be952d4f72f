//! Capacity-aware spill end to end: a failover name over three pools with capacities, real
//! backends refused one after the other, and the real split of 10,000 queries compared with
//! the computed one; the overload is in /explain, the metrics and an alert.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;

const NAME: &str = "app.example.test.";

/// Sends `n` A queries for NAME over one socket and counts each answer's address.
async fn split(dns: SocketAddr, n: u16) -> HashMap<String, u32> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for id in 0..n {
        let m = udp_ask(&sock, dns, query_msg(NAME, RecordType::A, true), id)
            .await
            .expect("an answer within 2 s");
        let a = addrs(&m);
        assert_eq!(a.len(), 1, "one address per answer: {a:?}");
        *seen.entry(a[0].clone()).or_default() += 1;
    }
    seen
}

fn percent(seen: &HashMap<String, u32>, a: &str, n: u16) -> f64 {
    f64::from(seen.get(a).copied().unwrap_or(0)) * 100.0 / f64::from(n)
}

async fn explain(admin: SocketAddr) -> serde_json::Value {
    let body = gtmd::ops::ctl::request(admin, "GET", &format!("/explain?name={NAME}"), None, None)
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pool_spills_by_spare_capacity_and_an_overload_is_reported() {
    let (mut eu, mut us, ap) = three_backends().await;
    let hook = Receiver::start(200).await;
    let pool_of = |n: &str, a: &str, b: &Backend| {
        format!(
            "[{{ address = \"{a}\", name = \"{n}\", probe_address = \"127.0.0.1\", probe_port = {} }}]",
            b.addr.port()
        )
    };
    let config = format!(
        "[alerts]\nwebhook = \"{}\"\n\
         [checks.web]\ntype = \"http\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [pools.eu]\ncheck = \"web\"\ncapacity = 100\nmembers = {}\n\
         [pools.us]\ncheck = \"web\"\ncapacity = 80\nmembers = {}\n\
         [pools.ap]\ncheck = \"web\"\ncapacity = 40\nmembers = {}\n\
         [names.\"{NAME}\"]\npools = [\"eu\", \"us\", \"ap\"]\npolicy = \"failover\"\n",
        hook.url,
        pool_of("eu-1", "192.0.2.1", &eu),
        pool_of("us-1", "192.0.2.2", &us),
        pool_of("ap-1", "192.0.2.3", &ap),
    );
    let g = start(&config, &repo().join("zones")).await;
    const N: u16 = 10_000;
    // Everything up: eu, first in order, carries it all, at 100% of its capacity.
    assert_eq!(a_of(g.dns, NAME).await, ["192.0.2.1"]);
    let e = explain(g.admin).await;
    assert!(e["overload"].is_null(), "{e}");
    assert_eq!(e["capacity"][0]["load"], 100.0, "{e}");

    // eu fails: its traffic goes 2:1 to us and ap by capacity (80 and 40), not all to us.
    eu.refuse();
    wait_until(Duration::from_secs(3), || async {
        a_of(g.dns, NAME).await != ["192.0.2.1"]
    })
    .await
    .expect("eu leaves the answer");
    let seen = split(g.dns, N).await;
    let (pus, pap) = (
        percent(&seen, "192.0.2.2", N),
        percent(&seen, "192.0.2.3", N),
    );
    println!("eu down: us {pus:.2}%, ap {pap:.2}% of {N} answers");
    assert!((pus - 200.0 / 3.0).abs() <= 2.0, "us got {pus}%");
    assert!((pap - 100.0 / 3.0).abs() <= 2.0, "ap got {pap}%");
    assert_eq!(percent(&seen, "192.0.2.1", N), 0.0);
    // 100% of the traffic on 120% of capacity: both need 83% of theirs, no overload.
    let e = explain(g.admin).await;
    assert!(e["overload"].is_null(), "{e}");

    // us fails too: ap alone would need 250% of its capacity. Said in /explain, the metric
    // and an alert.
    us.refuse();
    wait_until(Duration::from_secs(3), || async {
        member(g.admin, "us-1").await["state"] == "down"
    })
    .await
    .expect("us goes down");
    for _ in 0..50 {
        assert_eq!(a_of(g.dns, NAME).await, ["192.0.2.3"]);
    }
    let e = explain(g.admin).await;
    let words = e["overload"].as_str().unwrap_or_default();
    assert!(
        words.starts_with("ap would need 250% of its capacity"),
        "{e}"
    );
    let ratio = metric(
        g.admin,
        "gtmd_pool_load_ratio{name=\"app.example.test.\",pool=\"ap\"}",
    )
    .await;
    assert_eq!(ratio, Some(2.5));
    wait_until(Duration::from_secs(3), || async {
        !hook.events("pool_overloaded").is_empty()
    })
    .await
    .expect("an overload alert");
    let a = &hook.events("pool_overloaded")[0];
    assert_eq!(a["pool"], "ap");
    assert_eq!(a["reason"], "ap would need 250% of its capacity");

    // us returns: the overload ends, with an alert.
    us.restore().await;
    wait_until(Duration::from_secs(3), || async {
        !hook.events("pool_within_capacity").is_empty()
    })
    .await
    .expect("the overload ends");
    assert_eq!(
        hook.events("pool_overloaded").len(),
        1,
        "one alert per overload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_name_spills_by_the_measured_traffic_of_its_client_groups() {
    let (eu, mut us, ap) = three_backends().await;
    let pool_of = |a: &str, b: &Backend| {
        format!(
            "[{{ address = \"{a}\", probe_address = \"127.0.0.1\", probe_port = {} }}]",
            b.addr.port()
        )
    };
    // eu clients (unmatched, 40% of queries) use eu, us clients (40%) us, ap clients (20%)
    // ap; capacities 60, 60, 40.
    let config = format!(
        "[checks.web]\ntype = \"http\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [pools.eu]\ncheck = \"web\"\ncapacity = 60\nmembers = {}\n\
         [pools.us]\ncheck = \"web\"\ncapacity = 60\nmembers = {}\n\
         [pools.ap]\ncheck = \"web\"\ncapacity = 40\nmembers = {}\n\
         [names.\"{NAME}\"]\npools = [\"eu\", \"us\", \"ap\"]\npolicy = \"topology\"\n\
         [[names.\"{NAME}\".topology]]\nclients = [\"198.51.100.0/24\"]\norder = [\"us\"]\n\
         [[names.\"{NAME}\".topology]]\nclients = [\"203.0.113.0/24\"]\norder = [\"ap\"]\n",
        pool_of("192.0.2.1", &eu),
        pool_of("192.0.2.2", &us),
        pool_of("192.0.2.3", &ap),
    );
    let g = start(&config, &repo().join("zones")).await;
    let clients = ["10.0.0.1", "198.51.100.1", "203.0.113.1"];
    spill_follows_measured_traffic(&g, NAME, clients, &mut us).await;
    let e = explain(g.admin).await;
    assert!(e["overload"].is_null(), "eu and ap are exactly full: {e}");
}
