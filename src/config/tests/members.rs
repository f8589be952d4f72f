//! Members that are domain names, resolvers and pool capacities.

use super::*;

#[test]
fn members_that_are_domain_names_answer_a_cname_from_pools_of_their_own() {
    let base = "[checks.c]\ntype = \"http\"\nport = 8080\n\
        [pools.eu]\ncheck = \"c\"\nmembers = [{ cname = \"nlb-1.eu.example.net.\" }, { cname = \"nlb-2.eu.example.net\", probe_address = \"192.0.2.7\" }]\n\
        [pools.us]\ncheck = \"c\"\nmembers = [{ cname = \"nlb.us.example.net.\" }]\n\
        [pools.v4]\ncheck = \"c\"\nmembers = [{ address = \"192.0.2.1\" }]\n";
    let name = |body: &str| parse(&format!("{base}[names.\"app.example.test.\"]\n{body}\n"));
    let c = name("pools = [\"eu\", \"us\"]\npolicy = \"failover\"").unwrap();
    assert!(c.names[0].cname);
    assert!(matches!(
        c.names[0].policy,
        Policy::Failover { max_answers: 1, .. }
    ));
    let m = &c.members[0];
    assert_eq!(m.name, "nlb-1.eu.example.net.");
    assert_eq!(
        m.cname,
        Some(Name::from_ascii("nlb-1.eu.example.net.").unwrap())
    );
    assert_eq!(
        m.checks[0].1,
        ProbeAt::Resolve(Name::from_ascii("nlb-1.eu.example.net.").unwrap(), 8080)
    );
    // probe_address probes there instead of resolving; a name without the dot is absolute.
    assert_eq!(
        c.members[1].checks[0].1,
        ProbeAt::Addr("192.0.2.7:8080".parse().unwrap())
    );
    assert_eq!(
        c.members[1].cname,
        Some(Name::from_ascii("nlb-2.eu.example.net.").unwrap())
    );
    assert!(!name("pools = [\"v4\"]").unwrap().names[0].cname);
    for (body, path, msg) in [
        (
            "pools = [\"eu\", \"v4\"]",
            "names.\"app.example.test.\".pools[1]",
            "pool \"v4\" holds addresses but pool \"eu\" holds domain names",
        ),
        (
            "pools = [\"eu\"]\nmax_answers = 2",
            "names.\"app.example.test.\".max_answers",
            "a CNAME answer holds one name",
        ),
        (
            "pools = [\"eu\"]\npolicy = \"weighted\"\nanswers = 2",
            "names.\"app.example.test.\".answers",
            "a CNAME answer holds one name",
        ),
        (
            "pools = [\"eu\"]\nwhen_all_down = \"fallback\"\nfallback = [\"192.0.2.9\"]",
            "names.\"app.example.test.\".fallback",
            "192.0.2.9 is an address, but this name's members are domain names",
        ),
        (
            "pools = [\"eu\"]\nwhen_all_down = \"fallback\"\nfallback = [\"v4\"]",
            "names.\"app.example.test.\".fallback",
            "pool \"v4\" holds addresses",
        ),
    ] {
        let e = name(body).unwrap_err();
        assert_eq!(e.path, path, "{body}: {e}");
        assert!(e.msg.contains(msg), "{body}: {e}");
        assert!(e.line.is_some(), "{body}: {e}");
    }
}

#[test]
fn a_member_is_an_address_or_a_domain_name_and_a_pool_holds_one_kind() {
    let member = |m: &str| {
        parse(&format!(
            "[checks.c]\ntype = \"tcp\"\nport = 1\n[pools.p]\ncheck = \"c\"\nmembers = [{{ address = \"192.0.2.1\" }}, {m}]\n"
        ))
        .unwrap_err()
    };
    for (m, path, msg) in [
        (
            "{ cname = \"lb.example.net.\" }",
            "pools.p.members[1]",
            "pool \"p\" mixes an address (192.0.2.1) and a domain name (lb.example.net.)",
        ),
        (
            "{ address = \"192.0.2.2\", cname = \"lb.example.net.\" }",
            "pools.p.members[1].cname",
            "give address or cname, not both",
        ),
        (
            "{ name = \"x\" }",
            "pools.p.members[1]",
            "a member needs an address",
        ),
        (
            "{ address = \"lb.example.net.\" }",
            "pools.p.members[1].address",
            "a member that is a domain name is written cname = \"...\"",
        ),
        (
            "{ cname = \"192.0.2.5\" }",
            "pools.p.members[1].cname",
            "is not a domain name",
        ),
    ] {
        let e = member(m);
        assert_eq!(e.path, path, "{m}: {e}");
        assert!(e.msg.contains(msg), "{m}: {e}");
    }
}

#[test]
fn resolvers_take_an_address_with_or_without_a_port() {
    let c = parse(&format!(
        "{POOL}[probe]\nresolvers = [\"192.0.2.53\", \"127.0.0.1:5300\", \"[::1]:53\"]\n"
    ))
    .unwrap();
    let want: Vec<SocketAddr> = ["192.0.2.53:53", "127.0.0.1:5300", "[::1]:53"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(c.resolvers, want);
    let e = parse(&format!("{POOL}[probe]\nresolvers = [\"ns1\"]\n")).unwrap_err();
    assert_eq!(e.path, "probe.resolvers[0]", "{e}");
}

#[test]
fn capacities_are_given_to_every_pool_of_a_name_or_none() {
    let pools = |eu: &str, us: &str| {
        format!(
            "[checks.c]\ntype = \"tcp\"\nport = 80\n\
             [pools.eu]\ncheck = \"c\"\n{eu}\nregion = \"eu\"\nmembers = [{{ address = \"192.0.2.1\" }}]\n\
             [pools.us]\ncheck = \"c\"\n{us}\nmembers = [{{ address = \"192.0.2.2\" }}]\n"
        )
    };
    let both = pools("capacity = 100", "capacity = 60");
    let c = parse(&format!(
        "{both}[names.\"a.example.test.\"]\npools = [\"eu\", \"us\"]\npolicy = \"failover\"\n"
    ))
    .unwrap();
    assert_eq!(c.names[0].spill, Some(vec![vec![0, 1]]));
    assert_eq!(c.pools[1].capacity, Some(60));
    // Topology: one order per client group, the rule's pools first, then the name's.
    let c = parse(&format!(
        "{both}[names.\"a.example.test.\"]\npools = [\"eu\", \"us\"]\npolicy = \"topology\"\n\
         [[names.\"a.example.test.\".topology]]\nclients = [\"198.51.100.0/24\"]\norder = [\"us\"]\n"
    ))
    .unwrap();
    assert_eq!(c.names[0].spill, Some(vec![vec![0, 1], vec![1, 0]]));
    // A weighted name spreads its clients already: capacities do not apply.
    let c = parse(&format!(
        "{both}[names.\"a.example.test.\"]\npools = [\"eu\", \"us\"]\npolicy = \"weighted\"\n"
    ))
    .unwrap();
    assert_eq!(c.names[0].spill, None);
    let e = parse(&format!(
        "{}[names.\"a.example.test.\"]\npools = [\"eu\", \"us\"]\npolicy = \"failover\"\n",
        pools("capacity = 100", "")
    ))
    .unwrap_err();
    assert_eq!(e.path, "names.\"a.example.test.\".pools", "{e}");
    assert!(
        e.msg
            .contains("pool \"eu\" has a capacity but pool \"us\" has none"),
        "{e}"
    );
    let e = parse(&format!(
        "{both}[names.\"a.example.test.\"]\npools = [\"eu\", \"us\"]\npolicy = \"topology\"\n\
         [[names.\"a.example.test.\".topology]]\nclients = [\"198.51.100.0/24\"]\norder = [\"eu\"]\n\
         [[names.\"a.example.test.\".topology]]\nclients = [\"203.0.113.0/24\"]\norder = [\"eu\"]\n"
    ));
    assert!(e.is_ok(), "pool names in orders are fine");
    let e = parse(&pools("capacity = 0", "")).unwrap_err();
    assert_eq!(e.path, "pools.eu.capacity", "{e}");
}
