//! What happened, kept in memory for the status page, `/history` and `gtmd ctl history`:
//! per member its state and probe latency (min, average, max) per step, per name its
//! queries (by type and rcode) and each answer's share of responses, per pool and region its
//! healthy members.
//!
//! Two rings of steps: the last hour at 5 s ([`FINE`]) and the last 24 hours at 5 minutes
//! ([`COARSE`]), every series allocated whole when its member, name or group appears, so the
//! memory is fixed: 4 bytes per member per step (the state and three latencies, each latency
//! in one byte on a log scale of 6% steps from 10 µs to 27 s), 1,008 steps, about 4 KB per
//! member (`gtmd_history_bytes`). The engine feeds it as reports come in and closes a step on
//! its 5 s tick; nothing here runs per query.

use std::collections::HashMap;

/// One ring: how long a step is and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub step_secs: u64,
    pub steps: usize,
}

pub const FINE: Span = Span {
    step_secs: 5,
    steps: 720,
};
pub const COARSE: Span = Span {
    step_secs: 300,
    steps: 288,
};
/// Fine steps in a coarse one.
const PER_COARSE: u64 = COARSE.step_secs / FINE.step_secs;

/// A member's state over a step: the worst it was in (a higher code is worse).
pub const STATES: [Option<&str>; 6] = [
    None,
    Some("unknown"),
    Some("up"),
    Some("disabled"),
    Some("suspect"),
    Some("down"),
];

/// One byte for a latency: 0 none, else 1 + the step of 6% above 10 µs.
pub fn encode_ms(ms: f64) -> u8 {
    if ms.is_nan() || ms < 0.0 {
        return 0;
    }
    let k = ((ms.max(0.01) / 0.01).ln() / 1.06f64.ln()).round();
    1 + k.min(254.0) as u8
}

pub fn decode_ms(b: u8) -> Option<f64> {
    (b != 0).then(|| 0.01 * 1.06f64.powi(b as i32 - 1))
}

/// What a step gathers of one member before it is closed.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    worst: u8,
    n: u32,
    sum: f64,
    min: f64,
    max: f64,
}

impl Acc {
    fn add(&mut self, ms: f64) {
        if self.n == 0 || ms < self.min {
            self.min = ms;
        }
        if self.n == 0 || ms > self.max {
            self.max = ms;
        }
        self.n += 1;
        self.sum += ms;
    }

    fn fold(&mut self, o: &Acc) {
        self.worst = self.worst.max(o.worst);
        if o.n == 0 {
            return;
        }
        if self.n == 0 || o.min < self.min {
            self.min = o.min;
        }
        if self.n == 0 || o.max > self.max {
            self.max = o.max;
        }
        self.n += o.n;
        self.sum += o.sum;
    }

    /// State, min, average, max, as one word.
    fn pack(&self) -> u32 {
        let (lo, avg, hi) = if self.n == 0 {
            (0, 0, 0)
        } else {
            let avg = self.sum / self.n as f64;
            (encode_ms(self.min), encode_ms(avg), encode_ms(self.max))
        };
        u32::from_le_bytes([self.worst, lo, avg, hi])
    }
}

/// One value per step of both rings, with the first step (of each) it was there for.
#[derive(Debug, Clone)]
pub struct Series<T> {
    pub fine: Box<[T]>,
    pub coarse: Box<[T]>,
    pub born: (u64, u64),
}

impl<T: Copy> Series<T> {
    fn new(empty: T, born: (u64, u64)) -> Self {
        Series {
            fine: vec![empty; FINE.steps].into_boxed_slice(),
            coarse: vec![empty; COARSE.steps].into_boxed_slice(),
            born,
        }
    }

    fn bytes(&self) -> usize {
        (self.fine.len() + self.coarse.len()) * std::mem::size_of::<T>()
    }

    /// The value of step `k` of the ring `coarse` or not, if kept and the series was there.
    pub fn at(&self, coarse: bool, k: u64) -> Option<T> {
        let (ring, born) = if coarse {
            (&self.coarse, self.born.1)
        } else {
            (&self.fine, self.born.0)
        };
        (k >= born).then(|| ring[k as usize % ring.len()])
    }
}

/// A member's history.
#[derive(Debug, Clone)]
pub struct MemberHistory {
    pub series: Series<u32>,
    fine: Acc,
    coarse: Acc,
    /// For a member with several checks, each check's own (by name, in its order).
    pub checks: Vec<(String, MemberHistory)>,
}

impl MemberHistory {
    fn new(born: (u64, u64), checks: &[String]) -> Self {
        MemberHistory {
            series: Series::new(0, born),
            fine: Acc::default(),
            coarse: Acc::default(),
            checks: match checks {
                [_, _, ..] => checks
                    .iter()
                    .map(|c| (c.clone(), MemberHistory::new(born, &[])))
                    .collect(),
                _ => Vec::new(),
            },
        }
    }

    fn bytes(&self) -> usize {
        let checks = self.checks.iter().map(|(n, c)| n.len() + c.bytes());
        std::mem::size_of::<Self>() + self.series.bytes() + checks.sum::<usize>()
    }

    fn add(&mut self, latency_ms: f64, code: u8) {
        self.fine.add(latency_ms);
        self.fine.worst = self.fine.worst.max(code);
    }

    /// Writes fine step `k` (and coarse step `kc` when it ends), the state now `code`.
    fn close(&mut self, (k, kc): (u64, u64), code: u8, coarse_ends: bool) {
        self.fine.worst = self.fine.worst.max(code);
        self.series.fine[k as usize % FINE.steps] = self.fine.pack();
        self.coarse.fold(&self.fine);
        self.fine = Acc {
            worst: code,
            ..Acc::default()
        };
        if coarse_ends {
            self.series.coarse[kc as usize % COARSE.steps] = self.coarse.pack();
            self.coarse = Acc::default();
        }
    }
}

/// A name's history: queries per step by type (A, AAAA, other) and rcode (NOERROR, other),
/// and each answer's share of responses in half percents (255: not an answer then).
#[derive(Debug, Clone)]
pub struct NameHistory {
    pub queries: Series<[u32; 6]>,
    pub shares: Vec<(String, Series<u8>)>,
    last: [u64; 6],
    coarse_q: [u64; 6],
    /// Per share series (same order): over the coarse step so far, the sum of its half
    /// percents, the fine steps, and those where it was an answer.
    share_acc: Vec<[u32; 3]>,
}

/// A pool's or region's healthy members per step (the fewest in the step; `u16::MAX` none).
#[derive(Debug, Clone)]
pub struct GroupHistory {
    pub series: Series<u16>,
    fine: u16,
    coarse: u16,
}

/// The queries of a step for the types and rcodes of [`NameHistory::queries`].
pub const QUERY_KINDS: [(&str, &str); 6] = [
    ("A", "NOERROR"),
    ("A", "other"),
    ("AAAA", "NOERROR"),
    ("AAAA", "other"),
    ("other", "NOERROR"),
    ("other", "other"),
];

/// Every series, by key (`POOL/MEMBER`, the name, the pool, the region).
#[derive(Debug, Clone)]
pub struct History {
    /// When step 0 of the fine ring started (Unix milliseconds).
    pub first_ms: u64,
    /// Fine steps closed so far (the next to close is this one).
    pub closed: u64,
    /// In the configuration's order of members, with their keys.
    pub members: Vec<(String, MemberHistory)>,
    pub names: HashMap<String, NameHistory>,
    pub pools: HashMap<String, GroupHistory>,
    pub regions: HashMap<String, GroupHistory>,
}

/// A name's query counters (totals so far) and answer shares at a close.
pub type NameNow = (String, [u64; 6], Vec<(String, f64)>);

/// What the engine says of one step when it closes it.
pub struct Closing<'a> {
    /// Each member's state code now, in the configuration's order, with its checks' (for a
    /// member with several).
    pub members: Vec<(u8, Vec<u8>)>,
    /// Each name's query counters (totals so far) and answer shares now.
    pub names: Vec<NameNow>,
    pub pools: Vec<(&'a str, u16)>,
    pub regions: Vec<(&'a str, u16)>,
}

impl History {
    pub fn new(now_ms: u64) -> Self {
        History {
            first_ms: now_ms,
            closed: 0,
            members: Vec::new(),
            names: HashMap::new(),
            pools: HashMap::new(),
            regions: HashMap::new(),
        }
    }

    /// Heap bytes held, about: every series, not the keys and maps around them.
    pub fn bytes(&self) -> usize {
        let members = self.members.iter().map(|(k, m)| k.len() + m.bytes());
        let names = self.names.values().map(|n| {
            n.queries.bytes()
                + n.shares
                    .iter()
                    .map(|(a, s)| a.len() + s.bytes())
                    .sum::<usize>()
        });
        let groups = self.pools.values().chain(self.regions.values());
        members.sum::<usize>()
            + names.sum::<usize>()
            + groups.map(|g| g.series.bytes()).sum::<usize>()
    }

    fn born(&self) -> (u64, u64) {
        (self.closed, self.closed / PER_COARSE)
    }

    /// The members of a configuration, by key in its order: each keeps its history if it
    /// had one; a new one starts empty.
    /// `keys` with each member's check names: a member keeps its history if it had one
    /// (its checks' too, if they are the same checks); a new one starts empty.
    pub fn set_members(&mut self, keys: Vec<(String, Vec<String>)>) {
        let born = self.born();
        let mut old: HashMap<String, MemberHistory> =
            std::mem::take(&mut self.members).into_iter().collect();
        self.members = keys
            .into_iter()
            .map(|(k, checks)| {
                let mut h = old
                    .remove(&k)
                    .unwrap_or_else(|| MemberHistory::new(born, &checks));
                let same = h.checks.iter().map(|c| &c.0).eq(checks.iter());
                if !same && (h.checks.len() > 1 || checks.len() > 1) {
                    h.checks = MemberHistory::new(born, &checks).checks;
                }
                (k, h)
            })
            .collect();
    }

    /// A probe result of member `i`'s check `ci` took `latency_ms`; the member is in state
    /// `code` after it, the check in `check_code`.
    pub fn probe(&mut self, i: usize, ci: usize, latency_ms: f64, (code, check_code): (u8, u8)) {
        if let Some((_, m)) = self.members.get_mut(i) {
            m.add(latency_ms, code);
            if let Some((_, c)) = m.checks.get_mut(ci) {
                c.add(latency_ms, check_code);
            }
        }
    }

    /// Pool (or region) `name` has `healthy` members now: the step keeps the fewest.
    pub fn group_low(&mut self, region: bool, name: &str, healthy: usize) {
        let groups = if region {
            &mut self.regions
        } else {
            &mut self.pools
        };
        if let Some(g) = groups.get_mut(name) {
            g.fine = g.fine.min(healthy.min(u16::MAX as usize - 1) as u16);
        }
    }

    /// Closes the step: writes what it gathered, and every series the configuration no
    /// longer has is dropped.
    pub fn close(&mut self, c: Closing) {
        let (k, born) = (self.closed, self.born());
        let coarse_ends = (k + 1) % PER_COARSE == 0;
        let kc = k / PER_COARSE;
        for ((_, m), (code, checks)) in self.members.iter_mut().zip(&c.members) {
            m.close((k, kc), *code, coarse_ends);
            for ((_, ch), code) in m.checks.iter_mut().zip(checks) {
                ch.close((k, kc), *code, coarse_ends);
            }
        }
        self.close_names(&c.names, born, coarse_ends);
        close_groups(&mut self.pools, &c.pools, (k, kc), born, coarse_ends);
        close_groups(&mut self.regions, &c.regions, (k, kc), born, coarse_ends);
        self.closed += 1;
    }

    fn close_names(&mut self, names: &[NameNow], born: (u64, u64), coarse_ends: bool) {
        let (k, kc) = (self.closed, self.closed / PER_COARSE);
        let keep: std::collections::HashSet<&str> = names.iter().map(|n| n.0.as_str()).collect();
        self.names.retain(|key, _| keep.contains(key.as_str()));
        for (key, totals, shares) in names {
            let n = self
                .names
                .entry(key.to_string())
                .or_insert_with(|| NameHistory {
                    queries: Series::new([0; 6], born),
                    shares: Vec::new(),
                    // A name's counter starts with it (at start, or with the reload that
                    // added it).
                    last: [0; 6],
                    coarse_q: [0; 6],
                    share_acc: Vec::new(),
                });
            let step: [u32; 6] = std::array::from_fn(|i| {
                totals[i].saturating_sub(n.last[i]).min(u32::MAX as u64) as u32
            });
            n.last = *totals;
            n.queries.fine[k as usize % FINE.steps] = step;
            for (i, q) in step.iter().enumerate() {
                n.coarse_q[i] += *q as u64;
            }
            n.share_step(shares, (k, kc), born, coarse_ends);
            if coarse_ends {
                n.queries.coarse[kc as usize % COARSE.steps] =
                    std::array::from_fn(|i| n.coarse_q[i].min(u32::MAX as u64) as u32);
                n.coarse_q = [0; 6];
            }
        }
    }
}

impl NameHistory {
    fn share_step(
        &mut self,
        shares: &[(String, f64)],
        (k, kc): (u64, u64),
        born: (u64, u64),
        coarse_ends: bool,
    ) {
        for (answer, _) in shares {
            if !self.shares.iter().any(|(a, _)| a == answer) {
                self.shares.push((answer.clone(), Series::new(255, born)));
                self.share_acc.push([0; 3]);
            }
        }
        for ((answer, s), acc) in self.shares.iter_mut().zip(&mut self.share_acc) {
            let p = shares.iter().find(|(a, _)| a == answer).map(|(_, p)| *p);
            let half = p.map_or(255, |p| (p * 200.0).round().clamp(0.0, 200.0) as u8);
            s.fine[k as usize % FINE.steps] = half;
            // A step where it was no answer counts as 0 in the coarse step's average.
            acc[1] += 1;
            if half != 255 {
                acc[0] += half as u32;
                acc[2] += 1;
            }
            if coarse_ends {
                s.coarse[kc as usize % COARSE.steps] = if acc[2] == 0 {
                    255
                } else {
                    (acc[0] / acc[1]) as u8
                };
                *acc = [0; 3];
            }
        }
        if coarse_ends {
            // An answer no step kept has any more leaves (an address changed by a reload).
            let kept: Vec<bool> = self
                .shares
                .iter()
                .map(|(_, s)| s.fine.iter().chain(s.coarse.iter()).any(|&x| x != 255))
                .collect();
            let mut it = kept.iter();
            self.shares.retain(|_| *it.next().unwrap_or(&true));
            let mut it = kept.iter();
            self.share_acc.retain(|_| *it.next().unwrap_or(&true));
        }
    }
}

fn close_groups(
    groups: &mut HashMap<String, GroupHistory>,
    now: &[(&str, u16)],
    (k, kc): (u64, u64),
    born: (u64, u64),
    coarse_ends: bool,
) {
    let keep: std::collections::HashSet<&str> = now.iter().map(|g| g.0).collect();
    groups.retain(|key, _| keep.contains(key.as_str()));
    for (key, healthy) in now {
        let g = groups
            .entry(key.to_string())
            .or_insert_with(|| GroupHistory {
                series: Series::new(u16::MAX, born),
                fine: u16::MAX,
                coarse: u16::MAX,
            });
        g.fine = g.fine.min(*healthy);
        g.series.fine[k as usize % FINE.steps] = g.fine;
        g.coarse = g.coarse.min(g.fine);
        g.fine = u16::MAX;
        if coarse_ends {
            g.series.coarse[kc as usize % COARSE.steps] = g.coarse;
            g.coarse = u16::MAX;
        }
    }
}

#[cfg(test)]
mod tests;
