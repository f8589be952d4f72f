use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "t.toml", Path::new("."))
}

const POOL: &str = "[checks.c]\ntype = \"tcp\"\nport = 80\n\n[pools.p]\ncheck = \"c\"\nmembers = [{ address = \"192.0.2.1\" }]\n";

#[test]
fn the_embedded_sample_is_valid() {
    let c = Config::embedded().unwrap();
    assert_eq!(
        c.listen,
        vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.members.len(), 5);
}

#[test]
fn unknown_keys_name_the_line_and_path() {
    let e = parse("[server]\nlisten = [\"127.0.0.1:53\"]\nlisen = 1\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().contains("unknown field `lisen`"), "{e}");
    assert!(e.to_string().starts_with("t.toml:3: server"), "{e}");
}

#[test]
fn semantic_errors_name_the_line_and_path() {
    let text = format!("{POOL}[checks.d]\ntype = \"http\"\ninterval = \"1s\"\ntimeout = \"2s\"\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.path, "checks.d.timeout");
    assert_eq!(e.line, Some(11), "{e}");
    assert!(e.msg.contains("below interval"), "{e}");
}

#[test]
fn a_fast_interval_is_below_the_interval_and_at_least_10ms() {
    let check = |fast: &str| {
        parse(&format!(
            "{POOL}[checks.d]\ntype = \"tcp\"\nport = 1\ninterval = \"1s\"\ntimeout = \"300ms\"\nfast_interval = \"{fast}\"\n"
        ))
    };
    let c = check("100ms").unwrap();
    let d = c.checks.iter().find(|c| c.name == "d").unwrap();
    assert_eq!(d.fast_interval, Some(Duration::from_millis(100)));
    for bad in ["1s", "5ms", "soon"] {
        let e = check(bad).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.line),
            ("checks.d.fast_interval", Some(13)),
            "{e}"
        );
    }
    let e = check("2s").unwrap_err();
    assert!(e.msg.contains("below interval (1s)"), "{e}");
}

#[test]
fn icmp_checks_take_a_count_a_loss_and_a_round_trip_and_nothing_of_http() {
    let check = |keys: &str| {
        parse(&format!(
            "{POOL}[checks.d]\ntype = \"icmp\"\ninterval = \"1s\"\ntimeout = \"150ms\"\n{keys}\n"
        ))
    };
    let c = check("count = 5\nmax_loss = \"40%\"\nmax_rtt = \"50ms\"").unwrap();
    let d = c.checks.iter().find(|c| c.name == "d").unwrap();
    assert_eq!(
        d.kind,
        CheckKind::Icmp(IcmpCheck {
            count: 5,
            max_lost: 2,
            max_rtt: Some(Duration::from_millis(50)),
        })
    );
    for (keys, path, msg) in [
        (
            "port = 80",
            "checks.d.port",
            "does not apply to icmp checks",
        ),
        (
            "path = \"/\"",
            "checks.d.path",
            "does not apply to icmp checks",
        ),
        ("count = 21", "checks.d.count", "1 to 20 echoes"),
        (
            "count = 20",
            "checks.d.timeout",
            "need a timeout above 200ms",
        ),
        (
            "max_loss = \"half\"",
            "checks.d.max_loss",
            "not a share of echoes",
        ),
        ("max_rtt = \"fast\"", "checks.d.max_rtt", "not a duration"),
    ] {
        let e = check(keys).unwrap_err();
        assert_eq!(e.path, path, "{keys}: {e}");
        assert!(e.msg.contains(msg), "{keys}: {e}");
        assert!(e.line.is_some(), "{keys}: {e}");
    }
    let e = parse(&format!(
        "{POOL}[checks.d]\ntype = \"tcp\"\nport = 1\ncount = 3\n"
    ))
    .unwrap_err();
    assert_eq!(e.path, "checks.d.count", "{e}");
    assert!(e.msg.contains("icmp checks only"), "{e}");
}

#[test]
fn a_pool_takes_several_checks_with_how_many_must_pass() {
    let two = "[checks.a]\ntype = \"tcp\"\nport = 1\n[checks.b]\ntype = \"http\"\nport = 2\n";
    let pool = |keys: &str| {
        parse(&format!(
            "{two}[pools.p]\n{keys}\nmembers = [{{ address = \"192.0.2.1\" }}]\n"
        ))
    };
    let c = pool("checks = [\"a\", \"b\"]").unwrap();
    let m = &c.members[0];
    assert_eq!(m.require, 2);
    let ports: Vec<u16> = m.checks.iter().map(|(_, t)| t.port()).collect();
    assert_eq!(ports, [1, 2]);
    assert_eq!(
        pool("checks = [\"a\", \"b\"]\nrequire = \"any\"")
            .unwrap()
            .members[0]
            .require,
        1
    );
    assert_eq!(
        pool("checks = [\"a\", \"b\"]\nrequire = 1")
            .unwrap()
            .members[0]
            .require,
        1
    );
    assert_eq!(pool("check = \"b\"").unwrap().members[0].require, 1);
    for (keys, path, msg) in [
        (
            "checks = [\"a\", \"b\"]\nrequire = 3",
            "pools.p.require",
            "3 is not \"all\", \"any\" or a count from 1 to 2",
        ),
        (
            "checks = [\"a\", \"b\"]\nrequire = \"most\"",
            "pools.p.require",
            "\"most\" is not",
        ),
        (
            "checks = [\"a\", \"c\"]",
            "pools.p.checks[1]",
            "no check named \"c\"",
        ),
        (
            "checks = [\"a\", \"a\"]",
            "pools.p.checks[1]",
            "listed twice",
        ),
        (
            "check = \"a\"\nchecks = [\"b\"]",
            "pools.p.checks",
            "not both",
        ),
    ] {
        let e = pool(keys).unwrap_err();
        assert_eq!(e.path, path, "{keys}: {e}");
        assert!(e.msg.contains(msg), "{keys}: {e}");
        assert!(e.line.is_some(), "{keys}: {e}");
    }
}

#[test]
fn member_errors_point_at_the_member() {
    let text = "[checks.c]\ntype = \"tcp\"\nport = 80\n[pools.p]\ncheck = \"c\"\nmembers = [\n  { address = \"192.0.2.1\" },\n  { address = \"nope\" },\n]\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.path, "pools.p.members[1].address");
    assert_eq!(e.line, Some(8), "{e}");
}

#[test]
fn unknown_keys_under_a_dotted_name_are_quoted() {
    let text = format!("{POOL}[names.\"srv.other.test.\"]\npools = [\"p\"]\ntype = 1\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.path, "names.\"srv.other.test.\".type", "{e}");
    assert!(
        e.to_string()
            .starts_with("t.toml:10: names.\"srv.other.test.\".type"),
        "{e}"
    );
}

#[test]
fn members_need_a_unicast_address() {
    for (addr, why) in [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::ffff:239.1.1.1", "multicast"),
    ] {
        let text = POOL.replace("192.0.2.1", addr);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.path, "pools.p.members[0].address", "{addr}: {e}");
        assert_eq!(e.line, Some(7), "{addr}: {e}");
        assert!(e.msg.contains(why), "{addr}: {e}");
    }
}

#[test]
fn names_must_use_known_pools() {
    let text = format!("{POOL}[names.\"a.example.\"]\npools = [\"q\"]\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.path, "names.\"a.example.\".pools[0]");
    assert!(e.msg.contains("no pool named \"q\""), "{e}");
    assert_eq!(e.line, Some(9), "{e}");
}

#[test]
fn status_ranges_parse() {
    let text = "[checks.c]\ntype = \"http\"\nexpect_status = [200, \"300-302\"]\n";
    let c = parse(text).unwrap();
    match &c.checks[0].kind {
        CheckKind::Http(h) => assert_eq!(h.expect, vec![(200, 200), (300, 302)]),
        k => panic!("{k:?}"),
    }
    let e = parse("[checks.c]\ntype = \"http\"\nexpect_status = [\"600\"]\n").unwrap_err();
    assert_eq!(e.path, "checks.c.expect_status[0]");
}

#[test]
fn invalid_toml_names_the_line() {
    let e = parse("[server]\nlisten = [\n").unwrap_err();
    assert!(e.line.is_some() && e.msg.contains("invalid TOML"), "{e}");
}

#[test]
fn keepalive_is_an_http_duration_no_shorter_than_the_interval() {
    let ok = format!("{POOL}[checks.h]\ntype = \"http\"\nkeepalive = \"30s\"\n");
    match &parse(&ok).unwrap().checks[1].kind {
        CheckKind::Http(h) => assert_eq!(h.keepalive, Some(Duration::from_secs(30))),
        k => panic!("{k:?}"),
    }
    let short =
        format!("{POOL}[checks.h]\ntype = \"http\"\ninterval = \"2s\"\nkeepalive = \"1s\"\n");
    let e = parse(&short).unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.line),
        ("checks.h.keepalive", Some(11)),
        "{e}"
    );
    assert!(e.msg.contains("between interval"), "{e}");
    let tcp = format!("{POOL}[checks.t]\ntype = \"tcp\"\nport = 1\nkeepalive = \"30s\"\n");
    let e = parse(&tcp).unwrap_err();
    assert_eq!(e.path, "checks.t.keepalive", "{e}");
    assert!(e.msg.contains("http and https checks only"), "{e}");
}

#[test]
fn regions_need_members_and_a_return_level_above_removal() {
    let base = "[checks.c]\ntype = \"tcp\"\nport = 80\n[pools.p]\ncheck = \"c\"\nregion = \"eu\"\nmembers = [{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\", region = \"us\" }]\n";
    let c = parse(&format!("{base}[regions.eu]\nremove_below = \"50%\"\n")).unwrap();
    assert_eq!(
        c.regions[0].members,
        vec![0],
        "the pool's region, unless the member says"
    );
    assert_eq!(
        (c.regions[0].remove_below, c.regions[0].return_at),
        (50, 75)
    );
    let e = parse(&format!("{base}[regions.ap]\nremove_below = \"50%\"\n")).unwrap_err();
    assert_eq!(e.path, "regions.ap", "{e}");
    assert!(e.msg.contains("no member or pool has region"), "{e}");
    let e = parse(&format!(
        "{base}[regions.eu]\nremove_below = \"50%\"\nreturn_at = \"40%\"\n"
    ))
    .unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.line),
        ("regions.eu.return_at", Some(10)),
        "{e}"
    );
    let e = parse(&format!("{base}[regions.eu]\nremove_below = \"half\"\n")).unwrap_err();
    assert!(e.msg.contains("not a percentage"), "{e}");
}

#[test]
fn topology_rules_are_checked() {
    let base = "[checks.c]\ntype = \"tcp\"\nport = 80\n[pools.eu]\ncheck = \"c\"\nregion = \"eu\"\nmembers = [{ address = \"192.0.2.1\" }]\n[pools.us]\ncheck = \"c\"\nmembers = [{ address = \"192.0.2.2\" }]\n[names.\"a.example.\"]\npools = [\"eu\", \"us\"]\npolicy = \"topology\"\n";
    let rule = |clients: &str, order: &str| {
        format!(
            "{base}[[names.\"a.example.\".topology]]\nclients = [{clients}]\norder = [{order}]\n"
        )
    };
    let c = parse(&rule("\"10.0.0.0/8\"", "\"us\", \"eu\"")).unwrap();
    match &c.names[0].policy {
        Policy::Topology { orders, .. } => {
            assert_eq!(
                orders[0],
                vec![vec![0], vec![1]],
                "unmatched: the name's pools"
            );
            assert_eq!(orders[1], vec![vec![1], vec![0], vec![0], vec![1]]);
        }
        p => panic!("{p:?}"),
    }
    // A region label works as an order entry.
    assert!(parse(&rule("\"10.0.0.0/8\"", "\"eu\"")).is_ok());
    let e = parse(&rule("\"10.0.0.0/8\"", "\"ap\"")).unwrap_err();
    assert_eq!(e.path, "names.\"a.example.\".topology[0].order[0]", "{e}");
    assert!(
        e.msg
            .contains("neither one of this name's pools nor a region"),
        "{e}"
    );
    let e = parse(&rule("\"10.0.0.0/33\"", "\"us\"")).unwrap_err();
    assert_eq!(e.path, "names.\"a.example.\".topology[0].clients[0]", "{e}");
    assert_eq!(e.line, Some(15), "{e}");
    let e = parse(base).unwrap_err();
    assert!(e.msg.contains("needs [[topology]] rules"), "{e}");
    let failover = base.replace("topology", "failover")
        + "[[names.\"a.example.\".topology]]\nclients = []\norder = []\n";
    let e = parse(&failover).unwrap_err();
    assert!(e.msg.contains("applies to policy \"topology\" only"), "{e}");
}

#[test]
fn a_non_loopback_admin_address_needs_a_token_file() {
    let e = parse("[admin]\nlisten = \"0.0.0.0:8053\"\n").unwrap_err();
    assert_eq!((e.path.as_str(), e.line), ("admin.listen", Some(2)), "{e}");
    assert!(e.msg.contains("set admin.token_file"), "{e}");
    let c =
        parse("[admin]\nlisten = \"0.0.0.0:8053\"\ntoken_file = \"/etc/gtmd/token\"\n").unwrap();
    assert_eq!(c.token_file.as_deref(), Some(Path::new("/etc/gtmd/token")));
    assert!(parse("[admin]\nlisten = \"[::1]:8053\"\n").is_ok());
}

#[test]
fn the_admin_header_timeout_is_short_by_default_and_at_most_max_time() {
    let c = parse("").unwrap();
    assert_eq!(c.admin_limits.header_timeout, Duration::from_secs(3));
    let c = parse("[admin]\nmax_time = \"2s\"\n").unwrap();
    assert_eq!(c.admin_limits.header_timeout, Duration::from_secs(2));
    for bad in ["0s", "11s"] {
        let e = parse(&format!("[admin]\nheader_timeout = \"{bad}\"\n")).unwrap_err();
        assert_eq!(e.path, "admin.header_timeout", "{e}");
        assert!(e.msg.contains("at most admin.max_time"), "{e}");
    }
}

#[test]
fn zone_tables_name_the_line_of_a_bad_key_or_address() {
    let e = parse("[zones.\"t.\"]\ntransfer_keys = [\"nokey\"]\n").unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.line),
        ("zones.\"t.\".transfer_keys[0]", Some(2)),
        "{e}"
    );
    assert!(e.msg.contains("not a key of server.tsig_keys"), "{e}");
    let e = parse("[zones.\"t.\"]\nnotify = [\"127.0.0.1\"]\n").unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.line),
        ("zones.\"t.\".notify[0]", Some(2)),
        "{e}"
    );
    let e = parse("[zones.\"t\"]\n").unwrap_err();
    assert!(e.msg.contains("ending in a dot"), "{e}");
    let e = parse("[server]\ntsig_keys = [\"/nonexistent/k.key\"]\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.msg.contains("/nonexistent/k.key: cannot read"), "{e}");
}

#[test]
fn a_zone_table_for_a_zone_not_served_is_an_error_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.zone"),
        "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n NS ns\nns A 192.0.2.1\n",
    )
    .unwrap();
    let text = format!(
        "[server]\nzones_dir = {:?}\n[zones.\"other.\"]\nallow_transfer = [\"127.0.0.1\"]\n",
        dir.path().display().to_string()
    );
    let e = parse(&text).unwrap().load_zones().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.toml:3: zones.\"other.\": other. is not a zone of"),
        "{e}"
    );
}

mod cluster;
mod members;
mod objectives;

#[test]
fn a_pool_or_member_name_with_a_slash_is_refused() {
    // POOL/MEMBER names a member (overrides, alerts, history): "a/b" + "c" and "a" + "b/c"
    // would be one.
    let e = parse(&POOL.replace(
        "{ address = \"192.0.2.1\" }",
        "{ address = \"192.0.2.1\", name = \"b/c\" }",
    ))
    .unwrap_err();
    assert_eq!(e.path, "pools.p.members[0].name", "{e}");
    assert!(e.msg.contains("holds a '/'"), "{e}");
    let e = parse(&POOL.replace("[pools.p]", "[pools.\"a/b\"]")).unwrap_err();
    assert!(e.msg.contains("holds a '/'"), "{e}");
    assert!(parse(POOL).is_ok());
}
