//! Alerts: every change of state (a member up or down, a region removed or returned, a name
//! all down or recovered, an override set, cleared or ended) goes to a webhook (POST JSON)
//! and/or a command (the same JSON on stdin and as `GTMD_*` environment variables).
//!
//! The engine hands alerts over without waiting ([`Alerts::send`]); one task delivers them in
//! order, each with a timeout and retries with backoff. A rate limit (governor: `rate` a
//! minute, bursts of `burst`) folds a storm into one summary that counts what it held back.
//! A slow or dead receiver delays only other alerts, never probing or answering; when the
//! queue is full, alerts are dropped and counted.
//!
//! Every alert has an `id` and a `scope`: `instance` for what one instance decided alone
//! (its own link, its own view, everything while it is cut off from the cluster), `cluster`
//! for what the cluster's quorum decided, sent by its leader. A cluster alert that a new
//! leader sends again (its predecessor died before it could mark it delivered) keeps its id,
//! so a receiver can drop a repeat.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::AlertConfig;

pub const ALERTS: &str = "gtmd_alerts_total";

/// One alert, as sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    /// The event's id: unique, and the same each time the same event is sent.
    #[serde(default)]
    pub id: String,
    /// `cluster` (decided by the cluster's quorum, sent by its leader) or `instance`
    /// (decided by the instance that sent it).
    #[serde(default)]
    pub scope: String,
    /// `member_down`, `member_up`, `region_removed`, `region_returned`, `name_all_down`,
    /// `name_recovered`, `override_set`, `override_cleared`, `override_ended`, in a cluster
    /// `view_disagrees`, `view_agrees`, `cluster_lost`, `cluster_rejoined`,
    /// `resolution_failing`, `resolution_recovered`, or `summary`.
    pub event: String,
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// The domain name a member answers, for a member that is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_state: Option<String>,
    /// The last probe error, for a member going down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an override: its target (`POOL/MEMBER`, `pool:POOL`, `region:REGION`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The command that acts on this by hand: take the member out (or put it back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// In a cluster: the instance that sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// For a summary: how many alerts of each event were held back by the rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<BTreeMap<String, u64>>,
}

impl Alert {
    pub fn new(event: &str) -> Self {
        Alert {
            event: event.to_string(),
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            ..Default::default()
        }
    }
}

/// A new event id from `origin` (the instance that decided it): the origin, when this
/// process started (ns since the Unix epoch, hexadecimal) and a count, so that no two
/// events of the cluster share one.
pub fn new_id(origin: &str) -> String {
    static BOOT: OnceLock<u128> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let boot = BOOT.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{origin}-{boot:x}-{n}")
}

/// An alert to deliver, and where to say that it was (delivered, or given up).
type Queued = (Alert, Option<mpsc::UnboundedSender<String>>);

/// The engine's side: hands alerts to the delivery task without waiting.
#[derive(Clone, Default)]
pub struct Alerts {
    tx: Option<mpsc::Sender<Queued>>,
    /// How `gtmd ctl` reaches this server: the binary, and its --admin / --token-file options.
    ctl: String,
    /// In a cluster: this instance's id, put in every alert.
    instance: Option<String>,
    /// The last [`RECENT`] alerts, newest last, delivered or not (the status page's
    /// timeline).
    recent: Arc<Mutex<VecDeque<Alert>>>,
}

/// How many recent alerts [`Alerts::recent`] keeps.
pub const RECENT: usize = 100;

impl Alerts {
    /// Starts the delivery task when the configuration has a webhook or a command.
    pub fn start(cfg: &AlertConfig, ctl: String) -> Self {
        if cfg.webhook.is_none() && cfg.command.is_empty() {
            return Alerts {
                tx: None,
                ctl,
                instance: None,
                recent: Default::default(),
            };
        }
        let (tx, rx) = mpsc::channel(cfg.queue);
        tokio::spawn(deliver_all(cfg.clone(), rx));
        Alerts {
            tx: Some(tx),
            ctl,
            instance: None,
            recent: Default::default(),
        }
    }

    /// Alerts that arrive on the returned receiver, for tests.
    #[cfg(test)]
    pub fn channel(queue: usize) -> (Self, mpsc::Receiver<Alert>) {
        let (tx, mut q) = mpsc::channel::<Queued>(queue);
        let (out, rx) = mpsc::channel(queue);
        tokio::spawn(async move {
            while let Some((a, _)) = q.recv().await {
                let _ = out.send(a).await;
            }
        });
        let alerts = Alerts {
            tx: Some(tx),
            ctl: String::new(),
            instance: None,
            recent: Default::default(),
        };
        (alerts, rx)
    }

    /// A new delivery task for `cfg` (after a reload), reaching the server as before. The
    /// old task delivers what it holds, then ends.
    pub fn restarted(&self, cfg: &AlertConfig) -> Self {
        let mut a = Self::start(cfg, self.ctl.clone());
        a.instance = self.instance.clone();
        a.recent = self.recent.clone();
        a
    }

    /// Names this instance (its cluster id) in every alert from now on.
    pub fn set_instance(&mut self, id: &str) {
        self.instance = Some(id.to_string());
    }

    /// The `gtmd ctl` command line for `args` (each quoted for a POSIX shell).
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = self.ctl.clone();
        for a in args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s
    }

    /// The recent alerts, newest first.
    pub fn recent(&self) -> Vec<Alert> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().rev().cloned().collect()
    }

    /// Sends `a`: an event of this instance's own, unless it has a scope already.
    pub fn send(&self, a: Alert) {
        self.send_then(a, None);
    }

    /// Sends `a` and says its id on `done` once it was delivered (or given up after the
    /// retries, or folded into a summary by the rate limit). Not said when it is dropped.
    pub fn send_then(&self, mut a: Alert, done: Option<mpsc::UnboundedSender<String>>) {
        a.instance.clone_from(&self.instance);
        if a.scope.is_empty() {
            a.scope = "instance".into();
        }
        if a.id.is_empty() {
            a.id = new_id(self.instance.as_deref().unwrap_or("gtmd"));
        }
        {
            let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if r.len() == RECENT {
                r.pop_front();
            }
            r.push_back(a.clone());
        }
        let Some(tx) = &self.tx else { return };
        if tx.try_send((a, done)).is_err() {
            metrics::counter!(ALERTS, "result" => "dropped").increment(1);
            crate::base::metrics::limit_hit("alerts_queue");
            tracing::warn!("alert queue full: alert dropped");
        }
    }
}

/// A summary of what the rate limit held back (its counts are filled in by the caller).
fn summary() -> Alert {
    let mut s = Alert::new("summary");
    s.id = new_id("summary");
    s.scope = "instance".into();
    s
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

async fn deliver_all(cfg: AlertConfig, mut rx: mpsc::Receiver<Queued>) {
    let one = NonZeroU32::MIN;
    let quota = Quota::per_minute(NonZeroU32::new(cfg.rate).unwrap_or(one))
        .allow_burst(NonZeroU32::new(cfg.burst).unwrap_or(one));
    let limiter = RateLimiter::direct(quota);
    let client = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok();
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = tokio::select! {
            a = rx.recv() => match a {
                Some(a) => Some(a),
                None => {
                    // Replaced by a reload, or stopping: what the rate limit held is still told.
                    if !held.is_empty() {
                        let mut s = summary();
                        s.suppressed = Some(std::mem::take(&mut held));
                        deliver(&cfg, client.as_ref(), &s).await;
                    }
                    return;
                }
            },
            _ = tick.tick() => None,
        };
        match next {
            Some((a, done)) if limiter.check().is_ok() => {
                deliver(&cfg, client.as_ref(), &a).await;
                if let Some(done) = done {
                    let _ = done.send(a.id);
                }
            }
            Some((a, done)) => {
                *held.entry(a.event).or_insert(0) += 1;
                metrics::counter!(ALERTS, "result" => "suppressed").increment(1);
                if let Some(done) = done {
                    let _ = done.send(a.id);
                }
            }
            None if !held.is_empty() && limiter.check().is_ok() => {
                let total: u64 = held.values().sum();
                tracing::warn!(
                    total,
                    "alerts held back by the rate limit: sending a summary"
                );
                let mut s = summary();
                s.suppressed = Some(std::mem::take(&mut held));
                deliver(&cfg, client.as_ref(), &s).await;
            }
            None => {}
        }
    }
}

/// Delivers `a` to the webhook and the command, each with retries and backoff.
async fn deliver(cfg: &AlertConfig, client: Option<&reqwest::Client>, a: &Alert) {
    let body = serde_json::to_string(a).unwrap_or_default();
    if let (Some(url), Some(client)) = (&cfg.webhook, client) {
        let attempt = || async {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP status {}", r.status().as_u16()))
            }
        };
        retry(cfg, "webhook", &a.event, attempt).await;
    }
    if !cfg.command.is_empty() {
        let attempt = || run_command(cfg, a, &body);
        retry(cfg, "command", &a.event, attempt).await;
    }
}

async fn retry<F, Fut>(cfg: &AlertConfig, via: &str, event: &str, attempt: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut backoff = Duration::from_millis(500);
    for n in 0..=cfg.retries {
        match tokio::time::timeout(cfg.timeout, attempt()).await {
            Ok(Ok(())) => {
                metrics::counter!(ALERTS, "result" => "sent").increment(1);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(via, event, attempt = n + 1, error = %e, "alert not delivered")
            }
            Err(_) => tracing::warn!(via, event, attempt = n + 1, "alert delivery timed out"),
        }
        if n < cfg.retries {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
    metrics::counter!(ALERTS, "result" => "failed").increment(1);
    tracing::error!(via, event, "alert given up after retries");
}

async fn run_command(cfg: &AlertConfig, a: &Alert, body: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(&cfg.command[0]);
    cmd.args(&cfg.command[1..])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .env("GTMD_EVENT", &a.event)
        .env("GTMD_ID", &a.id)
        .env("GTMD_SCOPE", &a.scope)
        .env("GTMD_TIME", &a.time)
        .env("GTMD_JSON", body);
    let opt = |k: &str, v: &Option<String>| (k.to_string(), v.clone().unwrap_or_default());
    for (k, v) in [
        opt("GTMD_NAME", &a.name),
        opt("GTMD_POOL", &a.pool),
        opt("GTMD_REGION", &a.region),
        opt("GTMD_MEMBER", &a.member),
        opt("GTMD_CNAME", &a.cname),
        opt("GTMD_OLD_STATE", &a.old_state),
        opt("GTMD_NEW_STATE", &a.new_state),
        opt("GTMD_ERROR", &a.error),
        opt("GTMD_REASON", &a.reason),
        opt("GTMD_TARGET", &a.target),
        opt("GTMD_COMMAND", &a.command),
        opt("GTMD_INSTANCE", &a.instance),
    ] {
        cmd.env(k, v);
    }
    cmd.env(
        "GTMD_ADDRESS",
        a.address.map(|x| x.to_string()).unwrap_or_default(),
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: {e}", cfg.command[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body.as_bytes()).await;
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {status}", cfg.command[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_alert_gets_an_id_and_the_instance_scope_unless_it_has_them() {
        let (mut alerts, mut rx) = Alerts::channel(4);
        alerts.set_instance("a");
        alerts.send(Alert::new("cluster_lost"));
        let mut decided = Alert::new("member_down");
        decided.id = "b-1-7".into();
        decided.scope = "cluster".into();
        alerts.send(decided);
        let own = rx.recv().await.unwrap();
        assert_eq!(own.scope, "instance");
        assert!(own.id.starts_with("a-"), "{}", own.id);
        assert_eq!(own.instance.as_deref(), Some("a"));
        let again = rx.recv().await.unwrap();
        assert_eq!(
            (again.id.as_str(), again.scope.as_str()),
            ("b-1-7", "cluster")
        );
        assert_ne!(new_id("a"), new_id("a"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("web/eu-1"), "web/eu-1");
        assert_eq!(shell_quote("taken out"), "'taken out'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
