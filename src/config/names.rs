//! The [names] tables: which pools each name answers from, by which policy, with which TTLs,
//! and what it answers when every member is down.

use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name};

use super::file;
use super::topology::build_topology;
use super::{
    duration, key, AllDown, BoundName, Check, ConfigError, Ctx, Member, MinHealthy, Policy, Pool,
    Recovery,
};
use crate::config::recovery;

pub(super) fn names_of<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = it.map(|s| format!("{s:?}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The number of the pool called `name`: pools are numbered in name order (a `BTreeMap`).
pub(super) fn pool_index(pools: &[Pool], name: &str) -> Option<usize> {
    pools.binary_search_by(|p| p.name.as_str().cmp(name)).ok()
}

pub(super) fn build_names(
    cx: &Ctx,
    raw: &file::File,
    checks: &[Check],
    pools: &[Pool],
    members: &[Member],
    warnings: &mut Vec<String>,
    geo: Option<&crate::steer::geo::Geo>,
) -> Result<Vec<BoundName>, ConfigError> {
    let default_objective = match &raw.server.recover_within {
        Some(v) => Some(objective(cx, "server.recover_within", v)?),
        None => None,
    };
    let mut out: Vec<BoundName> = Vec::new();
    let mut bound = std::collections::HashSet::with_capacity(raw.names.len());
    // Each name on its own: an error in one is kept and the next is checked.
    let mut one = |n: &String, b: &file::BoundName| -> Result<BoundName, ConfigError> {
        let np = format!("names.{}", key(n));
        let (name, ids) = name_and_pools(cx, &np, n, b, pools, &mut bound)?;
        let all_down = build_all_down(cx, &np, b, pools)?;
        let fallback = match &all_down {
            AllDown::Fallback { pools, .. } => pools.as_slice(),
            _ => &[],
        };
        let (ttl, degraded_ttl, recovery) = ttls(
            cx,
            &np,
            b,
            default_objective,
            checks,
            pools,
            members,
            ids.iter().chain(fallback),
            warnings,
        )?;
        let mut policy = build_policy(cx, &np, b, pools, members, &ids, geo)?;
        let cname = one_kind(cx, &np, pools, members, &ids, fallback)?;
        if cname {
            cname_policy(cx, &np, b, &mut policy, &all_down)?;
        }
        let spill = build_spill(cx, &np, pools, &ids, &policy)?;
        warn_unused_capacity(cx, &np, pools, &ids, &policy, warnings);
        Ok(BoundName {
            name,
            pools: ids,
            policy,
            ttl,
            degraded_ttl,
            all_down,
            cname,
            spill,
            recovery,
        })
    };
    for (n, b) in &raw.names {
        if let Some(x) = cx.keep(one(n, b)) {
            out.push(x);
        }
    }
    Ok(out)
}

/// The name `n` bound by `[names.n]` (bound once only, in `bound`) and its pools' numbers.
fn name_and_pools(
    cx: &Ctx,
    np: &str,
    n: &str,
    b: &file::BoundName,
    pools: &[Pool],
    bound: &mut std::collections::HashSet<LowerName>,
) -> Result<(Name, Vec<usize>), ConfigError> {
    let name = super::absolute_name(n)
        .map_err(|e| cx.err(np, format!("{n:?} is not a domain name: {e}")))?;
    if !bound.insert(LowerName::new(&name)) {
        return Err(cx.err(np, format!("{name} is bound twice")));
    }
    if b.pools.is_empty() {
        return Err(cx.err(&format!("{np}.pools"), "list at least one pool"));
    }
    let ids = b
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            pool_index(pools, p).ok_or_else(|| {
                cx.err(
                    &format!("{np}.pools[{i}]"),
                    format!(
                        "no pool named {p:?}; defined are: {}",
                        names_of(pools.iter().map(|x| &x.name))
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name, ids))
}

/// Whether the name's pools (and fallback pools) hold domain names: all of them, or none.
fn one_kind(
    cx: &Ctx,
    np: &str,
    pools: &[Pool],
    members: &[Member],
    ids: &[usize],
    fallback: &[usize],
) -> Result<bool, ConfigError> {
    let cname = cname_pool(pools, members, ids[0]);
    for (i, &p) in ids.iter().chain(fallback).enumerate() {
        if cname_pool(pools, members, p) != cname {
            let at = if i < ids.len() {
                format!("{np}.pools[{i}]")
            } else {
                format!("{np}.fallback")
            };
            return Err(cx.err(&at, format!(
                "pool {:?} holds {} but pool {:?} holds {}: a name answers either addresses or one CNAME, not both",
                pools[p].name, holds(cname_pool(pools, members, p)), pools[ids[0]].name, holds(cname)
            )));
        }
    }
    Ok(cname)
}

/// Warns of a pool capacity that the name's policy does not use.
fn warn_unused_capacity(
    cx: &Ctx,
    np: &str,
    pools: &[Pool],
    ids: &[usize],
    policy: &Policy,
    warnings: &mut Vec<String>,
) {
    if matches!(policy, Policy::Weighted { .. } | Policy::All { .. }) {
        if let Some(&p) = ids.iter().find(|&&p| pools[p].capacity.is_some()) {
            warnings.push(format!(
                "{}: {np}: pool {:?} has a capacity, which a {} name does not use (capacity steers failover and topology names); remove it or change the policy",
                cx.source,
                pools[p].name,
                if matches!(policy, Policy::All { .. }) { "policy = \"all\"" } else { "weighted" },
            ));
        }
    }
}

/// A check with its detection bound, if there is one.
type Slowest<'c> = Option<(std::time::Duration, &'c Check)>;

/// The slowest check behind the pools `pool_ids`, for failures and for recoveries, with its
/// bound.
fn slowest<'a, 'c>(
    checks: &'c [Check],
    pools: &[Pool],
    members: &[Member],
    pool_ids: impl Iterator<Item = &'a usize>,
) -> (Slowest<'c>, Slowest<'c>) {
    let mut fall: Option<(std::time::Duration, &Check)> = None;
    let mut rise: Option<(std::time::Duration, &Check)> = None;
    for &p in pool_ids {
        for &m in &pools[p].members {
            for &(c, _) in &members[m].checks {
                let c = &checks[c];
                let f = recovery::detection(c, c.fall);
                let r = recovery::return_bound(c);
                if fall.is_none_or(|(d, _)| f > d) {
                    fall = Some((f, c));
                }
                if rise.is_none_or(|(d, _)| r > d) {
                    rise = Some((r, c));
                }
            }
        }
    }
    (fall, rise)
}

/// Warns when a TTL set by hand breaks the name's recovery objective `goal`.
fn warn_broken_objective(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    rec: &Recovery,
    goal: std::time::Duration,
    (ttl, degraded_ttl): (u32, u32),
    warnings: &mut Vec<String>,
) {
    let goal_words = humantime::format_duration(goal);
    let secs = |d: std::time::Duration| format!("{:.1}s", d.as_secs_f64());
    let outage = recovery::worst_case(rec.fall, ttl);
    if b.ttl.is_some() && outage > goal {
        warnings.push(format!(
            "{}: {np}.ttl {ttl} breaks recover_within {goal_words}: clients may be sent to a failed member for {} (detection {} + ttl {ttl}s + 1s); {} would keep it",
            cx.source, secs(outage), secs(rec.fall),
            recovery::derive_ttl(goal, rec.fall).map_or("no ttl".into(), |t| format!("ttl {t}"))
        ));
    }
    let back = recovery::worst_case(rec.rise, degraded_ttl);
    if b.degraded_ttl.is_some() && back > goal {
        warnings.push(format!(
            "{}: {np}.degraded_ttl {degraded_ttl} breaks recover_within {goal_words}: traffic may take {} to return after a recovery (detection {} + degraded_ttl {degraded_ttl}s + 1s)",
            cx.source, secs(back), secs(rec.rise)
        ));
    }
}

/// A `recover_within` value: a duration of at least one second.
fn objective(cx: &Ctx, at: &str, v: &String) -> Result<std::time::Duration, ConfigError> {
    let d = duration(cx, at, Some(v), std::time::Duration::ZERO)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(cx.err(at, format!("{v:?} is too short: at least 1s")));
    }
    Ok(d)
}

/// The name's TTL and degraded TTL, and its recovery objective with the detection bounds of
/// the checks behind its pools (`pool_ids`, fallback pools included). With an objective, the
/// TTLs not set are derived from it; a set one that breaks it is kept, with a warning.
#[allow(clippy::too_many_arguments)]
fn ttls<'a>(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    default_objective: Option<std::time::Duration>,
    checks: &[Check],
    pools: &[Pool],
    members: &[Member],
    pool_ids: impl Iterator<Item = &'a usize>,
    warnings: &mut Vec<String>,
) -> Result<(u32, u32, Recovery), ConfigError> {
    let (fall, rise) = slowest(checks, pools, members, pool_ids);
    let (objective_at, objective) = match &b.recover_within {
        Some(v) => {
            let at = format!("{np}.recover_within");
            (at.clone(), Some(objective(cx, &at, v)?))
        }
        None => ("server.recover_within".to_string(), default_objective),
    };
    let mut rec = Recovery {
        objective,
        fall: fall.map_or_else(Default::default, |(d, _)| d),
        rise: rise.map_or_else(Default::default, |(d, _)| d),
        ttl_from: if b.ttl.is_some() { "set" } else { "default" },
    };
    let mut derived = (None, None);
    if let (Some(goal), Some((f, fc)), Some((r, rc))) = (objective, fall, rise) {
        let goal_words = humantime::format_duration(goal);
        let unmet = |c: &Check, d, n, which: &str| {
            let how = recovery::formula(c, n, which);
            let what = if d >= goal {
                "≥"
            } else {
                "leaves no room within"
            };
            cx.err(&objective_at, format!(
                "{} of check {:?}: {how} {what} recover_within {goal_words} (with 1s for a resolver's rounding and a TTL of at least 1s); lower interval or {which}, or raise recover_within",
                if which == "fall" { "detecting a failure" } else { "detecting a recovery" },
                c.name
            ))
        };
        let ttl = recovery::derive_ttl(goal, f).ok_or_else(|| unmet(fc, f, fc.fall, "fall"))?;
        let back = recovery::derive_ttl(goal, r).ok_or_else(|| unmet(rc, r, rc.rise, "rise"))?;
        derived = (Some(ttl), Some(back));
    }
    let ttl = match (b.ttl, derived.0) {
        (Some(t), _) => t,
        (None, Some(t)) => {
            rec.ttl_from = "derived";
            t
        }
        (None, None) => 30,
    };
    if !(1..=86400).contains(&ttl) {
        return Err(cx.err(
            &format!("{np}.ttl"),
            format!("{ttl} is out of range: 1 to 86400 seconds"),
        ));
    }
    let degraded_ttl = match (b.degraded_ttl, derived.1) {
        (Some(t), _) => t,
        // Short whatever room the objective leaves: while a member is down, resolvers ask
        // again soon, so that traffic returns as soon as it recovers.
        (None, Some(t)) => t.min(ttl).min(recovery::DEGRADED_TTL),
        (None, None) => ttl.min(recovery::DEGRADED_TTL),
    };
    if degraded_ttl == 0 || degraded_ttl > ttl {
        return Err(cx.err(
            &format!("{np}.degraded_ttl"),
            format!("{degraded_ttl} is out of range: 1 to ttl ({ttl}) seconds"),
        ));
    }
    if let Some(goal) = objective {
        warn_broken_objective(cx, np, b, &rec, goal, (ttl, degraded_ttl), warnings);
    }
    Ok((ttl, degraded_ttl, rec))
}

/// The client groups' pool orders of a name whose pools all have a capacity; none when none
/// has one. Some but not all is an error, and so is a topology order that names a region
/// (a region has no capacity of its own).
fn build_spill(
    cx: &Ctx,
    np: &str,
    pools: &[Pool],
    ids: &[usize],
    policy: &Policy,
) -> Result<Option<Vec<Vec<usize>>>, ConfigError> {
    // Capacity steers failed pools' clients; a weighted or all name spreads them already
    // (and `build_names` warns of a capacity given to one).
    if !matches!(policy, Policy::Failover { .. } | Policy::Topology { .. }) {
        return Ok(None);
    }
    let with: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|&p| pools[p].capacity.is_some())
        .collect();
    if with.is_empty() {
        return Ok(None);
    }
    let at = format!("{np}.pools");
    if let Some(&p) = ids.iter().find(|&&p| pools[p].capacity.is_none()) {
        return Err(cx.err(&at, format!(
            "pool {:?} has a capacity but pool {:?} has none: give every pool of the name a capacity (traffic spills by spare capacity), or none",
            pools[with[0]].name, pools[p].name
        )));
    }
    match policy {
        Policy::Failover { .. } => Ok(Some(vec![ids.to_vec()])),
        Policy::Topology { labels, .. } => {
            // Every group's order (the default, each rule's, each order by distance), by
            // pool: a region in a rule's order has no known capacity.
            let mut orders = Vec::with_capacity(labels.len());
            for (g, names) in labels.iter().enumerate() {
                let mut order: Vec<usize> = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    match ids.iter().find(|&&p| &pools[p].name == name) {
                        Some(&p) if !order.contains(&p) => order.push(p),
                        Some(_) => {}
                        None => return Err(cx.err(&format!("{np}.topology[{}].order[{i}]", g - 1), format!(
                            "{name:?} is a region, but this name's pools have capacities: order its clients by pool, whose capacity is known"
                        ))),
                    }
                }
                orders.push(order);
            }
            Ok(Some(orders))
        }
        _ => Ok(None),
    }
}

/// Whether pool `p` holds domain names (a pool holds only one kind).
fn cname_pool(pools: &[Pool], members: &[Member], p: usize) -> bool {
    pools[p]
        .members
        .first()
        .is_some_and(|&i| members[i].cname.is_some())
}

fn holds(cname: bool) -> &'static str {
    if cname {
        "domain names"
    } else {
        "addresses"
    }
}

/// A name answering a CNAME answers one target: more than one answer is an error, and the
/// policy's count is 1. A fallback to fixed addresses is an error too.
fn cname_policy(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    policy: &mut Policy,
    all_down: &AllDown,
) -> Result<(), ConfigError> {
    for (k, v) in [("max_answers", b.max_answers), ("answers", b.answers)] {
        if v.is_some_and(|v| v > 1) {
            return Err(cx.err(
                &format!("{np}.{k}"),
                "this name's members are domain names, and a CNAME answer holds one name: 1 at most",
            ));
        }
    }
    if let AllDown::Fallback { addresses, .. } = all_down {
        if let Some(a) = addresses.first() {
            return Err(cx.err(
                &format!("{np}.fallback"),
                format!("{a} is an address, but this name's members are domain names (it answers a CNAME): fall back to a pool of domain names"),
            ));
        }
    }
    match policy {
        Policy::All { max_answers }
        | Policy::Failover { max_answers, .. }
        | Policy::Topology { max_answers, .. } => *max_answers = 1,
        Policy::Weighted { answers } => *answers = 1,
    }
    Ok(())
}

/// An answer count (`max_answers`, `answers`) of name `np`: `default` when not given, 1 to 64.
fn answer_count(
    cx: &Ctx,
    np: &str,
    k: &str,
    v: Option<u32>,
    default: u32,
) -> Result<usize, ConfigError> {
    let v = v.unwrap_or(default);
    if (1..=64).contains(&v) {
        Ok(v as usize)
    } else {
        Err(cx.err(
            &format!("{np}.{k}"),
            format!("{v} is out of range: 1 to 64"),
        ))
    }
}

fn build_policy(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    pools: &[Pool],
    members: &[Member],
    ids: &[usize],
    geo: Option<&crate::steer::geo::Geo>,
) -> Result<Policy, ConfigError> {
    use file::PolicyKind as K;
    let kind = b.policy.unwrap_or(K::All);
    let count = |k: &str, v: Option<u32>, default: u32| answer_count(cx, np, k, v, default);
    let only = |k: &str, set: bool, kinds: &str| {
        if set {
            Err(cx.err(
                &format!("{np}.{k}"),
                format!("applies to policy {kinds} only"),
            ))
        } else {
            Ok(())
        }
    };
    if kind != K::Weighted {
        only("answers", b.answers.is_some(), "\"weighted\"")?;
    }
    if !matches!(kind, K::Failover | K::Topology) {
        only(
            "min_healthy",
            b.min_healthy.is_some(),
            "\"failover\" and \"topology\"",
        )?;
    }
    if kind != K::Topology {
        only("topology", b.topology.is_some(), "\"topology\"")?;
    }
    Ok(match kind {
        K::All => Policy::All {
            max_answers: count("max_answers", b.max_answers, 8)?,
        },
        K::Weighted => {
            only(
                "max_answers",
                b.max_answers.is_some(),
                "\"all\" and \"failover\" (weighted returns `answers`)",
            )?;
            Policy::Weighted {
                answers: count("answers", b.answers, 1)?,
            }
        }
        K::Failover | K::Topology => {
            let min_healthy = build_min_healthy(cx, np, b)?;
            let max_answers = count("max_answers", b.max_answers, 8)?;
            if kind == K::Failover {
                Policy::Failover {
                    min_healthy,
                    max_answers,
                }
            } else {
                let (orders, labels, table) = build_topology(cx, np, b, pools, members, ids, geo)?;
                Policy::Topology {
                    min_healthy,
                    max_answers,
                    orders,
                    labels,
                    table,
                    rules: b.topology.as_ref().map_or(0, Vec::len),
                }
            }
        }
    })
}

fn build_all_down(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    pools: &[Pool],
) -> Result<AllDown, ConfigError> {
    use file::AllDownKind as K;
    let kind = b.when_all_down.unwrap_or(K::All);
    let fp = format!("{np}.fallback");
    if kind != K::Fallback {
        if b.fallback.is_some() {
            return Err(cx.err(&fp, "applies to when_all_down = \"fallback\" only"));
        }
        return Ok(match kind {
            K::All => AllDown::All,
            K::Nodata => AllDown::NoData,
            _ => AllDown::ServFail,
        });
    }
    let list = b.fallback.as_deref().unwrap_or_default();
    if list.is_empty() {
        return Err(cx.err(
            &fp,
            "when_all_down = \"fallback\" needs a list of addresses or pool names",
        ));
    }
    let (mut addresses, mut fpools) = (Vec::new(), Vec::new());
    for (i, f) in list.iter().enumerate() {
        if let Ok(a) = f.parse::<IpAddr>() {
            addresses.push(a);
        } else if let Some(p) = pool_index(pools, f) {
            fpools.push(p);
        } else {
            return Err(cx.err(
                &format!("{fp}[{i}]"),
                format!(
                    "{f:?} is neither an IP address nor a pool; pools are: {}",
                    names_of(pools.iter().map(|x| &x.name))
                ),
            ));
        }
    }
    Ok(AllDown::Fallback {
        addresses,
        pools: fpools,
    })
}

/// `min_healthy` of a failover or topology name: a count (default 1) or a percentage.
fn build_min_healthy(cx: &Ctx, np: &str, b: &file::BoundName) -> Result<MinHealthy, ConfigError> {
    let k = format!("{np}.min_healthy");
    Ok(match &b.min_healthy {
        None => MinHealthy::Count(1),
        Some(file::MinHealthy::Count(c)) if (1..=10_000).contains(c) => {
            MinHealthy::Count(*c as usize)
        }
        Some(file::MinHealthy::Text(t)) => match t
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            Some(p) if (1..=100).contains(&p) => MinHealthy::Percent(p),
            _ => {
                return Err(cx.err(
                    &k,
                    format!("{t:?} is not a count or a percentage such as \"50%\""),
                ))
            }
        },
        Some(_) => return Err(cx.err(&k, "a count must be 1 to 10000")),
    })
}
