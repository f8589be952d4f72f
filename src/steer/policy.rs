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

use crate::config::{AllDown, BoundName, Config, MinHealthy, Policy};

/// The answers of one name for one address family.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Each possible answer with its probability; the probabilities sum to 1.
    pub sets: Vec<(Vec<IpAddr>, f64)>,
    /// No member of this family is healthy: the answer is the name's all-down behaviour.
    pub all_down: bool,
    pub servfail: bool,
}

impl Plan {
    fn one(set: Vec<IpAddr>) -> Self {
        Plan {
            sets: vec![(set, 1.0)],
            all_down: false,
            servfail: false,
        }
    }

    /// Every rotation of `addrs`, cut to `max`, equally likely: each address is first (and,
    /// with a cut, included) equally often.
    fn rotations(addrs: Vec<IpAddr>, max: usize) -> Self {
        let n = addrs.len();
        if n <= 1 {
            return Plan::one(addrs);
        }
        let sets = (0..n)
            .map(|i| {
                let set = addrs.iter().cycle().skip(i).take(n.min(max)).copied();
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
    match &name.policy {
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
                    .map(|g| g.iter().copied().filter(|&i| family(cfg, i, v6)).collect())
                    .collect();
                plan_with(cfg, name, v6, health, &|_| {
                    along(cfg, &groups, *min_healthy, *max_answers, health)
                })
            })
            .collect(),
        _ => vec![plan_single(cfg, name, v6, health)],
    }
}

/// The first group with at least `min_healthy` healthy members, else the first with any,
/// answered as `all` answers (over its healthy members).
fn along(
    cfg: &Config,
    groups: &[Vec<usize>],
    min_healthy: MinHealthy,
    max: usize,
    health: &dyn HealthView,
) -> Plan {
    let usable = |need: bool| {
        groups.iter().find_map(|g| {
            let ok: Vec<usize> = g.iter().copied().filter(|&i| health.up(i)).collect();
            let enough = if need {
                min_healthy.met(ok.len(), g.len())
            } else {
                !ok.is_empty()
            };
            enough.then_some(ok)
        })
    };
    let chosen = usable(true).or_else(|| usable(false)).unwrap_or_default();
    Plan::rotations(dedup(chosen.iter().map(|&i| cfg.members[i].address)), max)
}

fn family(cfg: &Config, i: usize, v6: bool) -> bool {
    cfg.members[i].address.is_ipv6() == v6
}

/// The plan for clients that match no topology rule (for any other policy, the only one).
pub fn plan(cfg: &Config, name: &BoundName, v6: bool, health: &dyn HealthView) -> Plan {
    plans(cfg, name, v6, health).swap_remove(0)
}

/// The one plan of a name whose policy does not depend on the client.
fn plan_single(cfg: &Config, name: &BoundName, v6: bool, health: &dyn HealthView) -> Plan {
    plan_with(cfg, name, v6, health, &|healthy| match &name.policy {
        Policy::All { max_answers } => Plan::rotations(
            dedup(healthy.iter().map(|&i| cfg.members[i].address)),
            *max_answers,
        ),
        Policy::Weighted { answers } => weighted(cfg, name, v6, health, *answers),
        Policy::Failover {
            min_healthy,
            max_answers,
        } => {
            let groups: Vec<Vec<usize>> = name
                .pools
                .iter()
                .map(|&p| family_members(cfg, p, v6).collect())
                .collect();
            along(cfg, &groups, *min_healthy, *max_answers, health)
        }
        // Only `plans` calls this, and it plans topology names itself.
        Policy::Topology { .. } => unreachable!("topology names are planned by plans()"),
    })
}

/// The all-down plan when nothing of the family is healthy, else `healthy_plan` of the
/// healthy members; NODATA when the name has no member of the family.
fn plan_with(
    cfg: &Config,
    name: &BoundName,
    v6: bool,
    health: &dyn HealthView,
    healthy_plan: &dyn Fn(&[usize]) -> Plan,
) -> Plan {
    let all: Vec<usize> = name
        .pools
        .iter()
        .flat_map(|&p| family_members(cfg, p, v6))
        .collect();
    if all.is_empty() {
        return Plan::one(Vec::new()); // no member of this family: NODATA, not an outage
    }
    let healthy: Vec<usize> = all.iter().copied().filter(|&i| health.up(i)).collect();
    if healthy.is_empty() {
        let all: Vec<usize> = all.into_iter().filter(|&i| health.eligible(i)).collect();
        return all_down(cfg, name, v6, health, &all);
    }
    healthy_plan(&healthy)
}

/// Weighted choice among the healthy members. A pool's weight is shared among its healthy
/// members by their own weights; pools with none healthy drop out and the others share
/// their part.
fn weighted(
    cfg: &Config,
    name: &BoundName,
    v6: bool,
    health: &dyn HealthView,
    answers: usize,
) -> Plan {
    let mut weighted: Vec<(IpAddr, f64)> = Vec::new();
    let live_pools: Vec<usize> = name
        .pools
        .iter()
        .copied()
        .filter(|&p| family_members(cfg, p, v6).any(|i| health.up(i)))
        .collect();
    let pools_total: f64 = live_pools.iter().map(|&p| cfg.pools[p].weight as f64).sum();
    for &p in &live_pools {
        let ms: Vec<usize> = family_members(cfg, p, v6)
            .filter(|&i| health.up(i))
            .collect();
        let members_total: f64 = ms.iter().map(|&i| cfg.members[i].weight as f64).sum();
        for i in ms {
            let w = cfg.pools[p].weight as f64 / pools_total * cfg.members[i].weight as f64
                / members_total;
            let a = cfg.members[i].address;
            match weighted.iter_mut().find(|(x, _)| *x == a) {
                Some((_, sum)) => *sum += w,
                None => weighted.push((a, w)),
            }
        }
    }
    systematic(&weighted, answers)
}

/// The answer when no member of the family is healthy.
fn all_down(
    cfg: &Config,
    name: &BoundName,
    v6: bool,
    health: &dyn HealthView,
    all: &[usize],
) -> Plan {
    let max = match name.policy {
        Policy::All { max_answers }
        | Policy::Failover { max_answers, .. }
        | Policy::Topology { max_answers, .. } => max_answers,
        Policy::Weighted { answers } => answers,
    };
    let mut p = match &name.all_down {
        AllDown::All => Plan::rotations(dedup(all.iter().map(|&i| cfg.members[i].address)), max),
        AllDown::Fallback { addresses, pools } => {
            let mut out: Vec<IpAddr> = addresses
                .iter()
                .copied()
                .filter(|a| a.is_ipv6() == v6)
                .collect();
            for &p in pools {
                let ms: Vec<usize> = family_members(cfg, p, v6)
                    .filter(|&i| health.eligible(i))
                    .collect();
                let healthy: Vec<usize> = ms.iter().copied().filter(|&i| health.up(i)).collect();
                let use_ = if healthy.is_empty() { ms } else { healthy };
                out.extend(use_.iter().map(|&i| cfg.members[i].address));
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

/// The members of pool `p` of one address family.
fn family_members(cfg: &Config, p: usize, v6: bool) -> impl Iterator<Item = usize> + '_ {
    cfg.pools[p]
        .members
        .iter()
        .copied()
        .filter(move |&i| family(cfg, i, v6))
}

fn dedup(it: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = Vec::new();
    for a in it {
        if !v.contains(&a) {
            v.push(a);
        }
    }
    v
}

/// Systematic sampling of `k` addresses by weight: one answer per stretch of offsets that
/// picks the same addresses, with that stretch's probability.
fn systematic(weighted: &[(IpAddr, f64)], k: usize) -> Plan {
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
                    set.push(*a);
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
