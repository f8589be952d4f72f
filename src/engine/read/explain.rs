//! "Why this answer?": for one pool-bound name and one client, every member behind the name
//! with whether it is eligible and why, the order of groups a failover or topology name walks,
//! and each answer the client can get with its probability. It runs the same
//! [`policy::plans`] as publication, on the same health, so it cannot disagree with DNS.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::rr::{LowerName, Name};
use serde::Serialize;

use super::super::Engine;
use crate::base::state::Action;
use crate::config::{BoundName, Policy};
use crate::policy;
use crate::steer::health::State;
use crate::steer::topology::Client;

#[derive(Debug, Clone, Serialize)]
pub struct Explain {
    pub name: String,
    pub policy: &'static str,
    /// The client as asked about (an address, or a subnet as in ECS).
    pub client: Option<String>,
    /// Topology names: the rule that matched the client and the ECS scope of the answer.
    pub topology: Option<TopologyMatch>,
    /// Failover and topology names: the groups in the order they are tried.
    pub order: Vec<GroupStatus>,
    pub ttl: u32,
    pub degraded: bool,
    pub families: Vec<FamilyAnswer>,
    pub members: Vec<MemberWhy>,
    /// A name whose pools have capacities: each pool's load, and in words what is over.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capacity: Vec<super::super::capacity::PoolLoad>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overload: Option<String>,
    /// How fast clients recover from a failure and what the TTL costs resolvers.
    pub recovery: super::recovery::RecoveryReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopologyMatch {
    /// `names."X".topology[N]`, or None: no rule matched (the name's pools in order).
    pub rule: Option<usize>,
    /// The ECS scope prefix length the answer carries.
    pub scope: u8,
    /// With `[geo]`: what the databases say of the client (`country DE, continent EU, AS
    /// 64500`), and the network's prefix length there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// The client got the name's pools by distance (a `nearest` rule).
    pub nearest: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// A pool, or a region label (topology orders).
    pub group: String,
    pub members: usize,
    /// Members in answers now (healthy, not held down or removed, or forced up).
    pub healthy: usize,
    /// Enough healthy members for `min_healthy`.
    pub enough: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyAnswer {
    pub rtype: &'static str,
    /// No member of this family is healthy: the answer is the name's all-down behaviour.
    pub all_down: bool,
    pub servfail: bool,
    /// Each possible answer (as a set; the order rotates per query) and its probability.
    pub answers: Vec<Odds>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Odds {
    /// The addresses of an A or AAAA answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// The target of a CNAME answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub probability: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberWhy {
    pub pool: String,
    pub member: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    pub region: Option<String>,
    /// Healthy by the engine's rules (or forced up): the policy may use it.
    pub eligible: bool,
    /// How likely it is to be in this client's answer.
    pub in_answer: f64,
    pub why: String,
    /// In a cluster: each live instance's view, and whether it is on the side that decided.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<super::ViewStatus>,
}

impl Policy {
    pub fn kind(&self) -> &'static str {
        match self {
            Policy::All { .. } => "all",
            Policy::Weighted { .. } => "weighted",
            Policy::Failover { .. } => "failover",
            Policy::Topology { .. } => "topology",
        }
    }
}

impl Engine {
    pub(in crate::engine) fn explain(
        &self,
        name: &Name,
        client: Option<Client>,
        asked: Option<String>,
    ) -> Result<Explain, String> {
        let lname = LowerName::new(name);
        let b = self
            .cfg
            .names
            .iter()
            .find(|b| LowerName::new(&b.name) == lname)
            .ok_or_else(|| {
                format!("{name} is not bound to pools: its answers come from the zone files")
            })?;
        let now = Instant::now();
        let view = self.view(now);
        let (group, topology) = topology_of(b, client, self.cfg.geo.as_deref(), &self.cfg.pools);
        let families = self.families(b, group, &view);
        let loads = self.loads(b, now);
        let published = self.published.load();
        let entry = published.bound.get(&lname);
        let degraded = entry.is_some_and(|e| e.degraded);
        let recovery = super::recovery::report(b, entry.and_then(|e| e.resolvers.as_deref()));
        Ok(Explain {
            name: b.name.to_string(),
            policy: b.policy.kind(),
            client: asked,
            topology,
            order: self.order(b, group),
            ttl: if degraded { b.degraded_ttl } else { b.ttl },
            degraded,
            capacity: loads.clone(),
            overload: overload_words(&loads),
            recovery,
            members: self
                .members_of(b)
                .into_iter()
                .map(|i| self.member_why(i, &families, now))
                .collect(),
            families,
        })
    }

    /// The possible answers of name `b` to client group `group`, per record type, with their
    /// odds, from the health `view`.
    fn families(
        &self,
        b: &BoundName,
        group: usize,
        view: &super::super::View<'_>,
    ) -> Vec<FamilyAnswer> {
        let mut families = Vec::new();
        if b.cname {
            let plans = policy::cname_plans(&self.cfg, b, view);
            if let Some(p) = plans.into_iter().nth(group) {
                let sets = p
                    .sets
                    .into_iter()
                    .map(|(s, w)| (s.iter().map(|n| n.to_string()).collect::<Vec<_>>(), w));
                families.push(FamilyAnswer {
                    rtype: "CNAME",
                    all_down: p.all_down,
                    servfail: p.servfail,
                    answers: merge(sets.collect())
                        .into_iter()
                        .map(|(names, probability)| Odds {
                            addresses: Vec::new(),
                            names,
                            probability,
                        })
                        .collect(),
                });
            }
        }
        for v6 in [false, true] {
            let members = self.members_of(b);
            if !members.iter().any(|&i| {
                let m = &self.cfg.members[i];
                m.cname.is_none() && m.address.is_ipv6() == v6
            }) {
                continue;
            }
            let plans = policy::plans(&self.cfg, b, v6, view);
            let Some(p) = plans.into_iter().nth(group) else {
                continue;
            };
            families.push(FamilyAnswer {
                rtype: if v6 { "AAAA" } else { "A" },
                all_down: p.all_down,
                servfail: p.servfail,
                answers: merge(p.sets)
                    .into_iter()
                    .map(|(addresses, probability)| Odds {
                        addresses,
                        names: Vec::new(),
                        probability,
                    })
                    .collect(),
            });
        }
        families
    }

    /// Every member behind the name, once, in pool order.
    fn members_of(&self, b: &BoundName) -> Vec<usize> {
        let mut v: Vec<usize> = Vec::new();
        for &p in &b.pools {
            for &i in &self.cfg.pools[p].members {
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
        v
    }

    /// The groups a failover or topology name tries, in order, with their health now.
    fn order(&self, b: &BoundName, group: usize) -> Vec<GroupStatus> {
        let now = Instant::now();
        let status = |label: &str, members: &[usize], min: crate::config::MinHealthy| {
            let healthy = members.iter().filter(|&&i| self.answered(i, now)).count();
            GroupStatus {
                group: label.to_string(),
                members: members.len(),
                healthy,
                enough: min.met(healthy, members.len()),
            }
        };
        match &b.policy {
            Policy::Failover { min_healthy, .. } => b
                .pools
                .iter()
                .map(|&p| {
                    let pool = &self.cfg.pools[p];
                    status(&pool.name, &pool.members, *min_healthy)
                })
                .collect(),
            Policy::Topology {
                min_healthy,
                orders,
                labels,
                ..
            } => {
                // A rule's order is followed by the name's pools; one it named already is
                // not tried again.
                let mut seen: Vec<&str> = Vec::new();
                orders[group]
                    .iter()
                    .zip(&labels[group])
                    .filter(|(_, l)| {
                        let new = !seen.contains(&l.as_str());
                        seen.push(l);
                        new
                    })
                    .map(|(m, l)| status(l, m, *min_healthy))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    fn member_why(&self, i: usize, families: &[FamilyAnswer], now: Instant) -> MemberWhy {
        let (m, state) = (&self.cfg.members[i], &self.table.members[i]);
        let (h, last) = (&state.health, &state.last);
        let in_answer = families
            .iter()
            .flat_map(|f| &f.answers)
            .filter(|o| match &m.cname {
                Some(n) => o.names.contains(&n.to_string()),
                None => o.addresses.contains(&m.address),
            })
            .fold(0.0, |sum, o| sum + o.probability);
        let since = last
            .since
            .map(|s| format!(" for {:.0} s", now.duration_since(s).as_secs_f64()))
            .unwrap_or_default();
        let health = match h.state {
            State::Unknown => "not probed yet".to_string(),
            State::Down => format!(
                "down{since}: {}",
                last.error.as_deref().unwrap_or("probe failed")
            ),
            State::Up if h.suspect() => {
                format!("up{since}, but its last {} probes failed", h.streak)
            }
            State::Up => format!("up{since}"),
        };
        let health = match self.checks_words(i) {
            Some(w) => format!("{health} ({w})"),
            None => health,
        };
        let removed = state.region.filter(|&r| self.table.removed[r]);
        let why = if let Some(o) = state.override_.map(|k| &self.overrides[k]) {
            let what = if o.action == Action::Disable {
                "disabled"
            } else {
                "forced up"
            };
            format!(
                "{what} by hand ({}: {}); probes say {health}",
                o.target, o.reason
            )
        } else if let Some(w) = self.quorum_why(i, &health, now) {
            w
        } else if h.state != State::Up {
            health
        } else if state.damping.held(now) {
            let left = state
                .damping
                .held_until
                .map_or(0.0, |t| (t - now).as_secs_f64());
            format!(
                "{health}, but held down {left:.1} s more (flap damping: {} downs in the window)",
                state.damping.flaps()
            )
        } else if let Some(r) = removed {
            let region = &self.cfg.regions[r];
            format!(
                "{health}, but region {} is removed ({} of {} healthy; it returns at {}%)",
                region.name,
                self.region_healthy(r, now),
                region.members.len(),
                region.return_at
            )
        } else {
            health
        };
        MemberWhy {
            pool: self.cfg.pools[m.pool].name.clone(),
            member: m.name.clone(),
            address: m.cname.is_none().then_some(m.address),
            cname: m.cname.as_ref().map(|n| n.to_string()),
            region: m.region.clone(),
            eligible: self.answered(i, now),
            in_answer,
            why,
            views: self.views_of(i),
        }
    }
}

impl Engine {
    /// For a member with several checks: each one's verdict, how many are needed, and which
    /// decided ("checks: web up, tls down; 2 of 2 must be up: tls decided").
    fn checks_words(&self, i: usize) -> Option<String> {
        let (m, s) = (&self.cfg.members[i], &self.table.members[i]);
        if m.checks.len() < 2 {
            return None;
        }
        let names: Vec<&str> = m
            .checks
            .iter()
            .map(|&(c, _)| self.cfg.checks[c].name.as_str())
            .collect();
        let each: Vec<String> = names
            .iter()
            .zip(&s.checks)
            .map(|(n, c)| format!("{n} {}", c.health.state))
            .collect();
        let decided: Vec<&str> = names
            .iter()
            .zip(&s.checks)
            .filter(|(_, c)| c.health.state == s.health.state)
            .map(|(n, _)| *n)
            .collect();
        Some(format!(
            "checks: {}; {} of {} must be up: {} decided",
            each.join(", "),
            m.require,
            m.checks.len(),
            decided.join(" and ")
        ))
    }
}

/// "eu would need 140% of its capacity" for each pool over its capacity, if any.
fn overload_words(loads: &[super::super::capacity::PoolLoad]) -> Option<String> {
    let over: Vec<String> = loads
        .iter()
        .filter(|l| l.over)
        .map(|l| {
            format!(
                "{} would need {:.0}% of its capacity ({:.0}% of the traffic on a capacity of {}%)",
                l.pool,
                l.load / l.capacity.max(1) as f64 * 100.0,
                l.load,
                l.capacity
            )
        })
        .collect();
    (!over.is_empty()).then(|| over.join("; "))
}

/// Answers that differ only in order (rotations) as one set, with their probabilities added.
fn merge<T: Ord>(sets: Vec<(Vec<T>, f64)>) -> Vec<(Vec<T>, f64)> {
    let mut out: Vec<(Vec<T>, f64)> = Vec::new();
    for (mut a, p) in sets {
        a.sort();
        match out.iter_mut().find(|o| o.0 == a) {
            Some(o) => o.1 += p,
            None => out.push((a, p)),
        }
    }
    out.sort_by(|x, y| y.1.total_cmp(&x.1));
    out
}

/// How far each located pool of a name is from `at`: `eu 480 km, us 6,210 km`.
fn distances(at: (f64, f64), name_pools: &[usize], pools: &[crate::config::Pool]) -> String {
    let mut d: Vec<(f64, &str)> = name_pools
        .iter()
        .filter_map(|&p| {
            let loc = pools[p].location?;
            Some((
                crate::steer::geo::distance_km(at, loc),
                pools[p].name.as_str(),
            ))
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.iter()
        .map(|(km, name)| format!("{name} {km:.0} km"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The client group of `client` for name `b` (0: the default order), and for a topology
/// name which rule matched and with what scope, and where the `[geo]` databases place it.
fn topology_of(
    b: &BoundName,
    client: Option<Client>,
    geo: Option<&crate::steer::geo::Geo>,
    pools: &[crate::config::Pool],
) -> (usize, Option<TopologyMatch>) {
    match (&b.policy, client) {
        (Policy::Topology { table, rules, .. }, Some(c)) => {
            let (g, scope) = table.find(c);
            // Groups past the rules' are orders by distance (their rule is not kept).
            let rule = (g > 0 && g as usize <= *rules).then(|| g as usize - 1);
            let nearest = g as usize > *rules;
            let place = geo.map(|geo| match geo.lookup(c.addr) {
                Ok((p, len)) => {
                    let far = p.at().map(|at| distances(at, &b.pools, pools));
                    let far = far.filter(|d| !d.is_empty()).map(|d| format!("; {d}"));
                    format!(
                        "{} (its network: /{len}){}",
                        p.describe(),
                        far.unwrap_or_default()
                    )
                }
                Err(e) => format!("the databases cannot place it: {e}"),
            });
            (
                g as usize,
                Some(TopologyMatch {
                    rule,
                    scope,
                    place,
                    nearest,
                }),
            )
        }
        (Policy::Topology { .. }, None) => (
            0,
            Some(TopologyMatch {
                rule: None,
                scope: 0,
                place: None,
                nearest: false,
            }),
        ),
        _ => (0, None),
    }
}
