//! The degraded TTL derived from `recover_within`: while a member is down, a name is answered
//! with a short TTL, so that a resolver asks again soon and traffic returns to the member
//! quickly once it recovers, whatever room a long objective leaves. Real UDP queries (dig)
//! to a gtmd on loopback, with a real HTTP backend stopped and started.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const NAME: &str = "app.example.test.";

/// The TTL and addresses of `NAME`'s A answer, as dig prints them.
fn dig_a(dns: SocketAddr) -> (Vec<u32>, Vec<String>) {
    let out = std::process::Command::new("dig")
        .args([
            "+noall",
            "+answer",
            "+time=2",
            "+tries=1",
            "-p",
            &dns.port().to_string(),
            "@127.0.0.1",
            NAME,
            "A",
        ])
        .output()
        .expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ttls = Vec::new();
    let mut addrs = Vec::new();
    for l in text.lines().filter(|l| l.starts_with(NAME)) {
        let f: Vec<&str> = l.split_whitespace().collect();
        ttls.push(f[1].parse().expect("a TTL"));
        addrs.push(f[4].to_string());
    }
    addrs.sort();
    (ttls, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_objective_still_answers_a_short_ttl_while_a_member_is_down() {
    let a = Backend::start().await;
    let mut b = Backend::start().await;
    // Detection 110 ms + 80 ms: recover_within 30 s leaves a TTL of 28 s.
    let config = format!(
        "{}recover_within = \"30s\"\n",
        web_config(&[&a, &b], "", NAME)
    );
    let g = start(&config, &repo().join("zones")).await;
    let both = vec!["192.0.2.10".to_string(), "192.0.2.11".to_string()];
    let (ttls, addrs) = dig_a(g.dns);
    assert_eq!(addrs, both);
    assert!(ttls.iter().all(|&t| t == 28), "healthy TTL {ttls:?}");

    b.refuse();
    let degraded = wait_until(Duration::from_secs(10), || async {
        dig_a(g.dns).1 == ["192.0.2.10"]
    })
    .await;
    assert!(degraded.is_some(), "m1 never left the answers");
    let (ttls, _) = dig_a(g.dns);
    assert!(
        ttls.iter().all(|&t| t == 5),
        "TTL while degraded {ttls:?}, not the short default of 5 s"
    );
    let s = status(g.admin).await;
    let rec = &s["names"][0]["recovery"];
    assert_eq!(rec["degraded_ttl"], 5, "{rec}");
    assert_eq!(rec["ttl"], 28, "{rec}");
    assert!(rec["worst_return"].as_f64().unwrap() <= 6.5, "{rec}");
    assert_eq!(rec["meets_objective"], true, "{rec}");
    let words = rec["words"].as_str().unwrap();
    assert!(words.contains("degraded_ttl 5s"), "{words}");
    assert!(words.contains("(0.17 while degraded)"), "{words}");

    b.restore().await;
    let back = wait_until(Duration::from_secs(10), || async { dig_a(g.dns).1 == both }).await;
    assert!(back.is_some(), "m1 never returned");
    let (ttls, _) = dig_a(g.dns);
    assert!(ttls.iter().all(|&t| t == 28), "healthy TTL again {ttls:?}");
}
