//! Test support for harnesses (enabled by the `proptest` cargo feature):
//! proptest strategies that generate valid inputs, and reference
//! implementations to check faster ones against.
//!
//! - [`snapshot`]: strategies for valid snapshots (the engine's input).
//! - [`table`]: the reference matcher and strategies for routing tables
//!   and requests.

pub mod snapshot;
pub mod table;
