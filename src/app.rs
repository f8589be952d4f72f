//! Starting and owning every task: zones, engine, probes, admin API and DNS transports.
//! [`start`] takes already-bound sockets (tests bind port 0) and a cancellation token.

use std::sync::Arc;

use anyhow::Context;
use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cluster::Kind;
use crate::config::Config;
use crate::dns::listen::{self, DnsListener};
use crate::dns::{Publication, Published};
use crate::engine::Engine;
use crate::ops::reload::{Origin, Reloads, Token};

/// Sockets bound before [`start`]: UDP and TCP per DNS listen address, and the admin API.
pub struct Listeners {
    pub dns: Vec<DnsListener>,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds every address of `cfg`.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let mut dns = Vec::new();
        for &a in &cfg.listen {
            dns.push(
                DnsListener::bind(a)
                    .await
                    .with_context(|| format!("binding DNS on {a}"))?,
            );
        }
        let admin = TcpListener::bind(cfg.admin_listen)
            .await
            .with_context(|| format!("binding the admin API on {}", cfg.admin_listen))?;
        Ok(Self { dns, admin })
    }
}

/// A running gtmd: the published state and a way to wait for readiness.
pub struct Running {
    pub published: Published,
    pub ready: watch::Receiver<bool>,
    /// Reads the configuration and zones again and swaps them in (as SIGHUP does).
    pub reloads: Reloads,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until every task has ended (after the stop token is cancelled).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts gtmd on bound `listeners`. DNS is served once the first probe round is complete.
pub async fn start(
    cfg: Config,
    listeners: Listeners,
    stop: CancellationToken,
) -> anyhow::Result<Running> {
    start_as(cfg, listeners, stop, Kind::Server).await
}

/// Starts a probe-only agent: it probes and publishes its views to the cluster (which counts
/// them in the quorum), serves its admin API, and answers no DNS.
pub async fn start_agent(
    cfg: Config,
    admin: TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<Running> {
    if cfg.cluster.is_none() {
        anyhow::bail!(
            "{}: an agent needs a [cluster] table: it serves no DNS, it only publishes its views to the cluster",
            cfg.source
        );
    }
    let listeners = Listeners {
        dns: Vec::new(),
        admin,
    };
    start_as(cfg, listeners, stop, Kind::Agent).await
}

async fn start_as(
    cfg: Config,
    listeners: Listeners,
    stop: CancellationToken,
    kind: Kind,
) -> anyhow::Result<Running> {
    let zones = Arc::new(cfg.load_zones()?);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let cfg = Arc::new(cfg);
    let published: Published = Arc::new(ArcSwap::from_pointee(Publication::default()));
    // Never an error: DNS does not wait on the state file (see base::state::restore).
    let overrides = match &cfg.state_file {
        Some(p) => crate::base::state::restore(p),
        None => Default::default(),
    };
    let token: Token = Arc::new(ArcSwapOption::from(
        crate::ops::reload::read_token(&cfg)?.map(Arc::new),
    ));
    let origin = Origin::of(&cfg);
    let (mut engine, ready) = Engine::new(cfg.clone(), zones, published.clone());
    let admin_bound = listeners.admin.local_addr()?;
    let ctl = ctl_command(admin_bound, cfg.token_file.as_deref());
    engine.set_alerts(crate::base::alert::Alerts::start(&cfg.alerts, ctl));
    let cached = overrides.overrides.clone();
    engine.restore_overrides(overrides);
    join_cluster(&mut engine, &cfg, kind, cached, &stop);
    engine.start_probes().map_err(anyhow::Error::msg)?;
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let mut tasks = JoinSet::new();
    let (reloads, reloader) = crate::ops::reload::spawn(
        origin,
        cmd_tx.clone(),
        token.clone(),
        admin_bound,
        &cfg,
        stop.clone(),
    );
    tasks.spawn(async move {
        let _ = reloader.await;
    });
    tasks.spawn(crate::dns::notify::run(
        engine.notices(),
        engine.secondaries(),
        stop.clone(),
    ));
    tasks.spawn(engine.run(cmd_rx, stop.clone()));
    tasks.spawn(crate::ops::admin::serve(
        listeners.admin,
        crate::ops::admin::Handles {
            published: published.clone(),
            engine: cmd_tx,
            reloads: reloads.clone(),
            token,
            allowed_hosts: std::sync::Arc::new(cfg.admin_allowed_hosts.clone()),
        },
        cfg.admin_limits,
        stop.clone(),
    ));
    tasks.spawn(serve_dns(
        listeners.dns,
        published.clone(),
        ready.clone(),
        stop.clone(),
    ));
    Ok(Running {
        published,
        ready,
        reloads,
        tasks,
    })
}

/// Starts the etcd session of `cfg`'s [cluster], if any, and hands it to the engine.
fn join_cluster(
    engine: &mut Engine,
    cfg: &Config,
    kind: Kind,
    cached: Vec<crate::base::state::Override>,
    stop: &CancellationToken,
) {
    if let Some(c) = &cfg.cluster {
        tracing::info!(id = %c.id, cluster = %c.name, endpoints = ?c.endpoints, quorum = %c.quorum, "joining the cluster");
        let handle = crate::cluster::start(c, kind, cfg.probe_source, cached, stop.clone());
        engine.join_cluster(handle);
    }
}

/// The `gtmd ctl` command that reaches this server, for alerts to carry. The token file's
/// path is absolute: the command is run from wherever the operator's shell or pager is.
fn ctl_command(admin: std::net::SocketAddr, token_file: Option<&std::path::Path>) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "gtmd".into());
    let mut ctl = format!(
        "{} ctl --admin {admin}",
        crate::base::alert::shell_quote(&exe)
    );
    if let Some(t) = token_file {
        let t = std::path::absolute(t).unwrap_or_else(|_| t.to_path_buf());
        ctl += &format!(
            " --token-file {}",
            crate::base::alert::shell_quote(&t.display().to_string())
        );
    }
    ctl
}

/// Serves DNS on `listeners` once the first probe round is done, until `stop`.
async fn serve_dns(
    listeners: Vec<DnsListener>,
    published: Published,
    mut ready: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    tokio::select! {
        r = ready.wait_for(|r| *r) => if r.is_err() { return },
        _ = stop.cancelled() => return,
    }
    // Reading the zones left their parsing's garbage on the heap: give it back.
    let _ = tokio::task::spawn_blocking(crate::base::release_free_memory).await;
    let mut set = JoinSet::new();
    for l in listeners {
        if let (Ok(u), Ok(t)) = (l.local_addr(), l.tcp.local_addr()) {
            tracing::info!(udp = %u, tcp = %t, sockets = l.udp.len(), "serving DNS");
        }
        if let Err(e) = listen::spawn(&mut set, l, published.clone(), stop.clone()) {
            tracing::error!(error = %e, "cannot start the DNS threads");
            stop.cancel();
        }
    }
    while set.join_next().await.is_some() {}
}
