//! The DNS transports: batched UDP threads ([`crate::udp`]) and TCP connections with
//! pipelined queries. Each query is answered from the snapshot loaded at that moment (no lock,
//! no await between load and answer), by the fast path when it can, else the general path.
//!
//! This module owns sockets and tasks, not DNS semantics: those are in [`crate::dns`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dns::{self, Outcome, Transport};
use crate::snapshot::Published;
use crate::udp;

/// What every transport task shares.
pub struct Shared {
    pub published: Published,
}

/// The sockets of one DNS listen address: SO_REUSEPORT UDP sockets and a TCP listener.
pub struct DnsListener {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: TcpListener,
}

impl DnsListener {
    /// Binds UDP (one socket per available core) and TCP on `addr`. With port 0, all get the
    /// same ephemeral port.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut last = None;
        for _ in 0..20 {
            let udp = udp::bind_reuseport(addr, threads)?;
            let port = udp[0].local_addr()?.port();
            match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
                Ok(tcp) => return Ok(Self { udp, tcp }),
                Err(e) if addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    /// The UDP address (the TCP listener has the same).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp[0].local_addr()
    }
}

/// Starts the UDP threads and the TCP acceptor of one listener.
pub fn spawn(
    set: &mut JoinSet<()>,
    l: DnsListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    for sock in l.udp {
        let handle = udp::spawn(sock, shared.clone(), stop.clone())?;
        set.spawn_blocking(move || {
            let _ = handle.join();
        });
    }
    set.spawn(tcp_accept(l.tcp, shared, stop));
    Ok(())
}

async fn tcp_accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut conns: JoinSet<IpAddr> = JoinSet::new();
    let mut per_client: HashMap<IpAddr, usize> = HashMap::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let wire = shared.published.load().wire.clone();
                    let ip = peer.ip().to_canonical();
                    // Over a limit, the connection is closed at once.
                    if conns.len() >= wire.tcp_max_connections {
                        crate::stats::limit_hit("tcp_max_connections");
                        continue;
                    }
                    let count = per_client.entry(ip).or_insert(0);
                    if *count >= wire.tcp_max_per_client {
                        crate::stats::limit_hit("tcp_max_per_client");
                        continue;
                    }
                    *count += 1;
                    let (shared, stop) = (shared.clone(), stop.clone());
                    conns.spawn(async move {
                        tcp_conn(stream, peer, shared, stop).await;
                        ip
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Ok(ip) = done {
                    if let Some(c) = per_client.get_mut(&ip) {
                        *c -= 1;
                        if *c == 0 {
                            per_client.remove(&ip);
                        }
                    }
                }
            }
            _ = stop.cancelled() => break,
        }
    }
    // Let connections finish the answers they are writing.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// The idle timeout in force now (a reload may change it).
fn idle(shared: &Shared) -> Duration {
    shared.published.load().wire.tcp_idle_timeout
}

/// Serves one TCP connection: length-prefixed queries (RFC 1035 section 4.2.2), answered in
/// order, until the client closes, is idle too long, or the server stops.
async fn tcp_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut fast = Vec::new();
    let mut framed = Vec::new();
    let mut counts = crate::stats::QueryCounts::new("tcp");
    let mut answered = 0;
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(idle(&shared), stream.read_exact(&mut len)) => r,
            _ = stop.cancelled() => return,
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                crate::stats::limit_hit("tcp_idle_timeout");
                return;
            }
        }
        let n = u16::from_be_bytes(len) as usize;
        buf.resize(n, 0);
        let wire = shared.published.load().wire.clone();
        // A begun query must arrive whole soon: a slow sender cannot hold the slot.
        match tokio::time::timeout(wire.tcp_read_timeout, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                crate::stats::limit_hit("tcp_read_timeout");
                return;
            }
        }
        answered += 1;
        // The fast path answers into `fast`; otherwise the general path's messages are used.
        let timed = counts.sample().then(std::time::Instant::now);
        let general = {
            let snap = shared.published.load();
            if snap.fast.answer(
                &buf,
                peer.ip().to_canonical(),
                snap.wire.udp_payload,
                true,
                &mut fast,
            ) {
                None
            } else {
                Some(dns::handle(
                    &snap,
                    &buf,
                    peer.ip(),
                    Transport::Tcp,
                    &snap.wire,
                ))
            }
        };
        framed.clear();
        let first = match &general {
            None => frame(&mut framed, &fast),
            Some(Outcome::Drop) => continue,
            Some(Outcome::Reply(m)) => frame(&mut framed, m),
            Some(Outcome::Transfer(ms)) => {
                let starts: Vec<usize> = ms.iter().map(|m| frame(&mut framed, m)).collect();
                starts.first().copied().unwrap_or(0)
            }
        };
        if let Some(t) = timed {
            counts.record_latency(t.elapsed());
        }
        // A transfer counts once, by its first message.
        counts.count(&framed[first..]);
        counts.flush();
        // A client that does not take its answers cannot hold the slot either.
        match tokio::time::timeout(wire.tcp_read_timeout, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                crate::stats::limit_hit("tcp_write_timeout");
                return;
            }
        }
        if answered >= wire.tcp_max_queries {
            crate::stats::limit_hit("tcp_max_queries");
            return;
        }
    }
}

/// Appends `m` to `out` with its two-byte length prefix (RFC 1035 section 4.2.2); returns
/// where the message starts in `out`.
fn frame(out: &mut Vec<u8>, m: &[u8]) -> usize {
    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    let at = out.len();
    out.extend_from_slice(m);
    at
}
