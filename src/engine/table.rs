//! Member health as one table: each member's own state (rise/fall over its checks, flap
//! damping, last result, override, region) and each region's removal. The engine is the one
//! writer of it; what a name answers reads it only through a [`View`], the
//! [`HealthView`](crate::policy::HealthView) of publication, capacity and explain, which
//! also holds the operator's overrides, the quorum's decisions (in a cluster) and the
//! client groups' shares, as of one moment.

use std::collections::HashMap;
use std::time::Instant;

use hickory_proto::rr::LowerName;

use super::capacity::Meter;
use super::member::MemberState;
use crate::base::state::{Action, Override};
use crate::cluster::Decision;
use crate::steer::health::State;

/// Every member's health, in the configuration's order, and each region's removal.
#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) members: Vec<MemberState>,
    /// Per configured region: removed from the answers.
    pub(super) removed: Vec<bool>,
}

impl Table {
    /// Up and not held down by this instance's own probes.
    pub(super) fn local_passing(&self, i: usize, now: Instant) -> bool {
        self.members[i].health.state == State::Up && !self.members[i].damping.held(now)
    }

    /// Up and not held down (whatever its region): by `decided`, the quorum's decision when
    /// there is one, else by this instance's own view.
    pub(super) fn passing(&self, i: usize, now: Instant, decided: Option<&Decision>) -> bool {
        match decided {
            Some(d) => d.up,
            None => self.local_passing(i, now),
        }
    }

    /// Whether member `i`'s region is removed from the answers.
    pub(super) fn region_removed(&self, i: usize) -> bool {
        self.members[i].region.is_some_and(|r| self.removed[r])
    }
}

/// The table as steering sees it at one moment: what [`crate::policy::plans`] reads.
pub(super) struct View<'a> {
    pub(super) table: &'a Table,
    pub(super) overrides: &'a [Override],
    /// Per member: the quorum's decision, while answers follow the quorum.
    pub(super) decided: Option<&'a [Option<Decision>]>,
    pub(super) meters: &'a HashMap<LowerName, Meter>,
    pub(super) now: Instant,
}

impl View<'_> {
    /// Member `i`'s override's action, if one applies.
    fn action(&self, i: usize) -> Option<Action> {
        let k = self.table.members[i].override_?;
        Some(self.overrides[k].action)
    }
}

impl crate::policy::HealthView for View<'_> {
    /// In the answers: forced up, or (not disabled) passing with its region not removed.
    fn up(&self, i: usize) -> bool {
        match self.action(i) {
            Some(Action::Disable) => false,
            Some(Action::ForceUp) => true,
            None => {
                let decided = self.decided.and_then(|d| d.get(i)?.as_ref());
                self.table.passing(i, self.now, decided) && !self.table.region_removed(i)
            }
        }
    }
    fn eligible(&self, i: usize) -> bool {
        self.action(i) != Some(Action::Disable)
    }
    fn shares(&self, name: &crate::config::BoundName) -> Option<Vec<f64>> {
        self.meters
            .get(&LowerName::new(&name.name))
            .and_then(|m| m.shares.clone())
    }
}
