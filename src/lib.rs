//! gtmd: an authoritative DNS server whose answers follow health-checked address pools.
//!
//! ```text
//! probe tasks ──ProbeReport──▶ engine (the one writer) ◀──Command + reply── ops::admin API
//!  (probe/: interval + jitter,  │  ▲
//!   timeout, semaphore;         │  └─Reload── ops::reload (reads config + zones off-thread)
//!   started and stopped         │                ▲ SIGHUP, POST /reload
//!   by the engine)              steer::health per member, hold-downs, regions
//!                               │ steer::policy::plans() per name: possible answers and odds
//!                               │ dns::Snapshot, and beside it dns::prepared answers
//!                               └─▶ ArcSwap::store(Arc<dns::Publication>)
//! dns::udp / dns::tcp ─▶ load() (no lock, no await) ─▶ dns::answer: a prepared answer
//!                        (random number, client subnet) ─▶ or dns::handle ─▶ dns::lookup
//! ```
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the TOML file as written, and one module per part of it: checked values and defaults |
//! | [`zone`] | master files, the zone tree, the set of zones |
//! | [`steer`] | pure steering: [`steer::health`] (rise/fall, damping), [`steer::policy`] (what a name answers), [`steer::topology`] (client subnets, ECS) |
//! | [`probe`] | HTTP/HTTPS/TCP probe loops, results as data |
//! | [`cluster`] | the etcd session (lease, views, overrides, alert leadership) and the quorum rule; the engine reads what it holds |
//! | [`engine`] | the one writer: members, overrides, regions, publication, reload, explain, status |
//! | [`dns`] | the query path: wire and dispatch, [`dns::lookup`], [`dns::prepared`] answers, [`dns::snapshot`], [`dns::udp`], [`dns::tcp`], [`dns::listen`], transfers (AXFR, IXFR, TSIG), [`dns::notify`], [`dns::rrl`] |
//! | [`ops`] | the operator's side: [`ops::admin`] API, [`ops::ctl`], [`ops::alert`], [`ops::metrics`], [`ops::state`] file, [`ops::reload`] |
//! | [`props`] | properties for any input, asserted by the fuzz targets and the corpus replay |
//! | [`app`] | starting and owning every task |
//!
//! Imports go one way between modules (no circle): `zone`, `steer` and `config` are the lowest
//! floor and import nothing above it; `dns` reads them; `engine` builds what `dns` serves;
//! `ops` and `app` drive the engine (which uses `ops`' metrics, alerts and state file);
//! `cluster` talks to etcd and hands the engine what it read, by channel.

pub mod app;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod engine;
pub mod ops;
pub mod probe;
#[cfg(any(test, feature = "props"))]
pub mod props;
pub mod steer;
pub mod zone;
