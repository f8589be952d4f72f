//! The DNS transports: UDP receive/answer loops and TCP connections with pipelined queries.
//! Each query is answered from the snapshot loaded at that moment (no lock, no await between
//! load and answer).
//!
//! This module owns sockets and tasks, not DNS semantics: those are in [`crate::dns`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dns::{self, Outcome, Transport, WireSettings};
use crate::snapshot::Published;

/// The largest UDP datagram we read.
const UDP_BUF: usize = 65_535;

/// What every transport task shares.
pub struct Shared {
    pub published: Published,
    pub wire: WireSettings,
    pub tcp_idle_timeout: Duration,
}

/// Binds UDP and TCP on `addr`. With port 0, both get the same ephemeral port.
pub async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// Starts the UDP workers and the TCP acceptor for one bound pair.
pub fn spawn(
    set: &mut JoinSet<()>,
    udp: UdpSocket,
    tcp: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let udp = Arc::new(udp);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..workers {
        set.spawn(udp_loop(udp.clone(), shared.clone(), stop.clone()));
    }
    set.spawn(tcp_accept(tcp, shared, stop));
}

async fn udp_loop(sock: Arc<UdpSocket>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let (len, src) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        if src.port() == 0 {
            continue;
        }
        let out = {
            let snap = shared.published.load();
            dns::handle(&snap, &buf[..len], src.ip(), Transport::Udp, &shared.wire)
        };
        if let Outcome::Reply(bytes) = out {
            if let Err(e) = sock.send_to(&bytes, src).await {
                tracing::debug!(error = %e, %src, "udp send");
            }
        }
    }
}

async fn tcp_accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    conns.spawn(tcp_conn(stream, peer, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = stop.cancelled() => break,
        }
        while conns.try_join_next().is_some() {}
    }
    // Let connections finish the answers they are writing.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
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
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(shared.tcp_idle_timeout, stream.read_exact(&mut len)) => r,
            _ = stop.cancelled() => return,
        };
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let n = u16::from_be_bytes(len) as usize;
        buf.resize(n, 0);
        match tokio::time::timeout(shared.tcp_idle_timeout, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let out = {
            let snap = shared.published.load();
            dns::handle(&snap, &buf, peer.ip(), Transport::Tcp, &shared.wire)
        };
        let messages = match out {
            Outcome::Drop => continue,
            Outcome::Reply(m) => vec![m],
            Outcome::Transfer(ms) => ms,
        };
        for m in messages {
            let mut framed = Vec::with_capacity(m.len() + 2);
            framed.extend_from_slice(&(m.len() as u16).to_be_bytes());
            framed.extend_from_slice(&m);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
    }
}
