//! Turning the file as written ([`super::file`]) into the checked [`Config`]: every value
//! checked, every default applied, every error pointing at its TOML path and line.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name};

use super::file::{self, CheckType, StatusSpec};
use super::{
    duration, key, AdminLimits, AlertConfig, AllDown, BoundName, Check, CheckKind, Config,
    ConfigError, Ctx, HttpCheck, Member, MinHealthy, Policy, Pool, Region, RrlConfig,
};
use crate::config::WireSettings;

pub(super) fn build(cx: &Ctx, raw: file::File, base: &Path) -> Result<Config, ConfigError> {
    let listen = raw
        .server
        .listen
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1:5353".into()]);
    if listen.is_empty() {
        return Err(cx.err(
            "server.listen",
            "needs at least one address such as \"0.0.0.0:53\"",
        ));
    }
    let listen = listen
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<SocketAddr>().map_err(|_| {
                cx.err(
                    &format!("server.listen[{i}]"),
                    format!(
                        "{a:?} is not an address:port such as \"127.0.0.1:53\" or \"[::1]:53\""
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let zones_dir = base.join(raw.server.zones_dir.as_deref().unwrap_or("zones"));
    let udp_payload = raw.server.udp_payload.unwrap_or(1232);
    if !(512..=4096).contains(&udp_payload) {
        return Err(cx.err(
            "server.udp_payload",
            format!("{udp_payload} is out of range: 512 to 4096 bytes"),
        ));
    }
    let allow_transfer = raw
        .server
        .allow_transfer
        .clone()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_net(s).ok_or_else(|| {
                cx.err(
                    &format!("server.allow_transfer[{i}]"),
                    format!("{s:?} is not an address or CIDR prefix"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tcp_idle_timeout = duration(
        cx,
        "server.tcp_idle_timeout",
        raw.server.tcp_idle_timeout.as_ref(),
        Duration::from_secs(10),
    )?;
    let tcp_read_timeout = duration(
        cx,
        "server.tcp_read_timeout",
        raw.server.tcp_read_timeout.as_ref(),
        Duration::from_secs(2),
    )?;
    let positive = |key: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(cx.err(&format!("server.{key}"), "must be at least 1")),
        v => Ok(v.unwrap_or(default)),
    };
    let tcp_max_connections =
        positive("tcp_max_connections", raw.server.tcp_max_connections, 1024)?;
    // 0: no cap of its own. A resolver farm behind NAT is one address and pipelines without
    // end, so neither is capped by default (NSD and Knot do not cap them either).
    let tcp_max_per_client = raw.server.tcp_max_per_client.unwrap_or(0);
    let tcp_max_queries = raw.server.tcp_max_queries.unwrap_or(0);
    let admin = raw.admin.listen.as_deref().unwrap_or("127.0.0.1:8053");
    let admin_listen: SocketAddr = admin
        .parse()
        .map_err(|_| cx.err("admin.listen", format!("{admin:?} is not an address:port")))?;
    let token_file = raw.admin.token_file.as_ref().map(|f| base.join(f));
    if token_file.is_none() && !admin_listen.ip().is_loopback() {
        return Err(cx.err(
            "admin.listen",
            format!("{admin_listen} is not a loopback address: set admin.token_file so that changes need a token"),
        ));
    }
    let state_file = raw.admin.state_file.as_ref().map(|f| base.join(f));
    let admin_limits = build_admin_limits(cx, &raw.admin)?;
    let max_in_flight = raw.probe.max_in_flight.unwrap_or(256);
    if max_in_flight == 0 {
        return Err(cx.err("probe.max_in_flight", "must be at least 1"));
    }
    let probe_queue = raw.probe.queue.unwrap_or(4096);
    if probe_queue == 0 {
        return Err(cx.err("probe.queue", "must be at least 1"));
    }
    let checks = raw
        .checks
        .iter()
        .map(|(name, c)| build_check(cx, name, c))
        .collect::<Result<Vec<_>, _>>()?;
    let (pools, members) = build_pools(cx, &raw, &checks)?;
    let names = build_names(cx, &raw, &pools, &members)?;
    let regions = build_regions(cx, &raw, &members)?;
    let alerts = build_alerts(cx, &raw.alerts)?;
    let rrl = build_rrl(cx, &raw.rrl)?;
    Ok(Config {
        source: cx.source.to_string(),
        path: None,
        listen,
        zones_dir,
        wire: WireSettings {
            udp_payload,
            allow_transfer,
            tcp_idle_timeout,
            tcp_read_timeout,
            tcp_max_connections,
            tcp_max_per_client,
            tcp_max_queries,
        },
        admin_listen,
        token_file,
        state_file,
        admin_limits,
        max_in_flight,
        max_body: raw.probe.max_body.unwrap_or(64 * 1024),
        probe_queue,
        checks,
        pools,
        members,
        names,
        regions,
        alerts,
        rrl,
        text: cx.text.to_string(),
    })
}

fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

fn build_check(cx: &Ctx, name: &str, c: &file::Check) -> Result<Check, ConfigError> {
    let p = format!("checks.{}", key(name));
    let interval = duration(
        cx,
        &format!("{p}.interval"),
        c.interval.as_ref(),
        Duration::from_secs(1),
    )?;
    let timeout = duration(
        cx,
        &format!("{p}.timeout"),
        c.timeout.as_ref(),
        Duration::from_millis(500),
    )?;
    if interval < Duration::from_millis(100) {
        return Err(cx.err(&format!("{p}.interval"), "must be at least 100ms"));
    }
    if timeout.is_zero() || timeout >= interval {
        return Err(cx.err(
            &format!("{p}.timeout"),
            format!("must be above 0 and below interval ({interval:?})"),
        ));
    }
    let fall = c.fall.unwrap_or(3);
    let rise = c.rise.unwrap_or(2);
    for (k, v) in [("fall", fall), ("rise", rise)] {
        if !(1..=100).contains(&v) {
            return Err(cx.err(
                &format!("{p}.{k}"),
                format!("{v} is out of range: 1 to 100 consecutive probes"),
            ));
        }
    }
    let http_only = [
        ("path", c.path.is_some()),
        ("host", c.host.is_some()),
        ("headers", !c.headers.is_empty()),
        ("expect_status", c.expect_status.is_some()),
        ("body_contains", c.body_contains.is_some()),
        ("keepalive", c.keepalive.is_some()),
    ];
    let kind = match c.kind {
        CheckType::Tcp => {
            if let Some((k, _)) = http_only
                .iter()
                .chain(&[
                    ("tls_verify", c.tls_verify.is_some()),
                    ("sni", c.sni.is_some()),
                ])
                .find(|(_, set)| *set)
            {
                return Err(cx.err(&format!("{p}.{k}"), "applies to http and https checks only"));
            }
            let port = c
                .port
                .ok_or_else(|| cx.err(&p, "a tcp check needs a port"))?;
            CheckKind::Tcp { port }
        }
        CheckType::Http | CheckType::Https => {
            let tls = c.kind == CheckType::Https;
            if !tls && (c.sni.is_some() || c.tls_verify.is_some()) {
                return Err(cx.err(
                    &format!("{p}.type"),
                    "sni and tls_verify need type = \"https\"",
                ));
            }
            let path = c.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(cx.err(
                    &format!("{p}.path"),
                    format!("{path:?} must start with '/'"),
                ));
            }
            let expect = match &c.expect_status {
                None => vec![(200, 399)],
                Some(list) if list.is_empty() => {
                    return Err(cx.err(
                        &format!("{p}.expect_status"),
                        "must list at least one status",
                    ))
                }
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        status_range(s).ok_or_else(|| {
                            cx.err(
                                &format!("{p}.expect_status[{i}]"),
                                "expected a status 100-599 or a range such as \"200-299\"",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let keepalive = match &c.keepalive {
                None => None,
                Some(_) => {
                    let k = format!("{p}.keepalive");
                    let d = duration(cx, &k, c.keepalive.as_ref(), interval)?;
                    if d < interval || d > Duration::from_secs(3600) {
                        return Err(cx.err(
                            &k,
                            format!("must be between interval ({interval:?}) and 1h"),
                        ));
                    }
                    Some(d)
                }
            };
            CheckKind::Http(HttpCheck {
                tls,
                port: c.port.unwrap_or(if tls { 443 } else { 80 }),
                path,
                host: c.host.clone(),
                headers: c
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                expect,
                body_contains: c.body_contains.clone(),
                tls_verify: c.tls_verify.unwrap_or(true),
                sni: c.sni.clone(),
                keepalive,
            })
        }
    };
    let d = |k: &str, v: &Option<String>, default: Duration| {
        let path = format!("{p}.{k}");
        let d = duration(cx, &path, v.as_ref(), default)?;
        if d > Duration::from_secs(86400) {
            return Err(cx.err(&path, "must be at most 24h"));
        }
        Ok((path, d))
    };
    let (_, min_down) = d("min_down", &c.min_down, Duration::ZERO)?;
    let (_, window) = d("flap_window", &c.flap_window, Duration::from_secs(600))?;
    let (max_path, max_down) = d(
        "max_down",
        &c.max_down,
        min_down.max(Duration::from_secs(600)),
    )?;
    if max_down < min_down {
        return Err(cx.err(
            &max_path,
            format!("must be at least min_down ({min_down:?})"),
        ));
    }
    Ok(Check {
        name: name.to_string(),
        kind,
        interval,
        timeout,
        fall,
        rise,
        damping: crate::steer::health::DampingRules {
            min_down,
            window,
            max_down,
        },
    })
}

fn status_range(s: &StatusSpec) -> Option<(u16, u16)> {
    let (lo, hi) = match s {
        StatusSpec::Code(c) => (*c, *c),
        StatusSpec::Text(t) => match t.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let c = t.trim().parse().ok()?;
                (c, c)
            }
        },
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

fn build_pools(
    cx: &Ctx,
    raw: &file::File,
    checks: &[Check],
) -> Result<(Vec<Pool>, Vec<Member>), ConfigError> {
    let mut pools = Vec::new();
    let mut members: Vec<Member> = Vec::new();
    for (pname, p) in &raw.pools {
        let pp = format!("pools.{}", key(pname));
        let check = checks
            .iter()
            .position(|c| c.name == p.check)
            .ok_or_else(|| {
                cx.err(
                    &format!("{pp}.check"),
                    format!(
                        "no check named {:?}; defined are: {}",
                        p.check,
                        names_of(checks.iter().map(|c| &c.name))
                    ),
                )
            })?;
        if p.members.is_empty() {
            return Err(cx.err(&format!("{pp}.members"), "a pool needs at least one member"));
        }
        let mut ids = Vec::new();
        for (i, m) in p.members.iter().enumerate() {
            let mp = format!("{pp}.members[{i}]");
            let address: IpAddr = m.address.parse().map_err(|_| {
                cx.err(
                    &format!("{mp}.address"),
                    format!("{:?} is not an IPv4 or IPv6 address", m.address),
                )
            })?;
            if let Some(why) = not_unicast(address) {
                return Err(cx.err(
                    &format!("{mp}.address"),
                    format!("{address} is {why}: a client cannot reach a service there"),
                ));
            }
            let probe_ip: IpAddr = match &m.probe_address {
                None => address,
                Some(a) => a.parse().map_err(|_| {
                    cx.err(
                        &format!("{mp}.probe_address"),
                        format!("{a:?} is not an IP address"),
                    )
                })?,
            };
            let port = m.probe_port.unwrap_or(match &checks[check].kind {
                CheckKind::Tcp { port } => *port,
                CheckKind::Http(h) => h.port,
            });
            let name = m.name.clone().unwrap_or_else(|| m.address.clone());
            if ids.iter().any(|&j: &usize| members[j].name == name) {
                return Err(cx.err(&format!("{mp}.name"), format!("{name:?} is already a member of pool {pname:?}; member names must be unique in a pool")));
            }
            let weight = m.weight.unwrap_or(1);
            if weight == 0 || weight > 1_000_000 {
                return Err(cx.err(&format!("{mp}.weight"), "must be 1 to 1000000"));
            }
            ids.push(members.len());
            members.push(Member {
                pool: pools.len(),
                name,
                address,
                weight,
                region: m.region.clone().or_else(|| p.region.clone()),
                target: SocketAddr::new(probe_ip, port),
                check,
            });
        }
        let weight = p.weight.unwrap_or(1);
        if weight == 0 || weight > 1_000_000 {
            return Err(cx.err(&format!("{pp}.weight"), "must be 1 to 1000000"));
        }
        pools.push(Pool {
            name: pname.clone(),
            check,
            weight,
            members: ids,
        });
    }
    Ok((pools, members))
}

fn names_of<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = it.map(|s| format!("{s:?}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn build_names(
    cx: &Ctx,
    raw: &file::File,
    pools: &[Pool],
    members: &[Member],
) -> Result<Vec<BoundName>, ConfigError> {
    let mut out: Vec<BoundName> = Vec::new();
    for (n, b) in &raw.names {
        let np = format!("names.{}", key(n));
        let fqdn = if n.ends_with('.') {
            n.clone()
        } else {
            format!("{n}.")
        };
        let name = Name::from_ascii(&fqdn)
            .map_err(|e| cx.err(&np, format!("{n:?} is not a domain name: {e}")))?;
        if out
            .iter()
            .any(|o| LowerName::new(&o.name) == LowerName::new(&name))
        {
            return Err(cx.err(&np, format!("{name} is bound twice")));
        }
        if b.pools.is_empty() {
            return Err(cx.err(&format!("{np}.pools"), "list at least one pool"));
        }
        let ids = b
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                pools.iter().position(|x| &x.name == p).ok_or_else(|| {
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
        let ttl = b.ttl.unwrap_or(30);
        if !(1..=86400).contains(&ttl) {
            return Err(cx.err(
                &format!("{np}.ttl"),
                format!("{ttl} is out of range: 1 to 86400 seconds"),
            ));
        }
        let degraded_ttl = b.degraded_ttl.unwrap_or(ttl.min(5));
        if degraded_ttl == 0 || degraded_ttl > ttl {
            return Err(cx.err(
                &format!("{np}.degraded_ttl"),
                format!("{degraded_ttl} is out of range: 1 to ttl ({ttl}) seconds"),
            ));
        }
        let policy = build_policy(cx, &np, b, pools, members, &ids)?;
        let all_down = build_all_down(cx, &np, b, pools)?;
        out.push(BoundName {
            name,
            pools: ids,
            policy,
            ttl,
            degraded_ttl,
            all_down,
        });
    }
    Ok(out)
}

fn build_policy(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    pools: &[Pool],
    members: &[Member],
    ids: &[usize],
) -> Result<Policy, ConfigError> {
    use file::PolicyKind as K;
    let kind = b.policy.unwrap_or(K::All);
    let count = |k: &str, v: Option<u32>, default: u32| {
        let v = v.unwrap_or(default);
        if (1..=64).contains(&v) {
            Ok(v as usize)
        } else {
            Err(cx.err(
                &format!("{np}.{k}"),
                format!("{v} is out of range: 1 to 64"),
            ))
        }
    };
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
            let k = format!("{np}.min_healthy");
            let min_healthy = match &b.min_healthy {
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
            };
            let max_answers = count("max_answers", b.max_answers, 8)?;
            if kind == K::Failover {
                Policy::Failover {
                    min_healthy,
                    max_answers,
                }
            } else {
                let (orders, labels, table) = build_topology(cx, np, b, pools, members, ids)?;
                Policy::Topology {
                    min_healthy,
                    max_answers,
                    orders,
                    labels,
                    table,
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
        } else if let Some(p) = pools.iter().position(|x| &x.name == f) {
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

fn build_regions(
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
        let ids: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].region.as_deref() == Some(name.as_str()))
            .collect();
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

type Orders = (
    Vec<Vec<Vec<usize>>>,
    Vec<Vec<String>>,
    std::sync::Arc<crate::steer::topology::Table>,
);

/// The topology rules of a name: each rule's order of member groups (then the name's pools,
/// as unmatched clients get them) and the client-subnet table.
fn build_topology(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    pools: &[Pool],
    members: &[Member],
    name_pools: &[usize],
) -> Result<Orders, ConfigError> {
    let rules = b.topology.as_deref().unwrap_or_default();
    if rules.is_empty() {
        return Err(cx.err(
            &format!("{np}.topology"),
            "policy \"topology\" needs [[topology]] rules with clients and order",
        ));
    }
    let default: Vec<Vec<usize>> = name_pools
        .iter()
        .map(|&p| pools[p].members.clone())
        .collect();
    let mut orders = vec![default.clone()];
    let default_labels: Vec<String> = name_pools.iter().map(|&p| pools[p].name.clone()).collect();
    let mut labels = vec![default_labels.clone()];
    let mut nets = Vec::new();
    for (k, r) in rules.iter().enumerate() {
        let rp = format!("{np}.topology[{k}]");
        let clients = r
            .clients
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_net(s).ok_or_else(|| {
                    cx.err(
                        &format!("{rp}.clients[{i}]"),
                        format!("{s:?} is not a CIDR prefix such as \"198.51.100.0/24\""),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() || r.order.is_empty() {
            return Err(cx.err(&rp, "a rule needs clients and an order"));
        }
        let mut order = Vec::new();
        for (i, g) in r.order.iter().enumerate() {
            let group: Vec<usize> = match name_pools.iter().find(|&&p| &pools[p].name == g) {
                Some(&p) => pools[p].members.clone(),
                None => name_pools
                    .iter()
                    .flat_map(|&p| pools[p].members.iter().copied())
                    .filter(|&m| members[m].region.as_deref() == Some(g.as_str()))
                    .collect(),
            };
            if group.is_empty() {
                return Err(cx.err(
                    &format!("{rp}.order[{i}]"),
                    format!(
                        "{g:?} is neither one of this name's pools nor a region of their members"
                    ),
                ));
            }
            order.push(group);
        }
        order.extend(default.iter().cloned());
        orders.push(order);
        labels.push(r.order.iter().chain(&default_labels).cloned().collect());
        nets.push(clients);
    }
    Ok((
        orders,
        labels,
        std::sync::Arc::new(crate::steer::topology::Table::new(&nets)),
    ))
}

fn build_rrl(cx: &Ctx, r: &file::Rrl) -> Result<RrlConfig, ConfigError> {
    let d = RrlConfig::default();
    let prefix = |key: &str, v: Option<u8>, default: u8, max: u8| match v {
        None => Ok(default),
        Some(p) if p <= max => Ok(p),
        Some(p) => Err(cx.err(
            &format!("rrl.{key}"),
            format!("{p} is not a prefix length (0 to {max})"),
        )),
    };
    let exempt = match &r.exempt {
        None => d.exempt,
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_net(s).ok_or_else(|| {
                    cx.err(
                        &format!("rrl.exempt[{i}]"),
                        format!("{s:?} is not an address or CIDR prefix"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let max_prefixes = r.max_prefixes.unwrap_or(d.max_prefixes);
    if max_prefixes == 0 {
        return Err(cx.err("rrl.max_prefixes", "must be at least 1"));
    }
    Ok(RrlConfig {
        rate: r.rate.unwrap_or(d.rate),
        errors_rate: r.errors_rate.unwrap_or(d.errors_rate),
        slip: r.slip.unwrap_or(d.slip),
        ipv4_prefix: prefix("ipv4_prefix", r.ipv4_prefix, d.ipv4_prefix, 32)?,
        ipv6_prefix: prefix("ipv6_prefix", r.ipv6_prefix, d.ipv6_prefix, 128)?,
        exempt,
        max_prefixes,
    })
}

fn build_alerts(cx: &Ctx, a: &file::Alerts) -> Result<AlertConfig, ConfigError> {
    if let Some(url) = &a.webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(cx.err(
                "alerts.webhook",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
    }
    let command = a.command.clone().unwrap_or_default();
    if a.command.is_some() && command.first().is_none_or(|c| c.is_empty()) {
        return Err(cx.err(
            "alerts.command",
            "give the program and its arguments, e.g. [\"/usr/local/bin/page\", \"--team\", \"dns\"]",
        ));
    }
    let timeout = duration(
        cx,
        "alerts.timeout",
        a.timeout.as_ref(),
        Duration::from_secs(5),
    )?;
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        return Err(cx.err("alerts.timeout", "must be above 0 and at most 5m"));
    }
    let retries = a.retries.unwrap_or(3);
    if retries > 10 {
        return Err(cx.err(
            "alerts.retries",
            format!("{retries} is out of range: 0 to 10"),
        ));
    }
    let count = |k: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
        n @ 1..=100_000 => Ok(n),
        n => Err(cx.err(
            &format!("alerts.{k}"),
            format!("{n} is out of range: 1 to 100000"),
        )),
    };
    Ok(AlertConfig {
        webhook: a.webhook.clone(),
        command,
        timeout,
        retries,
        rate: count("rate", a.rate, 30)?,
        burst: count("burst", a.burst, 10)?,
        queue: match a.queue.unwrap_or(1024) {
            0 => return Err(cx.err("alerts.queue", "must be at least 1")),
            n => n,
        },
    })
}

fn build_admin_limits(cx: &Ctx, a: &file::Admin) -> Result<AdminLimits, ConfigError> {
    let max_time = duration(
        cx,
        "admin.max_time",
        a.max_time.as_ref(),
        Duration::from_secs(10),
    )?;
    if max_time.is_zero() {
        return Err(cx.err("admin.max_time", "must be above 0"));
    }
    let at_least_one = |k: &str, v: Option<usize>, default: usize| match v.unwrap_or(default) {
        0 => Err(cx.err(&format!("admin.{k}"), "must be at least 1")),
        n => Ok(n),
    };
    Ok(AdminLimits {
        max_body: at_least_one("max_body", a.max_body, 64 * 1024)?,
        max_time,
        max_connections: at_least_one("max_connections", a.max_connections, 64)?,
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
