//! The `[[names."FQDN".topology]]` rules of a name: per rule, the order of member groups it
//! answers from, and the table of client subnets that picks the rule.

use super::file;
use super::server::parse_net;
use super::{ConfigError, Ctx, Member, Pool};
use crate::steer::geo::Matcher;
use crate::steer::topology::Table;

pub(super) type Orders = (
    Vec<Vec<Vec<usize>>>,
    Vec<Vec<String>>,
    std::sync::Arc<crate::steer::topology::Table>,
);

/// The topology rules of a name: each rule's order of member groups (then the name's pools,
/// as unmatched clients get them) and the client-subnet table.
pub(super) fn build_topology(
    cx: &Ctx,
    np: &str,
    b: &file::BoundName,
    pools: &[Pool],
    members: &[Member],
    name_pools: &[usize],
    geo: Option<&crate::steer::geo::Geo>,
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
    let mut matchers = Vec::new();
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
        let place = place_of(r);
        check_rule(
            cx,
            &rp,
            r,
            clients.is_empty(),
            place.is_some(),
            geo.is_some(),
        )?;
        if r.nearest {
            check_located(cx, &rp, pools, name_pools)?;
        }
        matchers.push(place);
        let mut order = rule_order(cx, &rp, r, pools, members, name_pools)?;
        order.extend(default.iter().cloned());
        orders.push(order);
        labels.push(r.order.iter().chain(&default_labels).cloned().collect());
        nets.push(clients);
    }
    let table = match geo.filter(|_| matchers.iter().any(Option::is_some)) {
        None => std::sync::Arc::new(Table::new(&nets)),
        Some(geo) => {
            let nearest: Vec<bool> = rules.iter().map(|r| r.nearest).collect();
            let mut by = ByPlace {
                matchers: &matchers,
                nearest: &nearest,
                pools,
                name_pools,
                orders: &mut orders,
                labels: &mut labels,
                perms: Default::default(),
            };
            places_table(cx, np, &nets, geo, &mut by)?
        }
    };
    Ok((orders, labels, table))
}

/// The client table of a name with rules by place.
fn places_table(
    cx: &Ctx,
    np: &str,
    nets: &[Vec<ipnet::IpNet>],
    geo: &crate::steer::geo::Geo,
    by: &mut ByPlace,
) -> Result<std::sync::Arc<Table>, ConfigError> {
    let covers = geo
        .covers()
        .map_err(|e| cx.err(&format!("{np}.topology"), e))?;
    let groups: Vec<u32> = covers.places.iter().map(|p| by.group(p)).collect();
    let t = geo.table((nets.to_vec(), groups), |(nets, groups)| {
        Table::with_places(nets, &covers, groups)
    });
    if by.orders.len() > u16::MAX as usize {
        return Err(cx.err(
            &format!("{np}.topology"),
            format!(
                "{} orders by distance: too many (at most 65,535)",
                by.orders.len()
            ),
        ));
    }
    Ok(t)
}

/// Every pool of the name has a `location` (for a `nearest` rule).
fn check_located(
    cx: &Ctx,
    rp: &str,
    pools: &[Pool],
    name_pools: &[usize],
) -> Result<(), ConfigError> {
    let far: Vec<&str> = name_pools
        .iter()
        .filter(|&&p| pools[p].location.is_none())
        .map(|&p| pools[p].name.as_str())
        .collect();
    if far.is_empty() {
        return Ok(());
    }
    Err(cx.err(
        &format!("{rp}.nearest"),
        format!("pools {far:?} of the name have no location = [latitude, longitude]"),
    ))
}

/// A rule has either clients or a place (or `nearest`), and either an order or `nearest`;
/// a rule by place needs `[geo]`.
fn check_rule(
    cx: &Ctx,
    rp: &str,
    r: &file::TopologyRule,
    no_clients: bool,
    by_place: bool,
    geo: bool,
) -> Result<(), ConfigError> {
    if no_clients != by_place {
        return Err(cx.err(
            rp,
            "a rule needs either clients or a place (country, continent, subdivision, asn, \
             nearest), not both",
        ));
    }
    if r.order.is_empty() != r.nearest {
        return Err(cx.err(
            rp,
            "a rule needs either an order or nearest = true, not both",
        ));
    }
    if by_place && !geo {
        return Err(cx.err(
            rp,
            "a rule by place needs [geo] databases = [\"FILE.mmdb\", ...]",
        ));
    }
    Ok(())
}

/// The group of each place the databases know, for one name: the first rule by place that
/// takes it; a `nearest` rule takes a located place, and gives it an order of the name's
/// pools by distance, one group per distinct order (added after the rules' groups).
struct ByPlace<'a> {
    matchers: &'a [Option<Matcher>],
    nearest: &'a [bool],
    pools: &'a [Pool],
    name_pools: &'a [usize],
    orders: &'a mut Vec<Vec<Vec<usize>>>,
    labels: &'a mut Vec<Vec<String>>,
    perms: std::collections::HashMap<Vec<usize>, u32>,
}

impl ByPlace<'_> {
    fn group(&mut self, p: &crate::steer::geo::Place) -> u32 {
        for (k, m) in self.matchers.iter().enumerate() {
            if !m.as_ref().is_some_and(|m| m.matches(p)) {
                continue;
            }
            if !self.nearest[k] {
                return k as u32 + 1;
            }
            let Some(at) = p.at() else { continue };
            let km = |i: usize| {
                let loc = self.pools[self.name_pools[i]].location.unwrap_or_default();
                crate::steer::geo::distance_km(at, loc)
            };
            let mut perm: Vec<usize> = (0..self.name_pools.len()).collect();
            perm.sort_by(|&a, &b| km(a).total_cmp(&km(b)));
            if let Some(&g) = self.perms.get(&perm) {
                return g;
            }
            let g = self.orders.len() as u32;
            let pools = perm.iter().map(|&i| &self.pools[self.name_pools[i]]);
            self.orders
                .push(pools.clone().map(|p| p.members.clone()).collect());
            self.labels.push(pools.map(|p| p.name.clone()).collect());
            self.perms.insert(perm, g);
            return g;
        }
        0
    }
}

/// The member groups a rule's `order` names: a pool of the name, or a region of their members.
fn rule_order(
    cx: &Ctx,
    rp: &str,
    r: &file::TopologyRule,
    pools: &[Pool],
    members: &[Member],
    name_pools: &[usize],
) -> Result<Vec<Vec<usize>>, ConfigError> {
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
                format!("{g:?} is neither one of this name's pools nor a region of their members"),
            ));
        }
        order.push(group);
    }
    Ok(order)
}

/// The place a rule matches, if it names one.
fn place_of(r: &file::TopologyRule) -> Option<Matcher> {
    let up = |v: &[String]| v.iter().map(|s| s.to_ascii_uppercase()).collect::<Vec<_>>();
    let m = Matcher {
        continents: up(&r.continent),
        countries: up(&r.country),
        subdivisions: up(&r.subdivision),
        asns: r.asn.clone(),
    };
    (m != Matcher::default() || r.nearest).then_some(m)
}
