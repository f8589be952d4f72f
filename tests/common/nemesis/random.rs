//! The randomized nemesis: from a seed, faults and heals at random moments for a while,
//! then every fault healed and a quiet spell, then the checker over the whole history and
//! the summary table.

use std::fmt::Write;
use std::time::{Duration, Instant};

use super::checker::{check, Verdict};
use super::faults::{self, ctl, reload, Fault, Nemesis};
use super::net::Mode;
use super::{World, ETCD, GTMD, MEMBERS, QUORUM_DELAY, REGIONS, SECONDARY};

/// A small xorshift64* generator: the same seed, the same run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[self.below(of.len())]
    }
}

/// The seed: `GTMD_NEMESIS_SEED` if set, else `fixed`, else one from the clock.
pub fn seed(fixed: Option<u64>) -> u64 {
    if let Some(s) = std::env::var("GTMD_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    fixed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    })
}

/// A random fault that the faults in force allow: at most one gtmd process and one etcd
/// member down at a time, and an etcd member emptied only while etcd is whole.
fn random_fault(w: &World, n: &Nemesis, rng: &mut Rng) -> Option<Fault> {
    let busy = |pred: &dyn Fn(&Fault) -> bool| n.active.iter().any(|(_, f)| pred(f));
    let g = rng.pick(&GTMD);
    let e = rng.below(ETCD.len());
    let r = rng.below(REGIONS.len());
    let one_way = rng.below(3) == 0;
    let gtmd_down = busy(&|f| matches!(f, Fault::Pause(h) | Fault::Kill(h) if h.starts_with('g')));
    let etcd_busy = busy(&|f| match f {
        Fault::Pause(h) | Fault::Kill(h) | Fault::LinkDown(h) | Fault::Slow(h, _) => {
            h.starts_with('e')
        }
        Fault::Cut { kind, .. } => kind.contains("leader"),
        _ => false,
    });
    let secondary_down =
        busy(&|f| matches!(f, Fault::Pause(h) | Fault::Kill(h) if *h == SECONDARY));
    Some(match rng.below(16) {
        0 => faults::instance_from_etcd(g, one_way),
        1 if !etcd_busy => faults::leader_from_followers(w.etcd_leader_index()?),
        2 | 3 => faults::instance_from_region(g, r, one_way),
        4 => faults::region_from_all(r),
        5 if !etcd_busy => Fault::LinkDown(ETCD[e]),
        6 => Fault::LinkDown(REGIONS[r]),
        7 if !gtmd_down => Fault::Pause(g),
        8 if !gtmd_down => Fault::Kill(g),
        9 if !etcd_busy => Fault::Pause(ETCD[e]),
        10 if !etcd_busy => Fault::Kill(ETCD[e]),
        11 if !etcd_busy && n.active.is_empty() => Fault::Wipe(ETCD[e]),
        12 => faults::secondary_from_primary(one_way),
        13 if !secondary_down => {
            if rng.below(2) == 0 {
                Fault::Kill(SECONDARY)
            } else {
                Fault::Pause(SECONDARY)
            }
        }
        14 if !etcd_busy => Fault::Slow(ETCD[e], rng.pick(&["64kbit", "128kbit"])),
        _ => {
            let member = rng.below(MEMBERS.len());
            if busy(&|f| matches!(f, Fault::Backend { member: m, .. } if *m == member)) {
                return None;
            }
            let mode = rng.pick(&[Mode::Refuse, Mode::Refuse, Mode::Hang, Mode::Flap]);
            Fault::Backend { member, mode }
        }
    })
}

/// One ctl operation: disable an enabled member (at most two disabled) or enable a
/// disabled one, through a random instance that runs. `disabled`: the members that may be
/// disabled.
fn random_ctl(w: &World, disabled: &mut Vec<usize>, rng: &mut Rng) {
    let via = rng.below(GTMD.len());
    if w.gtmd[via].is_none() {
        return;
    }
    if disabled.len() < 2 && (disabled.is_empty() || rng.below(2) == 0) {
        let k = rng.below(MEMBERS.len());
        // Kept as disabled even when not acknowledged: it may have been done.
        if !disabled.contains(&k) {
            ctl(w, via, "disable", k);
            disabled.push(k);
        }
    } else if !disabled.is_empty() {
        let k = disabled[rng.below(disabled.len())];
        if ctl(w, via, "enable", k) {
            disabled.retain(|d| *d != k);
        }
    }
}

/// Runs the nemesis for `length` from `seed`, heals everything, waits for the cluster to
/// settle, and judges the history. Returns the verdict and the nemesis (its counts).
pub fn run(w: &mut World, seed: u64, length: Duration) -> (Verdict, Nemesis) {
    let mut rng = Rng::new(seed);
    let mut n = Nemesis::new();
    let mut disabled = Vec::new();
    let start = Instant::now();
    while start.elapsed() < length {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500) as u64));
        n.notice_deaths(w);
        let roll = rng.below(100);
        if !n.active.is_empty() && (n.active.len() >= 3 || roll < 35) {
            let (id, _) = n.active[rng.below(n.active.len())];
            n.heal(w, id);
        } else if roll < 80 {
            if let Some(f) = random_fault(w, &n, &mut rng) {
                n.apply(w, f);
            }
        } else if roll < 95 {
            random_ctl(w, &mut disabled, &mut rng);
        } else {
            reload(w, rng.below(GTMD.len()));
        }
    }
    n.heal_all(w);
    // Every member that may be disabled is enabled (an enable of a member without an
    // override may be refused: the settling below tells whether all are back).
    for k in disabled {
        let _ = (0..GTMD.len()).any(|via| ctl(w, via, "enable", k));
    }
    (settle_and_check(w), n)
}

/// After every fault is healed: waits for the cluster to settle, then a quiet spell in which
/// every bound runs out, stops recording and judges the history.
pub fn settle_and_check(w: &mut World) -> Verdict {
    w.wait_settled(Duration::from_secs(30));
    std::thread::sleep(w.bounds.recovery + QUORUM_DELAY + Duration::from_secs(2));
    w.stop_recording();
    check(&w.h.sorted(), w.bounds)
}

/// Fails with every violation (and writes the history beside the test binaries) unless
/// the verdict is clean.
pub fn assert_clean(w: &World, label: &str, v: &Verdict) {
    if v.violations.is_empty() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("nemesis-{label}.history"));
    w.h.write(&path);
    // Each instance's whole log (all its runs), beside the history.
    for g in super::GTMD.iter().chain([&SECONDARY]) {
        let _ = std::fs::copy(w.log(g), dir.join(format!("nemesis-{label}-{g}.log")));
    }
    for e in ETCD {
        let log = w.dir.path().join(format!("{e}.etcd.log"));
        let _ = std::fs::copy(log, dir.join(format!("nemesis-{label}-{e}.etcd.log")));
    }
    panic!(
        "{label}: {} violations (history: {}, the instances' and etcd's logs beside it)\n{}",
        v.violations.len(),
        path.display(),
        v.describe()
    );
}

/// The summary table: queries, violations per invariant with their total time, faults
/// injected by kind, alerts expected and received.
pub fn table(seed: u64, length: Duration, v: &Verdict, n: &Nemesis) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "seed {seed}, {:.0} s of faults, {:.0} s recorded",
        length.as_secs_f64(),
        v.end.as_secs_f64()
    );
    let _ = writeln!(s, "| what | count | total time |\n| --- | --- | --- |");
    let _ = writeln!(s, "| queries sent | {} | |", v.queries);
    let _ = writeln!(
        s,
        "| queries failed (to a paused, killed or starting instance) | {} | |",
        v.excused
    );
    let _ = writeln!(
        s,
        "| queries failed (to a running instance) | {} | |",
        v.failed - v.excused
    );
    let names = [
        "availability",
        "truth",
        "no false removal",
        "overrides",
        "alerts",
        "serials",
    ];
    for (i, name) in names.iter().enumerate() {
        let (count, time) = v.of(i as u8 + 1);
        let _ = writeln!(
            s,
            "| violations of {} ({name}) | {count} | {:.2} s |",
            i + 1,
            time.as_secs_f64()
        );
    }
    for (kind, count) in &n.injected {
        let _ = writeln!(s, "| fault: {kind} | {count} | |");
    }
    let _ = writeln!(
        s,
        "| processes that ended on their own (counted as killed) | {} | |",
        n.died
    );
    let _ = writeln!(
        s,
        "| alerts expected (sure events) | {} | |",
        v.alerts_expected
    );
    let _ = writeln!(s, "| cluster alerts received | {} | |", v.alerts_received);
    let _ = writeln!(
        s,
        "| of them sent again (sender lost etcd before recording it) | {} | |",
        v.resent
    );
    let _ = writeln!(
        s,
        "| serials of the zone seen (primary, secondary) | {}, {} | |",
        v.serials[0], v.serials[1]
    );
    let _ = writeln!(
        s,
        "| changes the secondary had to follow within {:.0} s | {} | |",
        super::serials::FOLLOW_BOUND.as_secs_f64(),
        v.follows
    );
    s
}
