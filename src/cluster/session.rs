//! The etcd session: connect, hold a lease, register, read and watch everything under the
//! prefix, write this instance's views when they change, campaign for the alert leadership,
//! and write override changes by compare-and-swap.
//!
//! Any etcd error ends the session, and it starts again after a short backoff; a new session
//! opens on whichever etcd member works (see [`super::connect`]) and moves this instance's
//! keys (its leadership too) onto a new lease before the old one is revoked, so the others
//! see nothing of a reconnect. An instance id that another live instance holds is refused: the session ends
//! with why, and it tries again until that instance is gone. When etcd has not answered for
//! the lease TTL, the link turns to [`Link::Fallback`] (the engine then answers from its own
//! view) until a session succeeds again; that deadline runs beside the session, so a
//! connection attempt that hangs does not delay it. Nothing here waits for the engine or blocks answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Compare, CompareOp, ConnectOptions, EventType, Identity, KvClient, LeaseClient,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::connect;
use super::keys::{Key, Keys};
use super::{Instance, Link, OverrideChange, Shared, Verdict, Write};
use crate::base::state::Override;
use crate::config::ClusterConfig;

/// etcd refuses transactions of more operations than this (its `--max-txn-ops` default).
const MAX_TXN_OPS: usize = 128;
/// A compare-and-swap of the overrides that keeps losing to other writers gives up.
const CAS_TRIES: usize = 8;
/// Leases kept as this instance's own between two joins (older ones have expired).
const MAX_OWN_LEASES: usize = 64;

mod deliver;
mod join;
mod leader;
mod lease;
pub(super) use deliver::Outbox;
use lease::{keep_lease, silent_for};

/// A task that ends with the session.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An open session: its clients, lease and streams.
struct Live {
    kv: KvClient,
    lease: i64,
    keeper: etcd_client::LeaseKeeper,
    alive: etcd_client::LeaseKeepAliveStream,
    /// Kept so that the watch stays open.
    _watcher: etcd_client::Watcher,
    stream: etcd_client::WatchStream,
}

pub(super) struct Session {
    cfg: ClusterConfig,
    keys: Keys,
    me: Instance,
    shared_tx: watch::Sender<Arc<Shared>>,
    state: Shared,
    views_rx: watch::Receiver<Arc<BTreeMap<String, Verdict>>>,
    writes_rx: mpsc::Receiver<Write>,
    /// The engine's records of the cluster's alerts, and what it alerted alone.
    outbox: Outbox,
    /// The last list of overrides the cluster agreed on: the state file's at start, then
    /// every list read or watched from etcd (and each one this instance wrote). It seeds an
    /// etcd that lost its overrides, and is the base of a change when etcd's value is garbled.
    cached: Vec<Override>,
    /// This instance's views as etcd holds them: `up` per member, and the revision that
    /// wrote it. A watched change of one of them that this instance did not make is put
    /// right at once.
    own: BTreeMap<String, (bool, i64)>,
    /// When etcd last answered this instance (at first: when the session started). A
    /// watch, so that the deadline of the fallback runs beside a session that hangs.
    last_ok: Arc<watch::Sender<Instant>>,
    /// The lease of the current (or last) session.
    lease: Option<(LeaseClient, i64)>,
    /// The leases this instance took since it last joined (the current one too): its
    /// registration may be on any of them, and only on those.
    own_leases: Vec<i64>,
}

impl Session {
    pub fn new(
        cfg: ClusterConfig,
        me: Instance,
        shared_tx: watch::Sender<Arc<Shared>>,
        views_rx: watch::Receiver<Arc<BTreeMap<String, Verdict>>>,
        writes_rx: mpsc::Receiver<Write>,
        cached: Vec<Override>,
        last_ok: Arc<watch::Sender<Instant>>,
    ) -> Self {
        let keys = Keys {
            prefix: cfg.prefix(),
            me: cfg.id.clone(),
        };
        Self {
            cfg,
            keys,
            me,
            shared_tx,
            state: Shared::default(),
            views_rx,
            writes_rx,
            outbox: Outbox::new(
                mpsc::unbounded_channel().1,
                watch::channel(Default::default()).1,
            ),
            cached,
            own: BTreeMap::new(),
            last_ok,
            lease: None,
            own_leases: Vec::new(),
        }
    }

    /// Takes the engine's records of the cluster's alerts from `outbox`.
    pub fn record_alerted_from(&mut self, outbox: Outbox) {
        self.outbox = outbox;
    }

    /// Sessions until `stop`; then revokes the lease, so that this instance's views and
    /// leadership end at once.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            // A session that hangs (a connect to members that never answer, a call that
            // waits out its timeout) is given up when etcd has been silent for the lease TTL,
            // so that the fallback comes on time.
            let fallen = self.state.link == Link::Fallback;
            let silent = silent_for(self.last_ok.subscribe(), self.cfg.lease_ttl);
            let e = tokio::select! {
                _ = stop.cancelled() => break,
                r = self.session() => r.err().unwrap_or_default(),
                _ = silent, if !fallen => format!("etcd did not answer for the lease TTL ({:?})", self.cfg.lease_ttl),
            };
            crate::base::metrics::cluster_error();
            if self.state.problem.as_deref() != Some(e.as_str()) {
                tracing::warn!(error = %e, "cluster: etcd session ended; reconnecting");
            }
            self.state.problem = Some(e);
            self.publish();
            self.check_fallback();
            let until = tokio::time::Instant::now() + backoff;
            backoff = (backoff * 2).min(self.op_timeout());
            let deadline =
                tokio::time::Instant::from_std(*self.last_ok.borrow() + self.cfg.lease_ttl);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return self.leave().await,
                    _ = tokio::time::sleep_until(until) => break,
                    _ = tokio::time::sleep_until(deadline), if self.state.link != Link::Fallback => self.check_fallback(),
                    // While still connected, a write waits for the next session (etcd has
                    // not been lost for the lease TTL: another member usually takes over).
                    w = self.writes_rx.recv(), if self.state.link != Link::Connected => match w {
                        Some((_, _, reply)) => { let _ = reply.send(Err(self.unreachable())); }
                        None => return,
                    },
                }
            }
            if self.state.link == Link::Connected {
                backoff = Duration::from_millis(200);
            }
        }
        self.leave().await
    }

    async fn leave(&mut self) {
        if let Some((mut lease, id)) = self.lease.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), lease.revoke(id)).await;
        }
    }

    /// Why an override cannot be written now.
    fn unreachable(&self) -> String {
        format!(
            "the cluster store (etcd) is unreachable ({}): the override was not set on any instance",
            self.state.problem.as_deref().unwrap_or("not connected")
        )
    }

    /// Each etcd call is bounded by this: a third of the lease TTL (at least 500 ms).
    fn op_timeout(&self) -> Duration {
        (self.cfg.lease_ttl / 3).max(Duration::from_millis(500))
    }

    async fn op<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.op_timeout(), f).await {
            Ok(Ok(t)) => {
                self.last_ok.send_replace(Instant::now());
                Ok(t)
            }
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: no answer within {:?}", self.op_timeout())),
        }
    }

    fn alive(&mut self) {
        self.last_ok.send_replace(Instant::now());
    }

    /// Falls back to this instance's own view once etcd has been silent for the lease TTL
    /// (or could not be reached for that long since start).
    fn check_fallback(&mut self) {
        let silent = self.last_ok.borrow().elapsed() >= self.cfg.lease_ttl;
        if self.state.link != Link::Fallback && silent {
            tracing::error!(problem = ?self.state.problem, ttl = ?self.cfg.lease_ttl, "cluster: etcd lost for the lease TTL; answering from this instance's own view");
            self.state.link = Link::Fallback;
            self.publish();
        }
    }

    fn publish(&self) {
        self.shared_tx.send_replace(Arc::new(self.state.clone()));
    }

    fn options(&self) -> Result<ConnectOptions, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.op_timeout())
            .with_timeout(self.op_timeout());
        if let (Some(user), Some(file)) = (&self.cfg.username, &self.cfg.password_file) {
            let pw = String::from_utf8_lossy(&read(file)?).trim().to_string();
            o = o.with_user(user.clone(), pw);
        }
        let c = &self.cfg;
        if c.ca_file.is_some() || c.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &c.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&c.cert_file, &c.key_file) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            o = o.with_tls(tls);
        }
        Ok(o)
    }

    /// One session, until an error ends it, or until its etcd member stops working.
    async fn session(&mut self) -> Result<(), String> {
        let (live, member) = self.open().await?;
        let mut member = AbortOnDrop(tokio::spawn(member));
        tokio::select! {
            r = self.serve(live) => r,
            e = &mut member.0 => Err(e.unwrap_or_else(|e| format!("the member check failed: {e}"))),
        }
    }

    /// Connects to a working member, takes a lease, joins, campaigns and starts watching;
    /// then the link is up. Also returns the check that ends the session when that member
    /// stops working.
    async fn open(&mut self) -> Result<(Live, impl std::future::Future<Output = String>), String> {
        let opts = self.options()?;
        let limit = connect::FAILOVER.max(self.op_timeout());
        let (client, endpoint) =
            connect::working_member(&self.cfg.endpoints, &opts, &self.keys.leader(), limit).await?;
        tracing::info!(member = %endpoint, "cluster: etcd session on this member");
        let member = connect::watch_member(
            client.clone(),
            endpoint,
            self.keys.leader(),
            self.last_ok.clone(),
        );
        let mut kv = client.kv_client();
        let mut lease_c = client.lease_client();
        let ttl = self.cfg.lease_ttl.as_secs() as i64;
        let lease = self.op("lease grant", lease_c.grant(ttl, None)).await?.id();
        self.lease = Some((lease_c.clone(), lease));
        if self.own_leases.len() >= MAX_OWN_LEASES {
            self.own_leases.remove(0);
        }
        self.own_leases.push(lease);
        let (keeper, alive) = self
            .op("lease keep-alive", lease_c.keep_alive(lease))
            .await?;
        let rev = match self.join(&mut kv, lease).await {
            Ok(rev) => rev,
            Err(e) => {
                if !self.own_leases.contains(&lease) {
                    // Refused: nothing is on it.
                    let _ = self.op("lease revoke", lease_c.revoke(lease)).await;
                }
                return Err(e);
            }
        };
        // The leadership this instance held on an older lease moves onto this one too.
        self.campaign(&mut kv, lease).await?;
        // Its keys are on the new lease now; what is left on older ones goes, through this
        // member (the one of the old lease may be cut off).
        for id in std::mem::replace(&mut self.own_leases, vec![lease]) {
            if id != lease {
                let _ = self.op("lease revoke", lease_c.revoke(id)).await;
            }
        }
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        let mut watch_c = client.watch_client();
        let (_watcher, stream) = self
            .op("watch", watch_c.watch(self.keys.prefix.clone(), Some(opts)))
            .await?;
        self.alive();
        if self.state.link != Link::Connected {
            tracing::warn!(instances = self.state.instances.len(), leader = ?self.state.leader, "cluster: joined; answers follow the quorum");
        }
        self.state.link = Link::Connected;
        self.state.problem = None;
        self.publish();
        let live = Live {
            kv,
            lease,
            keeper,
            alive,
            _watcher,
            stream,
        };
        Ok((live, member))
    }

    /// Keeps the lease alive, follows the watch, and writes views and override changes,
    /// until an error.
    async fn serve(&mut self, live: Live) -> Result<(), String> {
        let Live {
            mut kv,
            lease,
            keeper,
            alive,
            mut stream,
            ..
        } = live;
        // The lease is kept beside the handlers below, so that one waiting on a slow etcd
        // call does not hold back the renewals, nor the note that etcd answered them.
        let mut kept = AbortOnDrop(tokio::spawn(keep_lease(
            keeper,
            alive,
            self.last_ok.clone(),
            self.cfg.lease_ttl,
            self.op_timeout(),
        )));
        // A record of the alerts made while the last session failed is written now.
        self.write_record(&mut kv, lease).await?;
        loop {
            tokio::select! {
                e = &mut kept.0 => {
                    return Err(e.unwrap_or_else(|e| format!("the lease keeper failed: {e}")));
                }
                r = stream.message() => {
                    let r = r.map_err(|e| format!("watch: {e}"))?.ok_or("the watch closed")?;
                    self.watched(&mut kv, lease, r).await?;
                }
                r = self.views_rx.changed() => {
                    r.map_err(|_| "the engine is gone")?;
                    self.write_views(&mut kv, lease, Vec::new()).await?;
                }
                r = self.outbox.records_rx.recv() => {
                    let r = r.ok_or("the engine is gone")?;
                    self.take_record(&mut kv, lease, r).await?;
                }
                Some(id) = self.outbox.delivered_rx.recv() => self.delivered(&mut kv, lease, id).await?,
                r = self.outbox.alone_rx.changed() => {
                    r.map_err(|_| "the engine is gone")?;
                    self.write_alone(&mut kv, lease).await?;
                }
                w = self.writes_rx.recv() => {
                    let (change, alert, reply) = w.ok_or("the engine is gone")?;
                    match self.write_override(&mut kv, &change, alert).await {
                        Ok(r) => { let _ = reply.send(r); }
                        Err(e) => {
                            let _ = reply.send(Err(format!("the cluster store (etcd) failed ({e}): the override was not set")));
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Takes one watch response: the keys it changed, and the leadership if it is free.
    async fn watched(
        &mut self,
        kv: &mut KvClient,
        lease: i64,
        r: etcd_client::WatchResponse,
    ) -> Result<(), String> {
        if r.canceled() {
            return Err(format!("the watch was cancelled: {}", r.cancel_reason()));
        }
        let (mut reassert, mut lost) = (false, false);
        for ev in r.events() {
            let Some(item) = ev.kv() else { continue };
            let (key, rev) = (String::from_utf8_lossy(item.key()), item.mod_revision());
            let value = (ev.event_type() == EventType::Put).then(|| item.value());
            self.state.apply(&self.keys, &key, value);
            self.state.note_revision(&self.keys, &key, rev);
            match self.keys.parse(&key) {
                Key::View { instance, member } if instance == self.keys.me => {
                    reassert |= self.etcd_holds(member, value, rev);
                }
                Key::Overrides => lost |= value.is_none(),
                _ => {}
            }
        }
        self.remember_overrides();
        if lost {
            tracing::error!("cluster: the overrides key was deleted from etcd");
            self.seed(kv).await?;
        }
        if reassert {
            self.write_views(kv, lease, Vec::new()).await?;
        }
        if self.state.leader.is_none() {
            self.campaign(kv, lease).await?;
        }
        // A watched change is not etcd answering: it comes even when what this instance
        // sends is lost (its lease then runs out), so only round trips count (`op`, the
        // lease's renewals, the member's reads).
        self.publish();
        Ok(())
    }

    /// Takes a watched change (at `rev`) of this instance's view of `member`. True if it is
    /// news: not this instance's own write (its current view is then written again, if
    /// different).
    fn etcd_holds(&mut self, member: &str, value: Option<&[u8]>, rev: i64) -> bool {
        if rev <= self.own.get(member).map_or(0, |o| o.1) {
            return false;
        }
        match value.and_then(|v| serde_json::from_slice::<Verdict>(v).ok()) {
            Some(v) => self.own.insert(member.to_string(), (v.up, rev)),
            None => self.own.remove(member),
        };
        true
    }

    /// The overrides etcd holds become the cache (when they differ from it).
    fn remember_overrides(&mut self) {
        if let Some(list) = self.state.overrides.as_ref().filter(|l| **l != self.cached) {
            self.cached = list.clone();
        }
    }

    /// Puts the cached overrides in etcd if it holds none (it lost them), unless the cache
    /// is empty too.
    async fn seed(&mut self, kv: &mut KvClient) -> Result<(), String> {
        if self.cached.is_empty() {
            return Ok(());
        }
        let key = self.keys.overrides();
        let list = serde_json::to_vec(&self.cached).map_err(|e| e.to_string())?;
        let t = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, list, None)]);
        if self.op("seed overrides", kv.txn(t)).await?.succeeded() {
            tracing::warn!(
                overrides = self.cached.len(),
                "cluster: etcd held no overrides; seeded with the last list the cluster agreed on"
            );
            crate::base::metrics::cluster_writes("override", 1);
        }
        Ok(())
    }

    /// Writes the views whose `up` differs from what etcd holds (`own`), and deletes
    /// `stale` ones and those no longer held; `own` follows each write.
    async fn write_views(
        &mut self,
        kv: &mut KvClient,
        lease: i64,
        mut stale: Vec<String>,
    ) -> Result<(), String> {
        let now = self.views_rx.borrow_and_update().clone();
        let (mut ops, mut changes) = (Vec::new(), Vec::new());
        for (m, v) in now.iter() {
            if self.own.get(m).map(|o| o.0) == Some(v.up) {
                continue;
            }
            let value = serde_json::to_vec(v).map_err(|e| e.to_string())?;
            let put = PutOptions::new().with_lease(lease);
            ops.push(TxnOp::put(self.keys.view(m), value, Some(put)));
            changes.push((m.clone(), Some(v.up)));
        }
        stale.extend(self.own.keys().cloned());
        stale.sort();
        stale.dedup();
        stale.retain(|m| !now.contains_key(m));
        for m in stale {
            ops.push(TxnOp::delete(self.keys.view(&m), None));
            changes.push((m, None));
        }
        for (chunk, done) in ops.chunks(MAX_TXN_OPS).zip(changes.chunks(MAX_TXN_OPS)) {
            let t = Txn::new().and_then(chunk.to_vec());
            let r = self.op("write views", kv.txn(t)).await?;
            crate::base::metrics::cluster_writes("view", chunk.len());
            let rev = r.header().map_or(0, |h| h.revision());
            for (m, up) in done {
                match up {
                    Some(up) => self.own.insert(m.clone(), (*up, rev)),
                    None => self.own.remove(m),
                };
            }
        }
        Ok(())
    }

    /// Applies `change` to the overrides etcd holds, by compare-and-swap, and writes its
    /// `alert` beside it in the same transaction (for the leader to send; see
    /// [`super::Change`]). The outer error is etcd's; the inner one is why the change
    /// cannot be made.
    async fn write_override(
        &mut self,
        kv: &mut KvClient,
        change: &OverrideChange,
        alert: Option<crate::base::alert::Alert>,
    ) -> Result<Result<Vec<Override>, String>, String> {
        let key = self.keys.overrides();
        for _ in 0..CAS_TRIES {
            let r = self.op("read overrides", kv.get(key.clone(), None)).await?;
            // A garbled value (or none) is replaced from the last good list.
            let (list, rev) = match r.kvs().first() {
                Some(kv) => (
                    serde_json::from_slice::<Vec<Override>>(kv.value())
                        .unwrap_or_else(|_| self.cached.clone()),
                    kv.mod_revision(),
                ),
                None => (self.cached.clone(), 0),
            };
            let new = match change.apply(list.clone()) {
                Ok(n) if n == list => return Ok(Ok(n)),
                Ok(n) => n,
                Err(e) => return Ok(Err(e)),
            };
            let body = serde_json::to_vec(&new).map_err(|e| e.to_string())?;
            let mut ops = vec![TxnOp::put(key.clone(), body, None)];
            if let Some(alert) = alert.clone() {
                let id = alert.id.clone();
                let c = super::Change {
                    alert,
                    overrides: new.clone(),
                    rev: 0,
                };
                let body = serde_json::to_vec(&c).map_err(|e| e.to_string())?;
                ops.push(TxnOp::put(self.keys.change(&id), body, None));
            }
            let t = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                .and_then(ops);
            if self.op("write overrides", kv.txn(t)).await?.succeeded() {
                crate::base::metrics::cluster_writes("override", 1);
                self.alive();
                self.cached = new.clone();
                return Ok(Ok(new));
            }
        }
        Ok(Err(format!(
            "the overrides kept changing under {CAS_TRIES} tries: try again"
        )))
    }
}
