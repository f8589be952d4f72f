//! The DNS transports: batched UDP threads ([`crate::dns::udp`]) and TCP connections with
//! pipelined queries. Each query is answered from the snapshot loaded at that moment (no lock,
//! no await between load and answer), by the fast path when it can, else the general path.
//!
//! This module owns sockets and tasks, not DNS semantics: those are in [`crate::dns`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dns::snapshot::Published;
use crate::dns::udp;
use crate::dns::{self, Outcome, Transport};

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
            match bind_tcp(SocketAddr::new(addr.ip(), port)) {
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

/// A TCP listener on `addr`. An IPv6 socket serves IPv6 only (IPV6_V6ONLY), as the UDP
/// sockets do, so that `0.0.0.0:53` and `[::]:53` can be listened on side by side (as Knot and
/// NSD do); SO_REUSEADDR lets a restart bind again at once.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
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
                        crate::ops::metrics::limit_hit("tcp_max_connections");
                        continue;
                    }
                    let count = per_client.entry(ip).or_insert(0);
                    if wire.tcp_max_per_client > 0 && *count >= wire.tcp_max_per_client {
                        crate::ops::metrics::limit_hit("tcp_max_per_client");
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
/// order, until the client closes, is idle too long, or the server stops. Pipelined queries
/// already read are answered together, in one write. After `tcp_max_queries` (when set), every
/// whole query already read is still answered before the connection is closed (RFC 7766
/// section 6.2.1 lets a server close, not drop queries it took).
async fn tcp_conn(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let ip = peer.ip().to_canonical();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(4096, rd);
    let mut buf = Vec::new();
    let mut fast = Vec::new();
    let mut framed = Vec::new();
    let mut counts = crate::ops::metrics::QueryCounts::new("tcp");
    let mut answered = 0usize;
    let mut closing = false;
    loop {
        let buffered = whole_query_buffered(rd.buffer());
        if closing && !buffered {
            let _ = wr.shutdown().await;
            return;
        }
        let mut len = [0u8; 2];
        let read = if buffered {
            Ok(rd.read_exact(&mut len).await)
        } else {
            tokio::select! {
                r = tokio::time::timeout(idle(&shared), rd.read_exact(&mut len)) => r,
                _ = stop.cancelled() => return,
            }
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                crate::ops::metrics::limit_hit("tcp_idle_timeout");
                return;
            }
        }
        let n = u16::from_be_bytes(len) as usize;
        buf.resize(n, 0);
        let wire = shared.published.load().wire.clone();
        // A begun query must arrive whole soon: a slow sender cannot hold the slot.
        match tokio::time::timeout(wire.tcp_read_timeout, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                crate::ops::metrics::limit_hit("tcp_read_timeout");
                return;
            }
        }
        answered += 1;
        let timed = counts.sample().then(std::time::Instant::now);
        let start = framed.len();
        if answer_tcp(&shared, &buf, ip, &mut fast, &mut framed) {
            if let Some(t) = timed {
                counts.record_latency(t.elapsed());
            }
            // A transfer counts once, by its first message.
            counts.count(&framed[start + 2..]);
        }
        if wire.tcp_max_queries > 0 && answered >= wire.tcp_max_queries && !closing {
            crate::ops::metrics::limit_hit("tcp_max_queries");
            closing = true;
        }
        // Answers to queries already read go out together, once no whole query is waiting.
        if framed.is_empty() || whole_query_buffered(rd.buffer()) && framed.len() < 32 * 1024 {
            continue;
        }
        counts.flush();
        // A client that does not take its answers cannot hold the slot either.
        match tokio::time::timeout(wire.tcp_read_timeout, wr.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                crate::ops::metrics::limit_hit("tcp_write_timeout");
                return;
            }
        }
        framed.clear();
    }
}

/// Whether `buffered` starts with a whole length-prefixed message.
fn whole_query_buffered(buffered: &[u8]) -> bool {
    buffered.len() >= 2
        && buffered.len() >= 2 + u16::from_be_bytes([buffered[0], buffered[1]]) as usize
}

/// Answers one TCP query into `framed` (length-prefixed, several messages for a transfer), by
/// the fast path when it can; false when nothing is to be sent.
fn answer_tcp(
    shared: &Shared,
    query: &[u8],
    ip: IpAddr,
    fast: &mut Vec<u8>,
    framed: &mut Vec<u8>,
) -> bool {
    let snap = shared.published.load();
    if snap
        .fast
        .answer(query, ip, snap.wire.udp_payload, true, fast)
    {
        frame(framed, fast);
        return true;
    }
    match dns::handle(&snap, query, ip, Transport::Tcp, &snap.wire) {
        Outcome::Drop => false,
        Outcome::Reply(m) => {
            frame(framed, &m);
            true
        }
        Outcome::Transfer(ms) => {
            for m in &ms {
                frame(framed, m);
            }
            true
        }
    }
}

/// Appends `m` to `out` with its two-byte length prefix (RFC 1035 section 4.2.2).
fn frame(out: &mut Vec<u8>, m: &[u8]) {
    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    out.extend_from_slice(m);
}
