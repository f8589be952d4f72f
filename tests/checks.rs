//! What each kind of health check sends and accepts, against real HTTP and HTTPS backends.

mod common;

use std::time::{Duration, Instant};

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
