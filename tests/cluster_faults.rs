//! A cluster through etcd's faults, on a real etcd on loopback and real HTTP backends: an
//! outage and its recovery (with and without a fallback), the loss of etcd's data, and
//! values in etcd that no instance wrote.

#![cfg(feature = "cluster")]

use crate::common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::json;

/// Waits until every running instance's own view (its rise/fall state) of m0 is `state`.
async fn own_view_of_m0(c: &Cluster, state: &str) {
    let ok = wait_until(Duration::from_secs(10), || async {
        for i in c.instances.iter().filter(|i| i.child.is_some()) {
            let s = i.status().await.unwrap_or_default();
            if s["members"][0]["state"] != state {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok.is_some(), "not every instance sees m0 {state}");
}

/// Asserts that every instance answers `want` at every look for `long`.
async fn answers_stay(c: &Cluster, want: &[&str], long: Duration) {
    let until = Instant::now() + long;
    while Instant::now() < until {
        for i in &c.instances {
            let got = i.answers().await;
            let st = i.status().await.unwrap_or_default();
            assert_eq!(got, want, "{}: {} {}", i.id, st["cluster"], st["overrides"]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The alerts `event` of `target`.
fn alerts_of(c: &Cluster, event: &str, target: &str) -> usize {
    let all = c.hook.events(event);
    all.iter().filter(|a| a["target"] == target).count()
}

/// etcd stops; m0 fails; etcd comes back; m0 recovers. Then every instance answers m0.
async fn outage_then_recovery(c: &mut Cluster, fallback: bool) {
    c.etcd.stop_member(0);
    c.backends[0].refuse();
    own_view_of_m0(c, "down").await;
    if fallback {
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
    }
    c.etcd.start_member(0);
    c.etcd.wait_healthy().await;
    c.wait_joined(3, Duration::from_secs(30)).await;
    let out = c.wait_answers(&[M1], Duration::from_secs(10)).await;
    assert!(out.is_some(), "m0 down on every instance, but answered");
    c.backends[0].restore().await;
    own_view_of_m0(c, "up").await;
    let back = c.wait_answers(&[M0, M1], Duration::from_secs(10)).await;
    let views: Vec<String> = views_of_m0(c).await;
    assert!(
        back.is_some(),
        "m0 up on every instance (fallback: {fallback}), but left out: {views:?}"
    );
}

/// Every instance's `/status` views of m0, for a failure's message.
async fn views_of_m0(c: &Cluster) -> Vec<String> {
    let mut v = Vec::new();
    for i in &c.instances {
        let s = i.status().await.unwrap_or_default();
        v.push(format!("{}: {}", i.id, s["members"][0]["views"]));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_recovers_after_etcd_comes_back_is_in_every_answer() {
    let mut c = Cluster::three(1).await;
    // etcd back before the lease TTL ends...
    outage_then_recovery(&mut c, false).await;
    // ...and after every instance fell back to its own view.
    outage_then_recovery(&mut c, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_etcd_loses_its_data_a_disabled_member_stays_out_and_a_cleared_override_stays_cleared(
) {
    let mut c = Cluster::three(1).await;
    let a = c.instances[0].admin;
    // m0 disabled, and in every state file when the instances start again.
    let body = json!({ "target": "web/m0", "action": "disable", "reason": "old" });
    api(a, "/overrides", Some(body)).await;
    assert!(c
        .wait_answers(&[M1], Duration::from_secs(3))
        .await
        .is_some());
    for i in &mut c.instances {
        i.stop();
    }
    for i in &mut c.instances {
        i.start();
    }
    c.wait_joined(3, Duration::from_secs(20)).await;
    // Since start: m0's override cleared (through b), m1 disabled (through c).
    let (b, cc) = (c.instances[1].admin, c.instances[2].admin);
    api(b, "/overrides/clear", Some(json!({ "target": "web/m0" }))).await;
    assert!(c
        .wait_answers(&[M0, M1], Duration::from_secs(3))
        .await
        .is_some());
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "new" });
    api(cc, "/overrides", Some(body)).await;
    assert!(c
        .wait_answers(&[M0], Duration::from_secs(3))
        .await
        .is_some());

    // etcd loses everything; the instances rejoin an empty etcd.
    c.etcd.wipe_member(0);
    c.etcd.wait_healthy().await;
    c.wait_joined(3, Duration::from_secs(30)).await;
    answers_stay(&c, &[M0], Duration::from_secs(3)).await;
    let got = format!("{:?}", c.hook.got.lock().unwrap());
    assert_eq!(alerts_of(&c, "override_cleared", "web/m0"), 1, "{got}");
    assert_eq!(alerts_of(&c, "override_cleared", "web/m1"), 0, "{got}");
    assert_eq!(alerts_of(&c, "override_set", "web/m0"), 1, "{got}");
    assert_eq!(alerts_of(&c, "override_set", "web/m1"), 1, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_state_files_an_override_set_since_start_survives_the_loss_of_etcd_data() {
    let mut c = Cluster::three_with(1, false).await;
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "drain" });
    api(c.instances[0].admin, "/overrides", Some(body)).await;
    assert!(c
        .wait_answers(&[M0], Duration::from_secs(3))
        .await
        .is_some());
    c.etcd.wipe_member(0);
    c.etcd.wait_healthy().await;
    c.wait_joined(3, Duration::from_secs(30)).await;
    answers_stay(&c, &[M0], Duration::from_secs(3)).await;
    let got = format!("{:?}", c.hook.got.lock().unwrap());
    assert_eq!(alerts_of(&c, "override_cleared", "web/m1"), 0, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_overrides_value_keeps_the_last_good_list_and_is_alerted() {
    let c = Cluster::three(1).await;
    let a = c.instances[0].admin;
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "drain" });
    api(a, "/overrides", Some(body)).await;
    assert!(c
        .wait_answers(&[M0], Duration::from_secs(3))
        .await
        .is_some());

    c.etcd.put("overrides", "{not json").await;
    answers_stay(&c, &[M0], Duration::from_secs(2)).await;
    let told = wait_until(Duration::from_secs(5), || async {
        !c.hook.events("cluster_overrides_unreadable").is_empty()
    })
    .await;
    assert!(told.is_some(), "{:?}", c.hook.got.lock().unwrap());
    assert_eq!(alerts_of(&c, "override_cleared", "web/m1"), 0);

    // An override change writes a good list again, from the last good one.
    let body = json!({ "target": "web/m0", "action": "force-up", "reason": "x" });
    api(c.instances[1].admin, "/overrides", Some(body)).await;
    let both = wait_until(Duration::from_secs(3), || async {
        for i in &c.instances {
            let s = i.status().await.unwrap_or_default();
            if s["overrides"].as_array().map(Vec::len) != Some(2) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(both.is_some(), "the change did not keep the last good list");
    answers_stay(&c, &[M0], Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_value_no_live_instance_holds_is_ignored_and_a_live_one_takes_over() {
    let mut c = Cluster::three(1).await;
    c.etcd.put("leader", "intruder").await;
    let ours = wait_until(Duration::from_secs(5), || async {
        let mut leaders = Vec::new();
        for i in &c.instances {
            let s = i.status().await.unwrap_or_default();
            leaders.push(s["cluster"]["leader"].as_str().unwrap_or("").to_string());
        }
        leaders
            .iter()
            .all(|l| ["a", "b", "c"].contains(&l.as_str()) && *l == leaders[0])
    })
    .await;
    assert!(
        ours.is_some(),
        "no live instance leads after a foreign leader value"
    );
    // A leader that took the key over waits up to the lease TTL before it compares
    // (docs/cluster.md): a failure and its recovery both inside that wait are not alerted.
    // Bounce once it has settled.
    tokio::time::sleep(Duration::from_secs(TTL) + Duration::from_millis(1500)).await;
    // The cluster's alerts still come, once each.
    c.bounce_m0().await;
    // Bounded by the alert's delivery, which a loaded machine (every test of this file at
    // once) stretches: the point is that each comes once.
    let once = wait_until(Duration::from_secs(10), || async {
        c.hook.events("member_up").len() == 1
    })
    .await;
    let got = format!("{:?}", c.hook.got.lock().unwrap());
    assert!(once.is_some(), "{got}");
    assert_eq!(c.hook.events("member_down").len(), 1, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_decided_while_the_alert_leader_is_dead_is_alerted_once_by_the_next() {
    let mut c = Cluster::three(1).await;
    let s = c.instances[0].status().await.unwrap();
    let leader = s["cluster"]["leader"].as_str().unwrap().to_string();
    let k = c.instances.iter().position(|i| i.id == leader).unwrap();
    let other = c.instances[(k + 1) % 3].admin;
    // Once the leader's record of what it alerted holds both members (their first state,
    // which is not alerted)...
    let recorded = wait_until(Duration::from_secs(10), || async {
        let r = c.etcd.get("alerted").await.unwrap_or_default();
        r.contains("web/m0") && r.contains("web/m1")
    })
    .await;
    assert!(recorded.is_some(), "the leader never recorded both members");
    // ...the leader dies; before its lease ends, m0 fails and m1 is disabled.
    c.instances[k].kill();
    c.backends[0].refuse();
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "gap" });
    api(other, "/overrides", Some(body)).await;
    let told = wait_until(Duration::from_secs(TTL * 3 + 5), || async {
        c.hook.events("member_down").len() == 1 && alerts_of(&c, "override_set", "web/m1") == 1
    })
    .await;
    let got = format!("{:?}", c.hook.got.lock().unwrap());
    assert!(
        told.is_some(),
        "the next leader did not send what it missed: {got}"
    );
    // Once each, and not again at the next change.
    c.backends[0].restore().await;
    let up = wait_until(Duration::from_secs(5), || async {
        c.hook.events("member_up").len() == 1
    })
    .await;
    let got = format!("{:?}", c.hook.got.lock().unwrap());
    assert!(up.is_some(), "{got}");
    assert_eq!(c.hook.events("member_down").len(), 1, "{got}");
    assert_eq!(alerts_of(&c, "override_set", "web/m1"), 1, "{got}");
}

/// A connected instance whose etcd stops answering (paused: connections are still accepted,
/// nothing is answered) says `fallback` when etcd has been silent for the lease TTL, not
/// after its next connection attempt has timed out too. Several rounds, so that the pause
/// falls at different moments of the lease's keep-alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_etcd_goes_silent_says_fallback_at_the_lease_ttl() {
    let mut c = Cluster::new(1).await;
    c.add("a", false, "\"majority\"");
    c.wait_joined(1, Duration::from_secs(20)).await;
    let bound = Duration::from_secs(TTL) + Duration::from_millis(350);
    for round in 0..4u64 {
        tokio::time::sleep(Duration::from_millis(1000 + 230 * round)).await;
        c.etcd.signal(0, "STOP");
        let paused = Instant::now();
        let mut seen = None;
        while paused.elapsed() < Duration::from_secs(TTL * 3) {
            let link = c.link(0).await;
            if link != "connected" {
                seen = Some((paused.elapsed(), link));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.etcd.signal(0, "CONT");
        let (after, link) = seen.expect("the instance never left `connected`");
        assert_eq!(link, "fallback", "round {round}");
        assert!(
            after <= bound,
            "round {round}: `fallback` {after:?} after etcd was paused (lease TTL {TTL} s)"
        );
        c.wait_joined(1, Duration::from_secs(20)).await;
    }
}

/// etcd counts as answering at each of the member's reads (every quarter second), not only
/// at each lease renewal (every third of the TTL): an instance whose member goes away
/// between two renewals has the whole TTL, less a quarter second, to move to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_heard_at_each_read_of_the_member_not_only_at_each_lease_renewal() {
    let mut c = Cluster::new(1).await;
    c.add("a", false, "\"majority\"");
    c.wait_joined(1, Duration::from_secs(20)).await;
    let (mut heard, mut last, mut ages) = (0u32, f64::MAX, Vec::new());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let s = c.instances[0].status().await.unwrap_or_default();
        let age = s["cluster"]["etcd_answered_secs_ago"]
            .as_f64()
            .expect("`/status` says how long ago etcd answered");
        if age < last {
            heard += 1;
        }
        last = age;
        ages.push((age * 1000.0) as u32);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Renewals alone (every 1 s with a 3 s TTL) are 4 in 4 s; the reads, 16.
    assert!(
        heard >= 8,
        "etcd heard {heard} times in 4 s; ages seen (ms): {ages:?}"
    );
}

/// An override acknowledged on a new cluster before its first leader settled (an
/// instance that writes no views keeps it waiting the lease TTL), and every instance
/// stopped before then: the next leader alerts it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_set_before_a_new_clusters_leader_settled_is_alerted_once_after_a_full_restart()
{
    let mut c = Cluster::new(1).await;
    let ghost = r#"{"kind":"agent","version":"0","since":0}"#;
    c.etcd.put("instances/ghost", ghost).await;
    for id in ["a", "b", "c"] {
        c.add(id, false, "\"majority\"");
    }
    c.wait_joined(4, Duration::from_secs(20)).await;
    let body = json!({ "target": "web/m0", "action": "disable", "reason": "now" });
    api(c.instances[0].admin, "/overrides", Some(body)).await;
    for i in &mut c.instances {
        i.stop();
    }
    if alerts_of(&c, "override_set", "web/m0") != 0 {
        eprintln!("the leader settled before the instances stopped: the case was not reached");
    }
    for i in &mut c.instances {
        i.start();
    }
    c.wait_joined(4, Duration::from_secs(20)).await;
    let told = wait_until(Duration::from_secs(TTL * 3), || async {
        alerts_of(&c, "override_set", "web/m0") > 0
    })
    .await;
    let got = format!("{:?}", c.hook.got.lock().unwrap());
    assert!(told.is_some(), "the override was never alerted: {got}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alerts_of(&c, "override_set", "web/m0"), 1, "{got}");
}

/// The alert leader is paused past its lease; the other instance leads meanwhile and
/// alerts an override, then stops; the old leader resumes and takes the leadership anew. It
/// starts from etcd's record, not from the state it held before the pause (which lacks the
/// override): the override is alerted once, not again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_back_from_a_pause_longer_than_its_lease_does_not_write_its_old_record() {
    let mut c = Cluster::new(1).await;
    for id in ["a", "b"] {
        c.add(id, false, "\"majority\"");
    }
    c.wait_joined(2, Duration::from_secs(20)).await;
    let recorded = wait_until(Duration::from_secs(10), || async {
        c.etcd.get("alerted").await.is_some()
    })
    .await;
    assert!(recorded.is_some(), "the leader wrote no record");
    let s = c.instances[0].status().await.unwrap_or_default();
    let leader = s["cluster"]["leader"].as_str().unwrap_or("").to_string();
    let k = c.instances.iter().position(|i| i.id == leader).unwrap();
    let other = 1 - k;
    let pid = c.instances[k].child.as_ref().unwrap().0.id();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let took = wait_until(Duration::from_secs(TTL * 3), || async {
        let s = c.instances[other].status().await.unwrap_or_default();
        s["cluster"]["leader"] == c.instances[other].id.as_str()
    })
    .await;
    assert!(
        took.is_some(),
        "the other instance never took the leadership"
    );
    let body = json!({ "target": "web/m0", "action": "disable", "reason": "while paused" });
    api(c.instances[other].admin, "/overrides", Some(body)).await;
    let told = wait_until(Duration::from_secs(TTL * 2), || async {
        alerts_of(&c, "override_set", "web/m0") > 0
    })
    .await;
    assert!(
        told.is_some(),
        "the override was not alerted by the new leader"
    );
    c.instances[other].stop();
    // Every value the record takes from now on.
    let mut client = etcd_client::Client::connect(c.etcd.endpoints(), None)
        .await
        .expect("etcd client");
    let (_watcher, mut stream) = client.watch("/gtmd/t/alerted", None).await.unwrap();
    let records = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let r = records.clone();
    tokio::spawn(async move {
        while let Ok(Some(w)) = stream.message().await {
            for kv in w.events().iter().filter_map(|e| e.kv()) {
                let v = serde_json::from_slice(kv.value()).unwrap_or_default();
                r.lock().unwrap().push(v);
            }
        }
    });
    signal("-CONT");
    let back = wait_until(Duration::from_secs(TTL * 4), || async {
        let s = c.instances[k].status().await.unwrap_or_default();
        s["cluster"]["link"] == "connected" && s["cluster"]["leader"] == leader.as_str()
    })
    .await;
    assert!(back.is_some(), "the old leader did not lead again");
    tokio::time::sleep(Duration::from_secs(TTL + 2)).await;
    for r in records.lock().unwrap().iter() {
        let holds = r["overrides"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["target"] == "web/m0"));
        assert!(holds, "a record without the override was written: {r}");
    }
    let got = format!("{:?}", c.hook.got.lock().unwrap());
    assert_eq!(alerts_of(&c, "override_set", "web/m0"), 1, "{got}");
}
