//! The [server] and [rrl] tables: listen addresses, the zones directory, transport settings
//! and response rate limiting.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::file;
use super::{duration, ConfigError, Ctx, RrlConfig, WireSettings};

/// `server.listen`, `server.zones_dir` and the transport settings.
pub(super) fn build_server(
    cx: &Ctx,
    s: &file::Server,
    base: &Path,
) -> Result<(Vec<SocketAddr>, PathBuf, WireSettings), ConfigError> {
    let listen = s
        .listen
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1:5353".into()]);
    if listen.is_empty() {
        return Err(cx.err(
            "server.listen",
            "needs at least one address such as \"0.0.0.0:53\"",
        ));
    }
    let listen = listen
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<SocketAddr>().map_err(|_| {
                cx.err(
                    &format!("server.listen[{i}]"),
                    format!(
                        "{a:?} is not an address:port such as \"127.0.0.1:53\" or \"[::1]:53\""
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let zones_dir = base.join(s.zones_dir.as_deref().unwrap_or("zones"));
    Ok((listen, zones_dir, build_wire(cx, s)?))
}

/// The transport settings; each default is [`WireSettings::default`]'s.
fn build_wire(cx: &Ctx, s: &file::Server) -> Result<WireSettings, ConfigError> {
    let d = WireSettings::default();
    let udp_payload = s.udp_payload.unwrap_or(d.udp_payload);
    if !(512..=4096).contains(&udp_payload) {
        return Err(cx.err(
            "server.udp_payload",
            format!("{udp_payload} is out of range: 512 to 4096 bytes"),
        ));
    }
    let allow_transfer = s
        .allow_transfer
        .clone()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            parse_net(a).ok_or_else(|| {
                cx.err(
                    &format!("server.allow_transfer[{i}]"),
                    format!("{a:?} is not an address or CIDR prefix"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let timeout =
        |k: &str, v: Option<&String>, default| duration(cx, &format!("server.{k}"), v, default);
    let tcp_max_connections = match s.tcp_max_connections {
        Some(0) => return Err(cx.err("server.tcp_max_connections", "must be at least 1")),
        v => v.unwrap_or(d.tcp_max_connections),
    };
    Ok(WireSettings {
        udp_payload,
        allow_transfer,
        transfer: Default::default(),
        tcp_idle_timeout: timeout(
            "tcp_idle_timeout",
            s.tcp_idle_timeout.as_ref(),
            d.tcp_idle_timeout,
        )?,
        tcp_read_timeout: timeout(
            "tcp_read_timeout",
            s.tcp_read_timeout.as_ref(),
            d.tcp_read_timeout,
        )?,
        tcp_max_connections,
        // 0: no cap of its own. A resolver farm behind NAT is one address and pipelines
        // without end, so neither is capped by default (NSD and Knot do not cap them either).
        tcp_max_per_client: s.tcp_max_per_client.unwrap_or(d.tcp_max_per_client),
        tcp_max_queries: s.tcp_max_queries.unwrap_or(d.tcp_max_queries),
    })
}

pub(super) fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

pub(super) fn build_rrl(cx: &Ctx, r: &file::Rrl) -> Result<RrlConfig, ConfigError> {
    let d = RrlConfig::default();
    let prefix = |key: &str, v: Option<u8>, default: u8, max: u8| match v {
        None => Ok(default),
        Some(p) if p <= max => Ok(p),
        Some(p) => Err(cx.err(
            &format!("rrl.{key}"),
            format!("{p} is not a prefix length (0 to {max})"),
        )),
    };
    let exempt = match &r.exempt {
        None => d.exempt,
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_net(s).ok_or_else(|| {
                    cx.err(
                        &format!("rrl.exempt[{i}]"),
                        format!("{s:?} is not an address or CIDR prefix"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let max_prefixes = r.max_prefixes.unwrap_or(d.max_prefixes);
    if max_prefixes == 0 {
        return Err(cx.err("rrl.max_prefixes", "must be at least 1"));
    }
    Ok(RrlConfig {
        rate: r.rate.unwrap_or(d.rate),
        errors_rate: r.errors_rate.unwrap_or(d.errors_rate),
        slip: r.slip.unwrap_or(d.slip),
        ipv4_prefix: prefix("ipv4_prefix", r.ipv4_prefix, d.ipv4_prefix, 32)?,
        ipv6_prefix: prefix("ipv6_prefix", r.ipv6_prefix, d.ipv6_prefix, 128)?,
        exempt,
        max_prefixes,
    })
}
