//! Health probing: one loop per member, each on its own jittered schedule, with a bound on
//! how many probes are in flight at once. TCP and plain HTTP loops run together on the probe
//! thread ([`plain`]); the others are a task each. One hanging backend only ever holds its
//! own loop (and one in-flight slot, for at most its timeout), never another member's probe.
//!
//! Results are data ([`ProbeReport`]) sent to the engine; probing never changes state itself.

mod check;
pub mod http;
pub mod icmp;
mod plain;
pub mod resolve;
pub mod stream;
mod wheel;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;

use crate::config::{CheckKind, Config, ProbeAt};
use crate::steer::health::{Health, Thresholds};

/// The result of one probe of one member.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The probe loop that made it ([`Prober::sync`] says which member each loop serves).
    pub probe: u64,
    pub ok: bool,
    pub latency: Duration,
    pub error: Option<String>,
    pub at: Instant,
    /// For a member that is a domain name: why resolving it fails, while it does.
    pub resolution: Option<String>,
    /// For a member that is a domain name: where its addresses came from (gtmd's own zones,
    /// or which resolvers).
    pub resolved_from: Option<String>,
    /// For a member that is a domain name: the addresses it resolved to last.
    pub resolved: Option<Vec<std::net::IpAddr>>,
}

/// Reports as the engine receives them: one probe task's, or a batch of the probe thread's.
pub type Reports = Vec<ProbeReport>;

/// What one probe loop probes: an address, or the addresses a name resolves to.
enum Target {
    Direct(Direct),
    Resolved(Box<resolve::Resolved>),
}

impl Target {
    /// Why resolving the target's name fails, while it does.
    fn resolution(&self) -> Option<String> {
        match self {
            Target::Direct(_) => None,
            Target::Resolved(r) => r.failing(),
        }
    }

    /// The addresses the target's name resolved to last, for one that is a name.
    fn resolved(&self) -> Option<Vec<std::net::IpAddr>> {
        match self {
            Target::Direct(_) => None,
            Target::Resolved(r) => r.addresses_now(),
        }
    }

    /// Where the addresses of the target's name came from, for one that is a name.
    fn source(&self) -> Option<String> {
        match self {
            Target::Direct(_) => None,
            Target::Resolved(r) => r.source(),
        }
    }

    /// Probes once; on success, the round trip to report if the probe measures one (ICMP)
    /// rather than its own duration.
    async fn probe(&self) -> Result<Option<Duration>, String> {
        match self {
            Target::Direct(d) => d.probe().await,
            Target::Resolved(r) => r.probe().await,
        }
    }
}

/// A probe of one address.
pub enum Direct {
    /// A check over a TCP connection ([`check::Machine`]).
    Stream(Box<stream::StreamProbe>),
    /// The address, the source, the check, and how long its echoes are waited for.
    Icmp(
        std::net::IpAddr,
        Option<std::net::IpAddr>,
        crate::config::IcmpCheck,
        Duration,
    ),
}

impl Direct {
    async fn probe(&self) -> Result<Option<Duration>, String> {
        match self {
            Direct::Stream(s) => s.probe().await.map(|()| None),
            Direct::Icmp(a, s, c, within) => icmp::probe(*a, *s, c, *within).await.map(Some),
        }
    }
}

/// How often a loop probes: every `interval` (±10%), or every `fast` while its member is
/// between states (suspect, or recovering) by the loop's own count of its results, with the
/// check's rise and fall, as the engine counts them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pace {
    interval: Duration,
    fast: Option<Duration>,
    thresholds: Thresholds,
}

/// Everything a probe loop does; a loop runs on unchanged across a reload while this holds.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    target: ProbeAt,
    /// The resolvers of a target that is a name (empty otherwise), and how long its
    /// addresses are used while resolution fails.
    resolvers: Vec<std::net::SocketAddr>,
    serve_stale: Duration,
    /// Shared by every member of the check: a spec is kept per member, for a reload to tell
    /// whether the member's probe changed.
    check: Arc<str>,
    kind: Arc<CheckKind>,
    pace: Pace,
    timeout: Duration,
    max_body: usize,
    source: Option<std::net::IpAddr>,
}

struct Loop {
    id: u64,
    spec: Spec,
    task: Task,
}

/// Where a loop runs: its own task, or the probe thread ([`plain`]).
enum Task {
    Own(AbortHandle),
    Shared,
}

/// The running probe loops, one per member, keyed by pool and member name.
///
/// [`Prober::sync`] makes them match a configuration: loops of members that are gone or whose
/// probe changed are aborted at once, new ones start (with a probe at once), and the rest run
/// on, so a reload neither probes unchanged members again nor loses a kept connection.
/// Dropping the prober aborts every loop.
pub struct Prober {
    tx: mpsc::Sender<Reports>,
    limit: Arc<Semaphore>,
    max_in_flight: usize,
    /// Keyed by pool, member and check name.
    loops: HashMap<(String, String, String), Box<Loop>>,
    next_id: u64,
    /// The resolver for members that are domain names, made when first needed, with the
    /// servers it asks.
    resolver: Option<(Vec<std::net::SocketAddr>, resolve::Resolver)>,
    /// The probe thread, started when first needed (with the current `limit`).
    shared: Option<plain::Thread>,
    /// What gtmd's own zones give for the names probed inside them (the engine stores it).
    local: resolve::LocalTable,
}

/// Each check's name and kind, once, for the specs of all its members to share.
fn shared_checks(cfg: &Config) -> Vec<(Arc<str>, Arc<CheckKind>)> {
    cfg.checks
        .iter()
        .map(|c| (Arc::from(c.name.as_str()), Arc::new(c.kind.clone())))
        .collect()
}

impl Prober {
    pub fn new(tx: mpsc::Sender<Reports>) -> Self {
        Self {
            tx,
            limit: Arc::new(Semaphore::new(0)),
            max_in_flight: 0,
            loops: HashMap::new(),
            next_id: 0,
            resolver: None,
            shared: None,
            local: Default::default(),
        }
    }

    /// Where the engine stores what gtmd's own zones give for the names probed inside them.
    pub fn local(&self) -> &resolve::LocalTable {
        &self.local
    }

    /// Starts and stops loops so that each check of each member of `cfg` has one; returns
    /// the loop ids by member index and check position, and how many loops were started.
    /// On error (a check that cannot be built) nothing changes.
    pub fn sync(&mut self, cfg: &Config) -> Result<(Vec<Vec<u64>>, usize), String> {
        if cfg.max_in_flight != self.max_in_flight {
            // Every loop holds the old semaphore: start them all again with the new one.
            self.stop_all();
        }
        let mut plan = Vec::with_capacity(cfg.members.len());
        let shared = shared_checks(cfg);
        for (mi, m) in cfg.members.iter().enumerate() {
            for (ci, (c, target)) in m.checks.iter().enumerate() {
                let c = *c;
                let check = &cfg.checks[c];
                let key = (
                    cfg.pools[m.pool].name.clone(),
                    m.name.clone(),
                    check.name.clone(),
                );
                let (resolvers, serve_stale) = match target {
                    ProbeAt::Resolve(..) => (cfg.resolvers.clone(), cfg.serve_stale),
                    ProbeAt::Addr(_) => (Vec::new(), Duration::ZERO),
                };
                let spec = Spec {
                    target: target.clone(),
                    resolvers,
                    serve_stale,
                    check: shared[c].0.clone(),
                    kind: shared[c].1.clone(),
                    pace: Pace {
                        interval: check.interval,
                        fast: check.fast_interval,
                        thresholds: Thresholds {
                            fall: check.fall,
                            rise: check.rise,
                        },
                    },
                    timeout: check.timeout,
                    max_body: cfg.max_body,
                    source: cfg.probe_source,
                };
                let start = match self.loops.get(&key) {
                    Some(l) if l.spec == spec => None,
                    _ => Some(
                        self.target_of(cfg, check, target)
                            .map_err(|e| format!("pool {} member {}: {e}", key.0, key.1))?,
                    ),
                };
                plan.push(((mi, ci), key, spec, start));
            }
        }
        if cfg.max_in_flight != self.max_in_flight {
            self.limit = Arc::new(Semaphore::new(cfg.max_in_flight));
            self.max_in_flight = cfg.max_in_flight;
        }
        let mut old = std::mem::take(&mut self.loops);
        let mut ids: Vec<Vec<u64>> = cfg
            .members
            .iter()
            .map(|m| Vec::with_capacity(m.checks.len()))
            .collect();
        let mut started = 0;
        for ((mi, _), key, spec, start) in plan {
            let l = match start {
                None => old.remove(&key).expect("planned as kept, so present"),
                Some(target) => {
                    if let Some(l) = old.remove(&key) {
                        self.stop(l);
                    }
                    started += 1;
                    self.spawn(spec, target)?
                }
            };
            ids[mi].push(l.id);
            self.loops.insert(key, l);
        }
        for l in old.into_values() {
            self.stop(l);
        }
        Ok((ids, started))
    }

    fn spawn(&mut self, spec: Spec, target: Target) -> Result<Box<Loop>, String> {
        self.next_id += 1;
        let id = self.next_id;
        let tally = Tally::new(id, &spec.check, spec.pace);
        let check = match target {
            Target::Direct(Direct::Stream(s)) if s.is_plain() => {
                let (check, at, source) = s.into_plain();
                Ok((at, source, check))
            }
            other => Err(other),
        };
        let task = match check {
            Ok((target, source, check)) => {
                if self.shared.is_none() {
                    self.shared = Some(plain::Thread::start(self.tx.clone(), self.limit.clone())?);
                }
                let thread = self.shared.as_ref().expect("started above");
                thread.add(plain::Job {
                    target,
                    source,
                    check,
                    timeout: spec.timeout,
                    tally,
                });
                Task::Shared
            }
            Err(target) => Task::Own(
                tokio::spawn(probe_loop(
                    target,
                    tally,
                    spec.timeout,
                    self.tx.clone(),
                    self.limit.clone(),
                ))
                .abort_handle(),
            ),
        };
        Ok(Box::new(Loop { id, spec, task }))
    }

    fn stop(&self, l: Box<Loop>) {
        match l.task {
            Task::Own(task) => task.abort(),
            Task::Shared => {
                if let Some(thread) = &self.shared {
                    thread.remove(l.id);
                }
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, l) in self.loops.drain() {
            if let Task::Own(task) = l.task {
                task.abort();
            }
        }
        // Its connections close and its permits return with it.
        self.shared = None;
    }
}

impl Prober {
    /// What a loop probes: `target` with `check`.
    fn target_of(
        &mut self,
        cfg: &Config,
        check: &crate::config::Check,
        target: &ProbeAt,
    ) -> Result<Target, String> {
        let (source, max_body) = (cfg.probe_source, cfg.max_body);
        let (kind, timeout) = (check.kind.clone(), check.timeout);
        let make = move |at| check::probe_of(&kind, timeout, at, source, max_body);
        Ok(match target {
            ProbeAt::Addr(a) => Target::Direct(make(*a)?),
            ProbeAt::Resolve(name, port) => {
                let resolver = match &self.resolver {
                    Some((servers, r)) if *servers == cfg.resolvers => r.clone(),
                    _ => {
                        let r = resolve::resolver(&cfg.resolvers)?;
                        self.resolver = Some((cfg.resolvers.clone(), r.clone()));
                        r
                    }
                };
                Target::Resolved(Box::new(resolve::Resolved::new(
                    (name.clone(), *port),
                    (resolver, &cfg.resolvers, self.local.clone()),
                    (check.timeout, cfg.serve_stale),
                    Box::new(make),
                )))
            }
        })
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// What a loop keeps from probe to probe: its metrics, its pace, and its member's state by
/// its own count of results.
///
/// Probes may overlap: while a member is between states, or up with a probe unanswered, the
/// next one goes out a fast interval after the last was *sent*, each with its own timeout,
/// so that a backend that hangs is confirmed as soon as one that refuses. Each probe has a
/// number, and a result older than one already counted is dropped: results count in the
/// order the probes were sent.
pub(crate) struct Tally {
    pub(crate) probe: u64,
    pace: Pace,
    health: Health,
    /// When the next probe is due at the steady pace.
    due: Instant,
    /// When the last probe went out.
    last_sent: Option<Instant>,
    /// Probes sent, and the number of the newest one whose result was counted.
    sent: u64,
    counted: u64,
    in_flight: u32,
    ok: metrics::Counter,
    fail: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Tally {
    fn new(probe: u64, check: &str, pace: Pace) -> Self {
        crate::base::metrics::handle();
        let check = check.to_string();
        Self {
            probe,
            pace,
            health: Health::new(),
            due: Instant::now(),
            last_sent: None,
            sent: 0,
            counted: 0,
            in_flight: 0,
            ok: metrics::counter!(crate::base::metrics::PROBES, "check" => check.clone(), "result" => "ok"),
            fail: metrics::counter!(crate::base::metrics::PROBES, "check" => check.clone(), "result" => "fail"),
            seconds: metrics::histogram!(crate::base::metrics::PROBE_SECONDS, "check" => check),
        }
    }

    /// The time from one probe to the next: the interval with ±10% jitter, so that members
    /// do not probe in lockstep.
    fn jittered(&self) -> Duration {
        self.pace
            .interval
            .mul_f64(rand::rng().random_range(0.9..1.1))
    }

    /// Whether the next probe comes a fast interval after the last one went out: the member
    /// is between states (failures counted while up, successes while down), or up with a
    /// probe not yet answered (a hang is a failure not yet known).
    fn hurry(&self) -> bool {
        use crate::steer::health::State;
        self.pace.fast.is_some()
            && (self.health.streak > 0 || (self.health.state == State::Up && self.in_flight > 0))
    }

    /// When the next probe goes out; `None` while one is in flight at the steady pace (the
    /// next waits for its result).
    pub(crate) fn next(&self) -> Option<Instant> {
        match (self.hurry(), self.pace.fast, self.last_sent) {
            (true, Some(fast), Some(sent)) => Some(self.due.min(sent + fast)),
            _ if self.in_flight > 0 => None,
            _ => Some(self.due),
        }
    }

    /// Counts a probe going out at `now`; returns its number.
    pub(crate) fn sent(&mut self, now: Instant) -> u64 {
        self.sent += 1;
        self.in_flight += 1;
        self.last_sent = Some(now);
        self.due = now + self.jittered();
        self.sent
    }

    /// Counts the result of probe number `n` and makes the report; `None` if a newer probe's
    /// result has been counted already (this one is stale).
    pub(crate) fn record(
        &mut self,
        n: u64,
        result: Result<(), String>,
        latency: Duration,
    ) -> Option<ProbeReport> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.seconds.record(latency.as_secs_f64());
        if result.is_ok() { &self.ok } else { &self.fail }.increment(1);
        if n <= self.counted {
            return None;
        }
        self.counted = n;
        self.health.observe(result.is_ok(), self.pace.thresholds);
        // Never fall behind by more than one interval (after a long stall, resume from now).
        let at = Instant::now();
        self.due = self.due.max(at);
        Some(ProbeReport {
            probe: self.probe,
            ok: result.is_ok(),
            latency,
            error: result.err(),
            at,
            resolution: None,
            resolved_from: None,
            resolved: None,
        })
    }
}

/// One probe of a loop on its own task, in flight: its number, when it went out, its permit
/// and its future (bounded by the timeout).
type Flight<'a> = (
    u64,
    Instant,
    tokio::sync::OwnedSemaphorePermit,
    std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<Duration>, String>> + Send + 'a>,
    >,
);

/// Waits for the first of `flights` to end; removes it and returns its number, start and
/// result. Pending forever when none is in flight.
async fn first_done(
    flights: &mut Vec<Flight<'_>>,
) -> (u64, Instant, Result<Option<Duration>, String>) {
    std::future::poll_fn(|cx| {
        for i in 0..flights.len() {
            if let std::task::Poll::Ready(r) = flights[i].3.as_mut().poll(cx) {
                let (n, start, _permit, _) = flights.swap_remove(i);
                return std::task::Poll::Ready((n, start, r));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Sleeps until `at` (forever if `None`), then takes a permit of `limit`.
async fn permit_at(
    at: Option<Instant>,
    limit: &Arc<Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
    limit.clone().acquire_owned().await.ok()
}

/// A loop on its own task, for the probes the probe thread does not make.
async fn probe_loop(
    target: Target,
    mut tally: Tally,
    timeout: Duration,
    tx: mpsc::Sender<Reports>,
    limit: Arc<Semaphore>,
) {
    // The first probe goes out at once (the first round decides readiness); later ones are
    // spaced as the tally says.
    let target = &target;
    let mut flights: Vec<Flight<'_>> = Vec::new();
    loop {
        tokio::select! {
            permit = permit_at(tally.next(), &limit) => {
                let Some(permit) = permit else { return };
                let start = Instant::now();
                let n = tally.sent(start);
                // The probe's own future is large (TLS, a name's resolution): boxed, it takes
                // memory only while in flight.
                let fut = Box::pin(async move {
                    match tokio::time::timeout(timeout, target.probe()).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("timed out after {timeout:?}")),
                    }
                });
                flights.push((n, start, permit, fut));
            }
            (n, start, result) = first_done(&mut flights) => {
                // An ICMP probe reports its round trip, the figure max_rtt is held to.
                let latency = match &result {
                    Ok(Some(rtt)) => *rtt,
                    _ => start.elapsed(),
                };
                let Some(mut report) = tally.record(n, result.map(drop), latency) else {
                    continue;
                };
                report.resolution = target.resolution();
                report.resolved_from = target.source();
                report.resolved = target.resolved();
                // A full queue means the engine is behind: wait for room (nothing is lost;
                // probing slows down instead) and count it.
                match tx.try_send(vec![report]) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(report)) => {
                        crate::base::metrics::limit_hit("probe_queue");
                        if tx.send(report).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
