//! Zone versions: what a transfer of each zone carries, and the serial that follows it.
//!
//! A zone's transferred content is its file's records and the live answers of its bound
//! names. The serial moves when, and only when, that content changes, by the unixtime
//! policy in RFC 1982 arithmetic: the next serial is the greatest of the previous one plus
//! one, the current Unix time and the zone file's serial (the floor, so that an edited file
//! wins). Serials are kept in the state file; a restart starts above the last one kept (and
//! at least at the current time), so a secondary never sees one go backwards.
//!
//! Each change of live answers is also kept as a [`Delta`] in a bounded journal, for IXFR.
//! A change of the zone file's records empties the journal: secondaries then get a whole
//! zone.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, RData, Record};
use hickory_proto::serialize::binary::BinEncodable;

pub use crate::dns::snapshot::serial_gt;
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
pub fn file_serial(soa: &Record) -> u32 {
    match &soa.data {
        RData::SOA(s) => s.serial,
        _ => 0,
    }
}

/// One zone's history as the engine keeps it.
#[derive(Debug)]
struct Track {
    serial: u32,
    /// A hash of the zone file's records, to see a reload change them.
    file_hash: u64,
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
}

impl Versions {
    /// Serials kept by an earlier run: the first serial of each zone starts above them.
    pub fn restore(&mut self, serials: BTreeMap<String, u32>) {
        self.restored = serials;
    }

    /// Every zone's serial, by origin, to keep in the state file.
    pub fn serials(&self) -> BTreeMap<String, u32> {
        let mut out = self.restored.clone();
        for (origin, t) in &self.tracks {
            out.insert(origin.to_string(), t.serial);
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
        if !self.hashed.as_ref().is_some_and(|h| Arc::ptr_eq(h, zones)) {
            self.hashes = zones.iter().map(file_hash).collect();
            self.hashed = Some(zones.clone());
        }
        let mut changed = Vec::new();
        let mut versions = Vec::with_capacity(live.len());
        for ((zone, live), &hash) in zones.iter().zip(live).zip(&self.hashes) {
            let floor = file_serial(&zone.soa);
            let track = match self.tracks.get_mut(&zone.origin) {
                Some(t) => t,
                None => {
                    let mut first = serial_max(floor, now_unix);
                    if let Some(&kept) = self.restored.get(&zone.origin.to_string()) {
                        first = serial_max(first, kept.wrapping_add(1));
                    }
                    changed.push(zone.origin.clone());
                    self.tracks.entry(zone.origin.clone()).or_insert(Track {
                        serial: first,
                        file_hash: hash,
                        live: Arc::new(live.clone()),
                        journal: Default::default(),
                    })
                }
            };
            let file_changed = track.file_hash != hash;
            if file_changed || !same(&track.live, &live) {
                let next = serial_max(serial_max(track.serial.wrapping_add(1), now_unix), floor);
                let mut journal = if file_changed {
                    Vec::new()
                } else {
                    let (removed, added) = diff(&track.live, &live);
                    let mut j: Vec<Arc<Delta>> = track.journal.as_ref().clone();
                    j.push(Arc::new(Delta {
                        from: track.serial,
                        to: next,
                        removed,
                        added,
                    }));
                    j
                };
                if journal.len() > journal_max {
                    journal.drain(..journal.len() - journal_max);
                }
                track.serial = next;
                track.file_hash = hash;
                track.live = Arc::new(live);
                track.journal = Arc::new(journal);
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

/// The transferred records of the bound names of each zone, in canonical order.
fn live_by_zone(zones: &Zones, bound: &HashMap<LowerName, Bound>) -> Vec<Vec<Record>> {
    let mut out: Vec<Vec<Record>> = zones.iter().map(|_| Vec::new()).collect();
    for (name, b) in bound {
        if let Some(zi) = zones.index_of(name) {
            out[zi].extend(b.a.transferred());
            out[zi].extend(b.aaaa.transferred());
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

/// A hash of every record of the zone's file, SOA included.
fn file_hash(zone: &crate::zone::Zone) -> u64 {
    let mut h = DefaultHasher::new();
    for r in std::iter::once(&zone.soa).chain(zone.all_records()) {
        r.to_bytes().unwrap_or_default().hash(&mut h);
        r.ttl.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
