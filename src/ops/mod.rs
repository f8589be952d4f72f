//! The operator's side: the admin API ([`admin`]) and its command line ([`ctl`]), alerts
//! ([`alert`]), Prometheus metrics ([`metrics`]), the state file of overrides ([`state`]) and
//! the reloader ([`reload`]). None of it is on the answer path.

pub mod admin;
pub mod alert;
pub mod ctl;
pub mod metrics;
pub mod reload;
pub mod state;
