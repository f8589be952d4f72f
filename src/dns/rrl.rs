//! Response rate limiting for UDP, as Knot and NSD do it: responses to one client prefix
//! (/24 for IPv4, /56 for IPv6 by default) are limited per second, NXDOMAIN and error
//! responses more strictly than answers. Of the responses over the limit, every `slip`-th goes
//! out truncated (TC=1, no records), so a real client behind a flooded prefix retries over
//! TCP and still resolves; the rest are dropped, so a spoofed flood reflects almost nothing.
//! TCP is never limited: its source cannot be spoofed.
//!
//! NODATA counts as an error, as NXDOMAIN does: a NOERROR response with no answer records from
//! an authoritative server (compact denial's NOERROR for a missing name, RFC 9824, included).
//! An answer the general path signs per query is judged before it is signed
//! ([`Rrl::judge_before_signing`]): a response to be dropped or slipped costs no signature.
//! Each prefix also has a budget of such signed answers (`signatures_rate` a second): beyond
//! it the answer goes out truncated and unsigned, so that a flood of names from one network
//! cannot take the signing core, while a real client there gets its answer over TCP.
//!
//! The buckets are governor's keyed limiters (a sharded map). Prefixes that are back at a full
//! bucket are forgotten once a second when the table holds more than `max_prefixes`; if a
//! flood of distinct prefixes still overfills it, the table starts again empty.

pub use crate::config::RrlConfig;
use std::cell::Cell;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated: header and question, TC set.
    Slip,
    Drop,
}

/// What a response counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An answer or a referral: `rate`.
    Answer,
    /// NXDOMAIN, NODATA (compact denial's included) and errors: `errors_rate`.
    Error,
}

impl Class {
    /// A response's class from its rcode, whether it is authoritative and its answer count.
    pub fn of(rcode: u8, authoritative: bool, answers: usize) -> Self {
        if rcode != 0 || (authoritative && answers == 0) {
            Class::Error
        } else {
            Class::Answer
        }
    }

    /// A response's class from its wire form.
    pub fn of_wire(response: &[u8]) -> Self {
        let rcode = response.get(3).map_or(0, |b| b & 0x0f);
        let aa = response.get(2).is_some_and(|b| b & 0x04 != 0);
        let an = response
            .get(6..8)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        Self::of(rcode, aa, usize::from(an))
    }
}

thread_local! {
    /// The verdict [`Rrl::judge_before_signing`] gave the answer this thread is making, for
    /// the UDP loop to apply ([`take_judged`]) instead of judging the response again.
    static JUDGED: Cell<Option<Verdict>> = const { Cell::new(None) };
    /// Limited responses judged before signing on this thread, to pick every `slip`-th.
    static SLIPS: Cell<u32> = const { Cell::new(0) };
}

/// The verdict given on this thread before signing the last answer, if any (and forgets it).
pub fn take_judged() -> Option<Verdict> {
    JUDGED.with(|j| j.take())
}

type Buckets = Option<ArcSwap<DefaultKeyedRateLimiter<u128>>>;

pub struct Rrl {
    cfg: RrlConfig,
    answers: Buckets,
    errors: Buckets,
    /// Answers signed per query, per prefix.
    signatures: Buckets,
    started: Instant,
    /// Milliseconds since `started` of the last clean-up.
    cleaned: AtomicU64,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl").field("cfg", &self.cfg).finish()
    }
}

fn buckets(rate: u32) -> Buckets {
    // A bucket holds one second of responses.
    NonZeroU32::new(rate).map(|r| ArcSwap::from_pointee(RateLimiter::dashmap(Quota::per_second(r))))
}

impl Rrl {
    /// None when nothing is limited.
    pub fn new(cfg: &RrlConfig) -> Option<Self> {
        if cfg.rate == 0 && cfg.errors_rate == 0 && cfg.signatures_rate == 0 {
            return None;
        }
        Some(Self {
            answers: buckets(cfg.rate),
            errors: buckets(cfg.errors_rate),
            signatures: buckets(cfg.signatures_rate),
            cfg: cfg.clone(),
            started: Instant::now(),
            cleaned: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &RrlConfig {
        &self.cfg
    }

    /// The client's prefix as a key (IPv4 as IPv4-mapped IPv6).
    fn key(&self, client: IpAddr) -> u128 {
        let (bits, len) = match client.to_canonical() {
            IpAddr::V4(a) => (
                u128::from(a.to_ipv6_mapped()),
                96 + u32::from(self.cfg.ipv4_prefix),
            ),
            IpAddr::V6(a) => (u128::from(a), u32::from(self.cfg.ipv6_prefix)),
        };
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len.min(128))
        };
        bits & mask
    }

    /// Judges `response` (wire format) to `client`; `slips` counts limited responses of the
    /// calling thread, to pick every `slip`-th.
    pub fn judge(&self, client: IpAddr, response: &[u8], slips: &mut u32) -> Verdict {
        self.judge_class(client, Class::of_wire(response), slips)
    }

    /// Judges an answer of `class`, not yet signed, to `client` (over UDP), and keeps the
    /// verdict for [`take_judged`]: an answer that may be sent but is over the prefix's budget
    /// of signed answers is slipped (sent truncated, unsigned) whatever `slip` says.
    pub fn judge_before_signing(&self, client: IpAddr, class: Class) -> Verdict {
        let mut v = SLIPS.with(|s| {
            let mut n = s.get();
            let v = self.judge_class(client, class, &mut n);
            s.set(n);
            v
        });
        if v == Verdict::Send && !self.may_sign(client) {
            metrics::counter!(crate::base::metrics::RRL, "action" => "unsigned_slip").increment(1);
            v = Verdict::Slip;
        }
        JUDGED.with(|j| j.set(Some(v)));
        v
    }

    /// Whether `client`'s prefix is within its budget of answers signed per query (and
    /// takes one from it).
    fn may_sign(&self, client: IpAddr) -> bool {
        let Some(b) = &self.signatures else {
            return true;
        };
        self.exempt(client) || b.load().check_key(&self.key(client)).is_ok()
    }

    fn exempt(&self, client: IpAddr) -> bool {
        let c = client.to_canonical();
        self.cfg.exempt.iter().any(|n| n.contains(&c))
    }

    /// Judges a response of `class` to `client`.
    pub fn judge_class(&self, client: IpAddr, class: Class, slips: &mut u32) -> Verdict {
        let buckets = match class {
            Class::Answer => &self.answers,
            Class::Error => &self.errors,
        };
        let Some(buckets) = buckets else {
            return Verdict::Send;
        };
        // Exempt clients take no bucket.
        if self.exempt(client) || buckets.load().check_key(&self.key(client)).is_ok() {
            return Verdict::Send;
        }
        *slips = slips.wrapping_add(1);
        if self.cfg.slip > 0 && slips.is_multiple_of(self.cfg.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// At most once a second (whichever thread calls first): forgets prefixes whose bucket is
    /// full again when the table is over `max_prefixes`, and empties it if that is not enough.
    pub fn upkeep(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.cleaned.load(Ordering::Relaxed);
        if now < last + 1000
            || self
                .cleaned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for (b, rate) in [
            (&self.answers, self.cfg.rate),
            (&self.errors, self.cfg.errors_rate),
            (&self.signatures, self.cfg.signatures_rate),
        ] {
            let (Some(b), Some(rate)) = (b, NonZeroU32::new(rate)) else {
                continue;
            };
            let l = b.load();
            if l.len() > self.cfg.max_prefixes {
                l.retain_recent();
                if l.len() > self.cfg.max_prefixes {
                    tracing::warn!(
                        prefixes = l.len(),
                        "response rate limiting: too many client prefixes; starting again"
                    );
                    metrics::counter!(crate::base::metrics::RRL, "action" => "reset").increment(1);
                    b.store(std::sync::Arc::new(RateLimiter::dashmap(
                        Quota::per_second(rate),
                    )));
                }
            }
        }
    }
}

/// Cuts a response down to its header and question and sets TC (a slipped response).
/// Returns false if the response has no well-formed question to keep.
pub fn truncate(out: &mut Vec<u8>) -> bool {
    if out.len() < 12 {
        return false;
    }
    let qd = u16::from_be_bytes([out[4], out[5]]);
    let mut end = 12;
    if qd == 1 {
        loop {
            let Some(&len) = out.get(end) else {
                return false;
            };
            if len & 0xc0 != 0 {
                return false;
            }
            end += 1 + len as usize;
            if len == 0 {
                break;
            }
        }
        end += 4;
        if end > out.len() {
            return false;
        }
    } else if qd != 0 {
        return false;
    }
    out.truncate(end);
    out[2] |= 0x02;
    out[6..12].fill(0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrl(rate: u32, slip: u32, exempt: &[&str]) -> Rrl {
        Rrl::new(&RrlConfig {
            rate,
            errors_rate: 1,
            slip,
            exempt: exempt.iter().map(|e| e.parse().unwrap()).collect(),
            ..RrlConfig::default()
        })
        .unwrap()
    }

    /// Headers: an answer (one record), NXDOMAIN, and NODATA (no record, authoritative).
    const NOERROR: [u8; 8] = [0, 1, 0x84, 0, 0, 1, 0, 1];
    const NXDOMAIN: [u8; 8] = [0, 1, 0x84, 3, 0, 1, 0, 0];
    const NODATA: [u8; 8] = [0, 1, 0x84, 0, 0, 1, 0, 0];
    const REFERRAL: [u8; 8] = [0, 1, 0x80, 0, 0, 1, 0, 0];

    #[test]
    fn nodata_and_compact_denial_count_as_errors_and_referrals_as_answers() {
        assert_eq!(Class::of_wire(&NOERROR), Class::Answer);
        assert_eq!(Class::of_wire(&NXDOMAIN), Class::Error);
        assert_eq!(Class::of_wire(&NODATA), Class::Error);
        assert_eq!(Class::of_wire(&REFERRAL), Class::Answer);
    }

    #[test]
    fn answers_judged_before_signing_are_slipped_beyond_the_prefixs_signing_budget() {
        let r = Rrl::new(&RrlConfig {
            rate: 100,
            errors_rate: 100,
            signatures_rate: 3,
            exempt: Vec::new(),
            ..RrlConfig::default()
        })
        .unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let v: Vec<Verdict> = (0..5)
            .map(|_| r.judge_before_signing(a, Class::Error))
            .collect();
        assert_eq!(v[..3], [Verdict::Send; 3]);
        assert_eq!(v[3..], [Verdict::Slip; 2], "over the budget: truncated");
        assert_eq!(take_judged(), Some(Verdict::Slip));
        assert_eq!(take_judged(), None, "taken once");
        assert_eq!(r.judge_before_signing(other, Class::Error), Verdict::Send);
    }

    #[test]
    fn a_prefix_gets_its_rate_then_slips_every_nth() {
        let r = rrl(5, 2, &[]);
        let mut slips = 0;
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "192.0.3.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(r.judge(a, &NOERROR, &mut slips), Verdict::Send);
        }
        // The /24 shares one bucket; another /24 has its own.
        let v: Vec<Verdict> = (0..4)
            .map(|_| r.judge(same, &NOERROR, &mut slips))
            .collect();
        assert_eq!(
            v,
            [Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        assert_eq!(r.judge(other, &NOERROR, &mut slips), Verdict::Send);
        // Errors have their own, smaller bucket.
        assert_eq!(r.judge(other, &NXDOMAIN, &mut slips), Verdict::Send);
        assert_ne!(r.judge(other, &NXDOMAIN, &mut slips), Verdict::Send);
    }

    #[test]
    fn exempt_clients_and_ipv6_prefixes() {
        let r = rrl(1, 0, &["192.0.2.7/32"]);
        let mut slips = 0;
        let ex: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(r.judge(ex, &NOERROR, &mut slips), Verdict::Send);
        }
        let a: IpAddr = "2001:db8:0:ff::1".parse().unwrap();
        let same56: IpAddr = "2001:db8:0:aa::2".parse().unwrap();
        assert_eq!(r.judge(a, &NOERROR, &mut slips), Verdict::Send);
        assert_eq!(
            r.judge(same56, &NOERROR, &mut slips),
            Verdict::Drop,
            "slip 0 drops all"
        );
    }

    #[test]
    fn a_slipped_response_is_header_and_question_with_tc() {
        let mut m = hickory_proto::op::Message::query();
        m.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("www.example.test.").unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            hickory_proto::rr::Name::from_ascii("www.example.test.").unwrap(),
            60,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 80].into())),
        ));
        let mut wire = m.to_vec().unwrap();
        let full = wire.len();
        assert!(truncate(&mut wire));
        assert!(wire.len() < full);
        let t = hickory_proto::op::Message::from_vec(&wire).unwrap();
        assert!(t.metadata.truncation);
        assert!(t.answers.is_empty());
        assert_eq!(t.queries, m.queries);
        assert!(!truncate(&mut vec![0; 5]));
    }
}
