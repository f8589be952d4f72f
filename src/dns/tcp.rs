//! TCP connections (RFC 7766): length-prefixed, pipelined queries answered in order, each
//! from the publication loaded at that moment (no lock, no await between load and answer),
//! through [`crate::dns::answer`]. Connections are capped in all and per client; at a cap a
//! newcomer takes the place of the longest-idle connection (its own client's, when that
//! client holds more than its share), a slow or idle client loses its slot, and idle
//! connections are closed sooner while the server is crowded.
//!
//! This module owns the connections, not DNS semantics: those are in [`crate::dns`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dns::{self, Answered, Publication, Published, Transport};

mod slots;

/// Accepts connections on `listener` until `stop`, then lets those under way finish. At a
/// limit, a newcomer takes the place of an idle connection ([`slots::Table::admit`]).
pub async fn accept(listener: TcpListener, published: Published, stop: CancellationToken) {
    let mut conns: JoinSet<u64> = JoinSet::new();
    let mut table = slots::Table::new();
    let transfers = Arc::new(slots::Transfers::default());
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let wire = published.load().wire.clone();
                    let ip = peer.ip().to_canonical();
                    let max = wire.tcp_max_connections;
                    // Refused: closed at once.
                    let Ok((id, conn)) = table.admit(ip, max, wire.tcp_max_per_client, &stop) else {
                        continue;
                    };
                    let published = published.clone();
                    let crowded = table.crowded.clone();
                    let transfers = transfers.clone();
                    conns.spawn(async move {
                        tcp_conn(stream, peer, published, conn, crowded, transfers).await;
                        id
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Ok(id) = done {
                    table.remove(id, published.load().wire.tcp_max_connections);
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

/// The idle timeout in force now: as configured (a reload may change it), and at most
/// [`slots::CROWDED_IDLE`] while the server is crowded.
fn idle(published: &Published, crowded: &AtomicBool) -> Duration {
    let configured = published.load().wire.tcp_idle_timeout;
    if crowded.load(Ordering::Relaxed) {
        configured.min(slots::CROWDED_IDLE)
    } else {
        configured
    }
}

/// Waits until the client sends something (true), or the connection is to close: idle
/// longer than the idle timeout in force (which drops while the server is crowded, and is
/// looked at again each [`slots::CROWDED_IDLE`]), evicted, closed by the client, or the
/// server stops. Waiting on the buffer loses no byte when a slice ends.
async fn wait_for_query(
    rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    published: &Published,
    conn: &slots::Conn,
    crowded: &AtomicBool,
) -> bool {
    use tokio::io::AsyncBufReadExt;
    let since = std::time::Instant::now();
    loop {
        let left = idle(published, crowded).saturating_sub(since.elapsed());
        if left.is_zero() {
            crate::base::metrics::limit_hit("tcp_idle_timeout");
            return false;
        }
        let slice = left.min(slots::CROWDED_IDLE);
        tokio::select! {
            r = tokio::time::timeout(slice, rd.fill_buf()) => match r {
                Ok(Ok(b)) => return !b.is_empty(),
                Ok(Err(_)) => return false,
                Err(_) => continue,
            },
            // Evicted for a newcomer, or the server stops.
            _ = conn.leave.cancelled() => return false,
        }
    }
}

/// Serves one TCP connection: length-prefixed queries (RFC 1035 section 4.2.2), answered in
/// order, until the client closes, is idle too long, or the server stops. Pipelined queries
/// already read are answered together, in one write. After `tcp_max_queries` (when set), every
/// whole query already read is still answered before the connection is closed (RFC 7766
/// section 6.2.1 lets a server close, not drop queries it took).
async fn tcp_conn(
    stream: TcpStream,
    peer: SocketAddr,
    published: Published,
    conn: Arc<slots::Conn>,
    crowded: Arc<AtomicBool>,
    transfers: Arc<slots::Transfers>,
) {
    let _ = stream.set_nodelay(true);
    let ip = peer.ip().to_canonical();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(4096, rd);
    let mut buf = Vec::new();
    let mut fast = Vec::new();
    let mut framed = Vec::new();
    let mut counts = crate::base::metrics::QueryCounts::new("tcp");
    let mut answered = 0usize;
    let mut closing = false;
    loop {
        let buffered = whole_query_buffered(rd.buffer());
        if closing && !buffered {
            let _ = wr.shutdown().await;
            return;
        }
        let mut len = [0u8; 2];
        if !buffered {
            conn.idle();
            if !wait_for_query(&mut rd, &published, &conn, &crowded).await {
                return;
            }
        }
        conn.busy();
        let read = tokio::time::timeout(
            published.load().wire.tcp_read_timeout,
            rd.read_exact(&mut len),
        );
        match read.await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => return crate::base::metrics::limit_hit("tcp_read_timeout"),
        }
        let n = u16::from_be_bytes(len) as usize;
        buf.resize(n, 0);
        let wire = published.load().wire.clone();
        // A begun query must arrive whole soon: a slow sender cannot hold the slot.
        match tokio::time::timeout(wire.tcp_read_timeout, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => return crate::base::metrics::limit_hit("tcp_read_timeout"),
        }
        answered += 1;
        let p = published.load_full();
        if let Some(t) = answer_tcp(&p, &buf, ip, &mut fast, &mut framed, &mut counts) {
            counts.flush();
            let x = Xfr {
                p: &p,
                ip,
                transfers: &transfers,
                wire: &wire,
            };
            if !x.send(&mut wr, t, &mut framed, &mut counts).await {
                return;
            }
        }
        if wire.tcp_max_queries > 0 && answered >= wire.tcp_max_queries && !closing {
            crate::base::metrics::limit_hit("tcp_max_queries");
            closing = true;
        }
        // Answers to queries already read go out together, once no whole query is waiting.
        if framed.is_empty() || whole_query_buffered(rd.buffer()) && framed.len() < 32 * 1024 {
            continue;
        }
        counts.flush();
        if !send(&mut wr, &framed, wire.tcp_read_timeout).await {
            return;
        }
        framed.clear();
    }
}

/// Writes `framed` to the client within `limit`: a client that does not take its answers
/// cannot hold the slot either. False when the connection is done.
async fn send(wr: &mut tokio::net::tcp::OwnedWriteHalf, framed: &[u8], limit: Duration) -> bool {
    match tokio::time::timeout(limit, wr.write_all(framed)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            crate::base::metrics::limit_hit("tcp_write_timeout");
            false
        }
    }
}

/// Whether `buffered` starts with a whole length-prefixed message.
fn whole_query_buffered(buffered: &[u8]) -> bool {
    buffered.len() >= 2
        && buffered.len() >= 2 + u16::from_be_bytes([buffered[0], buffered[1]]) as usize
}

/// Answers one TCP query from `p` into `framed` (length-prefixed) and counts it, or returns
/// the transfer it asks for.
fn answer_tcp(
    p: &Publication,
    query: &[u8],
    ip: IpAddr,
    out: &mut Vec<u8>,
    framed: &mut Vec<u8>,
    counts: &mut crate::base::metrics::QueryCounts,
) -> Option<Box<dns::transfer::Stream>> {
    let timed = counts.sample().then(std::time::Instant::now);
    match dns::answer(p, query, ip, Transport::Tcp, out) {
        Answered::Nothing => None,
        Answered::One => {
            if let Some(t) = timed {
                counts.record_latency(t.elapsed());
            }
            counts.count(out);
            frame(framed, out);
            None
        }
        Answered::Transfer(t) => Some(t),
    }
}

/// A transfer to send on a connection: from publication `p`, to `ip`, under the listener's
/// transfer limits.
struct Xfr<'a> {
    p: &'a Publication,
    ip: IpAddr,
    transfers: &'a Arc<slots::Transfers>,
    wire: &'a crate::config::WireSettings,
}

impl Xfr<'_> {
    /// Sends transfer `t` after the answers already in `framed`: message by message, each
    /// made when the one before has been taken by the client, each within
    /// `tcp_read_timeout` (a stalled client loses the connection). Beyond the transfer
    /// limits it is answered REFUSED. False when the connection is done.
    async fn send(
        &self,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        t: Box<dns::transfer::Stream>,
        framed: &mut Vec<u8>,
        counts: &mut crate::base::metrics::QueryCounts,
    ) -> bool {
        let limit = self.wire.tcp_read_timeout;
        let (max, per_client) = (self.wire.max_transfers, self.wire.max_transfers_per_client);
        let Some(_slot) = self.transfers.acquire(self.ip, max, per_client) else {
            tracing::debug!(client = %self.ip, kind = t.kind(), "transfer refused: too many under way");
            let refused = t.refused();
            counts.count(&refused);
            frame(framed, &refused);
            return true;
        };
        if !framed.is_empty() && !send(wr, framed, limit).await {
            return false;
        }
        framed.clear();
        for (i, m) in t.messages(&self.p.snap).enumerate() {
            // A transfer counts once, by its first message.
            if i == 0 {
                counts.count(&m);
            }
            framed.clear();
            frame(framed, &m);
            if !send(wr, framed, limit).await {
                return false;
            }
        }
        framed.clear();
        true
    }
}

/// Appends `m` to `out` with its two-byte length prefix (RFC 1035 section 4.2.2).
fn frame(out: &mut Vec<u8>, m: &[u8]) {
    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    out.extend_from_slice(m);
}
