//! Insertion policies: which offered samples a buffer keeps, and which slot each takes.

use serde::{Deserialize, Serialize};

/// How a buffer decides what to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum InsertionPolicy {
    /// Upstream's rule: one bucket of fixed size per class; a sample fills its class's bucket
    /// while it has room, then overwrites a uniformly random slot of its class with
    /// probability `candidates / batch_size`. Not reservoir sampling: recent samples are
    /// favoured.
    Upstream { candidates: usize, batch_size: usize },
    /// Classic reservoir sampling over the whole stream: after n offers, every offered sample
    /// is in the buffer with probability capacity / n, whatever its class.
    Reservoir,
    /// Class-balanced reservoir sampling (Chrysakis and Moens, 2020): while the buffer is
    /// full, a sample of a class that is not among the largest evicts a random sample of a
    /// largest class; a sample of a largest class replaces a random sample of its own class
    /// with probability (stored of its class) / (seen of its class). Classes end up balanced
    /// and each class's samples are a uniform sample of its stream.
    ClassBalanced,
}

impl InsertionPolicy {
    /// The names accepted in configurations.
    pub const NAMES: &'static str = "upstream, reservoir, class_balanced";
}
