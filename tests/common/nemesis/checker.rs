//! The checker: replays a history and reports every violation of the cluster's invariants
//! (availability, truth, no false removal, overrides, alerts, serials), merged into
//! intervals, each with its duration and the faults in force when it began.
//!
//! Bounds, with the quorum delay of [`quorum_delay`] (1 s on a calm day, `lease_ttl` + 1 s
//! while a fault touches etcd or the instances): a member dead longer than `detection +
//! quorum delay` is in no answer (unless no member has been surely up and enabled for
//! `recovery + quorum delay`, from where the instance stands when it may be answering from
//! its own view: fail-open may answer it); a member up from a majority of
//! vantage points for `recovery + quorum delay` is in the answer of every instance connected
//! to etcd (saying so and reaching it) for [`SETTLE`], and while another instance surely
//! holds views in etcd (the quorum is taken among the live instances: one alone decides from
//! its own view, and is held to it); an acknowledged override is honoured
//! within [`OVERRIDE_BOUND`] by every such instance; an instance that reaches no etcd member
//! for `lease_ttl + 1 s` says so, and one that reaches a working etcd again is connected
//! within [`SETTLE`] (after [`ETCD_ELECTION`] for etcd itself to elect a leader once it has
//! a quorum again or has lost its leader, and after
//! a restart, once the lease of the instance killed before it has expired: `lease_ttl` +
//! [`ETCD_ELECTION`] after the kill or after the last fault that shook etcd, since a new
//! etcd leader extends every lease).

use std::fmt::Write;
use std::time::Duration;

use super::history::{Ev, QUERY_TIMEOUT};
use super::state::{ov_at, override_timeline, Ov, State};
use super::{Bounds, GTMD, LEASE_TTL, MEMBERS, QUORUM_CALM, QUORUM_DELAY};

/// The quorum delay that applies at `t`: [`QUORUM_CALM`] after a calm spell long enough for
/// every effect of the last disturbing fault to end, else [`QUORUM_DELAY`].
pub fn quorum_delay(st: &State, t: Duration) -> Duration {
    if st.calm.for_at_least(QUORUM_DELAY + SETTLE, t) {
        QUORUM_CALM
    } else {
        QUORUM_DELAY
    }
}

/// How long an acknowledged override may take to reach every connected instance.
pub const OVERRIDE_BOUND: Duration = Duration::from_secs(1);
/// How long an instance that (re)connects to etcd may take to converge.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How long etcd may take to elect a leader once a quorum of its members is back.
pub const ETCD_ELECTION: Duration = Duration::from_secs(3);
/// How long after the event is decided its alert may arrive (a new leader takes over
/// within the lease TTL, and delivery retries).
pub const ALERT_BOUND: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 3);

/// One violation, merged over consecutive observations.
#[derive(Debug, Clone)]
pub struct Violation {
    pub inv: u8,
    pub what: String,
    pub start: Duration,
    pub end: Duration,
    pub count: u64,
    pub faults: Vec<String>,
}

/// The checker's verdict over one history.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub queries: u64,
    pub failed: u64,
    /// Failed queries excused: sent to an instance paused, killed or not serving yet.
    pub excused: u64,
    pub alerts_expected: u64,
    pub alerts_received: u64,
    /// Alerts received again with the same `id`, whose first sender lost etcd before it
    /// could record the delivery (the documented duplicate window).
    pub resent: u64,
    /// Distinct serials of the zone seen at the primary and at the secondary.
    pub serials: [u64; 2],
    /// Changes of the primary's serial the secondary had to follow (invariant 6).
    pub follows: u64,
    pub end: Duration,
}

impl Verdict {
    pub fn flag_at(&mut self, inv: u8, what: String, t: Duration, st: &State) {
        self.flag(inv, what, t, st);
    }

    fn flag(&mut self, inv: u8, what: String, t: Duration, st: &State) {
        let merge = self
            .violations
            .iter_mut()
            .rev()
            .find(|v| v.inv == inv && v.what == what);
        if let Some(v) = merge {
            if t <= v.end + Duration::from_millis(500) {
                v.end = v.end.max(t);
                v.count += 1;
                return;
            }
        }
        self.violations.push(Violation {
            inv,
            what,
            start: t,
            end: t,
            count: 1,
            faults: st.fault_words(),
        });
    }

    /// Violations of invariant `inv`: how many, and their total time.
    pub fn of(&self, inv: u8) -> (usize, Duration) {
        let v: Vec<&Violation> = self.violations.iter().filter(|v| v.inv == inv).collect();
        (v.len(), v.iter().map(|v| v.end - v.start).sum())
    }

    /// Every violation, one a line.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for v in &self.violations {
            let _ = writeln!(
                s,
                "invariant {}: {} from {:.2}s to {:.2}s ({:.2}s, {} observations); faults then: {:?}",
                v.inv,
                v.what,
                v.start.as_secs_f64(),
                v.end.as_secs_f64(),
                (v.end - v.start).as_secs_f64(),
                v.count,
                v.faults
            );
        }
        s
    }
}

/// Times of each instance's process changes (start, pause, resume, kill).
fn process_changes(evs: &[(Duration, Ev)]) -> Vec<Vec<Duration>> {
    let mut out = vec![Vec::new(); GTMD.len()];
    for (t, ev) in evs {
        if let Ev::Gtmd { inst, .. } = ev {
            out[*inst].push(*t);
        }
    }
    out
}

/// Per instance: each `/status` poll's time and whether it said `connected`.
type Polls = Vec<Vec<(Duration, bool)>>;

fn status_polls(evs: &[(Duration, Ev)]) -> Polls {
    let mut out = vec![Vec::new(); GTMD.len()];
    for (t, ev) in evs {
        if let Ev::Status { inst, link, .. } = ev {
            out[*inst].push((*t, link == "connected"));
        }
    }
    out
}

/// Whether the first poll of `polls` after `t` said `connected` (or none came): the link
/// may change between two polls, so an instance counts as connected at `t` only when the
/// polls on both sides say so.
fn still_connected(polls: &[(Duration, bool)], t: Duration) -> bool {
    let next = polls.partition_point(|(p, _)| *p <= t);
    polls.get(next).is_none_or(|(_, c)| *c)
}

/// Judges the history `evs` (sorted by time) against the bounds `b`.
pub fn check(evs: &[(Duration, Ev)], b: Bounds) -> Verdict {
    let mut v = Verdict::default();
    let mut st = State::new();
    let ovs = override_timeline(evs);
    let changes = process_changes(evs);
    let polls = status_polls(evs);
    for (t, ev) in evs {
        let t = *t;
        v.end = t;
        match ev {
            Ev::Query { inst, answer } => {
                v.queries += 1;
                let polled = still_connected(&polls[*inst], t);
                check_query(&mut v, &st, &ovs, &changes, b, t, *inst, answer, polled);
                if answer.is_ok() {
                    st.serving[*inst] = true;
                }
            }
            Ev::Status {
                inst,
                link,
                overrides,
            } => {
                let connected = link == "connected";
                st.connected[*inst].set(connected, t);
                check_status(&mut v, &st, &ovs, t, *inst, link, overrides);
            }
            Ev::Alert(_) | Ev::Ctl { .. } => {}
            other => st.apply(t, other),
        }
        st.note_company(t, SETTLE);
    }
    super::alerts::check(&mut v, evs, b);
    super::serials::check(&mut v, evs);
    v
}

/// Whether instance `i` may be in fail-open at `t`: no member has surely been up and
/// enabled long enough for every instance to know it; or, when `i` may answer from its own
/// view (it is not surely following the quorum), for `i` itself to know it.
fn fail_open_possible(
    st: &State,
    ovs: &[Vec<(Duration, Ov)>],
    b: Bounds,
    t: Duration,
    i: usize,
    following: bool,
) -> bool {
    let up = b.recovery + quorum_delay(st, t);
    let surely_up = |held: &dyn Fn(usize) -> bool| {
        (0..MEMBERS.len()).any(|k| {
            let (ov, since) = ov_at(&ovs[k], t);
            held(k) && ov == Ov::Enabled && since + OVERRIDE_BOUND <= t
        })
    };
    let by_quorum = !surely_up(&|k| st.quorum_up[k].for_at_least(up, t));
    let alone = !following && !surely_up(&|k| st.own_up[k][i].for_at_least(up, t));
    by_quorum || alone
}

#[allow(clippy::too_many_arguments)]
fn check_query(
    v: &mut Verdict,
    st: &State,
    ovs: &[Vec<(Duration, Ov)>],
    changes: &[Vec<Duration>],
    b: Bounds,
    t: Duration,
    i: usize,
    answer: &Result<u32, String>,
    polled: bool,
) {
    let bits = match answer {
        Err(e) => {
            v.failed += 1;
            let near_change = changes[i]
                .iter()
                .any(|c| *c + Duration::from_millis(100) >= t && *c <= t + QUERY_TIMEOUT);
            if st.gtmd[i] == Some(true) && st.serving[i] && !near_change {
                v.flag(1, format!("{} failed a query: {e}", GTMD[i]), t, st);
            } else {
                v.excused += 1;
            }
            return;
        }
        Ok(bits) => *bits,
    };
    let observed = |d: Duration| st.running[i].for_at_least(d, t);
    // Its `/status` said connected before and after, and it has run long enough for a poll
    // after a pause to tell: a query sent to a paused instance is answered, when it resumes,
    // from what it knew before the pause. And it reaches etcd: one cut off says `connected`
    // for up to a lease TTL, on what it heard before the cut.
    let connected = st.connected[i].for_at_least(SETTLE, t)
        && st.etcd_reach[i].for_at_least(SETTLE, t)
        && observed(SETTLE)
        && polled;
    // It follows a quorum of instances only while another instance surely holds views in
    // etcd (for a quorum delay, as its views take that long to move the decision back):
    // alone, it decides from its own view.
    let accompanied = st.accompanied[i].for_at_least(QUORUM_CALM, t);
    let fail_open = fail_open_possible(st, ovs, b, t, i, connected && accompanied);
    for (k, m) in MEMBERS.iter().enumerate() {
        let answered = bits & (1 << k) != 0;
        let (ov, ov_since) = ov_at(&ovs[k], t);
        let dead = b.detection + quorum_delay(st, t);
        if answered && !fail_open && st.all_down[k].for_at_least(dead, t) && observed(dead) {
            v.flag(
                2,
                format!("{} answered {} dead from every vantage point", GTMD[i], m.0),
                t,
                st,
            );
        }
        let honoured = ov_since + OVERRIDE_BOUND <= t;
        if answered && !fail_open && ov == Ov::Disabled && honoured && connected {
            v.flag(4, format!("{} answered {} disabled", GTMD[i], m.0), t, st);
        }
        let up = b.recovery + quorum_delay(st, t);
        if !answered
            && connected
            && observed(up)
            && ov == Ov::Enabled
            && honoured
            && st.quorum_up[k].for_at_least(up, t)
            && (accompanied || st.own_up[k][i].for_at_least(up, t))
        {
            let (inv, how) = if st.minority_down[k].0.is_some() {
                (3, "up for a majority, cut from one instance")
            } else {
                (2, "up from every vantage point")
            };
            v.flag(inv, format!("{} left out {} ({how})", GTMD[i], m.0), t, st);
        }
    }
}

fn check_status(
    v: &mut Verdict,
    st: &State,
    ovs: &[Vec<(Duration, Ov)>],
    t: Duration,
    i: usize,
    link: &str,
    overrides: &[String],
) {
    let connected =
        st.connected[i].for_at_least(SETTLE, t) && st.etcd_reach[i].for_at_least(SETTLE, t);
    for (k, m) in MEMBERS.iter().enumerate() {
        let (ov, since) = ov_at(&ovs[k], t);
        if !connected || since + OVERRIDE_BOUND > t {
            continue;
        }
        let held = overrides.iter().any(|o| *o == format!("web/{}", m.0));
        if ov == Ov::Disabled && !held {
            v.flag(
                4,
                format!("{} lacks the acknowledged disable of {}", GTMD[i], m.0),
                t,
                st,
            );
        }
        if ov == Ov::Enabled && held {
            v.flag(
                4,
                format!(
                    "{} holds {}'s override after its acknowledged enable",
                    GTMD[i], m.0
                ),
                t,
                st,
            );
        }
    }
    let alone = LEASE_TTL + Duration::from_secs(1);
    if link == "connected"
        && st.etcd_cut[i].for_at_least(alone, t)
        && st.running[i].for_at_least(alone, t)
    {
        v.flag(
            4,
            format!("{} says connected, reaching no etcd member", GTMD[i]),
            t,
            st,
        );
    }
    let back = st.etcd_reach[i].for_at_least(SETTLE, t)
        && st.etcd_ok.for_at_least(ETCD_ELECTION + SETTLE, t)
        && st.running[i].for_at_least(LEASE_TTL + SETTLE, t)
        // A restarted instance waits for its killed predecessor's lease to expire.
        && st.old_lease[i].is_none_or(|from| from + LEASE_TTL + ETCD_ELECTION + SETTLE <= t);
    if link != "connected" && back {
        v.flag(
            4,
            format!("{} is {link}, reaching a working etcd", GTMD[i]),
            t,
            st,
        );
    }
}
