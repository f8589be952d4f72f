//! Most integration tests, as modules of one test binary: built once, not once per file, and
//! run two at a time like the tests of one file. A file of its own (listed in Cargo.toml) is
//! for tests that read state the whole process shares (the in-process servers' metrics, its
//! memory) or that load the machine (the benchmarks, the fault drill, the systemd boot, the
//! Debian package, the fault schedules). `tests/house.rs` checks that every file is one or
//! the other.

mod common;

mod admin_origin;
mod admin_slow;
mod alerts_once;
mod all_disabled;
mod check_config;
mod checks;
mod cluster;
mod cluster_faults;
mod cname;
mod conformance;
mod degraded_ttl;
mod dnssec;
mod e2e;
mod etcd_faults;
mod explain;
mod fast_probes;
mod fastpath;
mod geo;
mod geo_health;
mod geo_knot;
mod health;
mod history;
mod house;
mod icmp_latency;
mod ixfr_requests;
mod lab;
mod local_targets;
mod malformed;
mod netns;
mod page;
mod recovered_status;
mod recovery;
mod resolution;
mod rollover_secondary;
mod serials;
mod steering;
mod tcp_pressure;
mod transport;
mod zone_files;
