//! Steering, pure: no I/O, no clock of its own, and nothing of the configuration. Given
//! members' probe results and the time, [`health`] decides each member's state (rise, fall,
//! flap damping); [`spill`] spreads a failed pool's clients over the others by spare
//! capacity; [`topology`] maps client subnets to answer groups, and [`geo`] the places a
//! MaxMind database gives clients (its bytes read by the configuration). What each name answers from
//! those states is [`crate::policy`]'s.

pub mod geo;
pub mod health;
pub mod spill;
pub mod topology;
