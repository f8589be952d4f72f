//! The cluster under a randomized nemesis (tests/common/nemesis): three etcd members, three
//! instances, two backend regions and a Knot secondary, each host a network namespace; faults and heals from a
//! seeded generator; a checker over the whole history. Each run prints its seed: replay a
//! failure with `GTMD_NEMESIS_SEED=SEED`. Needs root, `ip`, `nft`, etcd, etcdctl and knotd.
//! `GTMD_NEMESIS_MINUTES` sets the length of the long run (`benches/nemesis.sh`).

#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use common::nemesis::faults::Fault;
use common::nemesis::history::Ev;
use common::nemesis::random::{assert_clean, run, seed, table};
use common::nemesis::{Bounds, World};

/// Runs the nemesis from `seed` for `length` and fails on any violation.
fn nemesis_run(seed: u64, length: Duration) {
    eprintln!("nemesis seed {seed} (replay: GTMD_NEMESIS_SEED={seed})");
    let mut w = World::start();
    eprintln!("bounds: {:?}", w.bounds);
    let (verdict, n) = run(&mut w, seed, length);
    let t = table(seed, length, &verdict, &n);
    eprintln!("{t}");
    assert_clean(&w, &format!("seed-{seed}"), &verdict);
}

#[test]
fn a_minute_of_random_faults_from_a_fixed_seed_breaks_no_invariant() {
    nemesis_run(seed(Some(38)), Duration::from_secs(60));
}

#[test]
fn a_minute_of_random_faults_from_a_seed_of_the_clock_breaks_no_invariant() {
    nemesis_run(seed(None), Duration::from_secs(60));
}

/// The long run of `benches/nemesis.sh`: `GTMD_NEMESIS_MINUTES` minutes (default 30).
#[test]
#[ignore]
fn the_long_nemesis_run_breaks_no_invariant() {
    let minutes: u64 = std::env::var("GTMD_NEMESIS_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    nemesis_run(seed(None), Duration::from_secs(minutes * 60));
}

/// A history of one alert delivered twice with the same `id` (from g3 at 10 s, from g1 at
/// 13 s), and `faults` (start, end, fault) meanwhile, as the checker judges it.
fn twice(faults: &[(f64, f64, Fault)]) -> common::nemesis::checker::Verdict {
    let alert = |from: &str| {
        Ev::Alert(serde_json::json!({
            "id": "g3-1-26", "event": "member_down", "member": "r1a",
            "instance": from, "scope": "cluster",
        }))
    };
    let at = Duration::from_secs_f64;
    let mut evs = vec![(at(10.0), alert("g3")), (at(13.0), alert("g1"))];
    for (id, (start, end, fault)) in faults.iter().enumerate() {
        for (t, on) in [(*start, true), (*end, false)] {
            let (id, fault) = (id as u64, fault.clone());
            evs.push((at(t), Ev::Fault { id, fault, on }));
        }
    }
    evs.sort_by_key(|(t, _)| *t);
    let bounds = Bounds {
        detection: Duration::from_millis(800),
        recovery: Duration::from_millis(600),
    };
    common::nemesis::checker::check(&evs, bounds)
}

fn alert_violations(v: &common::nemesis::checker::Verdict) -> usize {
    v.violations.iter().filter(|x| x.inv == 5).count()
}

#[test]
fn the_checker_flags_an_alert_id_received_twice_without_a_fault() {
    let v = twice(&[]);
    assert_eq!(
        (alert_violations(&v), v.resent),
        (1, 0),
        "{:?}",
        v.violations
    );
    // A fault that ends before the delivery, or that does not touch the sender or etcd,
    // does not excuse it.
    let v = twice(&[
        (8.0, 9.9, Fault::Pause("g3")),
        (9.0, 12.0, Fault::Pause("g2")),
    ]);
    assert_eq!(
        (alert_violations(&v), v.resent),
        (1, 0),
        "{:?}",
        v.violations
    );
    // Nor one that starts once the record was written.
    let v = twice(&[(11.6, 12.0, Fault::Kill("g3"))]);
    assert_eq!(
        (alert_violations(&v), v.resent),
        (1, 0),
        "{:?}",
        v.violations
    );
}

#[test]
fn the_checker_excuses_an_alert_sent_again_after_its_sender_lost_etcd_before_recording_it() {
    for fault in [
        Fault::Pause("g3"),
        Fault::Kill("g3"),
        Fault::LinkDown("g3"),
        Fault::Pause("e2"),
    ] {
        let v = twice(&[(10.0, 12.5, fault.clone())]);
        assert_eq!(
            (alert_violations(&v), v.resent),
            (0, 1),
            "{fault:?}: {:?}",
            v.violations
        );
    }
    // A cut that began before the delivery and lasts past it.
    let v = twice(&[(9.0, 10.5, Fault::LinkDown("g3"))]);
    assert_eq!(
        (alert_violations(&v), v.resent),
        (0, 1),
        "{:?}",
        v.violations
    );
}
