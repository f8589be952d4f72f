//! Publication: the answers of every bound name built from the current health, overrides
//! and regions, then one snapshot stored for the query path with its prepared answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{LowerName, Name, RData, Record};

use super::alerting::name_alert;
use super::cluster::name_key;
use super::Engine;
use crate::config::{BoundName, Policy};
use crate::dns::prepared::AnswerCache;
use crate::dns::snapshot::{Bound, Choice, Snapshot};
use crate::dns::Publication;
use crate::policy;

impl Engine {
    /// Builds the snapshot from the current health and stores it.
    pub(super) fn publish(&mut self) {
        if self.settle_until.is_some() {
            if self.unknown > 0 {
                // The answers of the previous configuration serve until the new members
                // have been probed (or the wait ends).
                return;
            }
            self.settle_until = None;
        }
        let settled = self.settled_reply.take();
        self.generation += 1;
        let ready = self.is_ready();
        let now = Instant::now();
        self.published_at = now;
        self.release = None;
        // Whether a name's all-down or a region's removal changed (the cluster's leader
        // records and alerts it).
        let mut told = ready && self.update_regions(now);
        let cfg = self.cfg.clone();
        let mut bound = HashMap::with_capacity(cfg.names.len());
        for b in &cfg.names {
            let mut answer = self.bound_answer(b, now, ready);
            if let Some(hits) = self.meter(b) {
                for c in [&mut answer.a, &mut answer.aaaa]
                    .into_iter()
                    .chain(answer.cname.as_mut())
                {
                    c.count_into(hits.clone());
                }
            }
            answer.resolvers = Some(self.resolvers_of(b));
            // Nothing to answer (every member disabled or out): NODATA, whatever the
            // all-down behaviour says.
            let nodata = answer
                .choices()
                .all(|(_, c)| !c.servfail && c.sets.iter().all(Vec::is_empty));
            told |= self.note_all_down(b, answer.all_down, nodata);
            if ready {
                self.note_capacity(b, now);
            }
            bound.insert(LowerName::new(&b.name), answer);
        }
        self.store(bound, ready, now);
        self.share_views(now);
        if told && self.follows_cluster() {
            self.sync_alerted();
        }
        if let Some((reply, report)) = settled {
            let _ = reply.send(Ok(report));
        }
        if ready {
            self.ready_tx.send_replace(true);
        }
    }

    /// The resolver counter of `b`, made the first time `b` is published; counters of names
    /// a reload removed are dropped.
    fn resolvers_of(&mut self, b: &BoundName) -> Arc<crate::dns::resolvers::Resolvers> {
        let cfg = self.cfg.clone();
        if self.resolvers.len() > cfg.names.len() {
            self.resolvers
                .retain(|n, _| cfg.names.iter().any(|b| &LowerName::new(&b.name) == n));
        }
        self.resolvers
            .entry(LowerName::new(&b.name))
            .or_default()
            .clone()
    }

    /// Moves every resolver counter's window on by a half, each half window.
    pub(super) fn rotate_resolvers(&mut self, now: Instant) {
        if now.duration_since(self.resolvers_rotated) >= crate::dns::resolvers::WINDOW / 2 {
            self.resolvers_rotated = now;
            for r in self.resolvers.values() {
                r.rotate();
            }
        }
    }

    /// What `b` answers now: its A and AAAA choices by its policy, with the TTL in force.
    fn bound_answer(&self, b: &BoundName, now: Instant, ready: bool) -> Bound {
        let cfg = &self.cfg;
        let view = self.view(now);
        let degraded = b.pools.iter().any(|&p| {
            cfg.pools[p].members.iter().any(|&i| {
                !self.answered(i, now)
                    || self.table.members[i].health.suspect()
                    || self.table.members[i].override_.is_some()
            })
        });
        let ttl = if degraded { b.degraded_ttl } else { b.ttl };
        let table = match &b.policy {
            Policy::Topology { table, .. } => Some(table.clone()),
            _ => None,
        };
        if b.cname {
            let cname = |t| Record::from_rdata(b.name.clone(), ttl, RData::CNAME(CNAME(t)));
            let to_records = |ts: Vec<_>| ts.into_iter().map(cname).collect();
            let (c, all_down) = choice_of(policy::cname_plans(cfg, b, &view), table, to_records);
            return Bound {
                cname: Some(c),
                all_down: ready && all_down,
                degraded,
                ..Default::default()
            };
        }
        let choice = |v6: bool| {
            let to_records = |a| records(b, ttl, a);
            choice_of(policy::plans(cfg, b, v6, &view), table.clone(), to_records)
        };
        let ((a, down4), (aaaa, down6)) = (choice(false), choice(true));
        Bound {
            a,
            aaaa,
            cname: None,
            all_down: ready && (down4 || down6),
            degraded,
            resolvers: None,
        }
    }

    /// Logs and alerts when `b` starts or stops having no healthy member (and says NODATA
    /// when that is what is answered: no member may be, not even by the all-down behaviour).
    /// Following the cluster, the leader's record tells it instead (see `sync_alerted`).
    /// True if it changed.
    fn note_all_down(&mut self, b: &BoundName, all_down: bool, nodata: bool) -> bool {
        let was = self
            .all_down
            .insert(LowerName::new(&b.name), all_down)
            .unwrap_or(false);
        if all_down == was {
            return false;
        }
        let name = b.name.to_string();
        let reason = if all_down {
            let answering = if nodata {
                "NODATA (no member may be answered)".to_string()
            } else {
                format!("{:?}", b.all_down)
            };
            tracing::error!(name = %b.name, answering, "no member is healthy");
            Some(format!("no member is healthy; answering {answering}"))
        } else {
            tracing::warn!(name = %b.name, "a member is healthy again: all-down ended");
            None
        };
        if !self.follows_cluster() {
            self.note_alone_key(name_key(&name), !all_down);
            self.alerts.send(name_alert(&name, all_down, reason));
        }
        true
    }

    /// Stores one snapshot of `bound` with its prepared answers (only the answers holding
    /// pool records are prepared again; the rest is shared).
    fn store(&mut self, bound: HashMap<LowerName, Bound>, ready: bool, now: Instant) {
        let (versions, changed) = self.versions.update(
            &self.zones,
            &bound,
            ready,
            crate::base::state::now_secs() as u32,
            self.cfg.wire.transfer.journal,
        );
        if !changed.is_empty() {
            self.keep_serials();
        }
        // Told only once the new serial is served: a secondary asks for the SOA as soon as
        // it is notified, and one that still gets the old serial believes it is current.
        let notify = (!changed.is_empty() || self.notices_for != self.config_generation)
            .then(|| versions.clone());
        let snap = Snapshot {
            generation: self.generation,
            id: crate::dns::snapshot::next_id(),
            zones: self.zones.clone(),
            bound,
            ready,
            wire: Arc::new(self.cfg.wire.clone()),
            rrl: self.rrl.clone(),
            versions,
            secondaries: self.secondaries.clone(),
        };
        let answers = match &self.fixed {
            Some(f) => AnswerCache::with_fixed(f.clone(), &snap),
            None => AnswerCache::build(&snap),
        };
        self.fixed = answers.fixed().cloned();
        self.update_gauges(&snap, now);
        let cfg = self.cfg.clone();
        self.refresh_local(&cfg, &snap);
        let zones = snap.zones.clone();
        if let Some(pause) = self.publish_pause {
            // Only for tests (`GTMD_TEST_PUBLISH_PAUSE`): a publication that takes long,
            // while the runtime's other tasks run on.
            tokio::task::block_in_place(|| std::thread::sleep(pause));
        }
        let old = self.published.swap(Arc::new(Publication { snap, answers }));
        if let Some(versions) = notify {
            self.send_notices(&versions);
        }
        if !Arc::ptr_eq(&old.snap.zones, &zones) {
            // After a reload the old zones and their answers go: freeing a large zone takes
            // a while, and the new one is served already.
            drop(zones);
            retire(old);
        }
    }
}

impl Engine {
    /// Prepares every answer again, signatures included, when the earliest signature in
    /// the published answers has less than [`crate::dns::dnssec::REFRESH`] left.
    pub(super) fn resign_if_due(&mut self) {
        let now = crate::base::state::now_secs() as u32;
        if self.published.load().answers.resign_due(now) {
            tracing::info!("signatures are due for refresh: signing every answer again");
            self.fixed = None;
            self.publish();
        }
    }

    /// Writes every zone's serial to the state file, if there is one, before the serial is
    /// published: a restart then starts above it. A failed write is logged; DNS goes on.
    ///
    /// While the state file found at start cannot be read, it is left as found for the
    /// operator (the overrides came from its backup; the problem is shown and alerted) and
    /// serials are not kept until an override change writes it whole again.
    fn keep_serials(&mut self) {
        let Some(path) = &self.cfg.state_file else {
            return;
        };
        if self.state_problem.is_some() {
            tracing::warn!(file = %path.display(), "zone serials not kept: the state file is unreadable and left as found");
            return;
        }
        let (serials, contents) = (self.versions.serials(), self.versions.contents());
        if let Err(e) = crate::base::state::save(path, &self.overrides, &serials, &contents) {
            tracing::error!(file = %path.display(), error = %e, "cannot keep the zone serials in the state file");
        }
    }

    /// Tells the NOTIFY task each notified zone's serial (and the secondaries and key of the
    /// configuration in force).
    fn send_notices(&mut self, versions: &[crate::dns::snapshot::ZoneVersion]) {
        use crate::dns::notify::Notice;
        let t = &self.cfg.wire.transfer;
        let mut list = Vec::new();
        for (zone, v) in self.zones.iter().zip(versions) {
            let Some(zt) = t.zones.get(&zone.origin).filter(|z| !z.notify.is_empty()) else {
                continue;
            };
            list.push(Notice {
                zone: zone.origin_name.clone(),
                soa: crate::dns::snapshot::with_serial(&zone.soa, v.serial),
                serial: v.serial,
                targets: zt.notify.clone(),
                key: zt
                    .notify_key
                    .as_ref()
                    .and_then(|k| t.key(&Name::from(k.clone())).cloned()),
            });
        }
        self.notices_for = self.config_generation;
        if self.is_ready() {
            self.notices
                .send_replace(Arc::new(crate::dns::notify::Notices {
                    list,
                    alerts: self.alerts.clone(),
                }));
        }
    }
}

/// The choice a query makes among `plans` (one per client group, `table` saying which),
/// each answer made records by `to_records`; and whether a group answers all-down.
fn choice_of<T>(
    plans: Vec<policy::Plan<T>>,
    table: Option<Arc<crate::steer::topology::Table>>,
    to_records: impl Fn(Vec<T>) -> Vec<Record>,
) -> (Choice, bool) {
    let servfail = plans.iter().any(|p| p.servfail);
    let all_down = plans.iter().any(|p| p.all_down);
    let groups = plans
        .into_iter()
        .map(|p| {
            p.sets
                .into_iter()
                .map(|(set, w)| (to_records(set), w))
                .collect()
        })
        .collect();
    let mut c = Choice::grouped(groups, table);
    c.servfail = servfail;
    (c, all_down)
}

/// The address records of `b` for `addrs`, with `ttl`.
fn records(b: &BoundName, ttl: u32, addrs: Vec<IpAddr>) -> Vec<Record> {
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
}

/// Frees a publication whose zones were replaced, off the engine's task when a runtime is
/// there to take it, and then gives the heap's free pages back to the kernel.
fn retire(old: Arc<Publication>) {
    let free = move || {
        drop(old);
        crate::base::release_free_memory();
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(free)),
        Err(_) => free(),
    }
}
