//! The HTTP and HTTPS checks: one GET on a fresh connection (closed with a reset, so no
//! TIME_WAIT builds up at thousands of probes a second), redirects not followed, the status
//! matched against the expected ranges and, if configured, a substring looked for in the
//! first `max_body` bytes of the body.
//!
//! A check needs only a status line and, at most, a bounded body, so this is a small HTTP/1.1
//! client over a tokio socket rather than a general one: it costs a fraction of the CPU per
//! probe, lets the connection be closed with a reset, and shares one TLS configuration among
//! all members (see the README's notes on probing at scale).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::config::HttpCheck;

/// The most of a response head that is read.
const MAX_HEAD: usize = 16 * 1024;

/// A ready-to-use probe of one member.
pub struct HttpProbe {
    target: SocketAddr,
    request: Vec<u8>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    expect: Vec<(u16, u16)>,
    body_contains: Option<Vec<u8>>,
    max_body: usize,
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

impl HttpProbe {
    /// Builds the probe of `check` against `target`.
    pub fn new(check: &HttpCheck, target: SocketAddr, max_body: usize) -> Result<Self, String> {
        let host = check.host.clone().unwrap_or_else(|| match target {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        });
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gtmd-probe/{}\r\nAccept: */*\r\nConnection: close\r\n",
            check.path,
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in &check.headers {
            if k.chars().any(|c| c.is_control() || c == ':') || v.chars().any(char::is_control) {
                return Err(format!("header {k:?} has a character not allowed in HTTP"));
            }
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let tls = if check.tls {
            let name = check
                .sni
                .clone()
                .or_else(|| check.host.clone())
                .unwrap_or_else(|| target.ip().to_string());
            let name = ServerName::try_from(name.clone())
                .map_err(|e| format!("TLS name {name:?}: {e}"))?;
            let conn = if check.tls_verify {
                &tls().verify
            } else {
                &tls().no_verify
            };
            Some((conn.clone(), name))
        } else {
            None
        };
        Ok(Self {
            target,
            request: request.into_bytes(),
            tls,
            expect: check.expect.clone(),
            body_contains: check.body_contains.clone().map(String::into_bytes),
            max_body,
        })
    }

    /// One GET; the caller bounds the time.
    pub async fn probe(&self) -> Result<(), String> {
        let stream = super::tcp::connect(self.target).await?;
        match &self.tls {
            None => self.exchange(stream).await,
            Some((conn, name)) => {
                let s = conn
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.target))?;
                self.exchange(s).await
            }
        }
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) -> Result<(), String> {
        s.write_all(&self.request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::with_capacity(1024);
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() >= MAX_HEAD || read_more(&mut s, &mut buf, MAX_HEAD).await? == 0 {
                return Err(if buf.is_empty() {
                    "connection closed without a response".into()
                } else {
                    "incomplete or oversized response head".into()
                });
            }
        };
        let status = parse_status(&buf[..head_end])?;
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
        let cap = head_end + self.max_body;
        while buf.len() < cap && find(&buf[head_end..], needle).is_none() {
            if read_more(&mut s, &mut buf, cap).await? == 0 {
                break;
            }
        }
        let body = &buf[head_end..buf.len().min(cap)];
        if find(body, needle).is_some() {
            Ok(())
        } else {
            Err(format!(
                "body does not contain {:?} (first {} bytes read)",
                String::from_utf8_lossy(needle),
                body.len()
            ))
        }
    }
}

/// Reads more bytes into `buf`, up to `cap` in all; returns how many (0 at the end).
async fn read_more<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Result<usize, String> {
    let mut chunk = [0u8; 4096];
    let want = chunk.len().min(cap.saturating_sub(buf.len()).max(1));
    match s.read(&mut chunk[..want]).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        // A peer that closes without TLS close_notify has still sent a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(format!("receive: {e}")),
    }
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
}
