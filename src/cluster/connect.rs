//! Which etcd member a session talks to, and how long it keeps talking to it.
//!
//! A session opens on one member that has just proved it works: every endpoint is tried at
//! once with a linearizable read (which only a member in touch with a leader and a quorum can
//! answer), and the first to answer wins. A member cut off from the others, or one that has
//! lost its leader, never answers such a read, so a new session never lands on it while
//! another works. During the session the same read is repeated every [`PROBE_EVERY`]; when
//! the member has not answered one for [`FAILOVER`], the session ends and the next one moves
//! to a member that works, so an instance follows etcd's leader changes within about a second
//! instead of waiting out its lease.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use tokio::task::JoinSet;

/// A member that has not answered a linearizable read for this long is given up.
pub(super) const FAILOVER: Duration = Duration::from_secs(1);
/// How often the session's member is asked to prove that it still works.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// One linearizable read of `key` (its count only: no value travels), bounded by `limit`.
async fn probe(client: &mut Client, key: &str, limit: Duration) -> Result<(), String> {
    let read = client.get(key, Some(GetOptions::new().with_count_only()));
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("linearizable read: {e}")),
        Err(_) => Err(format!("no linearizable read within {limit:?}")),
    }
}

/// Connects to every endpoint at once and returns a client of the first member that answers
/// a linearizable read of `key` within `limit`, with its endpoint; or why none did.
pub(super) async fn working_member(
    endpoints: &[String],
    opts: &ConnectOptions,
    key: &str,
    limit: Duration,
) -> Result<(Client, String), String> {
    let mut tries = JoinSet::new();
    for e in endpoints {
        let (e, opts, key) = (e.clone(), opts.clone(), key.to_string());
        tries.spawn(async move {
            let r = async {
                let connect = Client::connect([e.as_str()], Some(opts));
                let mut c = match tokio::time::timeout(limit, connect).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(err)) => return Err(format!("connect: {err}")),
                    Err(_) => return Err(format!("no connection within {limit:?}")),
                };
                probe(&mut c, &key, limit).await.map(|()| c)
            };
            let r = r.await;
            (e, r)
        });
    }
    let mut why = Vec::new();
    while let Some(done) = tries.join_next().await {
        match done {
            Ok((e, Ok(c))) => return Ok((c, e)),
            Ok((e, Err(err))) => why.push(format!("{e}: {err}")),
            Err(err) => why.push(format!("a connection attempt failed: {err}")),
        }
    }
    Err(format!("no etcd member works ({})", why.join("; ")))
}

/// Asks the session's member for a linearizable read every [`PROBE_EVERY`], and notes in
/// `heard` each one answered (etcd answers, so the fallback's clock starts again); ends with
/// why when one is not answered within [`FAILOVER`] (or the member refuses it).
pub(super) async fn watch_member(
    mut client: Client,
    endpoint: String,
    key: String,
    heard: std::sync::Arc<tokio::sync::watch::Sender<std::time::Instant>>,
) -> String {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = probe(&mut client, &key, FAILOVER).await {
            return format!("etcd member {endpoint} stopped working ({e}); moving to another");
        }
        heard.send_replace(std::time::Instant::now());
    }
}
