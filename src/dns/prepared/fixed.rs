//! The fixed part of the answers: every entry that does not depend on pool health, built
//! once per zone load and shared by every publication until the zones change.

use super::*;

impl Fixed {
    /// Builds every entry of `snap`, setting aside (as live) those that depend on pool health.
    pub fn build(snap: &Snapshot) -> Self {
        Self::build_with(snap, true)
    }

    /// [`Fixed::build`]. Without `shortcuts`, every name has an entry and each of its answers
    /// is made by a lookup: no plain names, no answers taken as the zone's NODATA (to compare
    /// both ways).
    pub(super) fn build_with(snap: &Snapshot, shortcuts: bool) -> Self {
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
    pub(super) fn zone_of(&self, name: &[u8]) -> Option<usize> {
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
