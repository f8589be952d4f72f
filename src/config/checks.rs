//! The [checks] tables: what a probe does, how often, and when a member changes state.

use std::time::Duration;

use super::file::{self, CheckType, StatusSpec};
use super::{
    duration, key, Check, CheckKind, ConfigError, Ctx, HttpCheck, IcmpCheck, ICMP_SPACING,
};
use crate::steer::health::DampingRules;

pub(super) fn build_check(cx: &Ctx, name: &str, c: &file::Check) -> Result<Check, ConfigError> {
    let p = format!("checks.{}", key(name));
    let interval = duration(
        cx,
        &format!("{p}.interval"),
        c.interval.as_ref(),
        Duration::from_secs(1),
    )?;
    let timeout = duration(
        cx,
        &format!("{p}.timeout"),
        c.timeout.as_ref(),
        Duration::from_millis(500),
    )?;
    if interval < Duration::from_millis(100) {
        return Err(cx.err(&format!("{p}.interval"), "must be at least 100ms"));
    }
    if timeout.is_zero() || timeout >= interval {
        return Err(cx.err(
            &format!("{p}.timeout"),
            format!("must be above 0 and below interval ({interval:?})"),
        ));
    }
    let fast_interval = fast_interval(cx, &p, c, interval)?;
    let fall = c.fall.unwrap_or(3);
    let rise = c.rise.unwrap_or(2);
    for (k, v) in [("fall", fall), ("rise", rise)] {
        if !(1..=100).contains(&v) {
            return Err(cx.err(
                &format!("{p}.{k}"),
                format!("{v} is out of range: 1 to 100 consecutive probes"),
            ));
        }
    }
    let icmp_only = [
        ("count", c.count.is_some()),
        ("max_loss", c.max_loss.is_some()),
        ("max_rtt", c.max_rtt.is_some()),
    ];
    if let (false, Some((k, _))) = (
        matches!(c.kind, CheckType::Icmp),
        icmp_only.iter().find(|(_, set)| *set),
    ) {
        return Err(cx.err(&format!("{p}.{k}"), "applies to icmp checks only"));
    }
    let kind = match c.kind {
        CheckType::Tcp => tcp_kind(cx, &p, c)?,
        CheckType::Http | CheckType::Https => http_kind(cx, &p, c, interval)?,
        CheckType::Icmp => icmp_kind(cx, &p, c, timeout)?,
    };
    let damping = build_damping(cx, &p, c)?;
    Ok(Check {
        name: name.to_string(),
        kind,
        interval,
        fast_interval,
        timeout,
        fall,
        rise,
        damping,
    })
}

/// `fast_interval`: at least 10 ms and below `interval` (probes still run one at a time, so
/// one below the timeout only means the next probe starts as the last one ends).
fn fast_interval(
    cx: &Ctx,
    p: &str,
    c: &file::Check,
    interval: Duration,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = &c.fast_interval else {
        return Ok(None);
    };
    let k = format!("{p}.fast_interval");
    let d = duration(cx, &k, Some(v), interval)?;
    if d < Duration::from_millis(10) || d >= interval {
        return Err(cx.err(
            &k,
            format!("must be at least 10ms and below interval ({interval:?})"),
        ));
    }
    Ok(Some(d))
}

fn status_range(s: &StatusSpec) -> Option<(u16, u16)> {
    let (lo, hi) = match s {
        StatusSpec::Code(c) => (*c, *c),
        StatusSpec::Text(t) => match t.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let c = t.trim().parse().ok()?;
                (c, c)
            }
        },
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

/// Keys that only http and https checks take, and whether each is set.
fn http_only(c: &file::Check) -> [(&'static str, bool); 6] {
    [
        ("path", c.path.is_some()),
        ("host", c.host.is_some()),
        ("headers", !c.headers.is_empty()),
        ("expect_status", c.expect_status.is_some()),
        ("body_contains", c.body_contains.is_some()),
        ("keepalive", c.keepalive.is_some()),
    ]
}

/// A tcp check: a port, and none of the http keys.
fn tcp_kind(cx: &Ctx, p: &str, c: &file::Check) -> Result<CheckKind, ConfigError> {
    let http_only = http_only(c);
    if let Some((k, _)) = http_only
        .iter()
        .chain(&[
            ("tls_verify", c.tls_verify.is_some()),
            ("sni", c.sni.is_some()),
        ])
        .find(|(_, set)| *set)
    {
        return Err(cx.err(&format!("{p}.{k}"), "applies to http and https checks only"));
    }
    let port = c
        .port
        .ok_or_else(|| cx.err(p, "a tcp check needs a port"))?;
    Ok(CheckKind::Tcp { port })
}

/// An icmp check: echoes per probe, the loss and round trip allowed; no port, no http keys.
fn icmp_kind(
    cx: &Ctx,
    p: &str,
    c: &file::Check,
    timeout: Duration,
) -> Result<CheckKind, ConfigError> {
    let port = ("port", c.port.is_some());
    let tls = [
        ("tls_verify", c.tls_verify.is_some()),
        ("sni", c.sni.is_some()),
    ];
    if let Some((k, _)) = http_only(c)
        .iter()
        .chain(&tls)
        .chain(std::iter::once(&port))
        .find(|(_, set)| *set)
    {
        return Err(cx.err(&format!("{p}.{k}"), "does not apply to icmp checks"));
    }
    let count = c.count.unwrap_or(3);
    if !(1..=20).contains(&count) {
        return Err(cx.err(
            &format!("{p}.count"),
            format!("{count} is out of range: 1 to 20 echoes"),
        ));
    }
    if ICMP_SPACING * count >= timeout {
        return Err(cx.err(
            &format!("{p}.timeout"),
            format!(
                "{count} echoes sent {ICMP_SPACING:?} apart need a timeout above {:?}",
                ICMP_SPACING * count
            ),
        ));
    }
    let loss = match &c.max_loss {
        None => 0,
        Some(s) => match s.strip_suffix('%').map(|n| n.trim().parse::<u32>()) {
            Some(Ok(n)) if n <= 100 => n,
            _ => {
                return Err(cx.err(
                    &format!("{p}.max_loss"),
                    format!("{s:?} is not a share of echoes: write e.g. \"0%\" or \"34%\""),
                ))
            }
        },
    };
    let max_rtt = match &c.max_rtt {
        None => None,
        Some(_) => Some(duration(
            cx,
            &format!("{p}.max_rtt"),
            c.max_rtt.as_ref(),
            timeout,
        )?),
    };
    Ok(CheckKind::Icmp(IcmpCheck {
        count,
        max_lost: count * loss / 100,
        max_rtt,
    }))
}

/// An http or https check: path, host, headers, expected status and body, TLS, keepalive.
fn http_kind(
    cx: &Ctx,
    p: &str,
    c: &file::Check,
    interval: Duration,
) -> Result<CheckKind, ConfigError> {
    let tls = c.kind == CheckType::Https;
    if !tls && (c.sni.is_some() || c.tls_verify.is_some()) {
        return Err(cx.err(
            &format!("{p}.type"),
            "sni and tls_verify need type = \"https\"",
        ));
    }
    let path = c.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        return Err(cx.err(
            &format!("{p}.path"),
            format!("{path:?} must start with '/'"),
        ));
    }
    let expect = match &c.expect_status {
        None => vec![(200, 399)],
        Some(list) if list.is_empty() => {
            return Err(cx.err(
                &format!("{p}.expect_status"),
                "must list at least one status",
            ))
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                status_range(s).ok_or_else(|| {
                    cx.err(
                        &format!("{p}.expect_status[{i}]"),
                        "expected a status 100-599 or a range such as \"200-299\"",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let keepalive = match &c.keepalive {
        None => None,
        Some(_) => {
            let k = format!("{p}.keepalive");
            let d = duration(cx, &k, c.keepalive.as_ref(), interval)?;
            if d < interval || d > Duration::from_secs(3600) {
                return Err(cx.err(
                    &k,
                    format!("must be between interval ({interval:?}) and 1h"),
                ));
            }
            Some(d)
        }
    };
    Ok(CheckKind::Http(HttpCheck {
        tls,
        port: c.port.unwrap_or(if tls { 443 } else { 80 }),
        path,
        host: c.host.clone(),
        headers: c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        expect,
        body_contains: c.body_contains.clone(),
        tls_verify: c.tls_verify.unwrap_or(true),
        sni: c.sni.clone(),
        keepalive,
    }))
}

/// Flap damping: `min_down`, `flap_window` and `max_down`, each at most 24 h.
fn build_damping(cx: &Ctx, p: &str, c: &file::Check) -> Result<DampingRules, ConfigError> {
    let d = |k: &str, v: &Option<String>, default: Duration| {
        let path = format!("{p}.{k}");
        let d = duration(cx, &path, v.as_ref(), default)?;
        if d > Duration::from_secs(86400) {
            return Err(cx.err(&path, "must be at most 24h"));
        }
        Ok((path, d))
    };
    let (_, min_down) = d("min_down", &c.min_down, Duration::ZERO)?;
    let (_, window) = d("flap_window", &c.flap_window, Duration::from_secs(600))?;
    let (max_path, max_down) = d(
        "max_down",
        &c.max_down,
        min_down.max(Duration::from_secs(600)),
    )?;
    if max_down < min_down {
        return Err(cx.err(
            &max_path,
            format!("must be at least min_down ({min_down:?})"),
        ));
    }
    Ok(DampingRules {
        min_down,
        window,
        max_down,
    })
}
