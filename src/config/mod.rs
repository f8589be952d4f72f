//! The checked configuration. [`Config::parse`] reads TOML text into [`file::File`] and checks
//! every value; each error names the file, the line, the TOML path and what is allowed.
//!
//! Nothing here touches the network or the zones directory: [`crate::app`] loads zones and
//! binds names to them with [`Config::bind_names`].

pub mod file;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name, RecordType};

use crate::dns::WireSettings;
use crate::zone::Zone;
use file::{CheckType, StatusSpec};

/// The sample configuration compiled into the binary (`dist/gtmd.toml`).
pub const EMBEDDED: &str = include_str!("../../dist/gtmd.toml");
/// How the embedded configuration is named in messages.
pub const EMBEDDED_NAME: &str = "<embedded dist/gtmd.toml>";

/// A configuration error: where it is, and what is wrong and allowed.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub path: String,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.msg)
    }
}

/// A health check as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Tcp { port: u16 },
    Http(HttpCheck),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub tls: bool,
    pub port: u16,
    pub path: String,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Inclusive ranges of acceptable status codes.
    pub expect: Vec<(u16, u16)>,
    pub body_contains: Option<String>,
    pub tls_verify: bool,
    pub sni: Option<String>,
}

/// One pool member. Members are numbered across all pools; that number is its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub pool: usize,
    pub name: String,
    pub address: IpAddr,
    pub weight: u32,
    pub region: Option<String>,
    /// Where the health check connects.
    pub target: SocketAddr,
    pub check: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub check: usize,
    pub members: Vec<usize>,
}

/// A name inside a served zone whose A/AAAA answers come from pools.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundName {
    pub name: Name,
    pub pools: Vec<usize>,
    pub ttl: u32,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub listen: Vec<SocketAddr>,
    pub zones_dir: PathBuf,
    pub wire: WireSettings,
    pub tcp_idle_timeout: Duration,
    pub admin_listen: SocketAddr,
    pub max_in_flight: usize,
    pub max_body: usize,
    pub checks: Vec<Check>,
    pub pools: Vec<Pool>,
    pub members: Vec<Member>,
    pub names: Vec<BoundName>,
    text: String,
}

/// Builds errors that point into one configuration text.
struct Ctx<'a> {
    source: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.to_string(),
            line: self.line_of(path),
            path: path.to_string(),
            msg: msg.into(),
        }
    }

    /// The line of the deepest part of `path` (`a.b[2].c`) found in the document.
    fn line_of(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item = doc.as_item();
        let mut span = None;
        for seg in split_path(path) {
            let next = match seg {
                Seg::Key(k) => item.get(k.as_str()),
                Seg::Index(i) => item.get(i),
            };
            let Some(next) = next else { break };
            item = next;
            span = item.span().or(span);
        }
        span.map(|s| line_at(self.text, s.start))
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

/// Splits `names."app.example.".pools[0]` into its keys and indexes.
fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut cur = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for n in chars.by_ref() {
                    if n == '"' {
                        break;
                    }
                    cur.push(n);
                }
            }
            '.' | '[' => {
                if !cur.is_empty() {
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
                if c == '[' {
                    let idx: String = chars.by_ref().take_while(|&n| n != ']').collect();
                    out.push(Seg::Index(idx.parse().unwrap_or(0)));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(Seg::Key(cur));
    }
    out
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Quotes a TOML key when it is not a bare key.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// A duration such as `500ms`, `1s` or `2m`.
fn duration(
    cx: &Ctx,
    path: &str,
    v: Option<&String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            cx.err(
                path,
                format!("{s:?} is not a duration ({e}); write e.g. \"500ms\", \"1s\", \"2m\""),
            )
        }),
    }
}

impl Config {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            path: String::new(),
            msg: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// The embedded sample configuration; its relative paths are taken from the working directory.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED, EMBEDDED_NAME, Path::new("."))
    }

    /// Checks configuration `text`; `source` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, source: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut cx = Ctx {
            source,
            doc: None,
            text,
        };
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| ConfigError {
            file: source.to_string(),
            line: e.span().map(|s| line_at(text, s.start)),
            path: String::new(),
            msg: format!("invalid TOML: {}", e.message().trim().replace('\n', "; ")),
        })?;
        cx.doc = Some(doc);
        let de = toml::Deserializer::new(text);
        let raw: file::File = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| line_at(text, s.start));
            ConfigError {
                file: source.to_string(),
                line: line.or_else(|| cx.line_of(&path)),
                path: if path == "." { String::new() } else { path },
                msg: inner.message().to_string(),
            }
        })?;
        build(&cx, raw, base)
    }

    /// Checks each bound name against the loaded zones: it must be inside a zone, not at or
    /// below a delegation, and its zone must not give it A, AAAA or CNAME records of its own.
    pub fn bind_names(&self, zones: &[Zone]) -> Result<(), ConfigError> {
        let cx = Ctx {
            source: &self.source,
            doc: toml_edit::ImDocument::parse(self.text.as_str()).ok(),
            text: &self.text,
        };
        for b in &self.names {
            let path = format!("names.{}", key(&b.name.to_ascii()));
            let lname = LowerName::new(&b.name);
            let zone = zones
                .iter()
                .filter(|z| z.origin.zone_of(&lname))
                .max_by_key(|z| z.origin.num_labels())
                .ok_or_else(|| {
                    cx.err(
                        &path,
                        format!("{} is in no zone of the zones directory", b.name),
                    )
                })?;
            if let Some((cut, _)) = zone.delegation_above(&lname) {
                return Err(cx.err(
                    &path,
                    format!(
                        "{} is at or below the delegation {cut} in {}",
                        b.name,
                        zone.file.display()
                    ),
                ));
            }
            if let Some(node) = zone.nodes.get(&lname) {
                for t in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
                    if node.get(t).is_some() {
                        let line = zone.lines.get(&lname).copied().unwrap_or(0);
                        return Err(cx.err(&path, format!(
                            "{} is bound to pools but {}:{line} gives it {t} records; remove them from the zone file",
                            b.name, zone.file.display()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The largest check timeout: how long the first probe round can take.
    pub fn max_timeout(&self) -> Duration {
        self.checks
            .iter()
            .map(|c| c.timeout)
            .max()
            .unwrap_or_default()
    }
}

fn build(cx: &Ctx, raw: file::File, base: &Path) -> Result<Config, ConfigError> {
    let listen = raw
        .server
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
    let zones_dir = base.join(raw.server.zones_dir.as_deref().unwrap_or("zones"));
    let udp_payload = raw.server.udp_payload.unwrap_or(1232);
    if !(512..=4096).contains(&udp_payload) {
        return Err(cx.err(
            "server.udp_payload",
            format!("{udp_payload} is out of range: 512 to 4096 bytes"),
        ));
    }
    let allow_transfer = raw
        .server
        .allow_transfer
        .clone()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_net(s).ok_or_else(|| {
                cx.err(
                    &format!("server.allow_transfer[{i}]"),
                    format!("{s:?} is not an address or CIDR prefix"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tcp_idle_timeout = duration(
        cx,
        "server.tcp_idle_timeout",
        raw.server.tcp_idle_timeout.as_ref(),
        Duration::from_secs(10),
    )?;
    let admin = raw.admin.listen.as_deref().unwrap_or("127.0.0.1:8053");
    let admin_listen = admin
        .parse()
        .map_err(|_| cx.err("admin.listen", format!("{admin:?} is not an address:port")))?;
    let max_in_flight = raw.probe.max_in_flight.unwrap_or(256);
    if max_in_flight == 0 {
        return Err(cx.err("probe.max_in_flight", "must be at least 1"));
    }
    let checks = raw
        .checks
        .iter()
        .map(|(name, c)| build_check(cx, name, c))
        .collect::<Result<Vec<_>, _>>()?;
    let (pools, members) = build_pools(cx, &raw, &checks)?;
    let names = build_names(cx, &raw, &pools)?;
    Ok(Config {
        source: cx.source.to_string(),
        listen,
        zones_dir,
        wire: WireSettings {
            udp_payload,
            allow_transfer,
        },
        tcp_idle_timeout,
        admin_listen,
        max_in_flight,
        max_body: raw.probe.max_body.unwrap_or(64 * 1024),
        checks,
        pools,
        members,
        names,
        text: cx.text.to_string(),
    })
}

fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

fn build_check(cx: &Ctx, name: &str, c: &file::Check) -> Result<Check, ConfigError> {
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
    let http_only = [
        ("path", c.path.is_some()),
        ("host", c.host.is_some()),
        ("headers", !c.headers.is_empty()),
        ("expect_status", c.expect_status.is_some()),
        ("body_contains", c.body_contains.is_some()),
    ];
    let kind = match c.kind {
        CheckType::Tcp => {
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
                .ok_or_else(|| cx.err(&p, "a tcp check needs a port"))?;
            CheckKind::Tcp { port }
        }
        CheckType::Http | CheckType::Https => {
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
            CheckKind::Http(HttpCheck {
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
            })
        }
    };
    Ok(Check {
        name: name.to_string(),
        kind,
        interval,
        timeout,
        fall,
        rise,
    })
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

fn build_pools(
    cx: &Ctx,
    raw: &file::File,
    checks: &[Check],
) -> Result<(Vec<Pool>, Vec<Member>), ConfigError> {
    let mut pools = Vec::new();
    let mut members: Vec<Member> = Vec::new();
    for (pname, p) in &raw.pools {
        let pp = format!("pools.{}", key(pname));
        let check = checks
            .iter()
            .position(|c| c.name == p.check)
            .ok_or_else(|| {
                cx.err(
                    &format!("{pp}.check"),
                    format!(
                        "no check named {:?}; defined are: {}",
                        p.check,
                        names_of(checks.iter().map(|c| &c.name))
                    ),
                )
            })?;
        if p.members.is_empty() {
            return Err(cx.err(&format!("{pp}.members"), "a pool needs at least one member"));
        }
        let mut ids = Vec::new();
        for (i, m) in p.members.iter().enumerate() {
            let mp = format!("{pp}.members[{i}]");
            let address: IpAddr = m.address.parse().map_err(|_| {
                cx.err(
                    &format!("{mp}.address"),
                    format!("{:?} is not an IPv4 or IPv6 address", m.address),
                )
            })?;
            let probe_ip: IpAddr = match &m.probe_address {
                None => address,
                Some(a) => a.parse().map_err(|_| {
                    cx.err(
                        &format!("{mp}.probe_address"),
                        format!("{a:?} is not an IP address"),
                    )
                })?,
            };
            let port = m.probe_port.unwrap_or(match &checks[check].kind {
                CheckKind::Tcp { port } => *port,
                CheckKind::Http(h) => h.port,
            });
            let name = m.name.clone().unwrap_or_else(|| m.address.clone());
            if ids.iter().any(|&j: &usize| members[j].name == name) {
                return Err(cx.err(&format!("{mp}.name"), format!("{name:?} is already a member of pool {pname:?}; member names must be unique in a pool")));
            }
            let weight = m.weight.unwrap_or(1);
            if weight == 0 || weight > 1_000_000 {
                return Err(cx.err(&format!("{mp}.weight"), "must be 1 to 1000000"));
            }
            ids.push(members.len());
            members.push(Member {
                pool: pools.len(),
                name,
                address,
                weight,
                region: m.region.clone(),
                target: SocketAddr::new(probe_ip, port),
                check,
            });
        }
        pools.push(Pool {
            name: pname.clone(),
            check,
            members: ids,
        });
    }
    Ok((pools, members))
}

fn names_of<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = it.map(|s| format!("{s:?}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn build_names(cx: &Ctx, raw: &file::File, pools: &[Pool]) -> Result<Vec<BoundName>, ConfigError> {
    let mut out: Vec<BoundName> = Vec::new();
    for (n, b) in &raw.names {
        let np = format!("names.{}", key(n));
        let fqdn = if n.ends_with('.') {
            n.clone()
        } else {
            format!("{n}.")
        };
        let name = Name::from_ascii(&fqdn)
            .map_err(|e| cx.err(&np, format!("{n:?} is not a domain name: {e}")))?;
        if out
            .iter()
            .any(|o| LowerName::new(&o.name) == LowerName::new(&name))
        {
            return Err(cx.err(&np, format!("{name} is bound twice")));
        }
        if b.pools.is_empty() {
            return Err(cx.err(&format!("{np}.pools"), "list at least one pool"));
        }
        let ids = b
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                pools.iter().position(|x| &x.name == p).ok_or_else(|| {
                    cx.err(
                        &format!("{np}.pools[{i}]"),
                        format!(
                            "no pool named {p:?}; defined are: {}",
                            names_of(pools.iter().map(|x| &x.name))
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ttl = b.ttl.unwrap_or(30);
        if !(1..=86400).contains(&ttl) {
            return Err(cx.err(
                &format!("{np}.ttl"),
                format!("{ttl} is out of range: 1 to 86400 seconds"),
            ));
        }
        out.push(BoundName {
            name,
            pools: ids,
            ttl,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
