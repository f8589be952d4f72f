//! Steering policies end to end: real HTTP backends that the tests break and restore, and
//! real DNS queries (from many client addresses) watching shares, failover, all-down
//! behaviours and TTLs follow.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const NAME: &str = "app.example.test.";

/// Pools of HTTP members (`(pool, weight, [(address, backend)])`) and the bound name's table
/// body `name`. Checks run every 100 ms and fall or rise after one result.
/// A pool: its name, its weight and its members as (address, backend).
type PoolSpec<'a> = (&'a str, u32, &'a [(&'a str, &'a Backend)]);

fn config(pools: &[PoolSpec], name: &str) -> String {
    let mut t = String::from(
        "[checks.web]\ntype = \"http\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n",
    );
    for (pool, weight, members) in pools {
        let ms: Vec<String> = members
            .iter()
            .map(|(a, b)| {
                format!(
                    "{{ address = \"{a}\", name = \"{a}\", probe_address = \"127.0.0.1\", probe_port = {} }}",
                    b.addr.port()
                )
            })
            .collect();
        t += &format!(
            "[pools.{pool}]\ncheck = \"web\"\nweight = {weight}\nmembers = [{}]\n",
            ms.join(", ")
        );
    }
    t + &format!("[names.\"{NAME}\"]\n{name}\n")
}

/// Sends `n` A queries over UDP, from client addresses spread over 127.0.0.0/8, and counts
/// the answers by address set.
async fn shares(dns: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut socks = Vec::new();
    for i in 0..50u8 {
        let s = tokio::net::UdpSocket::bind((std::net::Ipv4Addr::new(127, 1, i, 2 + i), 0))
            .await
            .unwrap();
        socks.push(s);
    }
    let q = query_msg(NAME, RecordType::A, true).to_vec().unwrap();
    let mut out = HashMap::new();
    let mut buf = [0u8; 1500];
    for i in 0..n {
        let s = &socks[i % socks.len()];
        s.send_to(&q, dns).await.unwrap();
        let len = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf))
            .await
            .expect("an answer within 2 s")
            .unwrap();
        let m = Message::from_vec(&buf[..len]).unwrap();
        *out.entry(addrs(&m).join(",")).or_insert(0) += 1;
    }
    out
}

/// Waits (at most 5 s) until every answer for the name is within `allowed`.
async fn settle(g: &Gtmd, allowed: &[&str]) {
    let ok = wait_until(Duration::from_secs(5), || async {
        let s = shares(g.dns, 20).await;
        s.keys().all(|k| k.split(',').all(|a| allowed.contains(&a)))
    })
    .await;
    assert!(ok.is_some(), "answers did not settle on {allowed:?}");
}

/// Waits (at most 5 s) until every member is up.
async fn all_up(g: &Gtmd) {
    let ok = wait_until(Duration::from_secs(5), || async {
        let s = status(g.admin).await;
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "up")
    })
    .await;
    assert!(ok.is_some(), "members did not all come back up");
}

fn pct(s: &HashMap<String, usize>, key: &str, n: usize) -> f64 {
    *s.get(key).unwrap_or(&0) as f64 * 100.0 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_90_10_holds_and_moves_whole_when_a_region_fails() {
    let (e1, e2, u1) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let mut e = [e1, e2];
    let cfg = config(
        &[
            ("eu", 90, &[("192.0.2.1", &e[0]), ("192.0.2.2", &e[1])]),
            ("us", 10, &[("192.0.2.11", &u1)]),
        ],
        "pools = [\"eu\", \"us\"]\npolicy = \"weighted\"",
    );
    let g = start(&cfg, &repo().join("zones")).await;
    let n = 10_000;
    let s = shares(g.dns, n).await;
    let eu = pct(&s, "192.0.2.1", n) + pct(&s, "192.0.2.2", n);
    let us = pct(&s, "192.0.2.11", n);
    println!("weighted 90/10 over {n} queries: eu {eu:.2}%, us {us:.2}% ({s:?})");
    assert!(
        (eu - 90.0).abs() <= 2.0 && (us - 10.0).abs() <= 2.0,
        "{s:?}"
    );
    assert_eq!(s.len(), 3, "one address per answer: {s:?}");

    // The 90% region fails: every answer goes to the other.
    for b in &mut e {
        b.refuse();
    }
    settle(&g, &["192.0.2.11"]).await;
    let s = shares(g.dns, n).await;
    println!("eu down: {s:?}");
    assert_eq!(pct(&s, "192.0.2.11", n), 100.0, "{s:?}");
    assert!(!status(g.admin).await["names"][0]["all_down"]
        .as_bool()
        .unwrap());

    // And back.
    for b in &mut e {
        b.restore().await;
    }
    all_up(&g).await;
    let s = shares(g.dns, 2000).await;
    let eu = pct(&s, "192.0.2.1", 2000) + pct(&s, "192.0.2.2", 2000);
    assert!(eu > 80.0, "eu back: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_moves_below_min_healthy_and_back() {
    let mut p = [Backend::start().await, Backend::start().await];
    let s1 = Backend::start().await;
    let cfg = config(
        &[
            ("primary", 1, &[("192.0.2.1", &p[0]), ("192.0.2.2", &p[1])]),
            ("secondary", 1, &[("192.0.2.11", &s1)]),
        ],
        "pools = [\"primary\", \"secondary\"]\npolicy = \"failover\"\nmin_healthy = \"60%\"",
    )
    // Three failures to go down, so that one slow probe on a loaded machine does not start a
    // second, longer hold-down in the middle of the test.
    .replace(
        "fall = 1\nrise = 1\n",
        "fall = 3\nrise = 1\nmin_down = \"1500ms\"\n",
    );
    let g = start(&cfg, &repo().join("zones")).await;
    let primary = ["192.0.2.1", "192.0.2.2"];
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, primary);
    // One of two primaries down is below 60%: the secondary (one of one) answers.
    p[0].refuse();
    settle(&g, &["192.0.2.11"]).await;
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.11"]);
    // The primary passes again, but stays out until its hold-down has passed.
    p[0].restore().await;
    let up = wait_until(Duration::from_secs(5), || async {
        member(g.admin, "192.0.2.1").await["state"] == "up"
    })
    .await;
    assert!(up.is_some());
    let left = member(g.admin, "192.0.2.1").await["held_down_secs"]
        .as_f64()
        .expect("held down");
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.11"]);
    let back = match wait_until(Duration::from_secs(8), || async {
        answer(g.dns, NAME, RecordType::A).await == primary
    })
    .await
    {
        Some(b) => b,
        None => panic!(
            "not back on the primary: {}",
            member(g.admin, "192.0.2.1").await
        ),
    };
    assert!(
        back.as_secs_f64() >= left - 0.1,
        "back after {back:?}, {left} s left"
    );
}

fn ttls(m: &Message) -> Vec<u32> {
    m.answers.iter().map(|r| r.ttl).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_ttl_while_a_member_is_down() {
    let (mut a, b) = (Backend::start().await, Backend::start().await);
    let cfg = config(
        &[("web", 1, &[("192.0.2.1", &a), ("192.0.2.2", &b)])],
        "pools = [\"web\"]\nttl = 60\ndegraded_ttl = 7",
    );
    let g = start(&cfg, &repo().join("zones")).await;
    let q = query_msg(NAME, RecordType::A, true);
    assert_eq!(ttls(&udp(g.dns, &q).await), [60, 60]);
    a.refuse();
    settle(&g, &["192.0.2.2"]).await;
    assert_eq!(ttls(&udp(g.dns, &q).await), [7]);
    assert_eq!(status(g.admin).await["names"][0]["degraded"], true);
    a.restore().await;
    all_up(&g).await;
    assert_eq!(ttls(&udp(g.dns, &q).await), [60, 60]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_behaviours_answer_as_configured() {
    let mut a = Backend::start().await;
    let spare = Backend::start().await;
    let behaviours = [
        ("when_all_down = \"all\"", "fail-open"),
        ("when_all_down = \"nodata\"", "nodata"),
        ("when_all_down = \"servfail\"", "servfail"),
        (
            "when_all_down = \"fallback\"\nfallback = [\"198.51.100.7\", \"spare\"]",
            "fallback",
        ),
    ];
    let mut servers = Vec::new();
    for (body, _) in &behaviours {
        let cfg = config(
            &[
                ("web", 1, &[("192.0.2.1", &a)]),
                ("spare", 1, &[("192.0.2.99", &spare)]),
            ],
            &format!("pools = [\"web\"]\n{body}"),
        );
        servers.push(start(&cfg, &repo().join("zones")).await);
    }
    for g in &servers {
        assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.1"]);
    }
    a.refuse();
    for (g, (_, what)) in servers.iter().zip(&behaviours) {
        let ok = wait_until(Duration::from_secs(5), || async {
            status(g.admin).await["names"][0]["all_down"] == true
        })
        .await;
        assert!(ok.is_some(), "{what}: all_down not reported");
        let m = udp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
        match *what {
            "fail-open" => assert_eq!(addrs(&m), ["192.0.2.1"]),
            "nodata" => {
                assert_eq!(m.response_code, ResponseCode::NoError);
                assert!(m.answers.is_empty() && m.authoritative, "{m:?}");
                assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
            }
            "servfail" => {
                assert_eq!(m.response_code, ResponseCode::ServFail);
                assert!(m.answers.is_empty(), "{m:?}");
            }
            _ => assert_eq!(addrs(&m), ["192.0.2.99", "198.51.100.7"]),
        }
        // Other types at the name still come from the zone as before.
        let m = udp(g.dns, &query_msg(NAME, RecordType::TXT, true)).await;
        assert_ne!(m.response_code, ResponseCode::ServFail, "{what}");
    }
    a.restore().await;
    for g in &servers {
        settle(g, &["192.0.2.1"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_down_keeps_a_flapping_member_out_and_doubles() {
    let (mut a, b) = (Backend::start().await, Backend::start().await);
    let cfg = config(
        &[("web", 1, &[("192.0.2.1", &a), ("192.0.2.2", &b)])],
        "pools = [\"web\"]",
    )
    .replace(
        "fall = 1\nrise = 1\n",
        "fall = 3\nrise = 1\nmin_down = \"1s\"\nflap_window = \"1m\"\nmax_down = \"10s\"\n",
    );
    let g = start(&cfg, &repo().join("zones")).await;
    for (round, hold) in [(1, 1.0), (2, 2.0)] {
        a.refuse();
        settle(&g, &["192.0.2.2"]).await;
        a.restore().await;
        // Probes pass again at once, but the member stays out for its hold-down.
        let m = wait_until(Duration::from_secs(3), || async {
            member(g.admin, "192.0.2.1").await["state"] == "up"
        })
        .await;
        assert!(m.is_some(), "round {round}: probes did not pass again");
        let m = member(g.admin, "192.0.2.1").await;
        assert_eq!(m["answered"], false, "round {round}: {m}");
        assert_eq!(m["hold_down_secs"], hold, "round {round}: {m}");
        assert_eq!(m["flaps"], round, "round {round}: {m}");
        assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.2"]);
        // Back once the hold-down has passed (and not long before it ends).
        let back = match wait_until(Duration::from_secs(5), || async {
            answer(g.dns, NAME, RecordType::A).await.len() == 2
        })
        .await
        {
            Some(b) => b,
            None => panic!(
                "round {round}: not back in answers after the hold-down: {}",
                status(g.admin).await
            ),
        };
        let left = m["held_down_secs"].as_f64().unwrap();
        assert!(
            back.as_secs_f64() >= left - 0.1,
            "round {round}: back after {back:?}, {left} s were left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_below_its_threshold_leaves_whole_and_returns_with_hysteresis() {
    let mut eu = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let us = Backend::start().await;
    let cfg = config(
        &[
            (
                "eu",
                1,
                &[
                    ("192.0.2.1", &eu[0]),
                    ("192.0.2.2", &eu[1]),
                    ("192.0.2.3", &eu[2]),
                ],
            ),
            ("us", 1, &[("192.0.2.11", &us)]),
        ],
        "pools = [\"eu\", \"us\"]",
    )
    .replace("weight = 1\nmembers", "weight = 1\nregion = \"r\"\nmembers")
    .replacen("region = \"r\"", "region = \"eu\"", 1)
    .replacen("region = \"r\"", "region = \"us\"", 1)
        + "[regions.eu]\nremove_below = \"60%\"\nreturn_at = \"100%\"\n";
    let g = start(&cfg, &repo().join("zones")).await;
    let removed = |s: serde_json::Value| s["regions"][0]["removed"] == true;
    let all4 = ["192.0.2.1", "192.0.2.11", "192.0.2.2", "192.0.2.3"];
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, all4);
    // Two of three pass (67%): the region stays, without its down member.
    eu[0].refuse();
    settle(&g, &["192.0.2.2", "192.0.2.3", "192.0.2.11"]).await;
    assert_eq!(answer(g.dns, NAME, RecordType::A).await.len(), 3);
    assert!(!removed(status(g.admin).await));
    // One of three (33%): the whole region leaves, its passing member too.
    eu[1].refuse();
    settle(&g, &["192.0.2.11"]).await;
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.11"]);
    assert!(removed(status(g.admin).await));
    // Back to two of three: below return_at (100%), so still out.
    eu[1].restore().await;
    let up = wait_until(Duration::from_secs(5), || async {
        member(g.admin, "192.0.2.2").await["state"] == "up"
    })
    .await;
    assert!(up.is_some());
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.11"]);
    assert!(removed(status(g.admin).await));
    // All three: the region returns.
    eu[0].restore().await;
    all_up(&g).await;
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, all4);
    assert!(!removed(status(g.admin).await));
}

/// An A query for the name carrying ECS `addr/source`, over UDP.
async fn with_ecs(dns: SocketAddr, addr: &str, source: u8) -> Message {
    ecs_query(dns, NAME, addr, source).await
}

/// The ECS option of a response: address, source and scope prefix lengths.
fn ecs_of(m: &Message) -> Option<(String, u8, u8)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr().to_string(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_follows_the_client_subnet_from_ecs_or_the_source() {
    let (eu, mut us) = (Backend::start().await, Backend::start().await);
    let cfg = config(
        &[
            ("eu", 1, &[("192.0.2.1", &eu)]),
            ("us", 1, &[("192.0.2.11", &us)]),
        ],
        "pools = [\"eu\", \"us\"]\npolicy = \"topology\"\n\
         [[names.\"app.example.test.\".topology]]\nclients = [\"198.51.100.0/24\", \"2001:db8:1::/48\"]\norder = [\"eu\"]\n\
         [[names.\"app.example.test.\".topology]]\nclients = [\"203.0.113.0/24\", \"127.0.0.0/8\"]\norder = [\"us\"]",
    );
    let g = start(&cfg, &repo().join("zones")).await;
    // ECS decides, and the reply says for which prefix the answer holds.
    let m = with_ecs(g.dns, "203.0.113.0", 24).await;
    assert_eq!(addrs(&m), ["192.0.2.11"]);
    assert_eq!(ecs_of(&m), Some(("203.0.113.0".into(), 24, 24)));
    let m = with_ecs(g.dns, "198.51.100.0", 24).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    assert_eq!(ecs_of(&m), Some(("198.51.100.0".into(), 24, 24)));
    let m = with_ecs(g.dns, "2001:db8:1::", 48).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    assert_eq!(ecs_of(&m).unwrap().2, 48);
    // Unmatched: the name's pools in order (eu first), with a scope that excludes the rules.
    let m = with_ecs(g.dns, "192.0.2.0", 24).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    let scope = ecs_of(&m).unwrap().2;
    assert!((1..=24).contains(&scope), "{scope}");
    // SOURCE PREFIX-LENGTH 0: the client asked not to be located; scope 0.
    let m = with_ecs(g.dns, "0.0.0.0", 0).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    assert_eq!(ecs_of(&m).unwrap().2, 0);
    // No ECS: the source address (127.0.0.1, in the second rule); no ECS in the reply.
    let m = udp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
    assert_eq!(addrs(&m), ["192.0.2.11"]);
    assert_eq!(ecs_of(&m), None);
    // The same over TCP.
    let m = tcp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
    assert_eq!(addrs(&m), ["192.0.2.11"]);
    // A static name: ECS echoed with scope 0 (the answer is the same for every client).
    let mut q = query_msg("www.example.test.", RecordType::A, true);
    q.edns.as_mut().unwrap().options_mut().insert(
        hickory_proto::rr::rdata::opt::EdnsOption::Subnet(
            hickory_proto::rr::rdata::opt::ClientSubnet::new("203.0.113.0".parse().unwrap(), 24, 0),
        ),
    );
    assert_eq!(
        ecs_of(&udp(g.dns, &q).await),
        Some(("203.0.113.0".into(), 24, 0))
    );

    // The preferred region fails: the next in the client's order takes over.
    us.refuse();
    let moved = wait_until(Duration::from_secs(5), || async {
        addrs(&with_ecs(g.dns, "203.0.113.0", 24).await) == ["192.0.2.1"]
    })
    .await;
    assert!(moved.is_some(), "203.0.113.0/24 did not move to eu");
    us.restore().await;
    all_up(&g).await;
    assert_eq!(
        addrs(&with_ecs(g.dns, "203.0.113.0", 24).await),
        ["192.0.2.11"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_subnet_gets_formerr() {
    let b = Backend::start().await;
    let cfg = config(&[("web", 1, &[("192.0.2.1", &b)])], "pools = [\"web\"]");
    let g = start(&cfg, &repo().join("zones")).await;
    let mut q = query_msg(NAME, RecordType::A, true).to_vec().unwrap();
    // Replace the empty OPT RDATA with ECS 198.51.101.0/23: bit 24 is set beyond the source.
    let ecs = [0u8, 8, 0, 7, 0, 1, 23, 0, 198, 51, 101];
    let n = q.len();
    q[n - 2..].copy_from_slice(&(ecs.len() as u16).to_be_bytes());
    q.extend_from_slice(&ecs);
    let r = udp_raw(g.dns, &q, Duration::from_secs(2))
        .await
        .expect("a reply");
    assert_eq!(
        Message::from_vec(&r).unwrap().response_code,
        ResponseCode::FormErr
    );
    // The same option with the bit clear is answered.
    let n = q.len();
    q[n - 1] = 100;
    let r = udp_raw(g.dns, &q, Duration::from_secs(2))
        .await
        .expect("a reply");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(ecs_of(&m), Some(("198.51.100.0".into(), 23, 0)));
}
