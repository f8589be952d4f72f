//! The loopback HTTP admin API: `/healthz` (the process answers), `/readyz` (the first probe
//! round is done and DNS is being served), `/status` (every member's health and every
//! bound name's current answer, as JSON).
//!
//! It reads the published snapshot and asks the engine by message; it never changes state
//! itself.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::engine::{Command, Status};
use crate::snapshot::Published;

#[derive(Clone)]
struct Ctx {
    published: Published,
    engine: mpsc::Sender<Command>,
}

/// Serves the admin API on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    published: Published,
    engine: mpsc::Sender<Command>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(Ctx { published, engine });
    let served =
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    if let Err(e) = served.await {
        tracing::error!(error = %e, "admin API stopped");
    }
}

async fn readyz(State(cx): State<Ctx>) -> (StatusCode, &'static str) {
    if cx.published.load().ready {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first probe round\n",
        )
    }
}

async fn status(State(cx): State<Ctx>) -> Result<Json<Status>, (StatusCode, &'static str)> {
    let (tx, rx) = oneshot::channel();
    let unavailable = (StatusCode::SERVICE_UNAVAILABLE, "engine is not running\n");
    cx.engine
        .send(Command::Status(tx))
        .await
        .map_err(|_| unavailable)?;
    rx.await.map(Json).map_err(|_| unavailable)
}
