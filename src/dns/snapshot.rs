//! The immutable state the query path reads: zones, the current answers of pool-bound names,
//! and readiness. The engine builds a new [`Snapshot`] when health changes and publishes it
//! through one `ArcSwap`; the query path only loads it (no lock, no await).
//!
//! It owns no I/O and never changes after it is published.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Record, RecordType};

use crate::steer::topology::Client;

pub use crate::zone::Zones;

/// `a` is greater than `b` in serial number arithmetic (RFC 1982 section 3.2).
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// The serial of `soa`, if it is an SOA record.
pub fn serial_of(soa: &Record) -> Option<u32> {
    match &soa.data {
        hickory_proto::rr::RData::SOA(s) => Some(s.serial),
        _ => None,
    }
}

/// `soa` (a zone's SOA record) with `serial`.
pub fn with_serial(soa: &Record, serial: u32) -> Record {
    let mut soa = soa.clone();
    if let hickory_proto::rr::RData::SOA(s) = &mut soa.data {
        s.serial = serial;
    }
    soa
}

/// A random number for the query path: a per-thread xorshift, seeded once per thread.
pub fn random_u32() -> u32 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 32) as u32
    })
}

/// How a query picks one of a [`Choice`]'s sets: by client group (topology), then at
/// random by weight within the group.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Per group, cumulative thresholds out of 2^32: a random `r` picks the group's first set
    /// with `r < cum[i]`.
    cum: Vec<u64>,
    /// Each group's sets, as a range of indexes.
    groups: Vec<(usize, usize)>,
    /// Client subnets to groups; none: one group for every client.
    table: Option<Arc<crate::steer::topology::Table>>,
    /// Queries counted per client group (names whose pools have capacities: the engine
    /// takes each group's share of the traffic from them).
    hits: Option<Arc<[std::sync::atomic::AtomicU64]>>,
}

impl Selector {
    /// The set for `client` (none: the group of unmatched clients) and the random number `r`,
    /// with the ECS scope prefix length of that choice.
    pub fn pick(&self, client: Option<Client>, r: u32) -> (usize, u8) {
        let (g, scope) = match (&self.table, client) {
            (Some(t), Some(c)) => {
                let found = t.find(c);
                if let Some(h) = self.hits.as_ref().and_then(|h| h.get(found.0 as usize)) {
                    h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                found
            }
            _ => (0, 0),
        };
        let Some(&(start, end)) = self.groups.get(g as usize) else {
            return (0, scope);
        };
        if end - start <= 1 {
            return (start, scope);
        }
        let i = self.cum[start..end].partition_point(|&c| c <= r as u64);
        (start + i.min(end - start - 1), scope)
    }
}

/// The answers one address family of a bound name chooses among, per query.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// The possible answers; exactly one for a fixed answer.
    pub sets: Vec<Vec<Record>>,
    pub sel: Arc<Selector>,
    /// Nothing is healthy and the name is set to answer SERVFAIL.
    pub servfail: bool,
}

impl Choice {
    /// Always the same records.
    pub fn fixed(records: Vec<Record>) -> Self {
        Self::grouped(vec![vec![(records, 1.0)]], None)
    }

    /// Sets with their probabilities (which sum to 1).
    pub fn weighted(sets: Vec<(Vec<Record>, f64)>) -> Self {
        Self::grouped(vec![sets], None)
    }

    /// Per client group, sets with their probabilities; `table` maps clients to groups.
    pub fn grouped(
        groups: Vec<Vec<(Vec<Record>, f64)>>,
        table: Option<Arc<crate::steer::topology::Table>>,
    ) -> Self {
        let mut sel = Selector {
            table,
            ..Default::default()
        };
        let mut out = Vec::new();
        for sets in groups {
            let start = out.len();
            let mut acc = 0.0;
            for (records, p) in sets {
                acc += p;
                sel.cum
                    .push(((acc * 4294967296.0).round() as u64).min(1 << 32));
                out.push(records);
            }
            if let Some(last) = sel.cum.last_mut().filter(|_| out.len() > start) {
                *last = 1 << 32; // rounding never leaves a gap at the top
            }
            sel.groups.push((start, out.len()));
        }
        Choice {
            sets: out,
            sel: Arc::new(sel),
            servfail: false,
        }
    }

    /// Counts the queries of each client group into `hits`.
    pub fn count_into(&mut self, hits: Arc<[std::sync::atomic::AtomicU64]>) {
        let mut sel = (*self.sel).clone();
        sel.hits = Some(hits);
        self.sel = Arc::new(sel);
    }

    /// The set for a random `r` in the group of unmatched clients.
    pub fn pick(&self, r: u32) -> usize {
        self.sel.pick(None, r).0
    }

    pub fn get(&self, i: usize) -> &[Record] {
        self.sets.get(i).map_or(&[], Vec::as_slice)
    }

    /// What a zone transfer carries for this choice: every record of the unmatched clients'
    /// sets, once (a fixed answer's one set; every eligible member of a weighted name; the
    /// default answer of a topology name). Nothing for a name set to fail.
    pub fn transferred(&self) -> Vec<Record> {
        if self.servfail {
            return Vec::new();
        }
        let (start, end) = self.unmatched();
        // A set of the data seen: a weighted name of many members is linear in them.
        let mut seen = std::collections::HashSet::new();
        self.sets[start..end]
            .iter()
            .flatten()
            .filter(|r| seen.insert(&r.data))
            .cloned()
            .collect()
    }
}

impl Choice {
    /// The range of `sets` that clients no topology rule matches choose from.
    fn unmatched(&self) -> (usize, usize) {
        let n = self.sets.len();
        let (start, end) = self.sel.groups.first().copied().unwrap_or((0, n));
        (start.min(n), end.min(n))
    }

    /// The sets of the unmatched clients with the probability of each.
    pub fn odds(&self) -> Vec<(&[Record], f64)> {
        let (start, end) = self.unmatched();
        if end - start == 1 {
            return vec![(self.sets[start].as_slice(), 1.0)];
        }
        (start..end)
            .map(|i| {
                let low = if i == start { 0 } else { self.sel.cum[i - 1] };
                let p = self.sel.cum.get(i).map_or(0, |c| c - low);
                (self.sets[i].as_slice(), p as f64 / 4294967296.0)
            })
            .collect()
    }

    /// What a transfer carries for a CNAME choice, which must be one record: the likeliest
    /// set of the unmatched clients (the first of equals). Nothing for a name set to fail.
    pub fn transferred_one(&self) -> Vec<Record> {
        if self.servfail {
            return Vec::new();
        }
        let (start, end) = self.unmatched();
        let mut best: Option<(u64, usize)> = None;
        for i in start..end {
            let low = if i == start { 0 } else { self.sel.cum[i - 1] };
            let p = self.sel.cum.get(i).map_or(0, |c| c - low);
            if best.is_none_or(|(b, _)| p > b) {
                best = Some((p, i));
            }
        }
        best.map(|(_, i)| self.sets[i].clone()).unwrap_or_default()
    }
}

/// The answers of a pool-bound name right now.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub a: Choice,
    pub aaaa: Choice,
    /// A name whose members are domain names: its CNAME, answered for every type (`a` and
    /// `aaaa` are then empty).
    pub cname: Option<Choice>,
    /// No member behind the name is healthy: the answer is its all-down behaviour.
    pub all_down: bool,
    /// Some member behind the name is down or failing: answers carry the degraded TTL.
    pub degraded: bool,
    /// Counts the distinct resolvers that ask for the name (kept across publications).
    pub resolvers: Option<Arc<crate::dns::resolvers::Resolvers>>,
}

impl Bound {
    /// A fixed answer.
    pub fn fixed(a: Vec<Record>, aaaa: Vec<Record>) -> Self {
        Bound {
            a: Choice::fixed(a),
            aaaa: Choice::fixed(aaaa),
            ..Default::default()
        }
    }

    /// The choice for A or AAAA; `None` for any other type (the zone file answers), and for
    /// a name that answers a CNAME.
    pub fn choice(&self, rtype: RecordType) -> Option<&Choice> {
        match rtype {
            _ if self.cname.is_some() => None,
            RecordType::A => Some(&self.a),
            RecordType::AAAA => Some(&self.aaaa),
            _ => None,
        }
    }

    /// Every choice with the type of its records.
    pub fn choices(&self) -> impl Iterator<Item = (RecordType, &Choice)> {
        [(RecordType::A, &self.a), (RecordType::AAAA, &self.aaaa)]
            .into_iter()
            .chain(self.cname.iter().map(|c| (RecordType::CNAME, c)))
    }
}

/// The difference between two versions of a zone (RFC 1995 section 4): the records removed
/// and added to go from serial `from` to serial `to`.
#[derive(Debug)]
pub struct Delta {
    pub from: u32,
    pub to: u32,
    /// The zone's SOA at each end (an edited file may change more than the serial).
    pub from_soa: Record,
    pub to_soa: Record,
    pub removed: Vec<Record>,
    pub added: Vec<Record>,
}

/// One zone's version in a publication: the serial its SOA carries, and what a transfer
/// serves beyond the zone file's records.
#[derive(Debug, Clone, Default)]
pub struct ZoneVersion {
    pub serial: u32,
    /// The records of the zone's bound names that a transfer carries, in canonical order.
    pub live: Arc<Vec<Record>>,
    /// The differences leading to this version, oldest first, each one's `to` the next
    /// one's `from` and the last one's `to` this serial (IXFR).
    pub journal: Arc<Vec<Arc<Delta>>>,
}

/// Everything the query path needs, published as one unit.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every publication.
    pub generation: u64,
    /// Unique in the process for each published snapshot ([`next_id`]); 0 (the default) for
    /// a snapshot made elsewhere, whose signed answers are then not kept per query.
    pub id: u64,
    pub zones: Arc<Zones>,
    pub bound: HashMap<LowerName, Bound>,
    /// True once every member has had its first probe result.
    pub ready: bool,
    /// The transports' settings (they change with a reload, like the rest).
    pub wire: Arc<crate::dns::WireSettings>,
    /// Response rate limiting (its buckets live across publications until a reload changes
    /// its settings).
    pub rrl: Option<Arc<crate::dns::rrl::Rrl>>,
    /// Each zone's version, in the order of [`Zones::iter`]; empty: the zone files' serials
    /// and no live records in transfers.
    pub versions: Vec<ZoneVersion>,
    /// What secondaries were told and took (transfers write here).
    pub secondaries: Arc<crate::dns::secondaries::Log>,
}

/// A new [`Snapshot::id`].
pub fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Snapshot {
    /// The serial of the zone at position `zi`: its version's, or its file's.
    pub fn serial(&self, zi: usize) -> Option<u32> {
        if let Some(v) = self.versions.get(zi) {
            return Some(v.serial);
        }
        serial_of(&self.zones.get(zi)?.soa)
    }
}
