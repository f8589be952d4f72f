//! The session's lease: its renewals, kept beside the session's handlers, and the
//! deadline after which etcd counts as silent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Renews the lease every third of `ttl` (each renewal bounded by `limit`) and notes in
/// `heard` each renewal etcd confirms; returns why when the lease ends or etcd has not
/// renewed it for two thirds of `ttl`: at that moment, not at the next renewal, so that the
/// session moves to another member with a third of `ttl` left before the fallback.
pub(super) async fn keep_lease(
    mut keeper: etcd_client::LeaseKeeper,
    mut alive: etcd_client::LeaseKeepAliveStream,
    heard: Arc<watch::Sender<Instant>>,
    ttl: Duration,
    limit: Duration,
) -> String {
    let mut tick = tokio::time::interval(ttl / 3);
    // Its own clock: the member's reads note in `heard` that etcd answers, not that it
    // renewed the lease.
    let renewed = watch::Sender::new(Instant::now());
    let silent = silent_for(renewed.subscribe(), ttl * 2 / 3);
    tokio::pin!(silent);
    loop {
        tokio::select! {
            _ = &mut silent => return "etcd did not renew the lease in time".into(),
            _ = tick.tick() => {
                match tokio::time::timeout(limit, keeper.keep_alive()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("keep-alive: {e}"),
                    Err(_) => return format!("keep-alive: no answer within {limit:?}"),
                }
            }
            r = alive.message() => match r {
                Ok(Some(r)) if r.ttl() > 0 => {
                    renewed.send_replace(Instant::now());
                    heard.send_replace(Instant::now());
                }
                Ok(Some(_)) => return "the lease ended".into(),
                Ok(None) => return "the keep-alive stream closed".into(),
                Err(e) => return format!("keep-alive: {e}"),
            },
        }
    }
}

/// Returns once `heard` has not changed for `ttl`.
pub(super) async fn silent_for(mut heard: watch::Receiver<Instant>, ttl: Duration) {
    loop {
        let at = tokio::time::Instant::from_std(*heard.borrow_and_update() + ttl);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => return,
            r = heard.changed() => if r.is_err() { return std::future::pending().await },
        }
    }
}
