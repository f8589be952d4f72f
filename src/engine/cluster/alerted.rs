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

use super::super::alerting::{name_alert, region_alert};
use super::super::Engine;
use super::Clustered;
use crate::base::alert::{new_id, Alert};
use crate::base::state::now_secs;
use crate::cluster::record::alerted_alone;
use crate::cluster::{Alerted, Link, Record};
use crate::steer::health::State;

impl Engine {
    /// While this instance leads (and has settled): alerts what differs between the
    /// quorum's decisions and overrides and the record of what the alerts last told (the
    /// previous leader's, when it just took over: its undelivered alerts are sent first,
    /// with their ids), and records the new state before the alerts are sent.
    pub(in crate::engine) fn sync_alerted(&mut self) {
        let leads = self.follows_cluster() && self.speaks_for_cluster();
        let members: BTreeMap<String, bool> = (0..self.table.members.len())
            .filter_map(|i| Some((self.member_key(i), self.decision(i)?.up)))
            .collect();
        let (names, regions) = (self.names_state(), self.regions_state());
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
            if c.shared.alerted.is_none() && c.based != rev {
                // etcd holds no record (a new cluster, or one that lost its data): the
                // overrides as they are now are what was told, so that one set before this
                // leader settles is alerted, by it or by the next leader if every instance
                // stops before then. Members, names and regions take their first state
                // silently at the first diff.
                c.based = rev;
                let state = Alerted {
                    overrides: self.overrides.clone(),
                    ..Alerted::default()
                };
                let sink = self.alerts.clone();
                c.handle.record_alerted(Record {
                    state,
                    alerts: Vec::new(),
                    taken: Vec::new(),
                    sink,
                });
            }
            return;
        }
        let takeover = c.recorded.is_none();
        if takeover {
            // The base is etcd's record now, and the changes beside it are as it saw them.
            c.taken.clear();
        }
        let mut base = c.recorded.take().or_else(|| c.shared.alerted.clone());
        let current = Alerted {
            members,
            overrides: self.overrides.clone(),
            names,
            regions,
            pending: Vec::new(),
        };
        let mut alerts = Vec::new();
        if let Some(base) = base.as_ref().filter(|_| takeover) {
            alerts.extend(base.pending.iter().cloned());
        }
        let taken = self.take_changes(base.as_mut(), &mut alerts);
        if let Some(base) = base.as_ref() {
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
                taken,
                sink: self.alerts.clone(),
            });
        }
        c.recorded = Some(current);
    }

    /// Takes the override changes etcd holds that this leader has not taken yet, in the
    /// order etcd wrote them: their alerts go to `alerts`, and `base` holds the overrides
    /// after the last (the diff then finds only what no change told). Returns their ids,
    /// for the record's transaction to delete.
    fn take_changes(&mut self, base: Option<&mut Alerted>, alerts: &mut Vec<Alert>) -> Vec<String> {
        let Some(c) = self.cluster.as_mut() else {
            return Vec::new();
        };
        let shared = c.shared.clone();
        c.taken.retain(|id| shared.changes.contains_key(id));
        let mut new: Vec<(&String, &crate::cluster::Change)> = shared
            .changes
            .iter()
            .filter(|(id, _)| !c.taken.contains(*id))
            .collect();
        new.sort_by_key(|(_, ch)| ch.rev);
        new.truncate(MAX_CHANGES_TAKEN);
        let Some(last) = new.last() else {
            return Vec::new();
        };
        if let Some(base) = base {
            base.overrides.clone_from(&last.1.overrides);
        }
        alerts.extend(new.iter().map(|(_, ch)| ch.alert.clone()));
        let ids: Vec<String> = new.iter().map(|(id, _)| (*id).clone()).collect();
        c.taken.extend(ids.iter().cloned());
        ids
    }

    /// The alerts of what changed since `base`: members the quorum decided otherwise (but
    /// those an instance alerted alone), overrides set, cleared and ended.
    fn changes_since(&self, base: &Alerted) -> Vec<Alert> {
        let Some(c) = self.cluster.as_ref() else {
            return Vec::new();
        };
        let live = |id: &str| c.shared.instances.contains_key(id);
        let mut alerts = Vec::new();
        for i in 0..self.table.members.len() {
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
        self.area_changes(base, &mut alerts);
        alerts
    }

    /// The alerts of bound names that became all-down or recovered, and of regions removed
    /// or returned, since `base` (but those an instance alerted alone; a name or region
    /// the record does not hold yet takes its first state silently).
    fn area_changes(&self, base: &Alerted, alerts: &mut Vec<Alert>) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let live = |id: &str| c.shared.instances.contains_key(id);
        for (name, down) in self.names_state() {
            let changed = base.names.get(&name).is_some_and(|&was| was != down);
            if changed && !alerted_alone(&c.shared.alone, live, &name_key(&name), !down) {
                alerts.push(name_alert(&name, down, None));
            }
        }
        let now = Instant::now();
        for (ri, r) in self.cfg.regions.iter().enumerate() {
            let removed = self.table.removed.get(ri).copied().unwrap_or(false);
            let changed = base.regions.get(&r.name).is_some_and(|&was| was != removed);
            if changed && !alerted_alone(&c.shared.alone, live, &region_key(&r.name), !removed) {
                let event = if removed {
                    "region_removed"
                } else {
                    "region_returned"
                };
                let healthy = self.region_healthy(ri, now);
                alerts.push(region_alert(event, &r.name, healthy, r.members.len()));
            }
        }
    }

    /// Per bound name: whether no member of it is healthy, as last published.
    fn names_state(&self) -> BTreeMap<String, bool> {
        self.all_down
            .iter()
            .map(|(n, &down)| (n.to_string(), down))
            .collect()
    }

    /// Per region: whether it is removed from the answers now.
    fn regions_state(&self) -> BTreeMap<String, bool> {
        self.cfg
            .regions
            .iter()
            .zip(&self.table.removed)
            .map(|(r, &removed)| (r.name.clone(), removed))
            .collect()
    }

    /// Notes that this instance alerted member `i` as `up` on its own (in a cluster).
    pub(in crate::engine) fn note_alone(&mut self, i: usize, up: bool) {
        self.note_alone_key(self.member_key(i), up);
    }

    /// Notes that this instance alerted `key` (a member, or a name or region by
    /// [`name_key`] and [`region_key`]) as `up` on its own (in a cluster).
    pub(in crate::engine) fn note_alone_key(&mut self, key: String, up: bool) {
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
        let mut mine: BTreeMap<String, bool> = (0..self.table.members.len())
            .filter(|&i| self.table.members[i].health.state != State::Unknown)
            .map(|i| (self.member_key(i), self.local_passing(i, now)))
            .collect();
        let names = self.names_state().into_iter();
        mine.extend(names.map(|(n, down)| (name_key(&n), !down)));
        let regions = self.regions_state().into_iter();
        mine.extend(regions.map(|(r, removed)| (region_key(&r), !removed)));
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

/// Override changes taken into one record at most (each is deleted in its transaction,
/// which etcd limits to 128 operations).
const MAX_CHANGES_TAKEN: usize = 100;

/// The key of bound name `name` among what an instance alerted alone.
pub(in crate::engine) fn name_key(name: &str) -> String {
    format!("name {name}")
}

/// The key of region `region` among what an instance alerted alone.
pub(in crate::engine) fn region_key(region: &str) -> String {
    format!("region {region}")
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
