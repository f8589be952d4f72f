//! The [server] and [rrl] tables: listen addresses, the zones directory, transport settings
//! and response rate limiting.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::file;
use super::{duration, ConfigError, Ctx, TransferSettings};

/// `server.listen` and `server.zones_dir` (the transport settings are [`build_wire`]'s).
pub(super) fn build_server(
    cx: &Ctx,
    s: &file::Server,
    base: &Path,
) -> Result<(Vec<SocketAddr>, PathBuf), ConfigError> {
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
    for (i, a) in listen.iter().enumerate() {
        if let Some(j) = listen[..i].iter().position(|b| clash(*a, *b)) {
            return Err(cx.err(
                &format!("server.listen[{i}]"),
                format!(
                    "{a} clashes with server.listen[{j}] ({}): both cannot be bound",
                    listen[j]
                ),
            ));
        }
    }
    let zones_dir = base.join(s.zones_dir.as_deref().unwrap_or("zones"));
    Ok((listen, zones_dir))
}

/// Whether listening on `a` and on `b` (TCP, as DNS and the admin API do) cannot both be
/// done: the same port (not 0, which picks a free one) of the same family, at the same
/// address or with either at the unspecified one. IPv6 sockets are IPv6 only, so
/// `0.0.0.0:53` and `[::]:53` do not clash.
pub(super) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The transport settings; each default is [`WireSettings::default`]'s.
pub(super) fn build_wire(cx: &Ctx, s: &file::Server) -> Result<WireSettings, ConfigError> {
    let d = WireSettings::default();
    let udp_payload = s.udp_payload.unwrap_or(d.udp_payload);
    if !(512..=4096).contains(&udp_payload) {
        return Err(cx.err(
            "server.udp_payload",
            format!("{udp_payload} is out of range: 512 to 4096 bytes"),
        ));
    }
    let allow_transfer = match &s.allow_transfer {
        Some(list) => parse_nets(cx, "server.allow_transfer", list)?,
        None => Vec::new(),
    };
    let timeout = |k: &str, v: Option<&String>, default| {
        let path = format!("server.{k}");
        let t = duration(cx, &path, v, default)?;
        if t.is_zero() {
            // A connection's next query would never be waited for.
            return Err(cx.err(&path, "must be more than 0s"));
        }
        Ok(t)
    };
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
        max_transfers: match s.max_transfers {
            Some(0) => return Err(cx.err("server.max_transfers", "must be at least 1")),
            v => v.unwrap_or(d.max_transfers),
        },
        max_transfers_per_client: s
            .max_transfers_per_client
            .unwrap_or(d.max_transfers_per_client),
    })
}

/// A list of addresses or CIDR prefixes at `path`, each error naming its item.
pub(super) fn parse_nets(
    cx: &Ctx,
    path: &str,
    list: &[String],
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            parse_net(a).ok_or_else(|| {
                cx.err(
                    &format!("{path}[{i}]"),
                    format!("{a:?} is not an address or CIDR prefix"),
                )
            })
        })
        .collect()
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
        Some(list) => parse_nets(cx, "rrl.exempt", list)?,
    };
    let max_prefixes = r.max_prefixes.unwrap_or(d.max_prefixes);
    if max_prefixes == 0 {
        return Err(cx.err("rrl.max_prefixes", "must be at least 1"));
    }
    Ok(RrlConfig {
        rate: r.rate.unwrap_or(d.rate),
        errors_rate: r.errors_rate.unwrap_or(d.errors_rate),
        signatures_rate: r.signatures_rate.unwrap_or(d.signatures_rate),
        slip: r.slip.unwrap_or(d.slip),
        ipv4_prefix: prefix("ipv4_prefix", r.ipv4_prefix, d.ipv4_prefix, 32)?,
        ipv6_prefix: prefix("ipv6_prefix", r.ipv6_prefix, d.ipv6_prefix, 128)?,
        exempt,
        max_prefixes,
    })
}

/// The per-server settings the wire layer needs.
#[derive(Debug, Clone)]
pub struct WireSettings {
    /// The EDNS UDP payload we advertise and the most we send over UDP.
    pub udp_payload: u16,
    /// Clients allowed to transfer zones (AXFR/IXFR over TCP) without a zone table of their own.
    pub allow_transfer: Vec<ipnet::IpNet>,
    /// Per zone: who may transfer, with which TSIG keys, and whom to NOTIFY.
    pub transfer: std::sync::Arc<TransferSettings>,
    /// A TCP connection with no query under way for this long is closed.
    pub tcp_idle_timeout: std::time::Duration,
    /// A query begun on TCP (its length read) must arrive whole within this, and a response
    /// must be taken by the client within it.
    pub tcp_read_timeout: std::time::Duration,
    /// TCP connections at once, in all and from one client address (0: no cap of its own).
    pub tcp_max_connections: usize,
    pub tcp_max_per_client: usize,
    /// Queries answered on one TCP connection before it is closed (0: no limit).
    pub tcp_max_queries: usize,
    /// Zone transfers under way at once on one listen address, in all and to one client
    /// address (0: no cap of its own); beyond, a transfer request gets REFUSED.
    pub max_transfers: usize,
    pub max_transfers_per_client: usize,
}

/// The most a UDP response may hold for a client that offered `client_payload` (its EDNS
/// size; none without EDNS) when we offer `ours`: at least 512 bytes, at most ours (RFC 6891
/// section 6.2.3, RFC 1035 section 4.2.1).
pub fn udp_limit(client_payload: Option<u16>, ours: u16) -> usize {
    const MIN: u16 = MIN_UDP_PAYLOAD;
    client_payload.unwrap_or(MIN).clamp(MIN, ours.max(MIN)) as usize
}

/// The smallest UDP payload every client accepts (RFC 1035 section 2.3.4).
pub const MIN_UDP_PAYLOAD: u16 = 512;

impl Default for WireSettings {
    fn default() -> Self {
        Self {
            udp_payload: 1232,
            allow_transfer: Vec::new(),
            transfer: Default::default(),
            tcp_idle_timeout: std::time::Duration::from_secs(10),
            tcp_read_timeout: std::time::Duration::from_secs(2),
            tcp_max_connections: 1024,
            tcp_max_per_client: 0,
            tcp_max_queries: 0,
            max_transfers: 32,
            max_transfers_per_client: 4,
        }
    }
}

/// Response rate limiting as configured (`[rrl]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RrlConfig {
    /// Answers (NOERROR) per second per prefix; 0: not limited.
    pub rate: u32,
    /// NXDOMAIN, NODATA and error responses per second per prefix; 0: not limited.
    pub errors_rate: u32,
    /// Answers signed per query (a missing name, a wildcard) per second per prefix; beyond
    /// it they go out truncated, unsigned; 0: not limited.
    pub signatures_rate: u32,
    /// Every `slip`-th limited response goes out truncated; 0: none (all dropped).
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Clients never limited.
    pub exempt: Vec<ipnet::IpNet>,
    /// Prefixes tracked at most.
    pub max_prefixes: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            rate: 200,
            errors_rate: 50,
            signatures_rate: 100,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec![
                "127.0.0.0/8".parse().expect("a valid prefix"),
                "::1/128".parse().expect("a valid prefix"),
            ],
            max_prefixes: 200_000,
        }
    }
}
