//! A cluster's alerts, exactly once, on a real etcd with real backends and a real webhook
//! receiver: through the leader's death (right after an override, and between recording
//! an alert and delivering it), through a whole-etcd outage in which every instance alerts
//! on its own, and through an etcd restart after every instance's view changed.
//!
//! Every instance pauses 2 s between recording its alerts in etcd and sending them
//! (`GTMD_TEST_ALERT_PAUSE`), so that a test can kill the leader in between.

#![cfg(feature = "cluster")]

use crate::common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::{json, Value};

/// Recorded alerts wait this long before they are sent.
const PAUSE: &str = "2s";

async fn cluster() -> Cluster {
    let pause = ("GTMD_TEST_ALERT_PAUSE".to_string(), PAUSE.to_string());
    Cluster::three_set(1, |c| c.env = vec![pause]).await
}

/// The alerts received of `event` on member `member` (or override target `member`).
fn of(c: &Cluster, event: &str, member: &str) -> Vec<Value> {
    c.hook
        .events(event)
        .into_iter()
        .filter(|a| a["member"] == member || a["target"] == format!("web/{member}").as_str())
        .collect()
}

/// The alerts of `event` on `member` in `scope`.
fn scoped(c: &Cluster, event: &str, member: &str, scope: &str) -> Vec<Value> {
    of(c, event, member)
        .into_iter()
        .filter(|a| a["scope"] == scope)
        .collect()
}

fn all(c: &Cluster) -> String {
    format!("{:#?}", c.hook.got.lock().unwrap())
}

/// The leader's index, once its record holds both members (their first state).
async fn leader_with_record(c: &Cluster) -> usize {
    let recorded = wait_until(Duration::from_secs(10), || async {
        let r = c.etcd.get("alerted").await.unwrap_or_default();
        r.contains("web/m0") && r.contains("web/m1")
    })
    .await;
    assert!(recorded.is_some(), "the leader never recorded both members");
    let s = c.instances[0].status().await.unwrap();
    let leader = s["cluster"]["leader"].as_str().unwrap().to_string();
    c.instances.iter().position(|i| i.id == leader).unwrap()
}

/// The record's view of m0 is `up`.
async fn recorded_m0(c: &Cluster, up: bool, limit: Duration) -> bool {
    wait_until(limit, || async {
        let r = c.etcd.get("alerted").await.unwrap_or_default();
        let r: Value = serde_json::from_str(&r).unwrap_or_default();
        r["members"]["web/m0"] == up
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_acknowledged_just_before_the_leader_is_killed_is_alerted_once_with_its_id() {
    let mut c = cluster().await;
    let k = leader_with_record(&c).await;
    let other = c.instances[(k + 1) % 3].admin;
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "drain" });
    api(other, "/overrides", Some(body)).await;
    c.instances[k].kill();
    let told = wait_until(Duration::from_secs(TTL * 3 + 8), || async {
        !of(&c, "override_set", "m1").is_empty()
    })
    .await;
    assert!(
        told.is_some(),
        "no instance alerted the override: {}",
        all(&c)
    );
    // The next leader is settled and has delivered what it had: nothing comes again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = of(&c, "override_set", "m1");
    assert_eq!(got.len(), 1, "{}", all(&c));
    assert_eq!(got[0]["scope"], "cluster", "{}", all(&c));
    assert!(
        got[0]["id"].as_str().is_some_and(|i| !i.is_empty()),
        "{}",
        all(&c)
    );
}

/// The leader stops (its key held, so no other instance takes over) while an operator sets
/// and then clears an override through the others: the override's state is the same
/// before and after, yet both changes were acknowledged and each is alerted once, in
/// order, by the next leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_set_and_cleared_while_the_leader_is_stopped_is_alerted_both_ways_by_the_next()
{
    let mut c = cluster().await;
    let k = leader_with_record(&c).await;
    c.instances[k].pause();
    let (a, b) = (
        c.instances[(k + 1) % 3].admin,
        c.instances[(k + 2) % 3].admin,
    );
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "drain" });
    api(a, "/overrides", Some(body)).await;
    api(b, "/overrides/clear", Some(json!({ "target": "web/m1" }))).await;
    c.instances[k].kill();
    let told = wait_until(Duration::from_secs(TTL * 3 + 8), || async {
        !of(&c, "override_cleared", "m1").is_empty()
    })
    .await;
    assert!(told.is_some(), "the clear was never alerted: {}", all(&c));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (set, cleared) = (
        of(&c, "override_set", "m1"),
        of(&c, "override_cleared", "m1"),
    );
    assert_eq!((set.len(), cleared.len()), (1, 1), "{}", all(&c));
    let got = c.hook.got.lock().unwrap().clone();
    let at = |e: &str| {
        got.iter()
            .position(|a| a["event"] == e && a["target"] == "web/m1")
    };
    assert!(at("override_set") < at("override_cleared"), "{}", all(&c));
    for a in set.iter().chain(&cleared) {
        assert_eq!(a["scope"], "cluster", "{}", all(&c));
        assert_ne!(a["instance"], c.instances[k].id.as_str(), "{}", all(&c));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_recorded_but_not_delivered_when_the_leader_dies_is_sent_once_by_the_next_with_its_id(
) {
    let mut c = cluster().await;
    let k = leader_with_record(&c).await;
    c.backends[0].refuse();
    // The leader recorded m0's fall with its alert pending, and pauses before sending it.
    let mut pending = Value::Null;
    let recorded = wait_until(Duration::from_secs(10), || async {
        let r = c.etcd.get("alerted").await.unwrap_or_default();
        let r: Value = serde_json::from_str(&r).unwrap_or_default();
        let p = r["pending"].as_array().cloned().unwrap_or_default();
        p.iter().any(|a| a["event"] == "member_down")
    })
    .await;
    let r = c.etcd.get("alerted").await.unwrap_or_default();
    assert!(
        recorded.is_some(),
        "no record of m0's fall with its alert pending: {r}"
    );
    c.instances[k].kill();
    let r: Value = serde_json::from_str(&r).unwrap();
    for a in r["pending"].as_array().unwrap() {
        if a["event"] == "member_down" {
            pending = a.clone();
        }
    }
    assert!(of(&c, "member_down", "m0").is_empty(), "{}", all(&c));
    let told = wait_until(Duration::from_secs(TTL * 3 + 8), || async {
        !of(&c, "member_down", "m0").is_empty()
    })
    .await;
    assert!(
        told.is_some(),
        "the next leader did not send it: {}",
        all(&c)
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = of(&c, "member_down", "m0");
    assert_eq!(got.len(), 1, "{}", all(&c));
    assert_eq!(got[0]["id"], pending["id"], "{}", all(&c));
    assert_eq!(got[0]["scope"], "cluster", "{}", all(&c));
    assert_ne!(
        got[0]["instance"],
        c.instances[k].id.as_str(),
        "{}",
        all(&c)
    );
    // Marked delivered: the record holds nothing pending any more.
    let done = wait_until(Duration::from_secs(5), || async {
        let r = c.etcd.get("alerted").await.unwrap_or_default();
        !r.contains("pending")
    })
    .await;
    assert!(done.is_some(), "{:?}", c.etcd.get("alerted").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_during_a_whole_etcd_outage_is_alerted_once_by_each_instance_and_not_again_at_rejoin(
) {
    let mut c = cluster().await;
    leader_with_record(&c).await;
    c.etcd.stop_member(0);
    let fell = wait_until(Duration::from_secs(TTL * 3 + 5), || async {
        for i in 0..3 {
            if c.link(i).await != "fallback" {
                return false;
            }
        }
        true
    })
    .await;
    assert!(fell.is_some(), "not every instance fell back");
    c.backends[0].refuse();
    let alone = wait_until(Duration::from_secs(10), || async {
        scoped(&c, "member_down", "m0", "instance").len() == 3
    })
    .await;
    assert!(
        alone.is_some(),
        "not every instance alerted alone: {}",
        all(&c)
    );
    c.etcd.start_member(0);
    c.etcd.wait_healthy().await;
    c.wait_joined(3, Duration::from_secs(30)).await;
    let out = c.wait_answers(&[M1], Duration::from_secs(10)).await;
    assert!(out.is_some(), "m0 down everywhere, but answered");
    // The leader records m0's fall without telling it again.
    assert!(
        recorded_m0(&c, false, Duration::from_secs(TTL + 8)).await,
        "the record never took m0's fall: {:?}",
        c.etcd.get("alerted").await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let downs = of(&c, "member_down", "m0");
    assert_eq!(downs.len(), 3, "{}", all(&c));
    for id in ["a", "b", "c"] {
        let mine = downs.iter().filter(|a| a["instance"] == id).count();
        assert_eq!(mine, 1, "{id}: {}", all(&c));
    }
    // Its recovery, decided by the quorum, is alerted once by the leader.
    c.backends[0].restore().await;
    let up = wait_until(Duration::from_secs(10), || async {
        !scoped(&c, "member_up", "m0", "cluster").is_empty()
    })
    .await;
    assert!(up.is_some(), "{}", all(&c));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(of(&c, "member_up", "m0").len(), 1, "{}", all(&c));
    assert_eq!(of(&c, "member_down", "m0").len(), 3, "{}", all(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_etcd_restart_in_which_every_view_changed_the_new_state_is_alerted_without_a_flap()
{
    let mut c = cluster().await;
    leader_with_record(&c).await;
    c.backends[0].refuse();
    assert!(
        recorded_m0(&c, false, Duration::from_secs(10)).await,
        "m0's fall never recorded"
    );
    let down = wait_until(Duration::from_secs(10), || async {
        of(&c, "member_down", "m0").len() == 1
    })
    .await;
    assert!(down.is_some(), "{}", all(&c));
    // etcd stops; m0 comes back on every instance's own view; etcd starts again with
    // the views from before (m0 down).
    c.etcd.stop_member(0);
    c.backends[0].restore().await;
    let ok = wait_until(Duration::from_secs(10), || async {
        for i in &c.instances {
            let s = i.status().await.unwrap_or_default();
            if s["members"][0]["state"] != "up" {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok.is_some(), "not every instance sees m0 up");
    c.etcd.start_member(0);
    c.etcd.wait_healthy().await;
    c.wait_joined(3, Duration::from_secs(30)).await;
    assert!(
        recorded_m0(&c, true, Duration::from_secs(TTL + 10)).await,
        "m0's return never recorded: {:?}",
        c.etcd.get("alerted").await
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    // One fall, and one return: from the leader, or from each instance that was alone.
    assert_eq!(of(&c, "member_down", "m0").len(), 1, "{}", all(&c));
    let cluster_ups = scoped(&c, "member_up", "m0", "cluster").len();
    let alone_ups = scoped(&c, "member_up", "m0", "instance");
    assert!(cluster_ups + alone_ups.len() >= 1, "{}", all(&c));
    assert!(cluster_ups <= 1, "{}", all(&c));
    assert!(cluster_ups == 0 || alone_ups.is_empty(), "{}", all(&c));
    for id in ["a", "b", "c"] {
        let mine = alone_ups.iter().filter(|a| a["instance"] == id).count();
        assert!(mine <= 1, "{id}: {}", all(&c));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_left_without_a_healthy_member_is_alerted_once_by_the_cluster_and_so_is_its_recovery(
) {
    let mut c = cluster().await;
    leader_with_record(&c).await;
    c.backends[0].refuse();
    c.backends[1].refuse();
    let down = wait_until(Duration::from_secs(15), || async {
        !c.hook.events("name_all_down").is_empty()
    })
    .await;
    assert!(down.is_some(), "{}", all(&c));
    c.backends[0].restore().await;
    c.backends[1].restore().await;
    let up = wait_until(Duration::from_secs(15), || async {
        !c.hook.events("name_recovered").is_empty()
    })
    .await;
    assert!(up.is_some(), "{}", all(&c));
    // Every instance saw both changes; only the leader's record tells them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for event in ["name_all_down", "name_recovered"] {
        let got = c.hook.events(event);
        assert_eq!(got.len(), 1, "{event}: {}", all(&c));
        assert_eq!(got[0]["scope"], "cluster", "{}", all(&c));
        assert_eq!(got[0]["name"], NAME, "{}", all(&c));
    }
}

/// The leader's etcd stops answering for a moment (1.5 s: less than the lease TTL) while an
/// alert the leader recorded waits to be sent. Every session ends and starts again; the
/// leader keeps its leadership (its key moves onto its new lease and is never released, so
/// no other instance takes over and sends the alert again), and the alert comes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_etcd_pauses_for_a_moment_keeps_the_leadership_and_alerts_once() {
    let mut c = cluster().await;
    leader_with_record(&c).await;
    let (created, lease) = c.etcd.created("leader").await.expect("a leader key");
    c.backends[0].refuse();
    let recorded = wait_until(Duration::from_secs(10), || async {
        let r = c.etcd.get("alerted").await.unwrap_or_default();
        r.contains("member_down")
    })
    .await;
    assert!(recorded.is_some(), "no record of m0's fall: {}", all(&c));
    c.etcd.signal(0, "STOP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.etcd.signal(0, "CONT");
    let moved = wait_until(Duration::from_secs(10), || async {
        c.etcd
            .created("leader")
            .await
            .is_some_and(|(_, on)| on != lease)
    })
    .await;
    assert!(moved.is_some(), "the leader key never left the old lease");
    let (again, _) = c.etcd.created("leader").await.expect("a leader key");
    assert_eq!(
        again, created,
        "the leadership was released and taken again"
    );
    let told = wait_until(Duration::from_secs(TTL * 3 + 8), || async {
        !of(&c, "member_down", "m0").is_empty()
    })
    .await;
    assert!(told.is_some(), "m0's fall was never alerted: {}", all(&c));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(of(&c, "member_down", "m0").len(), 1, "{}", all(&c));
}
