//! Resource limits, each hit for real: TCP connections in all and per client, a slow sender
//! and a client that is idle, queries per connection, and the admin API's request size.
//! Each one that bites is counted in `gtmd_limits_total{limit}`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `dns` from the loopback address `from`.
async fn connect(dns: SocketAddr, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(dns).await.unwrap()
}

/// Whether the server closes `s` within 5 s (reading nothing, or only the answers it sent).
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// One query over `s`; its answer's addresses, or None if the connection is closed.
async fn ask(s: &mut TcpStream) -> Option<Vec<String>> {
    let q = query_msg("www.example.test.", RecordType::A, true)
        .to_vec()
        .unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.ok()?;
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(addrs(&hickory_proto::op::Message::from_vec(&body).unwrap()))
}

async fn limit_count(admin: SocketAddr, limit: &str) -> f64 {
    let key = format!("gtmd_limits_total{{limit=\"{limit}\"}} ");
    metric(admin, &key).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_capped_in_all_and_per_client() {
    let g = start_with(
        "",
        "tcp_max_connections = 4\ntcp_max_per_client = 2",
        &repo().join("zones"),
    )
    .await;
    let www = Some(vec!["192.0.2.80".to_string()]);
    // Two from one client are served; the third from it is closed at once.
    let mut a1 = connect(g.dns, "127.0.5.1").await;
    let mut a2 = connect(g.dns, "127.0.5.1").await;
    assert_eq!(ask(&mut a1).await, www);
    assert_eq!(ask(&mut a2).await, www);
    let mut a3 = connect(g.dns, "127.0.5.1").await;
    assert!(
        closed(&mut a3).await,
        "a third connection from one client stays open"
    );
    // Others still get in, up to four in all.
    let mut b1 = connect(g.dns, "127.0.5.2").await;
    let mut b2 = connect(g.dns, "127.0.5.3").await;
    assert_eq!(ask(&mut b1).await, www);
    assert_eq!(ask(&mut b2).await, www);
    let mut c = connect(g.dns, "127.0.5.4").await;
    assert!(closed(&mut c).await, "a fifth connection stays open");
    // A slot freed is a slot given again.
    drop(a1);
    let again = wait_until(Duration::from_secs(5), || async {
        let mut s = connect(g.dns, "127.0.5.1").await;
        ask(&mut s).await == www
    })
    .await;
    assert!(again.is_some());
    assert!(limit_count(g.admin, "tcp_max_per_client").await >= 1.0);
    assert!(limit_count(g.admin, "tcp_max_connections").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_lose_their_slot() {
    let g = start_with(
        "",
        "tcp_max_per_client = 1\ntcp_read_timeout = \"300ms\"\ntcp_idle_timeout = \"600ms\"",
        &repo().join("zones"),
    )
    .await;
    // Slowloris: a length, one byte of the query, then nothing.
    let mut slow = connect(g.dns, "127.0.6.1").await;
    slow.write_all(&[0, 40, 0x12]).await.unwrap();
    assert!(
        closed(&mut slow).await,
        "a stalled query keeps its connection"
    );
    assert!(limit_count(g.admin, "tcp_read_timeout").await >= 1.0);
    // Idle after an answer: closed after the idle timeout, and the client's one slot is free.
    let mut idle = connect(g.dns, "127.0.6.1").await;
    assert!(ask(&mut idle).await.is_some());
    assert!(closed(&mut idle).await, "an idle connection stays open");
    let mut next = connect(g.dns, "127.0.6.1").await;
    assert!(ask(&mut next).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ends_after_its_query_cap() {
    let g = start_with("", "tcp_max_queries = 5", &repo().join("zones")).await;
    let mut s = connect(g.dns, "127.0.7.1").await;
    for i in 0..5 {
        assert!(ask(&mut s).await.is_some(), "query {i}");
    }
    assert_eq!(ask(&mut s).await, None, "a sixth query was answered");
    assert!(limit_count(g.admin, "tcp_max_queries").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_a_huge_body() {
    let g = start("", &repo().join("zones")).await;
    let reason = "x".repeat(gtmd::admin::MAX_BODY + 1);
    let body = serde_json::json!({ "target": "app/eu-1", "action": "disable", "reason": reason });
    let r = reqwest::Client::new()
        .post(format!("http://{}/overrides", g.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(limit_count(g.admin, "admin_max_body").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_reads_no_more_than_max_body() {
    // A backend whose marker comes after 100 KB of body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let body = format!("{}healthy", "x".repeat(100_000));
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    let cfg = format!(
        "[probe]\nmax_body = 1024\n[checks.web]\ntype = \"http\"\nbody_contains = \"healthy\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
         [pools.app]\ncheck = \"web\"\nmembers = [{{ name = \"m\", address = \"192.0.2.11\", probe_address = \"127.0.0.1\", probe_port = {port} }}]\n\
         [names.\"app.example.test.\"]\npools = [\"app\"]\n"
    );
    let g = start(&cfg, &repo().join("zones")).await;
    let m = member(g.admin, "m").await;
    assert_eq!(m["state"], "down", "{m}");
    let err = m["last_error"].as_str().unwrap();
    assert!(err.contains("first 1024 bytes"), "{err}");
    assert!(limit_count(g.admin, "probe.max_body").await >= 1.0);
    server.abort();
}
