//! The admin API's connections: each served by hyper directly (not `axum::serve`), so that
//! its headers, too, are under `admin.max_time`; capped in all (`admin.max_connections`) and
//! per client address (`admin.max_per_client`). At a cap a new connection is not refused
//! while an older one has no request under way (it is slow to send its headers, or idle):
//! the oldest such connection, of the same client when that client is at its cap, is closed
//! for it. So slow-header clients cannot lock the operator out, even from the operator's own
//! address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AdminLimits;

struct Entry {
    ip: IpAddr,
    opened: Instant,
    /// Requests under way on the connection.
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Entry>,
    next: u64,
}

impl Table {
    /// Makes room for a connection from `ip` and registers it; None when every connection
    /// that could make room has a request under way.
    fn admit(&mut self, ip: IpAddr, limits: &AdminLimits) -> Option<(u64, Entry)> {
        let mine = self.conns.values().filter(|e| e.ip == ip).count();
        if mine >= limits.max_per_client {
            crate::ops::metrics::limit_hit("admin_max_per_client");
            self.evict(Some(ip))?;
        } else if self.conns.len() >= limits.max_connections {
            crate::ops::metrics::limit_hit("admin_max_connections");
            self.evict(None)?;
        }
        let entry = Entry {
            ip,
            opened: Instant::now(),
            busy: Arc::default(),
            close: CancellationToken::new(),
        };
        let id = self.next;
        self.next += 1;
        let copy = Entry {
            busy: entry.busy.clone(),
            close: entry.close.clone(),
            ..entry
        };
        self.conns.insert(id, entry);
        Some((id, copy))
    }

    /// Closes the oldest connection (of `only`, when given) with no request under way.
    fn evict(&mut self, only: Option<IpAddr>) -> Option<()> {
        let id = self
            .conns
            .iter()
            .filter(|(_, e)| only.is_none_or(|ip| e.ip == ip))
            .filter(|(_, e)| e.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, e)| e.opened)
            .map(|(id, _)| *id)?;
        let e = self.conns.remove(&id)?;
        e.close.cancel();
        Some(())
    }
}

/// Takes a connection off the table when its task ends.
struct Registered(Arc<Mutex<Table>>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        // A poisoned lock still holds a usable table: each change is one statement.
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.conns.remove(&self.1);
    }
}

/// Counts a request under way on its connection while alive.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on the connections of `listener` until `stop`, then lets requests under
/// way finish.
pub(super) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: AdminLimits,
    stop: CancellationToken,
) {
    use tower::ServiceExt;
    let table = Arc::new(Mutex::new(Table::default()));
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip().to_canonical();
        let admitted = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(ip, &limits);
        let Some((id, entry)) = admitted else {
            continue;
        };
        let registered = Registered(table.clone(), id);
        let (app, busy) = (app.clone(), entry.busy.clone());
        let service =
            hyper::service::service_fn(move |r: hyper::Request<hyper::body::Incoming>| {
                busy.fetch_add(1, Ordering::Relaxed);
                let done = Busy(busy.clone());
                let app = app.clone();
                async move {
                    let _done = done;
                    app.oneshot(r.map(axum::body::Body::new)).await
                }
            });
        let stop = stop.clone();
        conns.spawn(async move {
            let _registered = registered;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.max_time)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Closed for a newcomer: it had no request under way.
                _ = entry.close.cancelled() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.max_time, conn).await;
                }
            }
        });
    }
    conns.close();
    conns.wait().await;
}
