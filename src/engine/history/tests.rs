//! The history's steps, rings and series.

use super::*;

#[test]
fn latencies_keep_six_percent_from_ten_microseconds_to_twenty_seven_seconds() {
    assert_eq!(encode_ms(f64::NAN), 0);
    assert_eq!(decode_ms(0), None);
    for ms in [0.01, 0.1, 1.0, 12.5, 80.0, 999.0, 5000.0, 27_000.0] {
        let back = decode_ms(encode_ms(ms)).unwrap();
        assert!((back - ms).abs() <= ms * 0.031, "{ms} -> {back}");
    }
    assert_eq!(encode_ms(1e9), 255);
}

fn closing<'a>(members: &[u8]) -> Closing<'a> {
    Closing {
        members: members.iter().map(|&c| (c, Vec::new())).collect(),
        names: vec![("n.".into(), [0; 6], vec![("192.0.2.1".into(), 1.0)])],
        pools: vec![("p", 2)],
        regions: vec![],
    }
}

#[test]
fn a_step_keeps_the_worst_state_and_the_latency_range_and_a_coarse_step_folds_them() {
    let mut h = History::new(0);
    h.set_members(vec![("p/a".into(), vec![])]);
    h.close(closing(&[2]));
    h.probe(0, 0, 10.0, (2, 0));
    h.probe(0, 0, 30.0, (5, 0));
    h.close(closing(&[2]));
    let s = &h.members[0].1.series;
    let [state, lo, avg, hi] = s.at(false, 1).unwrap().to_le_bytes();
    assert_eq!(
        STATES[state as usize],
        Some("down"),
        "down for a moment in the step"
    );
    let near = |b, ms: f64| (decode_ms(b).unwrap() - ms).abs() < ms * 0.04;
    assert!(near(lo, 10.0) && near(avg, 20.0) && near(hi, 30.0));
    // The next step starts from the state at the close (up), not the worst.
    assert_eq!(s.at(false, 0).unwrap().to_le_bytes()[0], 2);
    h.close(closing(&[2]));
    assert_eq!(
        h.members[0].1.series.at(false, 2).unwrap().to_le_bytes()[0],
        2
    );
    for _ in 3..PER_COARSE {
        h.close(closing(&[2]));
    }
    let [state, lo, avg, hi] = h.members[0].1.series.at(true, 0).unwrap().to_le_bytes();
    assert_eq!(state, 5);
    assert!(near(lo, 10.0) && near(avg, 20.0) && near(hi, 30.0));
    assert_eq!(h.closed / PER_COARSE, 1, "one coarse step closed");
}

#[test]
fn a_removed_member_is_dropped_and_one_added_starts_empty() {
    let mut h = History::new(0);
    h.set_members(vec![("p/a".into(), vec![])]);
    h.close(closing(&[2]));
    h.probe(0, 0, 5.0, (2, 0));
    h.set_members(vec![("p/b".into(), vec![]), ("p/a".into(), vec![])]);
    h.close(closing(&[5, 2]));
    assert_eq!(h.members[1].0, "p/a");
    assert_eq!(
        h.members[1].1.series.at(false, 0).unwrap().to_le_bytes()[0],
        2
    );
    assert_ne!(
        h.members[1].1.series.at(false, 1).unwrap().to_le_bytes()[1],
        0,
        "its probe kept"
    );
    h.set_members(vec![("p/b".into(), vec![])]);
    assert_eq!(h.members.len(), 1);
    let b = &h.members[0].1.series;
    assert_eq!(b.at(false, 0), None, "b was not there at step 0");
    assert_eq!(b.at(false, 1).unwrap().to_le_bytes()[0], 5);
}

#[test]
fn a_member_with_several_checks_keeps_each_checks_latency() {
    let mut h = History::new(0);
    let checks = vec!["http".to_string(), "tcp".to_string()];
    h.set_members(vec![("p/a".into(), checks.clone())]);
    h.probe(0, 0, 50.0, (4, 5));
    h.probe(0, 1, 1.0, (4, 2));
    let mut c = closing(&[]);
    c.members = vec![(4, vec![5, 2])];
    h.close(c);
    let m = &h.members[0].1;
    let [state, lo, _, hi] = m.series.at(false, 0).unwrap().to_le_bytes();
    assert_eq!(
        (
            state,
            decode_ms(lo).unwrap() < 1.1,
            decode_ms(hi).unwrap() > 45.0
        ),
        (4, true, true)
    );
    let http = m.checks[0].1.series.at(false, 0).unwrap().to_le_bytes();
    let tcp = m.checks[1].1.series.at(false, 0).unwrap().to_le_bytes();
    assert_eq!((m.checks[0].0.as_str(), http[0]), ("http", 5));
    assert!(decode_ms(http[1]).unwrap() > 45.0 && decode_ms(tcp[3]).unwrap() < 1.1);
    // The same checks after a reload: kept; other checks: begun again.
    h.set_members(vec![("p/a".into(), checks)]);
    assert!(h.members[0].1.checks[0].1.series.at(false, 0).is_some());
    h.set_members(vec![("p/a".into(), vec!["icmp".into(), "tcp".into()])]);
    assert_eq!(h.members[0].1.checks[0].0, "icmp");
    assert_eq!(h.members[0].1.checks[0].1.series.at(false, 0), None);
}

#[test]
fn a_group_keeps_the_fewest_healthy_members_of_the_step() {
    let mut h = History::new(0);
    h.close(closing(&[]));
    h.group_low(false, "p", 0);
    h.close(closing(&[]));
    h.close(closing(&[]));
    let g = &h.pools["p"].series;
    assert_eq!(
        (g.at(false, 0), g.at(false, 1), g.at(false, 2)),
        (Some(2), Some(0), Some(2))
    );
}

#[test]
fn a_coarse_share_counts_the_steps_an_answer_was_out_as_zero() {
    let mut h = History::new(0);
    for k in 0..PER_COARSE {
        let mut c = closing(&[]);
        if k > 0 {
            c.names[0].2 = vec![("192.0.2.2".into(), 1.0)];
        }
        h.close(c);
    }
    let n = &h.names["n."];
    let share = |a: &str| n.shares.iter().find(|s| s.0 == a).unwrap().1.at(true, 0);
    assert_eq!(
        share("192.0.2.1"),
        Some((200 / PER_COARSE) as u8),
        "in 1 step of 60"
    );
    // One first seen in the step: averaged over the steps since.
    assert_eq!(share("192.0.2.2"), Some(200));
}

#[test]
fn query_counts_are_per_step_and_shares_in_half_percents() {
    let mut h = History::new(0);
    let mut c = closing(&[]);
    c.names[0].1 = [10, 0, 5, 0, 1, 1];
    h.close(c);
    let mut c = closing(&[]);
    c.names[0].1 = [25, 1, 5, 0, 1, 1];
    c.names[0].2 = vec![("192.0.2.1".into(), 0.25), ("192.0.2.2".into(), 0.75)];
    h.close(c);
    let n = &h.names["n."];
    assert_eq!(
        n.queries.at(false, 0),
        Some([10, 0, 5, 0, 1, 1]),
        "from the start"
    );
    assert_eq!(n.queries.at(false, 1), Some([15, 1, 0, 0, 0, 0]));
    assert_eq!(n.shares[0].1.at(false, 1), Some(50));
    assert_eq!(n.shares[1].1.at(false, 0), None);
    assert_eq!(n.shares[1].1.at(false, 1), Some(150));
}

#[test]
fn the_bytes_held_follow_the_members_names_and_groups() {
    let mut h = History::new(0);
    let empty = h.bytes();
    h.set_members(vec![("p/a".into(), vec![]), ("p/b".into(), vec![])]);
    let two = h.bytes();
    let words = (FINE.steps + COARSE.steps) * 4;
    assert!(two - empty >= 2 * words, "{empty} then {two}");
    h.set_members(vec![("p/a".into(), vec!["x".into(), "y".into()])]);
    let checks = h.bytes();
    assert!(checks >= 3 * words && checks < two + 2 * words, "{checks}");
    // A name: its queries (six counters a step) and one series per answer; a pool: one.
    h.close(closing(&[2]));
    let named = h.bytes() - checks;
    assert!(
        named >= (FINE.steps + COARSE.steps) * (24 + 1 + 2),
        "{named}"
    );
}
