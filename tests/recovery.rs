//! Recovery objectives, end to end through a real caching resolver: a client makes a fresh
//! lookup through Unbound and a new HTTP connection for each request, 100 a second, against
//! two real backends; one backend fails; no request may fail later than `recover_within`
//! after the failure, including when the failure comes just after Unbound fetched the name
//! (so that its cached answer lives a whole TTL).
//!
//! `.ci/run` installs `unbound`.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "app.example.test.";
const OBJECTIVE: Duration = Duration::from_secs(6);

/// An HTTP backend on its own loopback address (so that a DNS answer picks it), on `port`.
/// Failing it closes the listener: connections are refused.
struct Web {
    ip: IpAddr,
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Web {
    async fn start(ip: IpAddr, port: u16) -> Option<Self> {
        let listener = TcpListener::bind((ip, port)).await.ok()?;
        let up = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Some(Web { ip, up, task })
    }

    fn fail(&self) {
        self.task.abort();
        self.up.store(false, Ordering::SeqCst);
    }
}

/// Two backends on 127.0.0.31 and 127.0.0.32, one port.
async fn two_backends() -> (Web, Web, u16) {
    let a: IpAddr = Ipv4Addr::new(127, 0, 0, 31).into();
    let b: IpAddr = Ipv4Addr::new(127, 0, 0, 32).into();
    for _ in 0..50 {
        let port = std::net::TcpListener::bind((a, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if let Some(wa) = Web::start(a, port).await {
            if let Some(wb) = Web::start(b, port).await {
                return (wa, wb, port);
            }
        }
    }
    panic!("no port free on both 127.0.0.31 and 127.0.0.32");
}

/// Unbound on loopback, resolving example.test. through gtmd (a stub zone), with its cache
/// as a resolver ships it: no prefetch, no expired answers.
struct Unbound(UnboundProcess);

impl Unbound {
    fn start(gtmd: SocketAddr) -> Self {
        Unbound(UnboundProcess::start(
            "    module-config: \"iterator\"\n    prefetch: no\n    serve-expired: no\n    infra-host-ttl: 1\n",
            &[("example.test.", gtmd)],
        ))
    }

    /// The A records of `NAME` and their TTL, as Unbound answers now.
    async fn lookup(&self) -> Option<(Vec<IpAddr>, u32)> {
        let mut q = query_msg(NAME, RecordType::A, false);
        q.metadata.recursion_desired = true;
        let r = udp_raw(self.0.addr, &q.to_vec().unwrap(), Duration::from_secs(1)).await?;
        let m = Message::from_vec(&r).ok()?;
        let ttl = m.answers.first()?.ttl;
        let ips = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        Some((ips, ttl))
    }
}

/// One client request: a fresh lookup, then a new connection to the first address (as a
/// client without retries does) and an HTTP GET.
async fn request(unbound: &Unbound, port: u16) -> bool {
    let Some((ips, _)) = unbound.lookup().await else {
        return false;
    };
    let Some(&ip) = ips.first() else { return false };
    let go = async {
        let mut s = TcpStream::connect((ip, port)).await.ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        buf.starts_with(b"HTTP/1.1 200").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), go).await,
        Ok(Some(()))
    )
}

/// Runs the scenario; `worst` times the failure just after Unbound fetched the name.
/// Returns the last failed request's start after the failure, and the failed and the
/// succeeding requests after it.
async fn scenario(worst: bool) -> (Duration, usize, usize) {
    let (a, b, port) = two_backends().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("example.test.zone"),
        "$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n",
    )
    .unwrap();
    let config = format!(
        "[checks.web]\ntype = \"http\"\nport = {port}\npath = \"/\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nfall = 2\nrise = 2\n\
         [pools.app]\ncheck = \"web\"\nmembers = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         [names.\"{NAME}\"]\npools = [\"app\"]\nrecover_within = \"{}s\"\n",
        a.ip,
        b.ip,
        OBJECTIVE.as_secs()
    );
    let g = start_with(&config, "", dir.path()).await;
    // The TTL gtmd derived: 6 s - (2 × 0.55 s + 0.2 s) - 1 s → 3 s.
    let st = status(g.admin).await;
    let ttl = st["names"][0]["recovery"]["ttl"].as_u64().unwrap() as u32;
    assert_eq!(ttl, 3, "{}", st["names"][0]["recovery"]);
    let unbound = Unbound::start(g.dns);
    let ready = wait_until(Duration::from_secs(10), || async {
        unbound
            .lookup()
            .await
            .is_some_and(|(ips, _)| ips.len() == 2)
    })
    .await;
    assert!(ready.is_some(), "unbound never answered both backends");

    // The client: 100 requests a second, each recorded with when it started.
    let unbound = Arc::new(unbound);
    let log = Arc::new(std::sync::Mutex::new(Vec::<(Instant, bool)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (unbound, log, stop) = (unbound.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let (unbound, log) = (unbound.clone(), log.clone());
                tokio::spawn(async move {
                    let at = Instant::now();
                    let ok = request(&unbound, port).await;
                    log.lock().unwrap().push((at, ok));
                });
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    if worst {
        // Fail the backend just after Unbound fetched the name again: its answer's TTL jumps
        // back up to the whole TTL.
        let (mut last, start) = (u32::MAX, Instant::now());
        let mut fresh = false;
        while !fresh && start.elapsed() < Duration::from_secs(10) {
            if let Some((_, t)) = unbound.lookup().await {
                fresh = t == ttl && last < ttl;
                last = t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(fresh, "never saw unbound fetch the name again");
    }
    let failed_at = Instant::now();
    b.fail();
    tokio::time::sleep(OBJECTIVE + Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    client.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let log = log.lock().unwrap();
    let after: Vec<_> = log.iter().filter(|(t, _)| *t >= failed_at).collect();
    let failures: Vec<Duration> = after
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(t, _)| t.duration_since(failed_at))
        .collect();
    let last = failures.iter().max().copied().unwrap_or_default();
    let ok_late = after
        .iter()
        .filter(|(t, ok)| *ok && t.duration_since(failed_at) > OBJECTIVE)
        .count();
    assert!(a.up.load(Ordering::SeqCst));
    (last, failures.len(), ok_late)
}

fn check(worst: bool, (last, failed, ok_late): (Duration, usize, usize)) {
    eprintln!(
        "{}: {failed} requests failed, the last {:.2}s after the failure (recover_within {}s); {ok_late} succeeded after it",
        if worst { "failure just after a refetch" } else { "failure at any time" },
        last.as_secs_f64(),
        OBJECTIVE.as_secs()
    );
    // The failure did reach clients (else the test proves nothing)...
    assert!(
        failed > 0,
        "no request failed: the failed backend was never asked"
    );
    // ...and stopped reaching them within the objective.
    assert!(
        last <= OBJECTIVE,
        "a request failed {:.2}s after the failure, past recover_within {}s",
        last.as_secs_f64(),
        OBJECTIVE.as_secs()
    );
    assert!(
        ok_late >= 200,
        "only {ok_late} requests succeeded after the objective"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_recover_within_the_objective_through_unbound() {
    check(false, scenario(false).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_recover_within_the_objective_when_the_failure_follows_a_refetch() {
    check(true, scenario(true).await);
}
