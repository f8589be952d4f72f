//! The etcd key layout under `/gtmd/<cluster name>/`, and what a key's new value (or its
//! deletion) changes in [`Shared`]. Pure: no I/O.
// Used by the session, which needs the `cluster` feature; the unit tests use it always.
#![cfg_attr(not(feature = "cluster"), allow(dead_code))]

use super::{Alone, Change, Instance, Shared, Verdict};
use crate::base::state::Override;

/// The keys of one cluster, for one instance.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub prefix: String,
    pub me: String,
}

/// What a key under the prefix is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Key<'a> {
    Instance(&'a str),
    View { instance: &'a str, member: &'a str },
    Overrides,
    Leader,
    Alerted,
    Alone(&'a str),
    Change(&'a str),
    Other,
}

impl Keys {
    pub fn instance(&self) -> String {
        format!("{}instances/{}", self.prefix, self.me)
    }
    pub fn view(&self, member: &str) -> String {
        format!("{}views/{}/{member}", self.prefix, self.me)
    }
    pub fn overrides(&self) -> String {
        format!("{}overrides", self.prefix)
    }
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }
    pub fn alerted(&self) -> String {
        format!("{}alerted", self.prefix)
    }
    pub fn alone(&self) -> String {
        format!("{}alone/{}", self.prefix, self.me)
    }
    pub fn change(&self, id: &str) -> String {
        format!("{}changes/{id}", self.prefix)
    }

    pub fn parse<'a>(&self, key: &'a str) -> Key<'a> {
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
            return Key::Other;
        };
        if let Some(id) = rest.strip_prefix("instances/") {
            return Key::Instance(id);
        }
        if let Some(id) = rest.strip_prefix("alone/") {
            return Key::Alone(id);
        }
        if let Some(id) = rest.strip_prefix("changes/") {
            return Key::Change(id);
        }
        if let Some(v) = rest.strip_prefix("views/") {
            return match v.split_once('/') {
                Some((instance, member)) if member.contains('/') => Key::View { instance, member },
                _ => Key::Other,
            };
        }
        match rest {
            "overrides" => Key::Overrides,
            "leader" => Key::Leader,
            "alerted" => Key::Alerted,
            _ => Key::Other,
        }
    }
}

impl Shared {
    /// Takes a key's new value (`None`: deleted). A value that does not parse is logged and
    /// taken as a deletion (an instance of another version must not break this one), but
    /// for the overrides: those stay as they were (see [`Shared::take_overrides`]).
    pub(super) fn apply(&mut self, keys: &Keys, key: &str, value: Option<&[u8]>) {
        match keys.parse(key) {
            Key::Instance(id) => {
                match value.and_then(|v| parse::<Instance>(key, v)) {
                    Some(i) => {
                        self.instances.insert(id.to_string(), i);
                    }
                    None => {
                        self.instances.remove(id);
                    }
                }
                self.settle_leader();
            }
            Key::View { instance, member } => match value.and_then(|v| parse::<Verdict>(key, v)) {
                Some(v) => {
                    let views = self.views.entry(member.to_string()).or_default();
                    views.insert(instance.to_string(), v);
                }
                None => {
                    if let Some(m) = self.views.get_mut(member) {
                        m.remove(instance);
                        if m.is_empty() {
                            self.views.remove(member);
                        }
                    }
                }
            },
            Key::Overrides => {
                if let Some(v) = value {
                    self.take_overrides(key, v);
                }
            }
            Key::Leader => {
                self.leader_key = value.map(|v| String::from_utf8_lossy(v).into_owned());
                self.settle_leader();
            }
            Key::Alerted => self.alerted = value.and_then(|v| parse(key, v)),
            Key::Change(id) => match value.and_then(|v| parse::<Change>(key, v)) {
                Some(c) => {
                    self.changes.insert(id.to_string(), c);
                }
                None => {
                    self.changes.remove(id);
                }
            },
            Key::Alone(id) => match value.and_then(|v| parse::<Alone>(key, v)) {
                Some(a) => {
                    self.alone.insert(id.to_string(), a);
                }
                None => {
                    self.alone.remove(id);
                }
            },
            Key::Other => {}
        }
    }

    /// Notes that `key` was written at `rev`: for a view, the latest write of its
    /// instance; for an override change, its place in the order of changes.
    pub(super) fn note_revision(&mut self, keys: &Keys, key: &str, rev: i64) {
        match keys.parse(key) {
            Key::View { instance, .. } => {
                let w = self.written.entry(instance.to_string()).or_default();
                *w = (*w).max(rev);
            }
            Key::Change(id) => {
                if let Some(c) = self.changes.get_mut(id) {
                    c.rev = rev;
                }
            }
            _ => {}
        }
    }

    /// Takes the overrides key's value: a list replaces the one held; a value that does not
    /// parse leaves it and is kept as the problem (and logged once).
    fn take_overrides(&mut self, key: &str, v: &[u8]) {
        match serde_json::from_slice::<Vec<Override>>(v) {
            Ok(list) => {
                if self.overrides_problem.take().is_some() {
                    tracing::warn!(key, "cluster: the overrides in etcd read again");
                }
                self.overrides = Some(list);
            }
            Err(e) => {
                let p = format!(
                    "{key} in etcd does not parse ({e}): the last good list of {} overrides stays",
                    self.overrides.as_ref().map_or(0, Vec::len)
                );
                if self.overrides_problem.is_none() {
                    tracing::error!(problem = %p, "cluster: overrides");
                }
                self.overrides_problem = Some(p);
            }
        }
    }

    /// The leader is the holder of the leader key only while it is a live instance: a value
    /// that no live session holds (left by hand, or by another program) is ignored.
    pub(super) fn settle_leader(&mut self) {
        self.leader = self
            .leader_key
            .clone()
            .filter(|l| self.instances.contains_key(l));
    }
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Option<T> {
    serde_json::from_slice(v)
        .map_err(
            |e| tracing::warn!(key, error = %e, "cluster: a value in etcd does not parse; ignored"),
        )
        .ok()
}
