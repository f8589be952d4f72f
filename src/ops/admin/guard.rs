//! Who may use the admin API, checked before any handler or body extractor runs: a request
//! must name this server in `Host` (its listen address, `localhost` on loopback, or a name in
//! `admin.allowed_hosts`), so that a page whose name was rebound to the API's address cannot
//! use it. A change (any method but GET and HEAD) must also come from no other origin
//! (`Origin`), carry the token when one is set (401 before anything else is looked at), and
//! carry a header a browser sends across origins only after a CORS preflight, which this
//! API never grants: the token's `Authorization`, or `Content-Type: application/json`.
//!
//! It only refuses; it changes nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::ops::reload::Token;

/// What the checks need: the bound address, the extra names, and the token.
#[derive(Clone)]
pub struct Guard {
    pub listen: SocketAddr,
    /// Host names (lower case, no port) accepted in `Host` and `Origin`.
    pub allowed_hosts: Arc<Vec<String>>,
    pub token: Token,
}

/// Refuses a request that another site could have made (see the module header).
pub async fn check(
    State(g): State<Guard>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let h = req.headers();
    if let Some(host) = h.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !g.host_allowed(host) {
            crate::base::metrics::limit_hit("admin_host");
            let msg = format!(
                "Host {host:?} is not this server: use its address, or add the name to admin.allowed_hosts\n"
            );
            return (StatusCode::FORBIDDEN, msg).into_response();
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Err(refusal) = g.change_allowed(h) {
            return refusal.into_response();
        }
    }
    next.run(req).await
}

impl Guard {
    /// Whether `host` (a `Host` value: name or address, with or without a port) names this
    /// server.
    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = name.parse::<IpAddr>() {
            let ours = self.listen.ip();
            return ip == ours || ours.is_unspecified();
        }
        (name == "localhost" && self.listen.ip().is_loopback())
            || self.allowed_hosts.iter().any(|a| a == name)
    }

    /// The checks on a change: origin, token, then a header no cross-origin form can send.
    fn change_allowed(&self, h: &HeaderMap) -> Result<(), (StatusCode, String)> {
        if let Some(origin) = h.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            if !host.is_some_and(|host| self.host_allowed(host)) {
                crate::base::metrics::limit_hit("admin_origin");
                return Err((
                    StatusCode::FORBIDDEN,
                    format!("a change from the origin {origin:?} is refused: only pages of this server may make changes\n"),
                ));
            }
        }
        let tokened = authorize(&self.token, h)?;
        let json = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if tokened || json {
            return Ok(());
        }
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a change needs Content-Type: application/json (or the token)\n".into(),
        ))
    }
}

/// `host` without a trailing `:port` (an IPv6 address stays in its brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if host.starts_with('[') && host[..i].ends_with(']') => &host[..i],
        Some(i) if !host.starts_with('[') && host[..i].find(':').is_none() => &host[..i],
        _ => host,
    }
}

/// Refuses a change without the configured bearer token; Ok(true) when one was given and
/// matched, Ok(false) when none is configured.
fn authorize(token: &Token, headers: &HeaderMap) -> Result<bool, (StatusCode, String)> {
    let token = token.load();
    let Some(token) = token.as_deref() else {
        return Ok(false);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared in constant time, so the answer's timing says nothing about the token.
    let same = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if same {
        Ok(true)
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "a change needs Authorization: Bearer <the token in admin.token_file>\n".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, names: &[&str]) -> Guard {
        Guard {
            listen: listen.parse().unwrap(),
            allowed_hosts: Arc::new(names.iter().map(|s| s.to_string()).collect()),
            token: Default::default(),
        }
    }

    #[test]
    fn only_names_of_this_server_are_accepted_as_host() {
        let g = guard("127.0.0.1:8053", &["gtm.example.net"]);
        for ok in [
            "127.0.0.1:8053",
            "127.0.0.1",
            "localhost:8053",
            "LOCALHOST",
            "gtm.example.net:8053",
            "gtm.example.net.",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "rebind.evil.example:8053",
            "10.0.0.1:8053",
            "[::1]:8053",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        let v6 = guard("[::1]:8053", &[]);
        assert!(v6.host_allowed("[::1]:8053") && v6.host_allowed("[::1]"));
        let any = guard("0.0.0.0:8053", &[]);
        assert!(any.host_allowed("192.0.2.7:8053") && !any.host_allowed("localhost"));
    }
}
