//! The admin API under a client that opens 100 connections and sends their headers slowly,
//! each reopened as the server closes it: the operator's requests are still answered.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_from_one_client_do_not_lock_out_the_admin_api() {
    let g = start("", &repo().join("zones")).await;
    let admin = g.admin;
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let stop = stop.clone();
        slow.spawn(async move {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                let Ok(mut s) = sock.connect(admin).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Half a request's headers, then a byte now and then until closed.
                if s.write_all(b"GET /status HTTP/1.1\r\n").await.is_err() {
                    continue;
                }
                loop {
                    let read = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf));
                    match read.await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ if stop.load(Ordering::Relaxed) => return,
                        _ => {
                            if s.write_all(b"X").await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A new connection per request, as `gtmd ctl` makes: an idle kept-alive one may be
    // closed for a newcomer.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut answered = 0;
    for _ in 0..5 {
        let r = client.get(format!("http://{admin}/healthz")).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            answered += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    slow.abort_all();
    assert_eq!(answered, 5, "admin requests answered out of 5");
}
