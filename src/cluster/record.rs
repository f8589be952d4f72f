//! What the leader hands the session to record before its alerts are sent, and what an
//! instance alerted on its own while it was cut off from etcd.
//!
//! The leader's alerts are sent only once etcd holds a record of them: the new state and
//! the alerts still to deliver, written in a transaction that succeeds only while this
//! instance holds the leader key. Once delivered, they are marked so (the record is written
//! again without them). A leader that dies between the two leaves them in the record, and
//! the next one sends them with their ids; one that dies before the record is written
//! leaves the old state, and the next one alerts the difference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Alerted;
use crate::base::alert::{Alert, Alerts};
use crate::base::state::Override;

/// Per member (`pool/member`): the state an instance last alerted on its own (`true`: up).
pub type Alone = BTreeMap<String, bool>;

/// An override change as the instance that made it wrote it beside the overrides
/// (`changes/<alert id>`), for the leader to alert: the leader takes every change not
/// taken yet, in the order etcd wrote them, into its record (their alerts pending), and
/// deletes them in the transaction that writes the record. A change undone before any
/// leader saw it (set through one instance, cleared through another while the leader was
/// away) is alerted both ways, once each, though the overrides are as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Its alert, with its id and `cluster` scope.
    pub alert: Alert,
    /// The overrides after it.
    pub overrides: Vec<Override>,
    /// The etcd revision that wrote it (the order of changes).
    #[serde(skip)]
    pub rev: i64,
}

/// A record for the session to write while this instance leads, then the alerts to send.
#[derive(Clone)]
pub struct Record {
    /// The state the cluster's alerts tell once these are sent (nothing pending).
    pub state: Alerted,
    /// The alerts to send once etcd holds the record, with their ids and `cluster` scope.
    pub alerts: Vec<Alert>,
    /// The override changes (by alert id) whose alerts are among these: deleted from etcd
    /// in the transaction that writes the record.
    pub taken: Vec<String>,
    /// Where to send them.
    pub sink: Alerts,
}

/// Whether a live instance (the leader too) already alerted `member` as
/// `up` on its own (then the leader records the change without alerting it again).
pub fn alerted_alone(
    alone: &BTreeMap<String, Alone>,
    mut live: impl FnMut(&str) -> bool,
    member: &str,
    up: bool,
) -> bool {
    alone
        .iter()
        .any(|(id, a)| live(id) && a.get(member) == Some(&up))
}
