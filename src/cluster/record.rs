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

use super::Alerted;
use crate::base::alert::{Alert, Alerts};

/// Per member (`pool/member`): the state an instance last alerted on its own (`true`: up).
pub type Alone = BTreeMap<String, bool>;

/// A record for the session to write while this instance leads, then the alerts to send.
#[derive(Clone)]
pub struct Record {
    /// The state the cluster's alerts tell once these are sent (nothing pending).
    pub state: Alerted,
    /// The alerts to send once etcd holds the record, with their ids and `cluster` scope.
    pub alerts: Vec<Alert>,
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
