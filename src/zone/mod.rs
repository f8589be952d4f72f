//! RFC 1035 master files: reading `zones/*.zone` into [`Zone`]s.
//!
//! Owns the text format (tokens, `$ORIGIN`, `$TTL`, `$INCLUDE`, parentheses, quoting, owner
//! inheritance) and the zone's structure (nodes, empty non-terminals, delegation points,
//! wildcards). Record data (RDATA) is parsed by hickory-proto's own parsers, one record at a
//! time, so that every error carries the file and line it came from.
//!
//! It does not answer queries: [`crate::dns::lookup`] does, from the structure built here.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::serialize::txt::Parser;

use lex::{lex, Entry};

mod fast;

pub mod keys;
mod lex;
mod master;
mod nodes;
mod read;

pub use master::{load_dir, load_dir_within, parse_ttl, parse_zone, parse_zone_within};
pub use nodes::{name_of, wire_of, within, Nodes};
pub use read::ZoneLimits;

/// Up to this many zones, the zone of a name is found by comparing it with every origin;
/// beyond, by looking its suffixes up.
const FEW_ZONES: usize = 8;

/// How deep `$INCLUDE` may nest before the file is rejected.
const MAX_INCLUDE_DEPTH: usize = 8;

/// A zone file error: the file, the line (0 when it concerns the whole file) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub struct ZoneError {
    pub file: PathBuf,
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.msg),
            l => write!(f, "{}:{l}: {}", self.file.display(), self.msg),
        }
    }
}

fn err(file: &Path, line: usize, msg: impl Into<String>) -> ZoneError {
    ZoneError {
        file: file.to_path_buf(),
        line,
        msg: msg.into(),
    }
}

/// All records of one type at one owner name, kept as their RDATA in wire form (names
/// uncompressed, case as written): a few bytes per record where parsed records take hundreds.
/// [`RrSet::records`] gives them back as records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RrSet {
    pub rtype: RecordType,
    /// Every record's TTL (RFC 2181 section 5.2: an RRset has one).
    pub ttl: u32,
    /// Each record's RDATA after its length (2 bytes, big-endian).
    wire: Box<[u8]>,
}

impl RrSet {
    /// The set of `data`, in that order, each of type `rtype`.
    pub fn new(rtype: RecordType, ttl: u32, data: &[RData]) -> Result<Self, String> {
        let mut wire = Vec::new();
        for d in data {
            push_rdata(&mut wire, rtype, &rdata_wire(rtype, d)?)?;
        }
        Ok(Self::from_wire(rtype, ttl, wire))
    }

    /// The set whose records' data, each after its length, is `wire`.
    fn from_wire(rtype: RecordType, ttl: u32, wire: Vec<u8>) -> Self {
        Self {
            rtype,
            ttl,
            wire: wire.into_boxed_slice(),
        }
    }

    /// The RDATA in wire form, one slice per record.
    pub fn wire(&self) -> impl Iterator<Item = &[u8]> + '_ {
        each_rdata(&self.wire)
    }

    /// Each record's RDATA after its length, as kept.
    pub fn raw(&self) -> &[u8] {
        &self.wire
    }

    /// How many records the set holds.
    pub fn len(&self) -> usize {
        self.wire().count()
    }

    pub fn is_empty(&self) -> bool {
        self.wire.is_empty()
    }

    /// Each record's data, read back from its wire form.
    pub fn data(&self) -> impl Iterator<Item = RData> + '_ {
        use hickory_proto::serialize::binary::{BinDecoder, Restrict};
        self.wire().filter_map(move |one| {
            let mut dec = BinDecoder::new(one);
            // Written from data that was read back equal when the zone was loaded.
            RData::read(&mut dec, self.rtype, Restrict::new(one.len() as u16)).ok()
        })
    }

    /// The records, owned by `owner`.
    pub fn records(&self, owner: &Name) -> Vec<Record> {
        self.data()
            .map(|d| {
                let mut r = Record::from_rdata(owner.clone(), self.ttl, d);
                r.dns_class = DNSClass::IN;
                r
            })
            .collect()
    }
}

/// Each record's data in a set's wire form (each after its length).
fn each_rdata(wire: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = wire;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let (one, tail) = tail.split_at(u16::from_be_bytes(*len) as usize);
        rest = tail;
        Some(one)
    })
}

/// `data` in wire form, names uncompressed.
fn rdata_wire(rtype: RecordType, data: &RData) -> Result<Vec<u8>, String> {
    use hickory_proto::serialize::binary::NameEncoding;
    let mut one = Vec::with_capacity(32);
    let mut enc = BinEncoder::new(&mut one);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    data.emit(&mut enc)
        .map_err(|e| format!("{rtype} record cannot be written in wire format: {e}"))?;
    Ok(one)
}

/// Appends one record's data, after its length, to a set's wire form.
fn push_rdata(wire: &mut Vec<u8>, rtype: RecordType, one: &[u8]) -> Result<(), String> {
    let len = u16::try_from(one.len())
        .map_err(|_| format!("{rtype} record is longer than 65535 bytes"))?;
    wire.extend_from_slice(&len.to_be_bytes());
    wire.extend_from_slice(one);
    Ok(())
}

/// One owner name in the zone. A node with no rrsets is an empty non-terminal.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub rrsets: Vec<RrSet>,
    /// The line where the name first appears in its file, for messages (0: an empty
    /// non-terminal, or a name no file wrote).
    pub line: u32,
}

impl Node {
    pub fn get(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }

    /// The records of type `rtype` here, owned by the node's name `key` (names are read
    /// lowercase, so the key is the name as read).
    pub fn records(&self, key: &LowerName, rtype: RecordType) -> Vec<Record> {
        self.get(rtype)
            .map_or_else(Vec::new, |s| s.records(&Name::from(key.clone())))
    }
}

/// One authoritative zone, checked and ready to answer from.
#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: LowerName,
    /// The origin as written, for the records gtmd synthesizes (SOA owner, pool answers).
    pub origin_name: Name,
    pub soa: Record,
    /// The negative-caching TTL of RFC 2308 section 5: min(SOA TTL, SOA MINIMUM).
    pub negative_ttl: u32,
    pub nodes: Nodes,
    /// Whether any name below the apex has NS records (a delegation): without one, no name
    /// needs a walk up its labels to look for a cut.
    cuts: bool,
    /// The file the zone came from, for messages.
    pub file: PathBuf,
    /// The DNSSEC keys the zone is signed with, if it is signed.
    pub keys: Option<std::sync::Arc<keys::ZoneKeys>>,
}

impl Zone {
    /// Signs the zone with `keys`: their DNSKEY, CDS and CDNSKEY sets join the apex, with the
    /// SOA's TTL.
    pub fn sign_with(&mut self, keys: keys::ZoneKeys) {
        let apex = self.nodes.get_or_default(&self.origin);
        apex.rrsets.retain(|s| !is_key_type(s.rtype));
        let mut sets: Vec<(RecordType, u32, Vec<RData>)> = Vec::new();
        for r in keys.apex_records(self.soa.ttl) {
            match sets.iter_mut().find(|s| s.0 == r.record_type()) {
                Some(s) => s.2.push(r.data),
                None => sets.push((r.record_type(), r.ttl, vec![r.data])),
            }
        }
        for (rtype, ttl, data) in sets {
            // Keys' records are made by gtmd and always written.
            if let Ok(set) = RrSet::new(rtype, ttl, &data) {
                apex.rrsets.push(set);
            }
        }
        self.keys = Some(std::sync::Arc::new(keys));
    }

    /// The closest delegation point (a non-apex node with NS) at or above `name`, if any.
    pub fn delegation_above(&self, name: &LowerName) -> Option<(LowerName, &Node)> {
        if !self.cuts {
            return None;
        }
        let apex_labels = self.origin.num_labels();
        let mut labels = name.num_labels();
        let mut cur = name.clone();
        let mut found = None;
        while labels > apex_labels {
            if let Some(n) = self.nodes.get(&cur) {
                if n.get(RecordType::NS).is_some() {
                    found = Some((cur.clone(), n));
                }
            }
            cur = cur.base_name();
            labels -= 1;
        }
        found
    }

    /// Whether any name below the apex has NS records.
    pub fn has_cuts(&self) -> bool {
        self.cuts
    }

    /// Adds an empty node for `name` (and every empty non-terminal above it) if absent.
    pub fn ensure_node(&mut self, name: &LowerName) {
        let stop = wire_of(&self.origin, &mut [0; 255]).len();
        self.nodes.ensure_wire(wire_of(name, &mut [0; 255]), stop);
    }

    /// How many records [`Zone::all_records`] gives, counted without reading them.
    pub fn record_count(&self) -> usize {
        self.record_count_upto(usize::MAX)
    }

    /// [`Zone::record_count`], counted only until it passes `limit` (then some number above
    /// `limit`): a large zone is not walked to the end to learn that it is large.
    pub fn record_count_upto(&self, limit: usize) -> usize {
        let signed = self.keys.is_some();
        let mut n = 0usize;
        for s in self.nodes.values().flat_map(|n| n.rrsets.iter()) {
            if s.rtype != RecordType::SOA && !(signed && is_key_type(s.rtype)) {
                n += s.len();
                if n > limit {
                    break;
                }
            }
        }
        n
    }

    /// Every record in the zone but the SOA (the order of a zone transfer's body). A signed
    /// zone is transferred unsigned: its secondaries sign it with the same keys, so the keys'
    /// records are left out too.
    pub fn all_records(&self) -> impl Iterator<Item = Record> + '_ {
        let mut names: Vec<(LowerName, &Node)> = self.nodes.iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let signed = self.keys.is_some();
        names.into_iter().flat_map(move |(n, node)| {
            let owner = Name::from(n);
            node.rrsets
                .iter()
                .filter(move |s| s.rtype != RecordType::SOA && !(signed && is_key_type(s.rtype)))
                .flat_map(move |s| s.records(&owner))
        })
    }

    /// The records of [`Zone::all_records`] in no particular order, with no list of names
    /// made first: a transfer streams these, holding nothing per name.
    pub fn records_unordered(&self) -> impl Iterator<Item = Record> + '_ {
        let signed = self.keys.is_some();
        self.nodes.iter().flat_map(move |(n, node)| {
            let owner = Name::from(n);
            node.rrsets
                .iter()
                .filter(move |s| s.rtype != RecordType::SOA && !(signed && is_key_type(s.rtype)))
                .flat_map(move |s| s.records(&owner))
        })
    }
}

/// The types a signed zone's keys give its apex (they are not transferred).
pub fn is_key_type(t: RecordType) -> bool {
    matches!(
        t,
        RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
    )
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.origin, self.file.display())
    }
}

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
        self.index_of(name).map(|i| &self.list[i])
    }

    /// The position in [`Zones::iter`] of the zone with the longest origin containing `name`.
    pub fn index_of(&self, name: &LowerName) -> Option<usize> {
        // A few zones: compare the name's tail with each origin, without making names.
        if self.list.len() <= FEW_ZONES {
            return self
                .list
                .iter()
                .enumerate()
                .filter(|(_, z)| z.origin.zone_of(name))
                .max_by_key(|(_, z)| z.origin.num_labels())
                .map(|(i, _)| i);
        }
        let mut cur = name.clone();
        loop {
            if let Some(&i) = self.by_origin.get(&cur) {
                return Some(i);
            }
            if cur.is_root() {
                return None;
            }
            cur = cur.base_name();
        }
    }

    /// The position of the zone that answers `qtype` at `name`: [`Zones::index_of`], except
    /// that a DS query at the apex of a zone whose parent is also served is the parent's
    /// (RFC 4035 section 3.1.4.1: DS lives on the parent side of the cut).
    pub fn index_for(&self, name: &LowerName, qtype: RecordType) -> Option<usize> {
        let i = self.index_of(name)?;
        if qtype == RecordType::DS && self.list[i].origin == *name && !name.is_root() {
            if let Some(p) = self.index_of(&name.base_name()) {
                return Some(p);
            }
        }
        Some(i)
    }

    /// The zone at position `i` of [`Zones::iter`].
    pub fn get(&self, i: usize) -> Option<&Zone> {
        self.list.get(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests;
