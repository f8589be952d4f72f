//! Online DNSSEC signing of answers (RFC 4033-4035) with compact denial of existence
//! (RFC 9824).
//!
//! [`sign`] turns the answer of [`crate::dns::lookup`] into the answer for a DO=1 query:
//! each authoritative RRset followed by its RRSIGs, and a negative answer proved by one NSEC
//! at the name itself. Answers are prepared when the engine publishes, so most signing
//! happens then, once per distinct RRset, and the query path copies the signed templates
//! ([`crate::dns::prepared`]). What depends on the query name (a name that does not exist, a
//! wildcard's synthesis) is signed per query, from a per-thread cache.
//!
//! - Compact denial (RFC 9824): a name that does not exist gets NOERROR with an NSEC at the
//!   name whose next name is `\000.name` and whose type bitmap is RRSIG, NSEC and NXNAME;
//!   a name without the type gets the same NSEC with the types the name has. One NSEC and
//!   one signature per negative answer, no chain to walk, and the same shape for NXDOMAIN,
//!   NODATA, empty non-terminals and wildcards.
//! - Wildcard answers are signed as the name asked (RRSIG labels = the name's labels), so no
//!   proof of the name's absence is needed (RFC 9824 section 3.2).
//! - Referrals carry the DS set and its RRSIGs, or the NSEC at the cut proving there is no DS
//!   (bitmap NS, RRSIG, NSEC). Glue and the delegation's NS set are not signed.
//! - Signatures are valid for [`VALIDITY`] from [`BACKDATE`] before signing, and made again
//!   when less than [`REFRESH`] remains.

mod cache;
#[cfg(test)]
mod tests;

use std::cell::Cell;

use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC, RRSIG};
use hickory_proto::dnssec::{Verifier, TBS};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, SerialNumber};

use crate::dns::lookup::Answer;
use crate::dns::snapshot::Snapshot;
use crate::zone::keys::{Key, ZoneKeys};
use crate::zone::Zone;

pub use cache::{keep, replay, Store};

/// How long a signature is valid: 14 days.
pub const VALIDITY: u32 = 14 * 86_400;
/// A signature is made again when less than this remains of it: 7 days.
pub const REFRESH: u32 = 7 * 86_400;
/// Inception is this far in the past, for validators whose clocks are behind: 1 hour.
pub const BACKDATE: u32 = 3_600;
/// The NXNAME meta-type of RFC 9824: the name does not exist.
pub const NXNAME: RecordType = RecordType::Unknown(128);

/// The signed form of `ans`, the answer to `qname`/`qtype` in `zone` (unchanged if the zone
/// is not signed). `min_exp` is lowered to the earliest expiry of the signatures used.
pub fn sign(
    snap: &Snapshot,
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    mut ans: Answer,
    store: &Store,
    min_exp: &Cell<u32>,
) -> Answer {
    let Some(keys) = zone.keys.as_deref() else {
        return ans;
    };
    if matches!(ans.rcode, ResponseCode::ServFail | ResponseCode::Refused) {
        return ans;
    }
    let s = Signer {
        zone,
        keys,
        store,
        min_exp,
    };
    // The name the answer ends at: the question, or the last CNAME's target.
    let mut last = qname.clone();
    for r in &ans.answer {
        if let (RData::CNAME(t), true) = (&r.data, r.name.eq_case(&last) || r.name == last) {
            last = t.0.clone();
        }
    }
    let referral = !ans.aa
        && ans
            .authority
            .iter()
            .any(|r| r.record_type() == RecordType::NS);
    let answer = s.signed(std::mem::take(&mut ans.answer));
    let authority = if referral {
        let mut authority = std::mem::take(&mut ans.authority);
        if let Some(cut) = authority.first().map(|r| r.name.clone()) {
            s.no_ds_or_ds(snap, &cut, &mut authority);
        }
        authority
    } else {
        let negative = ans
            .authority
            .iter()
            .any(|r| r.record_type() == RecordType::SOA);
        let mut authority = s.signed(std::mem::take(&mut ans.authority));
        if ans.rcode == ResponseCode::NXDomain {
            ans.rcode = ResponseCode::NoError;
            s.nsec(&last, vec![NXNAME], &mut authority);
        } else if negative {
            let types = types_at(snap, zone, &last, qtype);
            s.nsec(&last, types, &mut authority);
        }
        authority
    };
    let additional = s.signed(std::mem::take(&mut ans.additional));
    Answer {
        answer,
        authority,
        additional,
        ..ans
    }
}

/// The RDATA of each signature of the zone's SOA with `serial`, in the order answers carry
/// them: prepared answers shared across publications get these patched in.
pub fn soa_sigs(
    zone: &Zone,
    keys: &ZoneKeys,
    serial: u32,
    store: &Store,
    min_exp: &Cell<u32>,
) -> Vec<Vec<u8>> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let s = Signer {
        zone,
        keys,
        store,
        min_exp,
    };
    let soa = crate::dns::snapshot::with_serial(&zone.soa, serial);
    s.rrsigs(std::slice::from_ref(&soa))
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            let mut enc = BinEncoder::new(&mut out);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            let _ = r.data.emit(&mut enc);
            out
        })
        .collect()
}

struct Signer<'a> {
    zone: &'a Zone,
    keys: &'a ZoneKeys,
    store: &'a Store<'a>,
    min_exp: &'a Cell<u32>,
}

impl Signer<'_> {
    /// `records` with each RRset the zone is authoritative for (not glue, not a
    /// delegation's NS set) followed by its signatures.
    fn signed(&self, records: Vec<Record>) -> Vec<Record> {
        let mut out = Vec::with_capacity(records.len() * 2);
        let mut i = 0;
        while i < records.len() {
            let (name, rtype) = (&records[i].name, records[i].record_type());
            let mut j = i + 1;
            while j < records.len() && records[j].record_type() == rtype && &records[j].name == name
            {
                j += 1;
            }
            let set = &records[i..j];
            out.extend_from_slice(set);
            let lname = LowerName::new(name);
            let authoritative = self.zone.origin.zone_of(&lname)
                && (rtype == RecordType::DS || self.zone.delegation_above(&lname).is_none());
            if authoritative && rtype != RecordType::RRSIG {
                out.extend(self.rrsigs(set));
            }
            i = j;
        }
        out
    }

    /// The signatures of one RRset (all records with the same owner and type).
    fn rrsigs(&self, set: &[Record]) -> Vec<Record> {
        let rtype = set[0].record_type();
        let orig_ttl = if rtype == RecordType::SOA {
            self.zone.soa.ttl // a negative answer's SOA has a lower TTL than the one signed
        } else {
            set[0].ttl
        };
        let (mut sigs, exp) = self.store.get_or_make(self.keys, set, orig_ttl, || {
            let path = match self.store {
                Store::Query => "query",
                Store::Build { .. } => "publication",
            };
            metrics::counter!(crate::base::metrics::SIGNATURES, "path" => path).increment(1);
            make(self.keys, &set[0].name, rtype, orig_ttl, set)
        });
        self.min_exp.set(self.min_exp.get().min(exp));
        for s in &mut sigs {
            s.ttl = set[0].ttl;
            s.name = set[0].name.clone();
        }
        sigs
    }

    /// Appends the compact-denial NSEC of `name` with `types` (RRSIG and NSEC added), signed.
    fn nsec(&self, name: &Name, mut types: Vec<RecordType>, out: &mut Vec<Record>) {
        types.extend([RecordType::RRSIG, RecordType::NSEC]);
        let next = name
            .prepend_label(&[0u8][..])
            .unwrap_or_else(|_| name.clone());
        let rr = Record::from_rdata(
            name.clone(),
            self.zone.negative_ttl,
            RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types))),
        );
        let sigs = self.rrsigs(std::slice::from_ref(&rr));
        out.push(rr);
        out.extend(sigs);
    }

    /// A referral's proof: the cut's DS set and signatures, or the NSEC showing it has none.
    fn no_ds_or_ds(&self, snap: &Snapshot, cut: &Name, out: &mut Vec<Record>) {
        let node = self.zone.nodes.get(&LowerName::new(cut));
        match node.and_then(|n| n.get(RecordType::DS)) {
            Some(ds) => {
                let ds = ds.records(cut);
                let sigs = self.rrsigs(&ds);
                out.extend(ds);
                out.extend(sigs);
            }
            None => {
                let types = types_at(snap, self.zone, cut, RecordType::DS);
                self.nsec(cut, types, out);
            }
        }
    }
}

/// The types `name` has in `zone` (a wildcard's, for a name it synthesizes), as an NSEC
/// that denies `qtype` lists them: without `qtype`, and at a delegation only NS and DS.
fn types_at(snap: &Snapshot, zone: &Zone, name: &Name, qtype: RecordType) -> Vec<RecordType> {
    let lname = LowerName::new(name);
    let node = zone.nodes.get(&lname).or_else(|| {
        let mut enc = lname.base_name();
        while !zone.nodes.contains_key(&enc) && enc != zone.origin {
            enc = enc.base_name();
        }
        let w = Name::from(enc).prepend_label("*").ok()?;
        zone.nodes.get(&LowerName::new(&w))
    });
    let Some(node) = node else { return Vec::new() };
    let cut = lname != zone.origin && node.get(RecordType::NS).is_some();
    let mut types: Vec<RecordType> = node
        .rrsets
        .iter()
        .map(|s| s.rtype)
        .filter(|t| !cut || matches!(t, RecordType::NS | RecordType::DS))
        .collect();
    if let Some(b) = snap.bound.get(&lname) {
        for (t, c) in b.choices() {
            if c.sets.iter().any(|s| !s.is_empty()) {
                types.push(t);
            }
        }
    }
    types.retain(|t| *t != qtype);
    types
}

/// The signatures of `set` (owned by `owner`, of type `rtype`) by each key that signs that
/// type, valid from [`BACKDATE`] ago for [`VALIDITY`]; and when they expire.
fn make(
    keys: &ZoneKeys,
    owner: &Name,
    rtype: RecordType,
    orig_ttl: u32,
    set: &[Record],
) -> (Vec<Record>, u32) {
    let now = crate::base::state::now_secs() as u32;
    let inception = now.wrapping_sub(BACKDATE);
    let expiration = now.wrapping_add(VALIDITY);
    let signers: Vec<&Key> = if crate::zone::is_key_type(rtype) {
        keys.key_signers()
    } else {
        keys.zone_signers()
    };
    let mut out = Vec::with_capacity(signers.len());
    for k in signers {
        let input = SigInput {
            type_covered: rtype,
            algorithm: k.dnskey.algorithm(),
            num_labels: owner.num_labels(),
            original_ttl: orig_ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: k.tag,
            signer_name: keys.origin.clone(),
        };
        let signed = TBS::from_input(owner, DNSClass::IN, &input, set.iter())
            .map_err(|e| e.to_string())
            .and_then(|tbs| k.signer.sign(&tbs).map_err(|e| e.to_string()));
        match signed {
            Ok(sig) => out.push(Record::from_rdata(
                owner.clone(),
                orig_ttl,
                RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
            )),
            Err(e) => {
                tracing::error!(name = %owner, rtype = %rtype, key = k.tag, error = %e, "cannot sign")
            }
        }
    }
    (out, expiration)
}
