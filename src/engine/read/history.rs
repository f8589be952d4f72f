//! `/history`: the series of [`crate::engine::history`] over a window, as JSON for the status
//! page and `gtmd ctl history`.

use serde::{Deserialize, Serialize};

use crate::engine::history::{decode_ms, Series, Span, COARSE, FINE, QUERY_KINDS, STATES};
use crate::engine::Engine;

/// What `/history` is asked: `since` seconds back (default 3600), steps of `step` seconds
/// (5 or 300; default 5 up to an hour back, else 300), only the members and names that
/// `member` and `name` give (a member by `POOL/MEMBER`, its name or its address).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub since: Option<u64>,
    pub step: Option<u64>,
    pub member: Option<String>,
    pub name: Option<String>,
    /// At most this many members: those whose state was not up all along first.
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct HistoryReport {
    /// Seconds per step.
    pub step: u64,
    /// When the first step began (Unix milliseconds); step `k` begins `k * step` later.
    pub start_ms: u64,
    pub steps: usize,
    /// The server's clock now (Unix milliseconds), for the page to time its next request.
    pub now_ms: u64,
    /// How many members the query matched (`members` holds at most `limit` of them).
    pub members_total: usize,
    pub members: Vec<MemberHistory>,
    pub names: Vec<NameHistory>,
    pub pools: Vec<GroupHistory>,
    pub regions: Vec<GroupHistory>,
    /// The changes kept (the latest 100), newest first, of the members and names asked.
    pub events: Vec<crate::base::alert::Alert>,
}

#[derive(Debug, Serialize)]
pub struct MemberHistory {
    /// `POOL/MEMBER`.
    pub member: String,
    /// The worst state in each step: up, suspect (up, failing), down, disabled, unknown.
    pub state: Vec<Option<&'static str>>,
    pub latency_ms: Latency,
    /// For a member with several checks, each check's own (`member` is the check's name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<MemberHistory>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub min: Vec<Option<f64>>,
    pub avg: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct NameHistory {
    pub name: String,
    /// Queries per second answered for the name, per step.
    pub qps: Vec<Option<f64>>,
    /// By type and rcode.
    pub queries: Vec<QueryKind>,
    /// Each answer's share of responses per step (0 to 1; null: not an answer then).
    pub shares: Vec<Share>,
}

#[derive(Debug, Serialize)]
pub struct QueryKind {
    pub qtype: &'static str,
    pub rcode: &'static str,
    pub per_second: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct Share {
    pub answer: String,
    pub share: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct GroupHistory {
    pub name: String,
    /// Healthy members per step (the fewest in the step).
    pub healthy: Vec<Option<u16>>,
}

/// The steps of a window: which ring, and the step numbers.
struct Window {
    coarse: bool,
    from: u64,
    to: u64,
}

impl Window {
    fn values<T: Copy, U>(&self, s: &Series<T>, f: impl Fn(T) -> Option<U>) -> Vec<Option<U>> {
        (self.from..self.to)
            .map(|k| s.at(self.coarse, k).and_then(&f))
            .collect()
    }
}

impl Engine {
    pub(in crate::engine) fn history_report(&self, q: &HistoryQuery) -> HistoryReport {
        let h = &self.history;
        let (span, w) = window(h, q);
        let mut members = h
            .members
            .iter()
            .enumerate()
            .filter(|(i, (key, _))| match &q.member {
                None => q.name.is_none(),
                Some(_) => self.member_asked(q, key, *i),
            })
            .map(|(_, (key, m))| member_history(key, m, &w))
            .collect::<Vec<_>>();
        let members_total = members.len();
        if let Some(limit) = q.limit.filter(|&l| l < members.len()) {
            // Those that changed first, each group in the configuration's order.
            let steady = |m: &MemberHistory| m.state.iter().flatten().all(|s| *s == "up");
            members.sort_by_key(steady);
            members.truncate(limit);
        }
        let mut names = h
            .names
            .iter()
            .filter(|(n, _)| match &q.name {
                None => q.member.is_none(),
                Some(_) => name_asked(q, n),
            })
            .map(|(n, nh)| name_history(n, nh, &w, span.step_secs))
            .collect::<Vec<_>>();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let keys: Vec<&str> = members.iter().map(|m| m.member.as_str()).collect();
        let events = self
            .alerts
            .recent()
            .into_iter()
            .filter(|e| {
                let member = e
                    .pool
                    .as_ref()
                    .zip(e.member.as_ref())
                    .is_some_and(|(p, m)| keys.contains(&format!("{p}/{m}").as_str()))
                    || e.target.as_deref().is_some_and(|t| keys.contains(&t));
                let name = e.name.as_deref().is_some_and(|n| name_asked(q, n));
                (q.member.is_none() && q.name.is_none())
                    || (q.member.is_some() && member)
                    || (q.name.is_some() && name)
            })
            .collect();
        HistoryReport {
            step: span.step_secs,
            start_ms: h.first_ms + w.from * span.step_secs * 1000,
            steps: (w.to - w.from) as usize,
            now_ms: crate::engine::recording::now_ms(),
            members_total,
            members,
            names,
            pools: groups(&h.pools, &w),
            regions: groups(&h.regions, &w),
            events,
        }
    }

    /// Whether member `i` (`key`) is one `/history` was asked for.
    fn member_asked(&self, q: &HistoryQuery, key: &str, i: usize) -> bool {
        match &q.member {
            None => true,
            Some(m) => {
                let cm = &self.cfg.members[i];
                let by_address = match &cm.cname {
                    None => cm.address.to_string() == *m,
                    Some(n) => n.to_string().trim_end_matches('.') == m.trim_end_matches('.'),
                };
                key == m || &cm.name == m || by_address
            }
        }
    }
}

/// Which ring and which of its steps a query asks for.
fn window(h: &crate::engine::history::History, q: &HistoryQuery) -> (Span, Window) {
    let since = q.since.unwrap_or(3600);
    let coarse = q
        .step
        .map_or(since > FINE.step_secs * FINE.steps as u64, |s| {
            s >= COARSE.step_secs
        });
    let span: Span = if coarse { COARSE } else { FINE };
    let closed = if coarse {
        h.closed / (COARSE.step_secs / FINE.step_secs)
    } else {
        h.closed
    };
    let n = (since / span.step_secs)
        .clamp(1, span.steps as u64)
        .min(closed);
    let w = Window {
        coarse,
        from: closed - n,
        to: closed,
    };
    (span, w)
}

fn name_asked(q: &HistoryQuery, n: &str) -> bool {
    match &q.name {
        None => true,
        Some(a) => n
            .trim_end_matches('.')
            .eq_ignore_ascii_case(a.trim_end_matches('.')),
    }
}

fn groups(
    g: &std::collections::HashMap<String, crate::engine::history::GroupHistory>,
    w: &Window,
) -> Vec<GroupHistory> {
    let mut v: Vec<GroupHistory> = g
        .iter()
        .map(|(name, g)| GroupHistory {
            name: name.clone(),
            healthy: w.values(&g.series, |x| (x != u16::MAX).then_some(x)),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn member_history(
    key: &str,
    m: &crate::engine::history::MemberHistory,
    w: &Window,
) -> MemberHistory {
    let s = &m.series;
    let byte = |i: usize| move |x: u32| Some(x.to_le_bytes()[i]);
    let lat = |i: usize| w.values(s, move |x: u32| decode_ms(byte(i)(x)?).map(round3));
    MemberHistory {
        member: key.to_string(),
        state: w.values(s, |x| STATES[(x.to_le_bytes()[0] as usize).min(5)]),
        latency_ms: Latency {
            min: lat(1),
            avg: lat(2),
            max: lat(3),
        },
        checks: m
            .checks
            .iter()
            .map(|(name, c)| member_history(name, c, w))
            .collect(),
    }
}

fn name_history(
    n: &str,
    h: &crate::engine::history::NameHistory,
    w: &Window,
    step: u64,
) -> NameHistory {
    let per_sec = |x: u32| Some(round3(x as f64 / step as f64));
    NameHistory {
        name: n.to_string(),
        qps: w.values(&h.queries, |q| per_sec(q.iter().sum())),
        queries: QUERY_KINDS
            .iter()
            .enumerate()
            .map(|(i, (t, r))| QueryKind {
                qtype: t,
                rcode: r,
                per_second: w.values(&h.queries, |q| per_sec(q[i])),
            })
            .collect(),
        shares: h
            .shares
            .iter()
            .map(|(a, s)| Share {
                answer: a.clone(),
                share: w.values(s, |x| (x != 255).then(|| x as f64 / 200.0)),
            })
            .collect(),
    }
}

/// `x` to three significant digits: what the history keeps (6% steps) and no more.
fn round3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let d = 10f64.powi(2 - x.abs().log10().floor() as i32);
    (x * d).round() / d
}
