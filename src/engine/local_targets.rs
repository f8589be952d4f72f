//! Members that are domain names inside gtmd's own zones: their addresses are what gtmd
//! itself answers (the published snapshot: zone records and bound names alike), worked out
//! once per publication and handed to the prober ([`crate::probe::resolve::Local`]). They
//! are never asked of `probe.resolvers`.
//!
//! A name is followed through CNAMEs across gtmd's zones, at most [`MAX_HOPS`] zones' worth
//! of chain, never through a name twice (a loop is an error that names it). A chain that
//! leaves gtmd's zones (a CNAME to another name, a delegation) ends here: the name it leads
//! to is the resolvers' to answer. A bound name gives every address it may answer
//! (unmatched clients' sets: every eligible member of a weighted name); a bound name that
//! answers a CNAME gives its first answer.
//!
//! Pure: reads a snapshot, no I/O, no clock.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::config::{Config, ProbeAt};
use crate::dns::lookup::{lookup_with, Answer};
use crate::dns::snapshot::{Bound, Choice, Snapshot};
use crate::probe::resolve::Local;

/// The most lookups (each following a chain inside one zone) made for one name.
pub const MAX_HOPS: usize = 8;

/// What gtmd's own data gives for each probe target of `cfg` that lies in `snap`'s zones.
pub fn table(cfg: &Config, snap: &Snapshot) -> HashMap<LowerName, Local> {
    let mut out = HashMap::new();
    for m in &cfg.members {
        for (_, at) in &m.checks {
            let ProbeAt::Resolve(name, _) = at else {
                continue;
            };
            let key = LowerName::new(name);
            if out.contains_key(&key) {
                continue;
            }
            if let Some(l) = resolve(snap, name) {
                out.insert(key, l);
            }
        }
    }
    out
}

/// What `name` resolves to in `snap`; `None` when it is in none of its zones.
pub fn resolve(snap: &Snapshot, name: &Name) -> Option<Local> {
    snap.zones.index_for(&LowerName::new(name), RecordType::A)?;
    let mut chain: Vec<Name> = vec![name.clone()];
    let mut at = name.clone();
    for _ in 0..MAX_HOPS {
        let a = lookup_with(snap, &at, RecordType::A, &|_, c| c.pick(0));
        let last = last_target(&a).unwrap_or_else(|| at.clone());
        chain.extend(cname_targets(&a));
        match a.rcode {
            ResponseCode::Refused => return Some(Local::Outside(last)),
            ResponseCode::ServFail => {
                return Some(Local::Missing(format!(
                    "{last} answers SERVFAIL (nothing behind it is healthy and it is set to fail)"
                )))
            }
            ResponseCode::NXDomain => {
                return Some(Local::Missing(format!("{last} does not exist: NXDOMAIN")))
            }
            _ => {}
        }
        if !a.aa {
            // A referral: the name is delegated, and its servers answer.
            return Some(Local::Outside(last));
        }
        let mut ips = addresses(snap, &a, RecordType::A);
        let aaaa = lookup_with(snap, &at, RecordType::AAAA, &|_, c| c.pick(0));
        ips.extend(addresses(snap, &aaaa, RecordType::AAAA));
        if !ips.is_empty() {
            return Some(Local::Addresses(ips));
        }
        if !ends_in_cname(&a) {
            return Some(Local::Missing(format!("{last} has no address records")));
        }
        // The chain stopped at a CNAME target: in another zone, past the chain's bound, or
        // a name already followed.
        if chain[..chain.len() - 1]
            .iter()
            .any(|n| LowerName::new(n) == LowerName::new(&last))
        {
            let words: Vec<String> = chain.iter().map(ToString::to_string).collect();
            return Some(Local::Missing(format!("CNAME loop: {}", words.join(" → "))));
        }
        at = last;
    }
    Some(Local::Missing(format!(
        "{name} leads through more than {MAX_HOPS} chains of CNAMEs"
    )))
}

/// The target of the last CNAME in `a`'s answer.
fn last_target(a: &Answer) -> Option<Name> {
    cname_targets(a).pop()
}

/// Whether `a`'s answer ends with a CNAME (its target was not answered).
fn ends_in_cname(a: &Answer) -> bool {
    a.answer
        .iter()
        .rev()
        .find(|r| r.record_type() != RecordType::RRSIG)
        .is_some_and(|r| matches!(r.data, RData::CNAME(_)))
}

/// The CNAME targets of `a`'s answer, in order (the names the chain went through).
fn cname_targets(a: &Answer) -> Vec<Name> {
    a.answer
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.clone()),
            _ => None,
        })
        .collect()
}

/// The addresses of type `qtype` in `a`'s answer; where their owner is a bound name, every
/// address it may answer its unmatched clients.
fn addresses(snap: &Snapshot, a: &Answer, qtype: RecordType) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut owners: Vec<LowerName> = Vec::new();
    for r in a.answer.iter().filter(|r| r.record_type() == qtype) {
        let owner = LowerName::new(&r.name);
        if owners.contains(&owner) {
            continue;
        }
        owners.push(owner.clone());
        let records = match snap.bound.get(&owner).and_then(|b| b.choice(qtype)) {
            Some(c) => c.transferred(),
            None => a
                .answer
                .iter()
                .filter(|x| x.record_type() == qtype && LowerName::new(&x.name) == owner)
                .cloned()
                .collect(),
        };
        for x in records {
            if let Some(ip) = x.data.ip_addr().filter(|ip| !out.contains(ip)) {
                out.push(ip);
            }
        }
    }
    out
}

impl super::Engine {
    /// Stores what `snap` answers for `cfg`'s probe targets inside its zones, if that
    /// changed.
    pub(super) fn refresh_local(&self, cfg: &Config, snap: &Snapshot) {
        let local = self.prober.local();
        if local.load().is_empty() && !has_targets(cfg) {
            return;
        }
        let t = table(cfg, snap);
        if **local.load() != t {
            local.store(std::sync::Arc::new(t));
        }
    }

    /// Before a reload's probes start: what `zones` (the reload's) give for `cfg`'s probe
    /// targets, with the bound names' answers as published now, and a name the reload binds
    /// answering every member of its pools (as a name with nothing probed yet fails open)
    /// until the reload's first publication.
    pub(super) fn refresh_local_for(
        &self,
        cfg: &Config,
        zones: &std::sync::Arc<crate::zone::Zones>,
    ) {
        if self.prober.local().load().is_empty() && !has_targets(cfg) {
            return;
        }
        let mut bound = self.published.load().bound.clone();
        for b in &cfg.names {
            bound
                .entry(LowerName::new(&b.name))
                .or_insert_with(|| unprobed(cfg, b));
        }
        let snap = Snapshot {
            zones: zones.clone(),
            bound,
            ..Default::default()
        };
        self.refresh_local(cfg, &snap);
    }
}

/// What `b` answers before any of its members is probed: every member of its pools (for a
/// name of names, the first).
fn unprobed(cfg: &Config, b: &crate::config::BoundName) -> Bound {
    let members = b.pools.iter().flat_map(|&p| &cfg.pools[p].members);
    let record = |data| Record::from_rdata(b.name.clone(), b.degraded_ttl, data);
    if b.cname {
        let first = members.filter_map(|&m| cfg.members[m].cname.clone()).next();
        let records = first.map(|n| record(RData::CNAME(CNAME(n))));
        return Bound {
            cname: Some(Choice::fixed(records.into_iter().collect())),
            ..Default::default()
        };
    }
    let (mut a, mut aaaa) = (Vec::new(), Vec::new());
    for &m in members {
        match cfg.members[m].address {
            IpAddr::V4(ip) => a.push(record(RData::A(A(ip)))),
            IpAddr::V6(ip) => aaaa.push(record(RData::AAAA(AAAA(ip)))),
        }
    }
    Bound::fixed(a, aaaa)
}

/// Whether some member of `cfg` is probed at a name.
fn has_targets(cfg: &Config) -> bool {
    cfg.members.iter().any(|m| {
        m.checks
            .iter()
            .any(|(_, at)| matches!(at, ProbeAt::Resolve(..)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot of the zones `texts` (origin and records), no bound names.
    fn snap(texts: &[(&str, &str)]) -> Snapshot {
        let zones = texts
            .iter()
            .map(|(origin, records)| {
                let text = format!(
                    "$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n{records}"
                );
                let origin = Name::from_ascii(origin).unwrap();
                crate::zone::parse_zone(&text, std::path::Path::new("t.zone"), origin).unwrap()
            })
            .collect();
        Snapshot {
            zones: std::sync::Arc::new(crate::zone::Zones::new(zones)),
            ..Default::default()
        }
    }

    fn local(s: &Snapshot, name: &str) -> Option<Local> {
        resolve(s, &Name::from_ascii(name).unwrap())
    }

    #[test]
    fn a_chain_is_followed_across_gtmds_zones_to_its_addresses() {
        let s = snap(&[
            ("a.test.", "lb CNAME x.b.test.\nv6 AAAA 2001:db8::1\n"),
            ("b.test.", "x CNAME y\ny A 192.0.2.7\ny AAAA 2001:db8::7\n"),
        ]);
        assert_eq!(
            local(&s, "lb.a.test."),
            Some(Local::Addresses(vec![
                "192.0.2.7".parse().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]))
        );
        assert_eq!(
            local(&s, "v6.a.test."),
            Some(Local::Addresses(vec!["2001:db8::1".parse().unwrap()]))
        );
    }

    #[test]
    fn a_name_outside_gtmds_zones_is_left_to_the_resolvers_and_so_is_where_a_chain_leaves() {
        let s = snap(&[(
            "a.test.",
            "out CNAME lb.example.net.\nsub NS ns.example.net.\nin-sub CNAME x.sub\n",
        )]);
        assert_eq!(local(&s, "lb.example.net."), None);
        let net = Name::from_ascii("lb.example.net.").unwrap();
        assert_eq!(local(&s, "out.a.test."), Some(Local::Outside(net)));
        // Delegated away: the child's servers answer.
        let sub = Name::from_ascii("x.sub.a.test.").unwrap();
        assert_eq!(local(&s, "in-sub.a.test."), Some(Local::Outside(sub)));
    }

    #[test]
    fn a_name_a_reload_binds_gives_every_member_until_it_is_published() {
        let text = "[checks.c]\ntype = \"tcp\"\nport = 80\n\
            [pools.p]\ncheck = \"c\"\nmembers = [{ address = \"192.0.2.1\" }, { address = \"2001:db8::1\" }]\n\
            [names.\"lb.a.test.\"]\npools = [\"p\"]\n";
        let cfg = Config::parse(text, "t.toml", std::path::Path::new("/")).unwrap();
        // As the configuration binds it: a node of the zone with no records of its own.
        let mut s = snap(&[("a.test.", "")]);
        let mut zones: Vec<crate::zone::Zone> = s.zones.iter().cloned().collect();
        zones[0].ensure_node(&LowerName::new(&Name::from_ascii("lb.a.test.").unwrap()));
        s.zones = std::sync::Arc::new(crate::zone::Zones::new(zones));
        let b = &cfg.names[0];
        s.bound.insert(LowerName::new(&b.name), unprobed(&cfg, b));
        assert_eq!(
            local(&s, "lb.a.test."),
            Some(Local::Addresses(vec![
                "192.0.2.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]))
        );
    }

    #[test]
    fn a_missing_name_and_a_loop_are_errors_that_say_so() {
        let s = snap(&[
            (
                "a.test.",
                "l1 CNAME l2\nl2 CNAME l1\nx CNAME y.b.test.\ntxt TXT \"t\"\n",
            ),
            ("b.test.", "y CNAME x.a.test.\n"),
        ]);
        let missing = |n| match local(&s, n) {
            Some(Local::Missing(why)) => why,
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(
            missing("nope.a.test."),
            "nope.a.test. does not exist: NXDOMAIN"
        );
        assert_eq!(missing("txt.a.test."), "txt.a.test. has no address records");
        let w = missing("l1.a.test.");
        assert!(
            w.starts_with("CNAME loop: l1.a.test. → l2.a.test. → l1.a.test."),
            "{w}"
        );
        // Across zones, bounded all the same.
        let w = missing("x.a.test.");
        assert!(
            w.starts_with("CNAME loop: x.a.test. → y.b.test. → x.a.test."),
            "{w}"
        );
    }
}
