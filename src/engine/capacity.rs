//! Capacity-aware spill, as the engine sees it: each publication computes where the clients
//! of names whose pools have capacities go ([`crate::steer::spill`]), and notes the pools
//! that would carry more than their capacity: logged and alerted when it starts and ends. Each
//! pool's load is exported as `gtmd_pool_load_ratio` with the other gauges.

use std::time::Instant;

use hickory_proto::rr::LowerName;

use super::Engine;
use crate::base::alert::Alert;
use crate::config::BoundName;
use crate::policy::{self, Spill};

/// One pool's load under a name whose pools have capacities.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PoolLoad {
    pub pool: String,
    /// Percent of the name's traffic the pool can carry.
    pub capacity: u32,
    /// Percent of the name's traffic it carries now.
    pub load: f64,
    /// Above its capacity.
    pub over: bool,
}

impl Engine {
    /// Where `b`'s clients go now, if its pools have capacities: of the address family that
    /// asks most of a pool (or the CNAME answer).
    pub(super) fn spill_now(&self, b: &BoundName, now: Instant) -> Option<Spill> {
        b.spill.as_ref()?;
        let view = self.view(now);
        if b.cname {
            return policy::cname_spill_of(&self.cfg, b, &view);
        }
        let worst = |s: &Spill| s.over.iter().map(|o| o.1).fold(0.0, f64::max);
        [false, true]
            .into_iter()
            .filter(|&v6| {
                b.pools.iter().any(|&p| {
                    self.cfg.pools[p]
                        .members
                        .iter()
                        .any(|&i| self.cfg.members[i].address.is_ipv6() == v6)
                })
            })
            .filter_map(|v6| policy::spill_of(&self.cfg, b, v6, &view))
            .max_by(|x, y| worst(x).total_cmp(&worst(y)))
    }

    /// Each pool's load under `b` now (none: `b`'s pools have no capacities).
    pub(super) fn loads(&self, b: &BoundName, now: Instant) -> Vec<PoolLoad> {
        let Some(s) = self.spill_now(b, now) else {
            return Vec::new();
        };
        b.pools
            .iter()
            .map(|&p| {
                let capacity = self.cfg.pools[p].capacity.unwrap_or(0);
                PoolLoad {
                    pool: self.cfg.pools[p].name.clone(),
                    capacity,
                    load: s.load_of(p),
                    over: s.over.iter().any(|o| o.0 == p),
                }
            })
            .collect()
    }

    /// Stores the load gauges of every name whose pools have capacities. With the other
    /// gauges, at each publication and every few seconds, so the exporter keeps them.
    pub(super) fn store_loads(&self, now: Instant) {
        for b in self.cfg.names.iter().filter(|b| b.spill.is_some()) {
            let Some(s) = self.spill_now(b, now) else {
                continue;
            };
            for &p in &b.pools {
                let pool = &self.cfg.pools[p];
                let ratio = s.load_of(p) / pool.capacity.unwrap_or(1).max(1) as f64;
                metrics::gauge!(crate::base::metrics::POOL_LOAD, "name" => b.name.to_string(), "pool" => pool.name.clone())
                    .set(ratio);
            }
        }
    }

    /// Alerts when a pool of `b` becomes overloaded, or no longer is.
    pub(super) fn note_capacity(&mut self, b: &BoundName, now: Instant) {
        let Some(s) = self.spill_now(b, now) else {
            return;
        };
        let key = LowerName::new(&b.name);
        // By pool name: indexes change with a reload, names stay.
        let over: Vec<(String, f64)> = s
            .over
            .iter()
            .map(|&(p, r)| (self.cfg.pools[p].name.clone(), r))
            .collect();
        let was = self
            .overloaded
            .insert(key, over.clone())
            .unwrap_or_default();
        for (pool, ratio) in &over {
            if was.iter().any(|o| &o.0 == pool) {
                continue;
            }
            let pool = pool.clone();
            let reason = format!("{pool} would need {:.0}% of its capacity", ratio * 100.0);
            tracing::error!(name = %b.name, pool, "{reason}");
            let mut a = Alert::new("pool_overloaded");
            a.name = Some(b.name.to_string());
            a.pool = Some(pool);
            a.reason = Some(reason);
            self.alerts.send(a);
        }
        for (pool, _) in was {
            if over.iter().any(|o| o.0 == pool) {
                continue;
            }
            tracing::warn!(name = %b.name, pool, "the pool is within its capacity again");
            let mut a = Alert::new("pool_within_capacity");
            a.name = Some(b.name.to_string());
            a.pool = Some(pool);
            self.alerts.send(a);
        }
    }
}

/// The queries of each client group of a topology name whose pools have capacities, and the
/// shares of its traffic taken from them.
pub(super) struct Meter {
    pub hits: std::sync::Arc<[std::sync::atomic::AtomicU64]>,
    last: Vec<u64>,
    /// Each group's share (none until queries were seen: equal shares).
    pub shares: Option<Vec<f64>>,
    /// The shares the published answers were planned with.
    used: Option<Vec<f64>>,
}

/// Queries a window needs before its shares count.
const MIN_QUERIES: u64 = 100;
/// How far a share may drift from the one published before answers are planned again.
const DRIFT: f64 = 0.02;

impl Meter {
    fn new(groups: usize) -> Self {
        Meter {
            hits: (0..groups)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            last: vec![0; groups],
            shares: None,
            used: None,
        }
    }

    /// Takes the queries since the last call into the shares (half the weight to the new
    /// window); true if the shares moved away from those published.
    fn sample(&mut self) -> bool {
        let now: Vec<u64> = self
            .hits
            .iter()
            .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let delta: Vec<u64> = now.iter().zip(&self.last).map(|(n, l)| n - l).collect();
        let total: u64 = delta.iter().sum();
        if total < MIN_QUERIES {
            return false;
        }
        self.last = now;
        let fresh: Vec<f64> = delta.iter().map(|&d| d as f64 / total as f64).collect();
        self.shares = Some(match &self.shares {
            None => fresh,
            Some(old) => old.iter().zip(&fresh).map(|(o, f)| (o + f) / 2.0).collect(),
        });
        match (&self.shares, &self.used) {
            (Some(s), Some(u)) => s.iter().zip(u).any(|(a, b)| (a - b).abs() > DRIFT),
            (Some(_), None) => true,
            _ => false,
        }
    }
}

impl Engine {
    /// The meter of `b`, a topology name whose pools have capacities, made when first asked.
    pub(super) fn meter(
        &mut self,
        b: &BoundName,
    ) -> Option<std::sync::Arc<[std::sync::atomic::AtomicU64]>> {
        let groups = b.spill.as_ref()?.len();
        if !matches!(b.policy, crate::config::Policy::Topology { .. }) {
            return None;
        }
        let m = self
            .meters
            .entry(LowerName::new(&b.name))
            .or_insert_with(|| Meter::new(groups));
        if m.hits.len() != groups {
            *m = Meter::new(groups);
        }
        m.used = m.shares.clone();
        Some(m.hits.clone())
    }

    /// Samples every meter; publishes again when a name that is spilling now has shares
    /// that moved (a name whose clients all stay on their first pools does not depend on
    /// them).
    pub(super) fn sample_shares(&mut self) {
        let now = Instant::now();
        let mut moved = false;
        let cfg = self.cfg.clone();
        self.meters
            .retain(|n, _| cfg.names.iter().any(|b| &LowerName::new(&b.name) == n));
        let names: Vec<BoundName> = self
            .cfg
            .names
            .iter()
            .filter(|b| self.meters.contains_key(&LowerName::new(&b.name)))
            .cloned()
            .collect();
        for b in names {
            // Some group is not all on the first pool of its order.
            let spilling = self.spill_now(&b, now).is_some_and(|s| {
                s.split
                    .iter()
                    .zip(b.spill.iter().flatten())
                    .any(|(g, o)| g.len() != 1 || g.first().map(|x| x.0) != o.first().copied())
            });
            let changed = self
                .meters
                .get_mut(&LowerName::new(&b.name))
                .is_some_and(Meter::sample);
            moved |= changed && spilling;
        }
        if moved {
            self.publish();
        }
    }
}
