//! What the engine shows through the admin API: every member, name, region and override.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::rr::LowerName;
use serde::Serialize;

use super::super::Engine;
use crate::base::state::{now_secs, Action, Override};
use crate::config::AllDown;
use crate::steer::health::State;

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
    /// What the member answers: its address, or (`cname`) a domain name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    pub probe_target: String,
    pub state: State,
    /// Up, but failing: on its way down if the failures continue.
    pub suspect: bool,
    /// Consecutive probe results that disagree with `state`.
    pub streak: u32,
    pub since_secs: Option<f64>,
    pub last_ok: Option<bool>,
    pub last_error: Option<String>,
    /// For a member that is a domain name: why resolving it fails (which resolvers, what
    /// error, and whether the addresses last resolved are probed meanwhile), while it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution_error: Option<String>,
    /// For a member that is a domain name: where the addresses last probed came from,
    /// "gtmd's own zones" (resolved locally, never through `probe.resolvers`) or which
    /// resolvers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
    /// For a member that is a domain name: the addresses it resolved to last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<IpAddr>,
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
    /// In a cluster: each live instance's view, and whether it is on the side that decided
    /// (`state` above is this instance's own view).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<super::ViewStatus>,
    /// With several checks (`checks` on its pool): each check's own verdict, and how many
    /// must be up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require: Option<usize>,
}

/// One check of a member with several.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub check: String,
    pub probe_target: String,
    pub state: State,
    pub streak: u32,
    pub last_ok: Option<bool>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<f64>,
    pub probes: u64,
    /// Whether this check is on the side that decided the member's state (a down check of
    /// a down member, an up check of an up one).
    pub decided: bool,
}

/// A pool-bound name's current answer, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct NameStatus {
    pub name: String,
    /// Every address the name may answer now (a weighted name answers some of them per query),
    /// or for a name whose members are domain names, every CNAME target it may answer.
    pub answer: Vec<String>,
    /// The TTL answered now: `degraded_ttl` while `degraded`.
    pub ttl: u32,
    /// Some member behind the name is down or failing.
    pub degraded: bool,
    /// No member behind the name is healthy (for an address family that has members).
    pub all_down: bool,
    /// All down, and answering every member (`when_all_down = "all"`).
    pub fail_open: bool,
    pub policy: &'static str,
    /// For clients no topology rule matches: how likely each answer is in a response.
    pub shares: Vec<AnswerShare>,
    /// How fast clients recover from a failure and what the TTL costs resolvers.
    pub recovery: super::recovery::RecoveryReport,
}

/// How likely one address (or CNAME target) is in a name's answer.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerShare {
    pub rtype: String,
    pub answer: String,
    pub share: f64,
}

/// A pool and how many of its members are healthy.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub members: usize,
    /// Members up and not held down.
    pub healthy: usize,
    /// Members in answers now.
    pub answered: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
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
    /// 1 for the configuration read at start, plus one per reload that took effect.
    pub config_generation: u64,
    pub members: Vec<MemberStatus>,
    pub names: Vec<NameStatus>,
    pub pools: Vec<PoolStatus>,
    pub regions: Vec<RegionStatus>,
    pub overrides: Vec<Override>,
    /// Set while the state file that was found at start cannot be read: what happened and
    /// where the overrides came from instead.
    pub state_file_problem: Option<String>,
    /// Every zone's serial, the last NOTIFY to each secondary and the last transfer served
    /// to each client.
    pub zones: Vec<ZoneStatus>,
    /// In a cluster: this instance's link to etcd, the quorum, the leader and every live
    /// instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::ClusterStatus>,
    /// The last changes of state (the alerts, sent or not), newest first.
    pub events: Vec<crate::base::alert::Alert>,
    /// The `[geo]` databases in use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub geo: Vec<GeoStatus>,
}

/// One `[geo]` database as read at the last configuration build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GeoStatus {
    pub path: String,
    /// Its metadata's `database_type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was built (`build_epoch`, Unix seconds).
    pub built: u64,
}

/// One zone as secondaries see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ZoneStatus {
    pub zone: String,
    pub serial: u32,
    /// Versions of the zone's live answers kept for IXFR.
    pub journal: usize,
    #[serde(flatten)]
    pub secondaries: crate::dns::secondaries::ZoneSecondaries,
}

impl Engine {
    pub(in crate::engine) fn status(&self) -> Status {
        let snap = self.published.load();
        let now = Instant::now();
        let members = (0..self.cfg.members.len())
            .map(|i| self.member_status(i, now))
            .collect();
        let names = self
            .cfg
            .names
            .iter()
            .map(|b| name_status(b, snap.bound.get(&LowerName::new(&b.name))))
            .collect();
        let pools = self
            .cfg
            .pools
            .iter()
            .map(|p| PoolStatus {
                name: p.name.clone(),
                members: p.members.len(),
                healthy: self.healthy_of(&p.members, now),
                answered: p.members.iter().filter(|&&i| self.answered(i, now)).count(),
                capacity: p.capacity,
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
                removed: self.table.removed[ri],
            })
            .collect();
        let mut log = self.secondaries.get();
        let zones = self
            .zones
            .iter()
            .enumerate()
            .map(|(zi, z)| ZoneStatus {
                zone: z.origin.to_string(),
                serial: snap.serial(zi).unwrap_or(0),
                journal: snap.versions.get(zi).map_or(0, |v| v.journal.len()),
                secondaries: log.remove(&z.origin.to_string()).unwrap_or_default(),
            })
            .collect();
        Status {
            zones,
            ready: snap.ready,
            generation: snap.generation,
            config_generation: self.config_generation,
            members,
            names,
            pools,
            regions,
            overrides: self.overrides.clone(),
            state_file_problem: self.state_problem.clone(),
            cluster: self.cluster_status(),
            events: self.alerts.recent(),
            geo: self.geo_status(),
        }
    }

    fn geo_status(&self) -> Vec<GeoStatus> {
        let Some(g) = &self.cfg.geo else {
            return Vec::new();
        };
        g.databases
            .iter()
            .map(|d| GeoStatus {
                path: d.path.display().to_string(),
                kind: d.kind.clone(),
                built: d.built,
            })
            .collect()
    }

    fn member_status(&self, i: usize, now: Instant) -> MemberStatus {
        let (m, l) = (&self.cfg.members[i], &self.table.members[i].last);
        MemberStatus {
            pool: self.cfg.pools[m.pool].name.clone(),
            name: m.name.clone(),
            address: m.cname.is_none().then_some(m.address),
            cname: m.cname.as_ref().map(|n| n.to_string()),
            probe_target: m.checks[0].1.to_string(),
            state: self.table.members[i].health.state,
            suspect: self.table.members[i].health.suspect(),
            streak: self.table.members[i].health.streak,
            since_secs: l.since.map(|s| now.duration_since(s).as_secs_f64()),
            last_ok: l.ok,
            last_error: l.error.clone(),
            resolution_error: l.resolution.clone(),
            resolved_from: l.resolved_from.clone(),
            resolved: l.resolved.clone().unwrap_or_default(),
            last_latency_ms: l.latency.map(|d| d.as_secs_f64() * 1000.0),
            probes: l.probes,
            answered: self.answered(i, now),
            override_: self.table.members[i].override_.map(|k| {
                let o = &self.overrides[k];
                OverrideStatus {
                    target: o.target.to_string(),
                    action: o.action,
                    reason: o.reason.clone(),
                    ends_in_secs: o.until.map(|u| u.saturating_sub(now_secs())),
                }
            }),
            held_down_secs: self.table.members[i]
                .damping
                .held_until
                .filter(|&t| t > now)
                .map(|t| (t - now).as_secs_f64()),
            hold_down_secs: self.table.members[i].damping.hold.as_secs_f64(),
            flaps: self.table.members[i].damping.flaps(),
            views: self.views_of(i),
            checks: self.checks_of(i),
            require: (m.checks.len() > 1).then_some(m.require),
        }
    }

    /// Each check's verdict of member `i`, if it has several.
    fn checks_of(&self, i: usize) -> Vec<CheckStatus> {
        let (m, s) = (&self.cfg.members[i], &self.table.members[i]);
        if m.checks.len() < 2 {
            return Vec::new();
        }
        m.checks
            .iter()
            .zip(&s.checks)
            .map(|((c, target), cs)| CheckStatus {
                check: self.cfg.checks[*c].name.clone(),
                probe_target: target.to_string(),
                state: cs.health.state,
                streak: cs.health.streak,
                last_ok: cs.last.ok,
                last_error: cs.last.error.clone(),
                last_latency_ms: cs.last.latency.map(|d| d.as_secs_f64() * 1000.0),
                probes: cs.last.probes,
                decided: cs.health.state == s.health.state,
            })
            .collect()
    }
}

/// A bound name as published: every address it may answer, and its TTL in force.
fn name_status(
    b: &crate::config::BoundName,
    e: Option<&crate::dns::snapshot::Bound>,
) -> NameStatus {
    let mut answer: Vec<String> = Vec::new();
    for (_, c) in e.iter().flat_map(|e| e.choices()) {
        for r in c.sets.iter().flatten() {
            let a = match &r.data {
                hickory_proto::rr::RData::CNAME(n) => n.0.to_string(),
                d => match d.ip_addr() {
                    Some(ip) => ip.to_string(),
                    None => continue,
                },
            };
            if !answer.contains(&a) {
                answer.push(a);
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
        policy: b.policy.kind(),
        shares: answer_shares(e),
        recovery: super::recovery::report(b, e.and_then(|e| e.resolvers.as_deref())),
    }
}

/// The share of responses each answer is in, per type, for unmatched clients.
pub(in crate::engine) fn answer_shares(
    e: Option<&crate::dns::snapshot::Bound>,
) -> Vec<AnswerShare> {
    let mut out: Vec<AnswerShare> = Vec::new();
    for (t, c) in e.iter().flat_map(|e| e.choices()) {
        for (set, p) in c.odds() {
            for r in set {
                let answer = match &r.data {
                    hickory_proto::rr::RData::CNAME(n) => n.0.to_string(),
                    d => match d.ip_addr() {
                        Some(ip) => ip.to_string(),
                        None => continue,
                    },
                };
                match out.iter_mut().find(|s| s.answer == answer) {
                    Some(s) => s.share += p,
                    None => out.push(AnswerShare {
                        rtype: t.to_string(),
                        answer,
                        share: p,
                    }),
                }
            }
        }
    }
    out
}
