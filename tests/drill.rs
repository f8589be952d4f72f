//! A fault drill under load, against the gtmd binary: a steady stream of queries over UDP
//! and TCP while backends are killed, made to hang and restored and the configuration is
//! reloaded, with slowloris connections and a burst of malformed packets on the side.
//!
//! It checks that every legitimate query is answered (NOERROR, never SERVFAIL, never
//! silence), that no answer names a member later than the detection bound after it failed,
//! and that memory is flat at the end. `GTMD_DRILL_SECS` sets the length (default 8 s, the
//! short form CI runs; `benches/drill.sh` runs the long form).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::AsyncWriteExt;

const NAME: &str = "app.example.test.";
const MEMBERS: [(&str, &str); 3] = [
    ("a", "192.0.2.11"),
    ("b", "192.0.2.12"),
    ("c", "192.0.2.13"),
];
/// Probes every 100 ms with an 80 ms timeout, down after 1 failure: a failed member is out
/// of answers within interval (+10% jitter) + timeout, plus time to publish and deliver.
const DETECTION: Duration = Duration::from_millis(110 + 80 + 400);

/// One answer as the load saw it.
struct Seen {
    at: Instant,
    addrs: Vec<String>,
}

#[derive(Default)]
struct Load {
    answers: Mutex<Vec<Seen>>,
    /// Failed queries: when, and what came back.
    bad: Mutex<Vec<(Instant, String)>>,
    count: AtomicU64,
}

impl Load {
    fn check(&self, m: Option<Message>) {
        let Some(m) = m else {
            self.bad
                .lock()
                .unwrap()
                .push((Instant::now(), "no answer".into()));
            return;
        };
        let addrs = addrs(&m);
        if m.metadata.response_code != ResponseCode::NoError || addrs.is_empty() {
            self.bad.lock().unwrap().push((
                Instant::now(),
                format!("{:?} {addrs:?}", m.metadata.response_code),
            ));
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.answers.lock().unwrap().push(Seen {
            at: Instant::now(),
            addrs,
        });
    }
}

async fn udp_load(dns: SocketAddr, load: Arc<Load>, stop: Arc<AtomicBool>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut id = 0u16;
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        let reply = udp_ask(&sock, dns, query_msg(NAME, RecordType::A, true), id).await;
        load.check(reply);
    }
}

async fn tcp_load(dns: SocketAddr, load: Arc<Load>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let qs: Vec<Message> = (0..20)
            .map(|_| query_msg(NAME, RecordType::A, true))
            .collect();
        let got = tokio::time::timeout(Duration::from_secs(3), tcp_many(dns, &qs))
            .await
            .unwrap_or_default();
        for i in 0..qs.len() {
            load.check(got.get(i).cloned());
        }
    }
}

/// Connections from 127.0.0.66 that send one byte of a query and stall, again and again
/// (the per-client cap keeps them from taking every slot).
async fn slowloris(dns: SocketAddr, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let mut held = Vec::new();
        for _ in 0..20 {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind("127.0.0.66:0".parse().unwrap()).unwrap();
            if let Ok(mut s) = sock.connect(dns).await {
                let _ = s.write_all(&[0, 30, 0]).await;
                held.push(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// 2000 packets of random bytes, some with a valid header.
async fn malformed_burst(dns: SocketAddr) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.77:0").await.unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..2000 {
        let len = 1 + (i * 7919) % 600;
        let mut p: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if i % 2 == 0 && p.len() > 12 {
            p[2] = 0; // a query, opcode 0
            p[4..6].copy_from_slice(&[0, 1]);
        }
        let _ = sock.send_to(&p, dns).await;
        if i % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

use common::KillOnDrop as Child;

/// When each member was failing, as (member address, from, until).
type Outages = Vec<(&'static str, Instant, Instant)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_hold_through_failures_reloads_and_abuse() {
    let secs: u64 = std::env::var("GTMD_DRILL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(Backend::start().await);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let zone = dir.path().join("zones/example.test.zone");
    std::fs::copy(repo().join("zones/example.test.zone"), &zone).unwrap();
    let (dns, admin) = (free_addr(), free_addr());
    let members: Vec<String> = MEMBERS
        .iter()
        .zip(&backends)
        .map(|((n, a), b)| {
            format!("{{ name = \"{n}\", address = \"{a}\", probe_address = \"127.0.0.1\", probe_port = {} }}", b.addr.port())
        })
        .collect();
    let config = dir.path().join("gtmd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"{dns}\"]\nzones_dir = \"zones\"\n[admin]\nlisten = \"{admin}\"\n\
             [checks.web]\ntype = \"http\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
             [pools.app]\ncheck = \"web\"\nmembers = [{}]\n[names.\"{NAME}\"]\npools = [\"app\"]\n",
            members.join(", ")
        ),
    )
    .unwrap();
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_gtmd"))
            .args(["--config", config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = wait_until(Duration::from_secs(10), || async {
        gtmd::ops::ctl::request(admin, "GET", "/readyz", None, None).is_ok()
    })
    .await;
    assert!(ready.is_some(), "gtmd did not become ready");
    let pid = child.0.id();

    let (load, stop) = (Arc::new(Load::default()), Arc::new(AtomicBool::new(false)));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(tokio::spawn(udp_load(dns, load.clone(), stop.clone())));
    }
    tasks.push(tokio::spawn(tcp_load(dns, load.clone(), stop.clone())));
    tasks.push(tokio::spawn(slowloris(dns, stop.clone())));

    // Cycles of 4 s: b is killed, c hangs, b comes back, a reload, c comes back.
    let start = Instant::now();
    let mut outages: Outages = Vec::new();
    let mut rss = Vec::new();
    let mut reloads = 0;
    let mut cycle = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        let at = |ms: u64| {
            tokio::time::sleep_until((start + Duration::from_millis(cycle * 4000 + ms)).into())
        };
        at(300).await;
        backends[1].refuse();
        let b_down = Instant::now();
        at(800).await;
        backends[2].set(Mode::Hang);
        let c_down = Instant::now();
        tokio::spawn(malformed_burst(dns));
        at(1800).await;
        backends[1].restore().await;
        outages.push(("192.0.2.12", b_down, Instant::now()));
        at(2300).await;
        std::fs::write(
            &zone,
            std::fs::read_to_string(&zone).unwrap() + &format!("drill{cycle} IN A 192.0.2.99\n"),
        )
        .unwrap();
        let r = gtmd::ops::ctl::request(admin, "POST", "/reload", None, None);
        assert!(r.is_ok(), "reload: {r:?}");
        reloads += 1;
        at(2800).await;
        backends[2].set(Mode::Ok);
        outages.push(("192.0.2.13", c_down, Instant::now()));
        rss.push(rss_kb(pid));
        at(4000).await;
        cycle += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
        let _ = t.await;
    }

    let bad: Vec<String> = load
        .bad
        .lock()
        .unwrap()
        .iter()
        .map(|(at, what)| format!("{what} at {:.2} s", (*at - start).as_secs_f64()))
        .collect();
    let answers = load.answers.lock().unwrap();
    let late: Vec<String> = answers
        .iter()
        .filter_map(|s| {
            outages
                .iter()
                .find(|(m, from, until)| {
                    s.at > *from + DETECTION && s.at < *until && s.addrs.iter().any(|a| a == m)
                })
                .map(|(m, from, _)| {
                    format!(
                        "{m} answered {:?} after it failed, at {:.2} s",
                        s.at - *from,
                        (s.at - start).as_secs_f64()
                    )
                })
        })
        .take(10)
        .collect();
    let secs_run = start.elapsed().as_secs_f64();
    println!(
        "drill: {:.0} s, {} answers ({:.0}/s), {} failures, {} late answers, {} outages, {reloads} reloads, RSS by cycle (kB): {rss:?}",
        secs_run,
        answers.len(),
        answers.len() as f64 / secs_run,
        bad.len(),
        late.len(),
        outages.len()
    );
    assert!(
        bad.is_empty(),
        "unanswered or failed queries: {:?}",
        &bad[..bad.len().min(10)]
    );
    assert!(
        late.is_empty(),
        "answers past the detection bound: {late:?}"
    );
    assert!(
        answers.len() as f64 > 1000.0 * secs_run / 8.0,
        "too little load to show anything"
    );
    // Each failed member did leave the answers (the bound above is not vacuous).
    for (m, from, until) in &outages {
        let out = answers
            .iter()
            .any(|s| s.at > *from + DETECTION && s.at < *until && !s.addrs.iter().any(|a| a == m));
        assert!(out, "{m} never left the answers");
    }
    // Flat memory: the last cycle's RSS is within 8 MB of the first.
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        assert!(
            *last <= first + 8 * 1024,
            "RSS grew from {first} kB to {last} kB"
        );
    }
}
