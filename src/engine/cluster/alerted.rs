//! The cluster's alerts, exactly once: the leader diffs the quorum's decisions and the
//! overrides against the record of what the alerts last told, and hands the new record with
//! the alerts to the session, which sends them only once etcd holds it (see
//! [`crate::cluster::record`]).
//!
//! A leader whose session joined etcd less than the lease TTL ago waits before its first
//! diff until every live instance wrote its views since that join (until then etcd may
//! hold views from before an outage), or until the lease TTL has passed since the join,
//! whichever comes first: answers follow the quorum at once, only alerts wait. A change that an instance alerted on its own while cut
//! off from etcd (`alone`) is recorded without being alerted again.

use std::collections::BTreeMap;
use std::time::Instant;

use super::super::Engine;
use super::Clustered;
use crate::cluster::record::alerted_alone;
use crate::cluster::{Alerted, Link, Record};
use crate::ops::alert::{new_id, Alert};
use crate::ops::state::now_secs;
use crate::steer::health::State;

impl Engine {
    /// While this instance leads (and has settled): alerts what differs between the
    /// quorum's decisions and overrides and the record of what the alerts last told (the
    /// previous leader's, when it just took over: its undelivered alerts are sent first,
    /// with their ids), and records the new state before the alerts are sent.
    pub(super) fn sync_alerted(&mut self) {
        let leads = self.follows_cluster() && self.speaks_for_cluster();
        let members: BTreeMap<String, bool> = (0..self.members.len())
            .filter_map(|i| Some((self.member_key(i), self.decision(i)?.up)))
            .collect();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let rev = c.shared.joined_rev;
        if c.joined.0 != rev {
            // Joined again: what etcd holds is the base once it has settled.
            c.joined = (rev, Instant::now());
            c.recorded = None;
        }
        if !leads {
            c.recorded = None;
            return;
        }
        if c.recorded.is_none() && !settled(c) {
            return;
        }
        let takeover = c.recorded.is_none();
        let base = c.recorded.take().or_else(|| c.shared.alerted.clone());
        let current = Alerted {
            members,
            overrides: self.overrides.clone(),
            pending: Vec::new(),
        };
        let mut alerts = Vec::new();
        if let Some(base) = base.as_ref() {
            if takeover {
                alerts.extend(base.pending.iter().cloned());
            }
            alerts.extend(self.changes_since(base));
        }
        let id = c_id(self);
        for a in alerts.iter_mut().filter(|a| a.id.is_empty()) {
            a.id = new_id(&id);
            a.scope = "cluster".into();
        }
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if takeover || !alerts.is_empty() || base.is_none_or(|b| !b.same_state(&current)) {
            c.handle.record_alerted(Record {
                state: current.clone(),
                alerts,
                sink: self.alerts.clone(),
            });
        }
        c.recorded = Some(current);
    }

    /// The alerts of what changed since `base`: members the quorum decided otherwise (but
    /// those an instance alerted alone), overrides set, cleared and ended.
    fn changes_since(&self, base: &Alerted) -> Vec<Alert> {
        let Some(c) = self.cluster.as_ref() else {
            return Vec::new();
        };
        let live = |id: &str| c.shared.instances.contains_key(id);
        let mut alerts = Vec::new();
        for i in 0..self.members.len() {
            let key = self.member_key(i);
            // A member the record does not hold yet takes its first state, which is not an
            // event (as a member's first probe round alerts nothing).
            if let (Some(&was), Some(d)) = (base.members.get(&key), self.decision(i)) {
                if was != d.up && !alerted_alone(&c.shared.alone, live, &key, d.up) {
                    alerts.push(self.decided_alert(i, was));
                } else if was != d.up {
                    tracing::info!(member = %key, up = d.up, "cluster: recorded without an alert: an instance alerted it on its own");
                }
            }
        }
        for o in self
            .overrides
            .iter()
            .filter(|o| !base.overrides.contains(o))
        {
            alerts.push(self.override_set_alert(o));
        }
        let now = now_secs();
        let gone = base
            .overrides
            .iter()
            .filter(|o| !self.overrides.iter().any(|n| n.target == o.target));
        for o in gone {
            let mut a = Alert::new(if o.expired(now) {
                "override_ended"
            } else {
                "override_cleared"
            });
            a.target = Some(o.target.to_string());
            a.reason = o.expired(now).then(|| o.reason.clone());
            alerts.push(a);
        }
        alerts
    }

    /// Notes that this instance alerted member `i` as `up` on its own (in a cluster).
    pub(in crate::engine) fn note_alone(&mut self, i: usize, up: bool) {
        let key = self.member_key(i);
        if let Some(c) = self.cluster.as_mut() {
            c.alone.insert(key, up);
            c.handle.set_alone(c.alone.clone());
        }
    }

    /// While connected: forgets what this instance alerted alone once the cluster's record
    /// holds it, or once its own view no longer says it.
    pub(super) fn settle_alone(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_ref().filter(|c| c.link == Link::Connected) else {
            return;
        };
        if c.alone.is_empty() {
            return;
        }
        let shared = c.shared.clone();
        let recorded = shared.alerted.as_ref().map(|a| &a.members);
        let mine: BTreeMap<String, bool> = (0..self.members.len())
            .filter(|&i| self.members[i].health.state != State::Unknown)
            .map(|i| (self.member_key(i), self.local_passing(i, now)))
            .collect();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let before = c.alone.len();
        c.alone
            .retain(|k, up| recorded.and_then(|r| r.get(k)) != Some(up) && mine.get(k) == Some(up));
        if c.alone.len() != before {
            c.handle.set_alone(c.alone.clone());
        }
    }

    /// Every second: a leader that waits to settle diffs once the bound has passed.
    pub(in crate::engine) fn cluster_tick(&mut self, now: Instant) {
        self.check_disagreements(now);
        self.sync_alerted();
    }
}

/// This instance's cluster id.
fn c_id(e: &Engine) -> String {
    e.cluster
        .as_ref()
        .map_or_else(String::new, |c| c.handle.id.clone())
}

/// Whether every live instance wrote its views since this instance's session joined, or
/// the lease TTL has passed since (a leader whose session lasted that long has seen every
/// change since: etcd cannot hold views older than its session).
fn settled(c: &Clustered) -> bool {
    let (rev, since) = c.joined;
    since.elapsed() >= c.handle.lease_ttl
        || c.shared
            .instances
            .keys()
            .all(|id| c.shared.written.get(id).is_some_and(|&w| w > rev))
}
