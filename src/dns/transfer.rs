//! Zone transfers (RFC 5936 AXFR, RFC 1995 IXFR) of the current publication: each zone's
//! file records and its bound names' live answers, under the serial of the publication's
//! version of the zone. Over TCP only (an IXFR over UDP gets the current SOA alone, which
//! sends the client to TCP, RFC 1995 section 2), to the clients and TSIG keys the zone
//! allows, in messages that each fit the TCP length prefix.
//!
//! IXFR answers from the version's journal: the differences from the client's serial on,
//! or the current SOA alone when the client is up to date, or the whole zone (AXFR-style)
//! when its serial is not in the journal.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::{Message, Metadata, ResponseCode};
use hickory_proto::rr::{LowerName, Record, RecordType};

use super::secondaries::TransferState;
use super::snapshot::{serial_gt, serial_of, with_serial, Snapshot};
use super::{reply, Outcome, Transport};
use crate::base::metrics::{TRANSFERS, TRANSFER_BYTES};
use crate::zone::Zone;

/// AXFR or IXFR of the zone named by the question of `msg`, for `client` whose request was
/// signed with `key` (if any).
pub(super) fn transfer(
    snap: &Snapshot,
    msg: &Message,
    resp: Message,
    mut meta: Metadata,
    client: IpAddr,
    transport: Transport,
    key: Option<&LowerName>,
) -> Outcome {
    let started = Instant::now();
    let q = &msg.queries[0];
    let ixfr = q.query_type() == RecordType::IXFR;
    if transport == Transport::Udp && !ixfr {
        meta.response_code = ResponseCode::NotImp;
        return reply(resp, meta);
    }
    let Some((zi, zone)) = allowed_zone(snap, &LowerName::new(q.name()), client, key) else {
        meta.response_code = ResponseCode::Refused;
        return reply(resp, meta);
    };
    meta.authoritative = true;
    let serial = snap.serial(zi).unwrap_or(0);
    let soa = with_serial(&zone.soa, serial);
    let served = Served {
        snap,
        zone,
        client,
        serial,
        started,
    };
    let mut kind = "AXFR";
    let mut body = Body::Whole;
    if ixfr {
        match incremental(snap, msg, zi, serial, transport) {
            Ixfr::FormErr => {
                meta.response_code = ResponseCode::FormErr;
                return reply(resp, meta);
            }
            Ixfr::Current => {
                let mut r = resp;
                r.answers.push(soa);
                let out = reply(r, meta);
                if let Outcome::Reply(b) = &out {
                    served.record("IXFR-current", std::slice::from_ref(b));
                }
                return out;
            }
            Ixfr::Differences(d) => (kind, body) = ("IXFR", Body::Differences(d)),
            Ixfr::Whole => kind = "IXFR-AXFR",
        }
    }
    let mut resp = resp;
    resp.metadata = meta;
    Outcome::Transfer(Box::new(Stream {
        kind,
        zi,
        serial,
        client,
        started,
        resp,
        body,
        signing: None,
    }))
}

/// One transfer being served, for counting and logging.
struct Served<'a> {
    snap: &'a Snapshot,
    zone: &'a Zone,
    client: IpAddr,
    serial: u32,
    started: Instant,
}

impl Served<'_> {
    /// Counts and logs a transfer of `messages`.
    fn record(&self, kind: &'static str, messages: &[Vec<u8>]) {
        let bytes = messages.iter().map(Vec::len).sum();
        self.record_sizes(kind, messages.len(), bytes);
    }

    /// Counts and logs a transfer of `count` messages, `bytes` in all.
    fn record_sizes(&self, kind: &'static str, count: usize, bytes: usize) {
        let origin = self.zone.origin.to_string();
        metrics::counter!(TRANSFERS, "zone" => origin.clone(), "kind" => kind).increment(1);
        metrics::counter!(TRANSFER_BYTES, "zone" => origin.clone()).increment(bytes as u64);
        let (client, serial) = (self.client, self.serial);
        tracing::info!(zone = %origin, client = %client, serial, kind, messages = count, bytes, "transfer served");
        self.snap.secondaries.transferred(
            &origin,
            client,
            TransferState {
                serial,
                kind,
                messages: count,
                bytes,
                duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                at: crate::base::state::now_secs(),
            },
        );
    }
}

/// The zone whose origin is `name`, with its position, if `client` (whose request was
/// signed with `key`, if any) may transfer it.
fn allowed_zone<'s>(
    snap: &'s Snapshot,
    name: &LowerName,
    client: IpAddr,
    key: Option<&LowerName>,
) -> Option<(usize, &'s Zone)> {
    let zi = snap.zones.index_of(name)?;
    let zone = snap.zones.get(zi).filter(|z| &z.origin == name)?;
    let w = &snap.wire;
    w.transfer
        .allows(&zone.origin, &w.allow_transfer, client, key)
        .then_some((zi, zone))
}

/// What an IXFR request gets.
enum Ixfr {
    /// No SOA in authority (RFC 1995 section 3: the query carries the client's).
    FormErr,
    /// The current SOA alone: the client is up to date, or asked over UDP.
    Current,
    /// The differences from the client's serial on (without the outer SOAs).
    Differences(Vec<Record>),
    /// The whole zone: the client's serial is not in the journal.
    Whole,
}

fn incremental(
    snap: &Snapshot,
    msg: &Message,
    zi: usize,
    serial: u32,
    transport: Transport,
) -> Ixfr {
    let Some(theirs) = client_serial(msg) else {
        return Ixfr::FormErr;
    };
    if transport == Transport::Udp || !serial_gt(serial, theirs) {
        return Ixfr::Current;
    }
    match differences(snap, zi, theirs) {
        Some(d) => Ixfr::Differences(d),
        None => Ixfr::Whole,
    }
}

/// The serial of the SOA of an IXFR request (RFC 1995 section 3): its authority section is
/// that one record, the zone's SOA, and its answer section is empty. Anything else is not
/// an IXFR request (FORMERR).
fn client_serial(msg: &Message) -> Option<u32> {
    let zone = LowerName::new(msg.queries.first()?.name());
    match (msg.answers.as_slice(), msg.authorities.as_slice()) {
        ([], [soa])
            if soa.record_type() == RecordType::SOA && LowerName::new(&soa.name) == zone =>
        {
            serial_of(soa)
        }
        _ => None,
    }
}

/// The IXFR body from serial `theirs` to the current version (without the leading and
/// trailing current SOA), if the journal reaches back to it: per difference, the old SOA,
/// the records removed, the new SOA, the records added.
fn differences(snap: &Snapshot, zi: usize, theirs: u32) -> Option<Vec<Record>> {
    let v = snap.versions.get(zi)?;
    let start = v.journal.iter().position(|d| d.from == theirs)?;
    let mut out = Vec::new();
    for d in &v.journal[start..] {
        out.push(d.from_soa.clone());
        out.extend(d.removed.iter().cloned());
        out.push(d.to_soa.clone());
        out.extend(d.added.iter().cloned());
    }
    Some(out)
}

/// The most a transfer message holds (RFC 1035 section 4.2.2: TCP messages carry a two-byte
/// length), less room for a TSIG record.
const MAX_TCP_MESSAGE: usize = u16::MAX as usize - 512;

mod stream;
use stream::Body;
pub use stream::Stream;

#[cfg(test)]
mod tests;
