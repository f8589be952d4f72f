use std::collections::BTreeMap;

use super::keys::{Key, Keys};
use super::*;

fn inst() -> Instance {
    Instance {
        kind: "server".into(),
        version: "0".into(),
        since: 0,
        probe_source: None,
    }
}

fn views(list: &[(&str, bool)]) -> BTreeMap<String, Verdict> {
    list.iter()
        .map(|&(id, up)| {
            let v = Verdict {
                up,
                error: None,
                since: 0,
            };
            (id.to_string(), v)
        })
        .collect()
}

fn live(ids: &[&str]) -> BTreeMap<String, Instance> {
    ids.iter().map(|id| (id.to_string(), inst())).collect()
}

#[test]
fn one_instance_alone_does_not_take_a_member_down_under_majority() {
    let all = live(&["a", "b", "c"]);
    let d = decide(
        Some(&views(&[("a", false), ("b", true), ("c", true)])),
        &all,
        Quorum::Majority,
    )
    .unwrap();
    assert!(d.up);
    assert_eq!(d.down, ["a"]);
    assert_eq!(d.decided_by(), ["b", "c"]);
    assert_eq!(d.needed, 2);
    let d = decide(
        Some(&views(&[("a", false), ("b", false), ("c", true)])),
        &all,
        Quorum::Majority,
    )
    .unwrap();
    assert!(!d.up);
    assert_eq!(d.decided_by(), ["a", "b"]);
}

#[test]
fn only_live_instances_count() {
    // c's lease ended but its view arrived late: it is not counted.
    let two = live(&["a", "b"]);
    let v = views(&[("a", false), ("b", true), ("c", false)]);
    let d = decide(Some(&v), &two, Quorum::Majority).unwrap();
    assert!(d.up, "1 of 2 live instances says down; majority needs 2");
    let d = decide(Some(&v), &two, Quorum::Share(0.5)).unwrap();
    assert!(!d.up, "50% of 2 is 1");
    let d = decide(Some(&v), &two, Quorum::Count(1)).unwrap();
    assert!(!d.up);
    assert_eq!(
        decide(Some(&views(&[("c", false)])), &two, Quorum::Majority),
        None
    );
    assert_eq!(decide(None, &two, Quorum::Majority), None);
}

#[test]
fn a_lone_survivor_decides_alone() {
    let one = live(&["b"]);
    let d = decide(Some(&views(&[("b", false)])), &one, Quorum::Count(2)).unwrap();
    assert!(!d.up);
}

#[test]
fn keys_parse_back() {
    let k = Keys {
        prefix: "/gtmd/x/".into(),
        me: "a".into(),
    };
    assert_eq!(k.parse(&k.instance()), Key::Instance("a"));
    assert_eq!(
        k.parse(&k.view("web/eu-1")),
        Key::View {
            instance: "a",
            member: "web/eu-1"
        }
    );
    assert_eq!(k.parse(&k.overrides()), Key::Overrides);
    assert_eq!(k.parse(&k.leader()), Key::Leader);
    assert_eq!(k.parse("/gtmd/y/leader"), Key::Other);
    assert_eq!(k.parse("/gtmd/x/views/a"), Key::Other);
}

#[test]
fn shared_follows_puts_and_deletes() {
    let k = Keys {
        prefix: "/gtmd/x/".into(),
        me: "a".into(),
    };
    let mut s = Shared::default();
    s.apply(
        &k,
        "/gtmd/x/views/b/web/eu-1",
        Some(br#"{"up":false,"since":5}"#),
    );
    assert!(!s.views["web/eu-1"]["b"].up);
    s.apply(&k, "/gtmd/x/views/b/web/eu-1", Some(b"not json"));
    assert!(
        s.views.is_empty(),
        "a value that does not parse counts as no view"
    );
    let c = serde_json::to_vec(&inst()).unwrap();
    s.apply(&k, "/gtmd/x/instances/c", Some(&c));
    s.apply(&k, "/gtmd/x/leader", Some(b"c"));
    assert_eq!(s.leader.as_deref(), Some("c"));
    s.apply(&k, "/gtmd/x/leader", None);
    assert_eq!(s.leader, None);
    s.apply(
        &k,
        "/gtmd/x/overrides",
        Some(br#"[{"target":"web/eu-1","action":"disable","reason":"r","since":1,"until":null}]"#),
    );
    assert_eq!(s.overrides.as_ref().unwrap().len(), 1);
}

#[test]
fn a_garbled_overrides_value_keeps_the_last_good_list() {
    let k = Keys {
        prefix: "/gtmd/x/".into(),
        me: "a".into(),
    };
    let mut s = Shared::default();
    let good = br#"[{"target":"web/eu-1","action":"disable","reason":"r","since":1,"until":null}]"#;
    s.apply(&k, "/gtmd/x/overrides", Some(good));
    s.apply(&k, "/gtmd/x/overrides", Some(b"{not json"));
    assert_eq!(s.overrides.as_ref().unwrap().len(), 1);
    assert!(s
        .overrides_problem
        .as_deref()
        .unwrap()
        .contains("does not parse"));
    s.apply(&k, "/gtmd/x/overrides", None);
    assert_eq!(
        s.overrides.as_ref().unwrap().len(),
        1,
        "a deletion is a loss"
    );
    s.apply(&k, "/gtmd/x/overrides", Some(b"[]"));
    assert_eq!(s.overrides, Some(Vec::new()));
    assert_eq!(s.overrides_problem, None);
}

#[test]
fn a_leader_key_no_live_instance_holds_is_ignored() {
    let k = Keys {
        prefix: "/gtmd/x/".into(),
        me: "a".into(),
    };
    let mut s = Shared::default();
    s.apply(&k, "/gtmd/x/leader", Some(b"intruder"));
    assert_eq!(s.leader, None);
    let b = serde_json::to_vec(&inst()).unwrap();
    s.apply(&k, "/gtmd/x/instances/b", Some(&b));
    s.apply(&k, "/gtmd/x/leader", Some(b"b"));
    assert_eq!(s.leader.as_deref(), Some("b"));
    // Its session ends: it leads no more, whatever the key still says.
    s.apply(&k, "/gtmd/x/instances/b", None);
    assert_eq!(s.leader, None);
}

#[test]
fn override_changes_apply_to_the_list() {
    let o = |t: &str, until| Override {
        target: t.parse().unwrap(),
        action: crate::base::state::Action::Disable,
        reason: "r".into(),
        since: 1,
        until,
    };
    let l = OverrideChange::Set(o("web/a", None))
        .apply(vec![o("web/a", Some(9)), o("web/b", None)])
        .unwrap();
    assert_eq!(l, vec![o("web/b", None), o("web/a", None)]);
    assert!(OverrideChange::Clear("web/c".parse().unwrap())
        .apply(l.clone())
        .is_err());
    let l = OverrideChange::Clear("web/b".parse().unwrap())
        .apply(l)
        .unwrap();
    assert_eq!(l.len(), 1);
    let l = OverrideChange::Expire(10)
        .apply(vec![o("web/a", Some(9)), o("web/b", Some(11))])
        .unwrap();
    assert_eq!(l, vec![o("web/b", Some(11))]);
}

#[test]
fn what_an_instance_alerted_alone_and_when_its_views_were_written_are_followed() {
    let k = Keys {
        prefix: "/gtmd/x/".into(),
        me: "a".into(),
    };
    assert_eq!(k.parse("/gtmd/x/alone/b"), Key::Alone("b"));
    assert_eq!(k.alone(), "/gtmd/x/alone/a");
    let mut s = Shared::default();
    s.apply(&k, "/gtmd/x/alone/b", Some(br#"{"web/eu-1":false}"#));
    assert!(!s.alone["b"]["web/eu-1"]);
    // Only a live instance's word counts.
    let is_live = |ids: &'static [&'static str]| move |id: &str| ids.contains(&id);
    assert!(record::alerted_alone(
        &s.alone,
        is_live(&["b"]),
        "web/eu-1",
        false
    ));
    assert!(!record::alerted_alone(
        &s.alone,
        is_live(&["b"]),
        "web/eu-1",
        true
    ));
    assert!(!record::alerted_alone(
        &s.alone,
        is_live(&["c"]),
        "web/eu-1",
        false
    ));
    s.apply(&k, "/gtmd/x/alone/b", None);
    assert!(s.alone.is_empty());
    // The latest view write of each instance, whatever the order seen.
    s.note_revision(&k, "/gtmd/x/views/b/web/eu-1", 9);
    s.note_revision(&k, "/gtmd/x/views/b/web/eu-2", 7);
    s.note_revision(&k, "/gtmd/x/instances/c", 20);
    assert_eq!(s.written.get("b"), Some(&9));
    assert_eq!(s.written.get("c"), None);
}

#[test]
fn a_record_without_pending_alerts_still_reads_and_pending_alerts_are_not_state() {
    let old: Alerted = serde_json::from_str(r#"{"members":{"web/m0":true},"overrides":[]}"#)
        .expect("a record of an older version");
    assert!(old.pending.is_empty());
    let mut new = old.clone();
    new.pending
        .push(crate::base::alert::Alert::new("member_down"));
    assert!(new.same_state(&old));
    assert_ne!(new, old);
    let text = serde_json::to_string(&old).unwrap();
    assert!(!text.contains("pending"), "{text}");
}

#[test]
fn override_changes_are_followed_with_the_revision_that_wrote_them_and_garbled_ones_ignored() {
    let k = Keys {
        prefix: "/gtmd/x/".into(),
        me: "a".into(),
    };
    assert_eq!(k.change("b-1f-3"), "/gtmd/x/changes/b-1f-3");
    assert_eq!(k.parse(&k.change("b-1f-3")), Key::Change("b-1f-3"));
    let mut s = Shared::default();
    let mut alert = crate::base::alert::Alert::new("override_cleared");
    alert.id = "b-1f-3".into();
    let c = Change {
        alert,
        overrides: Vec::new(),
        rev: 0,
    };
    let body = serde_json::to_vec(&c).unwrap();
    assert!(!String::from_utf8_lossy(&body).contains("rev"));
    s.apply(&k, &k.change("b-1f-3"), Some(&body));
    s.note_revision(&k, &k.change("b-1f-3"), 42);
    assert_eq!(s.changes["b-1f-3"].rev, 42);
    assert_eq!(s.changes["b-1f-3"].alert.event, "override_cleared");
    // A value another version wrote that does not parse is no change.
    s.apply(&k, &k.change("c-1"), Some(b"{not json"));
    assert_eq!(s.changes.len(), 1);
    s.apply(&k, &k.change("b-1f-3"), None);
    assert!(s.changes.is_empty());
}
