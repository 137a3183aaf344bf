//! Scheduling: the claim index, claims, leases and acks. Every task transition is one
//! compare-and-swap of the segment that holds the task, guarded by the rule that allows it,
//! and made by the task state machine.
//!
//! - `transition.rs`: the task state machine: every (state, event) pair, in one table.
//! - `claimable.rs`: what a claim may take (task, job and partition rules), and what a pause
//!   or cancel racing a claim can do on each store.
//! - `claim.rs`: the claim itself.
//! - `index.rs`: the claim index (which segments may hold claimable work, by priority and age).
//! - `select.rs`: which partitions a claim reads and in which order.
//! - `expiry.rs`: lapsed leases: when, whether counted, and the grace after a server restart.
//! - `lease.rs`: the lease guard (`hold`), heartbeat (extend) and release.
//! - `ack.rs`: done / failed, guarded by the lease token; first success wins.
//! - `revoked.rs`: removed nodes, whose leases claims release at once.
//! - `task_ref.rs`: task ids and the read-modify-CAS of one task.

pub mod ack;
pub mod claim;
pub mod claimable;
pub mod expiry;
pub mod index;
pub mod lease;
pub mod revoked;
pub mod select;
pub mod task_ref;
pub mod transition;
