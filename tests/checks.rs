//! What each kind of health check sends and accepts, against real HTTP and HTTPS backends.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;

/// Starts gtmd with one check (`check` is its TOML body) probing one member at `port`, and
/// returns gtmd once that member has had its first result.
async fn one_member(check: &str, port: u16) -> Gtmd {
    let config = format!(
        "[checks.c]\n{check}\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 1\nrise = 1\n\
         [pools.p]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.10\", name = \"m\", probe_address = \"127.0.0.1\", probe_port = {port} }}]\n\
         [names.\"app.example.test.\"]\npools = [\"p\"]\n"
    );
    start(&config, &repo().join("zones")).await
}

async fn state_after(g: &Gtmd, probes: u64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let m = member(g.admin, "m").await;
        if m["probes"].as_u64().unwrap() >= probes || start.elapsed() > Duration::from_secs(5) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_sends_path_host_and_headers_on_a_fresh_connection() {
    let b = Backend::start().await;
    let g = one_member(
        "type = \"http\"\npath = \"/ready?deep=1\"\nhost = \"app.example.com\"\nheaders = { \"X-Probe\" = \"gtmd\" }",
        b.addr.port(),
    )
    .await;
    let m = state_after(&g, 3).await;
    assert_eq!(m["state"], "up", "{m}");
    let head = b.last_request.lock().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /ready?deep=1 http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: app.example.com\r\n"), "{head}");
    assert!(head.contains("\r\nx-probe: gtmd\r\n"), "{head}");
    // One connection per probe: the backend accepted as many connections as probes were made.
    let hits = b.hits.load(std::sync::atomic::Ordering::SeqCst);
    let probes = member(g.admin, "m").await["probes"].as_u64().unwrap();
    assert!(hits >= probes, "{hits} connections for {probes} probes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_statuses_are_matched() {
    let b = Backend::start().await;
    b.set(Mode::Redirect);
    let g = one_member(
        "type = \"http\"\nexpect_status = [\"200-299\"]",
        b.addr.port(),
    )
    .await;
    let m = state_after(&g, 1).await;
    assert_eq!(m["state"], "down", "{m}");
    assert_eq!(m["last_error"], "HTTP status 302");
    // The same redirect is a success when 302 is expected.
    let g = one_member("type = \"http\"\nexpect_status = [200, 302]", b.addr.port()).await;
    assert_eq!(state_after(&g, 1).await["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_must_contain_the_configured_text() {
    let b = Backend::start().await;
    let g = one_member("type = \"http\"\nbody_contains = \"ok\"", b.addr.port()).await;
    assert_eq!(state_after(&g, 1).await["state"], "up");
    b.set(Mode::Maintenance);
    let p = member(g.admin, "m").await["probes"].as_u64().unwrap();
    let m = state_after(&g, p + 2).await;
    assert_eq!(m["state"], "down", "{m}");
    assert!(
        m["last_error"]
            .as_str()
            .unwrap()
            .contains("body does not contain \"ok\""),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_check_verifies_certificates_unless_told_not_to_and_sends_sni() {
    let b = TlsBackend::start("app.example.test").await;
    // A self-signed certificate fails verification (on by default).
    let g = one_member(
        "type = \"https\"\nsni = \"app.example.test\"",
        b.addr.port(),
    )
    .await;
    let m = state_after(&g, 1).await;
    assert_eq!(m["state"], "down", "{m}");
    assert!(
        m["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{m}"
    );
    drop(g);
    // With verification off, the same backend is up, and the handshake carried the SNI name.
    let g = one_member(
        "type = \"https\"\nsni = \"app.example.test\"\ntls_verify = false",
        b.addr.port(),
    )
    .await;
    assert_eq!(state_after(&g, 1).await["state"], "up");
    let seen = b.sni.lock().unwrap().clone();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|s| s.as_deref() == Some("app.example.test")),
        "{seen:?}"
    );
}

/// An HTTP/1.1 server that keeps connections open, counting connections and requests. With
/// `close_after_each`, it closes each connection after one answer without saying so, as a
/// server whose idle timeout is shorter than the probe interval does.
struct KeepAliveBackend {
    port: u16,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    last_request: Arc<Mutex<String>>,
}

impl KeepAliveBackend {
    async fn start(close_after_each: bool) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = KeepAliveBackend {
            port: l.local_addr().unwrap().port(),
            connections: Arc::default(),
            requests: Arc::default(),
            last_request: Arc::default(),
        };
        let (c, r, last) = (
            b.connections.clone(),
            b.requests.clone(),
            b.last_request.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                c.fetch_add(1, SeqCst);
                let (r, last) = (r.clone(), last.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buf.drain(..end + 4).collect();
                            *last.lock().unwrap() = String::from_utf8_lossy(&head).into();
                            r.fetch_add(1, SeqCst);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                            if s.write_all(ok).await.is_err() || close_after_each {
                                return;
                            }
                        }
                    }
                });
            }
        });
        b
    }
}

/// One member with a kept-alive check; `rise = 100` keeps a member that failed once down.
async fn keepalive_member(port: u16, keepalive: &str) -> Gtmd {
    let config = format!(
        "[checks.c]\ntype = \"http\"\nkeepalive = \"{keepalive}\"\nbody_contains = \"ok\"\n\
         interval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 100\n\
         [pools.p]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.10\", name = \"m\", probe_address = \"127.0.0.1\", probe_port = {port} }}]\n\
         [names.\"app.example.test.\"]\npools = [\"p\"]\n"
    );
    start(&config, &repo().join("zones")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_reuses_one_connection_and_renews_it() {
    let b = KeepAliveBackend::start(false).await;
    let g = keepalive_member(b.port, "60s").await;
    let m = state_after(&g, 8).await;
    assert_eq!(m["state"], "up", "{m}");
    assert_eq!(
        b.connections.load(SeqCst),
        1,
        "one connection for all probes"
    );
    assert!(b.requests.load(SeqCst) >= 8);
    let head = b.last_request.lock().unwrap().to_ascii_lowercase();
    assert!(!head.contains("connection: close"), "{head}");

    // A connection is renewed once it is `keepalive` old.
    let b = KeepAliveBackend::start(false).await;
    let g = keepalive_member(b.port, "250ms").await;
    let m = state_after(&g, 12).await;
    assert_eq!(m["state"], "up", "{m}");
    let (conns, reqs) = (b.connections.load(SeqCst), b.requests.load(SeqCst));
    assert!(
        conns >= 3 && conns * 2 <= reqs,
        "{conns} connections, {reqs} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_retries_a_connection_the_server_closed_while_idle() {
    let b = KeepAliveBackend::start(true).await;
    let g = keepalive_member(b.port, "60s").await;
    let m = state_after(&g, 8).await;
    // Each probe found the kept connection closed and went on to a fresh one; none failed.
    assert_eq!(m["state"], "up", "{m}");
    assert!(b.connections.load(SeqCst) >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_still_fails_on_a_bad_answer_over_the_kept_connection() {
    let b = Backend::start().await;
    let g = keepalive_member(b.addr.port(), "60s").await;
    assert_eq!(state_after(&g, 1).await["state"], "up");
    b.set(Mode::Error);
    let p = member(g.admin, "m").await["probes"].as_u64().unwrap();
    let m = state_after(&g, p + 2).await;
    assert_eq!(m["state"], "down", "{m}");
    assert_eq!(m["last_error"], "HTTP status 500", "{m}");
}
