//! The rise/fall state machine of one member. Pure: no I/O, no clock.
//!
//! ```text
//!              first probe ok                      first probe failed
//!   Unknown ─────────────────────▶ Up     Unknown ──────────────────────▶ Down
//!
//!        `fall` consecutive failures
//!   Up ─────────────────────────────────▶ Down
//!    ▲  (fewer failures, then a success:   │
//!    │   stays Up, the count restarts)     │
//!    └─────────────────────────────────────┘
//!        `rise` consecutive successes
//! ```
//!
//! A member that is Up with one or more failures counted is *suspect*: still answered, but
//! on its way down if the failures continue.

use std::time::{Duration, Instant};

use serde::Serialize;

/// A member's health as probing has established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unknown,
    Up,
    Down,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        })
    }
}

/// The thresholds of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures that take an Up member Down (at least 1).
    pub fall: u32,
    /// Consecutive successes that bring a Down member Up (at least 1).
    pub rise: u32,
}

/// A change of state caused by one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// One member's health and the run of results against its current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    /// Consecutive results that disagree with `state` (failures when Up, successes when Down).
    pub streak: u32,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub const fn new() -> Self {
        Self {
            state: State::Unknown,
            streak: 0,
        }
    }

    /// Up and answered, but failing: `fall` more failures in a row would take it down.
    pub fn suspect(&self) -> bool {
        self.state == State::Up && self.streak > 0
    }

    /// Feeds one probe result; returns the transition if the state changed.
    pub fn observe(&mut self, ok: bool, t: Thresholds) -> Option<Transition> {
        let from = self.state;
        let to = match (self.state, ok) {
            (State::Unknown, true) => State::Up,
            (State::Unknown, false) => State::Down,
            (State::Up, true) | (State::Down, false) => {
                self.streak = 0;
                return None;
            }
            (State::Up, false) => self.step(t.fall.max(1), State::Down)?,
            (State::Down, true) => self.step(t.rise.max(1), State::Up)?,
        };
        self.state = to;
        self.streak = 0;
        Some(Transition { from, to })
    }

    fn step(&mut self, needed: u32, next: State) -> Option<State> {
        self.streak += 1;
        (self.streak >= needed).then_some(next)
    }
}

/// Flap damping settings of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DampingRules {
    /// The least time a member stays out of answers after going down (zero: no damping).
    pub min_down: Duration,
    /// Downs within this window of each other count as flaps.
    pub window: Duration,
    /// The longest hold-down, however often the member flaps.
    pub max_down: Duration,
}

/// Flap damping of one member: after going down it stays out of answers for a hold-down,
/// even if probes pass again; each further down within the window doubles the hold-down,
/// up to the cap. Pure: the caller passes the time.
#[derive(Debug, Clone, Default)]
pub struct Damping {
    /// When the member went down, within the window of the last one.
    downs: std::collections::VecDeque<Instant>,
    /// Out of answers until then.
    pub held_until: Option<Instant>,
    /// The hold-down given at the last down.
    pub hold: Duration,
}

impl Damping {
    /// Records a down at `now` and returns the hold-down it gets.
    /// Downs are counted (as flaps) whether or not the check damps them.
    pub fn went_down(&mut self, now: Instant, r: DampingRules) -> Duration {
        while self
            .downs
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > r.window)
        {
            self.downs.pop_front();
        }
        self.downs.push_back(now);
        if r.min_down.is_zero() {
            return Duration::ZERO;
        }
        let doublings = (self.downs.len() - 1).min(30) as u32;
        self.hold = r
            .min_down
            .saturating_mul(1 << doublings)
            .min(r.max_down.max(r.min_down));
        self.held_until = Some(now + self.hold);
        self.hold
    }

    /// Whether the member is kept out of answers at `now`.
    pub fn held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|t| now < t)
    }

    /// Downs within the window as of the last one (this one included).
    pub fn flaps(&self) -> usize {
        self.downs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_down_doubles_with_flaps_in_the_window_up_to_the_cap() {
        let r = DampingRules {
            min_down: Duration::from_secs(10),
            window: Duration::from_secs(300),
            max_down: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let mut d = Damping::default();
        assert_eq!(d.went_down(t0, r), Duration::from_secs(10));
        assert!(d.held(t0 + Duration::from_secs(9)));
        assert!(!d.held(t0 + Duration::from_secs(10)));
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(d.went_down(at(20), r), Duration::from_secs(20));
        assert_eq!(d.went_down(at(60), r), Duration::from_secs(40));
        assert_eq!(d.went_down(at(120), r), Duration::from_secs(60)); // capped
        assert_eq!(d.flaps(), 4);
        // Past the window the earlier downs no longer count.
        assert_eq!(d.went_down(at(1000), r), Duration::from_secs(10));
        assert_eq!(d.flaps(), 1);
        // No damping configured: never held.
        let mut d = Damping::default();
        let off = DampingRules {
            min_down: Duration::ZERO,
            ..r
        };
        assert_eq!(d.went_down(t0, off), Duration::ZERO);
        assert!(!d.held(t0));
    }

    #[test]
    fn downs_count_as_flaps_without_damping_too() {
        let off = DampingRules {
            min_down: Duration::ZERO,
            window: Duration::from_secs(600),
            max_down: Duration::from_secs(600),
        };
        let t0 = Instant::now();
        let mut d = Damping::default();
        for s in 0..10 {
            assert_eq!(
                d.went_down(t0 + Duration::from_secs(3 * s), off),
                Duration::ZERO
            );
        }
        assert_eq!(d.flaps(), 10);
        assert!(!d.held(t0 + Duration::from_secs(27)));
    }

    const T: Thresholds = Thresholds { fall: 3, rise: 2 };

    #[test]
    fn first_result_decides_the_state() {
        let mut h = Health::new();
        assert_eq!(h.observe(true, T).unwrap().to, State::Up);
        let mut h = Health::new();
        assert_eq!(h.observe(false, T).unwrap().to, State::Down);
    }

    #[test]
    fn member_goes_down_after_fall_consecutive_failures() {
        let mut h = Health::new();
        h.observe(true, T);
        assert!(h.observe(false, T).is_none());
        assert!(h.suspect());
        assert!(h.observe(false, T).is_none());
        assert_eq!(
            h.observe(false, T),
            Some(Transition {
                from: State::Up,
                to: State::Down
            })
        );
    }

    #[test]
    fn member_comes_back_after_rise_consecutive_successes() {
        let mut h = Health::new();
        h.observe(false, T);
        assert!(h.observe(true, T).is_none());
        assert_eq!(h.observe(true, T).unwrap().to, State::Up);
    }

    #[test]
    fn flapping_inside_the_thresholds_never_changes_state() {
        let mut h = Health::new();
        h.observe(true, T);
        for _ in 0..100 {
            assert!(h.observe(false, T).is_none());
            assert!(h.observe(false, T).is_none());
            assert!(h.observe(true, T).is_none());
        }
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn every_state_change_needs_the_full_run() {
        // Exhaustive over all result sequences of length 10, for a few thresholds.
        for (fall, rise) in [(1, 1), (2, 3), (3, 2)] {
            let t = Thresholds { fall, rise };
            for bits in 0u32..1024 {
                let mut h = Health::new();
                let mut run = (true, 0u32);
                for i in 0..10 {
                    let ok = bits & (1 << i) != 0;
                    run = if run.0 == ok && i > 0 {
                        (ok, run.1 + 1)
                    } else {
                        (ok, 1)
                    };
                    if let Some(tr) = h.observe(ok, t) {
                        if tr.from != State::Unknown {
                            let need = if ok { rise } else { fall };
                            assert!(run.1 >= need, "{bits:b} step {i}");
                        }
                    }
                }
            }
        }
    }
}
