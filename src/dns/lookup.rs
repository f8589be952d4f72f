//! Authoritative answers: the RFC 1034 section 4.3.2 algorithm over a [`Snapshot`].
//!
//! Pure: no I/O, no clock. Given a name, a type and the snapshot, it returns the rcode, the AA
//! flag and the three record sections, shaped as Knot DNS answers (minimal responses:
//! no NS in the authority section of positive answers).
//!
//! - Referrals (RFC 1034 4.3.2 step 3b): AA clear, the cut's NS in authority, glue in additional.
//!   A DS query at the cut is answered by the parent (RFC 4035 section 3.1.4.1).
//! - CNAME chains are followed inside the zone, at most [`MAX_CHAIN`] links, never twice.
//! - Wildcards (RFC 4592): the source of synthesis is `*.` the closest encloser; a wildcard
//!   without the type gives NODATA.
//! - Negative answers (RFC 2308): NXDOMAIN or NODATA with the SOA in authority, its TTL
//!   min(SOA TTL, SOA MINIMUM).
//! - ANY (RFC 8482): one RRset, the lowest type at the node.

use std::borrow::Cow;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::dns::snapshot::{random_u32, Bound, Choice, Snapshot};
use crate::zone::{Node, Zone};

/// The longest CNAME chain followed inside a zone.
pub const MAX_CHAIN: usize = 16;

/// The outcome of a lookup, ready to be put into a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub aa: bool,
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    fn new() -> Self {
        Self {
            rcode: ResponseCode::NoError,
            aa: true,
            answer: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    /// REFUSED, not authoritative: the name is in none of our zones.
    pub fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            aa: false,
            ..Self::new()
        }
    }
}

/// Which of a bound name's answers ([`Choice`]) to use.
pub type Pick<'a> = &'a dyn Fn(&LowerName, &Choice) -> usize;

/// Answers `qname`/`qtype` from the snapshot, each bound name's answer drawn at random by its
/// policy; REFUSED when no zone contains the name.
pub fn lookup(snap: &Snapshot, qname: &Name, qtype: RecordType) -> Answer {
    lookup_with(snap, qname, qtype, &|_, c| c.pick(random_u32()))
}

/// [`lookup`] for `client`: a topology name answers by the client's subnet. Also returns the
/// ECS scope prefix length the answer holds for (0 when it does not depend on the client).
pub fn lookup_for(
    snap: &Snapshot,
    qname: &Name,
    qtype: RecordType,
    client: crate::steer::topology::Client,
) -> (Answer, u8) {
    let scope = std::cell::Cell::new(0u8);
    let ans = lookup_with(snap, qname, qtype, &|_, c| {
        let (i, s) = c.sel.pick(Some(client), random_u32());
        scope.set(scope.get().max(s));
        i
    });
    (ans, scope.get())
}

/// [`lookup`] with the bound names' answers chosen by `pick`. The zone's SOA carries the
/// serial of the snapshot's version of the zone.
pub fn lookup_with(snap: &Snapshot, qname: &Name, qtype: RecordType, pick: Pick) -> Answer {
    let lname = LowerName::new(qname);
    let Some(zi) = snap.zones.index_for(&lname, qtype) else {
        return Answer::refused();
    };
    let Some(zone) = snap.zones.get(zi) else {
        return Answer::refused();
    };
    let mut ans = lookup_in(snap, zone, qname, lname, qtype, pick);
    if let Some(v) = snap.versions.get(zi) {
        for r in ans.answer.iter_mut().chain(ans.authority.iter_mut()) {
            if let RData::SOA(soa) = &mut r.data {
                soa.serial = v.serial;
            }
        }
    }
    ans
}

fn lookup_in(
    snap: &Snapshot,
    zone: &Zone,
    qname: &Name,
    lname: LowerName,
    qtype: RecordType,
    pick: Pick,
) -> Answer {
    let mut ans = Answer::new();
    let mut seen: Vec<LowerName> = Vec::new();
    let mut name = qname.clone();
    let mut lname = lname;
    loop {
        let next = resolve_step(snap, zone, &name, &lname, qtype, pick, &mut ans);
        if ans.rcode == ResponseCode::ServFail {
            // A bound name with nothing healthy, set to fail rather than answer.
            return Answer {
                rcode: ResponseCode::ServFail,
                aa: false,
                ..Answer::new()
            };
        }
        match next {
            Some(target) if seen.len() < MAX_CHAIN => {
                let ltarget = LowerName::new(&target);
                seen.push(lname);
                if !zone.origin.zone_of(&ltarget) || seen.contains(&ltarget) {
                    return ans;
                }
                name = target;
                lname = ltarget;
            }
            _ => return ans,
        }
    }
}

/// One step of the algorithm at `name`. Returns a CNAME target to continue with, if any.
fn resolve_step(
    snap: &Snapshot,
    zone: &Zone,
    name: &Name,
    lname: &LowerName,
    qtype: RecordType,
    pick: Pick,
    ans: &mut Answer,
) -> Option<Name> {
    if let Some((cut, node)) = zone.delegation_above(lname) {
        if !(cut == *lname && qtype == RecordType::DS) {
            referral(snap, zone, (&cut, node), pick, ans);
            return None;
        }
    }
    if let Some(node) = zone.nodes.get(lname) {
        let bound = snap.bound.get(lname).map(|b| (lname, b));
        return from_node(snap, zone, node, bound, name, qtype, pick, ans);
    }
    // RFC 4592 section 3.3.1: find the closest encloser, then its wildcard child.
    let mut encloser = lname.base_name();
    while !zone.nodes.contains_key(&encloser) && encloser != zone.origin {
        encloser = encloser.base_name();
    }
    let wild = Name::from(encloser)
        .prepend_label("*")
        .ok()
        .map(|n| LowerName::new(&n));
    match wild.and_then(|w| zone.nodes.get(&w)) {
        Some(node) => from_node(snap, zone, node, None, name, qtype, pick, ans),
        None => {
            // After a CNAME too: the rcode describes the last name (RFC 6604 section 2).
            ans.rcode = ResponseCode::NXDomain;
            ans.authority.push(soa_for_negative(zone));
            None
        }
    }
}

/// Answers from the node that owns (or, for a wildcard, synthesizes) `name`.
#[allow(clippy::too_many_arguments)]
fn from_node(
    snap: &Snapshot,
    zone: &Zone,
    node: &Node,
    bound: Option<(&LowerName, &Bound)>,
    name: &Name,
    qtype: RecordType,
    pick: Pick,
    ans: &mut Answer,
) -> Option<Name> {
    let owner = bound.map(|(l, _)| l);
    let bound = bound.map(|(_, b)| b);
    // Types that live beside a CNAME (RFC 4035 section 2.5: RRSIG and NSEC) are answered at
    // the node itself, as Knot answers them: NODATA here, never the CNAME.
    let beside_cname = matches!(qtype, RecordType::RRSIG | RecordType::NSEC);
    if let Some(c) = bound
        .and_then(|b| b.cname.as_ref())
        .filter(|_| !beside_cname)
    {
        // A name whose members are domain names: its chosen CNAME, as a static one.
        if c.servfail {
            ans.rcode = ResponseCode::ServFail;
            return None;
        }
        let records = chosen(c, owner, pick);
        let Some(RData::CNAME(target)) = records.first().map(|r| &r.data) else {
            ans.authority.push(soa_for_negative(zone)); // all down, answering NODATA
            return None;
        };
        push_owned(&mut ans.answer, records, name);
        return (!matches!(qtype, RecordType::CNAME | RecordType::ANY)).then(|| target.0.clone());
    }
    if bound
        .and_then(|b| b.choice(qtype))
        .is_some_and(|c| c.servfail)
    {
        ans.rcode = ResponseCode::ServFail;
        return None;
    }
    // The zone's sets are read out of their wire form; a bound name's records are borrowed.
    let records: Option<Cow<[Record]>> = if qtype == RecordType::ANY {
        any_set(node, bound, owner, pick, name)
    } else {
        match bound.and_then(|b| b.choice(qtype)) {
            Some(c) => Some(Cow::Borrowed(chosen(c, owner, pick))),
            None => node.get(qtype).map(|s| Cow::Owned(s.records(name))),
        }
    };
    if let Some(records) = records.filter(|r| !r.is_empty()) {
        for r in records.iter() {
            if let Some(target) = additional_target(&r.data) {
                add_addresses(snap, zone, target, pick, &mut ans.additional);
            }
        }
        match records {
            // Read out of the zone already owned by `name`.
            Cow::Owned(v) => ans.answer.extend(v),
            Cow::Borrowed(r) => push_owned(&mut ans.answer, r, name),
        }
        return None;
    }
    if let Some(cname) = node.get(RecordType::CNAME).filter(|_| !beside_cname) {
        let records = cname.records(name);
        let target = match records.first().map(|r| &r.data) {
            Some(RData::CNAME(target)) => Some(target.0.clone()),
            _ => None,
        };
        ans.answer.extend(records);
        return target;
    }
    ans.authority.push(soa_for_negative(zone));
    None
}

/// The records of `owner`'s chosen answer in `c` (none without an owner).
fn chosen<'c>(c: &'c Choice, l: Option<&LowerName>, pick: Pick) -> &'c [Record] {
    l.map_or(&[], |l| c.get(pick(l, c)))
}

/// The answer to ANY at `node` (RFC 8482 section 4.1: one RRset, the lowest type there,
/// a bound name's addresses included).
fn any_set<'a>(
    node: &Node,
    bound: Option<&'a Bound>,
    owner: Option<&LowerName>,
    pick: Pick,
    name: &Name,
) -> Option<Cow<'a, [Record]>> {
    // RFC 8482 section 4.1: one RRset, here the lowest type at the node.
    let zone_set = node
        .rrsets
        .iter()
        .filter(|s| !s.is_empty())
        .min_by_key(|s| u16::from(s.rtype));
    let bound_set = bound
        .into_iter()
        .flat_map(|b| {
            [
                (1u16, chosen(&b.a, owner, pick)),
                (28u16, chosen(&b.aaaa, owner, pick)),
            ]
        })
        .filter(|(_, r)| !r.is_empty())
        .min_by_key(|(t, _)| *t);
    match (zone_set, bound_set) {
        (Some(z), Some((t, _))) if u16::from(z.rtype) < t => Some(Cow::Owned(z.records(name))),
        (_, Some((_, r))) => Some(Cow::Borrowed(r)),
        (Some(z), None) => Some(Cow::Owned(z.records(name))),
        (None, None) => None,
    }
}

/// Appends `records` with their owner set to the name as asked (which may be synthesized).
fn push_owned(out: &mut Vec<Record>, records: &[Record], name: &Name) {
    out.extend(records.iter().map(|r| {
        let mut r = r.clone();
        r.name = name.clone();
        r
    }));
}

/// A referral: the delegation's NS set, and the addresses of its in-zone name servers.
fn referral(
    snap: &Snapshot,
    zone: &Zone,
    (key, cut): (&LowerName, &Node),
    pick: Pick,
    ans: &mut Answer,
) {
    let ns = cut.records(key, RecordType::NS);
    if ns.is_empty() {
        return;
    }
    // AA stays set only when the referral follows an authoritative CNAME (as Knot and NSD do).
    ans.aa = !ans.answer.is_empty();
    for r in &ns {
        if let RData::NS(target) = &r.data {
            add_addresses(snap, zone, &target.0, pick, &mut ans.additional);
        }
    }
    ans.authority.extend(ns);
}

/// The name whose addresses belong in the additional section (RFC 1035 section 3.3).
fn additional_target(data: &RData) -> Option<&Name> {
    match data {
        RData::NS(n) => Some(&n.0),
        RData::MX(mx) => Some(&mx.exchange),
        RData::SRV(srv) => Some(&srv.target),
        _ => None,
    }
}

/// Adds the in-zone A and AAAA records of `target` to the additional section, once.
fn add_addresses(snap: &Snapshot, zone: &Zone, target: &Name, pick: Pick, out: &mut Vec<Record>) {
    let lt = LowerName::new(target);
    if !zone.origin.zone_of(&lt) {
        return;
    }
    let bound = snap.bound.get(&lt);
    let node = zone.nodes.get(&lt);
    for rtype in [RecordType::A, RecordType::AAAA] {
        let records = match bound.and_then(|b| b.choice(rtype)) {
            Some(c) => Cow::Borrowed(c.get(pick(&lt, c))),
            None => Cow::Owned(node.map_or_else(Vec::new, |n| n.records(&lt, rtype))),
        };
        for r in records.iter() {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
    }
}

/// NODATA at a name of `zone` with no CNAME: the zone's SOA alone, in authority.
pub fn nodata(zone: &Zone) -> Answer {
    let mut ans = Answer::new();
    ans.authority.push(soa_for_negative(zone));
    ans
}

/// The zone's SOA with the negative-caching TTL (RFC 2308 section 3).
fn soa_for_negative(zone: &Zone) -> Record {
    let mut soa = zone.soa.clone();
    soa.ttl = zone.negative_ttl;
    soa
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::snapshot::Zones;
    use crate::zone::parse_zone;
    use std::path::Path;
    use std::sync::Arc;

    fn snap() -> Snapshot {
        let text = "$TTL 3600\n@ SOA ns hm 1 2 3 4 300\n NS ns\nns A 192.0.2.1\nwww A 192.0.2.2\n\
                    a CNAME www\nd CNAME gone\n*.w TXT \"x\"\nsub NS ns.sub\nns.sub A 192.0.2.3\n\
                    x.y.z A 192.0.2.4\n";
        let z = parse_zone(text, Path::new("t.zone"), Name::from_ascii("t.").unwrap()).unwrap();
        Snapshot {
            zones: Arc::new(Zones::new(vec![z])),
            ..Default::default()
        }
    }

    fn q(name: &str, t: RecordType) -> Answer {
        lookup(&snap(), &Name::from_ascii(name).unwrap(), t)
    }

    #[test]
    fn nxdomain_carries_soa_with_negative_ttl() {
        let a = q("nope.t.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert!(a.aa);
        assert_eq!(a.authority[0].ttl, 300);
    }

    #[test]
    fn empty_non_terminal_is_nodata() {
        let a = q("y.z.t.", RecordType::A);
        assert_eq!(
            (a.rcode, a.answer.len(), a.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
    }

    #[test]
    fn cname_to_missing_name_is_nxdomain_with_the_cname() {
        let a = q("d.t.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert_eq!(a.answer.len(), 1);
    }

    #[test]
    fn cname_chain_is_followed() {
        let a = q("a.t.", RecordType::A);
        assert_eq!(a.answer.len(), 2);
        assert_eq!(a.answer[1].record_type(), RecordType::A);
    }

    #[test]
    fn wildcard_synthesizes_owner_and_gives_nodata_for_other_types() {
        let a = q("k.w.t.", RecordType::TXT);
        assert_eq!(a.answer[0].name.to_string(), "k.w.t.");
        let a = q("k.w.t.", RecordType::A);
        assert_eq!((a.rcode, a.answer.len()), (ResponseCode::NoError, 0));
    }

    #[test]
    fn referral_clears_aa_and_adds_glue() {
        let a = q("deep.sub.t.", RecordType::A);
        assert!(!a.aa);
        assert_eq!(a.authority[0].record_type(), RecordType::NS);
        assert_eq!(a.additional.len(), 1);
        let ds = q("sub.t.", RecordType::DS);
        assert!(ds.aa && ds.authority[0].record_type() == RecordType::SOA);
    }

    #[test]
    fn names_outside_every_zone_are_refused() {
        assert_eq!(
            q("example.org.", RecordType::A).rcode,
            ResponseCode::Refused
        );
    }
}
