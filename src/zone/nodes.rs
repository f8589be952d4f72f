//! A zone's nodes, keyed by owner name in lowercase wire form: the key the prepared query
//! path already holds for a question (no name is built to look one up), and a few bytes where
//! a parsed name takes about eighty.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::Node;

/// The longest wire-format name (RFC 1035 section 3.1).
const MAX_NAME: usize = 255;

#[derive(Debug, Clone, Default)]
pub struct Nodes {
    map: HashMap<Box<[u8]>, Node, RandomState>,
}

/// `name` in lowercase wire form, written into `buf`.
pub fn wire_of<'b>(name: &Name, buf: &'b mut [u8; MAX_NAME]) -> &'b [u8] {
    let mut at = 0usize;
    for label in name.iter() {
        // A name is at most 255 bytes in wire form, so its labels fit.
        buf[at] = label.len() as u8;
        for (d, s) in buf[at + 1..at + 1 + label.len()].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        at += 1 + label.len();
    }
    buf[at] = 0;
    &buf[..=at]
}

/// Whether the wire name `name` is `apex` or below it (`apex` one of its label-aligned tails).
pub fn within(name: &[u8], apex: &[u8]) -> bool {
    if !name.ends_with(apex) {
        return false;
    }
    let at = name.len() - apex.len();
    let mut i = 0usize;
    while i < at {
        i += 1 + name[i] as usize;
    }
    i == at
}

/// The name of a wire-form key.
pub fn name_of(wire: &[u8]) -> LowerName {
    // Keys are written by `wire_of` from names, so they read back.
    LowerName::new(&Name::read(&mut BinDecoder::new(wire)).unwrap_or_else(|_| Name::root()))
}

impl Nodes {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(n, RandomState::default()),
        }
    }

    pub fn get(&self, name: &LowerName) -> Option<&Node> {
        self.get_wire(wire_of(name, &mut [0; MAX_NAME]))
    }

    /// The node of a lowercase wire-form name.
    pub fn get_wire(&self, wire: &[u8]) -> Option<&Node> {
        self.map.get(wire)
    }

    pub fn contains_key(&self, name: &LowerName) -> bool {
        self.get(name).is_some()
    }

    /// The node of `name`, added empty if absent.
    pub fn get_or_default(&mut self, name: &LowerName) -> &mut Node {
        let key: Box<[u8]> = wire_of(name, &mut [0; MAX_NAME]).into();
        self.map.entry(key).or_default()
    }

    /// Adds an empty node for `wire` and each of its suffixes longer than `stop` bytes (the
    /// apex's wire length), where absent.
    pub fn ensure_wire(&mut self, wire: &[u8], stop: usize) {
        let mut at = 0usize;
        while wire.len() - at > stop {
            let tail = &wire[at..];
            if !self.map.contains_key(tail) {
                self.map.insert(tail.into(), Node::default());
            }
            at += 1 + wire[at] as usize;
        }
    }

    /// Adds the empty non-terminals: every missing name between a node and the apex, whose
    /// wire form is `stop` bytes long.
    pub fn add_empty_non_terminals(&mut self, stop: usize) {
        let mut missing: Vec<&[u8]> = Vec::new();
        for k in self.map.keys() {
            let mut at = 1 + k[0] as usize;
            while k.len() - at > stop {
                let tail = &k[at..];
                if !self.map.contains_key(tail) {
                    missing.push(tail);
                }
                at += 1 + k[at] as usize;
            }
        }
        // Sorted, so that a name missing under many nodes is added once.
        missing.sort_unstable();
        missing.dedup();
        let missing: Vec<Box<[u8]>> = missing.into_iter().map(Box::from).collect();
        for m in missing {
            self.map.insert(m, Node::default());
        }
    }

    /// Makes room for `n` more nodes.
    pub fn reserve(&mut self, n: usize) {
        self.map.reserve(n);
    }

    /// Gives back room no node takes.
    pub fn shrink_to_fit(&mut self) {
        self.map.shrink_to_fit();
    }

    /// Calls `f` on the node of the lowercase wire-form name `wire`, added empty if absent.
    pub fn with_node<R>(&mut self, wire: &[u8], f: impl FnOnce(&mut Node) -> R) -> R {
        match self.map.get_mut(wire) {
            Some(n) => f(n),
            None => f(self.map.entry(wire.into()).or_default()),
        }
    }

    /// Adds `node` under its lowercase wire-form name.
    pub fn insert_wire(&mut self, wire: Box<[u8]>, node: Node) {
        self.map.insert(wire, node);
    }

    pub fn insert(&mut self, name: &LowerName, node: Node) {
        self.map
            .insert(wire_of(name, &mut [0; MAX_NAME]).into(), node);
    }

    /// Every node with its name.
    pub fn iter(&self) -> impl Iterator<Item = (LowerName, &Node)> + '_ {
        self.map.iter().map(|(k, n)| (name_of(k), n))
    }

    /// Every node with its name in lowercase wire form.
    pub fn iter_wire(&self) -> impl Iterator<Item = (&[u8], &Node)> + '_ {
        self.map.iter().map(|(k, n)| (&**k, n))
    }

    pub fn keys(&self) -> impl Iterator<Item = LowerName> + '_ {
        self.map.keys().map(|k| name_of(k))
    }

    pub fn values(&self) -> impl Iterator<Item = &Node> + '_ {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl std::ops::Index<&LowerName> for Nodes {
    type Output = Node;

    fn index(&self, name: &LowerName) -> &Node {
        self.get(name).expect("no node of that name")
    }
}
