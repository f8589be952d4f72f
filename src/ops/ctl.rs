//! `gtmd ctl`: the operator's command line over the admin API, with reqwest's blocking client.

use std::net::SocketAddr;
use std::time::Duration;

/// One request to the admin API at `addr`; returns the body of a 2xx answer, or the error.
///
/// It runs on a thread of its own, so that it may be called from inside an async runtime
/// (tests do) as well as from the command line.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<String, String> {
    // A server bound to every address is reached on loopback.
    let addr = match addr.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(a) if a.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| format!("{method:?} is not an HTTP method: {e}"))?;
    std::thread::scope(|s| {
        s.spawn(|| send(addr, method, path, token, body))
            .join()
            .unwrap_or_else(|_| Err("the request thread failed".into()))
    })
}

fn send(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<String, String> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let post = method == reqwest::Method::POST;
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    } else if post {
        // A change must carry a header no cross-origin form can send.
        req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
    }
    let resp = req
        .send()
        .map_err(|e| format!("cannot reach the admin API at {addr}: {e}"))?;
    let code = resp.status();
    let text = resp
        .text()
        .map_err(|e| format!("admin API at {addr}: {e}"))?;
    if code.is_success() {
        Ok(text)
    } else {
        Err(format!(
            "admin API answered {}: {}",
            code.as_u16(),
            text.trim_end()
        ))
    }
}
