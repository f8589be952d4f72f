//! The single writer. It owns every member's [`Health`], turns probe reports into state
//! changes, and publishes a new [`Snapshot`] (answers precomputed) when something changed.
//! Everyone else talks to it by message: probes send [`ProbeReport`]s, the admin API sends
//! [`Command`]s with a reply channel.
//!
//! It never blocks on a reader: publication is one `ArcSwap::store`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{LowerName, RData, Record};
use tokio::sync::{mpsc, oneshot, watch};

use crate::alert::{Alert, Alerts};
use crate::config::{Config, Policy};
use crate::fast::AnswerCache;
use crate::health::{Damping, Health, State, Thresholds};
use crate::overrides::{Action, Override};
use crate::policy;
use crate::probe::ProbeReport;
use crate::snapshot::{Bound, Choice, Published, Snapshot, Zones};

mod gauges;
mod overrides;
mod status;

use gauges::Gauges;
pub use status::{MemberStatus, NameStatus, OverrideStatus, RegionStatus, Status};

/// Requests to the engine.
#[derive(Debug)]
pub enum Command {
    /// The current state of every member, pool and name.
    Status(oneshot::Sender<Status>),
    /// Sets or clears an override; replies with every override after the change, or why
    /// nothing changed.
    Override(OverrideOp, oneshot::Sender<Result<Vec<Override>, String>>),
}

/// A change of overrides.
#[derive(Debug)]
pub enum OverrideOp {
    /// Replaces any override of the same target.
    Set {
        target: String,
        action: Action,
        reason: String,
        /// Ends by itself after this long.
        duration: Option<Duration>,
    },
    Clear {
        target: String,
    },
}

#[derive(Debug, Default, Clone)]
struct Last {
    ok: Option<bool>,
    error: Option<String>,
    latency: Option<Duration>,
    since: Option<Instant>,
    probes: u64,
}

/// The engine's state. Build with [`Engine::new`], then drive with [`Engine::run`].
pub struct Engine {
    cfg: Arc<Config>,
    zones: Arc<Zones>,
    health: Vec<Health>,
    damping: Vec<Damping>,
    /// Each configured region's removal, and each member's region (if configured).
    removed: Vec<bool>,
    region_of: Vec<Option<usize>>,
    /// The operator's overrides, and per member the one that applies (index into them).
    overrides: Vec<Override>,
    override_of: Vec<Option<usize>>,
    /// When the answers were last published (hold-downs are judged as of then).
    published_at: Instant,
    gauges: Gauges,
    alerts: Alerts,
    last: Vec<Last>,
    published: Published,
    ready_tx: watch::Sender<bool>,
    generation: u64,
    /// The names whose members are all down, to log when that starts and ends.
    all_down: HashMap<LowerName, bool>,
    /// Members still without a first probe result.
    unknown: usize,
    /// Prepared answers that do not depend on health, reused by every publication.
    fixed: Option<Arc<crate::fast::Fixed>>,
}

impl Engine {
    /// Creates the engine and publishes the first (not yet ready) snapshot.
    pub fn new(
        cfg: Arc<Config>,
        zones: Arc<Zones>,
        published: Published,
    ) -> (Self, watch::Receiver<bool>) {
        let n = cfg.members.len();
        let (ready_tx, ready_rx) = watch::channel(false);
        let removed = vec![false; cfg.regions.len()];
        let region_of = (0..n)
            .map(|i| cfg.regions.iter().position(|r| r.members.contains(&i)))
            .collect();
        let gauges = Gauges::new(&cfg);
        let mut e = Self {
            cfg,
            zones,
            health: vec![Health::new(); n],
            damping: vec![Damping::default(); n],
            removed,
            region_of,
            overrides: Vec::new(),
            override_of: vec![None; n],
            published_at: Instant::now(),
            gauges,
            alerts: Alerts::default(),
            last: vec![Last::default(); n],
            published,
            ready_tx,
            generation: 0,
            all_down: HashMap::new(),
            unknown: n,
            fixed: None,
        };
        e.publish();
        (e, ready_rx)
    }

    /// Runs until both channels close.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<ProbeReport>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            // The next end of a hold-down, when a member that is up returns to answers.
            let release = self.next_release();
            let expiry = self.next_expiry();
            tokio::select! {
                _ = tokio::time::sleep(expiry.unwrap_or_default()), if expiry.is_some() => {
                    self.expire_overrides().await;
                }
                _ = tokio::time::sleep_until(release.unwrap_or_else(Instant::now).into()), if release.is_some() => {
                    tracing::info!("hold-down ended: member back in answers");
                    self.publish();
                }
                r = reports.recv() => {
                    let Some(r) = r else { return };
                    let mut changed = self.observe(r);
                    // Coalesce: apply everything already queued, then publish once.
                    while let Ok(r) = reports.try_recv() {
                        changed |= self.observe(r);
                    }
                    if changed {
                        self.publish();
                    }
                }
                c = commands.recv() => match c {
                    Some(Command::Status(reply)) => { let _ = reply.send(self.status()); }
                    Some(Command::Override(op, reply)) => {
                        let _ = reply.send(self.change_override(op).await);
                    }
                    None => return,
                },
            }
        }
    }

    /// Applies one report; true if the published answers must change.
    fn observe(&mut self, r: ProbeReport) -> bool {
        let Some(m) = self.cfg.members.get(r.member) else {
            return false;
        };
        let check = &self.cfg.checks[m.check];
        let t = Thresholds {
            fall: check.fall,
            rise: check.rise,
        };
        let was_ready = self.is_ready();
        let was_suspect = self.health[r.member].suspect();
        let transition = self.health[r.member].observe(r.ok, t);
        // A member turning suspect, or steady again, changes the TTL of its names.
        let suspect_changed = was_suspect != self.health[r.member].suspect();
        if transition.is_some_and(|tr| tr.from == State::Unknown) {
            self.unknown -= 1;
        }
        let last = &mut self.last[r.member];
        last.ok = Some(r.ok);
        last.latency = Some(r.latency);
        last.probes += 1;
        if !r.ok {
            last.error = r.error.clone();
        }
        let Some(tr) = transition else {
            return suspect_changed && was_ready;
        };
        last.since = Some(r.at);
        let pool = &self.cfg.pools[m.pool].name;
        if tr.from == State::Unknown {
            tracing::debug!(pool, member = %m.name, address = %m.address, state = %tr.to, error = r.error.as_deref().unwrap_or(""), "first probe result");
            if tr.to == State::Down {
                tracing::warn!(pool, member = %m.name, address = %m.address, error = r.error.as_deref().unwrap_or(""), "member is down at start");
                self.member_alert(r.member, tr, r.error.clone());
            }
            if self.unknown == 0 {
                let up = self.health.iter().filter(|h| h.state == State::Up).count();
                tracing::info!(
                    up,
                    down = self.health.len() - up,
                    "first probe round complete"
                );
            }
        } else {
            tracing::warn!(pool, member = %m.name, address = %m.address, from = %tr.from, to = %tr.to, error = r.error.as_deref().unwrap_or(""), "member changed state");
            metrics::counter!(crate::stats::MEMBER_TRANSITIONS, "pool" => pool.clone(), "member" => m.name.clone(), "to" => tr.to.to_string()).increment(1);
            self.member_alert(r.member, tr, r.error.clone().filter(|_| !r.ok));
            if tr.to == State::Down {
                let d = &mut self.damping[r.member];
                let hold = d.went_down(r.at, check.damping);
                if !hold.is_zero() {
                    tracing::warn!(pool, member = %m.name, hold_down = ?hold, flaps = d.flaps(), "member held down");
                }
            }
        }
        // Before every member has reported once, nothing is served; publish when the round completes.
        was_ready || self.is_ready()
    }

    /// Sends alerts through `alerts` from now on.
    pub fn set_alerts(&mut self, alerts: Alerts) {
        self.alerts = alerts;
    }

    fn member_alert(&self, i: usize, tr: crate::health::Transition, error: Option<String>) {
        let m = &self.cfg.members[i];
        let pool = &self.cfg.pools[m.pool].name;
        let target = format!("{pool}/{}", m.name);
        let mut a = Alert::new(if tr.to == State::Down {
            "member_down"
        } else {
            "member_up"
        });
        a.pool = Some(pool.clone());
        a.member = Some(m.name.clone());
        a.region = m.region.clone();
        a.address = Some(m.address);
        a.old_state = Some(tr.from.to_string());
        a.new_state = Some(tr.to.to_string());
        a.error = error;
        a.command = Some(self.alerts.command(&[
            "disable",
            &target,
            "--reason",
            &format!("{} after alert", a.event),
        ]));
        self.alerts.send(a);
    }

    /// Whether member `i` is in answers at `now`: up and not held down.
    pub(super) fn answered(&self, i: usize, now: Instant) -> bool {
        match self.override_of[i].map(|o| self.overrides[o].action) {
            Some(Action::Disable) => false,
            Some(Action::ForceUp) => true,
            None => self.passing(i, now) && !self.region_of[i].is_some_and(|r| self.removed[r]),
        }
    }

    /// Up and not held down (whatever its region).
    pub(super) fn passing(&self, i: usize, now: Instant) -> bool {
        self.health[i].state == State::Up && !self.damping[i].held(now)
    }

    pub(super) fn region_healthy(&self, r: usize, now: Instant) -> usize {
        let members = &self.cfg.regions[r].members;
        members.iter().filter(|&&i| self.passing(i, now)).count()
    }

    /// Removes a region whose healthy share fell below its threshold, and returns one whose
    /// share reached its return level.
    fn update_regions(&mut self, now: Instant) {
        for (ri, r) in self.cfg.regions.iter().enumerate() {
            let (healthy, size) = (self.region_healthy(ri, now), r.members.len());
            let percent = healthy * 100 / size;
            if !self.removed[ri] && healthy * 100 < r.remove_below as usize * size {
                self.removed[ri] = true;
                tracing::error!(region = %r.name, healthy, members = size, percent, "region removed from answers");
                self.alerts
                    .send(region_alert("region_removed", &r.name, healthy, size));
            } else if self.removed[ri] && healthy * 100 >= r.return_at as usize * size {
                self.removed[ri] = false;
                tracing::warn!(region = %r.name, healthy, members = size, percent, "region returned to answers");
                self.alerts
                    .send(region_alert("region_returned", &r.name, healthy, size));
            }
        }
    }

    /// The earliest end of a hold-down of a member that is up again.
    ///
    /// Counted from the last publication, not from now: a hold-down that ended after it still
    /// needs one, even if the deadline passed while the engine was busy with reports.
    fn next_release(&self) -> Option<Instant> {
        (0..self.health.len())
            .filter(|&i| self.health[i].state == State::Up)
            .filter_map(|i| {
                self.damping[i]
                    .held_until
                    .filter(|&t| t > self.published_at)
            })
            .min()
    }

    /// Every member has had its first result (kept as a count: this runs on every report).
    fn is_ready(&self) -> bool {
        self.unknown == 0
    }

    /// Builds the snapshot from the current health and stores it.
    fn publish(&mut self) {
        self.generation += 1;
        let ready = self.is_ready();
        let mut bound = HashMap::with_capacity(self.cfg.names.len());
        let cfg = self.cfg.clone();
        let now = Instant::now();
        self.published_at = now;
        if ready {
            self.update_regions(now);
        }
        for b in &cfg.names {
            let up = |i: usize| self.answered(i, now);
            let eligible = |i: usize| {
                self.override_of[i].is_none_or(|k| self.overrides[k].action != Action::Disable)
            };
            let degraded = b.pools.iter().any(|&p| {
                cfg.pools[p].members.iter().any(|&i| {
                    !self.answered(i, now)
                        || self.health[i].suspect()
                        || self.override_of[i].is_some()
                })
            });
            let ttl = if degraded { b.degraded_ttl } else { b.ttl };
            let records = |addrs: Vec<IpAddr>| -> Vec<Record> {
                addrs
                    .into_iter()
                    .map(|a| {
                        let data = match a {
                            IpAddr::V4(a) => RData::A(A(a)),
                            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                        };
                        Record::from_rdata(b.name.clone(), ttl, data)
                    })
                    .collect()
            };
            let table = match &b.policy {
                Policy::Topology { table, .. } => Some(table.clone()),
                _ => None,
            };
            let choice = |v6: bool| {
                let plans = policy::plans(&cfg, b, v6, &up, &eligible);
                let servfail = plans.iter().any(|p| p.servfail);
                let all_down = plans.iter().any(|p| p.all_down);
                let groups = plans
                    .into_iter()
                    .map(|p| p.sets.into_iter().map(|(a, w)| (records(a), w)).collect())
                    .collect();
                let mut c = Choice::grouped(groups, table.clone());
                c.servfail = servfail;
                (c, all_down)
            };
            let ((a, down4), (aaaa, down6)) = (choice(false), choice(true));
            let all_down = ready && (down4 || down6);
            let lname = LowerName::new(&b.name);
            let was = self
                .all_down
                .insert(lname.clone(), all_down)
                .unwrap_or(false);
            if all_down && !was {
                tracing::error!(name = %b.name, behaviour = ?b.all_down, "no member is healthy: answering the all-down behaviour");
                let mut a = Alert::new("name_all_down");
                a.name = Some(b.name.to_string());
                a.reason = Some(format!("no member is healthy; answering {:?}", b.all_down));
                self.alerts.send(a);
            } else if was && !all_down {
                tracing::warn!(name = %b.name, "a member is healthy again: all-down ended");
                let mut a = Alert::new("name_recovered");
                a.name = Some(b.name.to_string());
                self.alerts.send(a);
            }
            bound.insert(
                lname,
                Bound {
                    a,
                    aaaa,
                    all_down,
                    degraded,
                },
            );
        }
        let mut snap = Snapshot {
            generation: self.generation,
            zones: self.zones.clone(),
            bound,
            ready,
            wire: Arc::new(self.cfg.wire.clone()),
            ..Default::default()
        };
        // Only answers holding pool records are prepared again; the rest is shared.
        snap.fast = match &self.fixed {
            Some(f) => AnswerCache::with_fixed(f.clone(), &snap),
            None => AnswerCache::build(&snap),
        };
        self.fixed = snap.fast.fixed().cloned();
        self.update_gauges(&snap, now);
        self.published.store(Arc::new(snap));
        if ready {
            self.ready_tx.send_replace(true);
        }
    }
}

fn region_alert(event: &str, region: &str, healthy: usize, size: usize) -> Alert {
    let mut a = Alert::new(event);
    a.region = Some(region.to_string());
    a.reason = Some(format!("{healthy} of {size} members healthy"));
    a
}
