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
        if clients.is_empty() == place.is_none() || r.order.is_empty() {
            return Err(cx.err(
                &rp,
                "a rule needs an order and either clients or a place (country, continent, \
                 subdivision, asn), not both",
            ));
        }
        if place.is_some() && geo.is_none() {
            return Err(cx.err(
                &rp,
                "a rule by place needs [geo] databases = [\"FILE.mmdb\", ...]",
            ));
        }
        matchers.push(place);
        let mut order = rule_order(cx, &rp, r, pools, members, name_pools)?;
        order.extend(default.iter().cloned());
        orders.push(order);
        labels.push(r.order.iter().chain(&default_labels).cloned().collect());
        nets.push(clients);
    }
    let table = match geo.filter(|_| matchers.iter().any(Option::is_some)) {
        None => Table::new(&nets),
        Some(geo) => Table::with_places(&nets, geo, &matchers)
            .map_err(|e| cx.err(&format!("{np}.topology"), e))?,
    };
    Ok((orders, labels, std::sync::Arc::new(table)))
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
    (m != Matcher::default()).then_some(m)
}
