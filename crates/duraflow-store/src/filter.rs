//! Which work a fetch takes: the queues and names a fetcher serves.

use duraflow_core::DEFAULT_QUEUE;

/// Which work a fetch (or a claim) may take: only instances or tasks in one of `queues`, and,
/// when `names` is given, only those whose workflow (for turns) or activity (for tasks) is one
/// of `names`. Work outside the filter stays where it is for a fetcher that serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchFilter {
    /// The queues served (nothing is fetched when empty).
    pub queues: Vec<String>,
    /// The workflow or activity names served; `None` serves every name.
    pub names: Option<Vec<String>>,
}

impl Default for FetchFilter {
    /// The default queue, every name.
    fn default() -> Self {
        FetchFilter::queues([DEFAULT_QUEUE])
    }
}

impl FetchFilter {
    /// Work of these queues, of every name.
    pub fn queues<S: Into<String>>(queues: impl IntoIterator<Item = S>) -> FetchFilter {
        FetchFilter {
            queues: queues.into_iter().map(Into::into).collect(),
            names: None,
        }
    }

    /// Only work of these names.
    #[must_use]
    pub fn names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> FetchFilter {
        self.names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Whether work of `queue` and `name` passes the filter.
    pub fn matches(&self, queue: &str, name: &str) -> bool {
        self.queues.iter().any(|q| q == queue)
            && self
                .names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// Whether the filter lets nothing through (no queue, or no name).
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty() || self.names.as_ref().is_some_and(Vec::is_empty)
    }
}
