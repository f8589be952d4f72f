//! The alerts the engine builds for a member's and a region's changes.

use super::Engine;
use crate::base::alert::Alert;
use crate::steer::health::State;

impl Engine {
    /// Alerts a change of member `i` in this instance's own view (alone, or cut off from
    /// the cluster: then it is noted, for the cluster's leader not to alert it again).
    pub(super) fn member_alert(
        &mut self,
        i: usize,
        tr: crate::steer::health::Transition,
        error: Option<String>,
    ) {
        self.note_alone(i, tr.to == State::Up);
        self.alerts.send(self.member_alert_with(i, tr, error, None));
    }

    pub(super) fn member_alert_with(
        &self,
        i: usize,
        tr: crate::steer::health::Transition,
        error: Option<String>,
        reason: Option<String>,
    ) -> Alert {
        let m = &self.cfg.members[i];
        let pool = &self.cfg.pools[m.pool].name;
        let target = format!("{pool}/{}", m.name);
        let mut a = Alert::new(if tr.to == State::Down {
            "member_down"
        } else {
            "member_up"
        });
        a.pool = Some(pool.clone());
        a.member = Some(m.name.clone());
        a.region = m.region.clone();
        a.address = m.cname.is_none().then_some(m.address);
        a.cname = m.cname.as_ref().map(|n| n.to_string());
        a.old_state = Some(tr.from.to_string());
        a.new_state = Some(tr.to.to_string());
        a.error = error;
        a.reason = reason;
        a.command = Some(self.alerts.command(&[
            "disable",
            &target,
            "--reason",
            &format!("{} after alert", a.event),
        ]));
        a
    }
}

impl Engine {
    /// `resolution_failing` (with why) or `resolution_recovered` for member `i`, whose
    /// name is resolved to be probed.
    pub(super) fn resolution_alert(&self, i: usize, error: Option<String>) {
        let m = &self.cfg.members[i];
        let mut a = Alert::new(if error.is_some() {
            "resolution_failing"
        } else {
            "resolution_recovered"
        });
        a.pool = Some(self.cfg.pools[m.pool].name.clone());
        a.member = Some(m.name.clone());
        a.region = m.region.clone();
        a.cname = m.cname.as_ref().map(|n| n.to_string());
        a.error = error;
        self.alerts.send(a);
    }
}

/// `name_all_down` (with why, when known) or `name_recovered` for bound name `name`.
pub(super) fn name_alert(name: &str, down: bool, reason: Option<String>) -> Alert {
    let mut a = Alert::new(if down {
        "name_all_down"
    } else {
        "name_recovered"
    });
    a.name = Some(name.to_string());
    a.reason = down.then(|| reason.unwrap_or_else(|| "no member is healthy".into()));
    a
}

pub(super) fn region_alert(event: &str, region: &str, healthy: usize, size: usize) -> Alert {
    let mut a = Alert::new(event);
    a.region = Some(region.to_string());
    a.reason = Some(format!("{healthy} of {size} members healthy"));
    a
}
