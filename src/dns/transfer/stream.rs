//! A transfer as a stream of messages: each message is made (and signed, when the request
//! was) only when the connection is ready to send it, so a transfer holds one message in
//! memory, never the whole zone, however slowly the client reads.
//!
//! It reads the publication it is given and sends nothing itself: the TCP connection writes
//! each message, with backpressure, and bounds how long one may stall.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::{Message, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncodable;

use super::super::snapshot::{with_serial, Snapshot};
use super::super::to_bytes;
use super::super::tsig::{self, Signing};
use super::{Served, MAX_TCP_MESSAGE};

/// What a transfer sends after its first SOA, before its last one.
pub(in crate::dns) enum Body {
    /// The whole zone: its file records and its bound names' live answers.
    Whole,
    /// An IXFR's differences.
    Differences(Vec<Record>),
}

/// A transfer to be sent: what it is of, not its messages (see [`Stream::messages`]).
pub struct Stream {
    pub(super) kind: &'static str,
    pub(super) zi: usize,
    pub(super) serial: u32,
    pub(super) client: IpAddr,
    pub(super) started: Instant,
    /// The response with its header and question, no records yet.
    pub(super) resp: Message,
    pub(super) body: Body,
    /// The request's TSIG key, when it was signed: every message is signed.
    pub(in crate::dns) signing: Option<Signing>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Stream({} of zone {} at {})",
            self.kind, self.zi, self.serial
        )
    }
}

impl Stream {
    /// The client's name for the transfer, for logs and status.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The answer when the transfer cannot be served now (too many under way): REFUSED, as
    /// BIND and Knot answer beyond their transfer limits, signed when the request was.
    pub fn refused(&self) -> Vec<u8> {
        let mut r = self.resp.clone();
        r.answers.clear();
        let mut meta: Metadata = r.metadata;
        meta.response_code = ResponseCode::Refused;
        r.metadata = meta;
        let bytes = to_bytes(&r);
        match &self.signing {
            Some(s) => tsig::sign_one(bytes, s),
            None => bytes,
        }
    }

    /// The transfer's messages, made one at a time from `snap` (the publication the request
    /// was answered from), each at most [`MAX_TCP_MESSAGE`] bytes, judged on each record's
    /// encoded size without compression (which can only shrink it), so that none is ever
    /// truncated. The question goes in the first message only. When the last is made, the
    /// transfer is counted and logged.
    pub fn messages(self, snap: &Snapshot) -> Messages<'_> {
        let zone = snap.zones.get(self.zi);
        let soa = zone.map(|z| with_serial(&z.soa, self.serial));
        let middle: Box<dyn Iterator<Item = Record> + Send + '_> = match (&self.body, zone) {
            (Body::Differences(d), _) => Box::new(d.clone().into_iter()),
            (Body::Whole, Some(z)) => {
                let live = snap.versions.get(self.zi).map(|v| v.live.clone());
                let live = live
                    .into_iter()
                    .flat_map(|l| (0..l.len()).map(move |i| l[i].clone()));
                Box::new(z.records_unordered().chain(live))
            }
            (Body::Whole, None) => Box::new(std::iter::empty()),
        };
        let records = soa.clone().into_iter().chain(middle).chain(soa);
        let mut cur = self.resp.clone();
        cur.answers.clear();
        let size = to_bytes(&cur).len();
        let prev = self.signing.as_ref().map(Signing::request_mac);
        Messages {
            records: Box::new(records),
            cur,
            size,
            pending: None,
            done: false,
            prev,
            sent: Vec::new(),
            bytes: 0,
            snap,
            stream: self,
        }
    }
}

/// The messages of a [`Stream`], made as they are asked for.
pub struct Messages<'a> {
    records: Box<dyn Iterator<Item = Record> + Send + 'a>,
    cur: Message,
    size: usize,
    /// A record that did not fit the message before.
    pending: Option<Record>,
    done: bool,
    /// The MAC the next message's TSIG covers (chained, RFC 8945 section 5.3.1).
    prev: Option<Vec<u8>>,
    /// Sizes of the messages made, for the count and log.
    sent: Vec<usize>,
    bytes: usize,
    snap: &'a Snapshot,
    stream: Stream,
}

impl Iterator for Messages<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        while let Some(r) = self.pending.take().or_else(|| self.records.next()) {
            let len = r.to_bytes().map_or(MAX_TCP_MESSAGE, |b| b.len());
            if self.size + len > MAX_TCP_MESSAGE && !self.cur.answers.is_empty() {
                self.pending = Some(r);
                return Some(self.emit());
            }
            self.size += len;
            self.cur.answers.push(r);
        }
        self.done = true;
        let last = self.emit();
        self.finish();
        Some(last)
    }
}

impl Messages<'_> {
    /// The message made so far, signed when the request was; the next one starts empty.
    fn emit(&mut self) -> Vec<u8> {
        let mut m = to_bytes(&self.cur);
        self.cur.answers.clear();
        self.cur.queries.clear();
        self.size = to_bytes(&self.cur).len();
        if let (Some(s), Some(prev)) = (&self.stream.signing, &mut self.prev) {
            m = tsig::sign_chained(m, s, prev, self.sent.is_empty());
        }
        self.sent.push(m.len());
        self.bytes += m.len();
        m
    }

    /// Counts and logs the transfer, now that its last message is made.
    fn finish(&self) {
        let Some(zone) = self.snap.zones.get(self.stream.zi) else {
            return;
        };
        let served = Served {
            snap: self.snap,
            zone,
            client: self.stream.client,
            serial: self.stream.serial,
            started: self.stream.started,
        };
        served.record_sizes(self.stream.kind, self.sent.len(), self.bytes);
    }
}
