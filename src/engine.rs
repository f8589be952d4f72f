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

use crate::config::Config;
use crate::fast::AnswerCache;
use crate::health::{Health, State, Thresholds};
use crate::probe::ProbeReport;
use crate::snapshot::{Bound, Published, Snapshot, Zones};

/// Requests to the engine.
#[derive(Debug)]
pub enum Command {
    /// The current state of every member, pool and name.
    Status(oneshot::Sender<Status>),
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
}

/// A pool-bound name's current answer, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct NameStatus {
    pub name: String,
    pub answer: Vec<IpAddr>,
    pub ttl: u32,
    pub fail_open: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub ready: bool,
    pub generation: u64,
    pub members: Vec<MemberStatus>,
    pub names: Vec<NameStatus>,
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
    last: Vec<Last>,
    published: Published,
    ready_tx: watch::Sender<bool>,
    generation: u64,
    fail_open: HashMap<LowerName, bool>,
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
        let mut e = Self {
            cfg,
            zones,
            health: vec![Health::new(); n],
            last: vec![Last::default(); n],
            published,
            ready_tx,
            generation: 0,
            fail_open: HashMap::new(),
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
            tokio::select! {
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
        let transition = self.health[r.member].observe(r.ok, t);
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
            return false;
        };
        last.since = Some(r.at);
        let pool = &self.cfg.pools[m.pool].name;
        if tr.from == State::Unknown {
            tracing::debug!(pool, member = %m.name, address = %m.address, state = %tr.to, error = r.error.as_deref().unwrap_or(""), "first probe result");
            if tr.to == State::Down {
                tracing::warn!(pool, member = %m.name, address = %m.address, error = r.error.as_deref().unwrap_or(""), "member is down at start");
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
        }
        // Before every member has reported once, nothing is served; publish when the round completes.
        was_ready || self.is_ready()
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
        for b in &self.cfg.names {
            let all: Vec<usize> = b
                .pools
                .iter()
                .flat_map(|&p| self.cfg.pools[p].members.iter().copied())
                .collect();
            let healthy: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&i| self.health[i].state == State::Up)
                .collect();
            let fail_open = ready && healthy.is_empty();
            let chosen = if healthy.is_empty() { &all } else { &healthy };
            let lname = LowerName::new(&b.name);
            let was = self
                .fail_open
                .insert(lname.clone(), fail_open)
                .unwrap_or(false);
            if fail_open && !was {
                tracing::error!(name = %b.name, "no member is healthy: answering every member (fail-open)");
            } else if was && !fail_open {
                tracing::warn!(name = %b.name, "a member is healthy again: fail-open ended");
            }
            let mut entry = Bound {
                fail_open,
                ..Default::default()
            };
            let mut seen = Vec::new();
            for &i in chosen {
                let addr = self.cfg.members[i].address;
                if seen.contains(&addr) {
                    continue;
                }
                seen.push(addr);
                let (list, data) = match addr {
                    IpAddr::V4(a) => (&mut entry.a, RData::A(A(a))),
                    IpAddr::V6(a) => (&mut entry.aaaa, RData::AAAA(AAAA(a))),
                };
                list.push(Record::from_rdata(b.name.clone(), b.ttl, data));
            }
            bound.insert(lname, entry);
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
                }
            })
            .collect();
        let names = self
            .cfg
            .names
            .iter()
            .map(|b| {
                let e = snap.bound.get(&LowerName::new(&b.name));
                let answer = e
                    .map(|e| {
                        e.a.iter()
                            .chain(e.aaaa.iter())
                            .filter_map(|r| r.data.ip_addr())
                            .collect()
                    })
                    .unwrap_or_default();
                NameStatus {
                    name: b.name.to_string(),
                    answer,
                    ttl: b.ttl,
                    fail_open: e.is_some_and(|e| e.fail_open),
                }
            })
            .collect();
        Status {
            ready: snap.ready,
            generation: snap.generation,
            members,
            names,
        }
    }
}
