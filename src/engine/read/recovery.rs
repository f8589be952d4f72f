//! What a name's TTLs promise and cost, for `/status` and `/explain`: the worst-case time
//! clients are sent to a failed member and kept from a recovered one, against the name's
//! `recover_within`, and the queries its TTL asks of each caching resolver.

use serde::Serialize;

use crate::config::recovery::{worst_case, RESOLVER_SLACK};
use crate::config::BoundName;
use crate::dns::resolvers::{Resolvers, WINDOW};

/// A bound name's recovery promise and its cost. Times in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    /// `recover_within`, if the name has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recover_within: Option<f64>,
    pub ttl: u32,
    pub degraded_ttl: u32,
    /// Where the TTLs came from: "derived" from recover_within, "set" or "default".
    pub ttl_from: &'static str,
    /// The longest gtmd takes to take a failed member out of answers.
    pub detection: f64,
    /// The longest a client may be sent to a failed member: detection + ttl + 1 s.
    pub worst_outage: f64,
    /// The longest gtmd takes to put a recovered member back (rise, or a damping hold-down).
    pub return_detection: f64,
    /// The longest before traffic returns to a recovered member: that + degraded_ttl + 1 s.
    pub worst_return: f64,
    /// Whether both stay within recover_within.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meets_objective: Option<bool>,
    /// Queries a second each caching resolver sends for the name, per type: 1 / (ttl + 1 s),
    /// as a resolver asks again a second after its copy expires (Unbound does).
    pub resolver_qps_each: f64,
    /// The same while the name is degraded (answered with `degraded_ttl`).
    pub resolver_qps_each_degraded: f64,
    /// Distinct resolvers that asked over the last `resolvers_window` seconds.
    pub resolvers_seen: u64,
    /// More resolvers asked than can be told apart: `resolvers_seen` is a lower bound.
    pub resolvers_lower_bound: bool,
    pub resolvers_window: u64,
    /// What those resolvers ask of gtmd a second for the name: resolvers_seen / (ttl + 1).
    pub resolver_qps_total: f64,
    /// The same while the name is degraded: resolvers_seen / (degraded_ttl + 1).
    pub resolver_qps_total_degraded: f64,
    /// The same, in words.
    pub words: String,
}

/// The report of `b`, with `seen` its resolver counter if it has been published.
pub fn report(b: &BoundName, seen: Option<&Resolvers>) -> RecoveryReport {
    let r = &b.recovery;
    let outage = worst_case(r.fall, b.ttl);
    let back = worst_case(r.rise, b.degraded_ttl);
    let meets = r.objective.map(|g| outage <= g && back <= g);
    let (resolvers, bound) = seen.map_or((0, false), |s| s.estimate());
    let slack = RESOLVER_SLACK.as_secs_f64();
    let each = 1.0 / (f64::from(b.ttl) + slack);
    let each_degraded = 1.0 / (f64::from(b.degraded_ttl) + slack);
    let total = resolvers as f64 * each;
    let total_degraded = resolvers as f64 * each_degraded;
    // The words show the same tenths as the fields.
    let round = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
    let mut words = format!(
        "clients leave a failed member within {:.1}s (detection {:.1}s + ttl {}s + 1s) and return to a recovered one within {:.1}s (detection {:.1}s + degraded_ttl {}s + 1s)",
        round(outage),
        round(r.fall),
        b.ttl,
        round(back),
        round(r.rise),
        b.degraded_ttl
    );
    if let Some(g) = r.objective {
        let verdict = if meets == Some(true) {
            "meets"
        } else {
            "breaks"
        };
        words += &format!(
            "; {verdict} recover_within {}",
            humantime::format_duration(g)
        );
    }
    words += &format!(
        "; each caching resolver asks {each:.2} times a second ({each_degraded:.2} while degraded), {}{resolvers} resolvers seen in {}s: {total:.1} queries a second ({total_degraded:.1} while degraded)",
        if bound { "at least " } else { "" },
        WINDOW.as_secs()
    );
    RecoveryReport {
        recover_within: r.objective.map(|g| g.as_secs_f64()),
        ttl: b.ttl,
        degraded_ttl: b.degraded_ttl,
        ttl_from: r.ttl_from,
        detection: round(r.fall),
        worst_outage: round(outage),
        return_detection: round(r.rise),
        worst_return: round(back),
        meets_objective: meets,
        resolver_qps_each: each,
        resolver_qps_each_degraded: each_degraded,
        resolvers_seen: resolvers,
        resolvers_lower_bound: bound,
        resolvers_window: WINDOW.as_secs(),
        resolver_qps_total: total,
        resolver_qps_total_degraded: total_degraded,
        words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(checks: &str, name: &str) -> crate::config::Config {
        let text = format!(
            "{checks}\n[pools.p]\ncheck = \"c\"\nmembers = [{{ name = \"m\", address = \"192.0.2.1\" }}]\n\
             [names.\"a.example.test.\"]\npools = [\"p\"]\n{name}"
        );
        crate::config::Config::parse(&text, "t.toml", std::path::Path::new("/")).unwrap()
    }

    #[test]
    fn the_words_round_the_detection_bound_as_the_fields_do() {
        // 500 ms × 3 + 10% + 300 ms = 1.95 s: 2.0 in the field and in the words.
        let cfg = name(
            "[checks.c]\ntype = \"tcp\"\nport = 80\ninterval = \"500ms\"\ntimeout = \"300ms\"\nfall = 3",
            "ttl = 5",
        );
        let r = report(&cfg.names[0], None);
        assert_eq!(r.detection, 2.0);
        assert!(r.words.contains("(detection 2.0s + ttl 5s"), "{}", r.words);
    }

    #[test]
    fn a_resolver_asks_once_per_ttl_and_a_second_and_more_often_while_degraded() {
        let cfg = name(
            "[checks.c]\ntype = \"tcp\"\nport = 80\ninterval = \"1s\"\ntimeout = \"300ms\"",
            "ttl = 2\ndegraded_ttl = 1",
        );
        let r = report(&cfg.names[0], None);
        assert!((r.resolver_qps_each - 1.0 / 3.0).abs() < 1e-9, "{r:?}");
        assert!((r.resolver_qps_each_degraded - 0.5).abs() < 1e-9, "{r:?}");
    }
}
