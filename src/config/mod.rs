//! The checked configuration. [`Config::parse`] reads TOML text into [`file::File`] and checks
//! every value; each error names the file, the line, the TOML path and what is allowed.
//!
//! Nothing here touches the network or the zones directory: [`crate::app`] loads zones and
//! binds names to them with [`Config::bind_names`].

mod admin;
mod build;
mod checks;
mod cluster;
mod ctx;
mod cycles;
mod dnssec;
pub mod file;
mod geo;
mod names;
mod pools;
pub mod recovery;
pub mod reference;
mod server;
mod topology;
mod transfer;
mod zones;
pub use cluster::{ClusterConfig, Quorum};
pub use server::{udp_limit, RrlConfig, WireSettings, MIN_UDP_PAYLOAD};
pub use transfer::{TransferSettings, ZoneTransfer};

use ctx::{duration, key, line_at, toml_path, Ctx};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;

/// The sample configuration compiled into the binary (`dist/gtmd.toml`).
pub const EMBEDDED: &str = include_str!("../../dist/gtmd.toml");
/// How the embedded configuration is named in messages.
pub const EMBEDDED_NAME: &str = "<embedded dist/gtmd.toml>";

/// A configuration error: where it is, and what is wrong and allowed.
/// The first error in file order is this one's fields; `also` holds the others, in file
/// order, and each is written on its own line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub path: String,
    pub msg: String,
    pub also: Vec<ConfigError>,
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
        write!(f, ": {}", self.msg)?;
        for e in &self.also {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

/// A health check as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    /// The time between probes while a member is between states (suspect or recovering);
    /// `None`: always `interval`.
    pub fast_interval: Option<Duration>,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    pub damping: crate::steer::health::DampingRules,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Tcp { port: u16 },
    Http(HttpCheck),
    Icmp(IcmpCheck),
}

/// Echoes of one ICMP probe are sent this far apart.
pub const ICMP_SPACING: Duration = Duration::from_millis(10);

/// An ICMP echo check: `count` echoes per probe; the probe fails when more than `max_lost`
/// go unanswered within the timeout, or when the answered ones' average round trip is above
/// `max_rtt`.
#[derive(Debug, Clone, PartialEq)]
pub struct IcmpCheck {
    pub count: u32,
    pub max_lost: u32,
    pub max_rtt: Option<Duration>,
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
    /// Keep the connection open between probes, opening a fresh one at least this often;
    /// `None`: a fresh connection for every probe.
    pub keepalive: Option<Duration>,
}

/// One pool member. Members are numbered across all pools; that number is its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub pool: usize,
    pub name: String,
    /// The address answered (unspecified for a member that is a domain name).
    pub address: IpAddr,
    /// The domain name answered as a CNAME, for a member that is one (`cname = "..."`).
    pub cname: Option<Name>,
    pub weight: u32,
    pub region: Option<String>,
    /// The (first) check.
    pub check: usize,
    /// Every check of the member with where it connects, the first one first.
    pub checks: Vec<(usize, ProbeAt)>,
    /// How many of `checks` must be up for the member to be up (1 to their number).
    pub require: usize,
}

impl Member {
    /// What the member answers, as written: its address or its domain name.
    pub fn answer(&self) -> String {
        match &self.cname {
            Some(n) => n.to_string(),
            None => self.address.to_string(),
        }
    }
}

/// Where a member's check connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeAt {
    /// This address and port.
    Addr(SocketAddr),
    /// The addresses this name resolves to (as the probe runs, at the records' TTL), at
    /// this port.
    Resolve(Name, u16),
}

impl ProbeAt {
    pub fn port(&self) -> u16 {
        match self {
            ProbeAt::Addr(a) => a.port(),
            ProbeAt::Resolve(_, p) => *p,
        }
    }
}

impl std::fmt::Display for ProbeAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeAt::Addr(a) => write!(f, "{a}"),
            ProbeAt::Resolve(n, p) => write!(f, "{n} port {p}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub check: usize,
    /// The pool's share against the other pools of a weighted name.
    pub weight: u32,
    /// The share of a failover or topology name's traffic the pool can carry, in percent:
    /// traffic spills over the pools by spare capacity (see [`crate::steer::spill`]).
    pub capacity: Option<u32>,
    pub members: Vec<usize>,
    /// Where its members are (latitude, longitude in degrees), for `nearest` rules.
    pub location: Option<(f64, f64)>,
}

/// A name inside a served zone whose A/AAAA answers come from pools.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundName {
    pub name: Name,
    /// In order: the failover policy tries them first to last.
    pub pools: Vec<usize>,
    pub policy: Policy,
    /// The TTL of answers while every member behind the name is up and steady.
    pub ttl: u32,
    /// The TTL while any member behind the name is down or failing.
    pub degraded_ttl: u32,
    pub all_down: AllDown,
    /// Its members are domain names: it answers one of them as a CNAME, for every type.
    pub cname: bool,
    /// Failover or topology by pool, every pool with a capacity: a failed pool's clients
    /// spill over the others by spare capacity. Per client group (as the policy's orders),
    /// the pools it tries.
    pub spill: Option<Vec<Vec<usize>>>,
    /// How fast clients recover: the objective, if any, and the detection bounds the TTLs
    /// are weighed against (see [`crate::config::recovery`]).
    pub recovery: Recovery,
}

/// A bound name's recovery objective and what it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// `recover_within` (the name's, else `server.recover_within`).
    pub objective: Option<Duration>,
    /// The slowest detection of a failure (`fall` probes) among the checks behind the name.
    pub fall: Duration,
    /// The slowest detection of a recovery (`rise` probes).
    pub rise: Duration,
    /// Where `ttl` came from: "derived" (from the objective), "set" or "default".
    pub ttl_from: &'static str,
}

/// How a bound name chooses its answer among the healthy members behind it.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Every healthy member, at most `max_answers`, rotated per query.
    All { max_answers: usize },
    /// `answers` members chosen per query at random in proportion to their weights.
    Weighted { answers: usize },
    /// The first pool, in order, with at least `min_healthy` healthy members (as `All`).
    Failover {
        min_healthy: MinHealthy,
        max_answers: usize,
    },
    /// By client subnet: each rule's `order` of member groups (pools or regions), then the
    /// name's pools; as `Failover` along that order. `orders[0]` is for unmatched clients.
    Topology {
        min_healthy: MinHealthy,
        max_answers: usize,
        orders: Vec<Vec<Vec<usize>>>,
        /// What each group of each order is called (a pool or a region), for the admin API.
        labels: Vec<Vec<String>>,
        table: std::sync::Arc<crate::steer::topology::Table>,
        /// How many `[[topology]]` rules there are: groups 1 to `rules` are theirs, the
        /// groups after them orders by distance (`nearest`).
        rules: usize,
    },
}

/// The least number of healthy members for a failover pool to be used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinHealthy {
    Count(usize),
    /// Percent of the pool's members, rounded up.
    Percent(u32),
}

impl MinHealthy {
    /// Whether `healthy` of `size` members is enough.
    pub fn met(self, healthy: usize, size: usize) -> bool {
        healthy > 0
            && match self {
                MinHealthy::Count(c) => healthy >= c,
                MinHealthy::Percent(p) => healthy * 100 >= size * p as usize,
            }
    }
}

/// What a bound name answers when no member behind it is healthy.
#[derive(Debug, Clone, PartialEq)]
pub enum AllDown {
    /// Every member, as if all were healthy (fail-open).
    All,
    /// Fixed addresses, or the healthy (else all) members of other pools.
    Fallback {
        addresses: Vec<IpAddr>,
        pools: Vec<usize>,
    },
    /// NOERROR with no address records.
    NoData,
    /// SERVFAIL, so that resolvers try elsewhere or keep what they have.
    ServFail,
}

/// Whole-region removal: the members labelled with one region leave answers together when
/// the share of them that is healthy falls below `remove_below` percent, and return when it
/// reaches `return_at` percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub remove_below: u32,
    pub return_at: u32,
    pub members: Vec<usize>,
}

/// Where alerts go and how hard to try.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// POST JSON here (http or https).
    pub webhook: Option<String>,
    /// Run this (program and arguments) with the alert on stdin and in the environment.
    pub command: Vec<String>,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first, with doubling backoff from 500 ms.
    pub retries: u32,
    /// Alerts a minute, sustained, and at once; beyond that they fold into a summary.
    pub rate: u32,
    pub burst: u32,
    /// Alerts waiting for delivery at most; more are dropped and counted.
    pub queue: usize,
}

/// Bounds on admin API connections and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// The largest request body taken (bigger ones get 413).
    pub max_body: usize,
    /// The longest a client may take to send a request's body (then 408). Handlers are not
    /// under it.
    pub max_time: Duration,
    /// The longest a connection may wait for a request's headers, the first or the next
    /// (then it is closed); at most `max_time`.
    pub header_timeout: Duration,
    /// Open connections at most, in all and from one client address. At a cap, the
    /// connection that has waited longest for a request's headers is closed for the new one.
    pub max_connections: usize,
    pub max_per_client: usize,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// How messages name it: the file's path, or the embedded sample's name.
    pub source: String,
    /// The file it was read from (a reload reads it again); `None` for the embedded sample
    /// and for text given to [`Config::parse`].
    pub path: Option<PathBuf>,
    pub listen: Vec<SocketAddr>,
    pub zones_dir: PathBuf,
    /// Settings of the DNS transports, applied again on reload.
    pub wire: WireSettings,
    pub admin_listen: SocketAddr,
    /// The bearer token for changes through the admin API is in this file.
    pub token_file: Option<PathBuf>,
    /// Overrides are kept here across restarts; `None`: in memory only.
    pub state_file: Option<PathBuf>,
    pub admin_limits: AdminLimits,
    /// Host names the admin API answers to besides its address (`admin.allowed_hosts`).
    pub admin_allowed_hosts: Vec<String>,
    pub max_in_flight: usize,
    pub max_body: usize,
    /// Probe results waiting for the engine at most; a probe loop waits for room beyond.
    pub probe_queue: usize,
    /// Probes connect from this address (`None`: the kernel's choice).
    pub probe_source: Option<std::net::IpAddr>,
    /// The DNS servers that resolve members that are domain names (empty: the system's, from
    /// /etc/resolv.conf).
    pub resolvers: Vec<SocketAddr>,
    /// How long a member that is a domain name is probed at the addresses it last resolved
    /// to while resolving it fails (zero: not at all).
    pub serve_stale: Duration,
    pub checks: Vec<Check>,
    pub pools: Vec<Pool>,
    pub members: Vec<Member>,
    pub names: Vec<BoundName>,
    pub regions: Vec<Region>,
    pub alerts: AlertConfig,
    /// Response rate limiting on UDP.
    pub rrl: RrlConfig,
    /// Several instances that act as one, on etcd; `None`: alone.
    pub cluster: Option<ClusterConfig>,
    /// The keys of each signed zone, by origin.
    pub dnssec:
        std::collections::HashMap<hickory_proto::rr::LowerName, Vec<crate::zone::keys::KeySpec>>,
    /// The `[geo]` databases, when topology rules match places.
    pub geo: Option<std::sync::Arc<crate::steer::geo::Geo>>,
    /// Valid but probably not meant (an explicit TTL that breaks a recovery objective):
    /// logged at start and reload, printed by `check-config`.
    pub warnings: Vec<String>,
    text: String,
}

impl Config {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            path: String::new(),
            msg: format!("cannot read: {e}"),
            also: Vec::new(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = Self::parse(&text, &path.display().to_string(), base)?;
        cfg.path = Some(path.to_path_buf());
        cfg.default_state_file(path, std::env::var_os("STATE_DIRECTORY"));
        Ok(cfg)
    }

    /// Whether a secondary may hold one of the zones' serials: a zone is notified or may be
    /// transferred.
    pub fn has_secondaries(&self) -> bool {
        !self.wire.allow_transfer.is_empty()
            || self
                .wire
                .transfer
                .zones
                .values()
                .any(|z| !z.notify.is_empty() || !z.allow.is_empty() || !z.keys.is_empty())
    }

    /// Without `admin.state_file`, a configuration whose zones have secondaries keeps its
    /// state (zone serials, overrides) in `state.json` of `state_dir` (systemd's
    /// `$STATE_DIRECTORY`, the first if several) or else beside the configuration file as
    /// `NAME.state.json`: a serial a secondary holds is never lost, so a restart never goes
    /// below it. Said as a warning, so that `check-config` shows it.
    fn default_state_file(&mut self, config: &Path, state_dir: Option<std::ffi::OsString>) {
        if self.state_file.is_some() || !self.has_secondaries() {
            return;
        }
        let dir = state_dir
            .as_ref()
            .and_then(|d| std::env::split_paths(d).next())
            .filter(|d| !d.as_os_str().is_empty());
        let path = match dir {
            Some(d) => d.join("state.json"),
            None => {
                let mut name = config.file_stem().unwrap_or_default().to_os_string();
                name.push(".state.json");
                config.with_file_name(name)
            }
        };
        self.warnings.push(format!(
            "admin.state_file is not set: zone serials and overrides are kept in {} (zones \
             have secondaries, and a serial must never go backwards after a restart)",
            path.display()
        ));
        self.state_file = Some(path);
    }

    /// The embedded sample configuration; its relative paths are taken from the working directory.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED, EMBEDDED_NAME, Path::new("."))
    }

    /// Checks configuration `text`; `source` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, source: &str, base: &Path) -> Result<Self, ConfigError> {
        let cx = Ctx::new(source, text);
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| ConfigError {
            file: source.to_string(),
            line: e.span().map(|s| line_at(text, s.start)),
            path: String::new(),
            msg: format!("invalid TOML: {}", e.message().trim().replace('\n', "; ")),
            also: Vec::new(),
        })?;
        // The document parsed once is read into the file's structure and gone.
        let de = toml_edit::de::Deserializer::from(doc);
        let raw: file::File = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = toml_path(e.path());
            let inner = e.into_inner();
            let line = inner.span().map(|s| line_at(text, s.start));
            ConfigError {
                file: source.to_string(),
                line: line.or_else(|| cx.line_of(&path)),
                path: if path == "." { String::new() } else { path },
                msg: inner.message().to_string(),
                also: Vec::new(),
            }
        })?;
        build::build(&cx, raw, base)
    }
}

/// `n` as an absolute domain name: a name written without its final dot is taken as
/// absolute, as everywhere in the configuration.
pub fn absolute_name(n: &str) -> Result<Name, hickory_proto::ProtoError> {
    if n.ends_with('.') {
        Name::from_ascii(n)
    } else {
        Name::from_ascii(format!("{n}."))
    }
}

#[cfg(test)]
mod tests;
