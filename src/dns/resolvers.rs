//! How many distinct resolvers ask for a name: a fixed-size, lock-free estimate over a
//! sliding window, for the cost side of a name's TTL (each resolver that caches the name
//! asks again once per TTL).
//!
//! Linear counting (Whang, Vander-Zanden and Taylor, 1990): each source address sets one bit
//! of a bitmap chosen by its hash; n distinct sources leave a fraction Z of zero bits with
//! n ≈ -m ln Z. Two bitmaps take turns: the engine clears the older one and makes it current
//! every half window, and the estimate is over both, so it covers the last half window to
//! whole window. Memory is fixed (2 × [`BITS`] bits per name) however many resolvers ask.
//!
//! On the query path a mark is a hash and one relaxed load; the bit is written only the
//! first time a source is seen in the half window.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Bits per bitmap: estimates stay within a few percent up to about this many resolvers,
/// and are reported as a lower bound past about 7 times it.
pub const BITS: usize = 8192;
const WORDS: usize = BITS / 64;
/// With this few zero bits left, the estimate is only a lower bound.
const SATURATED: u32 = 8;
/// The window resolvers are counted over.
pub const WINDOW: Duration = Duration::from_secs(120);

/// The distinct sources that asked for one name over the last [`WINDOW`], and the queries
/// the fast path answered for it.
#[derive(Debug)]
pub struct Resolvers {
    maps: [Box<[AtomicU64; WORDS]>; 2],
    current: AtomicUsize,
    seed: foldhash::quality::FixedState,
    /// By type and rcode (A NOERROR, A other, AAAA NOERROR, AAAA other, other NOERROR,
    /// other other), in shards that threads write apart, so that two threads answering the
    /// same name do not write one cache line.
    queries: [Shard; SHARDS],
}

const SHARDS: usize = 4;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard([AtomicU64; 6]);

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}

impl Default for Resolvers {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolvers {
    /// A count with a hash seed of its own, so that no client can pick addresses that
    /// share a bit.
    pub fn new() -> Self {
        Self::with_seed(rand::random())
    }

    /// A count whose hash is fixed by `seed`: the same sources set the same bits.
    pub fn with_seed(seed: u64) -> Self {
        let map = || Box::new([const { AtomicU64::new(0) }; WORDS]);
        Resolvers {
            maps: [map(), map()],
            current: AtomicUsize::new(0),
            seed: foldhash::quality::FixedState::with_seed(seed),
            queries: Default::default(),
        }
    }

    /// Counts a query of `qtype` answered with `rcode`: one relaxed add to this thread's
    /// shard.
    pub fn count(&self, qtype: u16, rcode: u8) {
        let t = match qtype {
            1 => 0,
            28 => 2,
            _ => 4,
        };
        let k = t + usize::from(rcode != 0);
        SHARD.with(|&s| self.queries[s].0[k].fetch_add(1, Relaxed));
    }

    /// The queries counted so far, by type and rcode (see [`Resolvers::count`]).
    pub fn queries(&self) -> [u64; 6] {
        std::array::from_fn(|k| self.queries.iter().map(|s| s.0[k].load(Relaxed)).sum())
    }

    /// Counts a query from `source`.
    pub fn mark(&self, source: IpAddr) {
        let mut h = self.seed.build_hasher();
        match source.to_canonical() {
            IpAddr::V4(a) => h.write_u32(a.to_bits()),
            IpAddr::V6(a) => h.write_u128(a.to_bits()),
        }
        let bit = h.finish() as usize % BITS;
        let word = &self.maps[self.current.load(Relaxed) & 1][bit / 64];
        let mask = 1u64 << (bit % 64);
        if word.load(Relaxed) & mask == 0 {
            word.fetch_or(mask, Relaxed);
        }
    }

    /// Starts a new half window: the older bitmap is cleared and becomes the current one.
    /// The engine calls this every `WINDOW / 2`.
    pub fn rotate(&self) {
        let next = (self.current.load(Relaxed) + 1) & 1;
        for w in self.maps[next].iter() {
            w.store(0, Relaxed);
        }
        self.current.store(next, Relaxed);
    }

    /// The estimated number of distinct sources over the window, and whether it is only a
    /// lower bound (nearly every bit is set).
    pub fn estimate(&self) -> (u64, bool) {
        let zeros: u32 = (0..WORDS)
            .map(|i| (self.maps[0][i].load(Relaxed) | self.maps[1][i].load(Relaxed)).count_zeros())
            .sum();
        let m = BITS as f64;
        // With no zero bit left the estimate is unbounded: report the one for a single zero.
        let z = f64::from(zeros.max(1)) / m;
        ((-m * z.ln()).round() as u64, zeros <= SATURATED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + i))
    }

    /// The seeds the tests hash with: fixed, so that a test gives the same answer every
    /// run. With a random seed, two of ten sources share a bit about once in 180 runs.
    const SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    #[test]
    fn counts_distinct_sources_within_a_few_percent() {
        for seed in SEEDS {
            for n in [0u32, 1, 10, 1000, 8000] {
                let r = Resolvers::with_seed(seed);
                for _ in 0..3 {
                    // Each source again: repeats do not count twice.
                    for i in 0..n {
                        r.mark(v4(i));
                    }
                }
                let (est, bound) = r.estimate();
                let err = (est as f64 - f64::from(n)).abs() / f64::from(n.max(1));
                assert!(err <= 0.05, "seed {seed}: {n} sources estimated as {est}");
                assert!(!bound);
            }
        }
        // IPv6 sources and a v4-mapped address counted as its IPv4 address.
        let r = Resolvers::with_seed(SEEDS[0]);
        r.mark("2001:db8::1".parse().unwrap());
        r.mark("::ffff:10.0.0.1".parse().unwrap());
        r.mark(v4(1));
        assert_eq!(r.estimate().0, 2);
    }

    #[test]
    fn the_window_slides_by_halves() {
        let r = Resolvers::with_seed(SEEDS[0]);
        for i in 0..100 {
            r.mark(v4(i));
        }
        r.rotate();
        for i in 100..150 {
            r.mark(v4(i));
        }
        // Both halves count.
        let (est, _) = r.estimate();
        assert!((145..=155).contains(&est), "{est}");
        // A half window later the first 100 are gone.
        r.rotate();
        let (est, _) = r.estimate();
        assert!((48..=52).contains(&est), "{est}");
        r.rotate();
        assert_eq!(r.estimate().0, 0);
    }

    #[test]
    fn far_more_sources_than_bits_are_a_lower_bound() {
        let r = Resolvers::with_seed(SEEDS[0]);
        for i in 0..(BITS as u32 * 20) {
            r.mark(v4(i));
        }
        let (est, bound) = r.estimate();
        assert!(bound && est > BITS as u64 * 5, "{est}");
    }
}
