//! Bound names whose members lead back to themselves: a name whose member is a bound name
//! whose member is the first (or longer rings, or a member that is its own name). Clients
//! would follow the CNAMEs round the ring and never reach an address, and gtmd could not
//! resolve the members from its own data, so the configuration is refused.
//!
//! Only rings through bound names are found here; one through a zone file's CNAME records
//! is bounded where gtmd resolves the members ([`crate::engine`]'s local targets).

use std::collections::HashMap;

use hickory_proto::rr::LowerName;

use super::{key, AllDown, BoundName, ConfigError, Ctx, Member, Pool};

/// An edge from a bound name to the bound name one of its members is: the member's pool,
/// its position there, and the name it leads to (indexes into `names`).
type Edge = (usize, usize, usize);

/// Refuses the first ring of bound names found, at the member that starts it.
pub(super) fn refuse_cycles(
    cx: &Ctx,
    names: &[BoundName],
    pools: &[Pool],
    members: &[Member],
) -> Result<(), ConfigError> {
    let index: HashMap<LowerName, usize> = names
        .iter()
        .enumerate()
        .map(|(i, b)| (LowerName::new(&b.name), i))
        .collect();
    let edges: Vec<Vec<Edge>> = names
        .iter()
        .map(|b| edges_of(b, pools, members, &index))
        .collect();
    // Depth-first, colouring names: 1 on the current path, 2 done.
    let mut colour = vec![0u8; names.len()];
    for start in 0..names.len() {
        let mut path: Vec<(usize, usize)> = Vec::new(); // (name, next edge to try)
        if colour[start] != 0 {
            continue;
        }
        colour[start] = 1;
        path.push((start, 0));
        while let Some(&mut (n, ref mut next)) = path.last_mut() {
            let Some(&(p, pos, to)) = edges[n].get(*next) else {
                colour[n] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            match colour[to] {
                0 => {
                    colour[to] = 1;
                    path.push((to, 0));
                }
                1 => return Err(ring(cx, names, pools, &path, (p, pos), to)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The names `b`'s members (of its pools and fallback pools) are, among the bound names.
fn edges_of(
    b: &BoundName,
    pools: &[Pool],
    members: &[Member],
    index: &HashMap<LowerName, usize>,
) -> Vec<Edge> {
    let fallback = match &b.all_down {
        AllDown::Fallback { pools, .. } => pools.as_slice(),
        _ => &[],
    };
    let mut out = Vec::new();
    for &p in b.pools.iter().chain(fallback) {
        for (pos, &m) in pools[p].members.iter().enumerate() {
            let to = members[m].cname.as_ref().map(LowerName::new);
            if let Some(&to) = to.as_ref().and_then(|t| index.get(t)) {
                out.push((p, pos, to));
            }
        }
    }
    out
}

/// The error of the ring closed by the member at `(pool, pos)` of the last name of `path`,
/// which leads back to `to`.
fn ring(
    cx: &Ctx,
    names: &[BoundName],
    pools: &[Pool],
    path: &[(usize, usize)],
    (pool, pos): (usize, usize),
    to: usize,
) -> ConfigError {
    let from = path.iter().position(|&(n, _)| n == to).unwrap_or(0);
    let mut words: Vec<String> = path[from..]
        .iter()
        .map(|&(n, _)| names[n].name.to_string())
        .collect();
    words.push(names[to].name.to_string());
    let at = format!("pools.{}.members[{pos}].cname", key(&pools[pool].name));
    cx.err(
        &at,
        format!(
            "{} leads back to itself through bound names ({}): clients would follow the CNAMEs round and never reach an address; make one of these members a name outside the ring or an address",
            names[to].name,
            words.join(" → ")
        ),
    )
}

#[cfg(test)]
mod tests {
    /// Pools p0.. with one member each, named by `targets` ("" for an address), each bound at
    /// n<i>.t.
    fn config(targets: &[&str]) -> Result<crate::config::Config, crate::config::ConfigError> {
        let mut text = String::from("[checks.c]\ntype = \"tcp\"\nport = 80\n");
        for (i, t) in targets.iter().enumerate() {
            let member = match *t {
                "" => "address = \"192.0.2.1\"".to_string(),
                t => format!("cname = \"{t}\""),
            };
            text += &format!(
                "[pools.p{i}]\ncheck = \"c\"\nmembers = [{{ {member} }}]\n[names.\"n{i}.t.\"]\npools = [\"p{i}\"]\n"
            );
        }
        crate::config::Config::parse(&text, "t.toml", std::path::Path::new("/"))
    }

    #[test]
    fn rings_of_bound_names_are_refused_at_a_member_and_chains_are_not() {
        let e = config(&["n0.t."]).unwrap_err();
        assert_eq!(e.path, "pools.p0.members[0].cname", "{e}");
        assert!(e.msg.contains("(n0.t. → n0.t.)"), "{e}");
        assert!(e.line.is_some(), "{e}");
        let e = config(&["n1.t.", "n2.t.", "n0.t."]).unwrap_err();
        assert!(e.msg.contains("n0.t. → n1.t. → n2.t. → n0.t."), "{e}");
        assert_eq!(e.path, "pools.p2.members[0].cname", "{e}");
        // A chain that ends at addresses, or leaves the bound names, is fine.
        config(&["n1.t.", "n2.t.", ""]).unwrap();
        config(&["n1.t.", "lb.example.net."]).unwrap();
    }
}
