//! The admin API under a client that opens 100 connections and sends their headers slowly,
//! each reopened as the server closes it: the operator's requests are still answered, from
//! another address and from the crowding client's own address.

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// One slow-header connection from `from`, reopened as the server closes it until `stop`:
/// half a request line, then a byte now and then.
async fn trickle(admin: SocketAddr, from: IpAddr, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(from, 0)).unwrap();
        let Ok(mut s) = sock.connect(admin).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if s.write_all(b"GET /sta").await.is_err() {
            continue;
        }
        loop {
            let read = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf));
            match read.await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ if stop.load(Ordering::Relaxed) => return,
                _ => {
                    if s.write_all(b"t").await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// Starts 100 slow-header connections from `from`; they stop when the set is dropped.
async fn crowd(admin: SocketAddr, from: IpAddr) -> (JoinSet<()>, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = JoinSet::new();
    for _ in 0..100 {
        slow.spawn(trickle(admin, from, stop.clone()));
    }
    // Let the crowd fill its slots and start being reopened.
    tokio::time::sleep(Duration::from_millis(500)).await;
    (slow, stop)
}

/// Of 5 requests to `/healthz` from `from`, each on a new connection as `gtmd ctl` makes
/// them and each given 5 s, how many were answered.
async fn operator(admin: SocketAddr, from: IpAddr) -> usize {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .local_address(from)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut answered = 0;
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        let r = client.get(format!("http://{admin}/healthz")).send().await;
        eprintln!(
            "from {from}: {:?} in {:?}",
            r.as_ref().map(|r| r.status()),
            asked.elapsed()
        );
        if r.is_ok_and(|r| r.status().is_success()) {
            answered += 1;
        }
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_from_one_client_do_not_lock_out_the_admin_api() {
    let g = start("", &repo().join("zones")).await;
    let (slow, stop) = crowd(g.admin, [127, 0, 0, 2].into()).await;
    let answered = operator(g.admin, [127, 0, 0, 1].into()).await;
    stop.store(true, Ordering::Relaxed);
    drop(slow);
    assert_eq!(answered, 5, "admin requests answered out of 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_from_the_operators_own_address_do_not_lock_it_out() {
    let g = start("", &repo().join("zones")).await;
    let (slow, stop) = crowd(g.admin, [127, 0, 0, 1].into()).await;
    let same = operator(g.admin, [127, 0, 0, 1].into()).await;
    let other = operator(g.admin, [127, 0, 0, 3].into()).await;
    stop.store(true, Ordering::Relaxed);
    drop(slow);
    assert_eq!(
        (same, other),
        (5, 5),
        "admin requests answered out of 5, from the crowded address and from another"
    );
}
