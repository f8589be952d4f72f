//! The loopback HTTP admin API: `/healthz` (the process answers), `/readyz` (the first probe
//! round is done and DNS is being served), `/status` (every member's health and every
//! bound name's current answer, as JSON), `/overrides` (GET lists them; POST sets one;
//! POST `/overrides/clear` removes one), `/reload` (POST: read the configuration and zones
//! again), `/explain?name=N&client=ADDR` (why N answers what it does for that client).
//!
//! Changes need `Authorization: Bearer TOKEN` when `admin.token_file` is set (it must be
//! for a non-loopback address); [`guard`] refuses, before anything else, requests another
//! site could have made (DNS rebinding, cross-origin forms). It reads the published snapshot and asks the engine by
//! message; it never changes state itself.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::base::state::{Action, Override};
use crate::config::AdminLimits;
use crate::dns::Published;
use crate::engine::{Command, OverrideOp, Status};
use crate::ops::reload::{ReloadReport, Reloads, Token};

/// What the admin API reads and whom it asks.
#[derive(Clone)]
pub struct Handles {
    pub published: Published,
    pub engine: mpsc::Sender<Command>,
    pub reloads: Reloads,
    /// Changes need this bearer token, when set (a reload may replace it).
    pub token: Token,
    /// Names accepted in `Host` besides the listen address (see [`guard`]).
    pub allowed_hosts: Arc<Vec<String>>,
}

mod conns;
mod guard;

type Ctx = Handles;

/// Reads a request's body whole before its handler runs, within `max_body` bytes (else 413)
/// and `max_time` (else 408). The handler's own work is not under the time limit: a reload
/// that waits for new members' first probes is not cut off.
async fn read_limits(
    State(limits): State<AdminLimits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limits.max_body).collect();
    match tokio::time::timeout(limits.max_time, read).await {
        Ok(Ok(body)) => {
            let body = axum::body::Body::from(body.to_bytes());
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            crate::base::metrics::limit_hit("admin_max_body");
            let msg = format!("request body over {} bytes\n", limits.max_body);
            (StatusCode::PAYLOAD_TOO_LARGE, msg).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}\n"),
        )
            .into_response(),
        Err(_) => {
            crate::base::metrics::limit_hit("admin_max_time");
            (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response()
        }
    }
}

/// Serves the admin API on `listener` until `stop` is cancelled, then lets requests under
/// way finish.
///
/// Connections are served and capped by [`conns`]: a client that sends its headers slowly,
/// or keeps a connection open without a request, is cut off after `limits.max_time`, and
/// sooner when a new connection needs its place.
pub async fn serve(
    listener: TcpListener,
    handles: Handles,
    limits: AdminLimits,
    stop: CancellationToken,
) {
    let guard = guard::Guard {
        listen: listener
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        allowed_hosts: handles.allowed_hosts.clone(),
        token: handles.token.clone(),
    };
    let app = Router::new()
        .route(
            "/",
            get(|| async { page(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/charts.js",
            get(|| async { page(CHARTS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/overrides", get(list_overrides).post(set_override))
        .route("/overrides/clear", post(clear_override))
        .route("/reload", post(reload))
        .route("/explain", get(explain))
        .route("/history", get(history))
        .layer(axum::middleware::from_fn_with_state(limits, read_limits))
        // read_limits has bounded the body already: the extractors' own 2 MB default would
        // refuse bodies that admin.max_body allows.
        .layer(axum::extract::DefaultBodyLimit::disable())
        // Before the body is read or any extractor runs: rebinding, origin, token.
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .with_state(handles);
    conns::serve(listener, app, limits, stop).await;
}

/// The status page, in the binary: plain HTML, one script and one style sheet, which read
/// `/status` and `/explain` and act through `/overrides` as `gtmd ctl` does.
const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const CHARTS: &str = include_str!("ui/charts.js");
const STYLE: &str = include_str!("ui/app.css");

/// The page's own files only (no inline script or style, nothing from elsewhere), never
/// inside a frame, never sniffed as another type, not cached, and no referrer.
const PAGE_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

fn page(body: &'static str, kind: &'static str) -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::from(body));
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(kind),
    );
    for (k, v) in PAGE_HEADERS {
        h.insert(k, axum::http::HeaderValue::from_static(v));
    }
    r
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

/// Prometheus text format.
async fn metrics() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::base::metrics::render(),
    )
}

type Refusal = (StatusCode, String);

fn unavailable() -> Refusal {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "engine is not running\n".into(),
    )
}

async fn status(State(cx): State<Ctx>) -> Result<Json<Status>, Refusal> {
    let (tx, rx) = oneshot::channel();
    cx.engine
        .send(Command::Status(tx))
        .await
        .map_err(|_| unavailable())?;
    rx.await.map(Json).map_err(|_| unavailable())
}

/// What happened over a window (`since` seconds back, `step` 5 or 300, `member`, `name`).
async fn history(
    State(cx): State<Ctx>,
    axum::extract::Query(q): axum::extract::Query<crate::engine::HistoryQuery>,
) -> Result<Json<crate::engine::HistoryReport>, Refusal> {
    if q.step.is_some_and(|s| s != 5 && s != 300) {
        let msg = "step: 5 (up to an hour back) or 300 (up to a day back)\n";
        return Err((StatusCode::BAD_REQUEST, msg.into()));
    }
    let (tx, rx) = oneshot::channel();
    cx.engine
        .send(Command::History(q, tx))
        .await
        .map_err(|_| unavailable())?;
    rx.await.map(Json).map_err(|_| unavailable())
}

async fn list_overrides(State(cx): State<Ctx>) -> Result<Json<Vec<Override>>, Refusal> {
    status(State(cx)).await.map(|s| Json(s.0.overrides))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    target: String,
    action: Action,
    reason: String,
    /// How long until it ends by itself, e.g. "30m".
    #[serde(rename = "for")]
    duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearBody {
    target: String,
}

/// The engine's answer to a change it took. None came: the engine, or the cluster's etcd
/// session that was writing it, stopped meanwhile, and the change may have been made: say
/// so, not that nothing ran.
async fn confirmed<T>(rx: oneshot::Receiver<T>) -> Result<T, Refusal> {
    rx.await.map_err(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the change was not confirmed: the engine or the cluster's etcd session stopped \
             while it was being made, so it may or may not be in force; `gtmd ctl overrides` \
             shows the list in force\n"
                .to_string(),
        )
    })
}

async fn change(cx: &Ctx, op: OverrideOp) -> Result<Json<Vec<Override>>, Refusal> {
    let (tx, rx) = oneshot::channel();
    cx.engine
        .send(Command::Override(op, tx))
        .await
        .map_err(|_| unavailable())?;
    match confirmed(rx).await? {
        Ok(list) => Ok(Json(list)),
        Err(e) => Err((StatusCode::BAD_REQUEST, format!("{e}\n"))),
    }
}

async fn set_override(
    State(cx): State<Ctx>,
    Json(b): Json<SetBody>,
) -> Result<Json<Vec<Override>>, Refusal> {
    if b.reason.trim().is_empty() {
        return Err((StatusCode::BAD_REQUEST, "give a reason\n".into()));
    }
    // A reason goes into logs, alerts' JSON and a command's environment: no control
    // characters (a newline could forge a log line, a NUL cannot be passed to a program).
    if b.reason.chars().any(char::is_control) {
        return Err((
            StatusCode::BAD_REQUEST,
            "reason: control characters (newline, tab, NUL...) are not allowed\n".into(),
        ));
    }
    let duration = match b.duration.as_deref() {
        None => None,
        Some(d) => Some(override_duration(d).map_err(|e| (StatusCode::BAD_REQUEST, e))?),
    };
    let op = OverrideOp::Set {
        target: parse_target(&b.target)?,
        action: b.action,
        reason: b.reason,
        duration,
    };
    change(&cx, op).await
}

/// The longest override end asked for with `for`: ten years.
pub const MAX_OVERRIDE: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// An override's `for`, at most [`MAX_OVERRIDE`].
fn override_duration(d: &str) -> Result<std::time::Duration, String> {
    let v = humantime::parse_duration(d)
        .map_err(|e| format!("for: {d:?} is not a duration ({e}); write e.g. \"30m\"\n"))?;
    if v > MAX_OVERRIDE {
        return Err(format!(
            "for: {d:?} is past the 10-year cap; leave `for` out for an override with no end\n"
        ));
    }
    Ok(v)
}

async fn clear_override(
    State(cx): State<Ctx>,
    Json(b): Json<ClearBody>,
) -> Result<Json<Vec<Override>>, Refusal> {
    let target = parse_target(&b.target)?;
    change(&cx, OverrideOp::Clear { target }).await
}

fn parse_target(t: &str) -> Result<crate::base::state::Target, Refusal> {
    t.parse()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("target: {e}\n")))
}

/// Reads the configuration and zones again: 200 with what changed, or 422 with the error
/// (file, line, problem) and nothing changed.
async fn reload(State(cx): State<Ctx>) -> Result<Json<ReloadReport>, Refusal> {
    cx.reloads
        .reload()
        .await
        .map(Json)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    name: String,
    /// An address, or a subnet as an ECS option gives it (`198.51.100.0/24`).
    client: Option<String>,
}

/// Why a pool-bound name answers what it does for a client: 200 with the explanation, 400 for
/// a bad name or client, 404 for a name that is not bound to pools.
async fn explain(
    State(cx): State<Ctx>,
    axum::extract::Query(q): axum::extract::Query<ExplainQuery>,
) -> Result<Json<crate::engine::Explain>, Refusal> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m + "\n");
    let mut name = hickory_proto::rr::Name::from_ascii(&q.name)
        .map_err(|e| bad(format!("name: {:?} is not a domain name ({e})", q.name)))?;
    name.set_fqdn(true);
    let client = match &q.client {
        None => None,
        Some(c) => Some(parse_client(c).ok_or_else(|| {
            bad(format!(
                "client: {c:?} is not an address or a subnet such as 198.51.100.0/24"
            ))
        })?),
    };
    let (tx, rx) = oneshot::channel();
    let cmd = Command::Explain {
        name,
        client,
        asked: q.client,
        reply: tx,
    };
    cx.engine.send(cmd).await.map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(e) => Ok(Json(e)),
        Err(e) => Err((StatusCode::NOT_FOUND, format!("{e}\n"))),
    }
}

/// `192.0.2.7` (the full address, as a query's source) or `198.51.100.0/24` (as ECS).
fn parse_client(s: &str) -> Option<crate::steer::topology::Client> {
    if let Ok(addr) = s.parse::<std::net::IpAddr>() {
        return Some(crate::steer::topology::Client::from_source(
            addr.to_canonical(),
        ));
    }
    let net: ipnet::IpNet = s.parse().ok()?;
    Some(crate::steer::topology::Client {
        addr: net.network(),
        source: net.prefix_len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_taken_but_never_answered_is_said_to_be_unconfirmed_not_refused() {
        let (tx, rx) = oneshot::channel::<Result<Vec<Override>, String>>();
        drop(tx);
        let (code, msg) = confirmed(rx).await.unwrap_err();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(msg.contains("may or may not be in force"), "{msg}");
        let (tx, rx) = oneshot::channel::<Result<Vec<Override>, String>>();
        tx.send(Ok(Vec::new())).unwrap();
        assert_eq!(confirmed(rx).await.unwrap(), Ok(Vec::new()));
    }
}
