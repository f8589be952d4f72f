//! The engine's side of [`super::history`]: a note per probe report, and at each 5 s tick the
//! step closed with every member's state, every name's queries and answer shares, and every
//! pool's and region's healthy members.

use std::time::Instant;

use hickory_proto::rr::LowerName;

use super::history::Closing;
use super::Engine;
use crate::base::state::Action;
use crate::steer::health::State;

/// Unix time in milliseconds.
pub(in crate::engine) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Engine {
    /// Tells the history the configuration's members (after a start or a reload).
    pub(super) fn history_members(&mut self) {
        let cfg = &self.cfg;
        let keys = cfg
            .members
            .iter()
            .map(|m| {
                let checks = m.checks.iter().map(|c| cfg.checks[c.0].name.clone());
                (
                    format!("{}/{}", cfg.pools[m.pool].name, m.name),
                    checks.collect(),
                )
            })
            .collect();
        self.history.set_members(keys);
    }

    /// Member `i`'s state as the history codes it ([`super::history::STATES`]).
    fn state_code(&self, i: usize, now: Instant) -> u8 {
        let m = &self.table.members[i];
        let disabled = m
            .override_
            .is_some_and(|k| self.overrides[k].action == Action::Disable);
        match m.health.state {
            State::Unknown => 1,
            _ if disabled => 3,
            _ if !self.passing(i, now) => 5,
            _ if m.health.suspect() => 4,
            _ => 2,
        }
    }

    /// A probe report of member `i`'s check `ci` took `latency`; `changed`: the member's
    /// state changed with it (its pool's and region's healthy members are noted, so that a
    /// step keeps the fewest it saw).
    pub(super) fn note_probe(
        &mut self,
        i: usize,
        ci: usize,
        latency: std::time::Duration,
        changed: bool,
    ) {
        let now = Instant::now();
        let code = self.state_code(i, now);
        let check = check_code(&self.table.members[i].checks[ci].health);
        let ms = latency.as_secs_f64() * 1000.0;
        self.history.probe(i, ci, ms, (code, check));
        if changed {
            let cfg = self.cfg.clone();
            let pool = &cfg.pools[cfg.members[i].pool];
            let up = self.healthy_of(&pool.members, now);
            self.history.group_low(false, &pool.name, up);
            if let Some(r) = self.table.members[i].region {
                let up = self.region_healthy(r, now);
                self.history.group_low(true, &cfg.regions[r].name, up);
            }
        }
    }

    /// Closes the history's step.
    pub(super) fn close_history_step(&mut self) {
        let now = Instant::now();
        let snap = self.published.load();
        let members = (0..self.cfg.members.len())
            .map(|i| {
                let checks = &self.table.members[i].checks;
                let codes = match checks.len() {
                    0 | 1 => Vec::new(),
                    _ => checks.iter().map(|c| check_code(&c.health)).collect(),
                };
                (self.state_code(i, now), codes)
            })
            .collect();
        let names = self
            .cfg
            .names
            .iter()
            .map(|b| {
                let key = LowerName::new(&b.name);
                let totals = self.resolvers.get(&key).map_or([0; 6], |r| r.queries());
                let shares = super::read::answer_shares(snap.bound.get(&key))
                    .into_iter()
                    .map(|s| (s.answer, s.share))
                    .collect();
                (b.name.to_string(), totals, shares)
            })
            .collect();
        let cfg = self.cfg.clone();
        let pools = cfg
            .pools
            .iter()
            .map(|p| {
                let up = self.healthy_of(&p.members, now);
                (p.name.as_str(), up.min(u16::MAX as usize - 1) as u16)
            })
            .collect();
        let regions = cfg
            .regions
            .iter()
            .enumerate()
            .map(|(r, region)| {
                let up = self.region_healthy(r, now);
                (region.name.as_str(), up.min(u16::MAX as usize - 1) as u16)
            })
            .collect();
        let c = Closing {
            members,
            names,
            pools,
            regions,
        };
        self.history.close(c);
        let bytes = self.history.bytes() as f64;
        metrics::gauge!(crate::base::metrics::HISTORY_BYTES).set(bytes);
    }
}

/// One check's state as the history codes it.
fn check_code(h: &crate::steer::health::Health) -> u8 {
    match h.state {
        State::Unknown => 1,
        State::Down => 5,
        State::Up if h.suspect() => 4,
        State::Up => 2,
    }
}
