//! The operator's overrides inside the engine: which applies to each member, changes
//! (persisted before they take effect), and drains that end by themselves.

use std::time::Duration;

use super::{Engine, OverrideOp};
use crate::base::alert::Alert;
use crate::base::state::{now_secs, Action, Override};

/// The override that `target` gets now, if `target` names something in `cfg`.
pub(super) fn new_override(
    cfg: &crate::config::Config,
    target: crate::base::state::Target,
    action: Action,
    reason: String,
    duration: Option<Duration>,
) -> Result<Override, String> {
    crate::base::state::members_of(cfg, &target)?;
    let since = now_secs();
    Ok(Override {
        target,
        action,
        reason,
        since,
        until: duration.map(|d| since.saturating_add(d.as_secs().max(1))),
    })
}

impl Engine {
    /// Starts with the overrides kept in the state file (those whose target no longer
    /// exists are kept, and apply again if it comes back).
    pub fn restore_overrides(&mut self, restored: crate::base::state::Restored) {
        self.overrides = restored.overrides;
        self.versions.restore(restored.serials, restored.contents);
        self.notices_for = 0; // the serials may have moved: the NOTIFY task hears them again
        self.set_state_problem(restored.problem);
        self.apply_overrides();
        for o in &self.overrides {
            match crate::base::state::members_of(&self.cfg, &o.target) {
                Ok(_) => {
                    tracing::warn!(target = ?o.target, action = ?o.action, reason = ?o.reason, "override restored from the state file")
                }
                Err(e) => {
                    tracing::warn!(target = ?o.target, error = %e, "override kept but matches nothing")
                }
            }
        }
        self.publish();
    }

    /// Works out which override applies to each member: a disable over a force-up, and a
    /// member's own over its pool's over its region's.
    pub(super) fn apply_overrides(&mut self) {
        let now = now_secs();
        let mut of = vec![None; self.cfg.members.len()];
        let mut order: Vec<usize> = (0..self.overrides.len())
            .filter(|&k| !self.overrides[k].expired(now))
            .collect();
        order.sort_by_key(|&k| {
            (
                self.overrides[k].action == Action::Disable,
                self.overrides[k].target.rank(),
            )
        });
        for k in order {
            for i in crate::base::state::members_of(&self.cfg, &self.overrides[k].target)
                .unwrap_or_default()
            {
                of[i] = Some(k);
            }
        }
        for (m, o) in self.table.members.iter_mut().zip(of) {
            m.override_ = o;
        }
    }

    pub(super) async fn change_override(
        &mut self,
        op: OverrideOp,
    ) -> Result<Vec<Override>, String> {
        let before = self.overrides.clone();
        let (target, what, alert, duration) = match op {
            OverrideOp::Set {
                target,
                action,
                reason,
                duration,
            } => {
                let o = new_override(&self.cfg, target, action, reason, duration)?;
                self.overrides.retain(|x| x.target != o.target);
                let a = self.override_set_alert(&o);
                let target = o.target.clone();
                self.overrides.push(o);
                (target, "set", a, duration)
            }
            OverrideOp::Clear { target } => {
                if !self.overrides.iter().any(|o| o.target == target) {
                    return Err(format!("no override of {:?}", target.to_string()));
                }
                self.overrides.retain(|o| o.target != target);
                let a = override_cleared_alert(&target);
                (target, "cleared", a, None)
            }
        };
        if let Err(e) = self.persist().await {
            self.overrides = before;
            return Err(format!(
                "override of {:?} not {what}: cannot write the state file: {e}",
                target.to_string()
            ));
        }
        // Said only once it is kept: a change the state file refused never happened.
        tracing::warn!(target = ?target, action = ?alert.new_state, reason = ?alert.reason, duration = ?duration, "override {what}");
        self.alerts.send(alert);
        self.apply_overrides();
        self.publish();
        Ok(self.overrides.clone())
    }

    /// The alert that override `o` was set.
    pub(super) fn override_set_alert(&self, o: &Override) -> Alert {
        let mut a = Alert::new("override_set");
        a.target = Some(o.target.to_string());
        a.new_state = Some(format!("{:?}", o.action).to_lowercase());
        a.reason = Some(o.reason.clone());
        a.command = Some(self.alerts.command(&["enable", &o.target.to_string()]));
        a
    }

    /// The alert that an override change makes, if it makes one (an expiry is alerted
    /// when it is seen, not when it is written).
    pub(super) fn override_change_alert(
        &self,
        change: &crate::cluster::OverrideChange,
    ) -> Option<Alert> {
        use crate::cluster::OverrideChange;
        match change {
            OverrideChange::Set(o) => Some(self.override_set_alert(o)),
            OverrideChange::Clear(t) => Some(override_cleared_alert(t)),
            OverrideChange::Expire(_) => None,
        }
    }

    /// Writes the overrides to the state file, if there is one, off the engine's thread. A
    /// write that succeeds ends a problem with the file found at start.
    pub(super) async fn persist(&mut self) -> std::io::Result<()> {
        let Some(path) = self.cfg.state_file.clone() else {
            return Ok(());
        };
        let list = self.overrides.clone();
        let (serials, contents) = (self.versions.serials(), self.versions.contents());
        tokio::task::spawn_blocking(move || {
            crate::base::state::save(&path, &list, &serials, &contents)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
        if self.state_problem.is_some() {
            tracing::warn!("the state file is written whole again");
            self.set_state_problem(None);
        }
        Ok(())
    }

    /// Records (or, with `None`, ends) a problem with the state file: logged and alerted when
    /// it starts, shown in `/status` and by a gauge while it lasts.
    pub(super) fn set_state_problem(&mut self, problem: Option<String>) {
        if let Some(p) = &problem {
            tracing::error!(problem = %p, "state file");
            let mut a = Alert::new("state_file_unreadable");
            a.reason = Some(p.clone());
            self.alerts.send(a);
        }
        self.state_problem = problem;
    }

    /// After a reload: if the state file could not be read at start and has not been written
    /// since, reads it again; an operator who mended it gets its overrides.
    pub(super) fn reread_state_file(&mut self) {
        let (Some(path), Some(_)) = (&self.cfg.state_file, &self.state_problem) else {
            return;
        };
        match crate::base::state::load(path) {
            Ok(list) => {
                tracing::warn!(
                    overrides = list.len(),
                    "the state file reads again; its overrides apply"
                );
                self.overrides = list;
                self.set_state_problem(None);
                self.apply_overrides();
            }
            Err(e) => tracing::error!(error = %e, "the state file still cannot be read"),
        }
    }

    /// How long until the next override ends by itself.
    pub(super) fn next_expiry(&self) -> Option<Duration> {
        let now = now_secs();
        self.overrides
            .iter()
            .filter_map(|o| o.until)
            .min()
            .map(|u| Duration::from_secs(u.saturating_sub(now)))
    }

    pub(super) async fn expire_overrides(&mut self) {
        let now = now_secs();
        for o in self.overrides.iter().filter(|o| o.expired(now)) {
            tracing::warn!(target = ?o.target, action = ?o.action, reason = ?o.reason, "override ended by itself");
            let mut a = Alert::new("override_ended");
            a.target = Some(o.target.to_string());
            a.reason = Some(o.reason.clone());
            // Following the cluster, the leader's record tells it (see `sync_alerted`).
            if self.speaks_for_cluster() && !self.follows_cluster() {
                self.alerts.send(a);
            }
        }
        self.expire_in_cluster();
        self.overrides.retain(|o| !o.expired(now));
        if let Err(e) = self.persist().await {
            tracing::error!(error = %e, "cannot write the state file after overrides ended");
        }
        self.apply_overrides();
        self.publish();
    }
}

/// The alert that the override of `target` was cleared.
pub(super) fn override_cleared_alert(target: &crate::base::state::Target) -> Alert {
    let mut a = Alert::new("override_cleared");
    a.target = Some(target.to_string());
    a
}
