//! Fast probes overlap: with `fast_interval`, a backend that accepts connections and never
//! answers is confirmed down as soon as one that refuses them, within gtmd's own detection
//! bound (interval + 10% + (fall - 1) × fast_interval + timeout), on both probe executors:
//! the probe thread (plain HTTP) and the probe tasks (HTTP with kept connections).

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP backend that answers 200 until told to hang; then it accepts, reads the request
/// and never answers, counting how many such connections are open at once (a probe that
/// times out closes its connection, which the backend sees).
struct Hanging {
    addr: std::net::SocketAddr,
    hang: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hanging {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hang = Arc::new(AtomicBool::new(false));
        let (open, most_open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (h, o, m) = (hang.clone(), open.clone(), most_open.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (h, o, m) = (h.clone(), o.clone(), m.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    if !h.load(Ordering::SeqCst) {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
                            .await;
                        return;
                    }
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    // Held until the prober gives up on it (end of stream or reset).
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Hanging {
            addr,
            hang,
            open,
            most_open,
            task,
        }
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// m0 probed at `hang`, m1 at `refuse`, m2 at `ok`: interval 1 s, fast_interval 100 ms,
/// timeout 300 ms, fall 3, rise 2, and `extra` in the check.
fn config(hang: &Hanging, refuse: &Backend, ok: &Backend, extra: &str) -> String {
    let member = |i: usize, port: u16| {
        format!("{{ address = \"192.0.2.{}\", name = \"m{i}\", probe_address = \"127.0.0.1\", probe_port = {port} }}", 10 + i)
    };
    format!(
        "[checks.web]\ntype = \"http\"\npath = \"/health\"\ninterval = \"1s\"\nfast_interval = \"100ms\"\n\
         timeout = \"300ms\"\nfall = 3\nrise = 2\n{extra}\n\
         [pools.web]\ncheck = \"web\"\nmembers = [{}, {}, {}]\n\
         [names.\"app.example.test.\"]\npools = [\"web\"]\n",
        member(0, hang.addr.port()),
        member(1, refuse.addr.port()),
        member(2, ok.addr.port()),
    )
}

/// Breaks m0 (hang) and m1 (refuse) at once; returns how long each took to be down, the
/// detection bound gtmd states for the name, and the most hanging probes open at once.
async fn hang_and_refuse(extra: &str) -> (Duration, Duration, f64, usize) {
    let hang = Hanging::start().await;
    let (mut refuse, ok) = (Backend::start().await, Backend::start().await);
    let g = start(&config(&hang, &refuse, &ok, extra), &repo().join("zones")).await;
    for m in ["m0", "m1", "m2"] {
        assert_eq!(member(g.admin, m).await["state"], "up", "{m}");
    }
    let bound = status(g.admin).await["names"][0]["recovery"]["detection"]
        .as_f64()
        .expect("a detection bound in /status");
    let t0 = Instant::now();
    hang.hang.store(true, Ordering::SeqCst);
    refuse.refuse();
    let (mut hung, mut refused) = (None, None);
    while (hung.is_none() || refused.is_none()) && t0.elapsed() < Duration::from_secs(10) {
        if hung.is_none() && member(g.admin, "m0").await["state"] == "down" {
            hung = Some(t0.elapsed());
        }
        if refused.is_none() && member(g.admin, "m1").await["state"] == "down" {
            refused = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hung = hung.expect("the hanging member goes down within 10 s");
    let refused = refused.expect("the refusing member goes down within 10 s");
    let _ = hang.open.load(Ordering::SeqCst);
    (hung, refused, bound, hang.most_open.load(Ordering::SeqCst))
}

async fn a_hang_is_detected_within_the_stated_bound(executor: &str, extra: &str) {
    let (hung, refused, bound, most_open) = hang_and_refuse(extra).await;
    println!(
        "{executor}: hanging backend down after {hung:?}, refusing one after {refused:?}; \
         gtmd's bound {bound}s; {most_open} hanging probes open at once"
    );
    // The confirming probes went out while the first was still waiting for its answer.
    assert!(
        most_open >= 2,
        "{executor}: fast probes of a hanging backend did not overlap ({most_open} at once)"
    );
    // The measured time includes polling /status on a shared machine: a second of slack.
    let limit = Duration::from_secs_f64(bound + 1.0);
    assert!(
        hung <= limit,
        "{executor}: the hang took {hung:?}, bound {bound}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_is_confirmed_by_overlapping_fast_probes_on_the_probe_thread() {
    a_hang_is_detected_within_the_stated_bound("probe thread (plain HTTP)", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_is_confirmed_by_overlapping_fast_probes_on_a_probe_task() {
    a_hang_is_detected_within_the_stated_bound(
        "probe task (HTTP, kept connections)",
        "keepalive = \"10s\"",
    )
    .await;
}
