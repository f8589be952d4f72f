//! Response rate limiting against a real flood on loopback: a flooded prefix gets its rate
//! and little more, another client resolves as usual, and a real client behind the flooded
//! prefix still resolves over TCP after a truncated answer.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

/// Rate limiting with loopback not exempt: 50 answers and 10 errors a second per /24.
const RRL: &str = "[rrl]\nrate = 50\nerrors_rate = 10\nslip = 2\nexempt = []\n";

/// What came back for a flood.
#[derive(Debug, Default)]
struct Reflected {
    full: usize,
    truncated: usize,
    bytes: usize,
}

/// Sends `n` queries for `name` from `from` (32 at a time, then a millisecond's pause, so
/// that socket buffers do not overflow), and collects the responses until 500 ms pass without
/// one.
async fn flood(dns: SocketAddr, from: &str, name: &str, n: usize) -> (Reflected, Duration) {
    let sock = UdpSocket::bind(from).await.unwrap();
    let q = query_msg(name, RecordType::TXT, true).to_vec().unwrap();
    let start = Instant::now();
    let recv = async {
        let mut r = Reflected::default();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
        {
            let m = Message::from_vec(&buf[..len]).unwrap();
            if m.metadata.truncation {
                r.truncated += 1;
            } else {
                r.full += 1;
            }
            r.bytes += len;
        }
        r
    };
    let send = async {
        for i in 0..n {
            sock.send_to(&q, dns).await.unwrap();
            if i % 32 == 31 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let (r, ()) = tokio::join!(recv, send);
    (r, start.elapsed())
}

/// A resolver's way: UDP, on TC retry over TCP, on silence try again (at most 20 times).
async fn resolve(dns: SocketAddr, from: &str, name: &str) -> Option<(Vec<String>, bool)> {
    let sock = UdpSocket::bind(from).await.unwrap();
    let q = query_msg(name, RecordType::A, true);
    let mut buf = [0u8; 4096];
    for _ in 0..20 {
        sock.send_to(&q.to_vec().unwrap(), dns).await.unwrap();
        let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(100), sock.recv(&mut buf)).await
        else {
            continue;
        };
        let m = Message::from_vec(&buf[..len]).unwrap();
        if !m.metadata.truncation {
            return Some((addrs(&m), false));
        }
        return Some((addrs(&tcp(dns, &q).await), true));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_its_rate_while_other_clients_resolve() {
    let g = start(RRL, &repo().join("zones")).await;
    // The size of one full answer, from a prefix nobody floods.
    let (one, _) = flood(g.dns, "127.0.9.1:0", "big.example.test.", 1).await;
    assert_eq!(one.full, 1);
    let answer_size = one.bytes;

    // 3000 queries from 127.0.0.0/24, and meanwhile two clients resolve.
    let n = 3000;
    let flooding = flood(g.dns, "127.0.0.2:0", "big.example.test.", n);
    let others = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let elsewhere = resolve(g.dns, "127.0.1.5:0", "www.example.test.").await;
        let behind = resolve(g.dns, "127.0.0.3:0", "www.example.test.").await;
        (elsewhere, behind)
    };
    let ((r, took), (elsewhere, behind)) = tokio::join!(flooding, others);
    println!(
        "flood of {n}: {} full, {} truncated, {} bytes back of {} unlimited ({:.1}%) in {took:?}",
        r.full,
        r.truncated,
        r.bytes,
        n * answer_size,
        100.0 * r.bytes as f64 / (n * answer_size) as f64
    );
    // Full answers: the bucket (50) and 50 a second, plus a second's slack for the clock.
    let bound = 50 + 50 * (took.as_secs_f64().ceil() as usize + 1);
    assert!(r.full >= 50 && r.full <= bound, "{r:?} in {took:?}");
    // Of the rest, every second is sent truncated; the others are dropped.
    let limited = n - r.full;
    assert!(
        r.truncated <= limited / 2 + 1 && r.truncated * 3 >= limited,
        "{r:?}"
    );
    assert!(
        r.bytes * 4 < n * answer_size,
        "reflected bytes not cut: {r:?}"
    );

    // Another prefix resolves over UDP at once; one behind the flooded prefix gets there too.
    assert_eq!(elsewhere, Some((vec!["192.0.2.80".to_string()], false)));
    let behind = behind.expect("the client behind the flooded prefix resolves");
    assert_eq!(behind.0, ["192.0.2.80"]);

    // NXDOMAIN has the smaller budget (10 a second).
    let (nx, took) = flood(g.dns, "127.0.2.2:0", "nothing.example.test.", 300).await;
    let bound = 10 + 10 * (took.as_secs_f64().ceil() as usize + 1);
    assert!(nx.full >= 10 && nx.full <= bound, "{nx:?} in {took:?}");

    // TCP is never limited, even from the flooded prefix.
    let qs: Vec<Message> = (0..200)
        .map(|_| query_msg("www.example.test.", RecordType::A, true))
        .collect();
    let got = tcp_many(g.dns, &qs).await;
    assert_eq!(got.len(), 200);
    assert!(got
        .iter()
        .all(|m| !m.metadata.truncation && addrs(m) == ["192.0.2.80"]));

    // The answering threads flush their counts within 100 ms, not per batch.
    let both = wait_until(Duration::from_secs(2), || async {
        let metrics = reqwest::get(format!("http://{}/metrics", g.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        ["slipped", "dropped"].iter().all(|action| {
            let line = format!("gtmd_rrl_responses_total{{action=\"{action}\"}}");
            metrics.lines().any(|l| l.starts_with(&line))
        })
    })
    .await;
    assert!(
        both.is_some(),
        "slipped or dropped responses missing from /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exempt_client_is_never_limited() {
    let g = start(
        &RRL.replace("exempt = []", "exempt = [\"127.0.3.0/24\"]"),
        &repo().join("zones"),
    )
    .await;
    let (r, _) = flood(g.dns, "127.0.3.9:0", "www.example.test.", 500).await;
    assert_eq!((r.full, r.truncated), (500, 0), "{r:?}");
    let (r, _) = flood(g.dns, "127.0.4.9:0", "www.example.test.", 500).await;
    assert!(
        r.full < 500,
        "a prefix that is not exempt is limited: {r:?}"
    );
}
