//! The TCP connection table: which connections are open, from which address, and since when
//! each has been idle. At a limit it picks the connection a newcomer replaces: that client's
//! own longest-idle one when the client holds more than its share, else the longest-idle of
//! all (as Knot and NSD do, rather than refusing the newcomer). It also says when the server
//! is crowded, so that idle connections are closed sooner.
//!
//! The accept loop alone owns the table (no lock); a connection marks itself idle or busy in
//! its own atomics, and is told to leave by its token. The table does no I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// `idle_since` of a connection with a query under way.
const BUSY: u64 = u64::MAX;

/// At and above this share of `tcp_max_connections` in use (one half, as NSD), the server is
/// crowded: a connection idle for [`CROWDED_IDLE`] is closed.
const CROWDED_SHARE: (usize, usize) = (1, 2);

/// The idle timeout while crowded (when `tcp_idle_timeout` is not shorter).
pub(super) const CROWDED_IDLE: Duration = Duration::from_secs(1);

/// One open connection, as the table and the connection itself see it.
pub(super) struct Conn {
    /// Microseconds since the table's start when the connection began to wait for a query,
    /// or [`BUSY`].
    idle_since: AtomicU64,
    /// Cancelled when the connection must close (evicted, or the server stops).
    pub leave: CancellationToken,
    start: Instant,
}

impl Conn {
    /// The connection waits for its next query from now on.
    pub fn idle(&self) {
        self.idle_since
            .store(ms_since(self.start), Ordering::Relaxed);
    }

    /// A query is under way: the connection is not to be evicted.
    pub fn busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
    }
}

fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

struct Entry {
    ip: IpAddr,
    conn: Arc<Conn>,
    /// Told to leave; no longer counted.
    evicted: bool,
}

/// The open connections of one listener.
pub(super) struct Table {
    conns: HashMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
    /// Connections counted: open and not evicted.
    live: usize,
    next: u64,
    start: Instant,
    /// Whether idle connections are to be closed after [`CROWDED_IDLE`].
    pub crowded: Arc<AtomicBool>,
}

/// Why a newcomer was turned away.
pub(super) type Refused = &'static str;

impl Table {
    pub fn new() -> Self {
        Self {
            conns: HashMap::new(),
            per_client: HashMap::new(),
            live: 0,
            next: 0,
            start: Instant::now(),
            crowded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Admits a connection from `ip` under the limits (`per_client` 0: no cap of its own),
    /// telling another to leave when one is full. Returns its id and state, or the limit
    /// that refused it: every connection that could make room has a query under way.
    pub fn admit(
        &mut self,
        ip: IpAddr,
        max: usize,
        per_client: usize,
        stop: &CancellationToken,
    ) -> Result<(u64, Arc<Conn>), Refused> {
        let mine = self.per_client.get(&ip).copied().unwrap_or(0);
        if per_client > 0 && mine >= per_client {
            crate::base::metrics::limit_hit("tcp_max_per_client");
            self.evict(Some(ip)).ok_or("tcp_max_per_client")?;
        } else if self.live >= max {
            crate::base::metrics::limit_hit("tcp_max_connections");
            // A client's share: an eighth of the limit, or its own cap.
            let share = if per_client > 0 {
                per_client
            } else {
                (max / 8).max(1)
            };
            let own = (mine >= share).then_some(ip);
            self.evict(own).ok_or("tcp_max_connections")?;
        }
        let conn = Arc::new(Conn {
            idle_since: AtomicU64::new(ms_since(self.start)),
            leave: stop.child_token(),
            start: self.start,
        });
        let id = self.next;
        self.next += 1;
        let entry = Entry {
            ip,
            conn: conn.clone(),
            evicted: false,
        };
        self.conns.insert(id, entry);
        *self.per_client.entry(ip).or_insert(0) += 1;
        self.live += 1;
        self.update_crowded(max);
        Ok((id, conn))
    }

    /// Tells the longest-idle connection (of `only` when given) to leave, and stops counting
    /// it. None when no such connection is idle.
    fn evict(&mut self, only: Option<IpAddr>) -> Option<()> {
        let (_, e) = self
            .conns
            .iter_mut()
            .filter(|(_, e)| !e.evicted && only.is_none_or(|ip| e.ip == ip))
            .map(|(id, e)| ((e.conn.idle_since.load(Ordering::Relaxed), *id), e))
            .filter(|((since, _), _)| *since != BUSY)
            // Of those idle since the same moment, the one accepted first.
            .min_by_key(|(key, _)| *key)?;
        e.evicted = true;
        e.conn.leave.cancel();
        let ip = e.ip;
        crate::base::metrics::limit_hit("tcp_evicted");
        self.uncount(ip);
        Some(())
    }

    fn uncount(&mut self, ip: IpAddr) {
        self.live -= 1;
        if let Some(c) = self.per_client.get_mut(&ip) {
            *c -= 1;
            if *c == 0 {
                self.per_client.remove(&ip);
            }
        }
    }

    /// Forgets connection `id`, which has closed.
    pub fn remove(&mut self, id: u64, max: usize) {
        if let Some(e) = self.conns.remove(&id) {
            if !e.evicted {
                self.uncount(e.ip);
            }
        }
        self.update_crowded(max);
    }

    fn update_crowded(&self, max: usize) {
        let (num, den) = CROWDED_SHARE;
        let crowded = self.live * den >= max * num;
        self.crowded.store(crowded, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        [127, 0, 0, last].into()
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_connection_and_spares_busy_ones() {
        let stop = CancellationToken::new();
        let mut t = Table::new();
        let (_, a) = t.admit(ip(1), 2, 0, &stop).unwrap();
        let (_, b) = t.admit(ip(2), 2, 0, &stop).unwrap();
        a.busy();
        b.idle();
        let (_, c) = t.admit(ip(3), 2, 0, &stop).unwrap();
        assert!(b.leave.is_cancelled() && !a.leave.is_cancelled());
        // Nothing idle: the newcomer is refused.
        c.busy();
        assert_eq!(
            t.admit(ip(4), 2, 0, &stop).err(),
            Some("tcp_max_connections")
        );
    }

    #[test]
    fn a_client_over_its_share_replaces_its_own_connection() {
        let stop = CancellationToken::new();
        let mut t = Table::new();
        let (_, other) = t.admit(ip(9), 8, 0, &stop).unwrap();
        let mut mine = Vec::new();
        for _ in 0..7 {
            mine.push(t.admit(ip(1), 8, 0, &stop).unwrap().1);
        }
        assert!(t.crowded.load(Ordering::Relaxed));
        t.admit(ip(1), 8, 0, &stop).unwrap();
        assert!(!other.leave.is_cancelled(), "another client lost its slot");
        assert_eq!(mine.iter().filter(|c| c.leave.is_cancelled()).count(), 1);
    }
}

/// Zone transfers under way on a listener's connections, in all and per client address.
#[derive(Default)]
pub(super) struct Transfers {
    counts: std::sync::Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A transfer's place among [`Transfers`], given back when dropped.
pub(super) struct TransferSlot {
    owner: Arc<Transfers>,
    ip: IpAddr,
}

impl Transfers {
    /// A place for a transfer to `ip`, or None when `max` are under way in all or
    /// `per_client` to this client (0: no cap of its own).
    pub fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        per_client: usize,
    ) -> Option<TransferSlot> {
        // A poisoned lock still holds counts that are right: each change is one statement.
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mine = c.1.get(&ip).copied().unwrap_or(0);
        if per_client > 0 && mine >= per_client {
            crate::base::metrics::limit_hit("max_transfers_per_client");
            return None;
        }
        if c.0 >= max {
            crate::base::metrics::limit_hit("max_transfers");
            return None;
        }
        c.0 += 1;
        *c.1.entry(ip).or_insert(0) += 1;
        Some(TransferSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for TransferSlot {
    fn drop(&mut self) {
        let mut c = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.0 -= 1;
        if let Some(n) = c.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.1.remove(&self.ip);
            }
        }
    }
}
