//! `Changes`: which parts of a product changed since it was loaded, so a store writes only those.

use std::sync::Arc;

/// The parts of a product touched since the last commit. Stores write the *current* state of each
/// touched part (or delete it when it is gone), so the cost of a commit follows what changed, not the
/// product's size or history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Batches created since the last commit (their references must be globally unique).
    pub new_batches: Vec<Arc<str>>,
    /// Existing batches whose quantities (purchased or allocated) changed, each once; never a new one.
    pub changed_batches: Vec<Arc<str>>,
    /// Order ids whose line in this product was created, moved or removed, each once.
    pub lines: Vec<Arc<str>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.new_batches.is_empty() && self.changed_batches.is_empty() && self.lines.is_empty()
    }
}
