//! Recovery objectives: how long clients can be sent to a failed region, and what TTL keeps
//! that within an operator's `recover_within`.
//!
//! A client behind a caching resolver keeps the old answer until the resolver's copy
//! expires. So the worst case a client sees is gtmd's detection bound, plus the TTL the
//! resolver cached just before the change, plus one second (resolvers count TTLs in whole
//! seconds and may serve an answer up to a second past it):
//!
//! ```text
//! outage  = detection(fall) + ttl          + 1 s   ≤ recover_within
//! return  = detection(rise) + degraded_ttl + 1 s   (traffic back after a recovery)
//! ```
//!
//! The detection bound of one check, for `n` probes in a row (`fall` or `rise`): the first
//! probe that sees the change starts within one jittered interval (+10%) and ends within the
//! timeout; the `n - 1` that confirm it follow one jittered interval apart. With
//! `fast_interval`, probes overlap: a failure's confirming probes go out a fast interval
//! after the one before was sent (an unanswered probe of an up member already brings the
//! next one), each with its own timeout, so the last ends within
//! `interval + 10% + (fall - 1) × fast_interval + timeout`. A recovery is known to be one
//! only once its first success arrives (a down member's unanswered probe is no news): the
//! second probe goes out then or a fast interval after the first was sent, whichever is
//! later, and the rest a fast interval apart, so
//! `interval + 10% + timeout + (rise - 2) × fast_interval + timeout` (the first `timeout`
//! being the larger of it and `fast_interval`).

use std::time::Duration;

use crate::config::Check;

/// The prober spaces probes by the interval with up to this much jitter either way.
pub const JITTER: f64 = 0.1;
/// What resolvers add: whole-second TTL counting, and serving an answer up to a second past it.
pub const RESOLVER_SLACK: Duration = Duration::from_secs(1);

/// The longest a failure of a member takes to be decided by `c`, needing `n` failed probes
/// in a row.
pub fn detection(c: &Check, n: u32) -> Duration {
    let jittered = c.interval.mul_f64(1.0 + JITTER);
    let rest = n.saturating_sub(1);
    match c.fast_interval {
        Some(fast) => jittered + fast * rest + c.timeout,
        None => jittered * n.max(1) + c.timeout,
    }
}

/// The longest a recovery of a member takes to be decided by `c`, needing `n` passed probes
/// in a row.
pub fn rise_detection(c: &Check, n: u32) -> Duration {
    let jittered = c.interval.mul_f64(1.0 + JITTER);
    match c.fast_interval {
        Some(fast) if n > 1 => jittered + c.timeout.max(fast) + fast * (n - 2) + c.timeout,
        _ => jittered * n.max(1) + c.timeout,
    }
}

/// The longest a member that recovers waits to be back in answers, by `c`: its `rise`
/// detection, or the flap damping's least hold-down if that is longer (the hold-down runs
/// from when the member went down, so at most that long after it recovers).
pub fn return_bound(c: &Check) -> Duration {
    rise_detection(c, c.rise).max(c.damping.min_down)
}

/// [`detection`] (`which` "fall") or [`rise_detection`] ("rise") in words: "interval 2s ×
/// fall 3 + 10% jitter + timeout 1s = 7.6s".
pub fn formula(c: &Check, n: u32, which: &str) -> String {
    let d = |d: Duration| humantime::format_duration(round_ms(d)).to_string();
    let (i, t) = (d(c.interval), d(c.timeout));
    match c.fast_interval {
        Some(fast) if n > 1 && which == "fall" => format!(
            "interval {i} + 10% jitter + ({which} {n} - 1) × fast_interval {} + timeout {t} = {}",
            d(fast),
            d(detection(c, n))
        ),
        Some(fast) if n > 1 => format!(
            "interval {i} + 10% jitter + max(timeout {t}, fast_interval {f}) + ({which} {n} - 2) × fast_interval {f} + timeout {t} = {}",
            d(rise_detection(c, n)),
            f = d(fast),
        ),
        _ => format!(
            "interval {i} × {which} {n} + 10% jitter + timeout {t} = {}",
            d(detection(c, n))
        ),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// The longest degraded TTL gtmd picks by itself (seconds): a name with a member down is
/// answered with at most this, so that traffic returns to it within seconds of its recovery
/// (plus its detection), even when a long `recover_within` would allow more.
pub const DEGRADED_TTL: u32 = 5;

/// The largest TTL, in whole seconds, with `detection + ttl + 1 s ≤ objective`; `None` when
/// not even a TTL of 1 s fits.
pub fn derive_ttl(objective: Duration, detection: Duration) -> Option<u32> {
    let room = objective.checked_sub(detection + RESOLVER_SLACK)?;
    let ttl = room.as_secs().min(86400) as u32;
    (ttl >= 1).then_some(ttl)
}

/// The worst-case time a client is sent to a failed member, or kept from a recovered one:
/// detection, plus a resolver's cached TTL, plus the resolver's slack.
pub fn worst_case(detection: Duration, ttl: u32) -> Duration {
    detection + Duration::from_secs(u64::from(ttl)) + RESOLVER_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Check, CheckKind};

    fn check(interval: u64, timeout: u64, fall: u32, fast: Option<u64>) -> Check {
        Check {
            name: "c".into(),
            kind: CheckKind::Tcp { port: 1 },
            interval: Duration::from_millis(interval),
            fast_interval: fast.map(Duration::from_millis),
            timeout: Duration::from_millis(timeout),
            fall,
            rise: 2,
            damping: crate::steer::health::DampingRules {
                min_down: Duration::ZERO,
                window: Duration::ZERO,
                max_down: Duration::ZERO,
            },
        }
    }

    #[test]
    fn detection_is_the_jittered_interval_times_fall_plus_the_timeout() {
        let c = check(2000, 1000, 3, None);
        assert_eq!(detection(&c, 3), Duration::from_millis(3 * 2200 + 1000));
        assert_eq!(detection(&c, 1), Duration::from_millis(2200 + 1000));
        assert_eq!(
            formula(&c, 3, "fall"),
            "interval 2s × fall 3 + 10% jitter + timeout 1s = 7s 600ms"
        );
    }

    #[test]
    fn a_fast_interval_shortens_the_confirming_probes() {
        let c = check(2000, 300, 3, Some(200));
        // A failure: the first probe as before, ending within its timeout; the other two
        // sent a fast interval apart, overlapping it.
        assert_eq!(
            detection(&c, 3),
            Duration::from_millis(2200 + 2 * 200 + 300)
        );
        assert!(formula(&c, 3, "fall").contains("(fall 3 - 1) × fast_interval 200ms + timeout"));
        // A recovery: the second probe waits for the first success (up to the timeout).
        assert_eq!(
            rise_detection(&c, 3),
            Duration::from_millis(2200 + 300 + 200 + 300)
        );
        assert_eq!(rise_detection(&c, 1), Duration::from_millis(2200 + 300));
        assert!(
            formula(&c, 3, "rise").ends_with("= 3s"),
            "{}",
            formula(&c, 3, "rise")
        );
        // docs/steering.md's example: 1 s, 100 ms, 300 ms, fall 3: 1.1 + 0.2 + 0.3.
        let c = check(1000, 300, 3, Some(100));
        assert_eq!(detection(&c, 3), Duration::from_millis(1600));
    }

    #[test]
    fn the_ttl_is_the_largest_that_keeps_the_objective() {
        let s = Duration::from_secs;
        // 6 s objective, 2.9 s detection: 6 - 2.9 - 1 = 2.1 → 2 s.
        assert_eq!(derive_ttl(s(6), Duration::from_millis(2900)), Some(2));
        assert!(worst_case(Duration::from_millis(2900), 2) <= s(6));
        assert!(worst_case(Duration::from_millis(2900), 3) > s(6));
        assert_eq!(derive_ttl(s(300), s(7)), Some(292));
        // Exactly 1 s of room is a TTL of 1; less is no TTL at all.
        assert_eq!(derive_ttl(s(5), s(3)), Some(1));
        assert_eq!(derive_ttl(s(5), Duration::from_millis(3100)), None);
        assert_eq!(derive_ttl(s(5), s(7)), None);
        // Capped at a day, as a configured ttl is.
        assert_eq!(derive_ttl(s(10 * 86400), s(1)), Some(86400));
    }
}
