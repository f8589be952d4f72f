//! Members that are domain names: each probe resolves the name (through a cache that keeps
//! each answer for its records' TTL, so the name is queried again when its TTL runs out) and
//! probes the addresses it resolves to, in order, until one passes, as a client connecting
//! to the name would. A name that does not resolve fails the probe with the reason.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::rr::Name;
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
}

impl Resolved {
    pub fn new(
        name: Name,
        port: u16,
        resolver: Resolver,
        make: Box<dyn Fn(SocketAddr) -> Result<Direct, String> + Send + Sync>,
    ) -> Self {
        Resolved {
            name,
            port,
            resolver,
            make,
            by_addr: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub async fn probe(&self) -> Result<(), String> {
        let name = &self.name;
        let ips: Vec<IpAddr> = match self.resolver.lookup_ip(name.clone()).await {
            Ok(l) => l.iter().collect(),
            Err(e) if e.is_nx_domain() => return Err(format!("{name} does not resolve: NXDOMAIN")),
            Err(e) if e.is_no_records_found() => {
                return Err(format!("{name} does not resolve: no address records"))
            }
            Err(e) => return Err(format!("{name} does not resolve: {e}")),
        };
        if ips.is_empty() {
            return Err(format!("{name} does not resolve: no address records"));
        }
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
                Ok(()) => return Ok(()),
                Err(e) => errors.push(format!("{ip}: {e}")),
            }
        }
        Err(format!("{name} resolves to {}", errors.join("; ")))
    }
}

impl Resolved {
    /// The probes by address (a poisoned lock only means a probe panicked while holding it;
    /// the map is still whole).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<Direct>>> {
        self.by_addr.lock().unwrap_or_else(|e| e.into_inner())
    }
}
