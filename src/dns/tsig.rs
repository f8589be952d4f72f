//! TSIG (RFC 8945) on the general path: a signed request is checked against the configured
//! keys, and its response signed with the same key (every message of a transfer, each MAC
//! chained to the one before, section 5.3.1). As Knot DNS answers:
//! - an unknown key: NOTAUTH with an unsigned TSIG, error BADKEY;
//! - a wrong MAC: NOTAUTH with an unsigned TSIG, error BADSIG;
//! - a time outside the key's fudge: NOTAUTH with a signed TSIG, error BADTIME.
//!
//! The crypto is hickory-proto's (ring). The query path's prepared answers never see a
//! signed message: their parser takes no additional record but OPT.

use hickory_proto::op::{Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::tsig::{make_tsig_record, TsigError, TSIG};
use hickory_proto::rr::{LowerName, Record, TSigResponseContext, TSigner};
use hickory_proto::serialize::binary::BinEncodable;

use super::{to_bytes, Outcome};
use crate::config::TransferSettings;

/// How to sign the response to a request signed with a known key.
#[derive(Clone)]
pub(super) struct Signing {
    signer: TSigner,
    request_mac: Vec<u8>,
    id: u16,
    /// The key's name, to judge transfer permissions by.
    pub key: LowerName,
}

/// What the request's TSIG, if any, allows.
pub(super) enum Checked {
    Unsigned,
    Signed(Signing),
    /// Refused with this response.
    Rejected(Outcome),
}

/// Checks the TSIG of `msg` (parsed from `query`) against `keys`.
pub(super) fn check(
    keys: &TransferSettings,
    query: &[u8],
    msg: &Message,
    resp: &Message,
    meta: Metadata,
) -> Checked {
    let Some(sig) = msg.signature() else {
        return Checked::Unsigned;
    };
    let now = crate::base::state::now_secs();
    let mut meta = meta;
    meta.response_code = ResponseCode::NotAuth;
    let mut resp = resp.clone();
    resp.metadata = meta;
    resp.edns = None;
    let Some(signer) = keys
        .key(&sig.name)
        .filter(|k| *k.algorithm() == sig.data.algorithm)
    else {
        let ctx = TSigResponseContext::unknown_key(msg.id, now, sig.name.clone());
        return Checked::Rejected(Outcome::Reply(with_tsig(to_bytes(&resp), ctx)));
    };
    let (mac, time, window) = match signer.verify_message_byte(query, None, true) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(key = %sig.name, error = %e, "TSIG signature does not verify");
            let ctx = TSigResponseContext::bad_signature(msg.id, now, signer.clone());
            return Checked::Rejected(Outcome::Reply(with_tsig(to_bytes(&resp), ctx)));
        }
    };
    if !window.contains(&now) && now != window.end {
        tracing::debug!(key = %sig.name, time, now, "TSIG time outside the fudge");
        let ctx =
            TSigResponseContext::new(msg.id, now, signer.clone(), mac, Some(TsigError::BadTime));
        return Checked::Rejected(Outcome::Reply(with_tsig(to_bytes(&resp), ctx)));
    }
    Checked::Signed(Signing {
        key: LowerName::new(signer.signer_name()),
        signer: signer.clone(),
        request_mac: mac,
        id: msg.id,
    })
}

/// `msg` with the TSIG record `ctx` makes for it appended.
fn with_tsig(mut msg: Vec<u8>, ctx: TSigResponseContext) -> Vec<u8> {
    match ctx.sign(&msg) {
        Ok(rec) => append(&mut msg, &rec),
        Err(e) => tracing::warn!(error = %e, "cannot sign a response"),
    }
    msg
}

/// Appends `rec` to the additional section of the encoded message `msg`.
fn append(msg: &mut Vec<u8>, rec: &Record<TSIG>) {
    let Ok(bytes) = rec.to_bytes() else { return };
    if msg.len() < 12 {
        return;
    }
    let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
    msg.extend_from_slice(&bytes);
}

/// [`sign`], and a single response that no longer fits `limit` with its TSIG goes out
/// truncated instead (TC, sections emptied, signed), so the client retries over TCP.
pub(super) fn sign_within(out: Outcome, s: &Signing, limit: usize) -> Outcome {
    let signed = sign(out, s);
    let Outcome::Reply(bytes) = &signed else {
        return signed;
    };
    if bytes.len() <= limit {
        return signed;
    }
    let Ok(mut m) = Message::from_vec(bytes) else {
        return signed;
    };
    m.take_signature();
    m.answers.clear();
    m.authorities.clear();
    m.additionals.clear();
    m.metadata.truncation = true;
    sign(Outcome::Reply(to_bytes(&m)), s)
}

/// Signs every message of `out`, the first over the request's MAC and each later one over
/// the MAC before it (RFC 8945 section 5.3.1).
pub(super) fn sign(out: Outcome, s: &Signing) -> Outcome {
    let now = crate::base::state::now_secs();
    match out {
        Outcome::Drop => Outcome::Drop,
        Outcome::Reply(m) => {
            let ctx =
                TSigResponseContext::new(s.id, now, s.signer.clone(), s.request_mac.clone(), None);
            Outcome::Reply(with_tsig(m, ctx))
        }
        // Its messages are signed as they are made (see [`sign_chained`]).
        Outcome::Transfer(mut t) => {
            t.signing = Some(s.clone());
            Outcome::Transfer(t)
        }
    }
}

impl Signing {
    /// The request's MAC, which the first response message's TSIG covers.
    pub fn request_mac(&self) -> Vec<u8> {
        self.request_mac.clone()
    }
}

/// `m`, one response message, signed.
pub(super) fn sign_one(m: Vec<u8>, s: &Signing) -> Vec<u8> {
    let now = crate::base::state::now_secs();
    let ctx = TSigResponseContext::new(s.id, now, s.signer.clone(), s.request_mac.clone(), None);
    with_tsig(m, ctx)
}

/// `m`, a transfer message, signed: the first over the request's MAC, each later one over
/// `prev`, the MAC before it (RFC 8945 section 5.3.1), which becomes this one's.
pub(super) fn sign_chained(
    mut m: Vec<u8>,
    s: &Signing,
    prev: &mut Vec<u8>,
    first: bool,
) -> Vec<u8> {
    let now = crate::base::state::now_secs();
    let rec = if first {
        TSigResponseContext::new(s.id, now, s.signer.clone(), prev.clone(), None).sign(&m)
    } else {
        later_message(&s.signer, prev, &m, now, s.id)
    };
    match rec {
        Ok(rec) => {
            *prev = rec.data.mac.clone();
            append(&mut m, &rec);
        }
        Err(e) => tracing::warn!(error = %e, "cannot sign a transfer message"),
    }
    m
}

/// The TSIG of a transfer message after the first: its MAC covers the previous MAC, the
/// message and the timers only.
fn later_message(
    signer: &TSigner,
    prev: &[u8],
    msg: &[u8],
    now: u64,
    id: u16,
) -> Result<Box<Record<TSIG>>, hickory_proto::ProtoError> {
    let mut tbs = Vec::with_capacity(2 + prev.len() + msg.len() + 8);
    tbs.extend_from_slice(&(prev.len() as u16).to_be_bytes());
    tbs.extend_from_slice(prev);
    tbs.extend_from_slice(msg);
    tbs.extend_from_slice(&((now >> 32) as u16).to_be_bytes());
    tbs.extend_from_slice(&(now as u32).to_be_bytes());
    tbs.extend_from_slice(&signer.fudge().to_be_bytes());
    let mac = signer
        .sign(&tbs)
        .map_err(|e| hickory_proto::ProtoError::from(e.to_string()))?;
    let tsig = TSIG::new(
        signer.algorithm().clone(),
        now,
        signer.fudge(),
        mac,
        id,
        None,
        Vec::new(),
    );
    Ok(Box::new(make_tsig_record(
        signer.signer_name().clone(),
        tsig,
    )))
}
