//! Members that are domain names: each probe resolves the name (through a cache that keeps
//! each answer for its records' TTL, so the name is queried again when its TTL runs out) and
//! probes the addresses it resolves to, in order, until one passes, as a client connecting
//! to the name would. A name that does not resolve (NXDOMAIN, no address records) fails the
//! probe with the reason.
//!
//! Resolution that fails (the resolvers time out, refuse or fail) is not the member's
//! failure: as RFC 8767 lets a resolver serve stale data, the probe goes on with the
//! addresses last resolved, for at most `probe.serve_stale` after they were, and says that
//! resolution is failing, where and why ([`Resolved::failing`]). Resolution has half the
//! probe's timeout, so that the probe of the addresses keeps the other half.
//!
//! A name inside gtmd's own zones is not asked of the resolvers: the engine works out what
//! gtmd itself answers for it at each publication ([`Local`]), and the probe takes the
//! addresses from there. Only where the chain leaves gtmd's zones are the resolvers asked,
//! for the name it leads to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::{LowerName, Name};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use super::Direct;

/// The resolver shared by every probe of members that are domain names.
pub type Resolver = Arc<TokioResolver>;

/// A resolver asking `servers` (none: the system's, from /etc/resolv.conf), with a cache.
pub fn resolver(servers: &[SocketAddr]) -> Result<Resolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| {
            format!("cannot read the system's resolver configuration ({e}); set probe.resolvers")
        })?
    } else {
        let list = servers
            .iter()
            .map(|s| {
                let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                udp.port = s.port();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(list),
            TokioRuntimeProvider::default(),
        )
    };
    let opts = builder.options_mut();
    if !servers.is_empty() {
        // The servers given answer, not the hosts file.
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    }
    opts.cache_size = 4096;
    builder
        .build()
        .map(Arc::new)
        .map_err(|e| format!("cannot set up the resolver: {e}"))
}

/// What gtmd's own zones give for a name inside them, as of the last publication.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    /// The addresses gtmd answers for it (following CNAMEs inside its zones).
    Addresses(Vec<IpAddr>),
    /// It does not resolve there: why.
    Missing(String),
    /// Its chain leaves gtmd's zones for this name, which the resolvers answer.
    Outside(Name),
}

/// Every probe target inside gtmd's zones, with what they give; the engine stores a new
/// table when a publication changes it, probes read it.
pub type LocalTable = Arc<arc_swap::ArcSwap<HashMap<LowerName, Local>>>;

/// Where a member's addresses come from, for one inside gtmd's zones.
pub const FROM_LOCAL: &str = "gtmd's own zones";

/// The addresses a name last resolved to.
struct Resolution {
    /// The name resolved (the member's, or the one its chain in gtmd's zones leads to).
    name: Name,
    ips: Vec<IpAddr>,
    /// Until when the answer's TTL keeps it.
    fresh_until: Instant,
    /// When it was resolved.
    at: Instant,
}

/// Probes of one check of a member that is a domain name.
pub struct Resolved {
    pub name: Name,
    pub port: u16,
    pub resolver: Resolver,
    /// Makes the probe of one resolved address.
    pub make: Box<dyn Fn(SocketAddr) -> Result<Direct, String> + Send + Sync>,
    /// The probes of the addresses of the last resolution (kept connections stay open while
    /// the name keeps resolving to them).
    by_addr: std::sync::Mutex<HashMap<IpAddr, Arc<Direct>>>,
    /// The resolvers asked, in words ("127.0.0.1:5300", or "the system's resolvers").
    servers: String,
    /// How long the addresses last resolved are probed while resolution fails.
    stale: Duration,
    /// How long one resolution may take.
    within: Duration,
    last: std::sync::Mutex<Option<Resolution>>,
    /// Why resolution fails, while it does.
    failing: std::sync::Mutex<Option<String>>,
    /// What gtmd's own zones give, by name.
    local: LocalTable,
    key: LowerName,
    /// Where the addresses last probed came from.
    from: std::sync::Mutex<Option<String>>,
    /// The addresses last probed (none while the name does not resolve).
    probed: std::sync::Mutex<Option<Vec<IpAddr>>>,
}

impl Resolved {
    /// Probes of `name` at `port`, resolved from `local` inside gtmd's zones, else by
    /// `resolver` (asking `servers`), each probe within `timeout`; addresses last resolved
    /// are used for `stale` while resolution fails.
    pub fn new(
        (name, port): (Name, u16),
        (resolver, servers, local): (Resolver, &[SocketAddr], LocalTable),
        (timeout, stale): (Duration, Duration),
        make: Box<dyn Fn(SocketAddr) -> Result<Direct, String> + Send + Sync>,
    ) -> Self {
        let servers = match servers {
            [] => "the system's resolvers".to_string(),
            s => s
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        Resolved {
            key: LowerName::new(&name),
            local,
            from: std::sync::Mutex::new(None),
            probed: std::sync::Mutex::new(None),
            name,
            port,
            resolver,
            make,
            by_addr: std::sync::Mutex::new(HashMap::new()),
            servers,
            stale,
            within: timeout / 2,
            last: std::sync::Mutex::new(None),
            failing: std::sync::Mutex::new(None),
        }
    }

    /// Why resolving the name fails, while it does (and whether stale addresses are probed).
    pub fn failing(&self) -> Option<String> {
        lock(&self.failing).clone()
    }

    /// Where the addresses last probed came from: gtmd's own zones, or which resolvers.
    pub fn source(&self) -> Option<String> {
        lock(&self.from).clone()
    }

    /// The addresses probed last: what the name resolves to (in gtmd's zones or by the
    /// resolvers, or the last resolution's while resolving fails); none while it resolves to
    /// nothing.
    pub fn addresses_now(&self) -> Option<Vec<IpAddr>> {
        lock(&self.probed).clone()
    }

    /// The addresses to probe: gtmd's own answer for a name inside its zones; else the
    /// resolvers' (for the name, or the one its chain in gtmd's zones leads to).
    async fn addresses(&self) -> Result<Vec<IpAddr>, String> {
        let target = match self.local.load().get(&self.key) {
            Some(Local::Addresses(ips)) => {
                *lock(&self.from) = Some(FROM_LOCAL.to_string());
                *lock(&self.failing) = None;
                return Ok(ips.clone());
            }
            Some(Local::Missing(why)) => {
                *lock(&self.from) = Some(FROM_LOCAL.to_string());
                *lock(&self.failing) = None;
                return Err(format!(
                    "{} does not resolve in gtmd's own zones (resolved locally): {why}",
                    self.name
                ));
            }
            Some(Local::Outside(n)) => n.clone(),
            None => self.name.clone(),
        };
        *lock(&self.from) = Some(if target == self.name {
            format!("resolvers {}", self.servers)
        } else {
            format!(
                "resolvers {}, for {target} (where gtmd's own zones lead)",
                self.servers
            )
        });
        self.resolve(&target).await
    }

    /// The addresses of `name` by the resolvers: the last resolution's while its TTL lasts,
    /// a new one's, or, while resolution fails, the last one's for at most `stale`.
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, String> {
        let now = Instant::now();
        if let Some(r) = lock(&self.last)
            .as_ref()
            .filter(|r| r.fresh_until > now && r.name == *name)
        {
            return Ok(r.ips.clone());
        }
        let lookup = self.resolver.lookup_ip(name.clone());
        let why = match tokio::time::timeout(self.within, lookup).await {
            Ok(Ok(l)) => {
                let ips: Vec<IpAddr> = l.iter().collect();
                *lock(&self.failing) = None;
                if ips.is_empty() {
                    *lock(&self.last) = None;
                    return Err(format!("{name} does not resolve: no address records"));
                }
                let fresh_until = l.valid_until();
                let at = now;
                *lock(&self.last) = Some(Resolution {
                    name: name.clone(),
                    ips: ips.clone(),
                    fresh_until,
                    at,
                });
                return Ok(ips);
            }
            // An answer that the name has no addresses is the name's state, not a failure.
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
                *lock(&self.failing) = None;
                *lock(&self.last) = None;
                let what = if e.is_nx_domain() {
                    "NXDOMAIN"
                } else {
                    "no address records"
                };
                return Err(format!("{name} does not resolve: {what}"));
            }
            Ok(Err(e)) => format!("resolving {name} at {} fails: {e}", self.servers),
            Err(_) => format!(
                "resolving {name} at {} fails: no answer within {:?}",
                self.servers, self.within
            ),
        };
        let stale = lock(&self.last)
            .as_ref()
            .filter(|r| now.duration_since(r.at) < self.stale && r.name == *name)
            .map(|r| (r.ips.clone(), now.duration_since(r.at)));
        match stale {
            Some((ips, age)) => {
                *lock(&self.failing) = Some(format!(
                    "{why}; probing the addresses resolved {}s ago",
                    age.as_secs()
                ));
                Ok(ips)
            }
            None => {
                *lock(&self.failing) = Some(why.clone());
                Err(why)
            }
        }
    }

    pub async fn probe(&self) -> Result<Option<Duration>, String> {
        let ips = self.addresses().await;
        *lock(&self.probed) = ips.as_ref().ok().cloned();
        let ips = ips?;
        let name = &self.name;
        self.lock().retain(|a, _| ips.contains(a));
        let mut errors = Vec::new();
        for ip in ips {
            let at = SocketAddr::new(ip, self.port);
            let p = match self.lock().entry(ip) {
                std::collections::hash_map::Entry::Occupied(o) => o.get().clone(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Arc::new((self.make)(at)?)).clone()
                }
            };
            match p.probe().await {
                Ok(rtt) => return Ok(rtt),
                Err(e) => errors.push(format!("{ip}: {e}")),
            }
        }
        Err(format!("{name} resolves to {}", errors.join("; ")))
    }
}

/// Locks `m` (a poisoned lock only means a probe panicked while holding it; the value is
/// still whole).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Resolved {
    /// The probes by address (a poisoned lock only means a probe panicked while holding it;
    /// the map is still whole).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<Direct>>> {
        self.by_addr.lock().unwrap_or_else(|e| e.into_inner())
    }
}
