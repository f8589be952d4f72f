//! Zone versions: what a transfer of each zone carries, and the serial that follows it.
//!
//! A zone's transferred content is its file's records and the live answers of its bound
//! names. The serial moves when, and only when, that content changes, by the unixtime
//! policy in RFC 1982 arithmetic: the next serial is the greatest of the previous one plus
//! one, the current Unix time and the zone file's serial (the floor, so that an edited file
//! wins). Serials are kept in the state file with a hash of the content each stands for: a
//! restart whose first content is the one kept keeps its serial (a secondary has nothing to
//! fetch), and any other starts above the last one kept (and at least at the current time),
//! so a secondary never sees one go backwards.
//!
//! Each change of live answers is also kept as a [`Delta`] in a bounded journal, for IXFR.
//! A change of the zone file's records empties the journal: secondaries then get a whole
//! zone.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use crate::dns::snapshot::{serial_gt, with_serial};
use crate::dns::snapshot::{Bound, Delta, ZoneVersion, Zones};

/// The greater of two serials (RFC 1982): `a` unless `b` is greater.
fn serial_max(a: u32, b: u32) -> u32 {
    if serial_gt(b, a) {
        b
    } else {
        a
    }
}

/// The serial of a zone's SOA record as written in its file.
fn file_serial(soa: &Record) -> u32 {
    crate::dns::snapshot::serial_of(soa).unwrap_or(0)
}

/// One zone's history as the engine keeps it.
#[derive(Debug)]
struct Track {
    serial: u32,
    /// The zone's SOA with `serial`.
    soa: Record,
    /// A hash of the zone file's records, to see a reload change them.
    file_hash: u64,
    /// A hash of everything a transfer carries (the file's and the live records).
    content: u64,
    live: Arc<Vec<Record>>,
    journal: Arc<Vec<Arc<Delta>>>,
}

/// Every zone's history, and the serials restored from the state file.
#[derive(Debug, Default)]
pub(super) struct Versions {
    tracks: HashMap<LowerName, Track>,
    /// The zones whose file hashes are in `hashes`, kept to compare by pointer.
    hashed: Option<Arc<Zones>>,
    hashes: Vec<u64>,
    /// The last serial of each zone in the state file, by origin as written.
    restored: BTreeMap<String, u32>,
    /// The hash of the content each of `restored` stood for.
    restored_content: BTreeMap<String, u64>,
}

impl Versions {
    /// Serials kept by an earlier run, with the hashes of the content they stood for: each
    /// zone's serial starts at its kept one if the content is the same, else above it (a zone
    /// already under way, published ready before the state file was read, is moved up).
    pub fn restore(&mut self, serials: BTreeMap<String, u32>, contents: BTreeMap<String, u64>) {
        for (origin, t) in &mut self.tracks {
            let origin = origin.to_string();
            if let Some(&kept) = serials.get(&origin) {
                let same = contents.get(&origin) == Some(&t.content);
                let least = if same { kept } else { kept.wrapping_add(1) };
                if serial_gt(least, t.serial) {
                    t.serial = least;
                    t.soa = with_serial(&t.soa, least);
                    t.journal = Default::default();
                }
            }
        }
        self.restored = serials;
        self.restored_content = contents;
    }

    /// Every zone's serial, by origin, to keep in the state file.
    pub fn serials(&self) -> BTreeMap<String, u32> {
        let mut out = self.restored.clone();
        for (origin, t) in &self.tracks {
            out.insert(origin.to_string(), t.serial);
        }
        out
    }

    /// The hash of the content each of [`Self::serials`] stands for, by origin.
    pub fn contents(&self) -> BTreeMap<String, u64> {
        let mut out = self.restored_content.clone();
        for (origin, t) in &self.tracks {
            out.insert(origin.to_string(), t.content);
        }
        out
    }

    /// The versions of `zones` with the answers in `bound`, and the zones whose serial
    /// changed. Before `ready` (nothing has been served yet) nothing is kept: the first
    /// ready publication starts each zone's history.
    pub fn update(
        &mut self,
        zones: &Arc<Zones>,
        bound: &HashMap<LowerName, Bound>,
        ready: bool,
        now_unix: u32,
        journal_max: usize,
    ) -> (Vec<ZoneVersion>, Vec<LowerName>) {
        let live = live_by_zone(zones, bound);
        if !ready {
            let versions = zones
                .iter()
                .zip(live)
                .map(|(z, live)| ZoneVersion {
                    serial: file_serial(&z.soa),
                    live: Arc::new(live),
                    journal: Default::default(),
                })
                .collect();
            return (versions, Vec::new());
        }
        // The zones before a reload, to tell a secondary what an edit changed.
        let mut previous = None;
        if !self.hashed.as_ref().is_some_and(|h| Arc::ptr_eq(h, zones)) {
            self.hashes = zones.iter().map(file_hash).collect();
            previous = self.hashed.replace(zones.clone());
        }
        let mut changed = Vec::new();
        let mut versions = Vec::with_capacity(live.len());
        for ((zone, live), &hash) in zones.iter().zip(live).zip(&self.hashes) {
            let floor = file_serial(&zone.soa);
            if !self.tracks.contains_key(&zone.origin) {
                let track = self.first_track(zone, &live, hash, now_unix);
                self.tracks.insert(zone.origin.clone(), track);
                changed.push(zone.origin.clone());
            }
            let Some(track) = self.tracks.get_mut(&zone.origin) else {
                continue; // inserted just above
            };
            let edit = || {
                let old = previous
                    .as_ref()?
                    .iter()
                    .find(|z| z.origin == zone.origin)?;
                file_delta(old, zone)
            };
            let next = Next {
                live,
                hash,
                soa: &zone.soa,
                at_least: serial_max(floor, now_unix),
            };
            if track.advance(next, edit, journal_max) {
                changed.push(zone.origin.clone());
            }
            versions.push(ZoneVersion {
                serial: track.serial,
                live: track.live.clone(),
                journal: track.journal.clone(),
            });
        }
        changed.dedup();
        (versions, changed)
    }
}

impl Versions {
    /// A zone's history from its first ready publication: the serial an earlier run kept
    /// if the content is the one it stood for; else at the current time, or above the zone
    /// file's serial or the serial kept by an earlier run.
    fn first_track(
        &self,
        zone: &crate::zone::Zone,
        live: &[Record],
        hash: u64,
        now_unix: u32,
    ) -> Track {
        let origin = zone.origin.to_string();
        let content = content_hash(hash, live);
        let mut first = serial_max(file_serial(&zone.soa), now_unix);
        if let Some(&kept) = self.restored.get(&origin) {
            first = if self.restored_content.get(&origin) == Some(&content) {
                kept
            } else {
                serial_max(first, kept.wrapping_add(1))
            };
        }
        Track {
            serial: first,
            soa: with_serial(&zone.soa, first),
            file_hash: hash,
            content,
            live: Arc::new(live.to_vec()),
            journal: Default::default(),
        }
    }
}

/// What a zone is now, for [`Track::advance`].
struct Next<'a> {
    live: Vec<Record>,
    /// The hash of the zone file's records.
    hash: u64,
    /// The zone file's SOA.
    soa: &'a Record,
    /// The least the next serial may be.
    at_least: u32,
}

impl Track {
    /// Moves to `next` if its live records or its file changed: the serial goes to the
    /// greater of one more and `next.at_least`, and the change joins the journal (kept to
    /// `journal_max`). An edited file joins it as the records `edit` finds removed and added;
    /// when it finds none to give (too large an edit), the journal is emptied. Returns
    /// whether it moved.
    fn advance(
        &mut self,
        next: Next,
        edit: impl FnOnce() -> Option<(Vec<Record>, Vec<Record>)>,
        journal_max: usize,
    ) -> bool {
        let file_changed = self.file_hash != next.hash;
        if !file_changed && same(&self.live, &next.live) {
            return false;
        }
        let serial = serial_max(self.serial.wrapping_add(1), next.at_least);
        let soa = with_serial(next.soa, serial);
        let change = if file_changed {
            edit()
        } else {
            Some(Default::default())
        };
        let mut journal = Vec::new();
        if let Some((mut removed, mut added)) = change {
            let (r, a) = diff(&self.live, &next.live);
            removed.extend(r);
            added.extend(a);
            journal = self.journal.as_ref().clone();
            journal.push(Arc::new(Delta {
                from: self.serial,
                to: serial,
                from_soa: self.soa.clone(),
                to_soa: soa.clone(),
                removed,
                added,
            }));
            if journal.len() > journal_max {
                journal.drain(..journal.len() - journal_max);
            }
        }
        self.serial = serial;
        self.soa = soa;
        self.file_hash = next.hash;
        self.content = content_hash(next.hash, &next.live);
        self.live = Arc::new(next.live);
        self.journal = Arc::new(journal);
        true
    }
}

/// Zone files this large (records, both versions together) are not compared record by
/// record on an edit: secondaries take them whole.
const MAX_EDIT_COMPARED: usize = 50_000;

/// The records an edit of a zone file removed and added (SOA aside), if the files are small
/// enough to compare and the edit is less than half the zone (else a whole transfer is as
/// cheap).
fn file_delta(
    old: &crate::zone::Zone,
    new: &crate::zone::Zone,
) -> Option<(Vec<Record>, Vec<Record>)> {
    // Counted first: reading every record of a large zone back costs more than the compare.
    let n = old.record_count_upto(MAX_EDIT_COMPARED);
    if n + new.record_count_upto(MAX_EDIT_COMPARED.saturating_sub(n)) > MAX_EDIT_COMPARED {
        return None;
    }
    let mut a: Vec<Record> = old.all_records().collect();
    let mut b: Vec<Record> = new.all_records().collect();
    a.sort();
    b.sort();
    let (removed, added) = diff(&a, &b);
    (removed.len() + added.len() <= b.len() / 2 + 1).then_some((removed, added))
}

/// The transferred records of the bound names of each zone, in canonical order.
fn live_by_zone(zones: &Zones, bound: &HashMap<LowerName, Bound>) -> Vec<Vec<Record>> {
    let mut out: Vec<Vec<Record>> = zones.iter().map(|_| Vec::new()).collect();
    for (name, b) in bound {
        if let Some(zi) = zones.index_of(name) {
            for (t, c) in b.choices() {
                out[zi].extend(match t {
                    RecordType::CNAME => c.transferred_one(),
                    _ => c.transferred(),
                });
            }
        }
    }
    for records in &mut out {
        records.sort();
    }
    out
}

/// Equal record for record, TTLs included.
fn same(a: &[Record], b: &[Record]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.cmp(y).is_eq())
}

/// What `old` lacks of `new` and the reverse, both sorted; a changed TTL is a removal and an
/// addition (RFC 1995 section 4).
fn diff(old: &[Record], new: &[Record]) -> (Vec<Record>, Vec<Record>) {
    let removed = old
        .iter()
        .filter(|r| new.binary_search(r).is_err())
        .cloned()
        .collect();
    let added = new
        .iter()
        .filter(|r| old.binary_search(r).is_err())
        .cloned()
        .collect();
    (removed, added)
}

/// A hash of a zone's transferred content: its file's hash and its live records (sorted), in
/// wire form with their TTLs. Fixed from one run to the next, to compare with a kept one.
fn content_hash(file_hash: u64, live: &[Record]) -> u64 {
    use std::hash::BuildHasher;
    let state = foldhash::quality::FixedState::with_seed(0x676d_7464);
    let mut h = state.build_hasher();
    file_hash.hash(&mut h);
    for r in live {
        r.to_bytes().unwrap_or_default().hash(&mut h);
        r.ttl.hash(&mut h);
    }
    h.finish()
}

/// A hash of every record of the zone's file, SOA included: each node's hash (its name and
/// its sets in wire form), added up so that the nodes' order does not matter.
fn file_hash(zone: &crate::zone::Zone) -> u64 {
    use std::hash::BuildHasher;
    // A fixed seed: the hash compares one reading of the file with the next.
    let state = foldhash::quality::FixedState::with_seed(0x676d_7464);
    let mut h = state.build_hasher();
    zone.soa.to_bytes().unwrap_or_default().hash(&mut h);
    zone.soa.ttl.hash(&mut h);
    let nodes = zone.nodes.iter_wire().fold(0u64, |sum, (k, n)| {
        let mut h = state.build_hasher();
        k.hash(&mut h);
        n.rrsets.hash(&mut h);
        sum.wrapping_add(h.finish())
    });
    nodes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::snapshot::Bound;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData};

    fn zones(serial: u32, extra: &str) -> Arc<Zones> {
        let text =
            format!("$TTL 60\n@ SOA ns hm {serial} 2 3 4 300\n NS ns\nns A 192.0.2.1\n{extra}");
        let origin = Name::from_ascii("t.").unwrap();
        let z = crate::zone::parse_zone(&text, std::path::Path::new("t.zone"), origin).unwrap();
        Arc::new(Zones::new(vec![z]))
    }

    fn bound(addrs: &[[u8; 4]], ttl: u32) -> HashMap<LowerName, Bound> {
        let name = Name::from_ascii("app.t.").unwrap();
        let a = addrs
            .iter()
            .map(|&o| Record::from_rdata(name.clone(), ttl, RData::A(A(o.into()))))
            .collect();
        HashMap::from([(LowerName::new(&name), Bound::fixed(a, Vec::new()))])
    }

    #[test]
    fn the_serial_moves_when_and_only_when_the_transferred_content_changes() {
        let z = zones(7, "");
        let mut v = Versions::default();
        let two = bound(&[[192, 0, 2, 10], [192, 0, 2, 11]], 30);
        // Before the first ready publication: the file's serial, nothing kept.
        let (vs, changed) = v.update(&z, &two, false, 1000, 8);
        assert_eq!((vs[0].serial, changed.len()), (7, 0));
        let (vs, changed) = v.update(&z, &two, true, 1000, 8);
        assert_eq!(
            (vs[0].serial, changed.len()),
            (1000, 1),
            "starts at the time"
        );
        assert_eq!(vs[0].live.len(), 2);
        let (vs, changed) = v.update(&z, &two, true, 1001, 8);
        assert_eq!(
            (vs[0].serial, changed.len()),
            (1000, 0),
            "same content, same serial"
        );
        // A member leaves: a new serial (within the same second: one more), and a delta.
        let one = bound(&[[192, 0, 2, 11]], 30);
        let (vs, _) = v.update(&z, &one, true, 1000, 8);
        assert_eq!(vs[0].serial, 1001);
        let d = &vs[0].journal[0];
        assert_eq!(
            (d.from, d.to, d.removed.len(), d.added.len()),
            (1000, 1001, 1, 0)
        );
        // A TTL change alone is a change: removed and added again.
        let (vs, _) = v.update(&z, &bound(&[[192, 0, 2, 11]], 10), true, 1000, 8);
        let d = &vs[0].journal[1];
        assert_eq!((vs[0].serial, d.removed.len(), d.added.len()), (1002, 1, 1));
    }

    #[test]
    fn the_journal_is_bounded_and_an_edited_file_joins_it_or_empties_it() {
        let z = zones(7, "");
        let mut v = Versions::default();
        for i in 0..10u8 {
            let (vs, _) = v.update(&z, &bound(&[[192, 0, 2, i]], 30), true, 1000, 4);
            assert!(vs[0].journal.len() <= 4);
        }
        let (vs, _) = v.update(&z, &bound(&[[192, 0, 2, 9]], 30), true, 1000, 4);
        let j = &vs[0].journal;
        assert_eq!(j.len(), 4);
        assert!(j.windows(2).all(|w| w[0].to == w[1].from), "a chain");
        assert_eq!(j[3].to, vs[0].serial);
        // A small edit (one record, a serial far above): its serial wins, and the journal
        // tells a secondary the record added, with both SOAs as they were.
        let before = vs[0].serial;
        let z2 = zones(5_000_000, "www A 192.0.2.80\n");
        let (vs, changed) = v.update(&z2, &bound(&[[192, 0, 2, 9]], 30), true, 1000, 4);
        assert_eq!((vs[0].serial, changed.len()), (5_000_000, 1));
        let d = vs[0].journal.last().unwrap();
        assert_eq!(
            (d.from, d.to, d.removed.len(), d.added.len()),
            (before, 5_000_000, 0, 1)
        );
        assert_eq!(file_serial(&d.from_soa), before);
        assert_eq!(file_serial(&d.to_soa), 5_000_000);
        // An edit that rewrites most of the zone empties the journal (a whole zone is as cheap).
        let z3 = zones(
            5_000_000,
            "a A 192.0.2.1\nb A 192.0.2.2\nc A 192.0.2.3\nd A 192.0.2.4\n",
        );
        let (vs, _) = v.update(&z3, &bound(&[[192, 0, 2, 9]], 30), true, 1000, 4);
        assert_eq!((vs[0].serial, vs[0].journal.len()), (5_000_001, 0));
    }

    #[test]
    fn a_restart_starts_above_the_kept_serial_even_ahead_of_the_clock() {
        let z = zones(7, "");
        let mut v = Versions::default();
        v.restore(BTreeMap::from([("t.".to_string(), 2000)]), BTreeMap::new());
        let (vs, _) = v.update(&z, &bound(&[[192, 0, 2, 1]], 30), true, 1000, 4);
        assert_eq!(vs[0].serial, 2001);
        assert_eq!(v.serials()["t."], 2001);
        // Restored after the zone was already under way (nothing to probe: ready at once).
        let mut v = Versions::default();
        v.update(&z, &bound(&[[192, 0, 2, 1]], 30), true, 1000, 4);
        v.restore(BTreeMap::from([("t.".to_string(), 3000)]), BTreeMap::new());
        let (vs, _) = v.update(&z, &bound(&[[192, 0, 2, 1]], 30), true, 1000, 4);
        assert_eq!(vs[0].serial, 3001);
    }

    fn serial_of_track(v: &Versions, origin: &LowerName) -> Option<u32> {
        crate::dns::snapshot::serial_of(&v.tracks[origin].soa)
    }

    #[test]
    fn a_restart_with_the_content_kept_keeps_its_serial_and_any_other_goes_above() {
        let z = zones(7, "");
        let (one, two) = (
            bound(&[[192, 0, 2, 1]], 30),
            bound(&[[192, 0, 2, 1], [192, 0, 2, 2]], 30),
        );
        let mut first = Versions::default();
        first.update(&z, &one, true, 1000, 4);
        for i in 0..50 {
            // Changes faster than the clock: the serial runs ahead of it.
            first.update(&z, if i % 2 == 0 { &two } else { &one }, true, 1000, 4);
        }
        let (kept, contents) = (first.serials(), first.contents());
        assert_eq!(kept["t."], 1050);
        // The same content, the clock behind the kept serial: the same serial.
        let mut again = Versions::default();
        again.restore(kept.clone(), contents.clone());
        let (vs, _) = again.update(&z, &one, true, 1010, 4);
        assert_eq!(vs[0].serial, 1050, "unchanged content, unchanged serial");
        let origin = LowerName::from(Name::from_ascii("t.").unwrap());
        assert_eq!(serial_of_track(&again, &origin), Some(1050));
        // Other content: above the kept serial, never below it.
        let mut other = Versions::default();
        other.restore(kept.clone(), contents.clone());
        let (vs, _) = other.update(&z, &two, true, 1010, 4);
        assert_eq!(vs[0].serial, 1051);
        // Restored after the zone was under way with the same content: moved up to the kept one.
        let mut late = Versions::default();
        late.update(&z, &one, true, 1010, 4);
        late.restore(kept, contents);
        let (vs, _) = late.update(&z, &one, true, 1010, 4);
        assert_eq!(vs[0].serial, 1050);
    }

    #[test]
    fn serial_comparison_wraps_as_rfc_1982_says() {
        assert!(serial_gt(1, 0));
        assert!(serial_gt(0, u32::MAX));
        assert!(!serial_gt(u32::MAX, 0));
        assert!(serial_gt(5, 4_000_000_000));
        assert_eq!(serial_max(u32::MAX, 3), 3);
        assert_eq!(serial_max(10, 3), 10);
    }
}
