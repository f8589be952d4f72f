//! Swapping in a configuration read again. A member keeps its health, hold-down and probe
//! history when its pool and name are unchanged and it is probed the same way (same target
//! and check kind); any other member starts unknown, is probed at once, and the new answers
//! wait (at most its check's timeout) for those first results. Probe loops of members that
//! are gone stop at once.
//!
//! It checks everything that can fail before it changes anything: a rejected reload leaves
//! the engine exactly as it was.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::LowerName;

use super::{regions_of, Engine, Gauges, MemberState};
use crate::base::alert::Alert;
use crate::config::Config;
use crate::steer::health::State;
use crate::zone::Zones;

/// A configuration and its zones, read and checked, ready to be swapped in.
#[derive(Debug)]
pub struct Loaded {
    pub cfg: Config,
    pub zones: Zones,
}

/// What a reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// 1 for the configuration read at start, then one more per reload that took effect.
    pub config_generation: u64,
    pub source: String,
    pub zones: usize,
    pub names: usize,
    /// Members whose health, hold-down and history were kept (same pool, name and probe).
    pub members_kept: usize,
    /// New (or changed) members: out of answers until their first probe passes.
    pub members_added: usize,
    /// Members gone, their probes stopped.
    pub members_removed: usize,
    /// Probe loops started (new members, and members whose probe settings changed).
    pub probes_started: usize,
    /// Settings that changed in the file but only take effect at the next start.
    pub needs_restart: Vec<String>,
}

impl Engine {
    pub(super) async fn reload(
        &mut self,
        loaded: Result<Box<Loaded>, String>,
    ) -> Result<ReloadReport, String> {
        let result = match loaded {
            Ok(l) => {
                for w in &l.cfg.warnings {
                    tracing::warn!("{w}");
                }
                self.swap_in(*l).await
            }
            Err(e) => Err(e),
        };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!(crate::base::metrics::RELOADS, "result" => outcome).increment(1);
        self.gauges
            .last_reload_ok
            .set(if result.is_ok() { 1.0 } else { 0.0 });
        match &result {
            Ok(r) => {
                tracing::warn!(
                    generation = r.config_generation,
                    source = %r.source,
                    kept = r.members_kept,
                    added = r.members_added,
                    removed = r.members_removed,
                    probes_started = r.probes_started,
                    needs_restart = ?r.needs_restart,
                    "configuration reloaded"
                );
                let mut a = Alert::new("config_reloaded");
                a.reason = Some(format!(
                    "generation {}: {} members kept, {} added, {} removed",
                    r.config_generation, r.members_kept, r.members_added, r.members_removed
                ));
                self.alerts.send(a);
            }
            Err(e) => {
                tracing::error!(error = %e, "reload rejected: the running configuration is unchanged");
                let mut a = Alert::new("config_reload_failed");
                a.error = Some(e.clone());
                self.alerts.send(a);
            }
        }
        result
    }

    async fn swap_in(&mut self, l: Loaded) -> Result<ReloadReport, String> {
        let Loaded { mut cfg, zones } = l;
        let old = self.cfg.clone();
        let needs_restart = keep_restart_only(&mut cfg, &old);
        // Probes of names inside the new zones read them from their first probe on.
        let zones = Arc::new(zones);
        self.refresh_local_for(&cfg, &zones);
        // The last step that can fail; after it, the new configuration is in.
        let probes_started = match self.sync_probes(&cfg) {
            Ok(n) => n,
            Err(e) => {
                let (old, published) = (self.cfg.clone(), self.published.load());
                self.refresh_local(&old, &published);
                return Err(e);
            }
        };
        let carried = carry(&old, &cfg);
        let members = self.carried_state(&carried, &cfg);
        let kept = carried.iter().flatten().count();
        self.carry_regions(&old, &cfg);
        let names: Vec<LowerName> = cfg.names.iter().map(|b| LowerName::new(&b.name)).collect();
        self.all_down.retain(|k, _| names.contains(k));
        if cfg.rrl != old.rrl {
            self.rrl = crate::dns::rrl::Rrl::new(&cfg.rrl).map(Arc::new);
        }
        if cfg.alerts != old.alerts {
            self.alerts = self.alerts.restarted(&cfg.alerts);
        }
        self.unknown = members
            .iter()
            .filter(|m| m.health.state == State::Unknown)
            .count();
        self.table.members = members;
        self.release = None;
        let mut gauges = Gauges::new(&cfg);
        // The member flags scraped so far stay until the next update, not gone until then.
        std::mem::swap(&mut gauges.member_flags, &mut self.gauges.member_flags);
        self.gauges = gauges;
        let state_file_moved = cfg.state_file != old.state_file;
        let cluster_changed = cfg.cluster != old.cluster || cfg.probe_source != old.probe_source;
        self.cfg = Arc::new(cfg);
        self.history_members();
        // A name removed loses its query counter, so that one added again later (whose
        // history starts empty) counts from zero.
        let names: std::collections::HashSet<hickory_proto::rr::LowerName> = self
            .cfg
            .names
            .iter()
            .map(|b| hickory_proto::rr::LowerName::new(&b.name))
            .collect();
        self.resolvers.retain(|n, _| names.contains(n));
        self.zones = zones;
        self.refresh_cluster(cluster_changed);
        // The prepared static answers belong to the old zones.
        self.fixed = None;
        self.config_generation += 1;
        self.apply_overrides();
        for o in &self.overrides {
            if let Err(e) = crate::base::state::members_of(&self.cfg, &o.target) {
                tracing::warn!(target = ?o.target, error = %e, "override kept but matches nothing");
            }
        }
        self.reread_state_file();
        if state_file_moved {
            if let Err(e) = self.persist().await {
                tracing::error!(error = %e, "cannot write the overrides to the new state file");
            }
        }
        if self.unknown > 0 && self.ready {
            self.settle_until = Some(Instant::now() + self.first_probe_wait());
        }
        self.publish();
        Ok(ReloadReport {
            config_generation: self.config_generation,
            source: self.cfg.source.clone(),
            zones: self.zones.iter().count(),
            names: self.cfg.names.len(),
            members_kept: kept,
            members_added: self.cfg.members.len() - kept,
            members_removed: old.members.len() - kept,
            probes_started,
            needs_restart,
        })
    }

    /// Each member's state: kept for a carried member, new for the rest; each in its region
    /// of `cfg`.
    fn carried_state(&self, carried: &[Option<usize>], cfg: &Config) -> Vec<MemberState> {
        carried
            .iter()
            .zip(regions_of(cfg).zip(&cfg.members))
            .map(|(c, (region, member))| {
                let mut m = match *c {
                    Some(i) => self.table.members[i].clone(),
                    None => MemberState::new(None, member.checks.len()),
                };
                m.override_ = None;
                m.region = region;
                m
            })
            .collect()
    }

    /// Keeps each region's removal by name.
    fn carry_regions(&mut self, old: &Config, cfg: &Config) {
        let removed_regions: HashMap<&str, bool> = old
            .regions
            .iter()
            .zip(&self.table.removed)
            .map(|(r, &x)| (r.name.as_str(), x))
            .collect();
        self.table.removed = cfg
            .regions
            .iter()
            .map(|r| removed_regions.get(r.name.as_str()) == Some(&true))
            .collect();
    }

    /// How long new answers may wait for the first results of unprobed members: the longest
    /// check timeout among them, and a little for the report to arrive.
    fn first_probe_wait(&self) -> Duration {
        let longest = (0..self.cfg.members.len())
            .filter(|&i| self.table.members[i].health.state == State::Unknown)
            .flat_map(|i| &self.cfg.members[i].checks)
            .map(|&(c, _)| self.cfg.checks[c].timeout)
            .max()
            .unwrap_or_default();
        longest + Duration::from_millis(250)
    }
}

/// For each member of `new`, the member of `old` whose state it keeps: same pool name, same
/// member name, and probed the same way.
fn carry(old: &Config, new: &Config) -> Vec<Option<usize>> {
    let index: HashMap<(&str, &str), usize> = old
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| ((old.pools[m.pool].name.as_str(), m.name.as_str()), i))
        .collect();
    new.members
        .iter()
        .map(|m| {
            let &i = index.get(&(new.pools[m.pool].name.as_str(), m.name.as_str()))?;
            let o = &old.members[i];
            let probes = |c: &Config, m: &crate::config::Member| {
                m.checks
                    .iter()
                    .map(|(k, t)| (t.clone(), c.checks[*k].kind.clone()))
                    .collect::<Vec<_>>()
            };
            let same = o.require == m.require && probes(old, o) == probes(new, m);
            same.then_some(i)
        })
        .collect()
}

/// Takes back into `cfg` the settings of `old` that only a restart changes, and names each
/// one that the file changed.
fn keep_restart_only(cfg: &mut Config, old: &Config) -> Vec<String> {
    let mut needs_restart = Vec::new();
    if cfg.listen != old.listen {
        needs_restart.push("server.listen".to_string());
        cfg.listen = old.listen.clone();
    }
    if cfg.admin_listen != old.admin_listen {
        needs_restart.push("admin.listen".to_string());
        cfg.admin_listen = old.admin_listen;
    }
    let (new_limits, old_limits) = (cfg.admin_limits, old.admin_limits);
    for (key, changed) in [
        ("admin.max_body", new_limits.max_body != old_limits.max_body),
        ("admin.max_time", new_limits.max_time != old_limits.max_time),
        (
            "admin.header_timeout",
            new_limits.header_timeout != old_limits.header_timeout,
        ),
        (
            "admin.max_connections",
            new_limits.max_connections != old_limits.max_connections,
        ),
        (
            "admin.max_per_client",
            new_limits.max_per_client != old_limits.max_per_client,
        ),
    ] {
        if changed {
            needs_restart.push(key.to_string());
        }
    }
    cfg.admin_limits = old_limits;
    if cfg.probe_queue != old.probe_queue {
        needs_restart.push("probe.queue".to_string());
        cfg.probe_queue = old.probe_queue;
    }
    needs_restart
}
