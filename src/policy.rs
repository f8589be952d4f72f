//! Steering: which addresses a bound name answers, given which members are healthy.
//!
//! Pure functions of the configuration and a health view. The result ([`Plan`]) is the set
//! of answers a query may get and the chance of each; the engine turns it into records and
//! the query path picks one per query with a random number. Each address family is planned
//! on its own, over the members of that family, so that an A query never draws an IPv6
//! member.
//!
//! Weighted choice uses systematic sampling: members lie on a circle in proportion to their
//! weights and `k` points spaced 1/k apart, at a random offset, pick the answer. Each member
//! is then in the answer with probability k·w/W exactly, so its share of traffic is its
//! weight's share however a resolver orders the records, and the offsets between the
//! circle's boundaries give at most one distinct answer per member to prepare.

use std::net::IpAddr;

use hickory_proto::rr::Name;

use crate::config::{AllDown, BoundName, Config, MinHealthy, Policy};
pub use crate::steer::spill::Spill;
use crate::steer::spill::{spill, Group};

/// The answers of one name for one address family (or, `T` = [`Name`], the CNAME targets of
/// a name whose members are domain names).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<T = IpAddr> {
    /// Each possible answer with its probability; the probabilities sum to 1.
    pub sets: Vec<(Vec<T>, f64)>,
    /// No member of this family is healthy: the answer is the name's all-down behaviour.
    pub all_down: bool,
    pub servfail: bool,
}

impl<T: Clone + PartialEq> Plan<T> {
    fn one(set: Vec<T>) -> Self {
        Plan {
            sets: vec![(set, 1.0)],
            all_down: false,
            servfail: false,
        }
    }

    /// Every rotation of `addrs`, cut to `max`, equally likely: each address is first (and,
    /// with a cut, included) equally often.
    fn rotations(addrs: Vec<T>, max: usize) -> Self {
        let n = addrs.len();
        if n <= 1 {
            return Plan::one(addrs);
        }
        let sets = (0..n)
            .map(|i| {
                let set = addrs.iter().cycle().skip(i).take(n.min(max)).cloned();
                (set.collect(), 1.0 / n as f64)
            })
            .collect();
        Plan {
            sets,
            all_down: false,
            servfail: false,
        }
    }
}

/// What steering needs to know of each member (by index into the configuration's members):
/// one view of health, the same for publication and for explain.
pub trait HealthView {
    /// In answers now: probed up, not held down, not in a removed region, not disabled by
    /// hand (or forced up).
    fn up(&self, member: usize) -> bool;
    /// May be answered at all (not disabled by hand), whatever its health: the members an
    /// all-down answer may fall back to.
    fn eligible(&self, member: usize) -> bool;
    /// For a name whose pools have capacities: each client group's share of its traffic (in
    /// the order of the policy's groups); none: equal shares.
    fn shares(&self, _name: &BoundName) -> Option<Vec<f64>> {
        None
    }
}

/// A [`HealthView`] from two functions: `up`, then `eligible`.
pub struct Views<U, E>(pub U, pub E);

impl<U: Fn(usize) -> bool, E: Fn(usize) -> bool> HealthView for Views<U, E> {
    fn up(&self, member: usize) -> bool {
        (self.0)(member)
    }
    fn eligible(&self, member: usize) -> bool {
        (self.1)(member)
    }
}

/// Plans `name`'s answers for IPv6 (`v6`) or IPv4, `up` telling which members are healthy:
/// one plan per client group (a topology name has one per rule, after the one for unmatched
/// clients; every other policy has one).
/// `eligible` is false for members that must never be answered (disabled by hand), not even
/// when every member is down.
pub fn plans(cfg: &Config, name: &BoundName, v6: bool, health: &dyn HealthView) -> Vec<Plan> {
    let fixed = match &name.all_down {
        AllDown::Fallback { addresses, .. } => addresses
            .iter()
            .copied()
            .filter(|a| a.is_ipv6() == v6)
            .collect(),
        _ => Vec::new(),
    };
    Planner {
        fixed,
        ..Planner::addresses(cfg, name, v6, health)
    }
    .plans()
}

/// Plans the CNAME answer of `name`, whose members are domain names: as [`plans`], each set
/// holding the one target a query gets.
pub fn cname_plans(cfg: &Config, name: &BoundName, health: &dyn HealthView) -> Vec<Plan<Name>> {
    Planner::names(cfg, name, health).plans()
}

/// For a name whose pools have capacities, where each client group's traffic goes for one
/// address family (`v6`), and the load that puts on each pool.
pub fn spill_of(
    cfg: &Config,
    name: &BoundName,
    v6: bool,
    health: &dyn HealthView,
) -> Option<Spill> {
    Planner::addresses(cfg, name, v6, health).spill()
}

/// [`spill_of`] for a name whose members are domain names.
pub fn cname_spill_of(cfg: &Config, name: &BoundName, health: &dyn HealthView) -> Option<Spill> {
    Planner::names(cfg, name, health).spill()
}

/// The plan for clients that match no topology rule (for any other policy, the only one).
pub fn plan(cfg: &Config, name: &BoundName, v6: bool, health: &dyn HealthView) -> Plan {
    plans(cfg, name, v6, health).swap_remove(0)
}

/// Plans one name over the members `of` selects, answering each member as `key`.
struct Planner<'a, T> {
    cfg: &'a Config,
    name: &'a BoundName,
    health: &'a dyn HealthView,
    of: Box<dyn Fn(usize) -> bool + 'a>,
    key: Box<dyn Fn(usize) -> T + 'a>,
    /// The all-down fallback's fixed answers.
    fixed: Vec<T>,
}

impl<'a> Planner<'a, IpAddr> {
    /// Over the members of one address family, answering their addresses.
    fn addresses(
        cfg: &'a Config,
        name: &'a BoundName,
        v6: bool,
        health: &'a dyn HealthView,
    ) -> Self {
        Planner {
            cfg,
            name,
            health,
            of: Box::new(move |i| {
                cfg.members[i].cname.is_none() && cfg.members[i].address.is_ipv6() == v6
            }),
            key: Box::new(|i| cfg.members[i].address),
            fixed: Vec::new(),
        }
    }
}

impl<'a> Planner<'a, Name> {
    /// Over the members that are domain names, answering those names.
    fn names(cfg: &'a Config, name: &'a BoundName, health: &'a dyn HealthView) -> Self {
        Planner {
            cfg,
            name,
            health,
            of: Box::new(|i| cfg.members[i].cname.is_some()),
            key: Box::new(|i| cfg.members[i].cname.clone().unwrap_or_default()),
            fixed: Vec::new(),
        }
    }
}

impl<T: Clone + Eq + std::hash::Hash> Planner<'_, T> {
    fn plans(&self) -> Vec<Plan<T>> {
        if let Some(s) = self.spill() {
            return self.spill_plans(&s);
        }
        match &self.name.policy {
            Policy::Topology {
                min_healthy,
                max_answers,
                orders,
                ..
            } => orders
                .iter()
                .map(|order| {
                    let groups: Vec<Vec<usize>> = order
                        .iter()
                        .map(|g| g.iter().copied().filter(|&i| (self.of)(i)).collect())
                        .collect();
                    self.plan_with(&|_| self.along(&groups, *min_healthy, *max_answers))
                })
                .collect(),
            _ => vec![self.plan_single()],
        }
    }

    /// The first group with at least `min_healthy` healthy members, else the first with any,
    /// answered as `all` answers (over its healthy members).
    fn along(&self, groups: &[Vec<usize>], min_healthy: MinHealthy, max: usize) -> Plan<T> {
        let usable = |need: bool| {
            groups.iter().find_map(|g| {
                let ok: Vec<usize> = g.iter().copied().filter(|&i| self.health.up(i)).collect();
                let enough = if need {
                    min_healthy.met(ok.len(), g.len())
                } else {
                    !ok.is_empty()
                };
                enough.then_some(ok)
            })
        };
        let chosen = usable(true).or_else(|| usable(false)).unwrap_or_default();
        Plan::rotations(self.keys(&chosen), max)
    }

    /// The policy's `min_healthy` and `max_answers`, for failover and topology names.
    fn along_params(&self) -> Option<(MinHealthy, usize)> {
        match &self.name.policy {
            Policy::Failover {
                min_healthy,
                max_answers,
            }
            | Policy::Topology {
                min_healthy,
                max_answers,
                ..
            } => Some((*min_healthy, *max_answers)),
            _ => None,
        }
    }

    /// Where each client group goes when its pools have capacities (see [`spill`]).
    fn spill(&self) -> Option<Spill> {
        let orders = self.name.spill.as_ref()?;
        let (min_healthy, _) = self.along_params()?;
        let n = orders.len();
        let shares = self
            .health
            .shares(self.name)
            .filter(|s| s.len() == n)
            .unwrap_or_else(|| vec![1.0 / n as f64; n]);
        let usable = |p: usize| {
            let ms: Vec<usize> = self.pool_members(p).collect();
            let ok = ms.iter().filter(|&&i| self.health.up(i)).count();
            min_healthy.met(ok, ms.len())
        };
        let groups: Vec<Group> = orders
            .iter()
            .zip(&shares)
            .map(|(order, &share)| Group { share, order })
            .collect();
        let capacity = |p: usize| self.cfg.pools[p].capacity.unwrap_or(0) as f64;
        Some(spill(&groups, &capacity, &usable))
    }

    /// Each client group's plan from the spill: each pool's healthy members, rotated, with
    /// the pool's fraction of the group; a group with no usable pool answers as without
    /// capacities (the first pool with any healthy member, else all-down).
    fn spill_plans(&self, s: &Spill) -> Vec<Plan<T>> {
        let (min_healthy, max) = self.along_params().unwrap_or((MinHealthy::Count(1), 1));
        s.split
            .iter()
            .enumerate()
            .map(|(g, split)| {
                self.plan_with(&|_| {
                    if split.is_empty() {
                        let groups = self.member_groups(g);
                        return self.along(&groups, min_healthy, max);
                    }
                    let mut sets = Vec::new();
                    for &(p, f) in split {
                        let healthy: Vec<usize> = self
                            .pool_members(p)
                            .filter(|&i| self.health.up(i))
                            .collect();
                        let r = Plan::rotations(self.keys(&healthy), max);
                        sets.extend(r.sets.into_iter().map(|(set, w)| (set, w * f)));
                    }
                    Plan {
                        sets,
                        all_down: false,
                        servfail: false,
                    }
                })
            })
            .collect()
    }

    /// The member groups client group `g` walks, of the family.
    fn member_groups(&self, g: usize) -> Vec<Vec<usize>> {
        match &self.name.policy {
            Policy::Topology { orders, .. } => orders
                .get(g)
                .map(|o| {
                    o.iter()
                        .map(|m| m.iter().copied().filter(|&i| (self.of)(i)).collect())
                        .collect()
                })
                .unwrap_or_default(),
            _ => self
                .name
                .pools
                .iter()
                .map(|&p| self.pool_members(p).collect())
                .collect(),
        }
    }

    /// The answers of `members`, each once.
    fn keys(&self, members: &[usize]) -> Vec<T> {
        dedup(members.iter().map(|&i| (self.key)(i)))
    }

    /// The one plan of a name whose policy does not depend on the client.
    fn plan_single(&self) -> Plan<T> {
        self.plan_with(&|healthy| match &self.name.policy {
            Policy::All { max_answers } => Plan::rotations(self.keys(healthy), *max_answers),
            Policy::Weighted { answers } => self.weighted(*answers),
            Policy::Failover {
                min_healthy,
                max_answers,
            } => {
                let groups: Vec<Vec<usize>> = self
                    .name
                    .pools
                    .iter()
                    .map(|&p| self.pool_members(p).collect())
                    .collect();
                self.along(&groups, *min_healthy, *max_answers)
            }
            // Only `plans` calls this, and it plans topology names itself.
            Policy::Topology { .. } => unreachable!("topology names are planned by plans()"),
        })
    }

    /// The all-down plan when nothing of the family is healthy, else `healthy_plan` of the
    /// healthy members; NODATA when the name has no member of the family.
    fn plan_with(&self, healthy_plan: &dyn Fn(&[usize]) -> Plan<T>) -> Plan<T> {
        let all: Vec<usize> = self
            .name
            .pools
            .iter()
            .flat_map(|&p| self.pool_members(p))
            .collect();
        if all.is_empty() {
            return Plan::one(Vec::new()); // no member of this family: NODATA, not an outage
        }
        let healthy: Vec<usize> = all.iter().copied().filter(|&i| self.health.up(i)).collect();
        if healthy.is_empty() {
            let all: Vec<usize> = all
                .into_iter()
                .filter(|&i| self.health.eligible(i))
                .collect();
            return self.all_down(&all);
        }
        healthy_plan(&healthy)
    }

    /// Weighted choice among the healthy members. A pool's weight is shared among its healthy
    /// members by their own weights; pools with none healthy drop out and the others share
    /// their part.
    fn weighted(&self, answers: usize) -> Plan<T> {
        let (cfg, health) = (self.cfg, self.health);
        let mut weighted: Vec<(T, f64)> = Vec::new();
        let live_pools: Vec<usize> = self
            .name
            .pools
            .iter()
            .copied()
            .filter(|&p| self.pool_members(p).any(|i| health.up(i)))
            .collect();
        let pools_total: f64 = live_pools.iter().map(|&p| cfg.pools[p].weight as f64).sum();
        for &p in &live_pools {
            let ms: Vec<usize> = self.pool_members(p).filter(|&i| health.up(i)).collect();
            let members_total: f64 = ms.iter().map(|&i| cfg.members[i].weight as f64).sum();
            for i in ms {
                let w = cfg.pools[p].weight as f64 / pools_total * cfg.members[i].weight as f64
                    / members_total;
                let a = (self.key)(i);
                match weighted.iter_mut().find(|(x, _)| *x == a) {
                    Some((_, sum)) => *sum += w,
                    None => weighted.push((a, w)),
                }
            }
        }
        systematic(&weighted, answers)
    }

    /// The answer when no member of the family is healthy.
    fn all_down(&self, all: &[usize]) -> Plan<T> {
        let max = match self.name.policy {
            Policy::All { max_answers }
            | Policy::Failover { max_answers, .. }
            | Policy::Topology { max_answers, .. } => max_answers,
            Policy::Weighted { answers } => answers,
        };
        let mut p = match &self.name.all_down {
            AllDown::All => Plan::rotations(self.keys(all), max),
            AllDown::Fallback { pools, .. } => {
                let mut out: Vec<T> = self.fixed.clone();
                for &p in pools {
                    let ms: Vec<usize> = self
                        .pool_members(p)
                        .filter(|&i| self.health.eligible(i))
                        .collect();
                    let healthy: Vec<usize> =
                        ms.iter().copied().filter(|&i| self.health.up(i)).collect();
                    let use_ = if healthy.is_empty() { ms } else { healthy };
                    out.extend(use_.iter().map(|&i| (self.key)(i)));
                }
                Plan::rotations(dedup(out.into_iter()), max)
            }
            AllDown::NoData => Plan::one(Vec::new()),
            AllDown::ServFail => Plan {
                servfail: true,
                ..Plan::one(Vec::new())
            },
        };
        p.all_down = true;
        p
    }

    /// The members of pool `p` that are planned (of the family).
    fn pool_members(&self, p: usize) -> impl Iterator<Item = usize> + '_ {
        self.cfg.pools[p]
            .members
            .iter()
            .copied()
            .filter(move |&i| (self.of)(i))
    }
}

/// The items of `it`, each once, in their first order: a set of those seen, so that a name
/// of many members is planned in time linear in them.
fn dedup<T: Clone + Eq + std::hash::Hash>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    it.filter(|a| seen.insert(a.clone())).collect()
}

/// Systematic sampling of `k` addresses by weight: one answer per stretch of offsets that
/// picks the same addresses, with that stretch's probability.
fn systematic<T: Clone + PartialEq>(weighted: &[(T, f64)], k: usize) -> Plan<T> {
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    let k = k.min(weighted.len()).max(1);
    let step = 1.0 / k as f64;
    // The circle's boundaries, folded into one step: where the answer changes.
    let mut bounds = vec![0.0];
    let mut cum = 0.0;
    for (_, w) in weighted {
        cum += w / total;
        let b = cum % step;
        if b > 1e-12 && step - b > 1e-12 {
            bounds.push(b);
        }
    }
    bounds.sort_by(f64::total_cmp);
    bounds.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    bounds.push(step);
    let pick = |u: f64| {
        let mut set = Vec::with_capacity(k);
        for j in 0..k {
            let x = u + j as f64 * step;
            let mut cum = 0.0;
            let hit = weighted
                .iter()
                .find(|(_, w)| {
                    cum += w / total;
                    x < cum
                })
                .or(weighted.last());
            if let Some((a, _)) = hit {
                if !set.contains(a) {
                    set.push(a.clone());
                }
            }
        }
        set
    };
    let sets = bounds
        .windows(2)
        .map(|w| (pick((w[0] + w[1]) / 2.0), (w[1] - w[0]) * k as f64))
        .collect();
    Plan {
        sets,
        all_down: false,
        servfail: false,
    }
}

#[cfg(test)]
mod tests;
