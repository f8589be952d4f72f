//! The latency `/status` shows for an ICMP check is the echoes' round trip (what `max_rtt`
//! is held to), not the probe's duration, which includes the spacing between echoes.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_icmp_check_reports_the_round_trip_not_the_time_spent_sending_echoes() {
    // Five echoes 10 ms apart: a probe lasts at least 40 ms; a loopback round trip is far less.
    let config = "[checks.ping]\ntype = \"icmp\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\ncount = 5\n\
                  [pools.p]\ncheck = \"ping\"\nmembers = [{ name = \"m\", address = \"192.0.2.10\", probe_address = \"127.0.0.1\" }]\n\
                  [names.\"app.example.test.\"]\npools = [\"p\"]\n";
    let g = start(config, &repo().join("zones")).await;
    wait_until(Duration::from_secs(10), || async {
        member(g.admin, "m").await["probes"].as_u64().unwrap_or(0) >= 3
    })
    .await
    .expect("three probes within 10 s");
    let s = member(g.admin, "m").await;
    assert_eq!(s["last_ok"], true, "{s}");
    let ms = s["last_latency_ms"].as_f64().unwrap();
    assert!(
        ms < 40.0,
        "last_latency_ms {ms} is the probe's duration: {s}"
    );
}
