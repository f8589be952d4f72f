//! The DNS wire protocol around [`crate::dns::lookup`]: one query's bytes in, one response's bytes
//! out. Shared by UDP and TCP; transport rules (UDP size, truncation) are decided here too.
//!
//! It never panics and never propagates an error: a message that cannot be parsed gets
//! FORMERR (or nothing, when not even the header is there or it is itself a response).
//!
//! - Opcodes other than QUERY: NOTIMP (RFC 1035 section 4.1.1).
//! - QDCOUNT other than 1: FORMERR.
//! - EDNS (RFC 6891): an OPT in the query gets one in the response, with our payload size and
//!   the DO bit copied (RFC 3225); a version above 0 gets BADVERS; unknown options are ignored.
//! - Classes other than IN: REFUSED.
//! - A name in none of our zones: REFUSED with Extended DNS Error 20, Not Authoritative
//!   (RFC 8914), as Knot DNS and NSD answer.
//! - UDP: the response fits in 512 bytes, or the client's EDNS size capped at ours; if the
//!   additional section does not fit it is dropped (unless it holds a referral's glue); if the
//!   answer does not fit, TC is set and every section emptied, so the client retries over TCP.
//! - Zone transfers: over UDP NOTIMP; over TCP only for configured clients, else REFUSED.

pub mod dnssec;
pub mod listen;
pub mod lookup;
pub mod notify;
pub mod prepared;
pub mod resolvers;
pub mod rrl;
pub mod secondaries;
pub mod snapshot;
pub mod tcp;
pub mod transfer;
mod tsig;
pub mod udp;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use crate::config::WireSettings;
use crate::dns::prepared::AnswerCache;
use crate::dns::snapshot::Snapshot;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::dns::lookup::{lookup_for, Answer};
use crate::steer::topology::{parse_ecs, Client};

pub use crate::config::MIN_UDP_PAYLOAD;

/// Extended DNS Error option code (RFC 8914).
pub(crate) const EDE_OPTION: u16 = 15;
/// EDNS Client Subnet option code (RFC 7871).
const ECS_OPTION: u16 = 8;
/// Extended DNS Error 20: Not Authoritative.
pub(crate) const EDE_NOT_AUTHORITATIVE: u16 = 20;

/// What the query path reads, published as one unit: the snapshot and, built beside it, its
/// prepared answers.
#[derive(Debug, Default)]
pub struct Publication {
    pub snap: Snapshot,
    /// Every answer of `snap`, prepared for the fast path.
    pub answers: AnswerCache,
}

impl Publication {
    /// `snap` with every answer prepared.
    pub fn new(snap: Snapshot) -> Self {
        let answers = AnswerCache::build(&snap);
        Self { snap, answers }
    }
}

impl std::ops::Deref for Publication {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snap
    }
}

/// The one publication point: the engine stores, the query path loads.
pub type Published = Arc<ArcSwap<Publication>>;

/// How the query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What a query produced, for the server loop and for counting.
#[derive(Debug)]
pub enum Outcome {
    /// Send nothing (not a query, or too short to answer).
    Drop,
    /// One response message.
    Reply(Vec<u8>),
    /// A zone transfer, TCP only: its messages are made as they are sent.
    Transfer(Box<transfer::Stream>),
}

/// Answers one query: by its prepared answer when there is one, else by [`handle`]. The
/// response goes to `out` (cleared first); a transfer's messages are returned instead.
pub fn answer(
    p: &Publication,
    query: &[u8],
    client: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Answered {
    let client = client.to_canonical();
    let tcp = transport == Transport::Tcp;
    if p.answers
        .answer(query, client, p.wire.udp_payload, tcp, out)
    {
        return Answered::One;
    }
    match handle(p, query, client, transport) {
        Outcome::Drop => Answered::Nothing,
        Outcome::Reply(bytes) => {
            out.clear();
            out.extend_from_slice(&bytes);
            Answered::One
        }
        Outcome::Transfer(t) => Answered::Transfer(t),
    }
}

/// What [`answer`] produced.
#[derive(Debug)]
pub enum Answered {
    /// Nothing to send.
    Nothing,
    /// One response, in the caller's buffer.
    One,
    /// A zone transfer (TCP only), to be sent message by message.
    Transfer(Box<transfer::Stream>),
}

/// The general path: handles one query message with the snapshot's settings.
pub fn handle(snap: &Snapshot, query: &[u8], client: IpAddr, transport: Transport) -> Outcome {
    let settings: &WireSettings = &snap.wire;
    let mut decoder = BinDecoder::new(query);
    let Ok(header) = hickory_proto::op::Header::read(&mut decoder) else {
        return Outcome::Drop;
    };
    if header.metadata.message_type == MessageType::Response {
        return Outcome::Drop;
    }
    // A client reached over an IPv6 socket by a v4-mapped address is judged as the IPv4
    // client it is (allow_transfer, topology).
    let client = client.to_canonical();
    let mut meta = Metadata::response_from_request(&header.metadata);
    // Knot DNS and NSD leave CD clear in their responses; so do we (we do no validation).
    meta.checking_disabled = false;
    let msg = match Message::from_vec(query) {
        Ok(m) if m.queries.len() == 1 || m.op_code != OpCode::Query => m,
        parsed => return formerr(parsed.ok(), meta, settings),
    };
    let mut resp = Message::new(meta.id, MessageType::Response, meta.op_code);
    // Only a single question is echoed: a message of another opcode may carry any number,
    // and echoing them all could exceed the client's UDP size (NSD answers such a message
    // with a bare header too).
    if msg.queries.len() == 1 {
        resp.queries = msg.queries.clone();
    }
    let signing = match tsig::check(&settings.transfer, query, &msg, &resp, meta) {
        tsig::Checked::Unsigned => None,
        tsig::Checked::Signed(s) => Some(s),
        tsig::Checked::Rejected(out) => return out,
    };
    let key = signing.as_ref().map(|s| &s.key);
    let out = respond(snap, query, &msg, resp, meta, client, transport, key);
    let Some(s) = &signing else { return out };
    let limit = match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => crate::config::udp_limit(
            msg.edns.as_ref().map(|e| e.max_payload()),
            settings.udp_payload,
        ),
    };
    tsig::sign_within(out, s, limit)
}

/// The response to the readable query `msg` (its signature, if any, checked: `key`).
#[allow(clippy::too_many_arguments)]
fn respond(
    snap: &Snapshot,
    query: &[u8],
    msg: &Message,
    mut resp: Message,
    mut meta: Metadata,
    client: IpAddr,
    transport: Transport,
    key: Option<&hickory_proto::rr::LowerName>,
) -> Outcome {
    let settings: &WireSettings = &snap.wire;
    let client_payload = msg.edns.as_ref().map(|e| e.max_payload());
    if let Some(qedns) = &msg.edns {
        resp.edns = Some(our_edns(settings, qedns));
        if qedns.version() > 0 {
            meta.response_code = ResponseCode::BADVERS;
            return reply(resp, meta);
        }
    }
    // RFC 7871: a client subnet option, checked (malformed: FORMERR), is echoed with the
    // scope of the answer; the client is then that subnet rather than the source address.
    // It is read from the wire, as the fast path reads it: section 6 makes an address longer
    // than its SOURCE PREFIX-LENGTH needs a FORMERR, and the parsed option no longer shows it.
    let ecs = match msg.edns.as_ref().map(|_| raw_ecs(query)) {
        Some(Some(data)) => match parse_ecs(data) {
            Some(c) => Some(c),
            None => {
                meta.response_code = ResponseCode::FormErr;
                return reply(resp, meta);
            }
        },
        _ => None,
    };
    if msg.op_code != OpCode::Query {
        meta.response_code = ResponseCode::NotImp;
        return reply(resp, meta);
    }
    let q: &Query = &msg.queries[0];
    // QCLASS ANY (RFC 1035 section 3.2.5) is answered with the IN data, as Knot and NSD do.
    if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
        meta.response_code = ResponseCode::Refused;
        return reply(resp, meta);
    }
    match q.query_type() {
        RecordType::AXFR | RecordType::IXFR => {
            return transfer::transfer(snap, msg, resp, meta, client, transport, key);
        }
        // QTYPE 0 is reserved (RFC 6895 section 3.1): NOTIMP, as Knot answers. OPT is a
        // pseudo-type no name holds: NODATA, by the lookup below, as Knot answers.
        RecordType::ZERO => {
            meta.response_code = ResponseCode::NotImp;
            return reply(resp, meta);
        }
        _ => {}
    }
    let limit = match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => crate::config::udp_limit(client_payload, settings.udp_payload),
    };
    // Over UDP, rate limiting judges an answer signed per query before it is signed.
    let gate = match transport {
        Transport::Udp => snap.rrl.as_deref().map(|r| (r, client)),
        Transport::Tcp => None,
    };
    let client = ecs.unwrap_or_else(|| Client::from_source(client));
    let out = lookup_and_encode(snap, resp, meta, q, (client, ecs), limit, gate);
    if out.replayable && key.is_none() && snap.id != 0 {
        dnssec::keep(snap.id, query, limit, &out.bytes);
    }
    Outcome::Reply(out.bytes)
}

/// FORMERR for a message that is not one readable question (`parsed`: the message, if it
/// could be read at all).
fn formerr(parsed: Option<Message>, mut meta: Metadata, settings: &WireSettings) -> Outcome {
    meta.response_code = ResponseCode::FormErr;
    let mut resp = Message::new(meta.id, MessageType::Response, meta.op_code);
    if let Some(m) = parsed {
        // Several questions: RD is not echoed, as NSD answers (Knot drops these).
        if m.queries.len() > 1 {
            meta.recursion_desired = false;
        }
        // RFC 6891 section 6.1.1: a query with a valid OPT gets one in the response, FORMERR
        // included.
        if let Some(qedns) = &m.edns {
            resp.edns = Some(our_edns(settings, qedns));
        }
    }
    reply(resp, meta)
}

/// The answer to question `q` for `client`, with the client subnet option echoed with its
/// scope when one was sent, encoded within `limit`.
/// `gate`: the rate limiter and the source address, for an answer over UDP.
fn lookup_and_encode(
    snap: &Snapshot,
    mut resp: Message,
    meta: Metadata,
    q: &Query,
    (client, ecs): (Client, Option<Client>),
    limit: usize,
    gate: Option<(&rrl::Rrl, IpAddr)>,
) -> Encoded {
    let (mut ans, scope) = lookup_for(snap, q.name(), q.query_type(), client);
    let mut replayable = false;
    if resp.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok) {
        let nx = ans.rcode == ResponseCode::NXDomain;
        let (s, zone_signed) = signed(snap, q.name(), q.query_type(), ans, gate);
        ans = s;
        replayable = zone_signed && scope == 0 && !from_pools(snap, &ans);
        // RFC 9824 section 4: a querier that sets Compact Answers OK gets NXDOMAIN for a
        // missing name (with the same NSEC), and CO back; elsewhere CO is not echoed.
        if let Some(e) = resp.edns.as_mut() {
            let co = e.flags().z & CO_FLAG != 0;
            e.flags_mut().z &= !CO_FLAG;
            if co && zone_signed {
                e.flags_mut().z |= CO_FLAG;
                if nx {
                    ans.rcode = ResponseCode::NXDomain;
                }
            }
        }
    }
    if let (Some(c), Some(edns)) = (ecs, resp.edns.as_mut()) {
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                c.addr, c.source, scope,
            )));
    }
    Encoded {
        bytes: encode_answer(resp, meta, ans, limit),
        replayable,
    }
}

/// An encoded answer, and whether the same query bytes always get it in this publication
/// (a signed answer without pool-bound records: see [`dnssec::keep`]).
struct Encoded {
    bytes: Vec<u8>,
    replayable: bool,
}

/// Whether `ans` holds records of a pool-bound name (chosen per query or per client).
fn from_pools(snap: &Snapshot, ans: &Answer) -> bool {
    ans.answer.iter().chain(&ans.additional).any(|r| {
        snap.bound
            .contains_key(&hickory_proto::rr::LowerName::new(&r.name))
    })
}

/// `ans` signed, if its zone is (for a query with the DO bit), and whether it was. With a
/// `gate`, rate limiting judges it first: a response it limits is not signed (the UDP loop
/// truncates or drops it).
fn signed(
    snap: &Snapshot,
    qname: &hickory_proto::rr::Name,
    qtype: RecordType,
    ans: Answer,
    gate: Option<(&rrl::Rrl, IpAddr)>,
) -> (Answer, bool) {
    let lname = hickory_proto::rr::LowerName::new(qname);
    let zone = snap
        .zones
        .index_for(&lname, qtype)
        .and_then(|zi| snap.zones.get(zi))
        .filter(|z| z.keys.is_some());
    let Some(zone) = zone else {
        return (ans, false);
    };
    if let Some((rrl, source)) = gate {
        let class = rrl::Class::of(ans.rcode.low(), ans.aa, ans.answer.len());
        if rrl.judge_before_signing(source, class) != rrl::Verdict::Send {
            return (ans, false);
        }
    }
    let exp = std::cell::Cell::new(u32::MAX);
    let store = dnssec::Store::Query;
    (
        dnssec::sign(snap, zone, qname, qtype, ans, &store, &exp),
        true,
    )
}

/// Puts `ans` into `resp` and encodes it within `limit` bytes, truncating as described above.
pub fn encode_answer(mut resp: Message, mut meta: Metadata, ans: Answer, limit: usize) -> Vec<u8> {
    meta.response_code = ans.rcode;
    meta.authoritative = ans.aa;
    if ans.rcode == ResponseCode::Refused {
        if let Some(edns) = resp.edns.as_mut() {
            let info = EDE_NOT_AUTHORITATIVE.to_be_bytes().to_vec();
            edns.options_mut()
                .insert(EdnsOption::Unknown(EDE_OPTION, info));
        }
    }
    let referral = !ans.aa && !ans.authority.is_empty();
    resp.metadata = meta;
    resp.answers = ans.answer;
    resp.authorities = ans.authority;
    resp.additionals = ans.additional;
    let full = to_bytes(&resp);
    if full.len() <= limit {
        return full;
    }
    if !referral && !resp.additionals.is_empty() {
        resp.additionals.clear();
        let without = to_bytes(&resp);
        if without.len() <= limit {
            return without;
        }
    }
    resp.answers.clear();
    resp.authorities.clear();
    resp.additionals.clear();
    resp.metadata.truncation = true;
    to_bytes(&resp)
}

/// The Compact Answers OK flag among the EDNS flags after DO (RFC 9824 section 4: bit 1).
const CO_FLAG: u16 = 0x4000;

/// The OPT of a response to a query with `qedns`: our payload size and the DO bit copied
/// (RFC 3225), and with DO the CO flag, for the answer to decide on (see
/// `lookup_and_encode`).
fn our_edns(settings: &WireSettings, qedns: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(settings.udp_payload.max(MIN_UDP_PAYLOAD));
    edns.set_dnssec_ok(qedns.flags().dnssec_ok);
    if qedns.flags().dnssec_ok {
        edns.flags_mut().z = qedns.flags().z & CO_FLAG;
    }
    edns
}

/// The data of the first client subnet option (code 8) in the OPT record of `query`, as sent.
fn raw_ecs(query: &[u8]) -> Option<&[u8]> {
    let mut d = BinDecoder::new(query);
    let header = hickory_proto::op::Header::read(&mut d).ok()?;
    for _ in 0..header.counts.queries {
        Query::read(&mut d).ok()?;
    }
    let counts = &header.counts;
    let records =
        u32::from(counts.answers) + u32::from(counts.authorities) + u32::from(counts.additionals);
    for _ in 0..records {
        let start = d.index();
        let r = hickory_proto::rr::Record::read(&mut d).ok()?;
        if r.record_type() != RecordType::OPT {
            continue;
        }
        // An OPT's owner is the root (one byte), then type, class, TTL and RDLENGTH.
        let mut options = query.get(start + 11..d.index())?;
        while options.len() >= 4 {
            let code = u16::from_be_bytes([options[0], options[1]]);
            let len = u16::from_be_bytes([options[2], options[3]]) as usize;
            let data = options.get(4..4 + len)?;
            if code == ECS_OPTION {
                return Some(data);
            }
            options = &options[4 + len..];
        }
        return None;
    }
    None
}

pub(crate) fn reply(mut resp: Message, meta: Metadata) -> Outcome {
    resp.metadata = meta;
    Outcome::Reply(to_bytes(&resp))
}

/// Encodes a response; a message that cannot be encoded becomes SERVFAIL with its question.
pub(crate) fn to_bytes(resp: &Message) -> Vec<u8> {
    match resp.to_vec() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a response; answering SERVFAIL");
            let mut fail = Message::new(resp.id, MessageType::Response, resp.op_code);
            fail.metadata.response_code = ResponseCode::ServFail;
            fail.queries = resp.queries.clone();
            // An empty response with one question always encodes.
            fail.to_vec().unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests;
