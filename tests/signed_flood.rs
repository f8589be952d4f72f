//! Floods of names that do not exist on a zone signed online: rate limiting decides before
//! anything is signed, compact denial's NOERROR counts as an error, a network over its budget
//! of signed answers gets them truncated (and over TCP in full), and a querier that sets
//! Compact Answers OK (RFC 9824 section 4) gets NXDOMAIN. The signatures made are read from
//! `gtmd_signatures_total{path="query"}`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

const ZONE: &str = "$TTL 60\n@ SOA ns1 hostmaster 1 7200 3600 1209600 60\n NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.80\n";

/// gtmd serving example.test. signed with a new key, with `rrl` (lines of the [rrl] table).
async fn signed(rrl: &str) -> (Gtmd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.test.zone"), ZONE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .args(["dnssec", "keygen", "example.test", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let config =
        format!("[rrl]\nexempt = []\n{rrl}\n[zones.\"example.test.\".dnssec]\nkeys = [{key:?}]\n");
    (start(&config, dir.path()).await, dir)
}

/// A query for `name`/`rtype` with the DO bit.
fn do_query(name: &str, rtype: RecordType) -> Message {
    let mut q = query_msg(name, rtype, true);
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    q
}

/// What came back for a flood.
#[derive(Debug, Default)]
struct Back {
    full: usize,
    truncated: usize,
    /// Full responses that are NOERROR with no answer record (compact denial).
    denials: usize,
}

/// Sends `n` queries with the DO bit for distinct names that do not exist, from `from` (32
/// at a time, then a millisecond's pause), and collects the responses until 500 ms pass
/// without one.
async fn flood(dns: SocketAddr, from: &str, n: usize) -> (Back, Duration) {
    let sock = UdpSocket::bind(from).await.unwrap();
    let start = Instant::now();
    let recv = async {
        let mut b = Back::default();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
        {
            let m = Message::from_vec(&buf[..len]).unwrap();
            if m.metadata.truncation {
                b.truncated += 1;
            } else {
                b.full += 1;
                if m.metadata.response_code == ResponseCode::NoError && m.answers.is_empty() {
                    b.denials += 1;
                }
            }
        }
        b
    };
    let send = async {
        for i in 0..n {
            let name = format!("r{i}-{:08x}.example.test.", rand::random::<u32>());
            let q = do_query(&name, RecordType::A).to_vec().unwrap();
            sock.send_to(&q, dns).await.unwrap();
            if i % 32 == 31 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let (b, ()) = tokio::join!(recv, send);
    (b, start.elapsed())
}

/// The signature count is the process's: tests that read it run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Signatures made on the query path so far (the answering threads flush their counts
/// within 100 ms: read once they have).
async fn signatures(admin: SocketAddr) -> f64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    metric(admin, "gtmd_signatures_total{path=\"query\"}")
        .await
        .unwrap_or(0.0)
}

/// Per second `rate`, over `took` (with a second's slack for the clock) and the bucket.
fn bound(rate: usize, took: Duration) -> usize {
    rate + rate * (took.as_secs_f64().ceil() as usize + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_name_flood_is_limited_as_errors_before_any_signature_is_made() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Answers are hardly limited; errors (NXDOMAIN, NODATA, compact denial) to 5 a second.
    let (g, _dir) = signed("rate = 100000\nerrors_rate = 5\nslip = 2\n").await;
    let before = signatures(g.admin).await;
    let n = 2000;
    let flooding = flood(g.dns, "127.0.5.2:0", n);
    let other = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sock = UdpSocket::bind("127.0.6.2:0").await.unwrap();
        let q = do_query("www.example.test.", RecordType::A);
        udp_ask(&sock, g.dns, q, 7).await
    };
    let ((b, took), other) = tokio::join!(flooding, other);
    let made = signatures(g.admin).await - before;
    println!("flood of {n} in {took:?}: {b:?}; {made} signatures made");
    // Compact denial is an error for rate limiting: its budget, not the answers'.
    let most = bound(5, took);
    assert!(
        b.full <= most,
        "{} full answers, at most {most}: {b:?}",
        b.full
    );
    assert!(b.denials >= 5, "denials are still signed and sent: {b:?}");
    assert!(
        b.truncated * 3 >= n - b.full,
        "every second one slipped: {b:?}"
    );
    // One signature per denial sent (its NSEC), and the apex SOA's once: none for the rest.
    assert!(
        made <= (most + 2) as f64,
        "{made} signatures for {} answers sent in full",
        b.full
    );
    // Another network is answered meanwhile, signed.
    let other = other.expect("another network is answered");
    assert_eq!(addrs(&other), ["192.0.2.80"]);
    assert!(other
        .answers
        .iter()
        .any(|r| r.record_type() == RecordType::RRSIG));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_over_its_signing_budget_gets_truncated_answers_and_full_ones_over_tcp() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (g, _dir) = signed("rate = 100000\nerrors_rate = 100000\nsignatures_rate = 20\n").await;
    let before = signatures(g.admin).await;
    let n = 1000;
    let (b, took) = flood(g.dns, "127.0.7.2:0", n).await;
    let made = signatures(g.admin).await - before;
    println!("flood of {n} in {took:?}: {b:?}; {made} signatures made");
    let most = bound(20, took);
    assert!(b.full >= 20 && b.full <= most, "{b:?} in {took:?}");
    // Over the budget: truncated, not dropped (slip 2 would drop every other one).
    assert!(b.full + b.truncated >= n * 95 / 100, "{b:?}");
    assert!(made <= (most + 2) as f64, "{made} signatures");
    // The same network over TCP: signed in full.
    let q = do_query("gone.example.test.", RecordType::A);
    let m = tcp(g.dns, &q).await;
    assert!(!m.metadata.truncation);
    assert!(m
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NSEC));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_querier_that_sets_compact_answers_ok_gets_nxdomain_with_the_same_proof() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (g, _dir) = signed("").await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let plain = do_query("missing.example.test.", RecordType::A);
    let plain = udp_ask(&sock, g.dns, plain, 1).await.unwrap();
    assert_eq!(plain.metadata.response_code, ResponseCode::NoError);
    let mut co = do_query("missing.example.test.", RecordType::A);
    co.edns.as_mut().unwrap().flags_mut().z |= 0x4000;
    let co = udp_ask(&sock, g.dns, co, 2).await.unwrap();
    assert_eq!(co.metadata.response_code, ResponseCode::NXDomain);
    assert_ne!(co.edns.as_ref().unwrap().flags().z & 0x4000, 0, "CO echoed");
    let types = |m: &Message| -> Vec<RecordType> {
        m.authorities.iter().map(|r| r.record_type()).collect()
    };
    assert_eq!(types(&co), types(&plain), "the same NSEC and signatures");
    // A name that exists, without the type: NODATA either way.
    let mut nodata = do_query("www.example.test.", RecordType::TXT);
    nodata.edns.as_mut().unwrap().flags_mut().z |= 0x4000;
    let nodata = udp_ask(&sock, g.dns, nodata, 3).await.unwrap();
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
}
