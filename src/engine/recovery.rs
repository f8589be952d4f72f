//! What a name's TTLs promise and cost, for `/status` and `/explain`: the worst-case time
//! clients are sent to a failed member and kept from a recovered one, against the name's
//! `recover_within`, and the queries its TTL asks of each caching resolver.

use serde::Serialize;

use crate::config::BoundName;
use crate::dns::resolvers::{Resolvers, WINDOW};
use crate::steer::recovery::worst_case;

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
    /// Queries a second each caching resolver sends for the name (1 / ttl, per type).
    pub resolver_qps_each: f64,
    /// Distinct resolvers that asked over the last `resolvers_window` seconds.
    pub resolvers_seen: u64,
    /// More resolvers asked than can be told apart: `resolvers_seen` is a lower bound.
    pub resolvers_lower_bound: bool,
    pub resolvers_window: u64,
    /// What those resolvers ask of gtmd a second for the name: resolvers_seen / ttl.
    pub resolver_qps_total: f64,
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
    let each = 1.0 / f64::from(b.ttl);
    let total = resolvers as f64 * each;
    let round = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
    let mut words = format!(
        "clients leave a failed member within {:.1}s (detection {:.1}s + ttl {}s + 1s) and return to a recovered one within {:.1}s (detection {:.1}s + degraded_ttl {}s + 1s)",
        outage.as_secs_f64(),
        r.fall.as_secs_f64(),
        b.ttl,
        back.as_secs_f64(),
        r.rise.as_secs_f64(),
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
        "; each caching resolver asks {each:.2} times a second, {}{resolvers} resolvers seen in {}s: {total:.1} queries a second",
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
        resolvers_seen: resolvers,
        resolvers_lower_bound: bound,
        resolvers_window: WINDOW.as_secs(),
        resolver_qps_total: total,
        words,
    }
}
