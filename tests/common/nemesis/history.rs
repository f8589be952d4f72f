//! The history of a run: every DNS query and its answer, every `/status` poll, every fault
//! and heal, every backend change, every ctl operation and its reply, every alert, each
//! with the time since the run started. The recorders (DNS clients, status pollers, the
//! webhook sink) are threads inside the client host that append to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::net::{http, spawn_in, Mode};

/// How long a DNS query may wait for its answer before it counts as failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// How often each instance is asked.
pub const QUERY_EVERY: Duration = Duration::from_millis(10);
/// How often the primary and the secondary are asked for the zone's serial.
pub const ZONE_EVERY: Duration = Duration::from_millis(20);
/// How often each instance's `/status` is read.
pub const STATUS_EVERY: Duration = Duration::from_millis(200);

/// What happened.
#[derive(Debug, Clone)]
pub enum Ev {
    /// A query to instance `inst` sent at the event's time: the members answered (bit k:
    /// member k), or why it failed.
    Query {
        inst: usize,
        answer: Result<u32, String>,
    },
    /// A `/status` poll of `inst`: its cluster link, and the override targets it holds.
    Status {
        inst: usize,
        link: String,
        overrides: Vec<String>,
    },
    /// A fault starts (`on`) or is healed.
    Fault {
        id: u64,
        fault: super::faults::Fault,
        on: bool,
    },
    /// A backend's mode changes.
    Backend { member: usize, mode: Mode },
    /// A gtmd instance runs (`Some(true)`), is paused (`Some(false)`) or is gone (`None`).
    Gtmd { inst: usize, running: Option<bool> },
    /// A ctl operation through `via` ended: `disable` or `enable` of `target`, acknowledged
    /// or not, with the reply.
    Ctl {
        via: usize,
        op: &'static str,
        target: String,
        started: Duration,
        acked: bool,
        reply: String,
    },
    /// An alert arrived at the webhook sink.
    Alert(serde_json::Value),
    /// etcd's leader (its index), as asked just before a fault that may take it away.
    EtcdLeader(Option<usize>),
    /// What a server of the zone held, asked at the event's time: `at` 0 is the primary
    /// (g1), 1 the secondary (s1); its serial and the members it answers for NAME (the
    /// same serial before and after that answer, else nothing is recorded).
    Zone { at: usize, serial: u32, bits: u32 },
    /// The secondary runs (`Some(true)`), is paused (`Some(false)`) or is gone (`None`).
    Secondary(Option<bool>),
}

/// The history: events in the order they were recorded, each with its time since `t0`.
pub struct History {
    pub t0: Instant,
    /// The wall clock at `t0` (the instances' logs are stamped by it).
    pub wall0: std::time::SystemTime,
    pub evs: Mutex<Vec<(Duration, Ev)>>,
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History {
            t0: Instant::now(),
            wall0: std::time::SystemTime::now(),
            evs: Mutex::new(Vec::new()),
        })
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn add(&self, ev: Ev) {
        self.add_at(self.now(), ev);
    }

    pub fn add_at(&self, t: Duration, ev: Ev) {
        self.evs.lock().unwrap().push((t, ev));
    }

    /// Writes the history to `path`, one event a line, leaving out each query or poll that
    /// says the same as the one before it to the same instance.
    pub fn write(&self, path: &std::path::Path) {
        use std::fmt::Write as _;
        let mut out = format!(
            "# time 0 is {} (UTC)\n",
            humantime::format_rfc3339_millis(self.wall0)
        );
        let mut last: std::collections::HashMap<(u8, usize), String> = Default::default();
        for (t, ev) in self.sorted() {
            let key = match &ev {
                Ev::Query { inst, answer } => Some(((0, *inst), format!("{answer:?}"))),
                Ev::Status {
                    inst,
                    link,
                    overrides,
                } => Some(((1, *inst), format!("{link} {overrides:?}"))),
                Ev::Zone { at, serial, bits } => Some(((2, *at), format!("{serial} {bits}"))),
                _ => None,
            };
            if let Some((k, v)) = key {
                if last.insert(k, v.clone()) == Some(v) {
                    continue;
                }
            }
            let _ = writeln!(out, "{:9.3} {ev:?}", t.as_secs_f64());
        }
        std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Every event, sorted by time.
    pub fn sorted(&self) -> Vec<(Duration, Ev)> {
        let mut v = self.evs.lock().unwrap().clone();
        v.sort_by_key(|(t, _)| *t);
        v
    }
}

/// The recorder threads; they stop when this is dropped.
pub struct Recorders {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Recorders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Where the recorders reach each instance: DNS, admin API.
#[derive(Clone)]
pub struct Target {
    pub dns: SocketAddr,
    pub admin: SocketAddr,
}

impl Recorders {
    /// Starts, inside namespace `ns`: one DNS client and one status poller per target, and
    /// the webhook sink on `sink`. `addrs[k]` is member k's answered address.
    pub fn start(
        ns: &str,
        h: &Arc<History>,
        targets: &[Target],
        addrs: &[String],
        sink: SocketAddr,
        zone: [SocketAddr; 2],
    ) -> Recorders {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (at, server) in zone.into_iter().enumerate() {
            let (hh, s, a) = (h.clone(), stop.clone(), addrs.to_vec());
            threads.push(spawn_in(ns, move || zone_loop(&hh, &s, at, server, &a)));
        }
        for (i, t) in targets.iter().enumerate() {
            let (hh, s, dns, a) = (h.clone(), stop.clone(), t.dns, addrs.to_vec());
            threads.push(spawn_in(ns, move || ask_loop(&hh, &s, i, dns, &a)));
            let (hh, s, admin) = (h.clone(), stop.clone(), t.admin);
            threads.push(spawn_in(ns, move || status_loop(&hh, &s, i, admin)));
        }
        let listener = {
            let ns = ns.to_string();
            spawn_in(&ns, move || {
                TcpListener::bind(sink).expect("webhook sink binds")
            })
            .join()
            .unwrap()
        };
        let (h, s) = (h.clone(), stop.clone());
        threads.push(std::thread::spawn(move || sink_loop(&h, &s, listener)));
        Recorders { stop, threads }
    }
}

/// The query for the lab's name, with id `id`.
fn query(id: u16) -> Vec<u8> {
    let mut m = crate::common::query_msg(super::NAME, RecordType::A, false);
    m.metadata.id = id;
    m.to_vec().unwrap()
}

/// Asks `dns` every [`QUERY_EVERY`] until stopped.
fn ask_loop(h: &History, stop: &AtomicBool, inst: usize, dns: SocketAddr, addrs: &[String]) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("client socket");
    let mut id: u16 = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        id = id.wrapping_add(1);
        let sent = h.now();
        let answer = ask(&sock, dns, id, addrs);
        h.add_at(sent, Ev::Query { inst, answer });
        next += QUERY_EVERY;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Asks `server` for the zone's serial and NAME's answer every [`ZONE_EVERY`] until
/// stopped; records what it held when the serial was the same before and after.
fn zone_loop(h: &History, stop: &AtomicBool, at: usize, server: SocketAddr, addrs: &[String]) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("client socket");
    let mut id: u16 = 0;
    while !stop.load(Ordering::SeqCst) {
        let t = h.now();
        id = id.wrapping_add(3);
        let before = soa(&sock, server, id);
        let answer = ask_one(&sock, server, &query(id.wrapping_add(1)), addrs);
        let after = soa(&sock, server, id.wrapping_add(2));
        if let (Some(b), Ok(bits), Some(a)) = (before, answer, after) {
            if a == b {
                h.add_at(
                    t,
                    Ev::Zone {
                        at,
                        serial: a,
                        bits,
                    },
                );
            }
        }
        std::thread::sleep(ZONE_EVERY);
    }
}

/// The zone's serial as `server` answers it, asked from a fresh socket (None: no answer).
pub fn zone_serial(server: SocketAddr) -> Option<u32> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    soa(&sock, server, 1)
}

/// The zone's SOA serial from `server`, when it answers it with authority.
fn soa(sock: &UdpSocket, server: SocketAddr, id: u16) -> Option<u32> {
    let mut m = crate::common::query_msg(super::ZONE, RecordType::SOA, false);
    m.metadata.id = id;
    let m = exchange(sock, server, &m.to_vec().unwrap(), id).ok()?;
    if m.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
        return None;
    }
    m.answers.iter().find_map(|r| match &r.data {
        hickory_proto::rr::RData::SOA(s) => Some(s.serial),
        _ => None,
    })
}

/// Sends `q` (with id `id`) and waits up to [`QUERY_TIMEOUT`] for its answer.
fn exchange(sock: &UdpSocket, dns: SocketAddr, q: &[u8], id: u16) -> Result<Message, String> {
    sock.send_to(q, dns).map_err(|e| format!("send: {e}"))?;
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".into());
        }
        sock.set_read_timeout(Some(left)).ok();
        let Ok(n) = sock.recv(&mut buf) else {
            return Err("timeout".into());
        };
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            return Err("unparsable answer".into());
        };
        if m.metadata.id == id {
            return Ok(m);
        }
        // a late answer to an earlier query
    }
}

/// One query: the members answered, as bits, or why it failed.
fn ask(sock: &UdpSocket, dns: SocketAddr, id: u16, addrs: &[String]) -> Result<u32, String> {
    ask_one(sock, dns, &query(id), addrs)
}

/// Query `q` for NAME: the members answered, as bits, or why it failed.
fn ask_one(sock: &UdpSocket, dns: SocketAddr, q: &[u8], addrs: &[String]) -> Result<u32, String> {
    let id = u16::from_be_bytes([q[0], q[1]]);
    let m = exchange(sock, dns, q, id)?;
    if m.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
        return Err(format!("rcode {:?}", m.metadata.response_code));
    }
    let mut bits = 0;
    for a in crate::common::addrs(&m) {
        match addrs.iter().position(|x| *x == a) {
            Some(k) => bits |= 1 << k,
            None => return Err(format!("unknown address {a}")),
        }
    }
    if bits == 0 {
        return Err("empty answer".into());
    }
    Ok(bits)
}

/// Reads `/status` of `admin` every [`STATUS_EVERY`] until stopped.
fn status_loop(h: &History, stop: &AtomicBool, inst: usize, admin: SocketAddr) {
    while !stop.load(Ordering::SeqCst) {
        let t = h.now();
        if let Some(s) = status_at(admin) {
            let link = s["cluster"]["link"].as_str().unwrap_or("?").to_string();
            h.add_at(
                t,
                Ev::Status {
                    inst,
                    link,
                    overrides: override_targets(&s),
                },
            );
        }
        std::thread::sleep(STATUS_EVERY);
    }
}

/// `/status` of `admin` as JSON, or None.
pub fn status_at(admin: SocketAddr) -> Option<serde_json::Value> {
    let (code, body) = http(admin, "GET", "/status", None, None, Duration::from_secs(1)).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The targets of the overrides in a `/status`, as `POOL/MEMBER` strings.
pub fn override_targets(s: &serde_json::Value) -> Vec<String> {
    let Some(l) = s["overrides"].as_array() else {
        return Vec::new();
    };
    l.iter()
        .map(|o| match &o["target"] {
            serde_json::Value::String(t) => t.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// The webhook sink: every POSTed JSON body becomes an [`Ev::Alert`].
fn sink_loop(h: &History, stop: &AtomicBool, l: TcpListener) {
    l.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let Ok((mut s, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        s.set_nonblocking(false).ok();
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = s.read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                continue;
            }
            if let Ok(v) = serde_json::from_slice(&buf[end + 4..end + 4 + len]) {
                h.add(Ev::Alert(v));
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            break;
        }
    }
}
