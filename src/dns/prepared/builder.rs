//! The builder of entries: each name's answers made by the general path and encoded as
//! templates, equal templates shared, and whether an answer touched a pool-bound name.

use super::*;

/// Computes entries, noting whether any answer touched a pool-bound name's records.
pub(super) struct Builder<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) touched: std::cell::Cell<bool>,
    /// Per zone (in the order of `Zones::iter`), the signature cache of a signed zone.
    pub(super) stores: Vec<Option<Store<'a>>>,
    /// The earliest expiry of the signatures used.
    pub(super) min_exp: std::cell::Cell<u32>,
    /// Every template made so far, to share equal ones: most names' NODATA and DS answers,
    /// and a one-type name's ANY answer, are byte for byte those of other names (a template
    /// holds no query name), so a zone of 100,000 names keeps a handful of them, not 100,000.
    pub(super) made: std::cell::RefCell<std::collections::HashSet<Arc<Template>, RandomState>>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(snap: &'a Snapshot) -> Self {
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
    pub(super) fn share(&self, mut t: Template) -> Arc<Template> {
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
    pub(super) fn finish(&self) -> u32 {
        self.stores.iter().flatten().for_each(Store::finish);
        self.min_exp.get()
    }

    /// The template of `ans`, the answer to `qname`/`qtype` (see [`encode`]), with its
    /// signed form when the zone is signed.
    pub(super) fn template(
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
    pub(super) fn lookup(&self, name: &Name, t: RecordType) -> Answer {
        self.lookup_forcing(name, t, None).0
    }

    /// The answer with `force` (a bound name's choice, by address, and the index in it) and
    /// every other bound name's first choice; also the first choice met that has several
    /// answers, if any.
    pub(super) fn lookup_forcing(
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
    pub(super) fn entry(
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
    pub(super) fn cname_types(&self, zone: &Zone, node: &Node) -> Option<Vec<RecordType>> {
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
    pub(super) fn node_answers(
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
