//! The [pools] tables and their members, and [regions].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::file;
use super::names::names_of;
use hickory_proto::rr::Name;

use super::{key, Check, CheckKind, ConfigError, Ctx, Member, Pool, ProbeAt, Region};

pub(super) fn build_pools(
    cx: &Ctx,
    raw: &file::File,
    checks: &[Check],
) -> Result<(Vec<Pool>, Vec<Member>), ConfigError> {
    let mut pools = Vec::with_capacity(raw.pools.len());
    let mut members: Vec<Member> =
        Vec::with_capacity(raw.pools.values().map(|p| p.members.len()).sum());
    for (pname, p) in &raw.pools {
        let pp = format!("pools.{}", key(pname));
        if pname.contains('/') {
            return Err(cx.err(&pp, format!("pool name {pname:?} holds a '/': overrides, alerts and the history name a member POOL/MEMBER")));
        }
        let (own, require) = pool_checks(cx, &pp, p, checks)?;
        let check = own[0];
        if p.members.is_empty() {
            return Err(cx.err(&format!("{pp}.members"), "a pool needs at least one member"));
        }
        let mut ids = Vec::with_capacity(p.members.len());
        let mut seen = HashSet::with_capacity(p.members.len());
        for (i, m) in p.members.iter().enumerate() {
            let mp = format!("{pp}.members[{i}]");
            let (mut member, at) = build_member(cx, &mp, m)?;
            member.checks = own
                .iter()
                .map(|&c| {
                    let port = probe_port(m, &checks[c]);
                    let at = match &at {
                        Ok(ip) => ProbeAt::Addr(SocketAddr::new(*ip, port)),
                        Err(name) => ProbeAt::Resolve(name.clone(), port),
                    };
                    (c, at)
                })
                .collect();
            member.require = require;
            if let Some(&first) = ids.first() {
                let first: &Member = &members[first];
                if first.cname.is_some() != member.cname.is_some() {
                    let (a, n) = if member.cname.is_some() {
                        (first.answer(), member.answer())
                    } else {
                        (member.answer(), first.answer())
                    };
                    return Err(cx.err(&mp, format!("pool {pname:?} mixes an address ({a}) and a domain name ({n}); a name answers either addresses or one CNAME, so give them pools of their own")));
                }
            }
            if member.name.contains('/') {
                return Err(cx.err(&format!("{mp}.name"), format!("member name {:?} holds a '/': overrides, alerts and the history name a member POOL/MEMBER", member.name)));
            }
            if !seen.insert(member_key(m)) {
                return Err(cx.err(&format!("{mp}.name"), format!("{:?} is already a member of pool {pname:?}; member names must be unique in a pool", member.name)));
            }
            ids.push(members.len());
            members.push(Member {
                pool: pools.len(),
                check,
                region: member.region.or_else(|| p.region.clone()),
                ..member
            });
        }
        let (weight, location) = pool_numbers(cx, &pp, p)?;
        pools.push(Pool {
            name: pname.clone(),
            check,
            weight,
            capacity: p.capacity,
            members: ids,
            location,
        });
    }
    Ok((pools, members))
}

/// A pool's weight (default 1) and location, checked with its capacity.
fn pool_numbers(
    cx: &Ctx,
    pp: &str,
    p: &file::Pool,
) -> Result<(u32, Option<(f64, f64)>), ConfigError> {
    let weight = p.weight.unwrap_or(1);
    if weight == 0 || weight > 1_000_000 {
        return Err(cx.err(&format!("{pp}.weight"), "must be 1 to 1000000"));
    }
    if p.capacity.is_some_and(|c| c == 0 || c > 1_000_000) {
        return Err(cx.err(
            &format!("{pp}.capacity"),
            "must be 1 to 1000000 (percent of a name's traffic the pool can carry)",
        ));
    }
    let location = p.location.map(|[la, lo]| (la, lo));
    let off =
        |(la, lo): (f64, f64)| !(-90.0..=90.0).contains(&la) || !(-180.0..=180.0).contains(&lo);
    if location.is_some_and(off) {
        return Err(cx.err(
            &format!("{pp}.location"),
            "must be [latitude, longitude] in degrees (-90 to 90, -180 to 180)",
        ));
    }
    Ok((weight, location))
}

pub(super) fn build_regions(
    cx: &Ctx,
    raw: &file::File,
    members: &[Member],
) -> Result<Vec<Region>, ConfigError> {
    let percent = |path: &str, t: &str| {
        t.strip_suffix('%')
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| cx.err(path, format!("{t:?} is not a percentage such as \"50%\"")))
    };
    // Each region's members in one pass, not one pass over every member per region.
    let mut by_region: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in members.iter().enumerate() {
        if let Some(r) = m.region.as_deref() {
            by_region.entry(r).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (name, r) in &raw.regions {
        let rp = format!("regions.{}", key(name));
        let remove_below = percent(&format!("{rp}.remove_below"), &r.remove_below)?;
        let return_at = match &r.return_at {
            None => (remove_below + 25).min(100),
            Some(t) => {
                let path = format!("{rp}.return_at");
                let v = percent(&path, t)?;
                if v < remove_below {
                    return Err(cx.err(
                        &path,
                        format!("must be at least remove_below ({remove_below}%)"),
                    ));
                }
                v
            }
        };
        let ids = by_region.remove(name.as_str()).unwrap_or_default();
        if ids.is_empty() {
            return Err(cx.err(&rp, format!("no member or pool has region = {name:?}")));
        }
        out.push(Region {
            name: name.clone(),
            remove_below,
            return_at,
            members: ids,
        });
    }
    Ok(out)
}

/// A pool's checks (`check`, or `checks` with `require`) as indices, and how many must pass.
fn pool_checks(
    cx: &Ctx,
    pp: &str,
    p: &file::Pool,
    checks: &[Check],
) -> Result<(Vec<usize>, usize), ConfigError> {
    let names: Vec<&String> = match (&p.check, &p.checks) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) if !cs.is_empty() => cs.iter().collect(),
        (Some(_), Some(_)) => {
            return Err(cx.err(&format!("{pp}.checks"), "give check or checks, not both"))
        }
        _ => return Err(cx.err(pp, "a pool needs a check (or checks)")),
    };
    let mut own = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let at = match &p.checks {
            Some(_) => format!("{pp}.checks[{i}]"),
            None => format!("{pp}.check"),
        };
        let c = checks.iter().position(|c| &c.name == *n).ok_or_else(|| {
            cx.err(
                &at,
                format!(
                    "no check named {n:?}; defined are: {}",
                    names_of(checks.iter().map(|c| &c.name))
                ),
            )
        })?;
        if own.contains(&c) {
            return Err(cx.err(&at, format!("{n:?} is listed twice")));
        }
        own.push(c);
    }
    let n = own.len();
    let require = match &p.require {
        None => n,
        Some(file::Require::Word(w)) if w == "all" => n,
        Some(file::Require::Word(w)) if w == "any" => 1,
        Some(file::Require::Count(c)) if (1..=n as u32).contains(c) => *c as usize,
        Some(other) => {
            let v = match other {
                file::Require::Count(c) => c.to_string(),
                file::Require::Word(w) => format!("{w:?}"),
            };
            return Err(cx.err(
                &format!("{pp}.require"),
                format!("{v} is not \"all\", \"any\" or a count from 1 to {n}"),
            ));
        }
    };
    Ok((own, require))
}

/// What a member is called in its pool: its `name`, else its address or domain name as
/// written (the one [`build_member`] accepted).
fn member_key(m: &file::Member) -> &str {
    m.name
        .as_deref()
        .or(m.address.as_deref())
        .or(m.cname.as_deref())
        .unwrap_or_default()
}

/// The port `check` probes member `m` at: its `probe_port`, or the check's own.
fn probe_port(m: &file::Member, check: &Check) -> u16 {
    m.probe_port.unwrap_or(match &check.kind {
        CheckKind::Tcp { port } => *port,
        CheckKind::Http(h) => h.port,
        CheckKind::Icmp(_) => 0,
    })
}

/// Why `a` cannot be a member's address (answers must be unicast), if it cannot.
fn not_unicast(a: IpAddr) -> Option<&'static str> {
    match a.to_canonical() {
        a if a.is_unspecified() => Some("the unspecified address"),
        a if a.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    }
}

/// A member's `address`: a unicast IPv4 or IPv6 address.
fn member_address(cx: &Ctx, mp: &str, a: &str) -> Result<IpAddr, ConfigError> {
    let address: IpAddr = a.parse().map_err(|_| {
        let hint = if a.parse::<f64>().is_err() && a.contains('.') {
            "; a member that is a domain name is written cname = \"...\""
        } else {
            ""
        };
        cx.err(
            &format!("{mp}.address"),
            format!("{a:?} is not an IPv4 or IPv6 address{hint}"),
        )
    })?;
    if let Some(why) = not_unicast(address) {
        return Err(cx.err(
            &format!("{mp}.address"),
            format!("{address} is {why}: a client cannot reach a service there"),
        ));
    }
    Ok(address)
}

/// A member's `cname`: a domain name (absolute whether or not written with the dot).
fn member_name(cx: &Ctx, mp: &str, n: &str) -> Result<Name, ConfigError> {
    super::absolute_name(n)
        .ok()
        .filter(|x| x.num_labels() > 0 && n.parse::<IpAddr>().is_err())
        .ok_or_else(|| {
            cx.err(
                &format!("{mp}.cname"),
                format!("{n:?} is not a domain name"),
            )
        })
}

/// One member as written (its pool fills in `pool`, `check`, `checks` and a missing
/// `region`), with where it is probed: an address, or a name to resolve.
fn build_member(
    cx: &Ctx,
    mp: &str,
    m: &file::Member,
) -> Result<(Member, Result<IpAddr, Name>), ConfigError> {
    let (address, cname, written) = match (&m.address, &m.cname) {
        (Some(a), None) => (member_address(cx, mp, a)?, None, a),
        (None, Some(n)) => (IpAddr::from([0, 0, 0, 0]), Some(member_name(cx, mp, n)?), n),
        (Some(_), Some(_)) => {
            return Err(cx.err(
                &format!("{mp}.cname"),
                "give address or cname, not both: a member is answered as one or the other",
            ))
        }
        (None, None) => {
            return Err(cx.err(
                mp,
                "a member needs an address (or a cname: a domain name to answer)",
            ))
        }
    };
    let at = match (&m.probe_address, &cname) {
        (None, None) => Ok(address),
        (None, Some(n)) => Err(n.clone()),
        (Some(a), _) => Ok(a.parse().map_err(|_| {
            cx.err(
                &format!("{mp}.probe_address"),
                format!("{a:?} is not an IP address"),
            )
        })?),
    };
    let name = m.name.clone().unwrap_or_else(|| written.clone());
    let weight = m.weight.unwrap_or(1);
    if weight == 0 || weight > 1_000_000 {
        return Err(cx.err(&format!("{mp}.weight"), "must be 1 to 1000000"));
    }
    let member = Member {
        pool: 0,
        name,
        address,
        cname,
        weight,
        region: m.region.clone(),
        check: 0,
        checks: Vec::new(),
        require: 1,
    };
    Ok((member, at))
}
