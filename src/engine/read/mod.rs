//! The engine's read models: what is shown, not what is answered. `/status`, `/explain`, a
//! name's recovery objective, the gauges of `/metrics` and the cluster's view are each
//! worked out here from the engine's state, on request or after a publication; nothing
//! here changes that state (`tests/house.rs` fails on a `&mut self` in this folder), so a
//! read model can be changed without touching what DNS answers.

mod cluster;
mod explain;
mod gauges;
mod history;
pub mod recovery;
mod status;

pub use cluster::{ClusterStatus, InstanceStatus, ViewStatus};
pub use explain::Explain;
pub(super) use gauges::Gauges;
pub use history::{HistoryQuery, HistoryReport};
pub(super) use status::answer_shares;
pub use status::{MemberStatus, NameStatus, OverrideStatus, RegionStatus, Status};
