//! Encoding an answer as a template: owner names that are suffixes of the question become
//! pointers into it, patched per query.

use super::*;

/// Encodes `ans` as a template for questions named `qname` (exactly, or when `suffix_base` is
/// given, any name ending in it). Owner names equal to `qname` point at the question;
/// owner names sharing a suffix with `suffix_base` point into the question's tail.
pub(super) fn encode(
    ans: &Answer,
    qname: &Name,
    suffix_base: Option<&Name>,
    zones: &Zones,
) -> Template {
    let (mut qb, mut bb) = ([0; MAX_NAME], [0; MAX_NAME]);
    let q = crate::zone::wire_of(qname, &mut qb);
    let base = suffix_base.map(|b| crate::zone::wire_of(b, &mut bb));
    let mut t = Template {
        flags: (u16::from(ans.aa) << 10) | (u16::from(ans.rcode) & 0x0f),
        counts: [
            ans.answer.len() as u16,
            ans.authority.len() as u16,
            ans.additional.len() as u16,
        ],
        body: Vec::new(),
        fixups: Vec::new(),
        ede_not_auth: ans.rcode == ResponseCode::Refused,
        serial: None,
        soa_sigs: Vec::new(),
        for_do: ForDo::Same,
    };
    let mut seen = Seen::default();
    for r in ans
        .answer
        .iter()
        .chain(&ans.authority)
        .chain(&ans.additional)
    {
        let rdlen = encode_record(&mut t, r, q, base, &mut seen);
        if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data {
            if sig.input().type_covered == RecordType::SOA {
                t.soa_sigs.push((t.body.len() - rdlen) as u16);
            }
        }
        if r.record_type() == RecordType::SOA {
            // Uncompressed SOA RDATA ends with serial, refresh, retry, expire and minimum.
            let at = t.body.len() - 20;
            let zi = zones.index_of(&LowerName::new(&r.name));
            t.serial = zi.map(|zi| (at as u16, zi as u16));
        }
    }
    t
}

/// Names already in a template's body, for compression: each lowercase wire suffix and
/// where it starts in the body. The suffixes are slices of `names` (each name written, in
/// lowercase), at `(start, len)`.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) names: Vec<u8>,
    pub(super) tails: Vec<(u32, u16, u16)>,
}

impl Seen {
    /// Where in the body the suffix `tail` starts, if it is there.
    pub(super) fn find(&self, tail: &[u8]) -> Option<u16> {
        self.tails
            .iter()
            .find(|&&(at, len, _)| &self.names[at as usize..at as usize + len as usize] == tail)
            .map(|&(_, _, pos)| pos)
    }
}

/// The highest body offset a compression pointer may target: with the header and the
/// longest question before the body, it stays below 0x4000.
const MAX_POINTER_BODY: usize = 0x3fff - 12 - 255 - 4;

/// Appends `name` to `t`'s body, compressed: its longest tail that is the question name,
/// a tail of the shared suffix `base` (or of `qname`), or a name already in the body
/// becomes a pointer (RFC 1035 section 4.1.4). Case is kept in what is written; tails match
/// without it.
///
/// With an empty `qname` the name is written whole and only recorded as a target.
pub(super) fn put_name(
    t: &mut Template,
    name: &Name,
    qname: &[u8],
    base: Option<&[u8]>,
    seen: &mut Seen,
) {
    let mut lb = [0; MAX_NAME];
    let lower = crate::zone::wire_of(name, &mut lb);
    let (mut cased, mut n) = ([0u8; MAX_NAME], 0usize);
    for label in name.iter() {
        // A name fits 255 bytes in wire form (as `lower` does).
        cased[n] = label.len() as u8;
        cased[n + 1..n + 1 + label.len()].copy_from_slice(label);
        n += 1 + label.len();
    }
    let cased = &cased[..=n];
    let shared = base.unwrap_or(qname);
    let mut at = 0usize;
    let start = t.body.len();
    loop {
        let tail = &lower[at..];
        if tail.len() <= 1 || qname.is_empty() {
            t.body.extend_from_slice(cased);
            break;
        }
        let pointer = if tail == qname {
            Some(Fix::Question(0))
        } else if within(shared, tail) {
            Some(Fix::Question(tail.len() as u8))
        } else {
            seen.find(tail).map(Fix::Body)
        };
        if let Some(p) = pointer {
            t.body.extend_from_slice(&cased[..at]);
            t.fixups.push((t.body.len() as u16, p));
            t.body.extend_from_slice(&[0xc0, 0]);
            break;
        }
        at += 1 + lower[at] as usize;
    }
    // The labels written out become targets for later names.
    let from = seen.names.len() as u32;
    seen.names.extend_from_slice(lower);
    let mut i = 0usize;
    while i < lower.len() - 1 && start + i <= MAX_POINTER_BODY {
        let written = t.body.len() - start;
        if i >= written || t.body[start + i] >= 0xc0 {
            break;
        }
        if seen.find(&lower[i..]).is_none() {
            let len = (lower.len() - i) as u16;
            seen.tails.push((from + i as u32, len, (start + i) as u16));
        }
        i += 1 + lower[i] as usize;
    }
}

/// Appends `r` to `t`; returns the length of its RDATA. The names in the RDATA of the types
/// RFC 1035 defined (NS, CNAME, PTR, MX, SOA) are compressed, as RFC 3597 section 4 allows
/// and Knot does; an SRV target is written whole but later names may point at it (as Knot
/// does); every other RDATA is written as is.
pub(super) fn encode_record(
    t: &mut Template,
    r: &Record,
    qname: &[u8],
    base: Option<&[u8]>,
    seen: &mut Seen,
) -> usize {
    put_name(t, &r.name, qname, base, seen);
    t.body
        .extend_from_slice(&u16::from(r.record_type()).to_be_bytes());
    t.body
        .extend_from_slice(&u16::from(r.dns_class).to_be_bytes());
    t.body.extend_from_slice(&r.ttl.to_be_bytes());
    let len_at = t.body.len();
    t.body.extend_from_slice(&[0, 0]);
    match &r.data {
        RData::NS(n) => put_name(t, &n.0, qname, base, seen),
        RData::CNAME(n) => put_name(t, &n.0, qname, base, seen),
        RData::PTR(n) => put_name(t, &n.0, qname, base, seen),
        RData::MX(mx) => {
            t.body.extend_from_slice(&mx.preference.to_be_bytes());
            put_name(t, &mx.exchange, qname, base, seen);
        }
        RData::SRV(srv) => {
            // The target is never compressed (RFC 2782), but later names may point at it.
            for v in [srv.priority, srv.weight, srv.port] {
                t.body.extend_from_slice(&v.to_be_bytes());
            }
            put_name(t, &srv.target, &[], None, seen);
        }
        RData::SOA(soa) => {
            put_name(t, &soa.mname, qname, base, seen);
            put_name(t, &soa.rname, qname, base, seen);
            for v in [
                soa.serial,
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ] {
                t.body.extend_from_slice(&v.to_be_bytes());
            }
        }
        data => {
            let mut rdata = Vec::new();
            let mut enc = BinEncoder::new(&mut rdata);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            // Zone data was parsed from text and re-encodes; an error would be a hickory bug.
            if data.emit(&mut enc).is_err() {
                tracing::error!(name = %r.name, rtype = %r.record_type(), "cannot encode record data");
            }
            t.body.extend_from_slice(&rdata);
        }
    }
    let rdlen = t.body.len() - len_at - 2;
    t.body[len_at..len_at + 2].copy_from_slice(&(rdlen as u16).to_be_bytes());
    rdlen
}
