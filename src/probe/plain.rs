//! The probe thread: TCP checks and plain HTTP checks on fresh connections, for every member
//! at once, on one event loop (epoll through mio) with one timing wheel.
//!
//! These are the checks that thousands of members use, and a probe of one is a handful of
//! system calls. A task per member on the async runtime added its own cost to each of them
//! (a timer, a wake-up, a registration and a deregistration per connection), growing with
//! the member count; here a probe costs what the kernel's part costs plus two timers. TLS,
//! kept connections, ICMP and members that are names keep their own tasks
//! ([`super::probe_loop`]). The schedule and the results are the same either way: the first
//! probe at once, the next after the interval (±10%), or, between states or while an up
//! member's probe is unanswered, a fast interval after the last was sent (so fast probes
//! overlap, each with its own timeout, and results count in the order probes were sent),
//! at most `max_in_flight` probes in flight across both, and a full report queue makes the
//! member wait with its report, never lose it. Reports leave in batches, at most 2 ms after
//! the probe, so that the engine wakes once for many of them rather than once per probe
//! (which, on a busy core, preempted this thread at every report).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::check::{Machine, Step};
use super::wheel::Wheel;
use super::{ProbeReport, Reports, Tally};

/// A member's loop as the thread runs it.
pub(crate) struct Job {
    pub(crate) target: SocketAddr,
    pub(crate) source: Option<IpAddr>,
    pub(crate) check: Machine,
    pub(crate) timeout: Duration,
    pub(crate) tally: Tally,
}

enum Cmd {
    Start(Box<Job>),
    Stop(u64),
}

/// The probe thread's handle. Dropping it stops the thread and closes its connections.
pub(crate) struct Thread {
    cmds: std_mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
}

/// The token of the waker; a connection's token is its slot and the slot's sequence number.
const WAKE: Token = Token(usize::MAX);

impl Thread {
    /// Starts the thread: reports go to `tx`, and each probe holds a permit of `limit`.
    pub(crate) fn start(tx: mpsc::Sender<Reports>, limit: Arc<Semaphore>) -> Result<Self, String> {
        let poll = Poll::new().map_err(|e| format!("probe thread: {e}"))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKE).map_err(|e| format!("probe thread: {e}"))?);
        let (cmds, rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("gtmd-probe".into())
            .spawn(move || Runner::new(poll, rx, tx, limit).run())
            .map_err(|e| format!("probe thread: {e}"))?;
        Ok(Self { cmds, waker })
    }

    pub(crate) fn add(&self, job: Job) {
        self.send(Cmd::Start(Box::new(job)));
    }

    pub(crate) fn remove(&self, probe: u64) {
        self.send(Cmd::Stop(probe));
    }

    fn send(&self, cmd: Cmd) {
        // A thread that has ended (its report queue closed) has nothing left to start or stop.
        if self.cmds.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        // The thread sees its command channel closed once woken.
        let (dead, _) = std_mpsc::channel();
        self.cmds = dead;
        let _ = self.waker.wake();
    }
}

/// One probe in flight.
struct Flight {
    /// Its token's low half, unique within the slot.
    id: u32,
    /// Its number in the member's sequence of probes.
    n: u64,
    sock: TcpStream,
    _permit: OwnedSemaphorePermit,
    started: Instant,
    connected: bool,
    /// Bytes of the request written.
    sent: usize,
    /// The peer has closed its side.
    ended: bool,
    /// The response read so far (HTTP).
    buf: Vec<u8>,
}

struct Slot {
    job: Box<Job>,
    /// The last number handed out to a timer or a flight of this slot, so that timers and
    /// events of an earlier state are told apart and skipped.
    seq: u32,
    /// The number of the timer of the next probe, if one is set.
    due: Option<u32>,
    /// Due, waiting for a permit.
    blocked: bool,
    /// A report of this slot waits in the batch: no new probe until it is sent.
    reporting: bool,
    /// The probes in flight (more than one while fast probes overlap).
    flights: Vec<Flight>,
}

impl Slot {
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }
}

struct Runner {
    poll: Poll,
    cmds: std_mpsc::Receiver<Cmd>,
    tx: mpsc::Sender<Reports>,
    limit: Arc<Semaphore>,
    slots: Vec<Option<Slot>>,
    /// Free slots, each with the last sequence number it used (a slot taken again goes on
    /// from it, so that a stale timer or event never matches the new member).
    free: Vec<(usize, u32)>,
    by_probe: HashMap<u64, usize>,
    /// When each slot's next probe is due and each flight times out, by slot and number.
    timers: Wheel<(usize, u32)>,
    blocked: VecDeque<(usize, u32)>,
    /// The next batch of reports, and the slots (by slot and probe loop) that made them,
    /// which probe again once it is sent.
    batch: Vec<ProbeReport>,
    reporting: Vec<(usize, u64)>,
    /// How many of the batch's reports the queue has refused once (and were counted).
    refused: usize,
    /// When the batch is sent.
    flush_at: Option<Instant>,
}

/// How long a report waits to be sent with others: the engine wakes once for a batch, not
/// once per probe.
const FLUSH: Duration = Duration::from_millis(2);

/// The most reports in one batch.
const BATCH: usize = 256;

fn token(slot: usize, seq: u32) -> Token {
    Token(slot << 32 | seq as usize)
}

fn untoken(t: Token) -> (usize, u32) {
    (t.0 >> 32, t.0 as u32)
}

impl Runner {
    fn new(
        poll: Poll,
        cmds: std_mpsc::Receiver<Cmd>,
        tx: mpsc::Sender<Reports>,
        limit: Arc<Semaphore>,
    ) -> Self {
        Self {
            poll,
            cmds,
            tx,
            limit,
            slots: Vec::new(),
            free: Vec::new(),
            by_probe: HashMap::new(),
            timers: Wheel::new(Instant::now()),
            blocked: VecDeque::new(),
            batch: Vec::new(),
            reporting: Vec::new(),
            refused: 0,
            flush_at: None,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut due = Vec::new();
        loop {
            if !self.take_commands() {
                return;
            }
            let now = Instant::now();
            let flush = self.flush_at.is_some_and(|t| t <= now) || self.batch.len() >= BATCH;
            if flush && !self.send_reports(now) {
                return;
            }
            self.timers.expire(now, &mut due);
            for (slot, seq) in due.drain(..) {
                self.on_timer(slot, seq, now);
            }
            while let Some(&(slot, seq)) = self.blocked.front() {
                if self.is_blocked(slot, seq) {
                    let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                        break;
                    };
                    let s = self.slots[slot].as_mut().expect("blocked, so live");
                    (s.blocked, s.due) = (false, None);
                    self.begin(slot, permit, now);
                }
                self.blocked.pop_front();
            }
            if !self.wait(&mut events, now) {
                return;
            }
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                let (slot, seq) = untoken(ev.token());
                self.on_ready(
                    slot,
                    seq,
                    ev.is_writable(),
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                );
            }
        }
    }

    /// Waits for events until the next timer, or soon if reports or permits are waiting;
    /// false if the poll failed.
    fn wait(&mut self, events: &mut Events, now: Instant) -> bool {
        // Reports to send, or a permit held elsewhere to wait for: look again soon.
        let soon = match (self.flush_at, self.blocked.is_empty()) {
            (Some(t), _) => Some(t.saturating_duration_since(now).min(FLUSH)),
            (None, false) => Some(FLUSH),
            (None, true) => None,
        };
        let timer = self
            .timers
            .next()
            .map(|at| at.saturating_duration_since(now));
        let wait = match (soon, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // mio rounds the wait up to a whole millisecond, so timers due close together are
        // handled in one pass.
        match self.poll.poll(events, wait) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                tracing::error!("probe thread: {e}");
                false
            }
            _ => true,
        }
    }

    /// Applies the commands sent; false once the handle is gone.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.cmds.try_recv() {
                Ok(Cmd::Start(job)) => {
                    let probe = job.tally.probe;
                    if let Some(old) = self.by_probe.remove(&probe) {
                        self.release(old);
                    }
                    let (i, seq) = match self.free.pop() {
                        Some((i, last)) => (i, last),
                        None => {
                            self.slots.push(None);
                            (self.slots.len() - 1, 0)
                        }
                    };
                    self.slots[i] = Some(Slot {
                        job,
                        seq,
                        due: None,
                        blocked: false,
                        reporting: false,
                        flights: Vec::new(),
                    });
                    self.by_probe.insert(probe, i);
                    // The first probe goes out at once.
                    self.schedule(i);
                }
                Ok(Cmd::Stop(probe)) => {
                    if let Some(i) = self.by_probe.remove(&probe) {
                        self.release(i);
                    }
                }
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Frees a slot; its connections close and its permits return.
    fn release(&mut self, i: usize) {
        if let Some(slot) = self.slots[i].take() {
            self.free.push((i, slot.seq));
        }
    }

    /// Sets the timer of slot `i`'s next probe, as its tally says (none while its report
    /// waits, or while a probe is in flight at the steady pace).
    fn schedule(&mut self, i: usize) {
        let slot = self.slots[i].as_mut().expect("a slot scheduled is live");
        if slot.blocked {
            return;
        }
        slot.due = None;
        if slot.reporting {
            return;
        }
        if let Some(at) = slot.job.tally.next() {
            let seq = slot.next_seq();
            slot.due = Some(seq);
            self.timers.push(at, (i, seq));
        }
    }

    fn is_blocked(&self, i: usize, seq: u32) -> bool {
        let slot = self.slots.get(i).and_then(Option::as_ref);
        slot.is_some_and(|s| s.blocked && s.due == Some(seq))
    }

    fn on_timer(&mut self, i: usize, seq: u32, now: Instant) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if slot.due == Some(seq) && !slot.blocked {
            match self.limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    slot.due = None;
                    self.begin(i, permit, now);
                }
                Err(_) => {
                    slot.blocked = true;
                    self.blocked.push_back((i, seq));
                }
            }
        } else if slot.flights.iter().any(|f| f.id == seq) {
            let msg = format!("timed out after {:?}", slot.job.timeout);
            self.finish(i, seq, Err(msg));
        }
    }

    /// Sends a probe: opens its connection.
    fn begin(&mut self, i: usize, permit: OwnedSemaphorePermit, now: Instant) {
        let slot = self.slots[i].as_mut().expect("a slot begun is live");
        let n = slot.job.tally.sent(now);
        let id = slot.next_seq();
        let opened = open(slot.job.target, slot.job.source).and_then(|mut sock| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .register(&mut sock, token(i, id), interest)
                .map_err(|e| format!("socket: {e}"))?;
            Ok(sock)
        });
        match opened {
            Ok(sock) => {
                // Most members have one probe in flight at a time: room for one, not four.
                slot.flights.reserve_exact(1);
                slot.flights.push(Flight {
                    id,
                    n,
                    sock,
                    _permit: permit,
                    started: now,
                    connected: false,
                    sent: 0,
                    ended: false,
                    buf: Vec::new(),
                });
                self.timers.push(now + slot.job.timeout, (i, id));
                // A probe in flight may bring the next one sooner.
                self.schedule(i);
            }
            // Failed before anything was sent: a failed probe that took no time.
            Err(msg) => self.report(i, n, Err(msg), Duration::ZERO),
        }
    }

    /// Moves a running probe on after its socket became ready (`writable` if it did for
    /// writing, `readable` if there is something to read, an end or an error).
    fn on_ready(&mut self, i: usize, id: u32, writable: bool, readable: bool) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let Some(f) = slot.flights.iter_mut().find(|f| f.id == id) else {
            return;
        };
        let target = slot.job.target;
        if !f.connected {
            match f.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    return self.finish(i, id, Err(format!("connect {target}: {e}")));
                }
            }
            // A connection under way turns writable once it is made (or has failed, which
            // the error above says).
            if !writable {
                match f.sock.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => return self.finish(i, id, Err(format!("connect {target}: {e}"))),
                }
            }
            f.connected = true;
        }
        if let Some(r) = exchange(&slot.job.check, f, readable) {
            self.finish(i, id, r);
        }
    }

    /// Ends the slot's flight `id` with `result`.
    fn finish(&mut self, i: usize, id: u32, result: Result<(), String>) {
        let slot = self.slots[i].as_mut().expect("a slot finished is live");
        let Some(at) = slot.flights.iter().position(|f| f.id == id) else {
            return;
        };
        // The connection closes here, with a reset; closing it removes it from the poll.
        let f = slot.flights.swap_remove(at);
        self.report(i, f.n, result, f.started.elapsed());
    }

    /// Counts the result of the slot's probe number `n` and keeps its report for the next
    /// batch (the slot's next probe waits until it is sent); a stale result is only counted.
    fn report(&mut self, i: usize, n: u64, result: Result<(), String>, latency: Duration) {
        let slot = self.slots[i].as_mut().expect("a slot reporting is live");
        if let Some(report) = slot.job.tally.record(n, result, latency) {
            slot.reporting = true;
            self.batch.push(report);
            self.reporting.push((i, slot.job.tally.probe));
            self.flush_at.get_or_insert_with(|| Instant::now() + FLUSH);
        }
        self.schedule(i);
    }

    /// Sends the batch of reports if the queue has room (or keeps it for the next try); false
    /// once the queue is closed.
    fn send_reports(&mut self, now: Instant) -> bool {
        let batch = std::mem::take(&mut self.batch);
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.refused = 0;
                for (i, probe) in std::mem::take(&mut self.reporting) {
                    let live = self.slots.get_mut(i).and_then(Option::as_mut);
                    let Some(slot) = live.filter(|s| s.job.tally.probe == probe) else {
                        continue;
                    };
                    if std::mem::take(&mut slot.reporting) {
                        self.schedule(i);
                    }
                }
                self.flush_at = None;
            }
            Err(mpsc::error::TrySendError::Full(batch)) => {
                // A report is counted against the limit once, however long it waits.
                for _ in self.refused..batch.len() {
                    crate::base::metrics::limit_hit("probe_queue");
                }
                self.refused = batch.len();
                self.batch = batch;
                self.flush_at = Some(now + FLUSH);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        }
        true
    }
}

/// A non-blocking connection to `target` under way, closed with a reset when dropped.
fn open(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(|e| format!("socket: {e}"))?;
    sock.set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        sock.bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(format!("connect {target}: {e}")),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// Writes what is left of the machine's request and reads what the response has so far
/// (only when the socket said it was `readable`: the readiness is edge-triggered, so a
/// response that comes later is another event); the result once the machine can judge it,
/// `None` while waiting for the socket.
fn exchange(m: &Machine, f: &mut Flight, readable: bool) -> Option<Result<(), String>> {
    let buf = &mut f.buf;
    let request = m.request();
    while f.sent < request.len() {
        match f.sock.write(&request[f.sent..]) {
            Ok(n) => f.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Err(format!("send: {e}"))),
        }
    }
    let mut chunk = [0u8; 4096];
    loop {
        let cap = match m.judge(buf, f.ended) {
            Step::Done(r) => return Some(r.map(drop).map_err(|e| e.msg)),
            Step::Read(cap) => cap,
        };
        if !readable {
            return None;
        }
        let want = chunk.len().min(cap.saturating_sub(buf.len()).max(1));
        match f.sock.read(&mut chunk[..want]) {
            Ok(0) => f.ended = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Err(format!("receive: {e}"))),
        }
    }
}
