//! The admin API's connections: each served by hyper directly (not `axum::serve`), so that
//! its headers are under `admin.header_timeout`; capped in all (`admin.max_connections`)
//! and per client address (`admin.max_per_client`).
//!
//! At a cap a new connection is neither refused nor closed: the connection that has waited
//! longest for a request's headers (slow to send them, or idle between requests) is closed
//! for it, of the same client when that client is at its cap; a request under way is never
//! cut off. A connection is not closed for another in its first [`GRACE`] (new, or since
//! its last request ended), time enough to send a request; while every candidate is in its
//! grace or busy, the newcomer waits in arrival order (at most `max_connections` of them,
//! then the listener's backlog; each at most `admin.header_timeout`). So slow-header
//! clients that reopen every connection closed cannot lock the operator out, even from the
//! operator's own address: like DNS over TCP, room is made from the longest-waiting
//! connection, and like it a newcomer's request is read before it can lose its place.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AdminLimits;

/// How long a new connection, or one whose request has just been answered, keeps its place
/// against newcomers.
pub(super) const GRACE: Duration = Duration::from_millis(200);

/// When a connection started waiting for a request's headers (opened, or its last request
/// ended), in milliseconds since the table's epoch; and how many requests are under way.
#[derive(Default)]
struct Progress {
    waiting_since: AtomicU64,
    busy: AtomicUsize,
}

struct Entry {
    ip: IpAddr,
    progress: Arc<Progress>,
    close: CancellationToken,
}

struct Table {
    conns: HashMap<u64, Entry>,
    next: u64,
    epoch: Instant,
    /// Wakes the accept loop when a connection ends or a request is answered.
    freed: Arc<Notify>,
}

impl Table {
    fn new() -> Self {
        Table {
            conns: HashMap::new(),
            next: 0,
            epoch: Instant::now(),
            freed: Arc::new(Notify::new()),
        }
    }

    fn now_ms(epoch: Instant) -> u64 {
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Makes room for a connection from `ip` and registers it. Err: no room yet; try again
    /// at the instant given (a grace ends), or when a connection ends or a request is done.
    fn admit(&mut self, ip: IpAddr, limits: &AdminLimits) -> Result<u64, Option<Instant>> {
        let mine = self.conns.values().filter(|e| e.ip == ip).count();
        if mine >= limits.max_per_client {
            self.evict(Some(ip))?;
            crate::base::metrics::limit_hit("admin_max_per_client");
        } else if self.conns.len() >= limits.max_connections {
            self.evict(None)?;
            crate::base::metrics::limit_hit("admin_max_connections");
        }
        let progress = Progress::default();
        progress
            .waiting_since
            .store(Self::now_ms(self.epoch), Ordering::Relaxed);
        let entry = Entry {
            ip,
            progress: Arc::new(progress),
            close: CancellationToken::new(),
        };
        let id = self.next;
        self.next += 1;
        self.conns.insert(id, entry);
        Ok(id)
    }

    /// Closes the connection (of `only`, when given) that has waited longest for a
    /// request's headers, if it is past its grace; none with a request under way.
    fn evict(&mut self, only: Option<IpAddr>) -> Result<(), Option<Instant>> {
        let (id, since) = self
            .conns
            .iter()
            .filter(|(_, e)| only.is_none_or(|ip| e.ip == ip))
            .filter(|(_, e)| e.progress.busy.load(Ordering::Relaxed) == 0)
            .map(|(id, e)| (*id, e.progress.waiting_since.load(Ordering::Relaxed)))
            .min_by_key(|(_, since)| *since)
            .ok_or(None)?;
        let ends = self.epoch + Duration::from_millis(since) + GRACE;
        if ends > Instant::now() {
            return Err(Some(ends));
        }
        if let Some(e) = self.conns.remove(&id) {
            e.close.cancel();
        }
        Ok(())
    }
}

type Shared = Arc<Mutex<Table>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Table> {
    // A poisoned lock still holds a usable table: each change is one statement.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a connection off the table when its task ends.
struct Registered(Shared, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut t = lock(&self.0);
        t.conns.remove(&self.1);
        t.freed.notify_one();
    }
}

/// Counts a request under way on its connection while alive; at its end, the connection
/// waits for the next request's headers from now.
struct Busy(Arc<Progress>, Instant, Arc<Notify>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = Table::now_ms(self.1);
        self.0.waiting_since.store(now, Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.2.notify_one();
    }
}

/// A connection accepted while there was no room for it.
struct Waiting {
    io: TcpStream,
    ip: IpAddr,
    since: Instant,
}

/// What a connection's task needs besides its socket.
#[derive(Clone)]
struct Server {
    app: axum::Router,
    limits: AdminLimits,
    table: Shared,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// Serves `app` on the connections of `listener` until `stop`, then lets requests under
/// way finish.
pub(super) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: AdminLimits,
    stop: CancellationToken,
) {
    let table = Arc::new(Mutex::new(Table::new()));
    let freed = lock(&table).freed.clone();
    let s = Server {
        app,
        limits,
        table,
        tasks: TaskTracker::new(),
        stop: stop.clone(),
    };
    let mut waiting = VecDeque::new();
    let mut wake: Option<Instant> = None;
    loop {
        let room = waiting.len() < limits.max_connections;
        let at = wake.unwrap_or_else(Instant::now);
        tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept(), if room => match r {
                Ok((io, peer)) => waiting.push_back(Waiting {
                    io,
                    ip: peer.ip().to_canonical(),
                    since: Instant::now(),
                }),
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = freed.notified(), if !waiting.is_empty() => {}
            _ = tokio::time::sleep_until(at.into()), if wake.is_some() => {}
        }
        wake = s.place(&mut waiting);
    }
    s.tasks.close();
    s.tasks.wait().await;
}

impl Server {
    /// Serves each waiting connection there is room for, in arrival order, and closes those
    /// that waited past `admin.header_timeout`; returns when to try again.
    fn place(&self, waiting: &mut VecDeque<Waiting>) -> Option<Instant> {
        let expired = |w: &Waiting| w.since.elapsed() >= self.limits.header_timeout;
        while waiting.front().is_some_and(expired) {
            waiting.pop_front();
            crate::base::metrics::limit_hit("admin_header_timeout");
        }
        let mut wake = waiting
            .front()
            .map(|w| w.since + self.limits.header_timeout);
        let mut kept = VecDeque::with_capacity(waiting.len());
        for w in waiting.drain(..) {
            let admitted = lock(&self.table).admit(w.ip, &self.limits);
            match admitted {
                Ok(id) => self.spawn(w.io, id),
                Err(at) => {
                    wake = match (wake, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    kept.push_back(w);
                }
            }
        }
        *waiting = kept;
        wake
    }

    fn spawn(&self, io: TcpStream, id: u64) {
        use tower::ServiceExt;
        let (progress, close, epoch, freed) = {
            let t = lock(&self.table);
            let Some(e) = t.conns.get(&id) else { return };
            (
                e.progress.clone(),
                e.close.clone(),
                t.epoch,
                t.freed.clone(),
            )
        };
        let registered = Registered(self.table.clone(), id);
        let app = self.app.clone();
        let service =
            hyper::service::service_fn(move |r: hyper::Request<hyper::body::Incoming>| {
                progress.busy.fetch_add(1, Ordering::Relaxed);
                let done = Busy(progress.clone(), epoch, freed.clone());
                let app = app.clone();
                async move {
                    let _done = done;
                    app.oneshot(r.map(axum::body::Body::new)).await
                }
            });
        let (limits, stop) = (self.limits, self.stop.clone());
        self.tasks.spawn(async move {
            let _registered = registered;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Closed for a newcomer: it had no request under way.
                _ = close.cancelled() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.max_time, conn).await;
                }
            }
        });
    }
}
