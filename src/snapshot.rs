//! The immutable state the query path reads: zones, the current answers of pool-bound names,
//! and readiness. The engine builds a new [`Snapshot`] when health changes and publishes it
//! through one `ArcSwap`; the query path only loads it (no lock, no await).
//!
//! It owns no I/O and never changes after it is published.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Record, RecordType};

use crate::zone::Zone;

/// The static zones, shared by every snapshot until the configuration is reloaded.
#[derive(Debug, Default)]
pub struct Zones {
    list: Vec<Zone>,
    by_origin: HashMap<LowerName, usize>,
}

impl Zones {
    pub fn new(list: Vec<Zone>) -> Self {
        let by_origin = list
            .iter()
            .enumerate()
            .map(|(i, z)| (z.origin.clone(), i))
            .collect();
        Self { list, by_origin }
    }

    /// The zone with the longest origin that contains `name`.
    pub fn find(&self, name: &LowerName) -> Option<&Zone> {
        let mut cur = name.clone();
        loop {
            if let Some(&i) = self.by_origin.get(&cur) {
                return Some(&self.list[i]);
            }
            if cur.is_root() {
                return None;
            }
            cur = cur.base_name();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.list.iter()
    }
}

/// The records a pool-bound name answers with right now.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
    /// No member behind the name is healthy, so every member is being answered (fail-open).
    pub fail_open: bool,
}

impl Bound {
    /// The answer records for A or AAAA; `None` for any other type (the zone file answers).
    pub fn records(&self, rtype: RecordType) -> Option<&[Record]> {
        match rtype {
            RecordType::A => Some(&self.a),
            RecordType::AAAA => Some(&self.aaaa),
            _ => None,
        }
    }
}

/// Everything the query path needs, published as one unit.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every publication.
    pub generation: u64,
    pub zones: Arc<Zones>,
    pub bound: HashMap<LowerName, Bound>,
    /// True once every member has had its first probe result.
    pub ready: bool,
    /// Every answer of this snapshot, prepared for the fast path.
    pub fast: crate::fast::AnswerCache,
}

impl Snapshot {
    /// A snapshot with its fast-path answers prepared.
    pub fn prepared(mut self) -> Self {
        self.fast = crate::fast::AnswerCache::build(&self);
        self
    }
}

/// The one publication point: the engine stores, the query path loads.
pub type Published = Arc<ArcSwap<Snapshot>>;
