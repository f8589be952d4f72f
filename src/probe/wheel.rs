//! A hashed timing wheel: timers at millisecond resolution, each added and expired in
//! constant time, where a binary heap of thousands of timers costs a cache miss per level at
//! every pop.
//!
//! A timer never fires early: its time is rounded up to the next millisecond. Timers more than
//! one turn of the wheel away wait in their bucket for the turn they are due.

use std::time::{Duration, Instant};

/// Buckets in one turn (a power of two): 4.096 s at one millisecond each.
const SLOTS: usize = 4096;

pub(crate) struct Wheel<T> {
    origin: Instant,
    /// Each timer with its tick (milliseconds since `origin`, rounded up).
    buckets: Vec<Vec<(u64, T)>>,
    /// The first tick not yet expired.
    cursor: u64,
    len: usize,
}

impl<T> Wheel<T> {
    pub(crate) fn new(origin: Instant) -> Self {
        Self {
            origin,
            buckets: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
            len: 0,
        }
    }

    /// The tick at or after `at`.
    fn tick_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        d.as_nanos().div_ceil(1_000_000) as u64
    }

    /// Adds a timer for `at` (one already past fires in the next tick not yet expired).
    pub(crate) fn push(&mut self, at: Instant, item: T) {
        let tick = self.tick_of(at).max(self.cursor);
        self.buckets[tick as usize % SLOTS].push((tick, item));
        self.len += 1;
    }

    /// Moves every timer due at `now` to `out`.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        // Ticks up to `now`, rounded down, are due.
        let upto = now.saturating_duration_since(self.origin).as_millis() as u64;
        while self.cursor <= upto {
            if self.len == 0 {
                self.cursor = upto + 1;
                return;
            }
            let cursor = self.cursor;
            let bucket = &mut self.buckets[cursor as usize % SLOTS];
            let mut k = 0;
            while k < bucket.len() {
                if bucket[k].0 <= cursor {
                    out.push(bucket.swap_remove(k).1);
                    self.len -= 1;
                } else {
                    k += 1;
                }
            }
            self.cursor += 1;
        }
    }

    /// A time at or before the next timer is due; `None` without timers. (A bucket that holds
    /// only timers of a later turn wakes its owner early, to find nothing due.)
    pub(crate) fn next(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let ahead = (0..SLOTS as u64)
            .find(|i| !self.buckets[(self.cursor + i) as usize % SLOTS].is_empty())
            .unwrap_or(0);
        Some(self.origin + Duration::from_millis(self.cursor + ahead))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(w: &mut Wheel<u32>, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(now, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn timers_fire_in_their_millisecond_never_before() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Wheel::new(t0);
        w.push(t0 + ms(5) + Duration::from_micros(300), 1);
        w.push(t0 + ms(2), 2);
        w.push(t0, 3);
        assert_eq!(w.next(), Some(t0));
        assert_eq!(due(&mut w, t0), vec![3]);
        assert_eq!(w.next(), Some(t0 + ms(2)));
        assert_eq!(due(&mut w, t0 + ms(1)), Vec::<u32>::new());
        assert_eq!(due(&mut w, t0 + ms(5)), vec![2]);
        // 5.3 ms is rounded up to 6 ms.
        assert_eq!(w.next(), Some(t0 + ms(6)));
        assert_eq!(
            due(&mut w, t0 + ms(5) + Duration::from_micros(900)),
            Vec::<u32>::new()
        );
        assert_eq!(due(&mut w, t0 + ms(6)), vec![1]);
        assert_eq!(w.next(), None);
        // A timer already past fires in the next tick not yet expired.
        w.push(t0 + ms(1), 4);
        assert_eq!(w.next(), Some(t0 + ms(7)));
        assert_eq!(due(&mut w, t0 + ms(7)), vec![4]);
    }

    #[test]
    fn timers_beyond_one_turn_wait_for_their_turn() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Wheel::new(t0);
        let far = SLOTS as u64 * 2 + 7;
        w.push(t0 + ms(far), 1);
        w.push(t0 + ms(7), 2);
        assert_eq!(due(&mut w, t0 + ms(7)), vec![2]);
        // The bucket is shared with the far timer's: it is found, and skipped.
        assert_eq!(due(&mut w, t0 + ms(SLOTS as u64 + 7)), Vec::<u32>::new());
        assert!(w.next().is_some_and(|t| t <= t0 + ms(far)));
        assert_eq!(due(&mut w, t0 + ms(far - 1)), Vec::<u32>::new());
        assert_eq!(due(&mut w, t0 + ms(far)), vec![1]);
        assert_eq!(w.next(), None);
    }
}
