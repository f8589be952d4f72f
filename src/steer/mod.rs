//! Steering, pure: no I/O, no clock of its own. Given members' probe results and the time,
//! [`health`] decides each member's state; given those states, [`policy`] decides what each
//! name answers; [`topology`] maps client subnets to answer groups.

pub mod health;
pub mod policy;
pub mod recovery;
pub mod spill;
pub mod topology;
