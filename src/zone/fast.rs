//! The common records' text, written straight into wire form: names made only of letters,
//! digits, hyphens and underscores, and A, AAAA, NS, CNAME, PTR, MX, TXT and SRV data in
//! their plain spellings. Each gives the bytes hickory-proto's parser and encoder give for the
//! same text (names lowercased, as its parser does); anything else (escapes, `@` in data,
//! other types, a token too many) returns `None`, and hickory reads it.
//!
//! hickory's parser is built for whole files: reading one record's data with it costs about
//! 4 µs (a new parser, a snippet of text, a record and its encoding), which is most of the
//! time a large zone takes to load.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::RecordType;

/// The longest wire-format name (RFC 1035 section 3.1).
const MAX_NAME: usize = 255;

/// Appends `text`, a name relative to `origin` (lowercase wire form) unless it ends in a dot,
/// to `out` in lowercase wire form.
pub(super) fn name(text: &str, origin: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    let (body, absolute) = match text.strip_suffix('.') {
        Some(b) => (b, true),
        None => (text, false),
    };
    if body.is_empty() {
        return None; // the root, or "..": for hickory
    }
    for label in body.split('.') {
        let b = label.as_bytes();
        let plain = !b.is_empty()
            && b.len() <= 63
            && if b == b"*" {
                true
            } else if b[0] == b'_' {
                // hickory keeps such a label as written: only lowercase ones are the same.
                b.iter().all(|&c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                })
            } else {
                b[0].is_ascii_alphanumeric()
                    && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                    && !label.contains("--") // IDNA's reserved hyphens (xn--)
            };
        if !plain {
            out.truncate(start);
            return None;
        }
        out.push(b.len() as u8);
        out.extend(b.iter().map(u8::to_ascii_lowercase));
    }
    if absolute {
        out.push(0);
    } else {
        out.extend_from_slice(origin);
    }
    if out.len() - start > MAX_NAME {
        out.truncate(start);
        return None;
    }
    Some(())
}

/// The record type spelled `text`, if it is one this module reads.
pub(super) fn rtype(text: &str) -> Option<RecordType> {
    const TYPES: [(&str, RecordType); 8] = [
        ("A", RecordType::A),
        ("AAAA", RecordType::AAAA),
        ("TXT", RecordType::TXT),
        ("MX", RecordType::MX),
        ("CNAME", RecordType::CNAME),
        ("NS", RecordType::NS),
        ("PTR", RecordType::PTR),
        ("SRV", RecordType::SRV),
    ];
    TYPES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(text))
        .map(|&(_, t)| t)
}

/// The RDATA of a record of type `rtype` written as `tokens`, in wire form.
pub(super) fn rdata(rtype: RecordType, tokens: &[&str], origin: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(16);
    match (rtype, tokens) {
        (RecordType::A, [a]) => out.extend_from_slice(&a.parse::<Ipv4Addr>().ok()?.octets()),
        (RecordType::AAAA, [a]) => out.extend_from_slice(&a.parse::<Ipv6Addr>().ok()?.octets()),
        (RecordType::NS | RecordType::CNAME | RecordType::PTR, [n]) => name(n, origin, &mut out)?,
        (RecordType::MX, [pref, n]) => {
            out.extend_from_slice(&pref.parse::<u16>().ok()?.to_be_bytes());
            name(n, origin, &mut out)?;
        }
        (RecordType::SRV, [prio, weight, port, n]) => {
            for v in [prio, weight, port] {
                out.extend_from_slice(&v.parse::<u16>().ok()?.to_be_bytes());
            }
            name(n, origin, &mut out)?;
        }
        (RecordType::TXT, strings) if !strings.is_empty() => {
            for s in strings {
                let s = match s.strip_prefix('"') {
                    Some(q) => q.strip_suffix('"')?,
                    None => s,
                };
                // Escapes, and bytes beyond ASCII, are for hickory.
                if s.len() > 255 || s.contains(['\\', '"']) || !s.is_ascii() {
                    return None;
                }
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
        }
        _ => return None,
    }
    Some(out)
}
