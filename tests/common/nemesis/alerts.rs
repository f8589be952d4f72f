//! Invariant 5, alerts: exactly one alert per decided event across the cluster (a member
//! down or up by the quorum, an override set or cleared), whatever leader changes happen,
//! delivered within [`ALERT_BOUND`] of the event being decided (or by the end of the run
//! when etcd had no working quorum meanwhile, as no leader can be elected then; and
//! [`ALERT_BOUND`] + [`ETCD_ELECTION`] after each fault that shook etcd meanwhile, as a new
//! etcd leader extends every lease, a dead leader's too).
//!
//! An alert is the same as another when both carry the same `id`; without `id`, alerts are
//! grouped by (event, member or target, scope, and the instance for instance-scope events).

use std::collections::BTreeMap;
use std::time::Duration;

use super::checker::{Verdict, ALERT_BOUND, ETCD_ELECTION};
use super::faults::Fault;
use super::history::Ev;
use super::state::{Held, State};
use super::{Bounds, ETCD, MEMBERS, QUORUM_DELAY};

const CLUSTER_EVENTS: [&str; 4] = [
    "member_down",
    "member_up",
    "override_set",
    "override_cleared",
];

/// One received alert of a cluster event: its time and subject (member or target).
struct Got {
    t: Duration,
    event: String,
    subject: String,
    json: serde_json::Value,
}

/// The alerts of cluster events in `scope` (`cluster`, or `instance`: those an instance
/// sent alone while cut off from etcd, which the leader records without sending again).
fn alerts_in(evs: &[(Duration, Ev)], scope: &str) -> Vec<Got> {
    evs.iter()
        .filter_map(|(t, ev)| match ev {
            Ev::Alert(a) => Some((t, a)),
            _ => None,
        })
        .filter(|(_, a)| CLUSTER_EVENTS.contains(&a["event"].as_str().unwrap_or("")))
        .filter(|(_, a)| a["scope"].as_str().unwrap_or("cluster") == scope)
        .map(|(t, a)| Got {
            t: *t,
            event: a["event"].as_str().unwrap_or("").to_string(),
            subject: a["member"]
                .as_str()
                .map(str::to_string)
                .or_else(|| a["target"].as_str().map(str::to_string))
                .unwrap_or_default(),
            json: a.clone(),
        })
        .collect()
}

/// Per member: the intervals during which it was down from every vantage point, and those
/// during which it was up from every one; and the intervals etcd had no working quorum.
type Intervals = Vec<(Duration, Duration)>;

fn truth_intervals(
    evs: &[(Duration, Ev)],
    end: Duration,
) -> (Vec<Intervals>, Vec<Intervals>, Intervals) {
    let mut st = State::new();
    let mut down = vec![Vec::new(); MEMBERS.len()];
    let mut up = vec![Vec::new(); MEMBERS.len()];
    let mut no_etcd = Vec::new();
    let mut etcd_down_since: Option<Duration> = Some(Duration::ZERO);
    let mut prev: Vec<(Held, Held)> = vec![(Held::default(), Held::default()); MEMBERS.len()];
    let close = |h: Held, now: Held, t: Duration, out: &mut Intervals| {
        if let (Some(s), None) = (h.0, now.0) {
            out.push((s, t));
        }
    };
    for (t, ev) in evs {
        if !matches!(ev, Ev::Fault { .. } | Ev::Backend { .. } | Ev::Gtmd { .. }) {
            continue;
        }
        st.apply(*t, ev);
        for k in 0..MEMBERS.len() {
            let all_up = if st.minority_down[k].0.is_some() {
                Held(None)
            } else {
                st.quorum_up[k]
            };
            close(prev[k].0, st.all_down[k], *t, &mut down[k]);
            close(prev[k].1, all_up, *t, &mut up[k]);
            prev[k] = (st.all_down[k], all_up);
        }
        match (etcd_down_since, st.etcd_ok.0.is_some()) {
            (None, false) => etcd_down_since = Some(*t),
            (Some(s), true) => {
                no_etcd.push((s, *t));
                etcd_down_since = None;
            }
            _ => {}
        }
    }
    for k in 0..MEMBERS.len() {
        close(prev[k].0, Held(None), end, &mut down[k]);
        close(prev[k].1, Held(None), end, &mut up[k]);
    }
    if let Some(s) = etcd_down_since {
        no_etcd.push((s, end));
    }
    (down, up, no_etcd)
}

/// Checks invariant 5 and counts the alerts expected and received.
pub fn check(v: &mut Verdict, evs: &[(Duration, Ev)], b: Bounds) {
    let got = alerts_in(evs, "cluster");
    // An event an instance alerted alone (cut off from etcd) is told: the leader records
    // it without sending it again.
    let alone = alerts_in(evs, "instance");
    v.alerts_received = got.len() as u64;
    duplicates(v, &got, evs);
    let end = v.end;
    let (down, up, no_etcd) = truth_intervals(evs, end);
    let etcd_gap = |from: Duration, to: Duration| no_etcd.iter().any(|(s, e)| *s < to && *e > from);
    // A new etcd leader extends every lease by its TTL and the election time, a dead
    // leader's too: its successor may take over only that long after a fault that shook etcd.
    let shakes: Vec<Duration> = evs
        .iter()
        .filter(|(_, ev)| matches!(ev, Ev::Fault { fault, .. } if fault.shakes_etcd()))
        .map(|(t, _)| *t)
        .collect();
    let extended = |from: Duration, mut by: Duration| {
        for s in &shakes {
            if *s >= from && *s <= by {
                by = by.max(*s + ALERT_BOUND + ETCD_ELECTION);
            }
        }
        by
    };
    let st = State::new();
    let mut expect =
        |v: &mut Verdict, event: &str, subject: &str, from: Duration, decided: Duration| {
            let mut by = extended(from, decided + ALERT_BOUND);
            if etcd_gap(from, by) {
                by = end;
            }
            if by > end {
                return; // the run ended before it was due
            }
            v.alerts_expected += 1;
            let ok = got
                .iter()
                .chain(&alone)
                .any(|g| g.event == event && g.subject == subject && g.t >= from && g.t <= by);
            if !ok {
                let what = format!(
                    "no {event} alert for {subject} decided at {:.2}s",
                    decided.as_secs_f64()
                );
                v.flag_at(5, what, decided, &st);
            }
        };
    let (fall, rise) = (b.detection + QUORUM_DELAY, b.recovery + QUORUM_DELAY);
    let margin = Duration::from_secs(1);
    for k in 0..MEMBERS.len() {
        let name = MEMBERS[k].0;
        for &(s, e) in &down[k] {
            if e - s < fall + margin {
                continue;
            }
            // Since the quorum last surely decided it up: an up spell too short for that
            // (a link up for a moment) leaves the down decided before it standing.
            let from = up[k]
                .iter()
                .filter(|(us, ue)| *ue <= s && *ue - *us >= rise + margin)
                .map(|(_, ue)| *ue)
                .max()
                .unwrap_or_default();
            expect(
                v,
                "member_down",
                name,
                from.saturating_sub(margin),
                s + fall,
            );
            if let Some(&(us, _)) = up[k]
                .iter()
                .find(|(us, ue)| *us >= e && *ue - *us >= rise + margin)
            {
                expect(v, "member_up", name, e.saturating_sub(margin), us + rise);
            }
        }
    }
    overrides(v, evs, &mut expect);
}

/// Each acknowledged disable of an enabled member expects an `override_set`, each
/// acknowledged enable of a disabled one an `override_cleared`.
fn overrides(
    v: &mut Verdict,
    evs: &[(Duration, Ev)],
    expect: &mut impl FnMut(&mut Verdict, &str, &str, Duration, Duration),
) {
    let mut disabled: BTreeMap<String, bool> = BTreeMap::new();
    for (t, ev) in evs {
        let Ev::Ctl {
            op,
            target,
            started,
            acked,
            ..
        } = ev
        else {
            continue;
        };
        if *op == "reload" || !*acked {
            disabled.remove(target);
            continue;
        }
        let now = *op == "disable";
        match disabled.insert(target.clone(), now) {
            Some(was) if was != now => {
                let event = if now {
                    "override_set"
                } else {
                    "override_cleared"
                };
                expect(v, event, target, *started, *t);
            }
            None if now => expect(v, "override_set", target, *started, *t),
            _ => {}
        }
    }
}

/// The same alert twice (same `id`); without ids, a member's down or up twice in a row
/// from one instance (for one scope), or more `override_set` (`override_cleared`) alerts
/// for a target than disable (enable) operations on it.
fn duplicates(v: &mut Verdict, got: &[Got], evs: &[(Duration, Ev)]) {
    let st = State::new();
    let mut ids: BTreeMap<String, Duration> = BTreeMap::new();
    let mut ids_sender: BTreeMap<String, String> = BTreeMap::new();
    let mut last: BTreeMap<(String, String), (&str, String)> = BTreeMap::new();
    let mut ops: BTreeMap<(String, &str), i64> = BTreeMap::new();
    for (_, ev) in evs {
        if let Ev::Ctl { op, target, .. } = ev {
            let event = if *op == "disable" {
                "override_set"
            } else {
                "override_cleared"
            };
            *ops.entry((target.clone(), event)).or_insert(0) += 1;
        }
    }
    for g in got {
        let id = g.json["id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| g.json["id"].as_u64().map(|n| n.to_string()));
        if let Some(id) = &id {
            if let Some(sender) = g.json["instance"].as_str() {
                ids_sender
                    .entry(id.clone())
                    .or_insert_with(|| sender.to_string());
            }
        }
        if let Some(id) = id {
            if let Some(first) = ids.insert(id.clone(), g.t) {
                let sender = ids_sender.get(&id).cloned().unwrap_or_default();
                if sender_lost_etcd(evs, &sender, first) {
                    v.resent += 1;
                    continue;
                }
                let what = format!(
                    "alert id {id} ({} {}) again, first at {:.2}s",
                    g.event,
                    g.subject,
                    first.as_secs_f64()
                );
                v.flag_at(5, what, g.t, &st);
            }
            continue;
        }
        if g.event.starts_with("override_") {
            let left = ops
                .entry((
                    g.subject.clone(),
                    if g.event == "override_set" {
                        "override_set"
                    } else {
                        "override_cleared"
                    },
                ))
                .or_insert(0);
            *left -= 1;
            if *left < 0 {
                let what = format!(
                    "{} for {} more often than operations asked (from {})",
                    g.event, g.subject, g.json["instance"]
                );
                v.flag_at(5, what, g.t, &st);
            }
            continue;
        }
        // The alert before it about the same member (and scope), from any instance: the
        // same event from the same instance is a duplicate (a new leader that repeats what
        // the old one said last is not judged here: that needs the alerts' ids).
        let scope = g.json["scope"].as_str().unwrap_or("").to_string();
        let now = (g.event.as_str(), g.json["instance"].to_string());
        if last.insert((g.subject.clone(), scope), now.clone()) == Some(now) {
            let what = format!(
                "{} for {} twice in a row (from {})",
                g.event, g.subject, g.json["instance"]
            );
            v.flag_at(5, what, g.t, &st);
        }
    }
}

/// How long after a delivery its sender may still be writing the record that says so: one
/// etcd write (max(`lease_ttl`/3, 0.5 s)) and a margin.
const RECORD_WRITE: Duration = Duration::from_millis(1500);

/// Whether the sender of an alert delivered at `at` may have lost the leadership before it
/// recorded the delivery (the documented duplicate window): a fault that stops or pauses it,
/// cuts it from an etcd member, or touches etcd itself was in force at some moment between
/// the delivery and the end of that record's write.
fn sender_lost_etcd(evs: &[(Duration, Ev)], sender: &str, at: Duration) -> bool {
    let mut on: BTreeMap<u64, Duration> = BTreeMap::new();
    let until = at + RECORD_WRITE;
    for (t, ev) in evs {
        if *t > until {
            break;
        }
        let Ev::Fault {
            id,
            fault,
            on: start,
        } = ev
        else {
            continue;
        };
        let takes = fault.shakes_etcd()
            || matches!(fault, Fault::Kill(h) | Fault::Pause(h) if *h == sender)
            || ETCD.iter().any(|e| fault.separates(sender, e));
        if !takes {
            continue;
        }
        if *start {
            on.insert(*id, *t);
        } else if on.remove(id).is_some() && *t >= at {
            return true;
        }
    }
    !on.is_empty()
}
