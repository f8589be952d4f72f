//! The configuration file as written: serde structs with `deny_unknown_fields`, no checks
//! beyond types. [`super`] turns this into the checked runtime configuration.
//!
//! Each field's doc comment is its reference: a first line `Default: …`, then what it means.
//! gtmd.toml(5) (`gtmd manpage`) and the tables of docs/configuration.md are made from them
//! ([`super::reference`]), and a test keeps both current.

mod health;
pub use health::*;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `[server]`: where DNS is served, zones, transfers and TCP limits.
    #[serde(default)]
    pub server: Server,
    /// `[admin]`: the HTTP admin API, its token and the state file.
    #[serde(default)]
    pub admin: Admin,
    /// `[probe]`: the prober as a whole.
    #[serde(default)]
    pub probe: Probe,
    /// `[checks.NAME]`: how members are probed.
    #[serde(default)]
    pub checks: BTreeMap<String, Check>,
    /// `[pools.NAME]`: address pools and their members.
    #[serde(default)]
    pub pools: BTreeMap<String, Pool>,
    /// `[names."FQDN"]`: names answered from pools, and how.
    #[serde(default)]
    pub names: BTreeMap<String, BoundName>,
    /// `[regions.NAME]`: members that leave and return together.
    #[serde(default)]
    pub regions: BTreeMap<String, Region>,
    /// `[alerts]`: where alerts go.
    #[serde(default)]
    pub alerts: Alerts,
    /// `[rrl]`: response rate limiting of UDP answers.
    #[serde(default)]
    pub rrl: Rrl,
    /// `[zones."ZONE"]`: a zone's secondaries and signing.
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneTable>,
    /// `[cluster]`: several instances that act as one, on etcd.
    pub cluster: Option<Cluster>,
    /// `[geo]`: where clients are, for topology rules by place.
    pub geo: Option<Geo>,
}

/// `[geo]`: where clients are, for topology rules by place.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Geo {
    /// Default: required with `[geo]`.
    /// MaxMind DB files (`.mmdb`: GeoIP2/GeoLite2 Country, City or ASN, or another vendor's in
    /// that format), relative to the configuration's folder; read at start and at each reload.
    /// Several are intersected: a country database and an ASN one give both.
    pub databases: Vec<String>,
}

/// `[cluster]`: several instances that act as one, on etcd.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Default: required with `[cluster]`.
    /// etcd client URLs, `http://` or `https://` (see [Cluster](cluster.md); needs the `cluster`
    /// feature).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Default: `"default"`.
    /// The cluster's name: every key is under `/gtmd/NAME/`.
    pub name: Option<String>,
    /// Default: the host name.
    /// This instance's id (letters, digits, `-`, `_`, `.`); unique in the cluster: an instance
    /// whose id a live instance holds is refused until that one is gone.
    pub id: Option<String>,
    /// Default: `"10s"`.
    /// Whole seconds, at least 2: a dead instance's views and leadership end after this; without
    /// etcd this long, an instance answers from its own view.
    pub lease_ttl: Option<String>,
    /// Default: `"majority"`.
    /// Down verdicts needed among the live instances that probe a member: `"majority"`, a count
    /// (`2`) or a share (`"50%"`).
    #[schemars(with = "Option<MinHealthy>")]
    pub quorum: Option<toml::Value>,
    /// Default: none.
    /// Etcd user (with `password_file`).
    pub username: Option<String>,
    /// Default: none.
    /// The file holding the etcd user's password (with `username`).
    pub password_file: Option<String>,
    /// Default: system roots.
    /// CA of etcd's certificate (https endpoints).
    pub ca_file: Option<String>,
    /// Default: none.
    /// Client certificate for etcd (with `key_file`).
    pub cert_file: Option<String>,
    /// Default: none.
    /// The client certificate's key (with `cert_file`).
    pub key_file: Option<String>,
}

/// `[zones."example.com."]`: the zone's secondaries and signing.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneTable {
    /// Default: `server.allow_transfer`.
    /// Who may transfer this zone (with `transfer_keys` only: any address with the key).
    pub allow_transfer: Option<Vec<String>>,
    /// Default: `[]`.
    /// Key names of `server.tsig_keys`; when set, a transfer must be signed with one of them.
    pub transfer_keys: Option<Vec<String>>,
    /// Default: `[]`.
    /// Secondaries (`"192.0.2.53:53"`) sent a NOTIFY on every new serial.
    pub notify: Option<Vec<String>>,
    /// Default: the first of `transfer_keys`.
    /// The key NOTIFY messages are signed with.
    pub notify_key: Option<String>,
    /// Default: none (unsigned).
    /// The zone's signing keys, below (see [DNSSEC](dnssec.md)).
    pub dnssec: Option<Dnssec>,
}

/// `[zones."example.com.".dnssec]`: the zone's keys.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dnssec {
    /// Default: required with `dnssec`.
    /// Key files that sign the zone: a BIND pair (`K…`, `.key` or `.private`) or a Knot `.pem`,
    /// relative to the config file; or a table `{ file = "…", sign = true, ksk = true }`.
    pub keys: Vec<DnssecKey>,
}

/// A key file, or a table with the file and how it is used.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DnssecKey {
    File(String),
    Table(DnssecKeyTable),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnssecKeyTable {
    /// Default: required.
    /// The key file, as in the plain list.
    pub file: String,
    /// Default: `true`.
    /// `false` publishes the key without signing with it (rollovers).
    pub sign: Option<bool>,
    /// Default: the key's own flags.
    /// Gives a `.pem` key its role: `true` signs the DNSKEY set only.
    pub ksk: Option<bool>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rrl {
    /// Default: `200`.
    /// UDP answers (NOERROR) a second per client prefix; 0: not limited.
    pub rate: Option<u32>,
    /// Default: `50`.
    /// UDP NXDOMAIN, NODATA (compact denial's NOERROR for a missing name included) and error
    /// responses a second per client prefix; 0: not limited.
    pub errors_rate: Option<u32>,
    /// Default: `100`.
    /// UDP answers signed per query (a missing name, a wildcard) a second per client prefix; beyond
    /// it they go out truncated and unsigned, and the client gets them over TCP; 0: not limited.
    pub signatures_rate: Option<u32>,
    /// Default: `2`.
    /// Every `slip`-th response over the limit goes out truncated (TC, no records) so real clients
    /// retry over TCP; the others are dropped; 0: drop all, 1: truncate all.
    pub slip: Option<u32>,
    /// Default: `24`.
    /// How IPv4 clients are grouped: the prefix length.
    pub ipv4_prefix: Option<u8>,
    /// Default: `56`.
    /// How IPv6 clients are grouped: the prefix length.
    pub ipv6_prefix: Option<u8>,
    /// Default: `["127.0.0.0/8", "::1/128"]`.
    /// Addresses or CIDR prefixes never limited (list your own resolvers and monitoring); `[]`
    /// exempts nobody.
    pub exempt: Option<Vec<String>>,
    /// Default: `200000`.
    /// Client prefixes tracked; beyond it, those back at a full bucket are forgotten, and if that
    /// is not enough the table starts again.
    pub max_prefixes: Option<usize>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Default: none.
    /// POST every alert as JSON to this http(s) URL (redirects not followed).
    pub webhook: Option<String>,
    /// Default: none.
    /// Run this program with its arguments, e.g. `["/usr/local/bin/page", "dns"]`, the alert as
    /// JSON on stdin and as `GTMD_*` variables.
    pub command: Option<Vec<String>>,
    /// Default: `"5s"`.
    /// Per delivery attempt.
    pub timeout: Option<String>,
    /// Default: `3`.
    /// Attempts after the first (0–10), backoff doubling from 500 ms.
    pub retries: Option<u32>,
    /// Default: `30`.
    /// Alerts a minute, sustained; beyond it (and `burst`) they fold into a summary.
    pub rate: Option<u32>,
    /// Default: `10`.
    /// Alerts at once before the rate applies.
    pub burst: Option<u32>,
    /// Default: `1024`.
    /// Alerts waiting for delivery; beyond it they are dropped and counted.
    pub queue: Option<usize>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Default: `["127.0.0.1:5353"]`.
    /// Addresses to serve DNS on, UDP and TCP each; IPv6 as `"[::1]:53"`; port 0 picks a free port.
    /// An IPv6 address serves IPv6 only (as Knot and NSD), so `["0.0.0.0:53", "[::]:53"]` serves
    /// both families and `[::]:53` alone IPv6 only. An address twice, or a port of one family at a
    /// given address and at the unspecified one, is an error (both cannot be bound), and so is
    /// `admin.listen` on one of them.
    pub listen: Option<Vec<String>>,
    /// Default: `"zones"`.
    /// Directory of zone files, relative to the config file; every `NAME.zone` in it is the zone
    /// `NAME.`. Zone files and the files they `$INCLUDE` (a relative path is taken from the
    /// including file's directory) must be regular files: a device, a FIFO or a directory is an
    /// error at once. One zone holds at most 1 GiB of text (all its files together) and 10,000,000
    /// records; beyond either, an error names the file and line. A TTL of 2^31 or more is read as 0
    /// (RFC 2181 section 8, as Knot does).
    pub zones_dir: Option<String>,
    /// Default: `1232`.
    /// EDNS UDP payload size advertised and the most sent over UDP, bytes (512–4096).
    pub udp_payload: Option<u16>,
    /// Default: `"10s"`.
    /// A TCP connection with no query under way for this long is closed; while half of
    /// `tcp_max_connections` or more are open, at most 1 s (as NSD shortens it under load); above
    /// 0.
    pub tcp_idle_timeout: Option<String>,
    /// Default: `"2s"`.
    /// A query begun on TCP must arrive whole within this, and the client must take each answer
    /// within it (a slow sender or reader cannot hold a slot; above 0).
    pub tcp_read_timeout: Option<String>,
    /// Default: `1024`.
    /// TCP connections at once. At the cap a new connection is not refused: the longest-idle
    /// connection is closed to make room (that client's own longest-idle one when the client holds
    /// more than an eighth of the cap, or more than `tcp_max_per_client` when set); only when every
    /// connection has a query under way is the new one closed.
    pub tcp_max_connections: Option<usize>,
    /// Default: `0` (no cap).
    /// TCP connections at once from one address; at the cap the client's own longest-idle
    /// connection makes room. 0: only `tcp_max_connections` applies (a resolver farm behind NAT is
    /// one address).
    pub tcp_max_per_client: Option<usize>,
    /// Default: `0` (no limit).
    /// Queries answered on one TCP connection, then it is closed (every query already read is
    /// answered first).
    pub tcp_max_queries: Option<usize>,
    /// Default: `32`.
    /// Zone transfers (AXFR, and IXFR beyond the SOA alone) under way at once on one listen
    /// address; more get REFUSED (as BIND and Knot answer beyond their limits), and the secondary
    /// retries.
    pub max_transfers: Option<usize>,
    /// Default: `4`.
    /// Transfers under way at once to one client address; more get REFUSED. 0: only `max_transfers`
    /// applies.
    pub max_transfers_per_client: Option<usize>,
    /// Default: `[]`.
    /// Addresses or CIDR prefixes allowed AXFR/IXFR over TCP (for a zone with a `[zones]` table,
    /// its default `allow_transfer`).
    pub allow_transfer: Option<Vec<String>>,
    /// Default: `[]`.
    /// Files of TSIG keys, as `tsig-keygen` (`key "NAME" { algorithm hmac-sha256; secret "...";
    /// };`) or Knot's `keymgr -t` write them; hmac-sha256, -sha384, -sha512.
    pub tsig_keys: Option<Vec<String>>,
    /// Default: `64`.
    /// Versions of each zone's live answers kept for IXFR; a secondary further behind gets the
    /// whole zone.
    pub ixfr_journal: Option<usize>,
    /// Default: none.
    /// Serve a catalog zone (RFC 9432) of this name listing every zone (see [Several name
    /// servers](secondaries.md)).
    pub catalog_zone: Option<String>,
    /// Default: none.
    /// The default `recover_within` of every bound name (see [How fast do clients
    /// recover?](steering.md#how-fast-do-clients-recover)).
    pub recover_within: Option<String>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Default: `"127.0.0.1:8053"`.
    /// Address of the HTTP admin API.
    pub listen: Option<String>,
    /// Default: none.
    /// File holding the bearer token that changes through the admin API need (required for a
    /// non-loopback `listen`).
    pub token_file: Option<String>,
    /// Default: none (in memory); with secondaries, `$STATE_DIRECTORY/state.json` or `NAME.state.json` beside the config file.
    /// Where overrides and zone serials are kept across restarts, e.g. `/var/lib/gtmd/state.json`;
    /// a copy is kept beside it as `NAME.prev`; a symbolic link is written through to its target
    /// (see [Operating](operation.md#overrides-and-the-state-file)).
    pub state_file: Option<String>,
    /// Default: `65536`.
    /// Largest request body taken, bytes (bigger: 413).
    pub max_body: Option<usize>,
    /// Default: `"10s"`.
    /// Longest a client may take to send a request's body (else 408). What the request asks for (a
    /// reload waiting for new members' first probes) is not cut off.
    pub max_time: Option<String>,
    /// Default: `"3s"` (at most `admin.max_time`).
    /// Longest a connection may wait for a request's headers, the first or the next (else it is
    /// closed): a slow sender's or an idle connection's time; above 0, at most `admin.max_time`.
    pub header_timeout: Option<String>,
    /// Default: `64`.
    /// Admin connections at once. At the cap a new connection is not refused: the one that has
    /// waited longest for a request's headers (sending them slowly, or idle) is closed for it; a
    /// request under way is never cut off, and a connection keeps its place for its first 200 ms
    /// (and 200 ms after each answer) so that its request can arrive. Until one can make room the
    /// newcomer waits, in arrival order, up to `admin.header_timeout`.
    pub max_connections: Option<usize>,
    /// Default: `16`.
    /// Admin connections at once from one client address; at the cap the client's own connection
    /// that has waited longest for its headers makes room, so one client's slow connections cannot
    /// take every slot, nor lock out an operator at the same address (100 slow-header connections
    /// from 127.0.0.1, each reopened as closed: 5 of 5 operator requests answered from 127.0.0.1
    /// and 5 of 5 from 127.0.0.3, in 0.3 to 1.2 s each; `tests/admin_slow.rs`).
    pub max_per_client: Option<usize>,
    /// Default: `[]`.
    /// Host names (no port) the admin API answers to in `Host` and `Origin` besides its own address
    /// (and `localhost` on loopback), e.g. `["gtm.example.net"]`; any other name gets 403, so a
    /// page whose name was rebound to the API's address (DNS rebinding) cannot use it. Read at
    /// start.
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Default: `256`.
    /// Probes running at once, over all members.
    pub max_in_flight: Option<usize>,
    /// Default: `65536`.
    /// Bytes of a response body read for `body_contains`.
    pub max_body: Option<usize>,
    /// Default: `4096`.
    /// Probe results waiting for the engine; beyond it a probe waits for room (nothing is lost,
    /// probing slows).
    pub queue: Option<usize>,
    /// Default: none.
    /// Address probes connect from (a vantage point's own address; see [Cluster](cluster.md)).
    pub source: Option<String>,
    /// Default: the system's (`/etc/resolv.conf`).
    /// DNS servers that resolve members that are domain names, `"192.0.2.53"` or `"127.0.0.1:5300"`
    /// (see [Load balancers known by name](steering.md#load-balancers-known-by-name)); names inside
    /// gtmd's own zones are resolved from its own data instead.
    pub resolvers: Option<Vec<String>>,
    /// Default: `"6h"`.
    /// While resolving a member's name fails, how long after it last resolved its addresses are
    /// still probed; `"0s"`: not at all.
    pub serve_stale: Option<String>,
}
