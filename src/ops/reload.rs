//! Live reload. A request (SIGHUP, or `POST /reload` on the admin API) makes the reloader
//! task read the configuration file and the zones again, off the engine's thread, and hand
//! the result to the engine, which swaps it in at once or rejects it whole:
//!
//! ```text
//! SIGHUP / POST /reload ──▶ reloader: read config + zones + token (blocking thread)
//!                                │ error: Command::Reload(Err) ─▶ engine logs, alerts, counts;
//!                                │                               state untouched
//!                                ▼ ok
//!                           engine: keep the health of unchanged members, start and stop
//!                           probe loops, publish one new snapshot ─▶ reply ─▶ new token
//! ```
//!
//! Requests are served one at a time. Nothing here changes state itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EMBEDDED_NAME};
use crate::engine::Command;

pub use crate::engine::{Loaded, ReloadReport};

/// Where the running configuration came from, so that it can be read again.
#[derive(Debug, Clone)]
pub enum Origin {
    File(PathBuf),
    Embedded,
    /// Given as text: there is nothing to read again.
    Text(String),
}

impl Origin {
    pub fn of(cfg: &Config) -> Self {
        match &cfg.path {
            Some(p) => Origin::File(p.clone()),
            None if cfg.source == EMBEDDED_NAME => Origin::Embedded,
            None => Origin::Text(cfg.source.clone()),
        }
    }

    /// Reads and checks the configuration, its zones and its token file.
    pub fn read(&self) -> anyhow::Result<(Loaded, Option<String>)> {
        let cfg = match self {
            Origin::File(p) => Config::load(p)?,
            Origin::Embedded => Config::embedded()?,
            Origin::Text(name) => anyhow::bail!(
                "{name} was given as text, not read from a file: there is nothing to read again"
            ),
        };
        let zones = cfg.load_zones()?;
        let token = read_token(&cfg)?;
        Ok((Loaded { cfg, zones }, token))
    }
}

/// The bearer token in `admin.token_file`, if one is configured.
pub fn read_token(cfg: &Config) -> anyhow::Result<Option<String>> {
    let Some(p) = &cfg.token_file else {
        return Ok(None);
    };
    let t =
        std::fs::read_to_string(p).with_context(|| format!("admin.token_file {}", p.display()))?;
    let t = t.trim().to_string();
    anyhow::ensure!(!t.is_empty(), "admin.token_file {} is empty", p.display());
    Ok(Some(t))
}

/// The admin API's token; a reload may replace it.
pub type Token = Arc<ArcSwapOption<String>>;

type Reply = oneshot::Sender<Result<ReloadReport, String>>;

/// Asks the reloader for a reload; cheap to clone.
#[derive(Clone)]
pub struct Reloads(mpsc::Sender<Reply>);

impl Reloads {
    /// Reloads and says what changed, or why nothing did.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "gtmd is stopping".to_string())?;
        rx.await.map_err(|_| "gtmd is stopping".to_string())?
    }
}

/// A reload is judged against the address the admin API is bound to, not the one the new
/// file names (`admin.listen` takes effect at the next start): a listener that is not on
/// loopback keeps needing a token.
fn check_token(admin_bound: SocketAddr, token: &Option<String>) -> anyhow::Result<()> {
    anyhow::ensure!(
        token.is_some() || admin_bound.ip().to_canonical().is_loopback(),
        "the admin API listens on {admin_bound}, not a loopback address (admin.listen changes \
         at the next start): keep admin.token_file so that changes still need a token"
    );
    Ok(())
}

/// How often the files a reload would read again by itself (the `[geo]` databases) are
/// looked at.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The files whose change reloads by itself: the `[geo]` databases of `cfg`.
fn watched(cfg: &Config) -> Vec<PathBuf> {
    cfg.geo
        .as_ref()
        .map(|g| g.databases.iter().map(|d| d.path.clone()).collect())
        .unwrap_or_default()
}

/// Each watched file's inode, length, and modification and change times (`None`:
/// unreadable): a file renamed into place is another inode, one copied over with its old
/// modification time kept (`cp -p`) has a new change time.
type Stamps = Vec<Option<(u64, u64, i64, i64, i64, i64)>>;

fn stamps(paths: &[PathBuf]) -> Stamps {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ))
        })
        .collect()
}

/// Starts the reloader task; it ends when `stop` is cancelled. `admin_bound` is where the
/// admin API listens. A `[geo]` database that changed, and then stayed the same for
/// [`WATCH_EVERY`] (a writer that copies in place is done), reloads by itself, 2 to 4 s
/// after the change; the file is read whole, so one replaced by a rename (as
/// `geoipupdate` does) is never read half-written.
pub fn spawn(
    origin: Origin,
    engine: mpsc::Sender<Command>,
    token: Token,
    admin_bound: SocketAddr,
    first: &Config,
    stop: CancellationToken,
) -> (Reloads, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Reply>(8);
    let mut files = watched(first);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut seen, mut last) = (stamps(&files), None::<Stamps>);
        loop {
            let reply = tokio::select! {
                r = rx.recv() => match r { Some(r) => Some(r), None => return },
                _ = tick.tick() => {
                    let now = stamps(&files);
                    let settled = now != seen && last.as_ref() == Some(&now);
                    last = Some(now);
                    if !settled {
                        continue;
                    }
                    tracing::info!(files = ?files, "a [geo] database changed: reloading");
                    None
                }
                _ = stop.cancelled() => return,
            };
            // What is read is at least as new as this: a change that lands while the
            // reload reads or builds is seen at the next look, and read then.
            let before = stamps(&files);
            let Some(result) = reload_once(&origin, &engine, &token, admin_bound).await else {
                if let Some(r) = reply {
                    let _ = r.send(Err("gtmd is stopping".into()));
                }
                return;
            };
            seen = before;
            if let Ok((_, cfg_files)) = &result {
                if *cfg_files != files {
                    files.clone_from(cfg_files);
                    seen = stamps(&files);
                }
            }
            last = None;
            match reply {
                Some(r) => {
                    let _ = r.send(result.map(|(report, _)| report));
                }
                None => {
                    if let Err(e) = result {
                        tracing::warn!("the reload after a [geo] database changed failed: {e}");
                    }
                }
            }
            // By now the old zones and answers are dropped (readers hold a snapshot for one
            // batch at most); give their pages back.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let _ = tokio::task::spawn_blocking(crate::base::release_free_memory).await;
        }
    });
    (Reloads(tx), task)
}

/// One reload: read everything off the runtime, hand it to the engine, and on success
/// install the new token. The engine's answer with the files to watch from then on;
/// `None` when gtmd is stopping.
async fn reload_once(
    origin: &Origin,
    engine: &mpsc::Sender<Command>,
    token: &Token,
    admin_bound: SocketAddr,
) -> Option<Result<(ReloadReport, Vec<PathBuf>), String>> {
    let o = origin.clone();
    let read = tokio::task::spawn_blocking(move || o.read())
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("reading the configuration: {e}")))
        .and_then(|(l, t)| check_token(admin_bound, &t).map(|()| (l, t)));
    let (loaded, new_token, files) = match read {
        Ok((l, t)) => {
            let files = watched(&l.cfg);
            (Ok(Box::new(l)), t, files)
        }
        Err(e) => (Err(format!("{e:#}")), None, Vec::new()),
    };
    let (etx, erx) = oneshot::channel();
    if engine.send(Command::Reload(loaded, etx)).await.is_err() {
        return None;
    }
    let result = erx.await.ok()?;
    if result.is_ok() {
        token.store(new_token.map(Arc::new));
    }
    Some(result.map(|r| (r, files)))
}
