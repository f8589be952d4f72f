//! The engine's gauges.

use std::time::Instant;

use hickory_proto::rr::LowerName;

use super::super::Engine;
use crate::base::state::Action;
use crate::config::Config;
use crate::dns::snapshot::Snapshot;
use crate::steer::health::State;

/// The engine's gauges, registered once so that a publication only stores numbers.
pub(in crate::engine) struct Gauges {
    /// Each member's pool and name as label values, for [`crate::base::metrics::render`].
    member_labels: std::sync::Arc<Vec<(String, String)>>,
    /// Where this engine's member flags are published (gone from `/metrics` with it).
    pub(in crate::engine) member_flags: crate::base::metrics::FlagsSlot,
    pool_healthy: Vec<metrics::Gauge>,
    region_removed: Vec<metrics::Gauge>,
    all_down: Vec<metrics::Gauge>,
    degraded: Vec<metrics::Gauge>,
    disabled: metrics::Gauge,
    forced_up: metrics::Gauge,
    generation: metrics::Gauge,
    fail_open: Vec<metrics::Gauge>,
    pool_members: Vec<metrics::Gauge>,
    config_generation: metrics::Gauge,
    pub(in crate::engine) last_reload_ok: metrics::Gauge,
    build_info: metrics::Gauge,
    state_file_ok: metrics::Gauge,
}

impl Gauges {
    pub(in crate::engine) fn new(cfg: &Config) -> Self {
        use crate::base::metrics::*;
        use metrics::gauge;
        handle();
        let name = |metric: &'static str| {
            cfg.names
                .iter()
                .map(|b| gauge!(metric, "name" => b.name.to_string()))
                .collect()
        };
        Gauges {
            member_labels: std::sync::Arc::new(
                cfg.members
                    .iter()
                    .map(|m| (label_value(&cfg.pools[m.pool].name), label_value(&m.name)))
                    .collect(),
            ),
            member_flags: crate::base::metrics::FlagsSlot::new(),
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
            fail_open: name(NAME_FAIL_OPEN),
            pool_members: cfg
                .pools
                .iter()
                .map(|p| gauge!(POOL_MEMBERS, "pool" => p.name.clone()))
                .collect(),
            config_generation: gauge!(CONFIG_GENERATION),
            last_reload_ok: gauge!(LAST_RELOAD_OK),
            build_info: gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")),
            state_file_ok: gauge!(STATE_FILE_OK),
        }
    }
}

impl Engine {
    pub(in crate::engine) fn update_gauges(&self, snap: &Snapshot, now: Instant) {
        let g = &self.gauges;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        for (zi, z) in snap.zones.iter().enumerate() {
            if let Some(serial) = snap.versions.get(zi).map(|v| v.serial) {
                metrics::gauge!(crate::base::metrics::ZONE_SERIAL, "zone" => z.origin.to_string())
                    .set(f64::from(serial));
            }
        }
        g.member_flags.set(crate::base::metrics::MemberFlags {
            labels: g.member_labels.clone(),
            flags: (0..self.cfg.members.len())
                .map(|i| {
                    u8::from(self.table.members[i].health.state == State::Up)
                        | u8::from(self.answered(i, now)) << 1
                })
                .collect(),
        });
        for (p, pool) in self.cfg.pools.iter().enumerate() {
            let up = pool
                .members
                .iter()
                .filter(|&&i| self.table.members[i].health.state == State::Up)
                .count();
            g.pool_healthy[p].set(up as f64);
            g.pool_members[p].set(pool.members.len() as f64);
        }
        for (r, removed) in self.table.removed.iter().enumerate() {
            g.region_removed[r].set(flag(*removed));
        }
        for (k, b) in self.cfg.names.iter().enumerate() {
            let e = snap.bound.get(&LowerName::new(&b.name));
            g.all_down[k].set(flag(e.is_some_and(|e| e.all_down)));
            g.degraded[k].set(flag(e.is_some_and(|e| e.degraded)));
            let fail_open = b.all_down == crate::config::AllDown::All;
            g.fail_open[k].set(flag(fail_open && e.is_some_and(|e| e.all_down)));
        }
        let count = |a| self.overrides.iter().filter(|o| o.action == a).count() as f64;
        g.disabled.set(count(Action::Disable));
        g.forced_up.set(count(Action::ForceUp));
        g.generation.set(self.generation as f64);
        g.config_generation.set(self.config_generation as f64);
        g.build_info.set(1.0);
        g.state_file_ok.set(flag(self.state_problem.is_none()));
        self.cluster_gauges();
        self.store_loads(now);
        if let Some(geo) = &self.cfg.geo {
            for d in &geo.databases {
                let (path, kind) = (d.path.display().to_string(), d.kind.clone());
                metrics::gauge!(crate::base::metrics::GEO_BUILT, "path" => path, "type" => kind)
                    .set(d.built as f64);
            }
        }
    }
}
