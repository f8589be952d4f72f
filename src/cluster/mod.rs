//! Several instances that act as one, on etcd: each publishes its own verdict per member
//! (its views), reads everyone's, and takes the overrides and the alert leadership from etcd.
//!
//! This module owns the etcd session ([`session`]) and the pure rules over what etcd holds
//! ([`decide`]). It never changes health or answers itself: the engine reads [`Shared`]
//! from a watch channel and decides. etcd is never on the answer path.
//!
//! Keys, under `/gtmd/<cluster name>/`:
//! - `instances/<id>`: each live instance (leased: gone when its lease ends);
//! - `views/<id>/<pool>/<member>`: that instance's verdict on the member (leased);
//! - `overrides`: every override, one JSON list, changed by compare-and-swap (a value that
//!   does not parse is not taken, and a deleted key is put back from the last good list);
//! - `leader`: the id of the instance that sends cluster-wide alerts (leased; a value no
//!   live instance holds is ignored and taken over);
//! - `alerted`: what the cluster's alerts last said (each member up or down, the overrides)
//!   and the alerts not yet delivered, kept by the leader: recorded before they are sent,
//!   marked delivered after; a new leader first sends what is undelivered (with the same
//!   ids), then alerts what differs, once (see [`record`]);
//! - `alone/<id>`: the member states an instance alerted on its own while it was cut off
//!   from etcd (leased): the leader records those changes without alerting them again;
//! - `changes/<alert id>`: an override change's alert and the list after it, written in the
//!   same transaction as the change; the leader takes them in order into its record (and
//!   deletes them in the same transaction), so that a change is alerted even when another
//!   undoes it before any leader diffs (see [`record::Change`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::base::state::{Override, Target};
use crate::config::{ClusterConfig, Quorum};

#[cfg(feature = "cluster")]
mod connect;
mod keys;
pub mod record;
#[cfg(feature = "cluster")]
mod session;

pub use record::{Alone, Change, Record};

/// One instance's verdict on one member, after its own rise/fall and hold-down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub up: bool,
    /// The probe error that made it down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it took this value, in seconds since the Unix epoch.
    pub since: u64,
}

/// A live instance, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `server` (answers DNS) or `agent` (probes only).
    pub kind: String,
    pub version: String,
    /// When it registered, in seconds since the Unix epoch.
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_source: Option<String>,
}

/// This instance's link to etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Not yet connected since start: answers follow this instance's own view.
    Joining,
    /// Connected: answers follow the quorum.
    Connected,
    /// Lost etcd for longer than the lease TTL: answers follow this instance's own view
    /// until it rejoins.
    Fallback,
}

/// What the cluster's alerts last told, as the leader records it in etcd.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alerted {
    /// Per member (`pool/member`): up or down, as last alerted.
    pub members: BTreeMap<String, bool>,
    /// The overrides, as last alerted.
    pub overrides: Vec<Override>,
    /// Per bound name: whether no member of it is healthy (all-down), as last alerted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, bool>,
    /// Per region: whether it is removed from the answers, as last alerted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, bool>,
    /// The alerts of these changes not yet delivered (recorded before they are sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<crate::base::alert::Alert>,
}

impl Alerted {
    /// Whether `self` and `other` tell the same state (whatever is pending).
    pub fn same_state(&self, other: &Alerted) -> bool {
        self.members == other.members
            && self.overrides == other.overrides
            && self.names == other.names
            && self.regions == other.regions
    }
}

/// What etcd holds, as this instance last saw it.
#[derive(Debug, Clone)]
pub struct Shared {
    pub link: Link,
    /// Why the link is not connected, when it is not.
    pub problem: Option<String>,
    pub instances: BTreeMap<String, Instance>,
    /// Per member (`pool/member`), each instance's verdict.
    pub views: HashMap<String, BTreeMap<String, Verdict>>,
    /// The cluster's overrides: the last good list etcd held; `None` until read once.
    pub overrides: Option<Vec<Override>>,
    /// Why the value etcd holds for the overrides is not taken, while it is not (it does
    /// not parse: the last good list stays).
    pub overrides_problem: Option<String>,
    /// The instance that sends cluster-wide alerts: the holder of the leader key, when it
    /// is a live instance.
    pub leader: Option<String>,
    /// The value of the leader key, live or not.
    pub(crate) leader_key: Option<String>,
    /// What the cluster's alerts last told; `None` when etcd holds no record.
    pub alerted: Option<Alerted>,
    /// Per instance: the member states it alerted on its own while cut off from etcd.
    pub alone: BTreeMap<String, Alone>,
    /// The revision at which this instance's current session read etcd (0: none yet).
    pub joined_rev: i64,
    /// Per instance: the revision of its latest view write seen.
    pub written: BTreeMap<String, i64>,
    /// The override changes no leader has taken yet, by alert id.
    pub changes: BTreeMap<String, Change>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            link: Link::Joining,
            problem: None,
            instances: BTreeMap::new(),
            views: HashMap::new(),
            overrides: None,
            overrides_problem: None,
            leader: None,
            leader_key: None,
            alerted: None,
            alone: BTreeMap::new(),
            joined_rev: 0,
            written: BTreeMap::new(),
            changes: BTreeMap::new(),
        }
    }
}

/// The quorum's verdict on one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub up: bool,
    /// The live instances that say down, and those that say up.
    pub down: Vec<String>,
    pub up_by: Vec<String>,
    /// Down verdicts needed for down.
    pub needed: usize,
}

impl Decision {
    /// The instances whose views decided: those on the winning side.
    pub fn decided_by(&self) -> &[String] {
        if self.up {
            &self.up_by
        } else {
            &self.down
        }
    }
}

/// The quorum's verdict from `views` of one member: down when at least `q.needed(n)` of the
/// `n` live instances that probe it say down. `None` when no live instance has a view yet.
pub fn decide(
    views: Option<&BTreeMap<String, Verdict>>,
    instances: &BTreeMap<String, Instance>,
    q: Quorum,
) -> Option<Decision> {
    let (mut down, mut up_by) = (Vec::new(), Vec::new());
    for (id, v) in views?.iter().filter(|(id, _)| instances.contains_key(*id)) {
        if v.up {
            up_by.push(id.clone())
        } else {
            down.push(id.clone())
        }
    }
    let live = down.len() + up_by.len();
    if live == 0 {
        return None;
    }
    let needed = q.needed(live);
    Some(Decision {
        up: down.len() < needed,
        down,
        up_by,
        needed,
    })
}

/// A change of the cluster's overrides, applied to the list etcd holds.
#[derive(Debug, Clone)]
pub enum OverrideChange {
    /// Replaces any override of the same target.
    Set(Override),
    Clear(Target),
    /// Drops those ended by this time (seconds since the Unix epoch).
    Expire(u64),
}

impl OverrideChange {
    /// `list` after the change, or why it cannot be made.
    pub fn apply(&self, mut list: Vec<Override>) -> Result<Vec<Override>, String> {
        match self {
            OverrideChange::Set(o) => {
                list.retain(|x| x.target != o.target);
                list.push(o.clone());
            }
            OverrideChange::Clear(t) => {
                if !list.iter().any(|x| &x.target == t) {
                    return Err(format!("no override of {:?}", t.to_string()));
                }
                list.retain(|x| &x.target != t);
            }
            OverrideChange::Expire(now) => list.retain(|x| !x.expired(*now)),
        }
        Ok(list)
    }
}

/// A change of overrides to write, the alert it makes (written beside it, for the leader
/// to send), and where to say how it went (the list after it).
type Write = (
    OverrideChange,
    Option<crate::base::alert::Alert>,
    oneshot::Sender<Result<Vec<Override>, String>>,
);

/// The engine's side of the cluster: what etcd holds, and where to send this instance's
/// views and override changes.
pub struct Handle {
    pub id: String,
    pub quorum: Quorum,
    pub lease_ttl: Duration,
    pub shared: watch::Receiver<Arc<Shared>>,
    /// When etcd last answered this instance (a call of the session, a lease renewal, or
    /// the member's read every quarter second); at first, when the session started.
    pub heard: watch::Receiver<std::time::Instant>,
    views: watch::Sender<Arc<BTreeMap<String, Verdict>>>,
    writes: mpsc::Sender<Write>,
    records: mpsc::UnboundedSender<Record>,
    alone: watch::Sender<Alone>,
}

impl Handle {
    /// Publishes this instance's views (the session writes only those whose `up` changed).
    pub fn set_views(&self, views: BTreeMap<String, Verdict>) {
        self.views.send_if_modified(|old| {
            let same = old.len() == views.len()
                && old
                    .iter()
                    .zip(&views)
                    .all(|((k, a), (l, b))| k == l && a.up == b.up);
            if !same {
                *old = Arc::new(views);
            }
            !same
        });
    }

    /// Records what the cluster's alerts tell, and sends `record.alerts` once etcd holds
    /// the record (while this instance leads; else they are dropped: the leader tells them).
    pub fn record_alerted(&self, record: Record) {
        let _ = self.records.send(record);
    }

    /// The member states this instance alerted on its own (written to etcd when it can).
    pub fn set_alone(&self, alone: Alone) {
        self.alone.send_if_modified(|old| {
            let changed = *old != alone;
            *old = alone;
            changed
        });
    }

    /// Sends an override change to etcd, with the alert it makes (if any: the leader sends
    /// it); the reply comes once etcd has it (or why not).
    pub fn write_override(
        &self,
        change: OverrideChange,
        alert: Option<crate::base::alert::Alert>,
        reply: oneshot::Sender<Result<Vec<Override>, String>>,
    ) {
        if let Err(
            mpsc::error::TrySendError::Full((_, _, reply))
            | mpsc::error::TrySendError::Closed((_, _, reply)),
        ) = self.writes.try_send((change, alert, reply))
        {
            let _ = reply.send(Err("the cluster session is busy: try again".into()));
        }
    }
}

/// What this instance is, for its registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Agent,
}

/// Starts the etcd session of `cfg` until `stop`. `cached` are the overrides this instance
/// knew at start (its state file): the session keeps that cache current with every list it
/// sees in etcd, and seeds etcd with it when etcd holds none.
pub fn start(
    cfg: &ClusterConfig,
    kind: Kind,
    probe_source: Option<std::net::IpAddr>,
    cached: Vec<Override>,
    stop: CancellationToken,
) -> Handle {
    let (shared_tx, shared) = watch::channel(Arc::new(Shared::default()));
    let (views, views_rx) = watch::channel(Arc::new(BTreeMap::new()));
    let (writes, writes_rx) = mpsc::channel(64);
    let (records, records_rx) = mpsc::unbounded_channel();
    let (alone, alone_rx) = watch::channel(Alone::new());
    let heard_tx = Arc::new(watch::Sender::new(std::time::Instant::now()));
    let heard = heard_tx.subscribe();
    let me = Instance {
        kind: match kind {
            Kind::Server => "server",
            Kind::Agent => "agent",
        }
        .into(),
        version: env!("CARGO_PKG_VERSION").into(),
        since: crate::base::state::now_secs(),
        probe_source: probe_source.map(|s| s.to_string()),
    };
    #[cfg(feature = "cluster")]
    {
        let mut s = session::Session::new(
            cfg.clone(),
            me,
            shared_tx,
            views_rx,
            writes_rx,
            cached,
            heard_tx,
        );
        s.record_alerted_from(session::Outbox::new(records_rx, alone_rx));
        tokio::spawn(s.run(stop));
    }
    // Without etcd support a [cluster] table is refused when the configuration is read.
    #[cfg(not(feature = "cluster"))]
    drop((me, shared_tx, views_rx, writes_rx, records_rx, alone_rx));
    #[cfg(not(feature = "cluster"))]
    drop((cached, stop, heard_tx));
    Handle {
        id: cfg.id.clone(),
        quorum: cfg.quorum,
        lease_ttl: cfg.lease_ttl,
        shared,
        heard,
        views,
        writes,
        records,
        alone,
    }
}

#[cfg(test)]
mod tests;
