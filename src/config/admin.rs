//! The [admin], [probe] and [alerts] tables: the admin API and its files, probe limits, and
//! alert delivery.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file;
use super::{duration, AdminLimits, AlertConfig, ConfigError, Ctx};

/// The [admin] table, checked.
pub(super) struct Admin {
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub state_file: Option<PathBuf>,
    pub limits: AdminLimits,
    pub allowed_hosts: Vec<String>,
}

pub(super) fn build_admin(cx: &Ctx, a: &file::Admin, base: &Path) -> Result<Admin, ConfigError> {
    let listen = a.listen.as_deref().unwrap_or("127.0.0.1:8053");
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| cx.err("admin.listen", format!("{listen:?} is not an address:port")))?;
    let token_file = a.token_file.as_ref().map(|f| base.join(f));
    if token_file.is_none() && !listen.ip().is_loopback() {
        return Err(cx.err(
            "admin.listen",
            format!("{listen} is not a loopback address: set admin.token_file so that changes need a token"),
        ));
    }
    Ok(Admin {
        listen,
        token_file,
        state_file: a.state_file.as_ref().map(|f| base.join(f)),
        limits: build_admin_limits(cx, a)?,
        allowed_hosts: allowed_hosts(cx, a)?,
    })
}

/// `admin.allowed_hosts`: host names (no port, no address) the API also answers to in
/// `Host` and `Origin`, lower case.
fn allowed_hosts(cx: &Ctx, a: &file::Admin) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (i, h) in a.allowed_hosts.iter().flatten().enumerate() {
        let name = h.trim_end_matches('.').to_ascii_lowercase();
        let ok = !name.is_empty()
            && name.parse::<std::net::IpAddr>().is_err()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !ok {
            return Err(cx.err(
                &format!("admin.allowed_hosts[{i}]"),
                format!("{h:?} is not a host name such as \"gtm.example.net\" (no port; addresses need no entry)"),
            ));
        }
        out.push(name);
    }
    Ok(out)
}

/// The [probe] table, checked.
pub(super) struct Probe {
    pub max_in_flight: usize,
    pub max_body: usize,
    pub queue: usize,
    pub source: Option<std::net::IpAddr>,
    pub resolvers: Vec<std::net::SocketAddr>,
    pub serve_stale: Duration,
}

pub(super) fn build_probe(cx: &Ctx, p: &file::Probe) -> Result<Probe, ConfigError> {
    let max_in_flight = p.max_in_flight.unwrap_or(256);
    if max_in_flight == 0 {
        return Err(cx.err("probe.max_in_flight", "must be at least 1"));
    }
    let queue = p.queue.unwrap_or(4096);
    if queue == 0 {
        return Err(cx.err("probe.queue", "must be at least 1"));
    }
    let source = match &p.source {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            cx.err(
                "probe.source",
                format!("{s:?} is not an IPv4 or IPv6 address"),
            )
        })?),
    };
    let mut resolvers = Vec::new();
    for (i, r) in p.resolvers.iter().flatten().enumerate() {
        let at = r
            .parse::<std::net::SocketAddr>()
            .or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
            .map_err(|_| {
                cx.err(
                    &format!("probe.resolvers[{i}]"),
                    format!("{r:?} is not an address, or an address and port (\"192.0.2.53\", \"[2001:db8::53]:5300\")"),
                )
            })?;
        resolvers.push(at);
    }
    // RFC 8767 suggests one to three days; six hours bounds how long an address that
    // moved while resolution failed can be probed.
    let six_hours = Duration::from_secs(6 * 3600);
    let serve_stale = duration(cx, "probe.serve_stale", p.serve_stale.as_ref(), six_hours)?;
    Ok(Probe {
        source,
        resolvers,
        serve_stale,
        max_in_flight,
        max_body: p.max_body.unwrap_or(64 * 1024),
        queue,
    })
}

pub(super) fn build_admin_limits(cx: &Ctx, a: &file::Admin) -> Result<AdminLimits, ConfigError> {
    let max_time = duration(
        cx,
        "admin.max_time",
        a.max_time.as_ref(),
        Duration::from_secs(10),
    )?;
    if max_time.is_zero() {
        return Err(cx.err("admin.max_time", "must be above 0"));
    }
    let header_timeout = duration(
        cx,
        "admin.header_timeout",
        a.header_timeout.as_ref(),
        max_time.min(Duration::from_secs(3)),
    )?;
    if header_timeout.is_zero() || header_timeout > max_time {
        return Err(cx.err(
            "admin.header_timeout",
            format!("must be above 0 and at most admin.max_time ({max_time:?})"),
        ));
    }
    let at_least_one = |k: &str, v: Option<usize>, default: usize| match v.unwrap_or(default) {
        0 => Err(cx.err(&format!("admin.{k}"), "must be at least 1")),
        n => Ok(n),
    };
    Ok(AdminLimits {
        max_body: at_least_one("max_body", a.max_body, 64 * 1024)?,
        max_time,
        header_timeout,
        max_connections: at_least_one("max_connections", a.max_connections, 64)?,
        max_per_client: at_least_one("max_per_client", a.max_per_client, 16)?,
    })
}

pub(super) fn build_alerts(cx: &Ctx, a: &file::Alerts) -> Result<AlertConfig, ConfigError> {
    if let Some(url) = &a.webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(cx.err(
                "alerts.webhook",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
    }
    let command = a.command.clone().unwrap_or_default();
    if a.command.is_some() && command.first().is_none_or(|c| c.is_empty()) {
        return Err(cx.err(
            "alerts.command",
            "give the program and its arguments, e.g. [\"/usr/local/bin/page\", \"--team\", \"dns\"]",
        ));
    }
    let timeout = duration(
        cx,
        "alerts.timeout",
        a.timeout.as_ref(),
        Duration::from_secs(5),
    )?;
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        return Err(cx.err("alerts.timeout", "must be above 0 and at most 5m"));
    }
    let retries = a.retries.unwrap_or(3);
    if retries > 10 {
        return Err(cx.err(
            "alerts.retries",
            format!("{retries} is out of range: 0 to 10"),
        ));
    }
    let count = |k: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
        n @ 1..=100_000 => Ok(n),
        n => Err(cx.err(
            &format!("alerts.{k}"),
            format!("{n} is out of range: 1 to 100000"),
        )),
    };
    Ok(AlertConfig {
        webhook: a.webhook.clone(),
        command,
        timeout,
        retries,
        rate: count("rate", a.rate, 30)?,
        burst: count("burst", a.burst, 10)?,
        queue: match a.queue.unwrap_or(1024) {
            0 => return Err(cx.err("alerts.queue", "must be at least 1")),
            n => n,
        },
    })
}
