use std::path::Path;

use hickory_proto::rr::Name;

use super::*;

/// Two pools of IPv4 members (eu: .1-.3, us: .11-.12) and an IPv6 member in eu; `name` is
/// the body of the bound name's table.
fn config(name: &str) -> Config {
    let text = format!(
        "[checks.c]\ntype = \"tcp\"\nport = 80\n\
         [pools.eu]\ncheck = \"c\"\nweight = 90\nmembers = [{{ address = \"192.0.2.1\" }}, {{ address = \"192.0.2.2\" }}, {{ address = \"192.0.2.3\", weight = 2 }}, {{ address = \"2001:db8::1\" }}]\n\
         [pools.us]\ncheck = \"c\"\nweight = 10\nmembers = [{{ address = \"192.0.2.11\" }}, {{ address = \"192.0.2.12\" }}]\n\
         [names.\"app.example.test.\"]\n{name}\n"
    );
    Config::parse(&text, "t.toml", Path::new(".")).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The probability that each address is in the answer.
fn inclusion(p: &Plan, a: &str) -> f64 {
    p.sets
        .iter()
        .filter(|(s, _)| s.contains(&ip(a)))
        .map(|(_, w)| w)
        .sum()
}

fn v4(cfg: &Config, down: &[&str]) -> Plan {
    let down: Vec<IpAddr> = down.iter().map(|a| ip(a)).collect();
    plan(
        cfg,
        &cfg.names[0],
        false,
        &Views(|i: usize| !down.contains(&cfg.members[i].address), |_| true),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn weighted_pools_split_by_pool_then_member_weight() {
    let cfg = config("pools = [\"eu\", \"us\"]\npolicy = \"weighted\"");
    let p = v4(&cfg, &[]);
    assert!(close(p.sets.iter().map(|s| s.1).sum(), 1.0));
    // eu's 90% split 1:1:2 among its members, us's 10% 1:1.
    for (a, share) in [
        ("192.0.2.1", 0.225),
        ("192.0.2.2", 0.225),
        ("192.0.2.3", 0.45),
        ("192.0.2.11", 0.05),
        ("192.0.2.12", 0.05),
    ] {
        assert!(close(inclusion(&p, a), share), "{a}: {}", inclusion(&p, a));
    }
    assert!(p.sets.iter().all(|(s, _)| s.len() == 1));
    // A down member's share stays in its pool; a pool with none up gives its share away.
    let p = v4(&cfg, &["192.0.2.3"]);
    assert!(close(inclusion(&p, "192.0.2.1"), 0.45));
    let p = v4(&cfg, &["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    assert!(close(inclusion(&p, "192.0.2.11"), 0.5));
    assert!(!p.all_down);
}

#[test]
fn weighted_with_several_answers_includes_each_member_by_weight() {
    let cfg = config("pools = [\"eu\"]\npolicy = \"weighted\"\nanswers = 2");
    let p = v4(&cfg, &[]);
    // Weights 1:1:2 with two answers: included with probability 2w/W.
    for (a, inc) in [("192.0.2.1", 0.5), ("192.0.2.2", 0.5), ("192.0.2.3", 1.0)] {
        assert!(close(inclusion(&p, a), inc), "{a}: {}", inclusion(&p, a));
    }
    assert!(p.sets.iter().all(|(s, _)| s.len() == 2), "{p:?}");
    assert!(p.sets.len() <= 4);
}

#[test]
fn all_rotates_and_caps() {
    let cfg = config("pools = [\"eu\", \"us\"]\nmax_answers = 2");
    let p = v4(&cfg, &["192.0.2.2"]);
    assert_eq!(p.sets.len(), 4);
    for a in ["192.0.2.1", "192.0.2.3", "192.0.2.11", "192.0.2.12"] {
        assert!(close(inclusion(&p, a), 0.5), "{a}");
    }
    assert!(p.sets.iter().all(|(s, _)| s.len() == 2));
    assert_eq!(inclusion(&p, "192.0.2.2"), 0.0);
}

#[test]
fn failover_uses_the_first_pool_with_enough_healthy_members() {
    let cfg = config("pools = [\"eu\", \"us\"]\npolicy = \"failover\"\nmin_healthy = \"50%\"");
    let p = v4(&cfg, &["192.0.2.1"]); // 2 of 3 up: enough
    assert!(close(inclusion(&p, "192.0.2.2"), 1.0));
    assert_eq!(inclusion(&p, "192.0.2.11"), 0.0);
    let p = v4(&cfg, &["192.0.2.1", "192.0.2.2"]); // 1 of 3: below 50%
    assert!(close(inclusion(&p, "192.0.2.11"), 1.0));
    assert_eq!(inclusion(&p, "192.0.2.3"), 0.0);
    // Neither has enough: the first with any healthy member.
    let p = v4(
        &cfg,
        &["192.0.2.1", "192.0.2.2", "192.0.2.11", "192.0.2.12"],
    );
    assert!(close(inclusion(&p, "192.0.2.3"), 1.0));
    assert!(!p.all_down);
}

#[test]
fn all_down_behaviours() {
    let down = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.11",
        "192.0.2.12",
    ];
    let p = v4(&config("pools = [\"eu\", \"us\"]"), &down);
    assert!(p.all_down && !p.servfail);
    assert!(close(inclusion(&p, "192.0.2.12"), 1.0)); // fail-open: every member
    let p = v4(
        &config("pools = [\"eu\"]\nwhen_all_down = \"nodata\""),
        &down,
    );
    assert_eq!(p.sets, vec![(vec![], 1.0)]);
    let p = v4(
        &config("pools = [\"eu\"]\nwhen_all_down = \"servfail\""),
        &down,
    );
    assert!(p.servfail);
    let cfg = config(
        "pools = [\"eu\"]\nwhen_all_down = \"fallback\"\nfallback = [\"198.51.100.7\", \"2001:db8::7\", \"us\"]",
    );
    let p = v4(&cfg, &["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.11"]);
    assert!(p.all_down);
    // The fixed address of this family, and the fallback pool's healthy member.
    assert!(close(inclusion(&p, "198.51.100.7"), 1.0));
    assert!(close(inclusion(&p, "192.0.2.12"), 1.0));
    assert_eq!(inclusion(&p, "192.0.2.11"), 0.0);
}

#[test]
fn members_disabled_by_hand_are_never_answered_even_when_all_are_down() {
    let cfg = config("pools = [\"eu\"]");
    let off = ip("192.0.2.1");
    let p = plan(
        &cfg,
        &cfg.names[0],
        false,
        &Views(|_| false, |i: usize| cfg.members[i].address != off),
    );
    assert!(p.all_down);
    assert_eq!(inclusion(&p, "192.0.2.1"), 0.0);
    assert!(close(inclusion(&p, "192.0.2.2"), 1.0));
}

#[test]
fn families_are_planned_apart() {
    let cfg = config("pools = [\"eu\", \"us\"]\npolicy = \"weighted\"");
    let p = plan(&cfg, &cfg.names[0], true, &Views(|_| true, |_| true));
    assert_eq!(p.sets, vec![(vec![ip("2001:db8::1")], 1.0)]);
    // The IPv6 member down: its family is all down, whatever IPv4 does.
    let p = plan(
        &cfg,
        &cfg.names[0],
        true,
        &Views(|i: usize| !cfg.members[i].address.is_ipv6(), |_| true),
    );
    assert!(p.all_down);
    // A family with no members at all is NODATA, not an outage.
    let cfg = config("pools = [\"us\"]");
    let p = plan(&cfg, &cfg.names[0], true, &Views(|_| true, |_| true));
    assert!(!p.all_down && p.sets == vec![(vec![], 1.0)]);
}

#[test]
fn a_name_of_domain_names_answers_one_target_by_its_policy() {
    let text = |policy: &str| {
        format!(
            "[checks.c]\ntype = \"tcp\"\nport = 80\n\
             [pools.eu]\ncheck = \"c\"\nweight = 3\nmembers = [{{ cname = \"a.eu.example.net.\" }}, {{ cname = \"b.eu.example.net.\" }}]\n\
             [pools.us]\ncheck = \"c\"\nweight = 1\nmembers = [{{ cname = \"lb.us.example.net.\" }}]\n\
             [names.\"app.example.test.\"]\npools = [\"eu\", \"us\"]\n{policy}\n"
        )
    };
    let n = |s: &str| Name::from_ascii(s).unwrap();
    let share = |p: &Plan<Name>, t: &str| -> f64 {
        p.sets
            .iter()
            .filter(|(s, _)| s.contains(&n(t)))
            .map(|(_, w)| w)
            .sum()
    };
    let cfg = Config::parse(&text("policy = \"weighted\""), "t.toml", Path::new(".")).unwrap();
    let all_up = cname_plans(&cfg, &cfg.names[0], &Views(|_| true, |_| true)).remove(0);
    assert!(all_up.sets.iter().all(|(s, _)| s.len() == 1));
    assert!(close(share(&all_up, "a.eu.example.net."), 0.375));
    assert!(close(share(&all_up, "b.eu.example.net."), 0.375));
    assert!(close(share(&all_up, "lb.us.example.net."), 0.25));
    // Every address plan is empty: the name has no address members.
    assert_eq!(
        plan(&cfg, &cfg.names[0], false, &Views(|_| true, |_| true)).sets,
        [(vec![], 1.0)]
    );

    let cfg = Config::parse(&text("policy = \"failover\""), "t.toml", Path::new(".")).unwrap();
    let eu_down = |i: usize| cfg.pools[0].members.contains(&i);
    let p = cname_plans(&cfg, &cfg.names[0], &Views(|i| !eu_down(i), |_| true)).remove(0);
    assert_eq!(p.sets, [(vec![n("lb.us.example.net.")], 1.0)]);
    let p = cname_plans(&cfg, &cfg.names[0], &Views(|_| true, |_| true)).remove(0);
    assert!(close(share(&p, "a.eu.example.net."), 0.5));
    assert!(p.sets.iter().all(|(s, _)| s.len() == 1));
    // All down: every member, one per answer (fail-open).
    let p = cname_plans(&cfg, &cfg.names[0], &Views(|_| false, |_| true)).remove(0);
    assert!(p.all_down);
    assert!(close(share(&p, "lb.us.example.net."), 1.0 / 3.0));
}
