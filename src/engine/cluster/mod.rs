//! The engine's side of a cluster: this instance's own verdicts out to etcd, the quorum's
//! decisions in, the cluster's overrides adopted (and written), who sends the cluster-wide
//! alerts, and the alert when this instance's own view disagrees with the quorum.
//!
//! Nothing here waits on etcd: decisions come from the last [`Shared`] the session handed
//! over, and override changes are answered by the session itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::{Engine, OverrideOp};
use crate::base::alert::Alert;
use crate::base::state::{now_secs, Override};
use crate::cluster::{decide, Alone, Decision, Handle, Link, OverrideChange, Shared, Verdict};
use crate::steer::health::{State, Transition};

mod alerted;
pub(super) use alerted::{name_key, region_key};

/// What the engine keeps of the cluster.
pub(super) struct Clustered {
    pub(in crate::engine) handle: Handle,
    pub(in crate::engine) shared: Arc<Shared>,
    /// Per member: the quorum's decision, while connected and someone has a view of it.
    decided: Vec<Option<Decision>>,
    /// Per member: since when this instance's own verdict differs from the quorum's, and
    /// whether that was alerted.
    pub(in crate::engine) disagree: Vec<(Option<Instant>, bool)>,
    /// The link as last seen (its changes are alerted).
    pub(in crate::engine) link: Link,
    /// While this instance leads: what the cluster's alerts last told (recorded in etcd).
    recorded: Option<crate::cluster::Alerted>,
    /// While this instance leads: the override changes it took into `recorded` that etcd
    /// may still hold (their deletion not seen yet).
    taken: std::collections::BTreeSet<String>,
    /// The revision this instance's session last joined etcd at, and when that was seen: a
    /// leader alerts once the others' views were written since, or the lease TTL passed.
    joined: (i64, Instant),
    /// The join (its revision) at which this instance, leading, found no record in etcd
    /// and wrote one of the overrides as they were.
    pub(super) based: i64,
    /// The member states this instance alerted on its own (cut off from the cluster).
    alone: Alone,
}

impl Engine {
    /// Answers follow the quorum of `handle`'s cluster from now on (once connected).
    pub fn join_cluster(&mut self, handle: Handle) {
        self.alerts.set_instance(&handle.id);
        let n = self.table.members.len();
        let shared = handle.shared.borrow().clone();
        self.cluster = Some(Box::new(Clustered {
            shared,
            handle,
            decided: vec![None; n],
            disagree: vec![(None, false); n],
            link: Link::Joining,
            recorded: None,
            taken: Default::default(),
            joined: (0, Instant::now()),
            based: 0,
            alone: Alone::new(),
        }));
    }

    /// The session's channel, for the run loop.
    pub(super) fn cluster_rx(&self) -> Option<watch::Receiver<Arc<Shared>>> {
        self.cluster.as_ref().map(|c| c.handle.shared.clone())
    }

    /// Whether answers follow the quorum now.
    pub(super) fn follows_cluster(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.link == Link::Connected)
    }

    /// Whether this instance alerts its own members' changes: alone, or fallen back. While
    /// joining and connected, the quorum's decisions are alerted instead.
    pub(super) fn alerts_own_view(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.link == Link::Fallback)
    }

    /// Whether this instance sends the alerts of cluster-wide events: when alone, when not
    /// connected (it answers from its own view then), or as the cluster's leader.
    pub(super) fn speaks_for_cluster(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| {
            c.link != Link::Connected || c.shared.leader.as_deref() == Some(c.handle.id.as_str())
        })
    }

    /// The quorum's decision on member `i`, when answers follow it.
    pub(super) fn decision(&self, i: usize) -> Option<&Decision> {
        self.decisions()?.get(i)?.as_ref()
    }

    /// The quorum's decisions, per member, when answers follow them.
    pub(super) fn decisions(&self) -> Option<&[Option<Decision>]> {
        let c = self
            .cluster
            .as_ref()
            .filter(|c| c.link == Link::Connected)?;
        Some(&c.decided)
    }

    /// `pool/member`: the member's name in etcd.
    pub(super) fn member_key(&self, i: usize) -> String {
        let m = &self.cfg.members[i];
        format!("{}/{}", self.cfg.pools[m.pool].name, m.name)
    }

    /// This instance's own verdict on member `i`: its rise/fall state and hold-down.
    fn local_verdict(&self, i: usize, now: Instant) -> Verdict {
        let up = self.local_passing(i, now);
        let m = &self.table.members[i];
        let error = (!up).then(|| match m.health.state {
            State::Up => "held down (flapping)".to_string(),
            _ => m.last.error.clone().unwrap_or_else(|| "down".into()),
        });
        let age = m.last.since.map_or(0, |t| t.elapsed().as_secs());
        Verdict {
            up,
            error,
            since: now_secs().saturating_sub(age),
        }
    }

    /// Hands this instance's verdicts to the session (written to etcd when one changes).
    pub(super) fn share_views(&self, now: Instant) {
        let Some(c) = &self.cluster else { return };
        let views: BTreeMap<String, Verdict> = (0..self.table.members.len())
            .filter(|&i| self.table.members[i].health.state != State::Unknown)
            .map(|i| (self.member_key(i), self.local_verdict(i, now)))
            .collect();
        c.handle.set_views(views);
    }

    /// Takes what the session last read from etcd: decisions, overrides, leadership.
    pub(super) async fn on_cluster(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let shared = c.handle.shared.borrow_and_update().clone();
        let garbled = c.shared.overrides_problem.is_some();
        let now = Instant::now();
        let n = self.table.members.len();
        let before: Vec<bool> = (0..n).map(|i| self.passing(i, now)).collect();
        let link_was = self.set_shared(shared.clone());
        let mut changed = link_was != shared.link;
        if let (false, Some(p)) = (garbled, &shared.overrides_problem) {
            if self.speaks_for_cluster() {
                let mut a = Alert::new("cluster_overrides_unreadable");
                a.reason = Some(p.clone());
                self.alerts.send(a);
            }
        }
        if let (Link::Connected, Some(list)) = (shared.link, &shared.overrides) {
            changed |= self.adopt_overrides(list.clone()).await;
        }
        // The quorum's own changes are alerted by the leader, against the record of what
        // the alerts last told; a switch between the quorum and this instance's view
        // (joining, falling back) is alerted as such.
        changed |= (0..n).any(|i| self.passing(i, now) != before[i]);
        self.sync_alerted();
        self.settle_alone(now);
        if link_was == Link::Joining && shared.link == Link::Fallback {
            // Never joined: what this instance saw down meanwhile is told now.
            let down: Vec<usize> = (0..n)
                .filter(|&i| self.table.members[i].health.state == State::Down)
                .collect();
            for i in down {
                let tr = Transition {
                    from: State::Unknown,
                    to: State::Down,
                };
                self.member_alert(i, tr, self.table.members[i].last.error.clone());
            }
        }
        self.check_disagreements(now);
        if changed {
            self.publish();
        }
    }

    /// Stores `shared` and the decisions it makes; alerts a change of link. Returns the link
    /// as it was.
    fn set_shared(&mut self, shared: Arc<Shared>) -> Link {
        let keys: Vec<String> = (0..self.table.members.len())
            .map(|i| self.member_key(i))
            .collect();
        let Some(c) = self.cluster.as_mut() else {
            return Link::Joining;
        };
        let q = c.handle.quorum;
        c.decided = keys
            .iter()
            .map(|k| decide(shared.views.get(k), &shared.instances, q))
            .collect();
        let was = std::mem::replace(&mut c.link, shared.link);
        c.shared = shared.clone();
        let event = match (was, shared.link) {
            (Link::Connected, Link::Fallback) | (Link::Joining, Link::Fallback) => "cluster_lost",
            (Link::Fallback, Link::Connected) => "cluster_rejoined",
            _ => return was,
        };
        let mut a = Alert::new(event);
        a.reason = Some(match shared.link {
            Link::Fallback => format!(
                "etcd unreachable for the lease TTL ({}): answering from this instance's own view",
                shared.problem.as_deref().unwrap_or("no answer")
            ),
            _ => format!(
                "etcd reachable again: answers follow the quorum of {} instances",
                shared.instances.len()
            ),
        });
        self.alerts.send(a);
        was
    }

    /// After a reload: decisions for the new members. A changed [cluster] table takes
    /// effect at the next start (the session keeps its lease and identity).
    pub(super) fn refresh_cluster(&mut self, table_changed: bool) {
        if let Some(s) = self.cluster.as_ref().map(|c| c.shared.clone()) {
            self.set_shared(s);
        }
        if table_changed && self.cluster.is_some() {
            tracing::warn!(
                "[cluster] or probe.source changed: that takes effect at the next start"
            );
        }
    }

    /// The alert that member `i` left (or came back to) answers by the quorum.
    fn decided_alert(&self, i: usize, was: bool) -> Alert {
        let (from, to) = if was {
            (State::Up, State::Down)
        } else {
            (State::Down, State::Up)
        };
        let (reason, error) = match (self.decision(i), &self.cluster) {
            (Some(d), Some(c)) => {
                let views = c.shared.views.get(&self.member_key(i));
                let error = d
                    .down
                    .first()
                    .and_then(|id| views.and_then(|v| v.get(id)).and_then(|v| v.error.clone()));
                let live = d.down.len() + d.up_by.len();
                let r = format!(
                    "{} of {live} instances see it down ({} needed): {}",
                    d.down.len(),
                    d.needed,
                    d.down.join(", ")
                );
                (Some(r), error.filter(|_| was))
            }
            _ => (
                None,
                self.table.members[i].last.error.clone().filter(|_| was),
            ),
        };
        self.member_alert_with(i, Transition { from, to }, error, reason)
    }

    /// Checks each member's own verdict against the quorum's; a difference that lasts past
    /// the member's detection bound is alerted (and its end too).
    pub(super) fn check_disagreements(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let mut alerts = Vec::new();
        let mut marks = Vec::with_capacity(self.table.members.len());
        for i in 0..self.table.members.len() {
            let (since, alerted) = c.disagree.get(i).copied().unwrap_or((None, false));
            let mine = self.local_passing(i, now);
            let known = self.table.members[i].health.state != State::Unknown;
            let differs = match self.decision(i) {
                Some(d) if known && mine != d.up => Some(d),
                _ => None,
            };
            let mark = match (differs, since) {
                (Some(_), None) => (Some(now), false),
                (Some(d), Some(t)) if !alerted && now - t >= self.detection(i) => {
                    alerts.push(self.disagree_alert(i, mine, d));
                    (Some(t), true)
                }
                (Some(_), Some(t)) => (Some(t), alerted),
                (None, _) => {
                    if alerted {
                        let mut a = Alert::new("view_agrees");
                        a.reason = Some(format!(
                            "{} agrees with the quorum on {} again",
                            c.handle.id,
                            self.member_key(i)
                        ));
                        self.fill_member(&mut a, i);
                        alerts.push(a);
                    }
                    (None, false)
                }
            };
            marks.push(mark);
        }
        for a in alerts {
            tracing::warn!(event = %a.event, reason = ?a.reason, "cluster: view and quorum");
            self.alerts.send(a);
        }
        if let Some(c) = self.cluster.as_mut() {
            c.disagree = marks;
        }
    }

    /// How long a member's verdicts may differ between instances in the normal course of a
    /// change: every instance detects it within this.
    fn detection(&self, i: usize) -> Duration {
        let bound = |c: &crate::config::Check| c.interval * c.fall.max(c.rise) + c.timeout;
        let m = &self.cfg.members[i];
        let slowest = m
            .checks
            .iter()
            .map(|&(c, _)| bound(&self.cfg.checks[c]))
            .max();
        slowest.unwrap_or_default() + Duration::from_secs(1)
    }

    fn disagree_alert(&self, i: usize, mine: bool, d: &Decision) -> Alert {
        let id = self.cluster.as_ref().map_or("", |c| c.handle.id.as_str());
        let key = self.member_key(i);
        let live = d.down.len() + d.up_by.len();
        let reason = if !mine && d.down.len() == 1 {
            format!("{id} alone sees {key} down ({live} instances probe it)")
        } else if !mine {
            format!(
                "{id} sees {key} down; {} of {live} do, {} needed",
                d.down.len(),
                d.needed
            )
        } else {
            format!(
                "{id} sees {key} up; the quorum ({} of {live}) sees it down",
                d.down.len()
            )
        };
        let mut a = Alert::new("view_disagrees");
        a.reason = Some(reason);
        a.error = self.table.members[i].last.error.clone().filter(|_| !mine);
        self.fill_member(&mut a, i);
        a
    }

    fn fill_member(&self, a: &mut Alert, i: usize) {
        let m = &self.cfg.members[i];
        a.pool = Some(self.cfg.pools[m.pool].name.clone());
        a.member = Some(m.name.clone());
        a.region = m.region.clone();
        a.address = m.cname.is_none().then_some(m.address);
        a.cname = m.cname.as_ref().map(|n| n.to_string());
    }

    /// Takes the cluster's overrides: kept in the state file (a cache for a start without
    /// etcd) and applied (the leader alerts them: see `sync_alerted`). True if they changed.
    async fn adopt_overrides(&mut self, mut list: Vec<Override>) -> bool {
        // Those that ended are gone here already (the leader removes them from etcd).
        let now = now_secs();
        list.retain(|o| !o.expired(now));
        if list == self.overrides {
            return false;
        }
        let old = std::mem::replace(&mut self.overrides, list);
        for o in self.overrides.iter().filter(|o| !old.contains(o)) {
            tracing::warn!(target = %o.target, action = ?o.action, reason = %o.reason, "cluster: override set");
        }
        for o in old
            .iter()
            .filter(|o| !self.overrides.iter().any(|n| n.target == o.target))
        {
            tracing::warn!(target = %o.target, "cluster: override cleared");
        }
        if let Err(e) = self.persist().await {
            tracing::error!(error = %e, "cannot write the cluster's overrides to the state file");
        }
        self.apply_overrides();
        true
    }

    /// An override change through `ctl` or the API, in a cluster: written to etcd, which
    /// every instance (this one too) applies from its watch. The reply comes from the
    /// session once etcd has it.
    pub(super) fn cluster_override(
        &self,
        op: OverrideOp,
        reply: oneshot::Sender<Result<Vec<Override>, String>>,
    ) {
        let Some(c) = &self.cluster else { return };
        if c.link != Link::Connected {
            let _ = reply.send(Err(format!(
                "the cluster store (etcd) is unreachable ({}): the override was not set on any instance",
                c.shared.problem.as_deref().unwrap_or("not connected yet")
            )));
            return;
        }
        let change = match op {
            OverrideOp::Set {
                target,
                action,
                reason,
                duration,
            } => {
                match super::overrides::new_override(&self.cfg, target, action, reason, duration) {
                    Ok(o) => OverrideChange::Set(o),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
            }
            OverrideOp::Clear { target } => OverrideChange::Clear(target),
        };
        // Its alert is written beside it, for whichever instance leads to send.
        let alert = self.override_change_alert(&change).map(|mut a| {
            a.id = crate::base::alert::new_id(&c.handle.id);
            a.scope = "cluster".into();
            a
        });
        c.handle.write_override(change, alert, reply);
    }

    /// In a cluster, the leader removes ended overrides from etcd.
    pub(super) fn expire_in_cluster(&self) {
        if let Some(c) = self.cluster.as_ref().filter(|_| self.follows_cluster()) {
            if self.speaks_for_cluster() {
                let (tx, _) = oneshot::channel();
                c.handle
                    .write_override(OverrideChange::Expire(now_secs()), None, tx);
            }
        }
    }
}

/// The next change of the cluster's state; never, without a cluster.
pub(super) async fn changed(
    rx: &mut Option<watch::Receiver<Arc<crate::cluster::Shared>>>,
) -> Result<(), watch::error::RecvError> {
    match rx {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}
