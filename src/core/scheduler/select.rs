//! What a claim reads and in which order: `/v1` claims read the partitions a node's types and
//! tags may serve, oldest first; the nexrender façade reads the partitions of a pickup's tags
//! in the order the server is set to. Kept apart from `claim.rs` so the claim itself stays one
//! short file.

/// In which order a claim takes the entries of one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest entry first (FIFO): the `/v1` rule.
    OldestFirst,
    /// Newest entry first (LIFO): the index is walked from its tail pages.
    NewestFirst,
    /// A random entry of the oldest pages read (see the nexrender façade's `pickup.rs`).
    Random,
}

/// Which partitions a claim reads, and in which order it takes their entries.
pub struct Selection<'a> {
    /// Accepts the partitions to read.
    pub parts: &'a dyn Fn(&str) -> bool,
    /// Order within one priority.
    pub order: Order,
}

impl<'a> Selection<'a> {
    /// The partitions `parts` accepts, oldest first.
    pub fn oldest_first(parts: &'a dyn Fn(&str) -> bool) -> Self {
        Selection {
            parts,
            order: Order::OldestFirst,
        }
    }
}
