//! One deterministic run per fault kind of the nemesis (tests/common/nemesis): the lab of
//! three etcd members, three instances, two backend regions and a Knot secondary, one fault
//! applied, held and healed, and the checker over the whole history. Each test also checks that its fault had
//! the effect it is meant to have, so that a clean verdict is not an empty one. Needs root,
//! `ip`, `nft`, etcd, etcdctl and knotd.

#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use common::nemesis::faults::{self, ctl, reload, Fault, Nemesis};
use common::nemesis::history::Ev;
use common::nemesis::net::Mode;
use common::nemesis::random::{assert_clean, settle_and_check};
use common::nemesis::{World, ETCD, GTMD, LEASE_TTL};

fn hold(d: Duration) {
    std::thread::sleep(d);
}

/// Starts the lab, lets it run 2 s, runs `act`, heals what is left, judges the history.
fn scenario(label: &str, act: impl FnOnce(&mut World, &mut Nemesis)) -> World {
    let mut w = World::start();
    hold(Duration::from_secs(2));
    let mut n = Nemesis::new();
    act(&mut w, &mut n);
    n.heal_all(&mut w);
    let v = settle_and_check(&mut w);
    eprintln!(
        "{label}: {} queries, {} failed while the instance was down or starting, {} alerts, \
         serials {:?} (primary, secondary), {} changes the secondary had to follow",
        v.queries, v.excused, v.alerts_received, v.serials, v.follows
    );
    assert_clean(&w, label, &v);
    w
}

/// Applies `f`, holds it for `d`, heals it.
fn for_a_while(w: &mut World, n: &mut Nemesis, f: Fault, d: Duration) {
    let id = n
        .apply(w, f.clone())
        .unwrap_or_else(|| panic!("{f:?} could not be applied"));
    hold(d);
    n.heal(w, id);
}

/// Whether some `/status` poll of `inst` showed the link `link`.
fn saw_link(w: &World, inst: usize, link: &str) -> bool {
    w.h.sorted()
        .iter()
        .any(|(_, e)| matches!(e, Ev::Status { inst: i, link: l, .. } if *i == inst && l == link))
}

/// Whether some answer of `inst` left member `k` out.
fn saw_without(w: &World, inst: usize, k: usize) -> bool {
    w.h.sorted().iter().any(
        |(_, e)| matches!(e, Ev::Query { inst: i, answer: Ok(b) } if *i == inst && b & (1 << k) == 0),
    )
}

/// The cluster alerts of `event` received.
fn alerts(w: &World, event: &str) -> usize {
    w.h.sorted()
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Alert(a) if a["event"] == event))
        .count()
}

#[test]
fn an_instance_cut_from_every_etcd_member_falls_back_says_so_and_rejoins() {
    let w = scenario("instance-from-etcd", |w, n| {
        let f = faults::instance_from_etcd(GTMD[1], false);
        for_a_while(w, n, f, LEASE_TTL + Duration::from_secs(3));
    });
    assert!(
        saw_link(&w, 1, "fallback"),
        "g2 never said it had fallen back"
    );
}

#[test]
fn an_instance_whose_packets_to_etcd_are_dropped_one_way_falls_back_and_rejoins() {
    let w = scenario("instance-to-etcd-one-way", |w, n| {
        let f = faults::instance_from_etcd(GTMD[0], true);
        for_a_while(w, n, f, LEASE_TTL + Duration::from_secs(3));
    });
    assert!(
        saw_link(&w, 0, "fallback"),
        "g1 never said it had fallen back"
    );
}

#[test]
fn etcds_leader_cut_from_its_followers_breaks_no_invariant() {
    scenario("etcd-leader-from-followers", |w, n| {
        let leader = w.etcd_leader_index().expect("etcd has a leader");
        let f = faults::leader_from_followers(leader);
        for_a_while(w, n, f, Duration::from_secs(6));
    });
}

#[test]
fn a_region_cut_from_one_instance_stays_in_every_answer() {
    let w = scenario("instance-from-region", |w, n| {
        for_a_while(
            w,
            n,
            faults::instance_from_region(GTMD[2], 0, false),
            Duration::from_secs(6),
        );
    });
    // The checker's invariant 3 holds: g3 kept r1's members although it saw them down.
    assert!(!saw_without(&w, 2, 0), "g3 left r1a out");
}

#[test]
fn a_region_cut_from_every_instance_leaves_every_answer_and_returns() {
    let w = scenario("region-from-all", |w, n| {
        for_a_while(w, n, faults::region_from_all(1), Duration::from_secs(6));
    });
    assert!(saw_without(&w, 0, 2), "r2a was never taken out");
    assert!(alerts(&w, "member_down") >= 2, "no member_down alerts");
}

#[test]
fn a_region_whose_link_goes_down_leaves_the_answers_and_returns() {
    let w = scenario("region-link-down", |w, n| {
        for_a_while(w, n, Fault::LinkDown("r1"), Duration::from_secs(6));
    });
    assert!(saw_without(&w, 1, 0), "r1a was never taken out");
}

#[test]
fn an_etcd_member_whose_link_goes_down_breaks_no_invariant() {
    scenario("etcd-link-down", |w, n| {
        for_a_while(w, n, Fault::LinkDown(ETCD[0]), Duration::from_secs(6));
    });
}

/// etcd's leader on a link of `rate` for 8 s.
fn slow_etcd_leader(label: &str, rate: &'static str) {
    let mut held = 0;
    scenario(label, |w, n| {
        let leader = w.etcd_leader_index().expect("etcd has a leader");
        let f = Fault::Slow(ETCD[leader], rate);
        for_a_while(w, n, f, Duration::from_secs(8));
        held = n.slowed.iter().sum();
    });
    assert!(held > 0, "the token buckets never held a packet back");
}

#[test]
fn etcds_leader_on_a_slow_link_breaks_no_invariant() {
    slow_etcd_leader("etcd-leader-slow-link", "128kbit");
}

/// At 64 kbit/s etcd's leader is not deposed (its heartbeats pass) yet no request through
/// it is answered in time: every instance falls back, answers from its own view, and
/// rejoins once the link is healed.
#[test]
fn etcds_leader_on_a_very_slow_link_breaks_no_invariant() {
    slow_etcd_leader("etcd-leader-very-slow-link", "64kbit");
}

#[test]
fn a_paused_instance_answers_again_when_resumed_and_the_others_carry_on() {
    scenario("pause-gtmd", |w, n| {
        for_a_while(
            w,
            n,
            Fault::Pause(GTMD[0]),
            LEASE_TTL + Duration::from_secs(2),
        );
        for_a_while(
            w,
            n,
            Fault::Backend {
                member: 1,
                mode: Mode::Refuse,
            },
            Duration::from_secs(4),
        );
    });
}

#[test]
fn a_killed_and_restarted_instance_rejoins_and_the_others_carry_on() {
    scenario("kill-gtmd", |w, n| {
        let id = n.apply(w, Fault::Kill(GTMD[1])).unwrap();
        for_a_while(
            w,
            n,
            Fault::Backend {
                member: 2,
                mode: Mode::Refuse,
            },
            Duration::from_secs(4),
        );
        n.heal(w, id);
        hold(Duration::from_secs(4));
    });
}

#[test]
fn a_paused_then_a_killed_etcd_member_break_no_invariant() {
    scenario("pause-kill-etcd", |w, n| {
        for_a_while(w, n, Fault::Pause(ETCD[1]), Duration::from_secs(5));
        hold(Duration::from_secs(2));
        for_a_while(w, n, Fault::Kill(ETCD[2]), Duration::from_secs(5));
    });
}

/// The leader's removal starts an election, which the instances on it ride out (or fall back
/// for a moment within the election time the checker allows).
#[test]
fn etcds_leader_replaced_by_an_empty_member_breaks_no_invariant() {
    scenario("wipe-etcd-leader", |w, n| {
        let leader = w.etcd_leader_index().expect("etcd has a leader");
        n.apply(w, Fault::Wipe(ETCD[leader]))
            .expect("the leader was replaced");
        hold(Duration::from_secs(4));
        assert!(ctl(w, 1, "disable", 2), "the disable was not acknowledged");
        hold(Duration::from_secs(2));
        assert!(ctl(w, 2, "enable", 2), "the enable was not acknowledged");
        hold(Duration::from_secs(2));
    });
}

#[test]
fn an_etcd_member_replaced_by_an_empty_one_breaks_no_invariant() {
    scenario("wipe-etcd-member", |w, n| {
        assert!(ctl(w, 0, "disable", 3), "the disable was not acknowledged");
        n.apply(w, Fault::Wipe(ETCD[0]))
            .expect("the member was replaced");
        hold(Duration::from_secs(4));
        assert!(ctl(w, 1, "enable", 3), "the enable was not acknowledged");
        hold(Duration::from_secs(2));
    });
}

#[test]
fn an_acknowledged_disable_survives_the_loss_of_all_etcd_data_and_a_later_write() {
    let w = scenario("etcd-data-lost", |w, n| {
        assert!(ctl(w, 1, "disable", 0), "the disable was not acknowledged");
        hold(Duration::from_secs(2));
        n.apply(w, Fault::WipeAll);
        hold(Duration::from_secs(3));
        // Another override written on the new, empty etcd: the first must stay.
        assert!(
            ctl(w, 0, "disable", 2),
            "the second disable was not acknowledged"
        );
        hold(Duration::from_secs(3));
        // Acknowledged or not, the checker judges what the instances did.
        ctl(w, 2, "enable", 0);
        ctl(w, 2, "enable", 2);
        hold(Duration::from_secs(2));
    });
    assert!(
        saw_without(&w, 0, 0),
        "r1a was never taken out by its override"
    );
}

#[test]
fn backends_that_refuse_hang_or_flap_leave_and_return_as_the_bounds_say() {
    let w = scenario("backends", |w, n| {
        for_a_while(
            w,
            n,
            Fault::Backend {
                member: 0,
                mode: Mode::Refuse,
            },
            Duration::from_secs(4),
        );
        for_a_while(
            w,
            n,
            Fault::Backend {
                member: 2,
                mode: Mode::Hang,
            },
            Duration::from_secs(4),
        );
        for_a_while(
            w,
            n,
            Fault::Backend {
                member: 3,
                mode: Mode::Flap,
            },
            Duration::from_secs(4),
        );
    });
    assert!(
        saw_without(&w, 1, 0) && saw_without(&w, 1, 2),
        "a dead member was never taken out"
    );
    assert!(alerts(&w, "member_down") >= 2, "no member_down alerts");
}

#[test]
fn disable_and_enable_through_different_instances_reach_every_instance_once() {
    let w = scenario("ctl", |w, _| {
        for (via, k) in [(0, 1), (1, 2)] {
            assert!(
                ctl(w, via, "disable", k),
                "the disable was not acknowledged"
            );
            hold(Duration::from_secs(2));
        }
        assert!(ctl(w, 2, "enable", 1), "the enable was not acknowledged");
        assert!(ctl(w, 0, "enable", 2), "the enable was not acknowledged");
        hold(Duration::from_secs(2));
    });
    assert_eq!(alerts(&w, "override_set"), 2);
    assert_eq!(alerts(&w, "override_cleared"), 2);
}

#[test]
fn a_config_reload_on_one_instance_breaks_no_invariant() {
    scenario("reload", |w, n| {
        assert!(reload(w, 1), "the reload was not acknowledged");
        for_a_while(
            w,
            n,
            Fault::Backend {
                member: 1,
                mode: Mode::Refuse,
            },
            Duration::from_secs(3),
        );
        assert!(reload(w, 1), "the reload was not acknowledged");
        hold(Duration::from_secs(2));
    });
}

/// The serials server `at` (0: the primary g1, 1: the secondary s1) was seen with, in order,
/// each once.
fn serials(w: &World, at: usize) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for (_, e) in w.h.sorted() {
        if let Ev::Zone { at: a, serial, .. } = e {
            if a == at && out.last() != Some(&serial) {
                out.push(serial);
            }
        }
    }
    out
}

/// A member that fails for a while: the zone's serial moves twice.
fn flap_member(w: &mut World, n: &mut Nemesis, member: usize) {
    for_a_while(
        w,
        n,
        Fault::Backend {
            member,
            mode: Mode::Refuse,
        },
        Duration::from_secs(3),
    );
}

#[test]
fn the_secondary_cut_from_its_primary_catches_up_once_healed_and_never_moves_back() {
    let w = scenario("cut-secondary", |w, n| {
        // Two serials (the member down, then up again) while the secondary is cut off: once
        // healed, only the second is announced.
        let cut = n.apply(w, faults::secondary_from_primary(false)).unwrap();
        flap_member(w, n, 0);
        hold(Duration::from_secs(2));
        n.heal(w, cut);
        // gtmd's NOTIFY retries (1 s, 2 s, 4 s) reach it.
        hold(Duration::from_secs(6));
        flap_member(w, n, 3);
    });
    let (p, s) = (serials(&w, 0), serials(&w, 1));
    assert!(p.len() >= 5, "the primary's serial moved only {p:?}");
    // The serials served during the cut never reached the secondary: it skipped them.
    assert!(s.len() < p.len(), "primary {p:?}, secondary {s:?}");
    assert_eq!(s.last(), p.last(), "primary {p:?}, secondary {s:?}");
}

#[test]
fn a_killed_primary_and_a_killed_secondary_never_move_a_serial_back() {
    let w = scenario("kill-primary-secondary", |w, n| {
        let kill = n.apply(w, Fault::Kill(GTMD[0])).unwrap();
        flap_member(w, n, 1);
        n.heal(w, kill);
        hold(LEASE_TTL + Duration::from_secs(4));
        let kill = n.apply(w, Fault::Kill(common::nemesis::SECONDARY)).unwrap();
        flap_member(w, n, 2);
        n.heal(w, kill);
        hold(Duration::from_secs(2));
        flap_member(w, n, 2);
    });
    let (p, s) = (serials(&w, 0), serials(&w, 1));
    assert!(p.len() >= 3, "the primary's serial moved only {p:?}");
    assert_eq!(s.last(), p.last(), "primary {p:?}, secondary {s:?}");
}

/// The cluster alerts of `event` about `member` received.
fn alerts_about(w: &World, event: &str, member: &str) -> usize {
    w.h.sorted()
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Alert(a) if a["event"] == event && a["member"] == member))
        .count()
}

#[test]
fn an_instance_left_alone_in_etcd_answers_from_its_own_view_and_rejoins_the_quorum() {
    let w = scenario("alone-in-etcd", |w, n| {
        let region = n
            .apply(w, faults::instance_from_region(GTMD[2], 0, false))
            .unwrap();
        hold(Duration::from_secs(2));
        let one = n
            .apply(w, faults::instance_from_etcd(GTMD[0], false))
            .unwrap();
        let two = n
            .apply(w, faults::instance_from_etcd(GTMD[1], false))
            .unwrap();
        // The other two's leases end: g3 is the only live instance, and decides alone.
        hold(LEASE_TTL + Duration::from_secs(3));
        n.heal(w, one);
        n.heal(w, two);
        hold(Duration::from_secs(4));
        n.heal(w, region);
        hold(Duration::from_secs(2));
    });
    // Alone, g3 followed its own view of the region it was cut from; with the quorum it
    // did not (invariant 3 held before and after).
    assert!(saw_without(&w, 2, 0), "g3 never decided alone");
    assert!(saw_link(&w, 0, "fallback") && saw_link(&w, 1, "fallback"));
}

#[test]
fn a_member_up_for_a_moment_between_two_failures_is_one_failure_for_the_quorum() {
    let w = scenario("short-up-spell", |w, n| {
        let first = n.apply(w, Fault::LinkDown("r1")).unwrap();
        hold(Duration::from_secs(4));
        n.heal(w, first);
        // Too short for two probes to pass: the quorum never sees it up.
        hold(Duration::from_millis(150));
        // Long enough for the checker to expect a member_down (detection, the quorum delay
        // and 1 s): the one sent for the first failure.
        let second = n.apply(w, Fault::LinkDown("r1")).unwrap();
        hold(Duration::from_secs(8));
        n.heal(w, second);
        hold(Duration::from_secs(3));
    });
    // One member_down for the two failures (the checker expects one, not two), and its
    // member_up once the link is back for good.
    assert_eq!(alerts_about(&w, "member_down", "r1a"), 1);
    assert_eq!(alerts_about(&w, "member_up", "r1a"), 1);
}

/// The index of the instance that holds the alert leadership, by its own `/status`.
fn gtmd_leader(w: &World) -> usize {
    let s = (0..GTMD.len())
        .find_map(|i| w.status(i).filter(|s| s["cluster"]["leader"].is_string()))
        .expect("an instance says who leads");
    let id = s["cluster"]["leader"].as_str().unwrap().to_string();
    GTMD.iter()
        .position(|g| *g == id)
        .expect("the leader is an instance")
}

/// The instance that sends the cluster's alerts is killed right after an override is
/// acknowledged through another, then etcd's own leader is cut off from its followers: the
/// new etcd leader extends every lease, the dead instance's too, so the next instance takes
/// the alert leadership later than a lease TTL after the kill. The alert still comes, once,
/// within the bound grown by a lease TTL and an election (the checker's invariant 5).
#[test]
fn an_alert_whose_sender_dies_while_etcd_changes_leader_comes_once_within_the_grown_bound() {
    let w = scenario("alert-leader-dies-etcd-leader-cut", |w, n| {
        let l = gtmd_leader(w);
        let via = (l + 1) % GTMD.len();
        let killed = n.apply(w, Fault::Kill(GTMD[l])).expect("the leader killed");
        assert!(
            ctl(w, via, "disable", 1),
            "the disable was not acknowledged"
        );
        let e = w.etcd_leader_index().expect("etcd has a leader");
        for_a_while(
            w,
            n,
            faults::leader_from_followers(e),
            Duration::from_secs(4),
        );
        hold(LEASE_TTL + Duration::from_secs(3));
        n.heal(w, killed);
        assert!(ctl(w, via, "enable", 1), "the enable was not acknowledged");
        hold(Duration::from_secs(3));
    });
    assert_eq!(alerts(&w, "override_set"), 1, "the disable's alert");
    assert_eq!(alerts(&w, "override_cleared"), 1, "the enable's alert");
}

/// g1's packets to etcd are dropped while etcd's still reach it, and 0.9 s into the cut
/// (before g1's session gives its member up) another instance writes an override: etcd
/// sends g1 the change on its watch, and g1 gets it, though etcd hears nothing from g1 (its
/// lease runs out). What g1 merely hears is not etcd answering it: it falls back within the
/// lease TTL of the last answer before the cut (at most 250 ms before it), not of the change.
#[test]
fn an_instance_that_hears_etcd_but_is_not_heard_by_it_falls_back() {
    let mut cut_id = 0;
    let w = scenario("instance-heard-not-hearing", |w, n| {
        cut_id = n
            .apply(w, faults::instance_from_etcd(GTMD[0], true))
            .expect("the cut applied");
        hold(Duration::from_millis(900));
        assert!(ctl(w, 1, "disable", 2), "the disable was not acknowledged");
        hold(LEASE_TTL + Duration::from_secs(2));
        assert!(ctl(w, 1, "enable", 2), "the enable was not acknowledged");
        n.heal(w, cut_id);
    });
    let evs = w.h.sorted();
    let cut = evs
        .iter()
        .find(|(_, e)| matches!(e, Ev::Fault { id, on: true, .. } if *id == cut_id))
        .map(|(t, _)| *t)
        .expect("the cut is in the history");
    let fell = evs
        .iter()
        .find(|(t, e)| {
            *t > cut && matches!(e, Ev::Status { inst: 0, link, .. } if link == "fallback")
        })
        .map(|(t, _)| *t - cut)
        .expect("g1 never said it had fallen back");
    eprintln!("g1 fell back {fell:?} after the cut");
    // The lease TTL, a poll's period and some slack; a change heard 0.9 s in would make it
    // about LEASE_TTL + 0.9 s.
    assert!(
        fell <= LEASE_TTL + Duration::from_millis(500),
        "g1 fell back {fell:?} after the cut"
    );
}
