//! The fast query path: answers prepared before the query arrives.
//!
//! When the engine publishes a snapshot it also builds an [`AnswerCache`]: for every name in
//! every zone, the response to each type, encoded once. The templates are made by the general
//! path itself ([`crate::dns::lookup::lookup`]), so the two cannot disagree on content; only the
//! encoding differs. A template does not depend on the query name: every owner name that is a
//! suffix of the question is a compression pointer into the question, patched per query.
//!
//! Per query the work is: parse the header and question into a lowercase stack buffer, one
//! hash lookup (a walk up the name's suffixes for a missing name), then copy the question and
//! the template, patch ID, flags and pointers, and append the OPT record. Anything this path
//! does not cover (other opcodes or classes, EDNS versions above 0, unusual section counts,
//! zone transfers, names below a CNAME-only node with a rare type, a response too large for
//! the client's UDP size) makes [`AnswerCache::answer`] return false, and
//! [`crate::dns::handle`] answers it.
//!
//! ```text
//! qname found ── type listed ──▶ that template
//!      │          └── else ───▶ the node's `other` template (NODATA or referral), if any
//! qname missing ─▶ closest existing ancestor E ─▶ E's `below` template:
//!                  referral (E at or under a cut) | wildcard *.E answers | NXDOMAIN
//! no ancestor ───▶ REFUSED
//! ```

mod builder;
mod encode;
mod fixed;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::dns::dnssec::{self, Store};
use crate::dns::lookup::{self, lookup_with, Answer};
use crate::dns::snapshot::{Choice, Selector, Snapshot};
use crate::steer::topology::{ecs_len, Client};
use crate::zone::{within, Node, RrSet, Zone, Zones};
use builder::Builder;
use encode::encode;
use wire::{parse, write, write_set, Parsed};

/// The longest wire-format name (RFC 1035 section 3.1).
const MAX_NAME: usize = 255;
/// Up to this many zones, a name's zone is found by comparing it with each origin.
const FEW_ZONES: usize = 8;
/// The label used to make a name that exists nowhere, for wildcard and NXDOMAIN templates.
const SYNTHETIC_LABEL: &str = "gtmd--synthetic--0";
/// Types answered from templates at a CNAME node (other types there use the general path).
const CNAME_NODE_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::PTR,
    RecordType::DS,
    RecordType::ANY,
];

/// One precomputed response body. Equal templates are shared (see [`Builder::share`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    /// The header flags word without ID-dependent bits: AA and the low 4 bits of the rcode.
    flags: u16,
    counts: [u16; 3],
    /// Answer, authority and additional records, encoded.
    body: Vec<u8>,
    /// Positions in `body` of compression pointers, and where each points: into the question
    /// or into the body, both of which move with the question's length.
    fixups: Vec<(u16, Fix)>,
    /// Whether the response's OPT carries Extended DNS Error 20 (REFUSED, not authoritative).
    ede_not_auth: bool,
    /// Where in `body` a zone's SOA serial is, and which zone's (its position in
    /// [`crate::zone::Zones::iter`]): patched per query with the publication's serial, so
    /// that answers shared across publications carry the current one.
    serial: Option<(u16, u16)>,
    /// Where in `body` the RDATA of each RRSIG of that SOA is: patched with the signatures
    /// of the publication's SOA.
    soa_sigs: Vec<u16>,
    /// What answers a query with the DO bit.
    for_do: ForDo,
}

/// Where a compression pointer in a template points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fix {
    /// The question's suffix of this wire length (0: the whole question name, offset 12).
    Question(u8),
    /// This offset in the template's body.
    Body(u16),
}

/// The answer to a query with the DO bit, from a template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
enum ForDo {
    /// The zone is not signed: the same answer.
    #[default]
    Same,
    /// This signed answer.
    Signed(Arc<Template>),
    /// The signed answer depends on the query name: the general path signs it.
    General,
}

/// The response to one type: fixed, or one of several picked per query by a bound name's
/// policy (the thresholds are [`crate::dns::snapshot::Choice::cum`]).
#[derive(Debug)]
enum Answers {
    One(Arc<Template>),
    /// Boxed: most names have one answer per type, and this keeps each type's slot small.
    Pick(Box<(Vec<Arc<Template>>, Arc<Selector>)>),
}

impl Answers {
    /// The template for `client`, and the ECS scope of that choice.
    fn get(&self, client: Client) -> (&Template, u8) {
        match self {
            Answers::One(t) => (t, 0),
            Answers::Pick(p) => {
                let (ts, sel) = &**p;
                let (i, scope) = sel.pick(Some(client), crate::dns::snapshot::random_u32());
                (&ts[i.min(ts.len() - 1)], scope)
            }
        }
    }
}

/// What a name that exists answers.
#[derive(Debug, Default)]
struct NodeAnswers {
    /// Only the types whose answer is not `other`'s.
    types: Box<[(u16, Answers)]>,
    /// For any type not in `types`; `None` sends such queries to the general path.
    other: Option<Arc<Template>>,
}

impl NodeAnswers {
    fn get(&self, qtype: u16, client: Client) -> Option<(&Template, u8)> {
        match self.types.iter().find(|(t, _)| *t == qtype) {
            Some((_, a)) => Some(a.get(client)),
            None => self.other.as_deref().map(|t| (t, 0)),
        }
    }
}

/// What a missing name below an existing one answers.
#[derive(Debug)]
enum Below {
    Same(Arc<Template>),
    Wildcard(Arc<NodeAnswers>),
}

#[derive(Debug)]
struct Entry {
    answers: NodeAnswers,
    below: Below,
    /// A pool-bound name's count of the resolvers asking for it.
    seen: Option<Arc<crate::dns::resolvers::Resolvers>>,
}

/// The answers that do not depend on pool health, built once per set of zones and shared by
/// every snapshot: a health change rebuilds only the live entries (see [`AnswerCache`]).
#[derive(Debug)]
pub struct Fixed {
    names: HashMap<Box<[u8]>, Slot, RandomState>,
    refused: Arc<Template>,
    /// Each zone's NXDOMAIN template, in the order of `Zones::iter`.
    nx: Vec<Arc<Template>>,
    /// The names whose answers hold pool records, with their zone's index.
    live: Vec<(LowerName, usize)>,
    /// When the earliest signature in these answers is due to be made again (Unix seconds).
    resign_at: u32,
    /// The zones: their plain names (see [`plain`]) have no entry and are answered from the
    /// zone's own sets.
    zones: Arc<Zones>,
    /// Each zone's origin in lowercase wire form with its index, longest first.
    origins: Vec<(Box<[u8]>, usize)>,
    /// With many zones, the same, to look a name's suffixes up.
    by_origin: HashMap<Box<[u8]>, usize, RandomState>,
    /// Each zone's NODATA template for its plain names (`None`: the zone has none).
    nodata: Vec<Option<Arc<Template>>>,
}

/// What answers a query on the prepared path.
enum Found<'a> {
    /// This template, with the ECS scope of its choice.
    Template(&'a Template, u8),
    /// A plain name's set, written as the zone keeps it.
    Set(&'a RrSet),
}

#[derive(Debug)]
enum Slot {
    Ready(Entry),
    /// The entry is in [`AnswerCache::live`].
    Live,
}

/// Every prepared answer of one snapshot, keyed by lowercase wire-format name: the shared
/// fixed part, and the entries whose answers contain pool records (pool-bound names, CNAMEs
/// to them, MX/SRV/NS targets that are bound), rebuilt at each publication.
#[derive(Debug, Default)]
pub struct AnswerCache {
    fixed: Option<Arc<Fixed>>,
    live: HashMap<Box<[u8]>, Entry, RandomState>,
    /// Each zone's serial in this publication (empty: the templates' own).
    serials: Vec<u32>,
    /// Each zone's SOA signatures in this publication (empty for an unsigned zone): the RDATA
    /// of each RRSIG, patched into signed answers that carry the SOA.
    soa_sigs: Vec<Vec<Vec<u8>>>,
    /// When the earliest signature in these answers is due to be made again (Unix seconds).
    resign_at: u32,
    /// The snapshot's [`Snapshot::id`]: signed answers the general path made for it are
    /// replayed under this id.
    id: u64,
}

impl AnswerCache {
    /// Prepares every answer of `snap`. Cost grows with the zones' size.
    pub fn build(snap: &Snapshot) -> Self {
        Self::with_fixed(Arc::new(Fixed::build(snap)), snap)
    }

    /// Prepares the answers of `snap` reusing `fixed` (built from a snapshot with the same
    /// zones and bound names): only the live entries are computed. Runs when health changes.
    pub fn with_fixed(fixed: Arc<Fixed>, snap: &Snapshot) -> Self {
        let b = Builder::new(snap);
        let zones: Vec<&Zone> = snap.zones.iter().collect();
        let mut live = HashMap::with_hasher(RandomState::default());
        for (lname, zi) in &fixed.live {
            let (zone, nx) = (zones[*zi], &fixed.nx[*zi]);
            if let Some(node) = zone.nodes.get(lname) {
                let (mut entry, _) = b.entry(zone, lname, node, nx, None);
                entry.seen = snap.bound.get(lname).and_then(|b| b.resolvers.clone());
                live.insert(
                    wire_lower(&Name::from(lname.clone())).into_boxed_slice(),
                    entry,
                );
            }
        }
        let soa_sigs = zones
            .iter()
            .enumerate()
            .map(|(zi, z)| match (&b.stores[zi], &z.keys) {
                (Some(store), Some(keys)) => {
                    let serial = snap.serial(zi).unwrap_or(0);
                    dnssec::soa_sigs(z, keys, serial, store, &b.min_exp)
                }
                _ => Vec::new(),
            })
            .collect();
        let resign_at = resign_time(b.finish()).min(fixed.resign_at);
        Self {
            fixed: Some(fixed),
            live,
            serials: snap.versions.iter().map(|v| v.serial).collect(),
            soa_sigs,
            resign_at,
            id: snap.id,
        }
    }

    /// Whether a signature in these answers is due to be made again at `now` (Unix seconds).
    pub fn resign_due(&self, now: u32) -> bool {
        self.fixed.is_some()
            && self.resign_at != u32::MAX
            && (now.wrapping_sub(self.resign_at) as i32) >= 0
    }

    /// [`AnswerCache::build`] with an entry for every name, none answered as plain.
    #[cfg(test)]
    pub(crate) fn build_all(snap: &Snapshot) -> Self {
        Self::with_fixed(Arc::new(Fixed::build_with(snap, false)), snap)
    }

    /// How many names have an entry (the rest are plain, or wildcards).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.fixed.as_ref().map_or(0, |f| f.names.len())
    }

    /// How many templates the fixed answers hold, counting a shared one once.
    #[cfg(test)]
    pub(crate) fn distinct_templates(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let add = |seen: &mut std::collections::HashSet<*const Template>, a: &NodeAnswers| {
            for (_, x) in &a.types {
                match x {
                    Answers::One(t) => {
                        seen.insert(Arc::as_ptr(t));
                    }
                    Answers::Pick(p) => seen.extend(p.0.iter().map(Arc::as_ptr)),
                }
            }
            seen.extend(a.other.iter().map(Arc::as_ptr));
        };
        for slot in self.fixed.iter().flat_map(|f| f.names.values()) {
            if let Slot::Ready(e) = slot {
                add(&mut seen, &e.answers);
                match &e.below {
                    Below::Same(t) => {
                        seen.insert(Arc::as_ptr(t));
                    }
                    Below::Wildcard(w) => add(&mut seen, w),
                }
            }
        }
        seen.len()
    }

    /// The part to reuse for the next snapshot with the same zones.
    pub fn fixed(&self) -> Option<&Arc<Fixed>> {
        self.fixed.as_ref()
    }

    /// Answers `query` into `out` if this path covers it: over UDP within the client's size
    /// and `udp_payload`, over TCP (`tcp`) within 65,535 bytes. Returns false when the general
    /// path must answer.
    pub fn answer(
        &self,
        query: &[u8],
        source: std::net::IpAddr,
        udp_payload: u16,
        tcp: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(p) = parse(query) else { return false };
        let ecs = p.edns.as_ref().and_then(|e| e.ecs);
        let client = ecs.unwrap_or_else(|| Client::from_source(source));
        let Some(found) = self.find(&p, client, source) else {
            return false;
        };
        let limit = if tcp {
            u16::MAX as usize
        } else {
            crate::config::udp_limit(p.edns.as_ref().map(|e| e.payload), udp_payload)
        };
        let (tpl, scope) = match found {
            Found::Template(t, scope) => (t, scope),
            Found::Set(set) => {
                let count = set.len();
                // Each record: a pointer to the question, type, class, TTL, then the length and
                // data as kept.
                let body = 10 * count + set.raw().len();
                let opt_len = p.edns.as_ref().map_or(0, |_| 11 + ecs.map_or(0, ecs_len));
                if p.question_end + body + opt_len > limit {
                    return false;
                }
                write_set(query, &p, set, count as u16, udp_payload, out);
                return true;
            }
        };
        let tpl = match (&tpl.for_do, p.edns.as_ref().is_some_and(|e| e.dnssec_ok)) {
            (_, false) | (ForDo::Same, true) => tpl,
            (ForDo::Signed(t), true) => t,
            // Signed per query name: the general path's answer, if it was kept.
            (ForDo::General, true) => {
                return self.id != 0 && crate::dns::dnssec::replay(self.id, query, limit, out)
            }
        };
        let opt_len = if p.edns.is_some() {
            11 + if tpl.ede_not_auth { 6 } else { 0 } + ecs.map_or(0, ecs_len)
        } else {
            0
        };
        if p.question_end + tpl.body.len() + opt_len > limit {
            return false;
        }
        write(
            query,
            &p,
            tpl,
            scope,
            udp_payload,
            (&self.serials, &self.soa_sigs),
            out,
        );
        true
    }

    fn find(&self, p: &Parsed, client: Client, source: std::net::IpAddr) -> Option<Found<'_>> {
        let fixed = self.fixed.as_ref()?;
        let get = |k: &[u8]| match fixed.names.get(k)? {
            Slot::Ready(e) => Some(e),
            Slot::Live => self.live.get(k),
        };
        let tpl = |(t, scope)| Found::Template(t, scope);
        let name = &p.qname[..p.qlen];
        if let Some(e) = get(name) {
            let found = e.answers.get(p.qtype, client);
            if let Some(seen) = &e.seen {
                seen.mark(source);
                if let Some((t, _)) = found {
                    seen.count(p.qtype, (t.flags & 0x000f) as u8);
                }
            }
            return found.map(tpl);
        }
        let Some(zi) = fixed.zone_of(name) else {
            return Some(Found::Template(&fixed.refused, 0));
        };
        let zone = fixed.zones.get(zi)?;
        if let Some(nodata) = &fixed.nodata[zi] {
            // An existing name without an entry is plain, or a wildcard asked by its own name
            // (answered below, from its parent's entry).
            if let Some(node) = zone.nodes.get_wire(name).filter(|_| !is_wild(name)) {
                return Some(plain_answer(node, p.qtype, nodata));
            }
        }
        // Walk up: strip one label at a time until an existing name is found.
        let mut at = 0usize;
        while name[at] != 0 {
            at += 1 + name[at] as usize;
            let tail = &name[at..];
            if let Some(e) = get(tail) {
                return match &e.below {
                    Below::Same(t) => Some(Found::Template(t, 0)),
                    Below::Wildcard(w) => w.get(p.qtype, client).map(tpl),
                };
            }
            if zone.nodes.get_wire(tail).is_some() {
                // A plain name's missing children are NXDOMAIN (it has no wildcard child). A
                // wildcard's are for the general path: it is their closest encloser, and
                // only a `*` child of its own would answer them (RFC 4592 section 2.2.1).
                return (!is_wild(tail)).then(|| Found::Template(&fixed.nx[zi], 0));
            }
        }
        Some(Found::Template(&fixed.refused, 0))
    }
}

/// A plain name's answer to `qtype`: its set of that type (for ANY, its lowest type's, as
/// RFC 8482 section 4.1 allows), else NODATA.
fn plain_answer<'a>(node: &'a Node, qtype: u16, nodata: &'a Template) -> Found<'a> {
    let set = if qtype == u16::from(RecordType::ANY) {
        node.rrsets
            .iter()
            .filter(|s| !s.is_empty())
            .min_by_key(|s| u16::from(s.rtype))
    } else {
        node.rrsets
            .iter()
            .find(|s| u16::from(s.rtype) == qtype && !s.is_empty())
    };
    match set {
        Some(s) => Found::Set(s),
        None => Found::Template(nodata, 0),
    }
}

/// Whether a lowercase wire name's first label is `*`.
fn is_wild(wire: &[u8]) -> bool {
    wire.starts_with(&[1, b'*'])
}

/// Record types answered by their set alone, written as the zone keeps it: no additional
/// section (NS, MX, SRV), no name in the RDATA that answers compress (NS, CNAME, PTR, MX,
/// SOA), no chain to follow (CNAME, DNAME), no DNSSEC meaning.
fn plain_type(t: RecordType) -> bool {
    !matches!(
        t,
        RecordType::NS
            | RecordType::MX
            | RecordType::SRV
            | RecordType::CNAME
            | RecordType::DNAME
            | RecordType::SOA
            | RecordType::PTR
            | RecordType::DS
            | RecordType::RRSIG
            | RecordType::NSEC
            | RecordType::NSEC3
            | RecordType::NSEC3PARAM
            | RecordType::DNSKEY
            | RecordType::CDS
            | RecordType::CDNSKEY
    )
}

/// What decides, in one zone, whether a name is plain.
struct PlainCheck<'a> {
    zone: &'a Zone,
    origin: Vec<u8>,
    /// Names at or below which the NODATA answer compresses differently: the suffixes, below
    /// the apex, of the SOA's MNAME and RNAME (a question named `ns1.zone.` points the MNAME
    /// at itself).
    soa_suffixes: Vec<Vec<u8>>,
    /// Every pool-bound name, in lowercase wire form.
    bound: &'a std::collections::HashSet<Vec<u8>, RandomState>,
}

impl PlainCheck<'_> {
    /// Whether the name `wire` is in an unsigned zone, not the apex, not pool-bound, not at or
    /// below a cut, without a wildcard child, and not under an SOA name (see `soa_suffixes`):
    /// its NODATA answer is then the zone's, whatever its types. Such a name with only
    /// [`plain_type`] sets is plain: its answers are its sets and the zone's NODATA; below it,
    /// NXDOMAIN.
    fn plain_name(&self, wire: &[u8]) -> bool {
        if self.zone.keys.is_some()
            || wire == self.origin.as_slice()
            || self.bound.contains(wire)
            || self.soa_suffixes.iter().any(|s| within(wire, s))
        {
            return false;
        }
        let mut wild = [0u8; MAX_NAME + 2];
        wild[..2].copy_from_slice(&[1, b'*']);
        wild[2..2 + wire.len()].copy_from_slice(wire);
        if wire.len() + 2 <= MAX_NAME && self.zone.nodes.get_wire(&wild[..2 + wire.len()]).is_some()
        {
            return false;
        }
        !self.zone.has_cuts()
            || self
                .zone
                .delegation_above(&crate::zone::name_of(wire))
                .is_none()
    }
}

/// The suffixes of `name` strictly below `origin`, in lowercase wire form.
fn suffixes_below(name: &Name, origin: &LowerName) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = LowerName::new(name);
    while origin.zone_of(&cur) && cur != *origin {
        out.push(wire_lower(&Name::from(cur.clone())));
        cur = cur.base_name();
    }
    out
}

/// When signatures expiring at `min_exp` are due to be made again (`u32::MAX`: none).
fn resign_time(min_exp: u32) -> u32 {
    if min_exp == u32::MAX {
        u32::MAX
    } else {
        min_exp.wrapping_sub(dnssec::REFRESH)
    }
}

fn wildcard_of<'z>(
    zone: &'z crate::zone::Zone,
    lname: &LowerName,
) -> Option<&'z crate::zone::Node> {
    let w = Name::from(lname.clone()).prepend_label("*").ok()?;
    zone.nodes.get(&LowerName::new(&w))
}

fn synthetic(parent: &Name) -> Name {
    parent
        .prepend_label(SYNTHETIC_LABEL)
        .unwrap_or_else(|_| parent.clone())
}

/// The wire form of `name`, lowercased.
fn wire_lower(name: &Name) -> Vec<u8> {
    crate::zone::wire_of(name, &mut [0; MAX_NAME]).to_vec()
}
