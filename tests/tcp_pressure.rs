//! TCP under pressure, with real clients: idle connections beyond the limit, from many
//! addresses and from one, kept open and reopened as the server closes them, must not lock
//! a new client out; and idle connections are closed sooner when the server is crowded.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `dns` from the loopback address `from`.
async fn connect(dns: SocketAddr, from: &str) -> Option<TcpStream> {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), s.connect(dns))
        .await
        .ok()?
        .ok()
}

/// Idle clients: `per_addr` connections from each of `from`, each reopened as soon as the
/// server closes it, until the guard is dropped.
struct Idlers {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Idlers {
    async fn start(dns: SocketAddr, from: &[String], per_addr: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for addr in from {
            for _ in 0..per_addr {
                let (addr, stop) = (addr.clone(), stop.clone());
                tasks.spawn(async move {
                    let mut buf = [0u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        let Some(mut s) = connect(dns, &addr).await else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        // Idle until the server closes it, then open it again.
                        loop {
                            let read =
                                tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf));
                            match read.await {
                                Ok(Ok(0)) | Ok(Err(_)) => break,
                                _ if stop.load(Ordering::Relaxed) => return,
                                _ => {}
                            }
                        }
                    }
                });
            }
            // Let the accept queue drain between addresses.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every idler has had its turn at the server.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Self { stop, tasks }
    }
}

impl Drop for Idlers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tasks.abort_all();
    }
}

/// New clients, one after another: how many of `n` got their TCP query answered.
async fn new_clients_answered(dns: SocketAddr, from: &str, n: usize, tries: usize) -> usize {
    let www = Some(vec!["192.0.2.80".to_string()]);
    let mut answered = 0;
    for _ in 0..n {
        for _ in 0..tries {
            if let Some(mut s) = connect(dns, from).await {
                if ask_tcp(&mut s).await == www {
                    answered += 1;
                    break;
                }
            }
        }
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_limit_from_many_addresses_do_not_lock_out_a_new_client() {
    let g = start_with("", "tcp_max_connections = 32", &repo().join("zones")).await;
    let from: Vec<String> = (1..=6).map(|i| format!("127.0.21.{i}")).collect();
    let _idle = Idlers::start(g.dns, &from, 8).await;
    let answered = new_clients_answered(g.dns, "127.0.22.1", 10, 1).await;
    assert_eq!(answered, 10, "new TCP clients answered out of 10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_limit_from_one_address_do_not_lock_out_anyone() {
    let g = start_with("", "tcp_max_connections = 32", &repo().join("zones")).await;
    let _idle = Idlers::start(g.dns, &["127.0.23.1".to_string()], 48).await;
    let other = new_clients_answered(g.dns, "127.0.23.2", 10, 1).await;
    assert_eq!(other, 10, "clients of another address answered out of 10");
    // A client behind the same address (a NAT) takes the place of that address's own
    // longest-idle connection. Its connection is one of that address's own, so the idlers'
    // reconnects may evict it before its query arrives: as a real client would, it tries
    // once more (a refusing server answers neither try).
    let same = new_clients_answered(g.dns, "127.0.23.1", 10, 2).await;
    assert_eq!(
        same, 10,
        "clients of the crowded address answered out of 10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_sooner_when_the_server_is_crowded() {
    let g = start_with(
        "",
        "tcp_max_connections = 8\ntcp_idle_timeout = \"60s\"",
        &repo().join("zones"),
    )
    .await;
    // Five of eight slots taken: over half the limit.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect(g.dns, "127.0.24.1").await.unwrap();
        assert!(ask_tcp(&mut s).await.is_some());
        held.push(s);
    }
    // Far sooner than the configured 60 s, idle connections are closed until the server is
    // no longer crowded (under half the limit); which of them go is the server's choice.
    let mut waits = tokio::task::JoinSet::new();
    for mut s in held {
        waits.spawn(async move {
            let mut buf = [0u8; 16];
            let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
            matches!(r, Ok(Ok(0)) | Ok(Err(_)))
        });
    }
    let closed = waits.join_all().await;
    let open = closed.iter().filter(|c| !**c).count();
    assert!(
        open < 4,
        "{open} of 5 idle connections stayed open 10 s on a server crowded at 4 of 8"
    );
}
