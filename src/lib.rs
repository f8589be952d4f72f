//! gtmd: an authoritative DNS server whose answers follow health-checked address pools.
//!
//! ```text
//! probe tasks ──ProbeReport──▶ engine (the one writer) ◀──Command + reply── ops::admin API
//!  (probe/: interval + jitter,  │  ▲
//!   timeout, semaphore;         │  └─Reload── ops::reload (reads config + zones off-thread)
//!   started and stopped         │                ▲ SIGHUP, POST /reload
//!   by the engine)              steer::health per member, hold-downs, regions
//!                               │ policy::plans() per name: possible answers and odds
//!                               │ dns::Snapshot, and beside it dns::prepared answers
//!                               └─▶ ArcSwap::store(Arc<dns::Publication>)
//! dns::udp / dns::tcp ─▶ load() (no lock, no await) ─▶ dns::answer: a prepared answer
//!                        (random number, client subnet) ─▶ or dns::handle ─▶ dns::lookup
//! ```
//!
//! Modules live on floors. A module imports only from floors below its own, never from one
//! beside it or above it, so the modules form no circle; `tests/house.rs` reads every
//! `crate::` path in `src/` and fails, naming the file and line, on one that goes up or
//! sideways. The floors, lowest first (this table is the one the test reads):
//!
//! | floor | module | owns |
//! | --- | --- | --- |
//! | 1 | [`zone`] | master files, the zone tree, the set of zones |
//! | 1 | [`steer`] | pure steering on plain data: [`steer::health`] (rise/fall, damping), [`steer::spill`] (spare capacity), [`steer::topology`] (client subnets, ECS), [`steer::geo`] (places from MaxMind databases, compiled into topology tables) |
//! | 2 | [`config`] | the TOML file as written, and one module per part of it: checked values and defaults; [`config::recovery`] (detection bounds and TTLs of a recovery objective) |
//! | 3 | [`base`] | ground services: [`base::metrics`] names and recording, [`base::alert`] (alerts and their sender), [`base::state`] (override types, the clock, the state file) |
//! | 3 | [`policy`] | what a name answers: plans from the configuration and a [`policy::HealthView`] |
//! | 4 | [`dns`] | the query path: wire and dispatch, [`dns::lookup`], [`dns::prepared`] answers, [`dns::snapshot`], [`dns::udp`], [`dns::tcp`], [`dns::listen`], transfers (AXFR, IXFR, TSIG), [`dns::notify`], [`dns::rrl`] |
//! | 4 | [`probe`] | HTTP/HTTPS/TCP/ICMP probe loops, results as data |
//! | 4 | [`cluster`] | the etcd session (lease, views, overrides, alert leadership) and the quorum rule; the engine reads what it holds |
//! | 5 | [`engine`] | the one writer: members, overrides, regions, publication, reload; apart from it, [`engine::read`]: what is shown (status, explain, recovery, gauges, the cluster's view) |
//! | 6 | [`ops`] | the drivers of the engine: [`ops::admin`] API, [`ops::ctl`], the status page, [`ops::reload`] |
//! | 7 | [`app`] | starting and owning every task |
//! | 7 | [`props`] | properties for any input, asserted by the fuzz targets and the corpus replay |

// At most 80 lines of code a function (the limit is in .clippy.toml; tests/house.rs checks
// it too).
#![warn(clippy::too_many_lines)]

pub mod app;
pub mod base;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod engine;
pub mod ops;
pub mod policy;
pub mod probe;
#[cfg(any(test, feature = "props"))]
pub mod props;
pub mod steer;
pub mod zone;
