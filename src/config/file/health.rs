//! The parts of the configuration file about health and answers: checks, pools and their
//! members, bound names, regions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Default: required.
    /// The members labelled NAME leave answers together when fewer than this share of them (e.g.
    /// `"50%"`) pass.
    pub remove_below: String,
    /// Default: `remove_below` + 25 points (at most `"100%"`).
    /// ...and return when this share passes again.
    pub return_at: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    Http,
    Https,
    Tcp,
    Icmp,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Default: required.
    /// `"http"`, `"https"`, `"tcp"` (connect only) or `"icmp"` (ping; see [Ping
    /// checks](steering.md#ping-checks)).
    #[serde(rename = "type")]
    pub kind: CheckType,
    /// Default: 80 / 443; required for tcp.
    /// Port probed (a member's `probe_port` overrides it); not for icmp.
    pub port: Option<u16>,
    /// Default: `"/"`.
    /// HTTP path.
    pub path: Option<String>,
    /// Default: none.
    /// HTTP Host header (and, for https, the TLS name unless `sni` is set).
    pub host: Option<String>,
    /// Default: `{}`.
    /// Extra request headers, e.g. `{ "X-Probe" = "gtmd" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Default: `["200-399"]`.
    /// Accepted statuses: codes (`200`) or ranges (`"200-299"`).
    pub expect_status: Option<Vec<StatusSpec>>,
    /// Default: none.
    /// Substring the body must contain.
    pub body_contains: Option<String>,
    /// Default: `true`.
    /// Verify the certificate (https).
    pub tls_verify: Option<bool>,
    /// Default: `host`.
    /// TLS server name (https).
    pub sni: Option<String>,
    /// Default: none.
    /// Http/https: keep the connection open between probes and open a fresh one at least this often
    /// (from `interval` to `"1h"`); none: a fresh connection per probe.
    pub keepalive: Option<String>,
    /// Default: `"1s"`.
    /// Time between probes of one member (±10% jitter; at least 100 ms).
    pub interval: Option<String>,
    /// Default: none.
    /// Time between probes while a member is between states (suspect or recovering); at least 10 ms
    /// and below `interval`; none: always `interval`.
    pub fast_interval: Option<String>,
    /// Default: `"500ms"`.
    /// A probe not done by then fails; must be below `interval`.
    pub timeout: Option<String>,
    /// Default: `3`.
    /// Consecutive failures that take an up member down (1–100).
    pub fall: Option<u32>,
    /// Default: `2`.
    /// Consecutive successes that bring a down member up (1–100).
    pub rise: Option<u32>,
    /// Default: `"0s"` (off).
    /// Flap damping: a member that went down stays out of answers at least this long, even once
    /// probes pass.
    pub min_down: Option<String>,
    /// Default: `"10m"`.
    /// Each down within this window of earlier downs doubles the hold-down.
    pub flap_window: Option<String>,
    /// Default: `"10m"` (at least `min_down`).
    /// The longest hold-down.
    pub max_down: Option<String>,
    /// Default: `3`.
    /// Icmp: echo requests per probe (1–20), sent 10 ms apart; `timeout` must leave room for them.
    pub count: Option<u32>,
    /// Default: `"0%"`.
    /// Icmp: the share of a probe's echoes that may go unanswered within the timeout (`"34%"`: 1 of
    /// 3).
    pub max_loss: Option<String>,
    /// Default: none.
    /// Icmp: the probe fails when the answered echoes' average round trip is above this.
    pub max_rtt: Option<String>,
}

/// An expected HTTP status: `200`, or a range as a string, `"200-399"`.
#[derive(Debug, Deserialize, Clone, JsonSchema)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Text(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Default: required (or `checks`).
    /// The check that probes this pool's members.
    pub check: Option<String>,
    /// Default: none.
    /// Several checks instead of one, e.g. `["ingress-http", "tls-443"]`: each probes every member
    /// on its own schedule with its own rise/fall (a member's `probe_port` applies to them all).
    pub checks: Option<Vec<String>>,
    /// Default: `"all"`.
    /// With `checks`: how many must be up for a member to be up: `"all"`, `"any"` or a count.
    pub require: Option<Require>,
    /// Default: `1`.
    /// The pool's share against the other pools of a `weighted` name (1–1000000).
    pub weight: Option<u32>,
    /// Default: none.
    /// The share of a failover or topology name's traffic the pool can carry, in percent (100: all
    /// of it); a failed pool's clients spill over the others by spare capacity (see
    /// [Steering](steering.md#steering)); a weighted or all name does not use it, and
    /// `check-config` warns of one given there.
    pub capacity: Option<u32>,
    /// Default: none.
    /// Region label of the pool's members (a member's own `region` overrides it).
    pub region: Option<String>,
    /// Default: none.
    /// Where the pool's members are, `[latitude, longitude]` in degrees: a topology rule with
    /// `nearest = true` orders pools by their distance from the client.
    pub location: Option<[f64; 2]>,
    /// Default: required.
    /// List of members, each a table of the keys below.
    pub members: Vec<Member>,
}

/// How many of a pool's checks must pass: `"all"`, `"any"`, or a count.
#[derive(Debug, Deserialize, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Require {
    Count(u32),
    Word(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Default: required (or `cname`).
    /// IPv4 or IPv6 unicast address served in answers (unspecified, broadcast and multicast
    /// addresses are errors).
    pub address: Option<String>,
    /// Default: none.
    /// Instead of `address`: a domain name answered as a CNAME (a load balancer known by name);
    /// probed at the addresses it resolves to, or at `probe_address`. A pool holds addresses or
    /// names, not both.
    pub cname: Option<String>,
    /// Default: the address (or cname).
    /// Name in status and logs; unique in the pool.
    pub name: Option<String>,
    /// Default: `1`.
    /// Relative weight (1–1000000), for weighted policies.
    pub weight: Option<u32>,
    /// Default: the pool's `region`.
    /// Region label.
    pub region: Option<String>,
    /// Default: `address` (a `cname` member: the addresses its name resolves to).
    /// Address the check connects to.
    pub probe_address: Option<String>,
    /// Default: the check's port.
    /// Port the check connects to.
    pub probe_port: Option<u16>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoundName {
    /// Default: required.
    /// Pools whose members answer A/AAAA for this name (inside a served zone, not below a
    /// delegation, and with no A/AAAA/CNAME of its own in the zone file); pools of `cname` members
    /// make it answer one CNAME (then it has no record of its own at all, `max_answers`/`answers`
    /// are 1, and a `fallback` names pools of domain names).
    pub pools: Vec<String>,
    /// Default: `"all"`.
    /// `"all"`, `"weighted"`, `"failover"` or `"topology"`: see [Steering](steering.md#steering).
    pub policy: Option<PolicyKind>,
    /// Default: `1`.
    /// Weighted: addresses in one answer (1–64).
    pub answers: Option<u32>,
    /// Default: `8`.
    /// All/failover: most addresses in one answer (1–64).
    pub max_answers: Option<u32>,
    /// Default: `1`.
    /// Failover/topology: healthy members a pool (or region) needs to be used, a count or `"50%"`
    /// of it.
    pub min_healthy: Option<MinHealthy>,
    /// Default: `30`, or derived from `recover_within`.
    /// TTL of the pool answers, seconds (1–86400); set with `recover_within`, it wins, with a
    /// warning if it breaks the objective.
    pub ttl: Option<u32>,
    /// Default: `min(ttl, 5)`, or derived from `recover_within` (then at most 5 too).
    /// TTL while any member behind the name is down or failing (1–`ttl`).
    pub degraded_ttl: Option<u32>,
    /// Default: `server.recover_within`.
    /// The recovery objective, e.g. `"10s"`: the longest clients behind a caching resolver may be
    /// sent to a failed member. gtmd derives `ttl` and `degraded_ttl` from it (see [How fast do
    /// clients recover?](steering.md#how-fast-do-clients-recover)); an objective the checks cannot
    /// meet is an error.
    pub recover_within: Option<String>,
    /// Default: `"all"`.
    /// No member healthy: `"all"` (answer every member), `"fallback"`, `"nodata"` or `"servfail"`.
    pub when_all_down: Option<AllDownKind>,
    /// Default: none.
    /// With `"fallback"`: addresses and/or pool names (a pool's healthy members, else all of them).
    pub fallback: Option<Vec<String>>,
    /// Default: required for topology.
    /// List of rules, each a table of the keys below, tried in order.
    pub topology: Option<Vec<TopologyRule>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopologyRule {
    /// Default: none (then a place below is required).
    /// Client addresses or CIDR prefixes the rule matches (the EDNS client subnet when present,
    /// else the source address). A subnet rule wins over the place rules.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Default: any.
    /// Country codes (ISO 3166-1, `"DE"`) of the client's place in the `[geo]` databases.
    #[serde(default)]
    pub country: Vec<String>,
    /// Default: any.
    /// Continent codes (`"EU"`, `"NA"`, `"AS"`, `"AF"`, `"SA"`, `"OC"`, `"AN"`).
    #[serde(default)]
    pub continent: Vec<String>,
    /// Default: any.
    /// Subdivision codes as ISO 3166-2 writes them (`"DE-BY"`, `"US-CA"`).
    #[serde(default)]
    pub subdivision: Vec<String>,
    /// Default: any.
    /// Autonomous system numbers (from an ASN database).
    #[serde(default)]
    pub asn: Vec<u32>,
    /// Default: required (or `nearest`).
    /// Pools or regions, in the order tried for those clients.
    #[serde(default)]
    pub order: Vec<String>,
    /// Default: `false`.
    /// Instead of an `order`: the name's pools by great-circle distance from the client (its
    /// `location` in a City database; every pool of the name needs a `location`), nearest
    /// first, so that a client whose nearest pool fails goes to the next nearest. Takes the
    /// clients the databases locate that its other keys (if any) match.
    #[serde(default)]
    pub nearest: bool,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    All,
    Weighted,
    Failover,
    Topology,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AllDownKind {
    All,
    Fallback,
    Nodata,
    Servfail,
}

/// `min_healthy`: a count (`2`) or a share of the pool (`"50%"`).
#[derive(Debug, Deserialize, Clone, JsonSchema)]
#[serde(untagged)]
pub enum MinHealthy {
    Count(u32),
    Text(String),
}
