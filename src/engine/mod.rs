//! The single writer. It owns every member's [`Health`], turns probe reports into state
//! changes, and publishes a new [`Snapshot`](crate::dns::snapshot::Snapshot) (answers precomputed) when something changed.
//! Everyone else talks to it by message: probes send [`ProbeReport`]s, the admin API sends
//! [`Command`]s with a reply channel.
//!
//! It never blocks on a reader: publication is one `ArcSwap::store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::LowerName;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::base::alert::Alerts;
use crate::base::state::{Action, Override};
use crate::config::Config;
use crate::dns::snapshot::Zones;
use crate::dns::Published;
use crate::probe::{ProbeReport, Prober, Reports};
use crate::steer::health::{State, Thresholds};
use member::{regions_of, MemberState};
use table::{Table, View};

mod alerting;
mod capacity;
mod cluster;
mod history;
mod local_targets;
mod member;
mod overrides;
mod publish;
pub mod read;
pub(crate) mod recording;
mod reload;
pub use reload::{Loaded, ReloadReport};
mod table;
mod versions;

use read::Gauges;
pub use read::{recovery, Explain, HistoryQuery, HistoryReport};
pub use read::{ClusterStatus, InstanceStatus, ViewStatus};
pub use read::{MemberStatus, NameStatus, OverrideStatus, RegionStatus, Status};

/// Requests to the engine.
#[derive(Debug)]
pub enum Command {
    /// The current state of every member, pool and name.
    Status(oneshot::Sender<Status>),
    /// Sets or clears an override; replies with every override after the change, or why
    /// nothing changed.
    Override(OverrideOp, oneshot::Sender<Result<Vec<Override>, String>>),
    /// Why a pool-bound name answers what it does, for a client (address or subnet) as
    /// given.
    Explain {
        name: hickory_proto::rr::Name,
        client: Option<crate::steer::topology::Client>,
        asked: Option<String>,
        reply: oneshot::Sender<Result<Explain, String>>,
    },
    /// What happened over a window: every member's state and latency, every name's queries
    /// and answer shares, every pool's and region's healthy members, and the changes.
    History(read::HistoryQuery, oneshot::Sender<read::HistoryReport>),
    /// Swaps in a configuration read again (or reports and counts why it could not be read);
    /// replies with what changed.
    Reload(
        Result<Box<Loaded>, String>,
        oneshot::Sender<Result<ReloadReport, String>>,
    ),
}

/// A change of overrides.
#[derive(Debug)]
pub enum OverrideOp {
    /// Replaces any override of the same target.
    Set {
        target: crate::base::state::Target,
        action: Action,
        reason: String,
        /// Ends by itself after this long.
        duration: Option<Duration>,
    },
    Clear {
        target: crate::base::state::Target,
    },
}

/// The engine's state. Build with [`Engine::new`], then drive with [`Engine::run`].
pub struct Engine {
    cfg: Arc<Config>,
    zones: Arc<Zones>,
    /// Member health: per member, in the configuration's order, and each region's removal.
    table: Table,
    /// The operator's overrides.
    overrides: Vec<Override>,
    /// When the answers were last published (hold-downs are judged as of then).
    published_at: Instant,
    /// [`Engine::next_release`] as last worked out; `None`: to be worked out again (after a
    /// state change, a publication or a reload), so that the engine's loop does not scan
    /// every member on each report.
    release: Option<Option<Instant>>,
    gauges: Gauges,
    alerts: Alerts,
    published: Published,
    ready_tx: watch::Sender<bool>,
    generation: u64,
    /// The names whose members are all down, to log when that starts and ends.
    all_down: HashMap<LowerName, bool>,
    /// Per name whose pools have capacities, the pools over theirs and by how much.
    overloaded: HashMap<LowerName, Vec<(String, f64)>>,
    /// Per topology name whose pools have capacities, its client groups' shares.
    meters: HashMap<LowerName, capacity::Meter>,
    /// Per bound name, the distinct resolvers asking for it, and when the window last moved.
    resolvers: HashMap<LowerName, Arc<crate::dns::resolvers::Resolvers>>,
    resolvers_rotated: Instant,
    /// Members still without a first probe result.
    unknown: usize,
    /// Every member has had a first result once (a reload never takes it back).
    ready: bool,
    /// After a reload that added members: the new answers wait for their first results
    /// until then (the previous answers serve meanwhile).
    settle_until: Option<Instant>,
    /// The probe loops, and which member each serves.
    prober: Prober,
    /// Each probe loop's member and check position.
    by_probe: HashMap<u64, (usize, usize)>,
    /// The reply to a reload, sent when its configuration is published.
    settled_reply: Option<(oneshot::Sender<Result<ReloadReport, String>>, ReloadReport)>,
    reports: Option<mpsc::Receiver<Reports>>,
    /// 1 for the configuration read at start, then one more per reload.
    config_generation: u64,
    /// Response rate limiting, kept across publications (and reloads that leave it as is).
    rrl: Option<Arc<crate::dns::rrl::Rrl>>,
    /// Prepared answers that do not depend on health, reused by every publication.
    fixed: Option<Arc<crate::dns::prepared::Fixed>>,
    /// What is wrong with the state file, from start until it is written whole again.
    state_problem: Option<String>,
    /// Each zone's serial and IXFR journal.
    versions: versions::Versions,
    /// The serials to NOTIFY secondaries of, and the configuration generation they were
    /// made for.
    notices: watch::Sender<Arc<crate::dns::notify::Notices>>,
    notices_for: u64,
    /// What secondaries were told and took.
    secondaries: Arc<crate::dns::secondaries::Log>,
    /// Several instances acting as one, when configured.
    cluster: Option<Box<cluster::Clustered>>,
    /// A pause before each publication is served (`GTMD_TEST_PUBLISH_PAUSE`, for tests).
    publish_pause: Option<Duration>,
    /// What happened over the last day, for the status page and `/history`.
    history: history::History,
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
        let members = regions_of(&cfg)
            .zip(&cfg.members)
            .map(|(r, m)| MemberState::new(r, m.checks.len()))
            .collect();
        let gauges = Gauges::new(&cfg);
        let (report_tx, reports) = mpsc::channel(cfg.probe_queue);
        let rrl = crate::dns::rrl::Rrl::new(&cfg.rrl).map(Arc::new);
        let mut e = Self {
            cfg,
            zones,
            table: Table { members, removed },
            overrides: Vec::new(),
            published_at: Instant::now(),
            release: None,
            gauges,
            alerts: Alerts::default(),
            published,
            ready_tx,
            generation: 0,
            all_down: HashMap::new(),
            overloaded: HashMap::new(),
            meters: HashMap::new(),
            resolvers: HashMap::new(),
            resolvers_rotated: Instant::now(),
            unknown: n,
            ready: n == 0,
            settle_until: None,
            prober: Prober::new(report_tx),
            by_probe: HashMap::new(),
            settled_reply: None,
            reports: Some(reports),
            config_generation: 1,
            rrl,
            fixed: None,
            state_problem: None,
            versions: Default::default(),
            notices: watch::channel(Default::default()).0,
            notices_for: 0,
            secondaries: Default::default(),
            cluster: None,
            publish_pause: std::env::var("GTMD_TEST_PUBLISH_PAUSE")
                .ok()
                .and_then(|p| humantime::parse_duration(&p).ok()),
            history: history::History::new(recording::now_ms()),
        };
        e.history_members();
        e.publish();
        (e, ready_rx)
    }

    /// Starts a probe loop per member.
    pub fn start_probes(&mut self) -> Result<(), String> {
        let cfg = self.cfg.clone();
        self.sync_probes(&cfg).map(|_| ())
    }

    /// Starts and stops probe loops so that each member of `cfg` has one; returns how many
    /// were started.
    fn sync_probes(&mut self, cfg: &Config) -> Result<usize, String> {
        let (ids, started) = self.prober.sync(cfg)?;
        self.by_probe = ids
            .into_iter()
            .enumerate()
            .flat_map(|(i, ids)| {
                ids.into_iter()
                    .enumerate()
                    .map(move |(ci, id)| (id, (i, ci)))
            })
            .collect();
        Ok(started)
    }

    /// Runs until `stop` is cancelled or the command channel closes; the probe loops end
    /// with it.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        let Some(mut reports) = self.reports.take() else {
            return;
        };
        // Gauges are stored again now and then, so that the exporter drops those of members
        // a reload removed (it forgets gauges not stored for a while); histograms are drained.
        let mut refresh = tokio::time::interval(crate::base::metrics::GAUGE_REFRESH);
        let mut shared = self.cluster_rx();
        // In a cluster, disagreements with the quorum are judged every second.
        let mut cluster_tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let step = Duration::from_secs(history::FINE.step_secs);
        let mut history_tick = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
        loop {
            // The next end of a hold-down, when a member that is up returns to answers.
            let release = self.next_release();
            let expiry = self.next_expiry();
            let settle = self.settle_until;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = refresh.tick() => {
                    self.update_gauges(&self.published.load(), Instant::now());
                    // Histogram samples wait in the exporter until drained: drain them even
                    // when nobody scrapes /metrics, or they pile up.
                    crate::base::metrics::handle().run_upkeep();
                    self.resign_if_due();
                    self.sample_shares();
                    self.rotate_resolvers(Instant::now());
                }
                _ = tokio::time::sleep_until(settle.unwrap_or_else(Instant::now).into()), if settle.is_some() => {
                    tracing::warn!(waiting = self.unknown, "members added by the reload are still unprobed: publishing without them");
                    self.settle_until = None;
                    self.publish();
                }
                r = cluster::changed(&mut shared) => {
                    if r.is_err() {
                        shared = None;
                    } else {
                        self.on_cluster().await;
                    }
                }
                _ = cluster_tick.tick(), if shared.is_some() => self.cluster_tick(Instant::now()),
                _ = history_tick.tick() => self.close_history_step(),
                _ = tokio::time::sleep(expiry.unwrap_or_default()), if expiry.is_some() => {
                    self.expire_overrides().await;
                }
                _ = tokio::time::sleep_until(release.unwrap_or_else(Instant::now).into()), if release.is_some() && settle.is_none() => {
                    tracing::info!("hold-down ended: member back in answers");
                    self.publish();
                }
                r = reports.recv() => {
                    let Some(batch) = r else { return };
                    let mut changed = false;
                    // Coalesce: apply everything already queued, then publish once.
                    for batch in std::iter::once(batch).chain(std::iter::from_fn(|| reports.try_recv().ok())) {
                        for r in batch {
                            changed |= self.observe(r);
                        }
                    }
                    if changed {
                        self.publish();
                    }
                }
                c = commands.recv() => match c {
                    Some(c) => self.command(c).await,
                    None => return,
                },
            }
        }
    }

    async fn command(&mut self, c: Command) {
        match c {
            Command::History(q, reply) => {
                let _ = reply.send(self.history_report(&q));
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Override(op, reply) if self.cluster.is_some() => {
                self.cluster_override(op, reply);
            }
            Command::Override(op, reply) => {
                let _ = reply.send(self.change_override(op).await);
            }
            Command::Explain {
                name,
                client,
                asked,
                reply,
            } => {
                let _ = reply.send(self.explain(&name, client, asked));
            }
            Command::Reload(loaded, reply) => match self.reload(loaded).await {
                // Answered once the new configuration is published.
                Ok(r) if self.settle_until.is_some() => self.settled_reply = Some((reply, r)),
                other => {
                    let _ = reply.send(other);
                }
            },
        }
    }

    /// Applies one report; true if the published answers must change.
    fn observe(&mut self, r: ProbeReport) -> bool {
        // A report of a loop that a reload stopped may still arrive: it is ignored.
        let Some(&(i, ci)) = self.by_probe.get(&r.probe) else {
            return false;
        };
        self.note_resolution(i, &r);
        let last = &mut self.table.members[i].last;
        last.resolved_from.clone_from(&r.resolved_from);
        last.resolved.clone_from(&r.resolved);
        let cfg = self.cfg.clone();
        let m = &cfg.members[i];
        let check = &cfg.checks[m.checks[ci].0];
        let t = Thresholds {
            fall: check.fall,
            rise: check.rise,
        };
        let was_ready = self.is_ready();
        let was_suspect = self.table.members[i].health.suspect();
        let transition = self.table.members[i].observe(ci, r.ok, t, m.require);
        self.note_probe(i, ci, r.latency, transition.is_some());
        // With several checks, an error says which check saw it.
        let error = match (&r.error, m.checks.len()) {
            (Some(e), n) if n > 1 => Some(format!("{}: {e}", check.name)),
            (e, _) => e.clone(),
        };
        let r = ProbeReport { error, ..r };
        let cl = &mut self.table.members[i].checks[ci].last;
        cl.ok = Some(r.ok);
        cl.latency = Some(r.latency);
        cl.probes += 1;
        cl.error = if r.ok { None } else { r.error.clone() };
        // A member turning suspect, or steady again, changes the TTL of its names.
        let suspect_changed = was_suspect != self.table.members[i].health.suspect();
        if transition.is_some_and(|tr| tr.from == State::Unknown) {
            self.unknown -= 1;
        }
        let last = &mut self.table.members[i].last;
        last.ok = Some(r.ok);
        last.latency = Some(r.latency);
        last.probes += 1;
        if !r.ok {
            last.error = r.error.clone();
        }
        let Some(tr) = transition else {
            return suspect_changed && was_ready;
        };
        // A member's state changed (and a hold-down may have begun).
        self.release = None;
        last.since = Some(r.at);
        if tr.to == State::Up {
            // The error that took it down is history once it is back.
            last.error = None;
        }
        if tr.from == State::Unknown {
            if self.first_result(i, tr, &r) {
                return true;
            }
        } else {
            self.changed(i, tr, &r, check.damping);
        }
        // Before every member has reported once, nothing is served; publish when the round completes.
        was_ready || self.is_ready()
    }

    /// Keeps what report `r` says of resolving member `i`'s name; logs and alerts when it
    /// starts or stops failing.
    fn note_resolution(&mut self, i: usize, r: &ProbeReport) {
        let last = &mut self.table.members[i].last;
        if last.resolution.is_some() == r.resolution.is_some() {
            last.resolution.clone_from(&r.resolution);
            return;
        }
        last.resolution.clone_from(&r.resolution);
        let m = &self.cfg.members[i];
        let pool = &self.cfg.pools[m.pool].name;
        match &r.resolution {
            Some(e) => {
                tracing::warn!(pool, member = %m.name, address = %m.answer(), error = %e, "resolving the member's name fails")
            }
            None => {
                tracing::info!(pool, member = %m.name, address = %m.answer(), "the member's name resolves again")
            }
        }
        self.resolution_alert(i, r.resolution.clone());
    }

    /// Sends alerts through `alerts` from now on.
    pub fn set_alerts(&mut self, alerts: Alerts) {
        self.alerts = alerts;
    }

    /// The serials to NOTIFY secondaries of, as they change.
    pub fn notices(&self) -> crate::dns::notify::NoticesRx {
        self.notices.subscribe()
    }

    /// What secondaries were told and took.
    pub fn secondaries(&self) -> Arc<crate::dns::secondaries::Log> {
        self.secondaries.clone()
    }

    /// Whether member `i` is in answers at `now`: as the health view says.
    pub(super) fn answered(&self, i: usize, now: Instant) -> bool {
        use crate::policy::HealthView;
        self.view(now).up(i)
    }

    /// Every member's health as steering sees it at `now`: one view for publication and
    /// explain.
    pub(in crate::engine) fn view(&self, now: Instant) -> View<'_> {
        View {
            table: &self.table,
            overrides: &self.overrides,
            decided: self.decisions(),
            meters: &self.meters,
            now,
        }
    }

    /// Up and not held down (whatever its region): by the quorum's decision in a cluster,
    /// else by this instance's own view.
    pub(super) fn passing(&self, i: usize, now: Instant) -> bool {
        self.table.passing(i, now, self.decision(i))
    }

    /// Up and not held down by this instance's own probes.
    pub(super) fn local_passing(&self, i: usize, now: Instant) -> bool {
        self.table.local_passing(i, now)
    }

    pub(super) fn region_healthy(&self, r: usize, now: Instant) -> usize {
        self.healthy_of(&self.cfg.regions[r].members, now)
    }

    /// How many of `members` are passing at `now` (a pool's or a region's healthy members).
    pub(super) fn healthy_of(&self, members: &[usize], now: Instant) -> usize {
        members.iter().filter(|&&i| self.passing(i, now)).count()
    }

    /// Removes a region whose healthy share fell below its threshold, and returns one whose
    /// share reached its return level; alerts it unless the cluster's leader records and
    /// alerts it (see `sync_alerted`). True if a region changed.
    fn update_regions(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for ri in 0..self.cfg.regions.len() {
            let r = &self.cfg.regions[ri];
            let (healthy, size) = (self.region_healthy(ri, now), r.members.len());
            let percent = healthy * 100 / size;
            let removed = if !self.table.removed[ri]
                && healthy * 100 < r.remove_below as usize * size
            {
                tracing::error!(region = %r.name, healthy, members = size, percent, "region removed from answers");
                true
            } else if self.table.removed[ri] && healthy * 100 >= r.return_at as usize * size {
                tracing::warn!(region = %r.name, healthy, members = size, percent, "region returned to answers");
                false
            } else {
                continue;
            };
            self.table.removed[ri] = removed;
            changed = true;
            if !self.follows_cluster() {
                let event = if removed {
                    "region_removed"
                } else {
                    "region_returned"
                };
                let (name, alert) = (
                    r.name.clone(),
                    alerting::region_alert(event, &r.name, healthy, size),
                );
                self.note_alone_key(cluster::region_key(&name), !removed);
                self.alerts.send(alert);
            }
        }
        changed
    }

    /// The earliest end of a hold-down of a member that is up again.
    ///
    /// Counted from the last publication, not from now: a hold-down that ended after it still
    /// needs one, even if the deadline passed while the engine was busy with reports.
    fn next_release(&mut self) -> Option<Instant> {
        if let Some(r) = self.release {
            return r;
        }
        let r = (0..self.table.members.len())
            .filter(|&i| self.table.members[i].health.state == State::Up)
            .filter_map(|i| {
                self.table.members[i]
                    .damping
                    .held_until
                    .filter(|&t| t > self.published_at)
            })
            .min();
        self.release = Some(r);
        r
    }

    /// Every member has had its first result once.
    fn is_ready(&self) -> bool {
        self.ready
    }
}
