//! Where signatures are kept between uses, by the canonical form of the RRset they cover:
//! at publication, in the zone's keys ([`crate::zone::keys::ZoneKeys::cache`], shared by the
//! builds of one set of keys and pruned of what recent builds did not use); on the query
//! path, in a bounded per-thread cache (no lock). Also per thread: the whole signed answers
//! the general path made for one publication, replayed for the same query bytes.

use std::cell::RefCell;
use std::collections::HashMap;

use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::{Algorithm, TBS};
use hickory_proto::rr::{DNSClass, Name, Record, SerialNumber};

use super::REFRESH;
use crate::zone::keys::{Cached, ZoneKeys};

/// Entries of the per-thread cache, at most; it is emptied when full.
const THREAD_ENTRIES: usize = 8_192;
/// Builds after which a signature no build used is dropped from the keys' cache.
const KEEP_BUILDS: u64 = 64;

/// Answers kept per thread for replay, at most; emptied when full.
const REPLAY_ENTRIES: usize = 4_096;

thread_local! {
    static QUERY_CACHE: RefCell<HashMap<Vec<u8>, Cached>> = RefCell::new(HashMap::new());
    static REPLAYS: RefCell<Replays> = RefCell::new(Replays::default());
}

/// Signed answers of one publication by the query's bytes after its ID: the answer to a
/// name signed per query name (a missing name, a wildcard) is the same for the same bytes,
/// so the general path's work (parse, look up, sign, encode) is done once per publication.
#[derive(Default)]
struct Replays {
    id: u64,
    map: HashMap<Box<[u8]>, Kept>,
}

/// A kept answer: the size limit it was made within, and its bytes.
type Kept = (usize, Box<[u8]>);

/// Writes into `out` the answer kept for `query` (within `limit` bytes) in publication `id`,
/// with the query's ID; false if none is kept.
pub fn replay(id: u64, query: &[u8], limit: usize, out: &mut Vec<u8>) -> bool {
    REPLAYS.with(|r| {
        let r = r.borrow();
        match r.map.get(&query[2..]) {
            Some((l, answer)) if r.id == id && *l == limit => {
                out.clear();
                out.extend_from_slice(&query[..2]);
                out.extend_from_slice(&answer[2..]);
                true
            }
            _ => false,
        }
    })
}

/// Keeps `answer`, the general path's signed answer to `query` within `limit` bytes in
/// publication `id`, for [`replay`]. Only for answers that depend on nothing but the query's
/// bytes (no pool-bound name, no client subnet scope, no TSIG).
pub fn keep(id: u64, query: &[u8], limit: usize, answer: &[u8]) {
    if query.len() < 12 || answer.len() < 12 {
        return;
    }
    REPLAYS.with(|r| {
        let mut r = r.borrow_mut();
        if r.id != id || r.map.len() >= REPLAY_ENTRIES {
            r.map.clear();
            r.id = id;
        }
        r.map.insert(
            query[2..].into(),
            (limit, answer.to_vec().into_boxed_slice()),
        );
    })
}

/// Which cache signing goes through.
#[derive(Debug, Clone, Copy)]
pub enum Store<'a> {
    /// A publication's build, numbered `stamp` among the builds of `keys`.
    Build { stamp: u64, keys: &'a ZoneKeys },
    /// The query path.
    Query,
}

impl Store<'_> {
    /// A build of answers signed by `keys`: its stamp.
    pub fn build(keys: &ZoneKeys) -> Store<'_> {
        let mut c = keys.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.builds += 1;
        Store::Build {
            stamp: c.builds,
            keys,
        }
    }

    /// Ends a build: signatures unused for [`KEEP_BUILDS`] builds are dropped.
    pub fn finish(&self) {
        if let Store::Build { stamp, keys } = self {
            let mut c = keys.cache.lock().unwrap_or_else(|p| p.into_inner());
            c.map.retain(|_, e| e.stamp + KEEP_BUILDS > *stamp);
        }
    }

    /// The signatures of `set` (made by `make` if none is kept, or if those kept are due
    /// for refresh), and when they expire.
    pub(super) fn get_or_make(
        &self,
        keys: &ZoneKeys,
        set: &[Record],
        orig_ttl: u32,
        make: impl FnOnce() -> (Vec<Record>, u32),
    ) -> (Vec<Record>, u32) {
        let Some(k) = key(keys, set, orig_ttl) else {
            return make();
        };
        let now = crate::base::state::now_secs() as u32;
        let fresh = |e: &Cached| e.expiration.wrapping_sub(now) as i32 > REFRESH as i32;
        match self {
            Store::Build { stamp, .. } => {
                let mut c = keys.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = c.map.get_mut(&k).filter(|e| fresh(e)) {
                    e.stamp = *stamp;
                    return (e.sigs.clone(), e.expiration);
                }
                let (sigs, expiration) = make();
                let e = Cached {
                    sigs: sigs.clone(),
                    expiration,
                    stamp: *stamp,
                };
                c.map.insert(k, e);
                (sigs, expiration)
            }
            Store::Query => QUERY_CACHE.with(|c| {
                let mut c = c.borrow_mut();
                if let Some(e) = c.get(&k).filter(|e| fresh(e)) {
                    return (e.sigs.clone(), e.expiration);
                }
                let (sigs, expiration) = make();
                if c.len() >= THREAD_ENTRIES {
                    c.clear();
                }
                let e = Cached {
                    sigs: sigs.clone(),
                    expiration,
                    stamp: 0,
                };
                c.insert(k, e);
                (sigs, expiration)
            }),
        }
    }
}

/// The cache key of `set`: the keys' id and the RRset in the canonical form it is signed in.
fn key(keys: &ZoneKeys, set: &[Record], orig_ttl: u32) -> Option<Vec<u8>> {
    let owner: &Name = &set[0].name;
    let input = SigInput {
        type_covered: set[0].record_type(),
        algorithm: Algorithm::ECDSAP256SHA256,
        num_labels: owner.num_labels(),
        original_ttl: orig_ttl,
        sig_expiration: SerialNumber::new(0),
        sig_inception: SerialNumber::new(0),
        key_tag: 0,
        signer_name: Name::root(),
    };
    let tbs = TBS::from_input(owner, DNSClass::IN, &input, set.iter()).ok()?;
    let mut k = keys.id.to_be_bytes().to_vec();
    k.extend_from_slice(tbs.as_ref());
    Some(k)
}
