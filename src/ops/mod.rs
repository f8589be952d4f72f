//! The operator's side, the drivers of the engine: the admin API ([`admin`]) and its command
//! line ([`ctl`]), the status page it serves, and the reloader ([`reload`]). None of it is on
//! the answer path; the ground services it uses (metrics, alerts, the state file) are in
//! [`crate::base`].

pub mod admin;
pub mod ctl;
pub mod reload;
