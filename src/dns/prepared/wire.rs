//! The prepared path's own reading of a query and writing of a response: only the plain
//! case (one IN question, at most an EDNS(0) OPT), everything else is left to the general
//! path.

use super::{Template, MAX_NAME};
use crate::steer::topology::{ecs_len, parse_ecs, write_ecs, Client};
use crate::zone::RrSet;

/// A query this path can answer, parsed.
pub(super) struct Parsed {
    pub(super) qname: [u8; MAX_NAME],
    pub(super) qlen: usize,
    pub(super) qtype: u16,
    /// Where the question ends in the query (after QTYPE and QCLASS).
    pub(super) question_end: usize,
    pub(super) edns: Option<Edns>,
}

pub(super) struct Edns {
    pub(super) payload: u16,
    pub(super) dnssec_ok: bool,
    /// The query's client subnet option, echoed with a scope in the response.
    pub(super) ecs: Option<Client>,
}

/// Parses a plain query: QUERY opcode, one IN question, no answer or authority records, at
/// most one additional record which is an EDNS(0) OPT.
pub(super) fn parse(q: &[u8]) -> Option<Parsed> {
    if q.len() < 12 || q[2] & 0xf8 != 0 {
        return None; // a response, or an opcode other than QUERY
    }
    if q[4..10] != [0, 1, 0, 0, 0, 0] || q[10] != 0 || q[11] > 1 {
        return None;
    }
    let mut p = Parsed {
        qname: [0; MAX_NAME],
        qlen: 0,
        qtype: 0,
        question_end: 0,
        edns: None,
    };
    let mut i = 12usize;
    loop {
        let len = *q.get(i)? as usize;
        if len > 63 || p.qlen + len + 1 > MAX_NAME {
            return None; // compression pointer or oversized: the general path decides
        }
        p.qname[p.qlen] = len as u8;
        if len == 0 {
            p.qlen += 1;
            i += 1;
            break;
        }
        let label = q.get(i + 1..i + 1 + len)?;
        for (d, s) in p.qname[p.qlen + 1..p.qlen + 1 + len].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        p.qlen += 1 + len;
        i += 1 + len;
    }
    let tc = q.get(i..i + 4)?;
    p.qtype = u16::from_be_bytes([tc[0], tc[1]]);
    if tc[2..4] != [0, 1] || matches!(p.qtype, 41 | 251 | 252 | 0) {
        return None; // class other than IN, or OPT/IXFR/AXFR/zero as the type
    }
    i += 4;
    p.question_end = i;
    if q[11] == 1 {
        // OPT: root owner, type 41, class = payload, TTL = ext-rcode, version, flags.
        let opt = q.get(i..i + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 {
            return None;
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        if i + 11 + rdlen != q.len() || opt[5] != 0 {
            return None;
        }
        // Options: only ECS matters here; a malformed one is for the general path (FORMERR).
        let mut ecs = None;
        let mut o = i + 11;
        while o < q.len() {
            let head = q.get(o..o + 4)?;
            let (code, len) = (
                u16::from_be_bytes([head[0], head[1]]),
                u16::from_be_bytes([head[2], head[3]]) as usize,
            );
            let data = q.get(o + 4..o + 4 + len)?;
            if code == 8 {
                if ecs.is_some() {
                    return None;
                }
                ecs = Some(parse_ecs(data)?);
            }
            o += 4 + len;
        }
        p.edns = Some(Edns {
            payload: u16::from_be_bytes([opt[3], opt[4]]),
            dnssec_ok: opt[7] & 0x80 != 0,
            ecs,
        });
    } else if i != q.len() {
        return None;
    }
    Some(p)
}

/// Writes the response to `query` from `tpl` into `out`.
pub(super) fn write(
    query: &[u8],
    p: &Parsed,
    tpl: &Template,
    scope: u8,
    udp_payload: u16,
    (serials, soa_sigs): (&[u32], &[Vec<Vec<u8>>]),
    out: &mut Vec<u8>,
) {
    head(query, p, tpl.flags, tpl.counts, out);
    let body_at = out.len();
    out.extend_from_slice(&tpl.body);
    // The zone's SOA carries the publication's serial (see `Template::serial`).
    if let Some((at, zi)) = tpl.serial {
        if let Some(serial) = serials.get(zi as usize) {
            let at = body_at + at as usize;
            out[at..at + 4].copy_from_slice(&serial.to_be_bytes());
        }
        // A signed answer's SOA signatures are those of the serial patched in.
        let sigs = soa_sigs.get(zi as usize).map_or(&[][..], Vec::as_slice);
        for (&at, sig) in tpl.soa_sigs.iter().zip(sigs) {
            let at = body_at + at as usize;
            if let Some(dst) = out.get_mut(at..at + sig.len()) {
                dst.copy_from_slice(sig);
            }
        }
    }
    for &(pos, fix) in &tpl.fixups {
        let start = match fix {
            super::Fix::Question(0) => 12,
            super::Fix::Question(suffix) => 12 + p.qlen - suffix as usize,
            super::Fix::Body(at) => body_at + at as usize,
        };
        let target = start as u16 | 0xc000;
        let at = body_at + pos as usize;
        out[at..at + 2].copy_from_slice(&target.to_be_bytes());
    }
    opt(p, tpl.ede_not_auth, scope, udp_payload, out);
}

/// Writes the answer to `query` that is `set` (`count` records) owned by the question name,
/// as the zone keeps it: AA, no other section.
pub(super) fn write_set(
    query: &[u8],
    p: &Parsed,
    set: &RrSet,
    count: u16,
    udp_payload: u16,
    out: &mut Vec<u8>,
) {
    head(query, p, 0x0400, [count, 0, 0], out);
    let fixed = {
        let mut f = [0u8; 10];
        // A pointer to the question name (offset 12), type, class IN, TTL.
        f[..2].copy_from_slice(&0xc00cu16.to_be_bytes());
        f[2..4].copy_from_slice(&u16::from(set.rtype).to_be_bytes());
        f[4..6].copy_from_slice(&1u16.to_be_bytes());
        f[6..].copy_from_slice(&set.ttl.to_be_bytes());
        f
    };
    for data in set.wire() {
        out.extend_from_slice(&fixed);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    opt(p, false, 0, udp_payload, out);
}

/// The header with `flags` (AA and rcode) and the section `counts`, and the question.
fn head(query: &[u8], p: &Parsed, flags: u16, counts: [u16; 3], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&query[..2]);
    // QR, opcode QUERY, AA and rcode as given, RD copied, RA/AD/CD clear.
    let flags = 0x8000 | flags | (u16::from(query[2] & 0x01) << 8);
    out.extend_from_slice(&flags.to_be_bytes());
    let ar = counts[2] + u16::from(p.edns.is_some());
    for c in [1, counts[0], counts[1], ar] {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&query[12..p.question_end]);
}

/// The OPT record, when the query had one: the client subnet echoed with `scope`, and Extended
/// DNS Error 20 with `ede_not_auth`.
fn opt(p: &Parsed, ede_not_auth: bool, scope: u8, udp_payload: u16, out: &mut Vec<u8>) {
    if let Some(e) = &p.edns {
        let flags: u16 = if e.dnssec_ok { 0x8000 } else { 0 };
        let rdlen = if ede_not_auth { 6 } else { 0 } + e.ecs.map_or(0, ecs_len) as u16;
        out.push(0);
        out.extend_from_slice(&41u16.to_be_bytes());
        out.extend_from_slice(&udp_payload.max(512).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&rdlen.to_be_bytes());
        if let Some(c) = e.ecs {
            write_ecs(out, c, scope);
        }
        if ede_not_auth {
            // Extended DNS Error: option code, length 2, info code.
            out.extend_from_slice(&crate::dns::EDE_OPTION.to_be_bytes());
            out.extend_from_slice(&2u16.to_be_bytes());
            out.extend_from_slice(&crate::dns::EDE_NOT_AUTHORITATIVE.to_be_bytes());
        }
    }
}
