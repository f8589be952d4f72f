//! The operator's overrides inside the engine: which applies to each member, changes
//! (persisted before they take effect), and drains that end by themselves.

use std::time::Duration;

use super::{Engine, OverrideOp};
use crate::alert::Alert;
use crate::overrides::{now_secs, Action, Override};

impl Engine {
    /// Starts with the overrides kept in the state file (those whose target no longer
    /// exists are kept, and apply again if it comes back).
    pub fn restore_overrides(&mut self, list: Vec<Override>) {
        self.overrides = list;
        self.apply_overrides();
        for o in &self.overrides {
            match crate::overrides::members_of(&self.cfg, &o.target) {
                Ok(_) => {
                    tracing::warn!(target = %o.target, action = ?o.action, reason = %o.reason, "override restored from the state file")
                }
                Err(e) => {
                    tracing::warn!(target = %o.target, error = %e, "override kept but matches nothing")
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
        let rank = |t: &str| {
            if t.starts_with("region:") {
                0
            } else if t.starts_with("pool:") {
                1
            } else {
                2
            }
        };
        let mut order: Vec<usize> = (0..self.overrides.len())
            .filter(|&k| !self.overrides[k].expired(now))
            .collect();
        order.sort_by_key(|&k| {
            (
                self.overrides[k].action == Action::Disable,
                rank(&self.overrides[k].target),
            )
        });
        for k in order {
            for i in crate::overrides::members_of(&self.cfg, &self.overrides[k].target)
                .unwrap_or_default()
            {
                of[i] = Some(k);
            }
        }
        self.override_of = of;
    }

    pub(super) async fn change_override(
        &mut self,
        op: OverrideOp,
    ) -> Result<Vec<Override>, String> {
        let before = self.overrides.clone();
        let (target, what) = match op {
            OverrideOp::Set {
                target,
                action,
                reason,
                duration,
            } => {
                crate::overrides::members_of(&self.cfg, &target)?;
                let since = now_secs();
                self.overrides.retain(|o| o.target != target);
                self.overrides.push(Override {
                    target: target.clone(),
                    action,
                    reason: reason.clone(),
                    since,
                    until: duration.map(|d| since + d.as_secs().max(1)),
                });
                tracing::warn!(target = %target, action = ?action, reason = %reason, duration = ?duration, "override set");
                let mut a = Alert::new("override_set");
                a.target = Some(target.clone());
                a.new_state = Some(format!("{action:?}").to_lowercase());
                a.reason = Some(reason.clone());
                a.command = Some(self.alerts.command(&["enable", &target]));
                self.alerts.send(a);
                (target, "set")
            }
            OverrideOp::Clear { target } => {
                if !self.overrides.iter().any(|o| o.target == target) {
                    return Err(format!("no override of {target:?}"));
                }
                self.overrides.retain(|o| o.target != target);
                tracing::warn!(target = %target, "override cleared");
                let mut a = Alert::new("override_cleared");
                a.target = Some(target.clone());
                self.alerts.send(a);
                (target, "cleared")
            }
        };
        if let Err(e) = self.persist().await {
            self.overrides = before;
            return Err(format!(
                "override of {target:?} not {what}: cannot write the state file: {e}"
            ));
        }
        self.apply_overrides();
        self.publish();
        Ok(self.overrides.clone())
    }

    /// Writes the overrides to the state file, if there is one, off the engine's thread.
    pub(super) async fn persist(&self) -> std::io::Result<()> {
        let Some(path) = self.cfg.state_file.clone() else {
            return Ok(());
        };
        let list = self.overrides.clone();
        tokio::task::spawn_blocking(move || crate::overrides::save(&path, &list))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
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
            tracing::warn!(target = %o.target, action = ?o.action, reason = %o.reason, "override ended by itself");
            let mut a = Alert::new("override_ended");
            a.target = Some(o.target.clone());
            a.reason = Some(o.reason.clone());
            self.alerts.send(a);
        }
        self.overrides.retain(|o| !o.expired(now));
        if let Err(e) = self.persist().await {
            tracing::error!(error = %e, "cannot write the state file after overrides ended");
        }
        self.apply_overrides();
        self.publish();
    }
}
