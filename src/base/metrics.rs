//! Prometheus metrics, served as text at the admin API's `/metrics`.
//!
//! One recorder per process (the `metrics` facade's global), installed at the first start.
//! Names are the constants below, all `gtmd_`-prefixed; labels carry transports, rcodes,
//! query types, pools, members, regions, bound names and checks from the configuration,
//! never a query name or a client address.
//!
//! The query path does not touch the registry per query: each UDP thread and TCP
//! connection counts into a small local table ([`QueryCounts`]) and adds it to the shared
//! counters once per batch; latency is timed on one query in 16.

use std::sync::OnceLock;

use metrics::{counter, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const QUERIES: &str = "gtmd_queries_total";
pub const ANSWER_SECONDS: &str = "gtmd_answer_duration_seconds";
pub const PROBES: &str = "gtmd_probes_total";
pub const PROBE_SECONDS: &str = "gtmd_probe_duration_seconds";
pub const MEMBER_UP: &str = "gtmd_member_up";
pub const MEMBER_ANSWERED: &str = "gtmd_member_answered";
pub const MEMBER_TRANSITIONS: &str = "gtmd_member_transitions_total";
pub const POOL_HEALTHY: &str = "gtmd_pool_healthy_members";
pub const HISTORY_BYTES: &str = "gtmd_history_bytes";
pub const POOL_MEMBERS: &str = "gtmd_pool_members";
pub const REGION_REMOVED: &str = "gtmd_region_removed";
pub const NAME_ALL_DOWN: &str = "gtmd_name_all_down";
pub const NAME_DEGRADED: &str = "gtmd_name_degraded";
pub const OVERRIDES: &str = "gtmd_overrides";
pub const GENERATION: &str = "gtmd_snapshot_generation";
pub const BUILD_INFO: &str = "gtmd_build_info";
pub const NAME_FAIL_OPEN: &str = "gtmd_name_fail_open";
pub const POOL_LOAD: &str = "gtmd_pool_load_ratio";
pub const CONFIG_GENERATION: &str = "gtmd_config_generation";
pub const RELOADS: &str = "gtmd_config_reloads_total";
pub const RRL: &str = "gtmd_rrl_responses_total";
pub const SIGNATURES: &str = "gtmd_signatures_total";
pub const LIMITS: &str = "gtmd_limits_total";
pub const LAST_RELOAD_OK: &str = "gtmd_config_last_reload_successful";
pub const STATE_FILE_OK: &str = "gtmd_state_file_ok";
/// Each zone's SOA serial as served.
pub const ZONE_SERIAL: &str = "gtmd_zone_serial";
/// 1 while answers follow the cluster's quorum (0: alone, joining or fallen back).
pub const CLUSTER_CONNECTED: &str = "gtmd_cluster_connected";
pub const CLUSTER_INSTANCES: &str = "gtmd_cluster_instances";
/// Seconds since etcd last answered this instance.
pub const CLUSTER_ETCD_SILENCE: &str = "gtmd_cluster_etcd_silence_seconds";
pub const CLUSTER_LEADER: &str = "gtmd_cluster_leader";
pub const CLUSTER_WRITES: &str = "gtmd_cluster_writes_total";
pub const CLUSTER_ERRORS: &str = "gtmd_cluster_session_errors_total";
pub const MEMBER_DISAGREES: &str = "gtmd_member_view_disagrees";
/// When each `[geo]` database was built (Unix seconds), by path and type.
pub const GEO_BUILT: &str = "gtmd_geo_database_built_timestamp_seconds";
/// NOTIFY messages sent, by zone, secondary and result.
pub const NOTIFY: &str = "gtmd_notify_total";
/// Transfers served, by zone and kind.
pub const TRANSFERS: &str = "gtmd_transfers_total";
/// Bytes of transfer messages served, by zone.
pub const TRANSFER_BYTES: &str = "gtmd_transfer_bytes_total";

/// How often the engine stores its gauges even when nothing changed (and drains histogram
/// samples into their buckets). The exporter forgets a
/// gauge not stored for [`GAUGE_IDLE`], so those of members, pools and names that a reload
/// removed leave `/metrics`.
pub const GAUGE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);
pub const GAUGE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Counts one time `limit` (a configuration key's name) bit.
pub fn limit_hit(limit: &'static str) {
    handle();
    counter!(LIMITS, "limit" => limit).increment(1);
}

/// Counts `n` keys written to etcd, by kind (view, override, register, leader).
pub fn cluster_writes(kind: &'static str, n: usize) {
    handle();
    counter!(CLUSTER_WRITES, "kind" => kind).increment(n as u64);
}

/// Counts one etcd session that ended in an error.
pub fn cluster_error() {
    handle();
    counter!(CLUSTER_ERRORS).increment(1);
}

/// Each member's `gtmd_member_up` and `gtmd_member_answered`, written into `/metrics` at each
/// scrape ([`render`]) rather than kept as two registered gauges per member: the registry
/// holds about 300 bytes a gauge, 6 MB at 10,000 members.
#[derive(Debug, Default)]
pub struct MemberFlags {
    /// Per member: its pool and name, as label values already escaped.
    pub labels: std::sync::Arc<Vec<(String, String)>>,
    /// Per member, in the same order: bit 0 up, bit 1 answered.
    pub flags: Vec<u8>,
}

/// Every engine's member flags in this process (tests run several), by engine.
static MEMBER_FLAGS: std::sync::Mutex<
    std::collections::BTreeMap<u64, std::sync::Arc<MemberFlags>>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// One engine's place among the member flags: what it sets is scraped until it is dropped.
pub struct FlagsSlot(u64);

impl FlagsSlot {
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        FlagsSlot(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// Publishes this engine's members' flags for the next scrapes.
    pub fn set(&self, f: MemberFlags) {
        let mut all = MEMBER_FLAGS.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(self.0, std::sync::Arc::new(f));
    }
}

impl Default for FlagsSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlagsSlot {
    fn drop(&mut self) {
        let mut all = MEMBER_FLAGS.lock().unwrap_or_else(|e| e.into_inner());
        all.remove(&self.0);
    }
}

/// A label value as the text format writes it: backslash, quote and newline escaped.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every metric in the text format: the registry's, then the members' flags.
pub fn render() -> String {
    use std::fmt::Write;
    let h = handle();
    h.run_upkeep();
    let mut out = h.render();
    let engines: Vec<_> = {
        let all = MEMBER_FLAGS.lock().unwrap_or_else(|e| e.into_inner());
        all.values().cloned().collect()
    };
    if engines.is_empty() {
        return out;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (bit, name, help) in [
        (1u8, MEMBER_UP, "1 if the member's probes say it is up"),
        (2, MEMBER_ANSWERED, "1 if the member is in answers now"),
    ] {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
        for m in &engines {
            for ((pool, member), f) in m.labels.iter().zip(&m.flags) {
                let v = u8::from(f & bit != 0);
                let _ = writeln!(out, "{name}{{pool=\"{pool}\",member=\"{member}\"}} {v}");
            }
        }
        out.push('\n');
    }
    out
}

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(ANSWER_SECONDS.into()),
                &[1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(PROBE_SECONDS.into()),
                    &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_answers();
    describe_health();
    describe_cluster();
    describe_operation();
}

/// Queries, zones, transfers, signing and rate limiting.
fn describe_answers() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        QUERIES,
        "DNS responses sent, by transport, rcode and query type"
    );
    describe_histogram!(
        ANSWER_SECONDS,
        Unit::Seconds,
        "Time to build a response, one query in 16"
    );
    describe_gauge!(GENERATION, "Generation of the published answers");
    describe_gauge!(ZONE_SERIAL, "The zone's SOA serial as served");
    describe_counter!(NOTIFY, "NOTIFYs sent to secondaries, answered or not");
    describe_counter!(TRANSFERS, "Zone transfers served, by kind");
    describe_counter!(TRANSFER_BYTES, "Bytes of zone transfer messages served");
    describe_counter!(
        RRL,
        "UDP responses over the rate limit: slipped (sent truncated) or dropped; unsigned_slip: over the prefix's budget of signed answers, sent truncated unsigned; reset: the prefix table was emptied"
    );
    describe_counter!(
        SIGNATURES,
        "DNSSEC signatures made, by path: publication (prepared answers) or query (a name signed per query)"
    );
}

/// Probes, members, pools, regions and names.
fn describe_health() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(PROBES, "Health probes done, by check and result");
    describe_histogram!(PROBE_SECONDS, Unit::Seconds, "Probe latency, by check");
    describe_counter!(MEMBER_TRANSITIONS, "Member state changes, by new state");
    describe_gauge!(POOL_HEALTHY, "Members of the pool that are up");
    describe_gauge!(
        HISTORY_BYTES,
        Unit::Bytes,
        "Memory the history holds: members' steps, names' and groups' series"
    );
    describe_gauge!(POOL_MEMBERS, "Members of the pool");
    describe_gauge!(REGION_REMOVED, "1 while the region is removed from answers");
    describe_gauge!(
        NAME_ALL_DOWN,
        "1 while no member behind the name is healthy"
    );
    describe_gauge!(
        NAME_DEGRADED,
        "1 while the name answers with its degraded TTL"
    );
    describe_gauge!(
        POOL_LOAD,
        "For a name whose pools have capacities: the pool's share of the name's traffic over its capacity (above 1: overloaded)"
    );
    describe_gauge!(
        NAME_FAIL_OPEN,
        "1 while the name answers every member because none is healthy (when_all_down = \"all\")"
    );
}

/// The cluster's link, instances, leadership, writes and disagreements.
fn describe_cluster() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        CLUSTER_CONNECTED,
        "1 while answers follow the cluster's quorum; 0 alone, joining or fallen back"
    );
    describe_gauge!(
        GEO_BUILT,
        "when each [geo] database in use was built (its build_epoch), by path and type"
    );
    describe_gauge!(
        CLUSTER_ETCD_SILENCE,
        "seconds since etcd last answered this instance (a call, a lease renewal, or the \
         member's read every quarter second); at lease_ttl it falls back"
    );
    describe_gauge!(
        CLUSTER_INSTANCES,
        "Live instances of the cluster, agents included"
    );
    describe_gauge!(
        CLUSTER_LEADER,
        "1 if this instance sends the cluster's alerts"
    );
    describe_counter!(CLUSTER_WRITES, "Keys written to etcd, by kind");
    describe_counter!(CLUSTER_ERRORS, "etcd sessions ended by an error");
    describe_gauge!(
        MEMBER_DISAGREES,
        "1 while this instance's own view of the member differs from the quorum's"
    );
}

/// Overrides, the state file, the build, reloads and resource limits.
fn describe_operation() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(OVERRIDES, "Operator overrides in force, by action");
    describe_gauge!(
        STATE_FILE_OK,
        "0 while the state file found at start cannot be read (overrides came from its backup, or none)"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label");
    describe_gauge!(
        CONFIG_GENERATION,
        "1 for the configuration read at start, plus one per reload that took effect"
    );
    describe_counter!(
        LIMITS,
        "Times a resource limit bit, by limit (the configuration key that sets it)"
    );
    describe_counter!(RELOADS, "Reloads, by result (ok, failed)");
    describe_gauge!(
        LAST_RELOAD_OK,
        "1 if the last reload took effect, 0 if it was rejected"
    );
}

/// Query types counted by name; the rest are "other".
const QTYPES: [(u16, &str); 14] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (2, "NS"),
    (6, "SOA"),
    (33, "SRV"),
    (12, "PTR"),
    (257, "CAA"),
    (65, "HTTPS"),
    (255, "ANY"),
    (252, "AXFR"),
    (0, "other"),
];

const RCODES: [&str; 16] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
];

/// Responses counted locally, added to the shared counters by [`QueryCounts::flush`].
pub struct QueryCounts {
    transport: &'static str,
    counts: [[u32; QTYPES.len()]; 16],
    handles: Vec<Option<Counter>>,
    latency: Histogram,
    seen: u32,
    /// Responses over the rate limit since the last flush: slipped, dropped.
    pub rrl: [u32; 2],
    rrl_handles: [Counter; 2],
    /// Counts limited responses, to slip every `slip`-th.
    pub slips: u32,
    /// Responses counted since the last flush, and when that was.
    pending: u32,
    flushed: std::time::Instant,
}

/// Local counts are added to the shared counters once this many responses are pending...
const FLUSH_EVERY: u32 = 1024;
/// ...or once this long has passed since the last flush, whichever comes first.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

impl QueryCounts {
    pub fn new(transport: &'static str) -> Self {
        handle();
        QueryCounts {
            transport,
            counts: [[0; QTYPES.len()]; 16],
            handles: vec![None; 16 * QTYPES.len()],
            latency: histogram!(ANSWER_SECONDS, "transport" => transport),
            seen: 0,
            rrl: [0; 2],
            rrl_handles: [
                counter!(RRL, "action" => "slipped"),
                counter!(RRL, "action" => "dropped"),
            ],
            slips: 0,
            pending: 0,
            flushed: std::time::Instant::now(),
        }
    }

    /// Flushes when enough responses are pending or enough time has passed (`idle`: the
    /// caller is about to wait, so flush whatever is pending). The shared counters are
    /// touched a few times a second rather than once per batch.
    pub fn maybe_flush(&mut self, idle: bool) {
        let pending = self.pending + self.rrl[0] + self.rrl[1];
        if pending == 0 {
            return;
        }
        if idle || pending >= FLUSH_EVERY || self.flushed.elapsed() >= FLUSH_AFTER {
            self.flush();
        }
    }

    /// Whether to time the next query (one in 16).
    pub fn sample(&mut self) -> bool {
        self.seen = self.seen.wrapping_add(1);
        self.seen.is_multiple_of(16)
    }

    pub fn record_latency(&self, d: std::time::Duration) {
        self.latency.record(d.as_secs_f64());
    }

    /// Counts one response (its header rcode and question type).
    pub fn count(&mut self, response: &[u8]) {
        let rcode = response.get(3).map_or(2, |b| b & 0x0f) as usize;
        let qtype = qtype_of(response).unwrap_or(0);
        let t = QTYPES
            .iter()
            .position(|&(v, _)| v == qtype)
            .unwrap_or(QTYPES.len() - 1);
        self.counts[rcode][t] += 1;
        self.pending += 1;
    }

    /// Adds the local counts to the shared counters.
    pub fn flush(&mut self) {
        self.pending = 0;
        self.flushed = std::time::Instant::now();
        for (n, h) in self.rrl.iter_mut().zip(&self.rrl_handles) {
            if *n > 0 {
                h.increment(u64::from(std::mem::take(n)));
            }
        }
        for (r, row) in self.counts.iter_mut().enumerate() {
            for (t, count) in row.iter_mut().enumerate() {
                let n = std::mem::take(count);
                if n == 0 {
                    continue;
                }
                let transport = self.transport;
                let h = self.handles[r * QTYPES.len() + t].get_or_insert_with(|| {
                    counter!(QUERIES, "transport" => transport, "rcode" => RCODES[r], "qtype" => QTYPES[t].1)
                });
                h.increment(n as u64);
            }
        }
    }
}

/// The type of the first question of a DNS message.
fn qtype_of(msg: &[u8]) -> Option<u16> {
    if msg.get(4..6)? == [0, 0] {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 {
            i += 2;
            break;
        }
        i += 1 + len;
    }
    Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_type_is_read_from_a_message() {
        let mut m = vec![0u8, 1, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x00\x00\x1c\x00\x01");
        assert_eq!(qtype_of(&m), Some(28));
        assert_eq!(qtype_of(&m[..20]), None);
        let mut q = QueryCounts::new("udp");
        q.count(&m);
        assert_eq!(q.counts[3][1], 1, "NXDOMAIN, AAAA");
        q.flush();
        assert_eq!(q.counts[3][1], 0);
    }

    #[test]
    fn label_values_are_escaped_as_the_text_format_wants() {
        assert_eq!(
            label_value(
                r#"a"b\c
d"#
            ),
            r#"a\"b\\c\nd"#
        );
        assert_eq!(label_value("eu-1"), "eu-1");
    }

    #[test]
    fn each_engines_member_flags_are_scraped_until_it_is_dropped() {
        let flags = |member: &str, f: u8| MemberFlags {
            labels: std::sync::Arc::new(vec![("slot-test".into(), member.into())]),
            flags: vec![f],
        };
        let (a, b) = (FlagsSlot::new(), FlagsSlot::new());
        a.set(flags("a1", 0b11));
        b.set(flags("b1", 0b01));
        let text = render();
        assert!(text.contains("gtmd_member_up{pool=\"slot-test\",member=\"a1\"} 1\n"));
        assert!(text.contains("gtmd_member_answered{pool=\"slot-test\",member=\"a1\"} 1\n"));
        assert!(text.contains("gtmd_member_up{pool=\"slot-test\",member=\"b1\"} 1\n"));
        assert!(text.contains("gtmd_member_answered{pool=\"slot-test\",member=\"b1\"} 0\n"));
        assert_eq!(text.matches("# TYPE gtmd_member_up gauge").count(), 1);
        drop(b);
        let text = render();
        assert!(text.contains("member=\"a1\""));
        assert!(!text.contains("member=\"b1\""));
    }
}
