//! The cluster under a randomized nemesis (tests/common/nemesis): three etcd members, three
//! instances, two backend regions and a Knot secondary, each host a network namespace; faults and heals from a
//! seeded generator; a checker over the whole history. Each run prints its seed: replay a
//! failure with `GTMD_NEMESIS_SEED=SEED`. Needs root, `ip`, `nft`, etcd, etcdctl and knotd.
//! `GTMD_NEMESIS_MINUTES` sets the length of the long run (`benches/nemesis.sh`).

#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use common::nemesis::random::{assert_clean, run, seed, table};
use common::nemesis::World;

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
