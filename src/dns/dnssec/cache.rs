//! Where signatures are kept between uses, by the canonical form of the RRset they cover:
//! at publication, in the zone's keys ([`crate::zone::keys::ZoneKeys::cache`], shared by the
//! builds of one set of keys and pruned of what recent builds did not use); on the query
//! path, in a bounded per-thread cache (no lock).

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

thread_local! {
    static QUERY_CACHE: RefCell<HashMap<Vec<u8>, Cached>> = RefCell::new(HashMap::new());
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
        let now = crate::ops::state::now_secs() as u32;
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
