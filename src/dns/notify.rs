//! NOTIFY (RFC 1996): telling each zone's secondaries that its serial changed, so that they
//! transfer at once instead of at their refresh timer.
//!
//! The engine publishes the serial of every zone with secondaries to notify; this task sends
//! each secondary one NOTIFY per serial (signed when the zone has a notify key), and retries
//! with doubling backoff (1 s, 2 s, ... at most 60 s) until it is answered NOERROR or a newer
//! serial replaces it: changes are coalesced, a secondary is only ever told the latest
//! serial. After 5 unanswered attempts an alert `notify_unanswered` goes out
//! once, and `notify_answered` when it is answered after all. Counted in
//! `gtmd_notify_total{zone,secondary,result}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordType, TSigner};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::base::alert::{Alert, Alerts};
use crate::base::metrics::NOTIFY;
use crate::dns::secondaries::{Log, NotifyState};

/// When to try again and when to alert.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// The wait after the first attempt; it doubles after each one.
    first: Duration,
    /// The longest wait.
    max: Duration,
    /// Unanswered attempts before the alert.
    alert_after: u32,
}

const SCHEDULE: Schedule = Schedule {
    first: Duration::from_secs(1),
    max: Duration::from_secs(60),
    alert_after: 5,
};

/// A zone's serial and whom to tell.
#[derive(Clone)]
pub struct Notice {
    pub zone: Name,
    /// The zone's SOA with the serial to announce.
    pub soa: Record,
    pub serial: u32,
    pub targets: Vec<SocketAddr>,
    pub key: Option<TSigner>,
}

/// Every zone's notice, and where alerts go (both as of the configuration in force).
#[derive(Clone, Default)]
pub struct Notices {
    pub list: Vec<Notice>,
    pub alerts: Alerts,
}

/// The notices as the engine last published them.
pub type NoticesRx = watch::Receiver<Arc<Notices>>;

/// Sends NOTIFYs as `notices` change, until `stop`.
pub async fn run(mut notices: NoticesRx, log: Arc<Log>, stop: CancellationToken) {
    let mut running: HashMap<(LowerName, SocketAddr), (u32, JoinHandle<()>)> = HashMap::new();
    loop {
        let current = notices.borrow_and_update().clone();
        let mut wanted = Vec::new();
        for n in current.list.iter() {
            for &to in &n.targets {
                let k = (LowerName::new(&n.zone), to);
                wanted.push(k.clone());
                if running.get(&k).is_some_and(|(s, _)| *s == n.serial) {
                    continue;
                }
                let task = tokio::spawn(notify_one(
                    n.clone(),
                    to,
                    notices.clone(),
                    log.clone(),
                    SCHEDULE,
                ));
                if let Some((_, old)) = running.insert(k, (n.serial, task)) {
                    old.abort();
                }
            }
        }
        running.retain(|k, (_, t)| {
            let keep = wanted.contains(k);
            if !keep {
                t.abort();
            }
            keep
        });
        tokio::select! {
            r = notices.changed() => if r.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
    for (_, (_, t)) in running {
        t.abort();
    }
}

/// Tells `to` about `n` until it answers; alerts go where `notices` says at the time.
async fn notify_one(
    n: Notice,
    to: SocketAddr,
    notices: NoticesRx,
    log: Arc<Log>,
    schedule: Schedule,
) {
    let alert = |a: Alert| notices.borrow().alerts.send(a);
    let zone = n.zone.to_string();
    let secondary = to.to_string();
    let mut wait = schedule.first;
    let mut alerted = false;
    for attempt in 1u32.. {
        let result = send(&n, to, wait.min(Duration::from_secs(5))).await;
        let ok = result.is_ok();
        let label = if ok { "answered" } else { "unanswered" };
        metrics::counter!(NOTIFY, "zone" => zone.clone(), "secondary" => secondary.clone(), "result" => label)
            .increment(1);
        log.notified(
            &zone,
            to,
            NotifyState {
                serial: n.serial,
                attempts: attempt,
                answered: ok,
                at: crate::base::state::now_secs(),
                error: result.as_ref().err().cloned(),
            },
        );
        match result {
            Ok(()) => {
                tracing::info!(zone = %zone, secondary = %to, serial = n.serial, attempt, "NOTIFY answered");
                if alerted {
                    let why = format!(
                        "{to} answered the NOTIFY of serial {} at attempt {attempt}",
                        n.serial
                    );
                    alert(notify_alert("notify_answered", &zone, to, why));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(zone = %zone, secondary = %to, serial = n.serial, attempt, error = %e, "NOTIFY not answered");
                if attempt == schedule.alert_after && !alerted {
                    alerted = true;
                    let why = format!(
                        "{to} has not answered {attempt} NOTIFYs of serial {} ({e}); still trying every {} s at most",
                        n.serial,
                        schedule.max.as_secs()
                    );
                    alert(notify_alert("notify_unanswered", &zone, to, why));
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(schedule.max);
    }
}

/// An alert about the NOTIFYs of `zone` to `to`.
fn notify_alert(event: &str, zone: &str, to: SocketAddr, reason: String) -> Alert {
    let mut a = Alert::new(event);
    a.name = Some(zone.to_string());
    a.address = Some(to.ip());
    a.reason = Some(reason);
    a
}

/// The NOTIFY message of `n` with ID `id`, signed when `n` has a key (then also the
/// verifier its answer must pass).
pub fn message(
    n: &Notice,
    id: u16,
) -> Result<(Vec<u8>, Option<hickory_proto::rr::TSigVerifier>), String> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
    m.metadata.authoritative = true;
    let mut q = Query::query(n.zone.clone(), RecordType::SOA);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    m.add_answer(n.soa.clone());
    let mut verifier = None;
    if let Some(key) = &n.key {
        verifier = m
            .finalize(key, crate::base::state::now_secs())
            .map_err(|e| format!("cannot sign: {e}"))?;
    }
    let bytes = m.to_vec().map_err(|e| format!("cannot encode: {e}"))?;
    Ok((bytes, verifier))
}

/// One NOTIFY and its answer, within `timeout`.
async fn send(n: &Notice, to: SocketAddr, timeout: Duration) -> Result<(), String> {
    let id: u16 = rand::random();
    let (bytes, mut verifier) = message(n, id)?;
    let local: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("a valid address")
    } else {
        "[::]:0".parse().expect("a valid address")
    };
    let sock = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    sock.connect(to).await.map_err(|e| e.to_string())?;
    sock.send(&bytes).await.map_err(|e| e.to_string())?;
    let wait = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let len = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
            let Ok(r) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if r.id != id || r.message_type != MessageType::Response || r.op_code != OpCode::Notify
            {
                continue;
            }
            // A secondary that does not take the key answers with a TSIG error and no MAC
            // (RFC 8945 section 5.3.2): say so, rather than that the MAC is short.
            if let (Some(key), Some(e)) = (&n.key, rejected_key(&r)) {
                return Err(format!(
                    "the secondary rejected the key {} ({e}, {}): it has no key of that name, or \
                     not with the same algorithm and secret",
                    key.signer_name(),
                    r.response_code
                ));
            }
            // A signed NOTIFY needs a signed answer (RFC 8945 section 5.3): an answer that
            // does not verify is not taken as one.
            if let Some(v) = verifier.as_mut() {
                if let Err(e) = v.verify(&buf[..len]) {
                    return Err(format!("the answer's TSIG does not verify: {e}"));
                }
            }
            return match r.response_code {
                ResponseCode::NoError => Ok(()),
                rc => Err(format!("answered {rc}")),
            };
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

/// The TSIG error of an answer whose signature carries one (or no MAC at all): the key of
/// the request was not taken.
fn rejected_key(r: &Message) -> Option<String> {
    let tsig = &r.signature()?.data;
    match &tsig.error {
        Some(e) => Some(format!("{e:?}")),
        None if tsig.mac.is_empty() => Some("no MAC".to_string()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unanswered_notify_is_retried_with_backoff_alerted_once_then_answered() {
        let (alerts, mut alerted) = Alerts::channel(8);
        let (_tx, rx) = watch::channel(Arc::new(Notices {
            list: Vec::new(),
            alerts,
        }));
        // A secondary that says nothing at first.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = silent.local_addr().unwrap();
        let zone = Name::from_ascii("t.").unwrap();
        let soa = hickory_proto::rr::rdata::SOA::new(zone.clone(), zone.clone(), 9, 1, 1, 1, 1);
        let n = Notice {
            soa: Record::from_rdata(zone.clone(), 60, hickory_proto::rr::RData::SOA(soa)),
            zone,
            serial: 9,
            targets: vec![to],
            key: None,
        };
        let log = Arc::new(Log::default());
        let fast = Schedule {
            first: Duration::from_millis(20),
            max: Duration::from_millis(80),
            alert_after: 3,
        };
        let task = tokio::spawn(notify_one(n, to, rx, log.clone(), fast));
        let a = tokio::time::timeout(Duration::from_secs(10), alerted.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.event, "notify_unanswered");
        let state = &log.get()["t."].notify[&to];
        assert_eq!(
            (state.attempts, state.answered, state.serial),
            (3, false, 9)
        );
        // Now it answers each NOTIFY it is sent.
        let answer = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (len, from) = silent.recv_from(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf[..len]).unwrap();
                let mut r = Message::new(q.id, MessageType::Response, OpCode::Notify);
                r.metadata.authoritative = true;
                let _ = silent.send_to(&r.to_vec().unwrap(), from).await;
            }
        });
        let a = tokio::time::timeout(Duration::from_secs(10), alerted.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.event, "notify_answered");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let state = &log.get()["t."].notify[&to];
        assert!(state.answered && state.attempts > 3, "{state:?}");
        assert!(alerted.try_recv().is_err(), "one alert each way");
        answer.abort();
    }

    #[tokio::test]
    async fn an_unsigned_answer_to_a_signed_notify_is_not_taken() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (len, from) = sock.recv_from(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf[..len]).unwrap();
                assert!(q.signature().is_some(), "the NOTIFY is signed");
                let r = Message::new(q.id, MessageType::Response, OpCode::Notify);
                let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
            }
        });
        let n = signed_notice(to);
        let e = send(&n, to, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[tokio::test]
    async fn a_secondary_that_rejects_the_key_is_said_to_have_rejected_it() {
        use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, TSIG};
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (len, from) = sock.recv_from(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf[..len]).unwrap();
                let key = q.signature().unwrap().name.clone();
                // As Knot, NSD and BIND answer an unknown key: NOTAUTH, BADKEY, no MAC.
                let mut r = Message::new(q.id, MessageType::Response, OpCode::Notify);
                r.metadata.response_code = ResponseCode::NotAuth;
                let tsig = TSIG::new(
                    TsigAlgorithm::HmacSha256,
                    crate::base::state::now_secs(),
                    300,
                    Vec::new(),
                    q.id,
                    Some(TsigError::BadKey),
                    Vec::new(),
                );
                r.set_signature(Box::new(Record::from_rdata(key, 0, tsig)));
                let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
            }
        });
        let n = signed_notice(to);
        let e = send(&n, to, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.contains("the secondary rejected the key k."), "{e}");
        assert!(e.contains("BadKey") && !e.contains("hickory"), "{e}");
    }

    /// A NOTIFY of zone `t.` at serial 9 to `to`, signed with key `k.`.
    fn signed_notice(to: std::net::SocketAddr) -> Notice {
        let zone = Name::from_ascii("t.").unwrap();
        let soa = hickory_proto::rr::rdata::SOA::new(zone.clone(), zone.clone(), 9, 1, 1, 1, 1);
        let key = TSigner::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
            Name::from_ascii("k.").unwrap(),
            300,
        )
        .unwrap();
        Notice {
            soa: Record::from_rdata(zone.clone(), 60, hickory_proto::rr::RData::SOA(soa)),
            zone,
            serial: 9,
            targets: vec![to],
            key: Some(key),
        }
    }
}
