//! The store's operations as SQL, each run on a connection inside a transaction.

pub(crate) mod admin;
pub(crate) mod instances;
pub(crate) mod tasks;
pub(crate) mod turns;

/// Whom to wake once the transaction has committed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Wake {
    pub(crate) turns: bool,
    pub(crate) tasks: bool,
    pub(crate) instances: bool,
}

impl Wake {
    /// Adds another operation's wakeups.
    pub(crate) fn merge(&mut self, other: Wake) {
        self.turns |= other.turns;
        self.tasks |= other.tasks;
        self.instances |= other.instances;
    }
}
