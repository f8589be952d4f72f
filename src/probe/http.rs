//! The HTTP and HTTPS checks: one GET on a fresh connection, redirects not followed, the
//! status matched against the expected ranges and, if configured, a substring looked for in
//! the first `max_body` bytes of the body.

use std::net::SocketAddr;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, HOST};

use crate::config::HttpCheck;

/// A ready-to-use probe of one member: the client carries its TLS and address settings.
#[derive(Debug)]
pub struct HttpProbe {
    client: reqwest::Client,
    url: String,
    expect: Vec<(u16, u16)>,
    body_contains: Option<String>,
    max_body: usize,
}

impl HttpProbe {
    /// Builds the probe of `check` against `target`.
    pub fn new(check: &HttpCheck, target: SocketAddr, max_body: usize) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &check.headers {
            let k = HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
            let v = HeaderValue::try_from(v.as_str())
                .map_err(|e| format!("header value {v:?}: {e}"))?;
            headers.insert(k, v);
        }
        if let Some(h) = &check.host {
            let v = HeaderValue::try_from(h.as_str()).map_err(|e| format!("host {h:?}: {e}"))?;
            headers.insert(HOST, v);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per probe: a pooled one would hide firewall and L4 failures.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .user_agent(concat!("gtmd-probe/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers);
        // The URL names the host the TLS handshake is for (SNI, certificate name); the
        // connection itself always goes to `target`.
        let url_host = if check.tls {
            builder = builder.danger_accept_invalid_certs(!check.tls_verify);
            check.sni.clone().or_else(|| check.host.clone())
        } else {
            None
        };
        let url = match url_host {
            Some(name) => {
                builder = builder.resolve(&name, target);
                format!("https://{name}:{}{}", target.port(), check.path)
            }
            None => {
                let scheme = if check.tls { "https" } else { "http" };
                format!("{scheme}://{target}{}", check.path)
            }
        };
        let client = builder.build().map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            client,
            url,
            expect: check.expect.clone(),
            body_contains: check.body_contains.clone(),
            max_body,
        })
    }

    /// One GET; the caller bounds the time.
    pub async fn probe(&self) -> Result<(), String> {
        let mut resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        if !self
            .expect
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
        {
            return Err(format!("HTTP status {status}"));
        }
        let Some(needle) = &self.body_contains else {
            return Ok(());
        };
        let mut body = Vec::new();
        while body.len() < self.max_body {
            match resp.chunk().await.map_err(|e| describe(&e))? {
                Some(c) => body.extend_from_slice(&c[..c.len().min(self.max_body - body.len())]),
                None => break,
            }
        }
        if String::from_utf8_lossy(&body).contains(needle.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "body does not contain {needle:?} (first {} bytes read)",
                body.len()
            ))
        }
    }
}

/// A short, single-line description of a reqwest error with its innermost cause.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
