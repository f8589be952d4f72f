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

/// Computes entries, noting whether any answer touched a pool-bound name's records.
struct Builder<'a> {
    snap: &'a Snapshot,
    touched: std::cell::Cell<bool>,
    /// Per zone (in the order of `Zones::iter`), the signature cache of a signed zone.
    stores: Vec<Option<Store<'a>>>,
    /// The earliest expiry of the signatures used.
    min_exp: std::cell::Cell<u32>,
    /// Every template made so far, to share equal ones: most names' NODATA and DS answers,
    /// and a one-type name's ANY answer, are byte for byte those of other names (a template
    /// holds no query name), so a zone of 100,000 names keeps a handful of them, not 100,000.
    made: std::cell::RefCell<std::collections::HashSet<Arc<Template>, RandomState>>,
}

impl<'a> Builder<'a> {
    fn new(snap: &'a Snapshot) -> Self {
        let stores = snap
            .zones
            .iter()
            .map(|z| z.keys.as_deref().map(Store::build))
            .collect();
        Builder {
            snap,
            touched: Default::default(),
            stores,
            min_exp: std::cell::Cell::new(u32::MAX),
            made: Default::default(),
        }
    }

    /// `t`, or the equal template made before it.
    fn share(&self, mut t: Template) -> Arc<Template> {
        let mut made = self.made.borrow_mut();
        if let Some(old) = made.get(&t) {
            return old.clone();
        }
        // Kept for the zone's life: without the room the vectors grew into.
        t.body.shrink_to_fit();
        t.fixups.shrink_to_fit();
        t.soa_sigs.shrink_to_fit();
        let t = Arc::new(t);
        made.insert(t.clone());
        t
    }

    /// Ends the build: each signed zone's cache drops what recent builds did not use.
    fn finish(&self) -> u32 {
        self.stores.iter().flatten().for_each(Store::finish);
        self.min_exp.get()
    }

    /// The template of `ans`, the answer to `qname`/`qtype` (see [`encode`]), with its
    /// signed form when the zone is signed.
    fn template(
        &self,
        ans: &Answer,
        qname: &Name,
        qtype: RecordType,
        base: Option<&Name>,
    ) -> Template {
        let mut t = encode(ans, qname, base, &self.snap.zones);
        if self.stores.iter().all(Option::is_none) {
            return t; // no zone is signed
        }
        let zi = self.snap.zones.index_for(&LowerName::new(qname), qtype);
        let Some((zi, store)) = zi.and_then(|zi| Some((zi, self.stores.get(zi)?.as_ref()?))) else {
            return t;
        };
        let Some(zone) = self.snap.zones.get(zi) else {
            return t;
        };
        let signed = dnssec::sign(
            self.snap,
            zone,
            qname,
            qtype,
            ans.clone(),
            store,
            &self.min_exp,
        );
        let synthetic = |r: &Record| {
            r.name
                .iter()
                .any(|l| l.eq_ignore_ascii_case(SYNTHETIC_LABEL.as_bytes()))
        };
        let per_query = signed
            .answer
            .iter()
            .chain(&signed.authority)
            .chain(&signed.additional)
            .any(synthetic);
        t.for_do = if per_query {
            ForDo::General
        } else {
            ForDo::Signed(Arc::new(encode(&signed, qname, base, &self.snap.zones)))
        };
        t
    }

    /// The answer with every bound name's first choice.
    fn lookup(&self, name: &Name, t: RecordType) -> Answer {
        self.lookup_forcing(name, t, None).0
    }

    /// The answer with `force` (a bound name's choice, by address, and the index in it) and
    /// every other bound name's first choice; also the first choice met that has several
    /// answers, if any.
    fn lookup_forcing(
        &self,
        name: &Name,
        t: RecordType,
        force: Option<(*const Choice, usize)>,
    ) -> (Answer, Option<&Choice>) {
        let varying = std::cell::RefCell::new(None);
        let pick = |l: &LowerName, c: &Choice| {
            let p = c as *const Choice;
            if c.sets.len() > 1 && varying.borrow().is_none() {
                *varying.borrow_mut() = Some((l.clone(), p));
            }
            match force {
                Some((f, i)) if f == p => i,
                _ => 0,
            }
        };
        let a = lookup_with(self.snap, name, t, &pick);
        let bound = |r: &Record| self.snap.bound.contains_key(&LowerName::new(&r.name));
        if !self.snap.bound.is_empty()
            && a.answer
                .iter()
                .chain(&a.authority)
                .chain(&a.additional)
                .any(bound)
        {
            self.touched.set(true);
        }
        // The choice met, found again in the snapshot by its owner name.
        let choice = varying.into_inner().and_then(|(l, p)| {
            let b = self.snap.bound.get(&l)?;
            b.choices().map(|(_, c)| c).find(|c| std::ptr::eq(*c, p))
        });
        (a, choice)
    }

    /// The entry of one existing name, and whether it depends on pool health. `nodata` is the
    /// zone's NODATA template when the name passes [`PlainCheck::plain_name`]: its answers
    /// that are NODATA (see [`Builder::node_answers`]) are that template, not made again.
    fn entry(
        &self,
        zone: &Zone,
        lname: &LowerName,
        node: &Node,
        nx: &Arc<Template>,
        nodata: Option<&Arc<Template>>,
    ) -> (Entry, bool) {
        self.touched.set(self.snap.bound.contains_key(lname));
        let name = Name::from(lname.clone());
        let types = node.rrsets.iter().map(|s| s.rtype);
        let chase = self.cname_types(zone, node);
        let any = zone.keys.is_none();
        let answers = self.node_answers(&name, types, &name, any, chase, nodata);
        let below = if zone.delegation_above(lname).is_some() {
            // Every name below a cut, whatever its type, gets the referral.
            let s = synthetic(&name);
            let ans = self.lookup(&s, RecordType::A);
            Below::Same(self.share(self.template(&ans, &s, RecordType::A, Some(&name))))
        } else {
            match wildcard_of(zone, lname) {
                Some(wnode) => {
                    let s = synthetic(&name);
                    let types = wnode.rrsets.iter().map(|r| r.rtype);
                    let chase = self.cname_types(zone, wnode);
                    let answers = self.node_answers(&s, types, &name, false, chase, None);
                    Below::Wildcard(Arc::new(answers))
                }
                None => Below::Same(nx.clone()),
            }
        };
        (
            Entry {
                answers,
                below,
                seen: None,
            },
            self.touched.get(),
        )
    }

    /// For a node with a CNAME in an unsigned zone: the types whose answers there may differ
    /// from one another. Every other type is chased to a target that lacks it, so all of them
    /// answer alike (the CNAME, then NODATA or the CNAME alone), and one template (`other`)
    /// serves them. `None` when that is not plain from the target alone (a chain, a pool-bound or
    /// missing target, a cut): [`CNAME_NODE_TYPES`] are prepared and the rest left to the
    /// general path.
    fn cname_types(&self, zone: &Zone, node: &Node) -> Option<Vec<RecordType>> {
        if zone.keys.is_some() {
            return None;
        }
        let target = match node.get(RecordType::CNAME)?.data().next()? {
            RData::CNAME(c) => LowerName::new(&c.0),
            _ => return None,
        };
        // RRSIG and NSEC are answered at the node itself (see `lookup::from_node`).
        let mut types = vec![
            RecordType::CNAME,
            RecordType::ANY,
            RecordType::RRSIG,
            RecordType::NSEC,
        ];
        if !zone.origin.zone_of(&target) {
            return Some(types); // not chased: the CNAME alone
        }
        if self.snap.zones.index_of(&target) != self.snap.zones.index_of(&zone.origin)
            || self.snap.bound.contains_key(&target)
            || zone.delegation_above(&target).is_some()
        {
            return None;
        }
        let t = zone.nodes.get(&target)?;
        if t.get(RecordType::CNAME).is_some() {
            return None;
        }
        types.extend(t.rrsets.iter().map(|s| s.rtype));
        Some(types)
    }

    /// The answers of one node for its types and the rest. For a wildcard, `qname` is a synthetic
    /// name below the closest encloser `suffix_base`; for a node, both are its name. With
    /// `any_is_its_type`, a node of one type answers ANY as that type (RFC 8482 section 4.1:
    /// the lowest type there), without a lookup of its own. With `nodata` (the zone's NODATA,
    /// for a name that is plain but for its types, in an unsigned zone), the answers known to
    /// be NODATA are that template: any unlisted type at a node without a CNAME, and RRSIG and
    /// NSEC at a CNAME (answered at the node itself); a CNAME's ANY is its CNAME answer.
    fn node_answers(
        &self,
        qname: &Name,
        present: impl Iterator<Item = RecordType>,
        suffix_base: &Name,
        any_is_its_type: bool,
        chase: Option<Vec<RecordType>>,
        nodata: Option<&Arc<Template>>,
    ) -> NodeAnswers {
        let lname = LowerName::new(qname);
        let bound = self.snap.bound.get(&lname);
        let is_bound = bound.is_some();
        let mut types: Vec<RecordType> = present.collect();
        let only = (any_is_its_type && !is_bound && types.len() == 1).then(|| types[0]);
        let is_cname =
            types.contains(&RecordType::CNAME) || bound.is_some_and(|b| b.cname.is_some());
        // A static CNAME whose chase is known answers every other type alike.
        let chase = chase.filter(|_| is_cname && !is_bound);
        let chased = chase.is_some();
        if is_cname {
            types = chase.unwrap_or_else(|| CNAME_NODE_TYPES.to_vec());
        } else {
            // DS is asked of delegations (and apexes); elsewhere it is NODATA, as `other`.
            if types.contains(&RecordType::NS) {
                types.push(RecordType::DS);
            }
            types.push(RecordType::ANY);
            if is_bound {
                types.extend([RecordType::A, RecordType::AAAA]);
            }
        }
        types.sort_by_key(|t| u16::from(*t));
        types.dedup();
        let tpl = |ans: &Answer, t| self.share(self.template(ans, qname, t, Some(suffix_base)));
        let mk = |t: RecordType| {
            let (ans, varying) = self.lookup_forcing(qname, t, None);
            let Some(choice) = varying else {
                return Answers::One(tpl(&ans, t));
            };
            let tpls = (0..choice.sets.len())
                .map(|i| tpl(&self.lookup_forcing(qname, t, Some((choice, i))).0, t))
                .collect();
            Answers::Pick(Box::new((tpls, choice.sel.clone())))
        };
        let unlisted = RecordType::Unknown(65280);
        let nodata = nodata.filter(|_| !is_bound);
        let other = match nodata {
            Some(n) if !is_cname => Some(n.clone()),
            _ => (!is_cname || chased).then(|| tpl(&self.lookup(qname, unlisted), unlisted)),
        };
        let mut made: Vec<(u16, Answers)> = Vec::with_capacity(types.len());
        let made_for = |made: &[(u16, Answers)], t: RecordType| {
            made.iter().find_map(|(x, a)| match a {
                Answers::One(tp) if *x == u16::from(t) => Some(tp.clone()),
                _ => None,
            })
        };
        for t in types {
            let same = match (only, nodata) {
                (Some(o), _) if t == RecordType::ANY && !is_cname => made_for(&made, o),
                (_, Some(n)) if is_cname => match t {
                    RecordType::RRSIG | RecordType::NSEC => Some(n.clone()),
                    RecordType::ANY => made_for(&made, RecordType::CNAME),
                    _ => None,
                },
                _ => None,
            };
            made.push((u16::from(t), same.map_or_else(|| mk(t), Answers::One)));
        }
        // A type answered as any unlisted one (a DS query at most names: NODATA) is left
        // to `other`.
        let same_as_other = |a: &Answers| match (a, &other) {
            (Answers::One(t), Some(o)) => Arc::ptr_eq(t, o),
            _ => false,
        };
        NodeAnswers {
            types: made
                .into_iter()
                .filter(|(_, a)| !same_as_other(a))
                .collect(),
            other,
        }
    }
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
            if let Some(seen) = &e.seen {
                seen.mark(source);
            }
            return e.answers.get(p.qtype, client).map(tpl);
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

impl Fixed {
    /// Builds every entry of `snap`, setting aside (as live) those that depend on pool health.
    pub fn build(snap: &Snapshot) -> Self {
        Self::build_with(snap, true)
    }

    /// [`Fixed::build`]. Without `shortcuts`, every name has an entry and each of its answers
    /// is made by a lookup: no plain names, no answers taken as the zone's NODATA (to compare
    /// both ways).
    fn build_with(snap: &Snapshot, shortcuts: bool) -> Self {
        let b = Builder::new(snap);
        let mut origins: Vec<(Box<[u8]>, usize)> = snap
            .zones
            .iter()
            .enumerate()
            .map(|(zi, z)| (wire_lower(&z.origin_name).into_boxed_slice(), zi))
            .collect();
        origins.sort_by_key(|(o, _)| std::cmp::Reverse(o.len()));
        let by_origin = if origins.len() > FEW_ZONES {
            origins.iter().cloned().collect()
        } else {
            HashMap::default()
        };
        let mut fixed = Fixed {
            names: HashMap::with_hasher(RandomState::default()),
            refused: Arc::new(encode(&Answer::refused(), &Name::root(), None, &snap.zones)),
            nx: Vec::new(),
            live: Vec::new(),
            resign_at: u32::MAX,
            zones: snap.zones.clone(),
            origins,
            by_origin,
            nodata: Vec::new(),
        };
        let bound = snap
            .bound
            .keys()
            .map(|l| wire_lower(&Name::from(l.clone())))
            .collect();
        for (zi, zone) in snap.zones.iter().enumerate() {
            let nx_base = synthetic(&zone.origin_name);
            let ans = b.lookup(&nx_base, RecordType::A);
            let nx = Arc::new(b.template(&ans, &nx_base, RecordType::A, Some(&zone.origin_name)));
            let check = PlainCheck {
                zone,
                origin: wire_lower(&zone.origin_name),
                soa_suffixes: match &zone.soa.data {
                    RData::SOA(soa) => [&soa.mname, &soa.rname]
                        .into_iter()
                        .flat_map(|n| suffixes_below(n, &zone.origin))
                        .collect(),
                    _ => Vec::new(),
                },
                bound: &bound,
            };
            // NODATA at a plain name: the zone's SOA, its owner a suffix of the question.
            let nodata = shortcuts.then(|| {
                let t = RecordType::Unknown(65280);
                b.share(b.template(&lookup::nodata(zone), &nx_base, t, Some(&nx_base)))
            });
            let mut plain_names = 0usize;
            for (wire, node) in zone.nodes.iter_wire() {
                // A name inside a more specific served zone is answered from that zone.
                if is_wild(wire) || fixed.zone_of(wire) != Some(zi) {
                    continue;
                }
                let plain_name = shortcuts && check.plain_name(wire);
                if plain_name && node.rrsets.iter().all(|s| plain_type(s.rtype)) {
                    plain_names += 1;
                    continue;
                }
                let lname = crate::zone::name_of(wire);
                let derive = nodata.as_ref().filter(|_| plain_name);
                let (entry, live) = b.entry(zone, &lname, node, &nx, derive);
                let key = wire.into();
                if live {
                    fixed.live.push((lname, zi));
                    fixed.names.insert(key, Slot::Live);
                } else {
                    fixed.names.insert(key, Slot::Ready(entry));
                }
            }
            let nodata = nodata.filter(|_| plain_names > 0);
            fixed.nodata.push(nodata);
            fixed.nx.push(nx);
        }
        fixed.names.shrink_to_fit();
        fixed.resign_at = resign_time(b.finish());
        fixed
    }

    /// The position of the zone with the longest origin that ends `name` (lowercase wire).
    fn zone_of(&self, name: &[u8]) -> Option<usize> {
        if self.by_origin.is_empty() {
            return self
                .origins
                .iter()
                .find(|(o, _)| within(name, o))
                .map(|&(_, zi)| zi);
        }
        let mut at = 0usize;
        loop {
            if let Some(&zi) = self.by_origin.get(&name[at..]) {
                return Some(zi);
            }
            if name[at] == 0 {
                return None;
            }
            at += 1 + name[at] as usize;
        }
    }
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

/// Encodes `ans` as a template for questions named `qname` (exactly, or when `suffix_base` is
/// given, any name ending in it). Owner names equal to `qname` point at the question;
/// owner names sharing a suffix with `suffix_base` point into the question's tail.
fn encode(ans: &Answer, qname: &Name, suffix_base: Option<&Name>, zones: &Zones) -> Template {
    let (mut qb, mut bb) = ([0; MAX_NAME], [0; MAX_NAME]);
    let q = crate::zone::wire_of(qname, &mut qb);
    let base = suffix_base.map(|b| crate::zone::wire_of(b, &mut bb));
    let mut t = Template {
        flags: (u16::from(ans.aa) << 10) | (u16::from(ans.rcode) & 0x0f),
        counts: [
            ans.answer.len() as u16,
            ans.authority.len() as u16,
            ans.additional.len() as u16,
        ],
        body: Vec::new(),
        fixups: Vec::new(),
        ede_not_auth: ans.rcode == ResponseCode::Refused,
        serial: None,
        soa_sigs: Vec::new(),
        for_do: ForDo::Same,
    };
    let mut seen = Seen::default();
    for r in ans
        .answer
        .iter()
        .chain(&ans.authority)
        .chain(&ans.additional)
    {
        let rdlen = encode_record(&mut t, r, q, base, &mut seen);
        if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data {
            if sig.input().type_covered == RecordType::SOA {
                t.soa_sigs.push((t.body.len() - rdlen) as u16);
            }
        }
        if r.record_type() == RecordType::SOA {
            // Uncompressed SOA RDATA ends with serial, refresh, retry, expire and minimum.
            let at = t.body.len() - 20;
            let zi = zones.index_of(&LowerName::new(&r.name));
            t.serial = zi.map(|zi| (at as u16, zi as u16));
        }
    }
    t
}

/// Names already in a template's body, for compression: each lowercase wire suffix and
/// where it starts in the body. The suffixes are slices of `names` (each name written, in
/// lowercase), at `(start, len)`.
#[derive(Default)]
struct Seen {
    names: Vec<u8>,
    tails: Vec<(u32, u16, u16)>,
}

impl Seen {
    /// Where in the body the suffix `tail` starts, if it is there.
    fn find(&self, tail: &[u8]) -> Option<u16> {
        self.tails
            .iter()
            .find(|&&(at, len, _)| &self.names[at as usize..at as usize + len as usize] == tail)
            .map(|&(_, _, pos)| pos)
    }
}

/// The highest body offset a compression pointer may target: with the header and the
/// longest question before the body, it stays below 0x4000.
const MAX_POINTER_BODY: usize = 0x3fff - 12 - 255 - 4;

/// Appends `name` to `t`'s body, compressed: its longest tail that is the question name,
/// a tail of the shared suffix `base` (or of `qname`), or a name already in the body
/// becomes a pointer (RFC 1035 section 4.1.4). Case is kept in what is written; tails match
/// without it.
///
/// With an empty `qname` the name is written whole and only recorded as a target.
fn put_name(t: &mut Template, name: &Name, qname: &[u8], base: Option<&[u8]>, seen: &mut Seen) {
    let mut lb = [0; MAX_NAME];
    let lower = crate::zone::wire_of(name, &mut lb);
    let (mut cased, mut n) = ([0u8; MAX_NAME], 0usize);
    for label in name.iter() {
        // A name fits 255 bytes in wire form (as `lower` does).
        cased[n] = label.len() as u8;
        cased[n + 1..n + 1 + label.len()].copy_from_slice(label);
        n += 1 + label.len();
    }
    let cased = &cased[..=n];
    let shared = base.unwrap_or(qname);
    let mut at = 0usize;
    let start = t.body.len();
    loop {
        let tail = &lower[at..];
        if tail.len() <= 1 || qname.is_empty() {
            t.body.extend_from_slice(cased);
            break;
        }
        let pointer = if tail == qname {
            Some(Fix::Question(0))
        } else if within(shared, tail) {
            Some(Fix::Question(tail.len() as u8))
        } else {
            seen.find(tail).map(Fix::Body)
        };
        if let Some(p) = pointer {
            t.body.extend_from_slice(&cased[..at]);
            t.fixups.push((t.body.len() as u16, p));
            t.body.extend_from_slice(&[0xc0, 0]);
            break;
        }
        at += 1 + lower[at] as usize;
    }
    // The labels written out become targets for later names.
    let from = seen.names.len() as u32;
    seen.names.extend_from_slice(lower);
    let mut i = 0usize;
    while i < lower.len() - 1 && start + i <= MAX_POINTER_BODY {
        let written = t.body.len() - start;
        if i >= written || t.body[start + i] >= 0xc0 {
            break;
        }
        if seen.find(&lower[i..]).is_none() {
            let len = (lower.len() - i) as u16;
            seen.tails.push((from + i as u32, len, (start + i) as u16));
        }
        i += 1 + lower[i] as usize;
    }
}

/// Appends `r` to `t`; returns the length of its RDATA. The names in the RDATA of the types
/// RFC 1035 defined (NS, CNAME, PTR, MX, SOA) are compressed, as RFC 3597 section 4 allows
/// and Knot does; an SRV target is written whole but later names may point at it (as Knot
/// does); every other RDATA is written as is.
fn encode_record(
    t: &mut Template,
    r: &Record,
    qname: &[u8],
    base: Option<&[u8]>,
    seen: &mut Seen,
) -> usize {
    put_name(t, &r.name, qname, base, seen);
    t.body
        .extend_from_slice(&u16::from(r.record_type()).to_be_bytes());
    t.body
        .extend_from_slice(&u16::from(r.dns_class).to_be_bytes());
    t.body.extend_from_slice(&r.ttl.to_be_bytes());
    let len_at = t.body.len();
    t.body.extend_from_slice(&[0, 0]);
    match &r.data {
        RData::NS(n) => put_name(t, &n.0, qname, base, seen),
        RData::CNAME(n) => put_name(t, &n.0, qname, base, seen),
        RData::PTR(n) => put_name(t, &n.0, qname, base, seen),
        RData::MX(mx) => {
            t.body.extend_from_slice(&mx.preference.to_be_bytes());
            put_name(t, &mx.exchange, qname, base, seen);
        }
        RData::SRV(srv) => {
            // The target is never compressed (RFC 2782), but later names may point at it.
            for v in [srv.priority, srv.weight, srv.port] {
                t.body.extend_from_slice(&v.to_be_bytes());
            }
            put_name(t, &srv.target, &[], None, seen);
        }
        RData::SOA(soa) => {
            put_name(t, &soa.mname, qname, base, seen);
            put_name(t, &soa.rname, qname, base, seen);
            for v in [
                soa.serial,
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ] {
                t.body.extend_from_slice(&v.to_be_bytes());
            }
        }
        data => {
            let mut rdata = Vec::new();
            let mut enc = BinEncoder::new(&mut rdata);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            // Zone data was parsed from text and re-encodes; an error would be a hickory bug.
            if data.emit(&mut enc).is_err() {
                tracing::error!(name = %r.name, rtype = %r.record_type(), "cannot encode record data");
            }
            t.body.extend_from_slice(&rdata);
        }
    }
    let rdlen = t.body.len() - len_at - 2;
    t.body[len_at..len_at + 2].copy_from_slice(&(rdlen as u16).to_be_bytes());
    rdlen
}
