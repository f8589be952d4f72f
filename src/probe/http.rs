//! The HTTP and HTTPS checks as a machine ([`HttpJudge`]): one GET, redirects not followed,
//! the status matched against the expected ranges and, if configured, a substring looked for
//! in the first `max_body` bytes of the body; and the TLS configurations HTTPS checks share.
//!
//! A check needs only a status line and, at most, a bounded body, so this is a small HTTP/1.1
//! client, driven by either executor (see [`super::check`]), rather than a general one: it
//! costs a fraction of the CPU per probe, lets the connection be closed with a reset, and
//! shares one TLS configuration among all members (see docs/performance.md, "Probing at
//! scale").

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::check::{Failure, Step};
use crate::config::HttpCheck;

/// The most of a response head that is read.
const MAX_HEAD: usize = 16 * 1024;

/// The HTTP check of one member as a machine: its request, and the judge of a response.
pub struct HttpJudge {
    request: Vec<u8>,
    expect: Vec<(u16, u16)>,
    body_contains: Option<Vec<u8>>,
    max_body: usize,
    /// The connection is kept for the next probe (`keepalive`) when the response allows.
    reusable: bool,
}

/// The two shared TLS configurations: verifying (web PKI roots) and not verifying.
struct Tls {
    verify: TlsConnector,
    no_verify: TlsConnector,
}

fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let builder = || {
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                // The ring provider supports the default protocol versions.
                .expect("TLS 1.2 and 1.3 are supported")
        };
        let verify = builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let no_verify = builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider.clone())))
            .with_no_client_auth();
        Tls {
            verify: TlsConnector::from(Arc::new(verify)),
            no_verify: TlsConnector::from(Arc::new(no_verify)),
        }
    })
}

/// The TLS connector and server name of `check` against `target`, for an HTTPS check.
pub(super) fn tls_of(
    check: &HttpCheck,
    target: SocketAddr,
) -> Result<Option<(TlsConnector, ServerName<'static>)>, String> {
    if !check.tls {
        return Ok(None);
    }
    let name = check
        .sni
        .clone()
        .or_else(|| check.host.clone())
        .unwrap_or_else(|| target.ip().to_string());
    let name = ServerName::try_from(name.clone()).map_err(|e| format!("TLS name {name:?}: {e}"))?;
    let conn = if check.tls_verify {
        &tls().verify
    } else {
        &tls().no_verify
    };
    Ok(Some((conn.clone(), name)))
}

impl HttpJudge {
    /// Builds the judge of `check` against `target`.
    pub fn new(check: &HttpCheck, target: SocketAddr, max_body: usize) -> Result<Self, String> {
        let host = check.host.clone().unwrap_or_else(|| match target {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        });
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gtmd-probe/{}\r\nAccept: */*\r\n{}",
            check.path,
            env!("CARGO_PKG_VERSION"),
            if check.keepalive.is_some() {
                ""
            } else {
                "Connection: close\r\n"
            }
        );
        for (k, v) in &check.headers {
            if k.chars().any(|c| c.is_control() || c == ':') || v.chars().any(char::is_control) {
                return Err(format!("header {k:?} has a character not allowed in HTTP"));
            }
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        Ok(Self {
            request: request.into_bytes(),
            expect: check.expect.clone(),
            body_contains: check.body_contains.clone().map(String::into_bytes),
            max_body,
            reusable: check.keepalive.is_some(),
        })
    }

    /// The request this probe sends.
    pub(crate) fn request(&self) -> &[u8] {
        &self.request
    }

    /// Judges the response read so far (`buf`; `ended`: the peer has closed): more is to be
    /// read, or the probe's result, with whether the connection can carry the next request.
    /// The head is read whole (up to [`MAX_HEAD`]); the body to its end only when the
    /// connection is to be reused (and the length is known and small), or as far as needed
    /// to find `body_contains`.
    pub(crate) fn judge(&self, buf: &[u8], ended: bool) -> Step {
        let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
            if !ended && buf.len() < MAX_HEAD {
                return Step::Read(MAX_HEAD);
            }
            return Step::Done(Err(if buf.is_empty() {
                Failure::early("connection closed without a response".into())
            } else {
                Failure::late("incomplete or oversized response head".into())
            }));
        };
        let head = &buf[..head_end];
        let status = match parse_status(head) {
            Ok(s) => s,
            Err(e) => return Step::Done(Err(Failure::late(e))),
        };
        if !self
            .expect
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
        {
            return Step::Done(Err(Failure::late(format!("HTTP status {status}"))));
        }
        let length = Some(self.reusable)
            .filter(|&r| r)
            .and_then(|_| reusable_length(head))
            .filter(|&l| l <= self.max_body);
        let cap = head_end + length.unwrap_or(self.max_body);
        let needle = self.body_contains.as_deref();
        let want = match (length, needle) {
            (Some(_), _) => buf.len() < cap,
            (None, Some(n)) => buf.len() < cap && find(&buf[head_end..], n).is_none(),
            (None, None) => false,
        };
        if want && !ended {
            return Step::Read(cap);
        }
        if let Some(needle) = needle {
            let body = &buf[head_end..buf.len().min(cap)];
            if find(body, needle).is_none() {
                if buf.len() >= cap {
                    crate::base::metrics::limit_hit("probe_max_body");
                }
                return Step::Done(Err(Failure::late(format!(
                    "body does not contain {:?} (first {} bytes read)",
                    String::from_utf8_lossy(needle),
                    body.len()
                ))));
            }
        }
        Step::Done(Ok(length.is_some() && !ended && buf.len() == cap))
    }
}

/// The body length of a response after which the connection stays usable: HTTP/1.1, a
/// Content-Length, no chunked encoding and no `Connection: close`.
fn reusable_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    if !lines.next()?.starts_with("HTTP/1.1 ") {
        return None;
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("connection")
                && value
                    .split(',')
                    .any(|v| v.trim().eq_ignore_ascii_case("close")))
        {
            return None;
        }
    }
    length
}

/// The status code of an `HTTP/1.x NNN ...` status line.
fn parse_status(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") && (100..=599).contains(&code) => {
            Ok(code)
        }
        _ => Err(format!("not an HTTP response: {:?}", line.trim_end())),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The verifier for `tls_verify = false`: any certificate is accepted, but the handshake
/// signatures are still checked (the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n\r\n"), Ok(204));
        assert_eq!(parse_status(b"HTTP/1.0 503\r\n\r\n"), Ok(503));
        assert!(parse_status(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status(b"HTTP/1.1 999 Nope\r\n").is_err());
    }

    #[test]
    fn only_framed_keepalive_responses_are_reusable() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(reusable_length(ok), Some(3));
        for head in [
            &b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, Close\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        ] {
            assert_eq!(
                reusable_length(head),
                None,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
