//! One check model. Every kind of check that runs over a TCP connection is a sans-I/O
//! machine ([`Machine`]): the bytes it sends once connected, and what it makes of the bytes
//! read so far ([`Step`]). Two executors drive the same machines: the probe thread
//! ([`super::plain`], mio) for checks on a fresh plain connection, and a task per member
//! ([`super::stream`], tokio) for TLS, kept connections and members that are names.
//! [`probe_of`] is the one table from a configured check kind to its probe; ICMP is an
//! exchange of datagrams of its own ([`super::icmp`]).
//!
//! A new kind of check over TCP is a variant of [`Machine`] with its request and its judge,
//! a row of [`probe_of`], and its configuration: neither executor changes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::http::{self, HttpJudge};
use super::stream::StreamProbe;
use super::Direct;
use crate::config::CheckKind;

/// A check over one TCP connection, as data: what to send, and how to judge the answer.
pub(crate) enum Machine {
    /// A connection that completes is a success; nothing is sent or read.
    Tcp,
    /// One GET, its response judged by status and body.
    Http(Box<HttpJudge>),
}

impl Machine {
    /// What to send once connected (nothing for TCP).
    pub(crate) fn request(&self) -> &[u8] {
        match self {
            Machine::Tcp => &[],
            Machine::Http(h) => h.request(),
        }
    }

    /// Judges the response read so far (`buf`; `ended`: the peer has closed).
    pub(crate) fn judge(&self, buf: &[u8], ended: bool) -> Step {
        match self {
            Machine::Tcp => Step::Done(Ok(false)),
            Machine::Http(h) => h.judge(buf, ended),
        }
    }
}

/// What a [`Machine`] makes of a response so far.
pub(crate) enum Step {
    /// Read more, up to this many bytes of response in all.
    Read(usize),
    /// The result; `Ok(true)`: the connection can carry the next request.
    Done(Result<bool, Failure>),
}

/// Why an exchange failed. A kept connection that fails before any byte of a response came
/// back was most likely closed by the server while idle; the probe then retries on a fresh
/// connection instead of counting a failure, as HTTP clients do with idempotent requests.
pub(crate) struct Failure {
    pub(crate) before_response: bool,
    pub(crate) msg: String,
}

impl Failure {
    pub(crate) fn early(msg: String) -> Self {
        Self {
            before_response: true,
            msg,
        }
    }
    pub(crate) fn late(msg: String) -> Self {
        Self {
            before_response: false,
            msg,
        }
    }
}

/// The probe of `at` by a check of `kind`: the one table from check kind to machine.
pub(super) fn probe_of(
    kind: &CheckKind,
    timeout: Duration,
    at: SocketAddr,
    source: Option<IpAddr>,
    max_body: usize,
) -> Result<Direct, String> {
    let stream = |m, tls, keepalive| {
        Direct::Stream(Box::new(StreamProbe::new(m, at, source, tls, keepalive)))
    };
    Ok(match kind {
        CheckKind::Tcp { .. } => stream(Machine::Tcp, None, None),
        CheckKind::Http(h) => {
            let judge = HttpJudge::new(h, at, max_body)?;
            stream(
                Machine::Http(Box::new(judge)),
                http::tls_of(h, at)?,
                h.keepalive,
            )
        }
        // Replies are waited for until just before the probe's timeout, so that the probe
        // ends with its count rather than being cut off.
        CheckKind::Icmp(c) => Direct::Icmp(at.ip(), source, c.clone(), timeout.mul_f64(0.9)),
    })
}
