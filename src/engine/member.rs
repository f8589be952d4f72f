//! What the engine knows of one member beside its configuration: its rise/fall state
//! (combined over its checks), its flap damping, its last probe result, its override and
//! region.

use std::time::{Duration, Instant};

use super::Engine;
use crate::config::Config;
use crate::probe::ProbeReport;
use crate::steer::health::{Damping, DampingRules, Health, State, Thresholds, Transition};

/// What the engine knows of one member, beside its configuration.
#[derive(Debug, Clone)]
pub(super) struct MemberState {
    /// Its rise/fall state machine.
    pub(super) health: Health,
    /// Its flap damping (downs within the window, hold-down).
    pub(super) damping: Damping,
    /// Its last probe result.
    pub(super) last: Last,
    /// The override that applies to it, as an index into [`Engine::overrides`].
    pub(super) override_: Option<usize>,
    /// Its region, as an index into the configuration's regions.
    pub(super) region: Option<usize>,
    /// Each check's own rise/fall and last result, in the member's order of checks; the
    /// member's `health` is theirs combined (with one check, that check's).
    pub(super) checks: Vec<CheckState>,
}

/// One check of a member.
#[derive(Debug, Clone, Default)]
pub(super) struct CheckState {
    pub(super) health: Health,
    pub(super) last: Last,
}

impl MemberState {
    pub(super) fn new(region: Option<usize>, checks: usize) -> Self {
        Self {
            health: Health::new(),
            damping: Damping::default(),
            last: Last::default(),
            override_: None,
            region,
            checks: vec![CheckState::default(); checks.max(1)],
        }
    }

    /// Feeds check `ci`'s result; the member is up when at least `require` of its checks
    /// are, unknown until each has reported. Returns the member's transition, if any.
    pub(super) fn observe(
        &mut self,
        ci: usize,
        ok: bool,
        t: Thresholds,
        require: usize,
    ) -> Option<Transition> {
        self.checks[ci].health.observe(ok, t);
        // Once per probe report: no allocation.
        let hs = || self.checks.iter().map(|c| c.health);
        let state = if hs().any(|h| h.state == State::Unknown) {
            State::Unknown
        } else if hs().filter(|h| h.state == State::Up).count() >= require {
            State::Up
        } else {
            State::Down
        };
        // Suspect (up) or recovering (down): some check is on its way to the other state.
        let streak = match self.checks.as_slice() {
            [one] => one.health.streak,
            _ => hs().filter(|h| h.state == state && h.streak > 0).count() as u32,
        };
        let from = self.health.state;
        self.health = Health { state, streak };
        (from != state).then_some(Transition { from, to: state })
    }
}

/// The region of each member of `cfg`.
pub(super) fn regions_of(cfg: &Config) -> impl Iterator<Item = Option<usize>> + '_ {
    (0..cfg.members.len()).map(|i| cfg.regions.iter().position(|r| r.members.contains(&i)))
}

#[derive(Debug, Default, Clone)]
pub(super) struct Last {
    pub(super) ok: Option<bool>,
    pub(super) error: Option<String>,
    pub(super) latency: Option<Duration>,
    pub(super) since: Option<Instant>,
    pub(super) probes: u64,
    /// For a member that is a domain name: why resolving it fails, while it does.
    pub(super) resolution: Option<String>,
    /// For a member that is a domain name: where its addresses came from.
    pub(super) resolved_from: Option<String>,
    /// For a member that is a domain name: the addresses it resolved to last.
    pub(super) resolved: Option<Vec<std::net::IpAddr>>,
}

impl Engine {
    /// Member `i`'s first probe result, `tr` from unknown: logged, alerted when down; true
    /// when it completes the first round (every member has reported).
    pub(super) fn first_result(&mut self, i: usize, tr: Transition, r: &ProbeReport) -> bool {
        let cfg = self.cfg.clone();
        let m = &cfg.members[i];
        let pool = &cfg.pools[m.pool].name;
        tracing::debug!(pool, member = %m.name, address = %m.answer(), state = %tr.to, error = r.error.as_deref().unwrap_or(""), "first probe result");
        if tr.to == State::Down {
            tracing::warn!(pool, member = %m.name, address = %m.answer(), error = r.error.as_deref().unwrap_or(""), "member is down at its first probe");
            if self.alerts_own_view() {
                self.member_alert(i, tr, r.error.clone());
            }
        }
        if self.unknown != 0 {
            return false;
        }
        let up = self
            .table
            .members
            .iter()
            .filter(|m| m.health.state == State::Up)
            .count();
        let down = self.table.members.len() - up;
        if self.ready {
            tracing::info!(up, down, "members added by the reload have been probed");
        } else {
            tracing::info!(up, down, "first probe round complete");
        }
        self.ready = true;
        true
    }

    /// Member `i` changed state (`tr`): logged, counted, alerted (alone), and held down by
    /// its check's flap damping (`rules`) when it went down.
    pub(super) fn changed(
        &mut self,
        i: usize,
        tr: Transition,
        r: &ProbeReport,
        rules: DampingRules,
    ) {
        let cfg = self.cfg.clone();
        let m = &cfg.members[i];
        let pool = &cfg.pools[m.pool].name;
        tracing::warn!(pool, member = %m.name, address = %m.answer(), from = %tr.from, to = %tr.to, error = r.error.as_deref().unwrap_or(""), "member changed state");
        metrics::counter!(crate::base::metrics::MEMBER_TRANSITIONS, "pool" => pool.clone(), "member" => m.name.clone(), "to" => tr.to.to_string()).increment(1);
        // In a cluster, the quorum's decision is alerted (by the leader), not this view.
        if self.alerts_own_view() {
            self.member_alert(i, tr, r.error.clone().filter(|_| !r.ok));
        }
        if tr.to == State::Down {
            let d = &mut self.table.members[i].damping;
            let hold = d.went_down(r.at, rules);
            if !hold.is_zero() {
                tracing::warn!(pool, member = %m.name, hold_down = ?hold, flaps = d.flaps(), "member held down");
            }
        }
    }
}
