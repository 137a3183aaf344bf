//! Scheduling: the claim index, claims, leases and acks. Every task transition is one
//! compare-and-swap of the segment that holds the task, guarded by the rule that allows it.
//!
//! - `index.rs`: the claim index (which segments may hold claimable work, by priority and age).
//! - `claim.rs`: `claimable()` and the claim itself.
//! - `expiry.rs`: lapsed leases: settling them, and the grace after a server restart.
//! - `lease.rs`: heartbeat (extend) and release, guarded by the lease token.
//! - `ack.rs`: done / failed, guarded by the lease token; first success wins.
//! - `revoked.rs`: removed nodes, whose leases claims release at once.
//! - `select.rs`: which partitions a claim reads and in which order.
//! - `task_ref.rs`: task ids and the read-modify-CAS loop on one task.

pub mod ack;
pub mod claim;
pub mod expiry;
pub mod index;
pub mod lease;
pub mod revoked;
pub mod select;
pub mod task_ref;
