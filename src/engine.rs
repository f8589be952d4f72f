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
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::alert::{Alert, Alerts};
use crate::config::{AllDown, Config, Policy};
use crate::fast::AnswerCache;
use crate::health::{Damping, Health, State, Thresholds};
use crate::overrides::{now_secs, Action, Override};
use crate::policy;
use crate::probe::ProbeReport;
use crate::snapshot::{Bound, Choice, Published, Snapshot, Zones};

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

/// A member's override as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OverrideStatus {
    pub target: String,
    pub action: Action,
    pub reason: String,
    /// Seconds until it ends by itself.
    pub ends_in_secs: Option<u64>,
}

/// What the engine knows of one member, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub pool: String,
    pub name: String,
    pub address: IpAddr,
    pub probe_target: String,
    pub state: State,
    /// Up, but failing: on its way down if the failures continue.
    pub suspect: bool,
    /// Consecutive probe results that disagree with `state`.
    pub streak: u32,
    pub since_secs: Option<f64>,
    pub last_ok: Option<bool>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<f64>,
    pub probes: u64,
    /// Whether the member is in answers now: up, not held down, not removed with its region,
    /// not disabled by hand (or forced up by hand).
    pub answered: bool,
    /// The operator's override that applies to it, if any (a disable wins over a force-up).
    #[serde(rename = "override")]
    pub override_: Option<OverrideStatus>,
    /// Time left in the hold-down (flap damping), while held.
    pub held_down_secs: Option<f64>,
    /// The hold-down given at the last down, and downs within the flap window then.
    pub hold_down_secs: f64,
    pub flaps: usize,
}

/// A pool-bound name's current answer, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct NameStatus {
    pub name: String,
    /// Every address the name may answer now (a weighted name answers some of them per query).
    pub answer: Vec<IpAddr>,
    /// The TTL answered now: `degraded_ttl` while `degraded`.
    pub ttl: u32,
    /// Some member behind the name is down or failing.
    pub degraded: bool,
    /// No member behind the name is healthy (for an address family that has members).
    pub all_down: bool,
    /// All down, and answering every member (`when_all_down = "all"`).
    pub fail_open: bool,
}

/// A region with a removal threshold, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct RegionStatus {
    pub name: String,
    pub members: usize,
    /// Members up and not held down.
    pub healthy: usize,
    pub remove_below_percent: u32,
    pub return_at_percent: u32,
    /// Out of answers as a whole.
    pub removed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub ready: bool,
    pub generation: u64,
    pub members: Vec<MemberStatus>,
    pub names: Vec<NameStatus>,
    pub regions: Vec<RegionStatus>,
    pub overrides: Vec<Override>,
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

    fn update_gauges(&self, snap: &Snapshot, now: Instant) {
        let g = &self.gauges;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        for i in 0..self.cfg.members.len() {
            g.up[i].set(flag(self.health[i].state == State::Up));
            g.answered[i].set(flag(self.answered(i, now)));
        }
        for (p, pool) in self.cfg.pools.iter().enumerate() {
            let up = pool
                .members
                .iter()
                .filter(|&&i| self.health[i].state == State::Up)
                .count();
            g.pool_healthy[p].set(up as f64);
        }
        for (r, removed) in self.removed.iter().enumerate() {
            g.region_removed[r].set(flag(*removed));
        }
        for (k, b) in self.cfg.names.iter().enumerate() {
            let e = snap.bound.get(&LowerName::new(&b.name));
            g.all_down[k].set(flag(e.is_some_and(|e| e.all_down)));
            g.degraded[k].set(flag(e.is_some_and(|e| e.degraded)));
        }
        let count = |a| self.overrides.iter().filter(|o| o.action == a).count() as f64;
        g.disabled.set(count(Action::Disable));
        g.forced_up.set(count(Action::ForceUp));
        g.generation.set(self.generation as f64);
    }

    /// Whether member `i` is in answers at `now`: up and not held down.
    fn answered(&self, i: usize, now: Instant) -> bool {
        match self.override_of[i].map(|o| self.overrides[o].action) {
            Some(Action::Disable) => false,
            Some(Action::ForceUp) => true,
            None => self.passing(i, now) && !self.region_of[i].is_some_and(|r| self.removed[r]),
        }
    }

    /// Starts with the overrides kept in the state file (those whose target no longer
    /// exists are kept, and apply again if it comes back).
    pub fn restore_overrides(&mut self, list: Vec<Override>) {
        self.overrides = list;
        self.apply_overrides();
        for o in &self.overrides {
            match crate::overrides::members_of(&self.cfg, &o.target) {
                Ok(_) => {
                    tracing::warn!(target = %o.target, action = ?o.action, reason = %o.reason, "override restored from the state file")
                }
                Err(e) => {
                    tracing::warn!(target = %o.target, error = %e, "override kept but matches nothing")
                }
            }
        }
        self.publish();
    }

    /// Works out which override applies to each member: a disable over a force-up, and a
    /// member's own over its pool's over its region's.
    fn apply_overrides(&mut self) {
        let now = now_secs();
        let mut of = vec![None; self.cfg.members.len()];
        let rank = |t: &str| {
            if t.starts_with("region:") {
                0
            } else if t.starts_with("pool:") {
                1
            } else {
                2
            }
        };
        let mut order: Vec<usize> = (0..self.overrides.len())
            .filter(|&k| !self.overrides[k].expired(now))
            .collect();
        order.sort_by_key(|&k| {
            (
                self.overrides[k].action == Action::Disable,
                rank(&self.overrides[k].target),
            )
        });
        for k in order {
            for i in crate::overrides::members_of(&self.cfg, &self.overrides[k].target)
                .unwrap_or_default()
            {
                of[i] = Some(k);
            }
        }
        self.override_of = of;
    }

    async fn change_override(&mut self, op: OverrideOp) -> Result<Vec<Override>, String> {
        let before = self.overrides.clone();
        let (target, what) = match op {
            OverrideOp::Set {
                target,
                action,
                reason,
                duration,
            } => {
                crate::overrides::members_of(&self.cfg, &target)?;
                let since = now_secs();
                self.overrides.retain(|o| o.target != target);
                self.overrides.push(Override {
                    target: target.clone(),
                    action,
                    reason: reason.clone(),
                    since,
                    until: duration.map(|d| since + d.as_secs().max(1)),
                });
                tracing::warn!(target = %target, action = ?action, reason = %reason, duration = ?duration, "override set");
                let mut a = Alert::new("override_set");
                a.target = Some(target.clone());
                a.new_state = Some(format!("{action:?}").to_lowercase());
                a.reason = Some(reason.clone());
                a.command = Some(self.alerts.command(&["enable", &target]));
                self.alerts.send(a);
                (target, "set")
            }
            OverrideOp::Clear { target } => {
                if !self.overrides.iter().any(|o| o.target == target) {
                    return Err(format!("no override of {target:?}"));
                }
                self.overrides.retain(|o| o.target != target);
                tracing::warn!(target = %target, "override cleared");
                let mut a = Alert::new("override_cleared");
                a.target = Some(target.clone());
                self.alerts.send(a);
                (target, "cleared")
            }
        };
        if let Err(e) = self.persist().await {
            self.overrides = before;
            return Err(format!(
                "override of {target:?} not {what}: cannot write the state file: {e}"
            ));
        }
        self.apply_overrides();
        self.publish();
        Ok(self.overrides.clone())
    }

    /// Writes the overrides to the state file, if there is one, off the engine's thread.
    async fn persist(&self) -> std::io::Result<()> {
        let Some(path) = self.cfg.state_file.clone() else {
            return Ok(());
        };
        let list = self.overrides.clone();
        tokio::task::spawn_blocking(move || crate::overrides::save(&path, &list))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// How long until the next override ends by itself.
    fn next_expiry(&self) -> Option<Duration> {
        let now = now_secs();
        self.overrides
            .iter()
            .filter_map(|o| o.until)
            .min()
            .map(|u| Duration::from_secs(u.saturating_sub(now)))
    }

    async fn expire_overrides(&mut self) {
        let now = now_secs();
        for o in self.overrides.iter().filter(|o| o.expired(now)) {
            tracing::warn!(target = %o.target, action = ?o.action, reason = %o.reason, "override ended by itself");
            let mut a = Alert::new("override_ended");
            a.target = Some(o.target.clone());
            a.reason = Some(o.reason.clone());
            self.alerts.send(a);
        }
        self.overrides.retain(|o| !o.expired(now));
        if let Err(e) = self.persist().await {
            tracing::error!(error = %e, "cannot write the state file after overrides ended");
        }
        self.apply_overrides();
        self.publish();
    }

    /// Up and not held down (whatever its region).
    fn passing(&self, i: usize, now: Instant) -> bool {
        self.health[i].state == State::Up && !self.damping[i].held(now)
    }

    fn region_healthy(&self, r: usize, now: Instant) -> usize {
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

    fn status(&self) -> Status {
        let snap = self.published.load();
        let now = Instant::now();
        let members = self
            .cfg
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let l = &self.last[i];
                MemberStatus {
                    pool: self.cfg.pools[m.pool].name.clone(),
                    name: m.name.clone(),
                    address: m.address,
                    probe_target: m.target.to_string(),
                    state: self.health[i].state,
                    suspect: self.health[i].suspect(),
                    streak: self.health[i].streak,
                    since_secs: l.since.map(|s| now.duration_since(s).as_secs_f64()),
                    last_ok: l.ok,
                    last_error: l.error.clone(),
                    last_latency_ms: l.latency.map(|d| d.as_secs_f64() * 1000.0),
                    probes: l.probes,
                    answered: self.answered(i, now),
                    override_: self.override_of[i].map(|k| {
                        let o = &self.overrides[k];
                        OverrideStatus {
                            target: o.target.clone(),
                            action: o.action,
                            reason: o.reason.clone(),
                            ends_in_secs: o.until.map(|u| u.saturating_sub(now_secs())),
                        }
                    }),
                    held_down_secs: self.damping[i]
                        .held_until
                        .filter(|&t| t > now)
                        .map(|t| (t - now).as_secs_f64()),
                    hold_down_secs: self.damping[i].hold.as_secs_f64(),
                    flaps: self.damping[i].flaps(),
                }
            })
            .collect();
        let names = self
            .cfg
            .names
            .iter()
            .map(|b| {
                let e = snap.bound.get(&LowerName::new(&b.name));
                let mut answer: Vec<IpAddr> = Vec::new();
                for c in e.iter().flat_map(|e| [&e.a, &e.aaaa]) {
                    for r in c.sets.iter().flatten() {
                        if let Some(ip) = r.data.ip_addr() {
                            if !answer.contains(&ip) {
                                answer.push(ip);
                            }
                        }
                    }
                }
                let degraded = e.is_some_and(|e| e.degraded);
                let all_down = e.is_some_and(|e| e.all_down);
                NameStatus {
                    name: b.name.to_string(),
                    answer,
                    ttl: if degraded { b.degraded_ttl } else { b.ttl },
                    degraded,
                    all_down,
                    fail_open: all_down && b.all_down == AllDown::All,
                }
            })
            .collect();
        let regions = self
            .cfg
            .regions
            .iter()
            .enumerate()
            .map(|(ri, r)| RegionStatus {
                name: r.name.clone(),
                members: r.members.len(),
                healthy: self.region_healthy(ri, now),
                remove_below_percent: r.remove_below,
                return_at_percent: r.return_at,
                removed: self.removed[ri],
            })
            .collect();
        Status {
            ready: snap.ready,
            generation: snap.generation,
            members,
            names,
            regions,
            overrides: self.overrides.clone(),
        }
    }
}

/// The engine's gauges, registered once so that a publication only stores numbers.
struct Gauges {
    up: Vec<metrics::Gauge>,
    answered: Vec<metrics::Gauge>,
    pool_healthy: Vec<metrics::Gauge>,
    region_removed: Vec<metrics::Gauge>,
    all_down: Vec<metrics::Gauge>,
    degraded: Vec<metrics::Gauge>,
    disabled: metrics::Gauge,
    forced_up: metrics::Gauge,
    generation: metrics::Gauge,
}

impl Gauges {
    fn new(cfg: &Config) -> Self {
        use crate::stats::*;
        use metrics::gauge;
        handle();
        let member = |name: &'static str| {
            cfg.members
                .iter()
                .map(|m| {
                    let pool = cfg.pools[m.pool].name.clone();
                    gauge!(name, "pool" => pool, "member" => m.name.clone())
                })
                .collect()
        };
        for p in &cfg.pools {
            gauge!(POOL_MEMBERS, "pool" => p.name.clone()).set(p.members.len() as f64);
        }
        let name = |metric: &'static str| {
            cfg.names
                .iter()
                .map(|b| gauge!(metric, "name" => b.name.to_string()))
                .collect()
        };
        Gauges {
            up: member(MEMBER_UP),
            answered: member(MEMBER_ANSWERED),
            pool_healthy: cfg
                .pools
                .iter()
                .map(|p| gauge!(POOL_HEALTHY, "pool" => p.name.clone()))
                .collect(),
            region_removed: cfg
                .regions
                .iter()
                .map(|r| gauge!(REGION_REMOVED, "region" => r.name.clone()))
                .collect(),
            all_down: name(NAME_ALL_DOWN),
            degraded: name(NAME_DEGRADED),
            disabled: gauge!(OVERRIDES, "action" => "disable"),
            forced_up: gauge!(OVERRIDES, "action" => "force-up"),
            generation: gauge!(GENERATION),
        }
    }
}

fn region_alert(event: &str, region: &str, healthy: usize, size: usize) -> Alert {
    let mut a = Alert::new(event);
    a.region = Some(region.to_string());
    a.reason = Some(format!("{healthy} of {size} members healthy"));
    a
}
