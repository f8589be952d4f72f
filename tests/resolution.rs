//! Members that are domain names when their resolver fails: the addresses last resolved are
//! probed on (serve-stale, RFC 8767), `/status` says that resolution fails, at which
//! resolver and why, and an alert says so when it starts and when it ends. The resolver is
//! a second gtmd serving the load balancers' zone, stopped and started again at the same
//! address.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::{RData, RecordType};

const NAME: &str = "www.app.test.";

/// A gtmd at `at` serving lb.test. (nlb-1 and nlb-2 at 127.0.0.1, one-second TTLs).
async fn lb_server(dir: &Path, at: SocketAddr) -> Gtmd {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(
        zones.join("lb.test.zone"),
        "$ORIGIN lb.test.\n$TTL 1\n@ SOA ns hostmaster 1 3600 600 86400 1\n@ NS ns\nns A 127.0.0.1\n\
         nlb-1 A 127.0.0.1\nnlb-2 A 127.0.0.1\n",
    )
    .unwrap();
    let config = dir.join("lb.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"{at}\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            zones.display().to_string()
        ),
    )
    .unwrap();
    // The address was free a moment ago, or was the previous server's: retry a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Config::load(&config) {
            Ok(cfg) if Listeners::bind(&cfg).await.is_ok() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            r => panic!("cannot listen at {at} again: {:?}", r.err()),
        }
    }
    start_file(&config).await
}

use gtmd::app::Listeners;
use gtmd::config::Config;

/// The CNAME targets gtmd answers for NAME.
async fn targets(dns: SocketAddr) -> Vec<String> {
    let m = udp(dns, &query_msg(NAME, RecordType::A, true)).await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(n) => Some(n.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_known_by_name_stays_in_on_its_last_addresses_while_its_resolver_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let at = free_addr();
    let lb = lb_server(dir.path(), at).await;
    let (eu, us) = (Backend::start().await, Backend::start().await);
    let hook = Receiver::start(200).await;
    let zones = dir.path().join("app-zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(
        zones.join("app.test.zone"),
        "$ORIGIN app.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n",
    )
    .unwrap();
    let config = format!(
        "[probe]\nresolvers = [\"{at}\"]\n[alerts]\nwebhook = \"{}\"\nrate = 600\nburst = 100\n\
         [checks.web]\ntype = \"http\"\npath = \"/health\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 2\nrise = 2\n\
         [pools.eu]\ncheck = \"web\"\nmembers = [{{ cname = \"nlb-1.lb.test.\", name = \"eu-lb\", probe_port = {} }}]\n\
         [pools.us]\ncheck = \"web\"\nmembers = [{{ cname = \"nlb-2.lb.test.\", name = \"us-lb\", probe_port = {} }}]\n\
         [names.\"{NAME}\"]\npools = [\"eu\", \"us\"]\npolicy = \"failover\"\nttl = 20\n",
        hook.url,
        eu.addr.port(),
        us.addr.port()
    );
    let g = start(&config, &zones).await;
    assert_eq!(targets(g.dns).await, ["nlb-1.lb.test."]);

    // The resolver stops. Past the names' TTL (1 s), resolution fails: /status says so,
    // naming the resolver, and the member stays up on the addresses last resolved.
    drop(lb);
    let failing = wait_until(Duration::from_secs(10), || async {
        member(g.admin, "eu-lb").await["resolution_error"].is_string()
    })
    .await;
    let s = member(g.admin, "eu-lb").await;
    assert!(failing.is_some(), "no resolution error in /status: {s}");
    let why = s["resolution_error"].as_str().unwrap();
    assert!(
        why.contains(&format!("resolving nlb-1.lb.test. at {at} fails")),
        "{why}"
    );
    assert!(why.contains("probing the addresses resolved"), "{why}");
    // Many probes later (each resolving again and failing), still up and answered.
    let probes = s["probes"].as_u64().unwrap();
    let _ = wait_until(Duration::from_secs(10), || async {
        member(g.admin, "eu-lb").await["probes"].as_u64().unwrap() >= probes + 8
    })
    .await;
    let s = member(g.admin, "eu-lb").await;
    assert_eq!(s["state"], "up", "{s}");
    assert!(s["resolution_error"].is_string(), "{s}");
    // /status still gives the addresses last resolved (the status page shows them).
    assert_eq!(s["resolved"], serde_json::json!(["127.0.0.1"]), "{s}");
    assert_eq!(targets(g.dns).await, ["nlb-1.lb.test."]);
    let alerts = hook.events("resolution_failing");
    let eu_alerts: Vec<_> = alerts.iter().filter(|a| a["member"] == "eu-lb").collect();
    assert_eq!(eu_alerts.len(), 1, "{alerts:?}");
    assert!(eu_alerts[0]["error"]
        .as_str()
        .unwrap()
        .contains(&at.to_string()));

    // The resolver is back: the error clears, and an alert says so.
    let _lb = lb_server(dir.path(), at).await;
    wait_until(Duration::from_secs(10), || async {
        member(g.admin, "eu-lb").await["resolution_error"].is_null()
    })
    .await
    .expect("resolution recovers within 10 s");
    wait_until(Duration::from_secs(10), || async {
        hook.events("resolution_recovered")
            .iter()
            .any(|a| a["member"] == "eu-lb")
    })
    .await
    .expect("a resolution_recovered alert");
    assert_eq!(member(g.admin, "eu-lb").await["state"], "up");
}
