//! Invariant 6, serials: the zone's serial never goes backwards at the primary (g1, across
//! its restarts) nor at its Knot secondary (s1); one serial is one content (the primary
//! never serves two answers for NAME under one serial, and the secondary holds at a serial
//! what the primary served at it); and a change of the primary's serial made while the
//! secondary can reach it (both running, no fault between them) is at the secondary within
//! [`FOLLOW_BOUND`].

use std::collections::BTreeMap;
use std::time::Duration;

use gtmd::dns::snapshot::serial_gt;

use super::checker::Verdict;
use super::history::Ev;
use super::state::{Held, State};
use super::{GTMD, SECONDARY};

/// How long the secondary may take to hold a serial the primary serves.
pub const FOLLOW_BOUND: Duration = Duration::from_secs(1);
/// How long before the primary was first seen with a serial the path must already have
/// been open: the change may precede its first sighting by a poll, and its NOTIFY then.
const BEFORE: Duration = Duration::from_millis(200);

const WHO: [&str; 2] = [GTMD[0], SECONDARY];

/// One sighting: when, at which server, the serial and the answer for NAME.
struct Seen {
    t: Duration,
    at: usize,
    serial: u32,
    bits: u32,
}

/// The sightings of the zone, and the spans during which the secondary could reach the
/// primary (both running, no fault between them).
fn replay(evs: &[(Duration, Ev)]) -> (Vec<Seen>, Vec<(Duration, Duration)>) {
    let mut st = State::new();
    let mut secondary = Some(true);
    let mut open = Held(Some(Duration::ZERO));
    let mut spans = Vec::new();
    let mut seen = Vec::new();
    for (t, ev) in evs {
        match ev {
            Ev::Zone { at, serial, bits } => {
                seen.push(Seen {
                    t: *t,
                    at: *at,
                    serial: *serial,
                    bits: *bits,
                });
                continue;
            }
            Ev::Secondary(s) => secondary = *s,
            Ev::Fault { .. } | Ev::Gtmd { .. } => st.apply(*t, ev),
            _ => continue,
        }
        let now = st.gtmd[0] == Some(true)
            && secondary == Some(true)
            && !st.separated(GTMD[0], SECONDARY);
        if let (Some(s), false) = (open.0, now) {
            spans.push((s, *t));
        }
        open.set(now, *t);
    }
    if let Some(s) = open.0 {
        spans.push((s, Duration::MAX));
    }
    (seen, spans)
}

/// Checks invariant 6 over the history.
pub fn check(v: &mut Verdict, evs: &[(Duration, Ev)]) {
    let st = State::new();
    let (seen, spans) = replay(evs);
    // What the primary served at each serial.
    let mut served: BTreeMap<u32, u32> = BTreeMap::new();
    let mut last: [Option<u32>; 2] = [None, None];
    let mut changes: Vec<(Duration, u32)> = Vec::new();
    let mut distinct: [std::collections::BTreeSet<u32>; 2] = Default::default();
    for s in &seen {
        distinct[s.at].insert(s.serial);
        if let Some(prev) = last[s.at] {
            if serial_gt(prev, s.serial) {
                let what = format!(
                    "{}'s serial went back from {prev} to {}",
                    WHO[s.at], s.serial
                );
                v.flag_at(6, what, s.t, &st);
            }
        }
        if s.at == 0 {
            if last[0] != Some(s.serial) {
                changes.push((s.t, s.serial));
            }
            if let Some(b) = served.insert(s.serial, s.bits) {
                if b != s.bits {
                    let what = format!(
                        "{} served serial {} with two answers ({b:#b}, then {:#b})",
                        WHO[0], s.serial, s.bits
                    );
                    v.flag_at(6, what, s.t, &st);
                }
            }
        }
        last[s.at] = Some(s.serial);
    }
    for s in seen.iter().filter(|s| s.at == 1) {
        if let Some(b) = served.get(&s.serial).filter(|b| **b != s.bits) {
            let what = format!(
                "{} holds serial {} as {:#b}, where {} served {b:#b}",
                WHO[1], s.serial, s.bits, WHO[0]
            );
            v.flag_at(6, what, s.t, &st);
        }
    }
    v.serials = [distinct[0].len() as u64, distinct[1].len() as u64];
    follows(v, &seen, &spans, &changes);
}

/// Each change of the primary's serial made while the path was open, and open for
/// [`FOLLOW_BOUND`] after, is at the secondary by then.
fn follows(
    v: &mut Verdict,
    seen: &[Seen],
    spans: &[(Duration, Duration)],
    changes: &[(Duration, u32)],
) {
    let st = State::new();
    let end = seen.last().map(|s| s.t).unwrap_or_default();
    for &(t, serial) in changes {
        let due = t + FOLLOW_BOUND;
        let open = spans
            .iter()
            .any(|(s, e)| *s + BEFORE <= t && *e >= due + Duration::from_millis(100));
        if !open || due > end {
            continue;
        }
        v.follows += 1;
        let at_due = seen.iter().find(|s| s.at == 1 && s.t >= due);
        let Some(s) = at_due else {
            continue;
        };
        if serial_gt(serial, s.serial) {
            let what = format!(
                "{} held serial {} {:.1} s after {} served {serial}",
                WHO[1],
                s.serial,
                (s.t - t).as_secs_f64(),
                WHO[0]
            );
            v.flag_at(6, what, s.t, &st);
        }
    }
}
