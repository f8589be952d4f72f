//! The admin API against other sites, with real HTTP requests: a page whose name was
//! rebound to the API's address (DNS rebinding), a cross-origin form, and the order in which
//! a change's token and content type are checked. `gtmd ctl` and the status page's own
//! requests still pass.

use crate::common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;

/// A raw request's status code: `headers` as given (with no Host unless listed), `body` sent.
async fn raw(admin: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        req += &format!("{h}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out));
    read.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

const DISABLE: &str = r#"{"target":"web/m0","action":"disable","reason":"x"}"#;

async fn overrides(admin: SocketAddr) -> usize {
    status(admin).await["overrides"].as_array().unwrap().len()
}

async fn web() -> (Gtmd, Backend, Backend) {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let g = start(
        &web_config(&[&b0, &b1], "", "app.example.test."),
        &repo().join("zones"),
    )
    .await;
    (g, b0, b1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_another_host_is_refused_as_dns_rebinding() {
    let (g, _b0, _b1) = web().await;
    let evil = format!("Host: rebind.evil.example:{}", g.admin.port());
    let json = "Content-Type: application/json";
    let code = raw(g.admin, "POST", "/overrides", &[&evil, json], DISABLE).await;
    assert_eq!(code, 403, "a rebound page's change");
    assert_eq!(overrides(g.admin).await, 0, "the member was disabled");
    assert_eq!(raw(g.admin, "GET", "/status", &[&evil], "").await, 403);
    // The server's own address, and localhost on loopback, are this server.
    let own = format!("Host: {}", g.admin);
    assert_eq!(raw(g.admin, "GET", "/status", &[&own], "").await, 200);
    let local = format!("Host: localhost:{}", g.admin.port());
    assert_eq!(raw(g.admin, "GET", "/status", &[&local], "").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_name_is_accepted_as_host() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let cfg = web_config(
        &[&b0, &b1],
        "allowed_hosts = [\"gtm.example.net\"]",
        "app.example.test.",
    );
    let g = start(&cfg, &repo().join("zones")).await;
    let named = format!("Host: gtm.example.net:{}", g.admin.port());
    assert_eq!(raw(g.admin, "GET", "/status", &[&named], "").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_change_is_refused() {
    let (g, _b0, _b1) = web().await;
    let own = format!("Host: {}", g.admin);
    // A plain form posted from another site: refused for its origin.
    let form = "Content-Type: application/x-www-form-urlencoded";
    let origin = "Origin: http://evil.example";
    assert_eq!(
        raw(g.admin, "POST", "/reload", &[&own, origin, form], "a=b").await,
        403
    );
    let json = "Content-Type: application/json";
    let code = raw(
        g.admin,
        "POST",
        "/overrides",
        &[&own, origin, json],
        DISABLE,
    )
    .await;
    assert_eq!(code, 403);
    // A simple request with no Origin (a browser that leaves it out) cannot change anything
    // either: a change needs a header no form can send.
    assert_eq!(
        raw(g.admin, "POST", "/reload", &[&own, form], "a=b").await,
        415
    );
    assert_eq!(overrides(g.admin).await, 0);
    // The page's own origin may.
    let same = format!("Origin: http://{}", g.admin);
    let code = raw(g.admin, "POST", "/overrides", &[&own, &same, json], DISABLE).await;
    assert_eq!(code, 200);
    // And so may gtmd ctl.
    let clear = json!({ "target": "web/m0" });
    gtmd::ops::ctl::request(g.admin, "POST", "/overrides/clear", None, Some(&clear)).unwrap();
    assert_eq!(overrides(g.admin).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_checked_before_the_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let cfg = web_config(
        &[&b0, &b1],
        &format!("token_file = {:?}", token.display().to_string()),
        "app.example.test.",
    );
    let g = start(&cfg, &repo().join("zones")).await;
    let own = format!("Host: {}", g.admin);
    assert_eq!(
        raw(g.admin, "POST", "/overrides", &[&own], DISABLE).await,
        401
    );
    assert_eq!(raw(g.admin, "POST", "/reload", &[&own], "").await, 401);
    let auth = "Authorization: Bearer s3cret";
    assert_eq!(
        raw(g.admin, "POST", "/overrides", &[&own, auth], DISABLE).await,
        415
    );
    let json = "Content-Type: application/json";
    let code = raw(g.admin, "POST", "/overrides", &[&own, auth, json], DISABLE).await;
    assert_eq!(code, 200);
}
