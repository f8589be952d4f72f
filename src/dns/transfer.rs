//! Zone transfers (AXFR; IXFR is answered with a full transfer, as RFC 1995 section 4
//! allows): over TCP only, to the clients in `allow_transfer`, in messages that each fit the
//! TCP length prefix.

use std::net::IpAddr;

use hickory_proto::op::{Message, Metadata, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncodable;

use super::snapshot::Snapshot;
use super::{reply, to_bytes, Outcome, Transport};

/// AXFR (and IXFR, answered with a full transfer as RFC 1995 section 4 allows).
pub(super) fn transfer(
    snap: &Snapshot,
    resp: Message,
    mut meta: Metadata,
    q: &Query,
    client: IpAddr,
    transport: Transport,
) -> Outcome {
    if transport == Transport::Udp {
        meta.response_code = ResponseCode::NotImp;
        return reply(resp, meta);
    }
    let lname = hickory_proto::rr::LowerName::new(q.name());
    let zone = snap.zones.find(&lname).filter(|z| z.origin == lname);
    let allowed = snap.wire.allow_transfer.iter().any(|n| n.contains(&client));
    let Some(zone) = zone.filter(|_| allowed) else {
        meta.response_code = ResponseCode::Refused;
        return reply(resp, meta);
    };
    meta.authoritative = true;
    let records = std::iter::once(&zone.soa)
        .chain(zone.all_records())
        .chain(std::iter::once(&zone.soa));
    Outcome::Transfer(transfer_messages(resp, meta, records))
}

/// The most a transfer message holds (RFC 1035 section 4.2.2: TCP messages carry a two-byte
/// length).
const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// Splits a transfer's records into messages of at most [`MAX_TCP_MESSAGE`] bytes, judged on
/// each record's encoded size without compression (which compression can only shrink), so
/// that no message is ever truncated. The question goes in the first message only.
fn transfer_messages<'r>(
    resp: Message,
    meta: Metadata,
    records: impl Iterator<Item = &'r Record>,
) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut cur = resp;
    cur.metadata = meta;
    let mut size = to_bytes(&cur).len();
    for r in records {
        let len = r.to_bytes().map_or(MAX_TCP_MESSAGE, |b| b.len());
        if size + len > MAX_TCP_MESSAGE && !cur.answers.is_empty() {
            messages.push(to_bytes(&cur));
            cur.answers.clear();
            cur.queries.clear();
            size = to_bytes(&cur).len();
        }
        size += len;
        cur.answers.push(r.clone());
    }
    messages.push(to_bytes(&cur));
    messages
}
