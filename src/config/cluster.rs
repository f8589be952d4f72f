//! The [cluster] table: how this instance reaches etcd, under which key prefix, with which
//! identity, and the quorum rule over the instances' views. Checked here; used by
//! [`crate::cluster`]. Without the table gtmd runs alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{duration, file, ConfigError, Ctx};

/// How many of the live instances that probe a member must say down for it to be down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quorum {
    /// More than half of them.
    Majority,
    /// At least this many (all of them when fewer are live).
    Count(usize),
    /// At least this share of them, rounded up (0 < share ≤ 1).
    Share(f64),
}

impl Quorum {
    /// The down verdicts needed among `live` instances (at least 1).
    pub fn needed(&self, live: usize) -> usize {
        let n = match *self {
            Quorum::Majority => live / 2 + 1,
            Quorum::Count(c) => c.min(live),
            Quorum::Share(s) => (s * live as f64 - 1e-9).ceil() as usize,
        };
        n.max(1)
    }
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::Majority => write!(f, "majority"),
            Quorum::Count(c) => write!(f, "{c}"),
            Quorum::Share(s) => write!(f, "{}%", s * 100.0),
        }
    }
}

/// The [cluster] table, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd's client URLs (`http://` or `https://`).
    pub endpoints: Vec<String>,
    /// The cluster's name: every key is under `/gtmd/<name>/`.
    pub name: String,
    /// This instance's id (default: the host name).
    pub id: String,
    /// The TTL of this instance's etcd lease: its views vanish this long after it dies, and
    /// it falls back to its own view this long after it loses etcd.
    pub lease_ttl: Duration,
    pub quorum: Quorum,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// TLS: the CA that signed etcd's certificate, and this client's certificate and key.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClusterConfig {
    /// The key prefix, `/gtmd/<name>/`.
    pub fn prefix(&self) -> String {
        format!("/gtmd/{}/", self.name)
    }
}

pub(super) fn build_cluster(
    cx: &Ctx,
    c: Option<&file::Cluster>,
    base: &Path,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(c) = c else { return Ok(None) };
    if !cfg!(feature = "cluster") {
        return Err(cx.err(
            "cluster",
            "this gtmd was built without etcd support: build it with `cargo build --release --features cluster` (protoc is needed: apt-get install protobuf-compiler)",
        ));
    }
    if c.endpoints.is_empty() {
        return Err(cx.err("cluster.endpoints", "list at least one etcd URL"));
    }
    for (i, e) in c.endpoints.iter().enumerate() {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(cx.err(
                &format!("cluster.endpoints[{i}]"),
                format!("{e:?} is not an etcd URL: write e.g. \"http://10.0.0.1:2379\""),
            ));
        }
    }
    let name = c.name.clone().unwrap_or_else(|| "default".into());
    check_word(cx, "cluster.name", &name)?;
    let id = match &c.id {
        Some(id) => id.clone(),
        None => host_name(),
    };
    check_word(cx, "cluster.id", &id)?;
    let lease_ttl = duration(
        cx,
        "cluster.lease_ttl",
        c.lease_ttl.as_ref(),
        Duration::from_secs(10),
    )?;
    if lease_ttl < Duration::from_secs(2) || lease_ttl.subsec_nanos() != 0 {
        return Err(cx.err(
            "cluster.lease_ttl",
            "must be whole seconds, at least 2s (etcd counts leases in seconds)",
        ));
    }
    let quorum = quorum(cx, c.quorum.as_ref())?;
    let [ca_file, cert_file, key_file] = credentials(cx, c, base)?;
    Ok(Some(ClusterConfig {
        endpoints: c.endpoints.clone(),
        name,
        id,
        lease_ttl,
        quorum,
        username: c.username.clone(),
        password_file: c.password_file.as_ref().map(|f| base.join(f)),
        ca_file,
        cert_file,
        key_file,
    }))
}

/// The TLS files (CA, certificate, key), checked to go together and with https endpoints;
/// user and password file too.
fn credentials(
    cx: &Ctx,
    c: &file::Cluster,
    base: &Path,
) -> Result<[Option<PathBuf>; 3], ConfigError> {
    let tls = [&c.ca_file, &c.cert_file, &c.key_file].map(|f| f.as_ref().map(|f| base.join(f)));
    if tls[1].is_some() != tls[2].is_some() {
        return Err(cx.err("cluster.cert_file", "cert_file and key_file go together"));
    }
    let https = c.endpoints.iter().all(|e| e.starts_with("https://"));
    if tls.iter().any(Option::is_some) && !https {
        return Err(cx.err(
            "cluster.endpoints",
            "TLS files are set: every endpoint must be https://",
        ));
    }
    if c.username.is_some() != c.password_file.is_some() {
        return Err(cx.err("cluster.username", "username and password_file go together"));
    }
    Ok(tls)
}

/// Names that go into etcd keys: letters, digits, `-`, `_` and `.`.
fn check_word(cx: &Ctx, path: &str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(cx.err(
            path,
            format!("{v:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

fn quorum(cx: &Ctx, q: Option<&toml::Value>) -> Result<Quorum, ConfigError> {
    let bad = || {
        cx.err(
            "cluster.quorum",
            "write \"majority\", a count of instances (e.g. 2), or a share (e.g. \"50%\")",
        )
    };
    match q {
        None => Ok(Quorum::Majority),
        Some(toml::Value::Integer(n)) if *n >= 1 => Ok(Quorum::Count(*n as usize)),
        Some(toml::Value::String(s)) if s == "majority" => Ok(Quorum::Majority),
        Some(toml::Value::String(s)) => {
            let p: f64 = s
                .strip_suffix('%')
                .ok_or_else(bad)?
                .trim()
                .parse()
                .map_err(|_| bad())?;
            if p > 0.0 && p <= 100.0 {
                Ok(Quorum::Share(p / 100.0))
            } else {
                Err(bad())
            }
        }
        Some(_) => Err(bad()),
    }
}

/// The host's name (its first label), or "gtmd" when it has none.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| h.trim().split('.').next().map(str::to_string))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gtmd".into())
}

#[cfg(test)]
mod tests {
    use super::Quorum;

    #[test]
    fn quorum_needs_what_it_says() {
        assert_eq!(Quorum::Majority.needed(3), 2);
        assert_eq!(Quorum::Majority.needed(2), 2);
        assert_eq!(Quorum::Majority.needed(1), 1);
        assert_eq!(Quorum::Majority.needed(4), 3);
        assert_eq!(Quorum::Count(2).needed(3), 2);
        assert_eq!(Quorum::Count(2).needed(1), 1);
        assert_eq!(Quorum::Share(0.5).needed(3), 2);
        assert_eq!(Quorum::Share(0.5).needed(4), 2);
        assert_eq!(Quorum::Share(0.18).needed(3), 1);
        assert_eq!(Quorum::Share(1.0).needed(3), 3);
        assert_eq!(Quorum::Share(0.5).needed(0), 1);
    }
}
