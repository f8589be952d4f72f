//! The configuration file as written: serde structs with `deny_unknown_fields`, no checks
//! beyond types. [`super`] turns this into the checked runtime configuration.
//! Every field's meaning, default and unit is documented in docs/configuration.md.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub probe: Probe,
    #[serde(default)]
    pub checks: BTreeMap<String, Check>,
    #[serde(default)]
    pub pools: BTreeMap<String, Pool>,
    #[serde(default)]
    pub names: BTreeMap<String, BoundName>,
    #[serde(default)]
    pub regions: BTreeMap<String, Region>,
    #[serde(default)]
    pub alerts: Alerts,
    #[serde(default)]
    pub rrl: Rrl,
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneTable>,
    pub cluster: Option<Cluster>,
}

/// `[cluster]`: several instances that act as one, on etcd.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub name: Option<String>,
    pub id: Option<String>,
    pub lease_ttl: Option<String>,
    pub quorum: Option<toml::Value>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `[zones."example.com."]`: the zone's secondaries and signing.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ZoneTable {
    pub allow_transfer: Option<Vec<String>>,
    pub transfer_keys: Option<Vec<String>>,
    pub notify: Option<Vec<String>>,
    pub notify_key: Option<String>,
    pub dnssec: Option<Dnssec>,
}

/// `[zones."example.com.".dnssec]`: the zone's keys.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Dnssec {
    pub keys: Vec<DnssecKey>,
}

/// A key file, or a table with the file and how it is used.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DnssecKey {
    File(String),
    Table(DnssecKeyTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecKeyTable {
    pub file: String,
    pub sign: Option<bool>,
    pub ksk: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rrl {
    pub rate: Option<u32>,
    pub errors_rate: Option<u32>,
    pub signatures_rate: Option<u32>,
    pub slip: Option<u32>,
    pub ipv4_prefix: Option<u8>,
    pub ipv6_prefix: Option<u8>,
    pub exempt: Option<Vec<String>>,
    pub max_prefixes: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    pub webhook: Option<String>,
    pub command: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub rate: Option<u32>,
    pub burst: Option<u32>,
    pub queue: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub remove_below: String,
    pub return_at: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<Vec<String>>,
    pub zones_dir: Option<String>,
    pub udp_payload: Option<u16>,
    pub tcp_idle_timeout: Option<String>,
    pub tcp_read_timeout: Option<String>,
    pub tcp_max_connections: Option<usize>,
    pub tcp_max_per_client: Option<usize>,
    pub tcp_max_queries: Option<usize>,
    pub max_transfers: Option<usize>,
    pub max_transfers_per_client: Option<usize>,
    pub allow_transfer: Option<Vec<String>>,
    pub tsig_keys: Option<Vec<String>>,
    pub ixfr_journal: Option<usize>,
    pub catalog_zone: Option<String>,
    pub recover_within: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: Option<String>,
    pub token_file: Option<String>,
    pub state_file: Option<String>,
    pub max_body: Option<usize>,
    pub max_time: Option<String>,
    pub header_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_per_client: Option<usize>,
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub max_in_flight: Option<usize>,
    pub max_body: Option<usize>,
    pub queue: Option<usize>,
    pub source: Option<String>,
    pub resolvers: Option<Vec<String>>,
    pub serve_stale: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    Http,
    Https,
    Tcp,
    Icmp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(rename = "type")]
    pub kind: CheckType,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub expect_status: Option<Vec<StatusSpec>>,
    pub body_contains: Option<String>,
    pub tls_verify: Option<bool>,
    pub sni: Option<String>,
    pub keepalive: Option<String>,
    pub interval: Option<String>,
    pub fast_interval: Option<String>,
    pub timeout: Option<String>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub min_down: Option<String>,
    pub flap_window: Option<String>,
    pub max_down: Option<String>,
    pub count: Option<u32>,
    pub max_loss: Option<String>,
    pub max_rtt: Option<String>,
}

/// An expected HTTP status: `200`, or a range as a string, `"200-399"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub check: Option<String>,
    pub checks: Option<Vec<String>>,
    pub require: Option<Require>,
    pub weight: Option<u32>,
    pub capacity: Option<u32>,
    pub region: Option<String>,
    pub members: Vec<Member>,
}

/// How many of a pool's checks must pass: `"all"`, `"any"`, or a count.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Require {
    Count(u32),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub address: Option<String>,
    pub cname: Option<String>,
    pub name: Option<String>,
    pub weight: Option<u32>,
    pub region: Option<String>,
    pub probe_address: Option<String>,
    pub probe_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundName {
    pub pools: Vec<String>,
    pub policy: Option<PolicyKind>,
    pub answers: Option<u32>,
    pub max_answers: Option<u32>,
    pub min_healthy: Option<MinHealthy>,
    pub ttl: Option<u32>,
    pub degraded_ttl: Option<u32>,
    pub recover_within: Option<String>,
    pub when_all_down: Option<AllDownKind>,
    pub fallback: Option<Vec<String>>,
    pub topology: Option<Vec<TopologyRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyRule {
    pub clients: Vec<String>,
    pub order: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    All,
    Weighted,
    Failover,
    Topology,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AllDownKind {
    All,
    Fallback,
    Nodata,
    Servfail,
}

/// `min_healthy`: a count (`2`) or a share of the pool (`"50%"`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum MinHealthy {
    Count(u32),
    Text(String),
}
