//! gtmd: an authoritative DNS server whose answers follow health-checked address pools.
//!
//! ```text
//! probe tasks ──ProbeReport──▶ engine (the one writer) ◀──Command + reply── admin API
//!  (interval + jitter,          │  ▲
//!   timeout, semaphore;         │  └─Reload── reloader (reads config + zones off-thread)
//!   started and stopped         │                ▲ SIGHUP, POST /reload
//!   by the engine)              health::Health::observe() per member, hold-downs, regions
//!                               │ policy::plans() per name: the possible answers and odds
//!                               │ rebuild Snapshot (answers precomputed), coalesced
//!                               └─▶ ArcSwap::store(Arc<Snapshot>)
//! UDP/TCP server ─▶ snapshot.load() (no lock, no await) ─▶ fast path: pick a prepared
//!                   answer (random number, client subnet) ─▶ or dns::handle ─▶ lookup
//! ```
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the TOML file as written and the checked configuration |
//! | [`zone`] | master files and the zone tree |
//! | [`health`] | the rise/fall state machine and flap damping (pure) |
//! | [`policy`] | steering: which addresses a name answers, given health (pure) |
//! | [`topology`] | client subnets to answer groups, and EDNS Client Subnet |
//! | [`probe`] | HTTP/HTTPS/TCP probe loops |
//! | [`engine`] | the single writer of health and the published snapshot |
//! | [`snapshot`] | what the query path reads |
//! | [`lookup`] | authoritative answers (pure) |
//! | [`fast`] | answers prepared per snapshot, and the per-query fast path |
//! | [`dns`] | the wire protocol: parsing, EDNS, truncation, errors |
//! | [`server`] | transports: listeners, TCP connections |
//! | [`udp`] | batched UDP threads (recvmmsg/sendmmsg, SO_REUSEPORT) |
//! | [`admin`] | the loopback HTTP admin API |
//! | [`alert`] | the alert hook: webhook and command, retries, rate limit |
//! | [`overrides`] | operator overrides and the state file |
//! | [`stats`] | Prometheus metrics |
//! | [`props`] | properties for any input, asserted by the fuzz targets and the corpus replay |
//! | [`rrl`] | response rate limiting on UDP |
//! | [`reload`] | reading the configuration again on SIGHUP or request |
//! | [`app`] | starting and owning every task |

pub mod app;
pub mod config;
pub mod dns;
pub mod engine;
pub mod ops;
pub mod probe;
pub mod props;
pub mod steer;
pub mod zone;
