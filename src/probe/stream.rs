//! The task executor of [`Machine`]s: one probe at a time on a tokio connection, fresh or
//! kept (`keepalive`), plain or TLS. Every connection starts fresh and, once done, is closed
//! with a reset (SO_LINGER 0) so that thousands of probes a second leave no TIME_WAIT
//! sockets behind, as HAProxy's checks do.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use super::check::{Failure, Machine, Step};

/// A ready-to-use probe of one member by one machine.
pub struct StreamProbe {
    machine: Machine,
    target: SocketAddr,
    /// Connections come from this address when given.
    source: Option<IpAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// How long one connection may be reused (`keepalive`); `None`: never.
    keepalive: Option<Duration>,
    /// The connection kept from the last probe, and when it was opened (probes that overlap
    /// take it in turn; one that finds it taken opens its own).
    idle: std::sync::Mutex<Option<(Box<dyn Stream>, Instant)>>,
}

/// A connection, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

impl StreamProbe {
    pub(crate) fn new(
        machine: Machine,
        target: SocketAddr,
        source: Option<IpAddr>,
        tls: Option<(TlsConnector, ServerName<'static>)>,
        keepalive: Option<Duration>,
    ) -> Self {
        Self {
            machine,
            target,
            source,
            tls,
            keepalive,
            idle: std::sync::Mutex::new(None),
        }
    }

    /// One probe; the caller bounds the time (a probe cut short drops its connection).
    pub async fn probe(&self) -> Result<(), String> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((conn, opened)) = idle {
            if self.keepalive.is_some_and(|k| opened.elapsed() < k) {
                match self.exchange(conn).await {
                    Ok(kept) => {
                        self.keep(kept.map(|c| (c, opened)));
                        return Ok(());
                    }
                    Err(f) if !f.before_response => return Err(f.msg),
                    Err(_) => {} // closed while idle: try a fresh connection
                }
            }
        }
        let conn = self.connect().await?;
        let opened = Instant::now();
        match self.exchange(conn).await {
            Ok(kept) => {
                self.keep(
                    kept.filter(|_| self.keepalive.is_some())
                        .map(|c| (c, opened)),
                );
                Ok(())
            }
            Err(f) => Err(f.msg),
        }
    }

    /// Keeps `conn` for the next probe (a poisoned lock only means a probe panicked while
    /// holding it; the value is still a connection or none).
    fn keep(&self, conn: Option<(Box<dyn Stream>, Instant)>) {
        if conn.is_some() {
            *self.idle.lock().unwrap_or_else(|e| e.into_inner()) = conn;
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let stream = connect(self.target, self.source).await?;
        Ok(match &self.tls {
            None => Box::new(stream),
            Some((conn, name)) => Box::new(
                conn.connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.target))?,
            ),
        })
    }

    /// Sends the machine's request and reads until it judges. Returns the connection if it
    /// can carry the next request.
    async fn exchange(&self, mut s: Box<dyn Stream>) -> Result<Option<Box<dyn Stream>>, Failure> {
        s.write_all(self.machine.request())
            .await
            .map_err(|e| Failure::early(format!("send: {e}")))?;
        let mut buf = Vec::new();
        let mut ended = false;
        loop {
            match self.machine.judge(&buf, ended) {
                Step::Read(cap) => {
                    if buf.capacity() == 0 {
                        buf.reserve(1024);
                    }
                    match read_more(&mut s, &mut buf, cap).await {
                        Ok(0) => ended = true,
                        Ok(_) => {}
                        Err(msg) => {
                            return Err(Failure {
                                before_response: buf.is_empty(),
                                msg,
                            })
                        }
                    }
                }
                Step::Done(r) => return r.map(|reuse| reuse.then_some(s)),
            }
        }
    }

    /// True if this probe can run on the shared probe thread ([`super::plain`]): on a fresh
    /// plain connection each time.
    pub(crate) fn is_plain(&self) -> bool {
        self.tls.is_none() && self.keepalive.is_none()
    }

    /// The machine, the address probed and the source address, for the probe thread.
    pub(crate) fn into_plain(self) -> (Machine, SocketAddr, Option<IpAddr>) {
        (self.machine, self.target, self.source)
    }
}

/// Opens a fresh connection to `target`, from `source` when given, closed with a reset once
/// done; the caller bounds the time.
pub async fn connect(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let sock = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let sock = sock.map_err(|e| format!("socket: {e}"))?;
    sock.set_zero_linger().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    sock.connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))
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
