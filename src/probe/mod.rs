//! Health probing: one task per member, each on its own jittered schedule, with a bound on
//! how many probes are in flight at once. One hanging backend only ever holds its own task
//! (and one in-flight slot, for at most its timeout), never another member's probe.
//!
//! Results are data ([`ProbeReport`]) sent to the engine; probing never changes state itself.

pub mod http;
pub mod tcp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::config::{CheckKind, Config};

/// The result of one probe of one member.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The member's index in [`Config::members`].
    pub member: usize,
    pub ok: bool,
    pub latency: Duration,
    pub error: Option<String>,
    pub at: Instant,
}

enum Target {
    Tcp(std::net::SocketAddr),
    Http(Box<http::HttpProbe>),
}

impl Target {
    async fn probe(&mut self) -> Result<(), String> {
        match self {
            Target::Tcp(a) => tcp::probe(*a).await,
            Target::Http(h) => h.probe().await,
        }
    }
}

/// Starts one probe loop per member; they stop when the returned set is dropped or aborted.
pub fn spawn_all(cfg: &Config, tx: mpsc::Sender<ProbeReport>) -> Result<JoinSet<()>, String> {
    let limit = Arc::new(Semaphore::new(cfg.max_in_flight));
    let mut set = JoinSet::new();

    for (id, m) in cfg.members.iter().enumerate() {
        let check = &cfg.checks[m.check];
        let target = match &check.kind {
            CheckKind::Tcp { .. } => Target::Tcp(m.target),
            CheckKind::Http(h) => Target::Http(Box::new(
                http::HttpProbe::new(h, m.target, cfg.max_body).map_err(|e| {
                    format!("pool {} member {}: {e}", cfg.pools[m.pool].name, m.name)
                })?,
            )),
        };
        let (interval, timeout) = (check.interval, check.timeout);
        let (tx, limit) = (tx.clone(), limit.clone());
        let name = check.name.clone();
        set.spawn(probe_loop(id, name, target, interval, timeout, tx, limit));
    }
    Ok(set)
}

#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    member: usize,
    check: String,
    mut target: Target,
    interval: Duration,
    timeout: Duration,
    tx: mpsc::Sender<ProbeReport>,
    limit: Arc<Semaphore>,
) {
    // The first probe goes out at once (the first round decides readiness); later ones are
    // spaced by the interval with ±10% jitter so that members do not probe in lockstep.
    let mut next = tokio::time::Instant::now();
    crate::stats::handle();
    let ok_count =
        metrics::counter!(crate::stats::PROBES, "check" => check.clone(), "result" => "ok");
    let fail_count =
        metrics::counter!(crate::stats::PROBES, "check" => check.clone(), "result" => "fail");
    let seconds = metrics::histogram!(crate::stats::PROBE_SECONDS, "check" => check);
    loop {
        tokio::time::sleep_until(next).await;
        let jitter = rand::rng().random_range(0.9..1.1);
        next += interval.mul_f64(jitter);
        let Ok(_permit) = limit.acquire().await else {
            return;
        };
        let start = Instant::now();
        let result = match tokio::time::timeout(timeout, target.probe()).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        };
        let latency = start.elapsed();
        seconds.record(latency.as_secs_f64());
        if result.is_ok() {
            &ok_count
        } else {
            &fail_count
        }
        .increment(1);
        let report = ProbeReport {
            member,
            ok: result.is_ok(),
            latency,
            error: result.err(),
            at: Instant::now(),
        };
        if tx.send(report).await.is_err() {
            return;
        }
        // Never fall behind by more than one interval (after a long stall, resume from now).
        let now = tokio::time::Instant::now();
        if next < now {
            next = now;
        }
    }
}
