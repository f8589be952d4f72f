//! The world as the checker replays it: which faults, backend modes, processes and
//! overrides were in force at each moment of a history, and since when each condition the
//! invariants depend on has held.

use std::time::Duration;

use super::checker::ETCD_ELECTION;
use super::faults::Fault;
use super::history::Ev;
use super::net::Mode;
use super::{ETCD, GTMD, LEASE_TTL, MEMBERS, REGIONS};

/// What an override on a member is known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ov {
    Enabled,
    Disabled,
    /// An operation on it is under way, or was not acknowledged.
    Unknown,
}

/// A condition and since when it has held (None: it does not hold now).
#[derive(Debug, Clone, Copy, Default)]
pub struct Held(pub Option<Duration>);

impl Held {
    /// Records whether the condition holds at `t`.
    pub fn set(&mut self, holds: bool, t: Duration) {
        match (holds, self.0) {
            (true, None) => self.0 = Some(t),
            (false, _) => self.0 = None,
            _ => {}
        }
    }

    /// Whether it has held for at least `d` at `t`.
    pub fn for_at_least(&self, d: Duration, t: Duration) -> bool {
        self.0.is_some_and(|s| s + d <= t)
    }
}

/// The replayed state at the current point of the history.
#[derive(Debug, Default)]
pub struct State {
    pub faults: Vec<(u64, Fault)>,
    pub backend: [Option<Mode>; MEMBERS.len()],
    /// Per instance: Some(true) running, Some(false) paused, None gone.
    pub gtmd: [Option<bool>; GTMD.len()],
    /// Per instance: it answered a query since it last started.
    pub serving: [bool; GTMD.len()],
    /// Per instance: running (not paused) since.
    pub running: [Held; GTMD.len()],
    /// Per instance: its `/status` said `connected` since (by the polls).
    pub connected: [Held; GTMD.len()],
    /// Per member: down from every instance's vantage point since.
    pub all_down: [Held; MEMBERS.len()],
    /// Per member: up from a majority of vantage points (all three, or two while the three
    /// instances run) since.
    pub quorum_up: [Held; MEMBERS.len()],
    /// Per member: up, but down from one instance's vantage point, since.
    pub minority_down: [Held; MEMBERS.len()],
    /// Per instance: it reaches an etcd member of a working etcd quorum, since.
    pub etcd_reach: [Held; GTMD.len()],
    /// Per instance: it reaches no etcd member at all, since.
    pub etcd_cut: [Held; GTMD.len()],
    /// Per member and instance: up from that instance's vantage point since.
    pub own_up: [[Held; GTMD.len()]; MEMBERS.len()],
    /// etcd's leader, when known and still in a working quorum.
    pub etcd_leader: Option<usize>,
    /// etcd has a working quorum (two members running and connected) since; and, when it
    /// lost its leader, since then (the new leader is yet to be elected).
    pub etcd_ok: Held,
    /// No fault touches etcd or the instances' processes or their paths to etcd, since.
    pub calm: Held,
    /// etcd members paused or killed now.
    pub etcd_down: [bool; ETCD.len()],
    /// Per instance: the lease of an instance killed (whose restart waits for it to expire)
    /// may still live, counting its TTL from then: from the kill, and again from each moment
    /// a fault shakes etcd (a new etcd leader extends every lease).
    pub old_lease: [Option<Duration>; GTMD.len()],
    /// Per instance: another instance has surely held live views in etcd, since. The quorum
    /// is taken among the live instances, so one alone in the cluster decides from its own
    /// view, as one cut off from etcd does.
    pub accompanied: [Held; GTMD.len()],
}

/// A vantage point's view of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Up,
    Down,
    Unknown,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Whether some fault in force separates hosts `x` and `y`.
    pub fn separated(&self, x: &str, y: &str) -> bool {
        self.faults.iter().any(|(_, f)| f.separates(x, y))
    }

    /// What instance `g` can see of member `k`.
    pub fn view(&self, k: usize, g: usize) -> View {
        match self.backend[k] {
            Some(Mode::Refuse) | Some(Mode::Hang) => View::Down,
            Some(Mode::Flap) | None => View::Unknown,
            Some(Mode::Up) if self.separated(GTMD[g], REGIONS[MEMBERS[k].2]) => View::Down,
            Some(Mode::Up) => View::Up,
        }
    }

    /// The faults in force, as words.
    pub fn fault_words(&self) -> Vec<String> {
        self.faults
            .iter()
            .map(|(id, f)| format!("#{id} {f:?}"))
            .collect()
    }

    /// Applies one event that changes the world (not queries, polls or alerts), then
    /// recomputes every derived condition at `t`.
    pub fn apply(&mut self, t: Duration, ev: &Ev) {
        match ev {
            Ev::Fault {
                id,
                fault,
                on: true,
            } => {
                self.faults.push((*id, fault.clone()));
                self.process_fault(fault, true);
            }
            Ev::Fault {
                id,
                fault,
                on: false,
            } => {
                self.faults.retain(|(i, _)| i != id);
                self.process_fault(fault, false);
            }
            Ev::Backend { member, mode } => self.backend[*member] = Some(*mode),
            Ev::EtcdLeader(l) => self.etcd_leader = *l,
            Ev::Gtmd { inst, running } => {
                if *running == Some(true) && self.gtmd[*inst].is_none() {
                    self.serving[*inst] = false;
                }
                if running.is_none() {
                    self.old_lease[*inst] = Some(t);
                }
                self.gtmd[*inst] = *running;
            }
            _ => return,
        }
        self.derive(t);
    }

    fn process_fault(&mut self, f: &Fault, on: bool) {
        if let Fault::WipeAll = f {
            self.etcd_down = [on; ETCD.len()];
        }
        if let Fault::Pause(h) | Fault::Kill(h) = f {
            if let Some(e) = ETCD.iter().position(|x| x == h) {
                self.etcd_down[e] = on;
            }
        }
    }

    /// Recomputes the derived conditions at `t`.
    pub fn derive(&mut self, t: Duration) {
        let all_running = self.gtmd.iter().all(|g| *g == Some(true));
        for g in 0..GTMD.len() {
            self.running[g].set(self.gtmd[g] == Some(true), t);
        }
        for k in 0..MEMBERS.len() {
            let views: Vec<View> = (0..GTMD.len()).map(|g| self.view(k, g)).collect();
            let up = views.iter().filter(|v| **v == View::Up).count();
            let down = views.iter().filter(|v| **v == View::Down).count();
            self.all_down[k].set(down == GTMD.len(), t);
            for (g, v) in views.iter().enumerate() {
                self.own_up[k][g].set(*v == View::Up, t);
            }
            let minority = all_running && down == 1 && up == GTMD.len() - 1;
            self.minority_down[k].set(minority, t);
            self.quorum_up[k].set(up == GTMD.len() || minority, t);
        }
        let calm = !self.faults.iter().any(|(_, f)| f.disturbs_quorum());
        self.calm.set(calm, t);
        let shaken = self.faults.iter().any(|(_, f)| f.shakes_etcd());
        for from in self.old_lease.iter_mut() {
            *from = match *from {
                Some(f) if f + LEASE_TTL + ETCD_ELECTION <= t => None,
                Some(_) if shaken => Some(t),
                other => other,
            };
        }
        // A slow link to an etcd member may stall the whole of etcd: a slow leader is not
        // deposed (its heartbeats still pass) while every request waits on it, so etcd is
        // not surely working while one is in force (nor is an instance sure to fall back).
        let slow = self
            .faults
            .iter()
            .any(|(_, f)| matches!(f, Fault::Slow(h, _) if h.starts_with('e')));
        let working: Vec<usize> = (0..ETCD.len())
            .filter(|e| !slow && self.etcd_works(*e))
            .collect();
        let quorum: Vec<usize> = working
            .iter()
            .copied()
            .filter(|e| {
                working
                    .iter()
                    .filter(|o| !self.separated(ETCD[*e], ETCD[**o]))
                    .count()
                    >= 2
            })
            .collect();
        if self.etcd_leader.is_some_and(|l| !quorum.contains(&l)) {
            self.etcd_leader = None;
            self.etcd_ok = Held(None);
        }
        self.etcd_ok.set(quorum.len() >= 2, t);
        for (g, name) in GTMD.iter().enumerate() {
            let reach = quorum.iter().any(|e| !self.separated(name, ETCD[*e]));
            self.etcd_reach[g].set(quorum.len() >= 2 && reach, t);
            let none = (0..ETCD.len()).all(|e| self.etcd_down[e] || self.separated(name, ETCD[e]));
            self.etcd_cut[g].set(none, t);
        }
    }

    /// Recomputes [`State::accompanied`] at `t`, from the processes, the paths to etcd and
    /// the `/status` polls: an instance surely holds live views once it has run, reached a
    /// working etcd and said `connected` for `settle`.
    pub fn note_company(&mut self, t: Duration, settle: Duration) {
        let live: Vec<bool> = (0..GTMD.len())
            .map(|j| {
                self.running[j].for_at_least(settle, t)
                    && self.etcd_reach[j].for_at_least(settle, t)
                    && self.connected[j].for_at_least(settle, t)
            })
            .collect();
        for i in 0..GTMD.len() {
            let other = (0..GTMD.len()).any(|j| j != i && live[j]);
            self.accompanied[i].set(other, t);
        }
    }

    /// Whether etcd member `e` runs, is a member (not being replaced) and its link is up.
    fn etcd_works(&self, e: usize) -> bool {
        !self.etcd_down[e]
            && !self
                .faults
                .iter()
                .any(|(_, f)| matches!(f, Fault::LinkDown(h) | Fault::Wipe(h) if *h == ETCD[e]))
    }
}

/// Each member's override state over a run, from the ctl operations: change points.
pub fn override_timeline(evs: &[(Duration, Ev)]) -> Vec<Vec<(Duration, Ov)>> {
    let mut out = vec![vec![(Duration::ZERO, Ov::Enabled)]; MEMBERS.len()];
    let mut ops: Vec<(Duration, Duration, usize, &str, bool)> = Vec::new();
    for (t, ev) in evs {
        if let Ev::Ctl {
            op,
            target,
            started,
            acked,
            ..
        } = ev
        {
            if let Some(k) = MEMBERS
                .iter()
                .position(|m| format!("web/{}", m.0) == *target)
            {
                ops.push((*started, *t, k, op, *acked));
            }
        }
    }
    ops.sort_by_key(|o| o.0);
    for (start, end, k, op, acked) in ops {
        out[k].push((start, Ov::Unknown));
        if acked {
            let s = if op == "disable" {
                Ov::Disabled
            } else {
                Ov::Enabled
            };
            out[k].push((end, s));
        }
    }
    out
}

/// The override state of a timeline at `t`, and since when.
pub fn ov_at(tl: &[(Duration, Ov)], t: Duration) -> (Ov, Duration) {
    let i = tl.partition_point(|(s, _)| *s <= t);
    let (since, ov) = tl[i.saturating_sub(1)];
    (ov, since)
}
