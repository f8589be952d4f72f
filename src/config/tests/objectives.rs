//! Recovery objectives (the TTLs they derive, the errors and warnings they give) and the
//! state kept for secondaries.

use super::*;

/// A name on a pool checked every `interval` with `timeout`, fall 3 and rise 2, plus `extra`
/// keys for the name.
fn with_objective(interval: &str, timeout: &str, server: &str, name: &str) -> String {
    format!(
        "[server]\n{server}\n[checks.c]\ntype = \"tcp\"\nport = 80\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\nfall = 3\nrise = 2\n\n\
         [pools.p]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.1\" }}]\n\n\
         [names.\"app.example.test.\"]\npools = [\"p\"]\n{name}"
    )
}

#[test]
fn recover_within_derives_both_ttls_from_the_detection_bounds() {
    // Failure: 3 × 1.1 s + 0.5 s = 3.8 s, so ttl = 12 - 3.8 - 1 → 7. Recovery: 2 × 1.1 +
    // 0.5 = 2.7 s, so degraded_ttl = 12 - 2.7 - 1 → 8, capped at the ttl and at 5 s.
    let c = parse(&with_objective(
        "1s",
        "500ms",
        "",
        "recover_within = \"12s\"\n",
    ))
    .unwrap();
    let n = &c.names[0];
    assert_eq!((n.ttl, n.degraded_ttl), (7, 5));
    assert_eq!(n.recovery.objective, Some(Duration::from_secs(12)));
    assert_eq!(n.recovery.fall, Duration::from_millis(3800));
    assert_eq!(n.recovery.rise, Duration::from_millis(2700));
    assert_eq!(n.recovery.ttl_from, "derived");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The server's default applies to names without their own.
    let c = parse(&with_objective(
        "1s",
        "500ms",
        "recover_within = \"6s\"",
        "",
    ))
    .unwrap();
    // 6 - 3.8 - 1 → 1; the degraded TTL (6 - 2.7 - 1 → 2) is capped at it.
    assert_eq!((c.names[0].ttl, c.names[0].degraded_ttl), (1, 1));
    // A long objective still gives a short degraded TTL: 30 - 3.8 - 1 → 25, and 5.
    let c = parse(&with_objective(
        "1s",
        "500ms",
        "",
        "recover_within = \"30s\"\n",
    ))
    .unwrap();
    assert_eq!((c.names[0].ttl, c.names[0].degraded_ttl), (25, 5));
    // Without an objective, the TTLs are as before.
    let c = parse(&with_objective("1s", "500ms", "", "")).unwrap();
    assert_eq!((c.names[0].ttl, c.names[0].degraded_ttl), (30, 5));
    assert_eq!(c.names[0].recovery.ttl_from, "default");
}

#[test]
fn an_objective_detection_alone_cannot_meet_is_an_error_that_says_what_would() {
    let e = parse(&with_objective("2s", "1s", "", "recover_within = \"5s\"\n")).unwrap_err();
    assert_eq!(e.path, "names.\"app.example.test.\".recover_within", "{e}");
    assert_eq!(e.line, Some(17), "{e}");
    assert!(
        e.msg.contains(
            "interval 2s × fall 3 + 10% jitter + timeout 1s = 7s 600ms ≥ recover_within 5s"
        ),
        "{e}"
    );
    assert!(e.msg.contains("lower interval or fall"), "{e}");
    // Detection fits but leaves less than a 1 s TTL and a resolver's second.
    let e = parse(&with_objective(
        "1s",
        "500ms",
        "",
        "recover_within = \"5s\"\n",
    ))
    .unwrap_err();
    assert!(
        e.msg.contains("leaves no room within recover_within 5s"),
        "{e}"
    );
    // The default is blamed where it is written.
    let e = parse(&with_objective("2s", "1s", "recover_within = \"5s\"", "")).unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.line),
        ("server.recover_within", Some(2)),
        "{e}"
    );
    for bad in ["soon", "500ms"] {
        let e = parse(&with_objective(
            "1s",
            "500ms",
            "",
            &format!("recover_within = \"{bad}\"\n"),
        ))
        .unwrap_err();
        assert_eq!(e.path, "names.\"app.example.test.\".recover_within", "{e}");
    }
}

#[test]
fn a_ttl_set_by_hand_wins_over_the_objective_with_a_warning() {
    let c = parse(&with_objective(
        "1s",
        "500ms",
        "",
        "recover_within = \"12s\"\nttl = 30\ndegraded_ttl = 9\n",
    ))
    .unwrap();
    let n = &c.names[0];
    assert_eq!((n.ttl, n.degraded_ttl, n.recovery.ttl_from), (30, 9, "set"));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains(".ttl 30 breaks recover_within 12s")
            && c.warnings[0].contains("ttl 7 would keep it"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[1].contains(".degraded_ttl 9 breaks recover_within 12s")
            && c.warnings[1].contains("12.7s to return"),
        "{:?}",
        c.warnings
    );
    // A set TTL that keeps the objective is no warning.
    let c = parse(&with_objective(
        "1s",
        "500ms",
        "",
        "recover_within = \"12s\"\nttl = 5\n",
    ))
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn zones_with_secondaries_keep_their_state_by_default_and_check_config_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gtmd.toml");
    let plain = "[server]\nlisten = [\"127.0.0.1:53\"]\n";
    std::fs::write(&conf, plain).unwrap();
    let c = Config::load(&conf).unwrap();
    assert_eq!(c.state_file, None, "no secondaries: nothing written");
    std::fs::write(&conf, format!("{plain}allow_transfer = [\"127.0.0.1\"]\n")).unwrap();
    let mut c = Config::load(&conf).unwrap();
    c.state_file = None;
    c.warnings.clear();
    c.default_state_file(&conf, None);
    assert_eq!(c.state_file, Some(dir.path().join("gtmd.state.json")));
    assert!(
        c.warnings[0].contains("admin.state_file is not set"),
        "{:?}",
        c.warnings
    );
    c.state_file = None;
    c.default_state_file(&conf, Some("/var/lib/gtmd:/var/lib/other".into()));
    assert_eq!(c.state_file, Some("/var/lib/gtmd/state.json".into()));
    let set =
        format!("{plain}allow_transfer = [\"127.0.0.1\"]\n[admin]\nstate_file = \"s.json\"\n");
    std::fs::write(&conf, set).unwrap();
    assert_eq!(
        Config::load(&conf).unwrap().state_file,
        Some(dir.path().join("s.json"))
    );
}
