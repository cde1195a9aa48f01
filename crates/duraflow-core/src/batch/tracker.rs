//! The state machine of one batch: what to start, what an outcome changes, when it is decided.

use std::collections::BTreeSet;

use super::{BatchError, CompletionConfig, CompletionReason, ItemStatus};

/// How an item (or branch) of a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemOutcome {
    /// The item returned a result.
    Succeeded,
    /// The item failed.
    Failed,
}

/// Where a started item stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Running,
    Succeeded,
    Failed,
}

/// The state machine of one map or parallel batch, without any I/O.
///
/// The driver asks [`next_to_start`](Self::next_to_start) for items to start until it answers
/// `None`, runs them, and reports each outcome with [`record`](Self::record). As soon as the
/// [`CompletionConfig`] says so, the batch is decided ([`decision`](Self::decision)): nothing
/// more starts, the items still [`running`](Self::running) are to be cancelled, and later
/// outcomes are refused. An empty batch is decided from the start
/// ([`AllCompleted`](CompletionReason::AllCompleted)).
///
/// - Items start strictly in index order (R2), never more than `max_concurrency` at a time.
/// - Counts follow R10: [`total_count`](Self::total_count) counts **started** items only
///   (finished, running, or cancelled once decided), not the items never started.
///
/// The tracker is deterministic: the same outcomes recorded in the same order give the same
/// starts and the same decision, which is what replay needs.
#[derive(Clone, Debug)]
pub struct BatchTracker {
    total: usize,
    max_concurrency: Option<usize>,
    config: CompletionConfig,
    /// The started items, by index: `slots.len()` is the number started.
    slots: Vec<Slot>,
    running: BTreeSet<usize>,
    successes: usize,
    failures: usize,
    decision: Option<CompletionReason>,
}

impl BatchTracker {
    /// A batch of `total` items, at most `max_concurrency` running at a time (`None`: no
    /// limit), stopping as `config` says.
    ///
    /// Refuses a `max_concurrency` of 0 ([`BatchError::InvalidMaxConcurrency`]) and a config
    /// that [`CompletionConfig::validate`] refuses, so that a bad batch fails before it records
    /// anything (R11).
    pub fn new(
        total: usize,
        max_concurrency: Option<usize>,
        config: &CompletionConfig,
    ) -> Result<Self, BatchError> {
        if max_concurrency == Some(0) {
            return Err(BatchError::InvalidMaxConcurrency);
        }
        config.validate()?;
        Ok(BatchTracker {
            total,
            max_concurrency,
            config: config.clone(),
            slots: Vec::new(),
            running: BTreeSet::new(),
            successes: 0,
            failures: 0,
            decision: (total == 0).then_some(CompletionReason::AllCompleted),
        })
    }

    /// The next item to start, which the tracker now counts as running; `None` when the batch
    /// is decided, every item has started, or `max_concurrency` items are running. Call it
    /// until it answers `None`, and again after each [`record`](Self::record).
    pub fn next_to_start(&mut self) -> Option<usize> {
        if self.decision.is_some() || self.slots.len() >= self.total {
            return None;
        }
        if self
            .max_concurrency
            .is_some_and(|limit| self.running.len() >= limit)
        {
            return None;
        }
        let index = self.slots.len();
        self.slots.push(Slot::Running);
        self.running.insert(index);
        Some(index)
    }

    /// Records how a running item ended, and answers the batch's decision after it (`None`:
    /// not decided yet; the decision is also [`decision`](Self::decision)).
    ///
    /// Refused, leaving the tracker unchanged:
    /// - an index the batch does not have ([`BatchError::IndexOutOfRange`]);
    /// - an item that is not running: never started, or already recorded
    ///   ([`BatchError::NotRunning`]) — a duplicate report is a driver bug, not a second outcome;
    /// - an item that was still running when the batch was decided
    ///   ([`BatchError::AlreadyDecided`]): it counts as cancelled, whatever it did after. A driver
    ///   that cancels [`running`](Self::running) items on a decision can ignore this error.
    pub fn record(
        &mut self,
        index: usize,
        outcome: ItemOutcome,
    ) -> Result<Option<CompletionReason>, BatchError> {
        if index >= self.total {
            return Err(BatchError::IndexOutOfRange {
                index,
                total: self.total,
            });
        }
        if !self.running.contains(&index) {
            return Err(BatchError::NotRunning { index });
        }
        if let Some(reason) = self.decision {
            return Err(BatchError::AlreadyDecided { index, reason });
        }
        self.running.remove(&index);
        let slot = match outcome {
            ItemOutcome::Succeeded => {
                self.successes += 1;
                Slot::Succeeded
            }
            ItemOutcome::Failed => {
                self.failures += 1;
                Slot::Failed
            }
        };
        if let Some(s) = self.slots.get_mut(index) {
            *s = slot;
        }
        self.decision = self.decide();
        Ok(self.decision)
    }

    /// The decision the rules give for the counts so far (see [`CompletionConfig`]).
    fn decide(&self) -> Option<CompletionReason> {
        if self
            .config
            .failure_tolerance_exceeded(self.failures, self.total)
        {
            Some(CompletionReason::FailureToleranceExceeded)
        } else if self.successes + self.failures == self.total {
            Some(CompletionReason::AllCompleted)
        } else if self.config.min_successful_reached(self.successes) {
            Some(CompletionReason::MinSuccessfulReached)
        } else {
            None
        }
    }

    /// Why the batch stopped, once it is decided.
    pub fn decision(&self) -> Option<CompletionReason> {
        self.decision
    }

    /// Whether the batch is decided (nothing more starts, no outcome counts any more).
    pub fn is_decided(&self) -> bool {
        self.decision.is_some()
    }

    /// The items started and not finished, in index order: once the batch is decided, the
    /// items to cancel.
    pub fn running(&self) -> Vec<usize> {
        self.running.iter().copied().collect()
    }

    /// How many items are running.
    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    /// How many items succeeded.
    pub fn success_count(&self) -> usize {
        self.successes
    }

    /// How many items failed.
    pub fn failure_count(&self) -> usize {
        self.failures
    }

    /// How many items were started (finished, running, or cancelled by the decision).
    pub fn started_count(&self) -> usize {
        self.slots.len()
    }

    /// R10's `total_count`: the number of **started** items, the same as
    /// [`started_count`](Self::started_count). The batch's size is
    /// [`item_count`](Self::item_count).
    pub fn total_count(&self) -> usize {
        self.started_count()
    }

    /// How many items the batch has, started or not.
    pub fn item_count(&self) -> usize {
        self.total
    }

    /// The concurrency limit (`None`: no limit).
    pub fn max_concurrency(&self) -> Option<usize> {
        self.max_concurrency
    }

    /// The completion rules of this batch.
    pub fn config(&self) -> &CompletionConfig {
        &self.config
    }

    /// Item `index`'s status in the batch's result: `None` until the batch is decided (or for
    /// an index it does not have). Items running at the decision are
    /// [`Cancelled`](ItemStatus::Cancelled); items never started are
    /// [`NotStarted`](ItemStatus::NotStarted).
    pub fn final_status(&self, index: usize) -> Option<ItemStatus> {
        self.decision?;
        if index >= self.total {
            return None;
        }
        Some(match self.slots.get(index) {
            None => ItemStatus::NotStarted,
            Some(Slot::Running) => ItemStatus::Cancelled,
            Some(Slot::Succeeded) => ItemStatus::Succeeded,
            Some(Slot::Failed) => ItemStatus::Failed,
        })
    }

    /// Every item's [`final_status`](Self::final_status), in index order (one entry per item
    /// of the batch, started or not); `None` until the batch is decided.
    pub fn final_statuses(&self) -> Option<Vec<ItemStatus>> {
        self.decision?;
        Some(
            (0..self.total)
                .filter_map(|i| self.final_status(i))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ItemOutcome::{Failed as F, Succeeded as S};

    /// Runs `outcomes` (item `i` ends with `outcomes[i]`) one item at a time, the way the
    /// reference cases do (`max_concurrency = 1`); returns the tracker and the items started.
    fn sequential(
        config: &CompletionConfig,
        outcomes: &[ItemOutcome],
    ) -> (BatchTracker, Vec<usize>) {
        let mut tracker = BatchTracker::new(outcomes.len(), Some(1), config).unwrap();
        let mut started = Vec::new();
        while let Some(index) = tracker.next_to_start() {
            started.push(index);
            assert_eq!(tracker.running(), vec![index], "max_concurrency 1");
            assert_eq!(tracker.next_to_start(), None, "one at a time");
            tracker.record(index, outcomes[index]).unwrap();
        }
        (tracker, started)
    }

    /// (completion reason, success count, failure count, total count)
    fn summary(tracker: &BatchTracker) -> (Option<CompletionReason>, usize, usize, usize) {
        (
            tracker.decision(),
            tracker.success_count(),
            tracker.failure_count(),
            tracker.total_count(),
        )
    }

    use CompletionReason::{AllCompleted, FailureToleranceExceeded, MinSuccessfulReached};

    #[test]
    fn case_8_5_and_9_4_empty_input_is_all_completed_with_total_0() {
        for config in [
            CompletionConfig::all_completed(),
            CompletionConfig::all_successful(),
            CompletionConfig::min_successful(2),
            CompletionConfig::tolerated_failure_percentage(0.0),
        ] {
            let (tracker, started) = sequential(&config, &[]);
            assert!(started.is_empty());
            assert_eq!(summary(&tracker), (Some(AllCompleted), 0, 0, 0));
            assert_eq!(tracker.final_statuses(), Some(vec![]));
        }
        let mut unlimited = BatchTracker::new(0, None, &CompletionConfig::default()).unwrap();
        assert_eq!(unlimited.next_to_start(), None);
        assert_eq!(unlimited.decision(), Some(AllCompleted));
    }

    #[test]
    fn case_8_6_fail_fast_stops_at_the_first_failure() {
        let (tracker, started) = sequential(&CompletionConfig::all_successful(), &[S, F, S]);
        assert_eq!(started, vec![0, 1], "branch 2 is never started");
        assert_eq!(summary(&tracker), (Some(FailureToleranceExceeded), 1, 1, 2));
        assert_eq!(
            tracker.final_statuses(),
            Some(vec![
                ItemStatus::Succeeded,
                ItemStatus::Failed,
                ItemStatus::NotStarted
            ])
        );
    }

    #[test]
    fn case_8_7_and_9_6_fail_fast_then_throw_if_error_raises_the_first_failure() {
        use crate::batch::{BatchItem, BatchResult, BatchStatus};
        use crate::{Failure, FailureKind};

        let (tracker, started) = sequential(&CompletionConfig::all_successful(), &[F, S]);
        assert_eq!(started, vec![0], "item 1 is never started");
        assert_eq!(summary(&tracker), (Some(FailureToleranceExceeded), 0, 1, 1));
        // The batch itself returns a result (R9); rethrowing fails with item 0's failure.
        let items = tracker
            .final_statuses()
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, status)| match status {
                ItemStatus::Failed => {
                    BatchItem::failed(i, Failure::new(FailureKind::Application, "item 0"))
                }
                _ => BatchItem::<()>::not_started(i),
            })
            .collect();
        let result = BatchResult::new(tracker.decision().unwrap(), items);
        assert_eq!(result.status(), BatchStatus::Failed);
        assert_eq!(result.into_result().unwrap_err().message, "item 0");
    }

    #[test]
    fn case_8_8_and_9_7_min_successful_stops_early() {
        let (tracker, started) = sequential(&CompletionConfig::min_successful(2), &[S, S, S, S]);
        assert_eq!(started, vec![0, 1], "items 2 and 3 are never started");
        assert_eq!(summary(&tracker), (Some(MinSuccessfulReached), 2, 0, 2));
    }

    #[test]
    fn case_8_9_failures_within_tolerance_run_everything() {
        let (tracker, started) = sequential(&CompletionConfig::tolerated_failures(1), &[S, F, S]);
        assert_eq!(started, vec![0, 1, 2]);
        assert_eq!(summary(&tracker), (Some(AllCompleted), 2, 1, 3));
    }

    #[test]
    fn case_8_10_tolerated_failure_count_exceeded_stops_early() {
        let (tracker, started) = sequential(&CompletionConfig::tolerated_failures(1), &[F, F, S]);
        assert_eq!(started, vec![0, 1]);
        assert_eq!(summary(&tracker), (Some(FailureToleranceExceeded), 0, 2, 2));
    }

    #[test]
    fn case_8_13_and_9_10_tolerated_percentage_exceeded_stops_early() {
        let config = CompletionConfig::tolerated_failure_percentage(25.0);
        let (tracker, started) = sequential(&config, &[F, F, S, S]);
        assert_eq!(started, vec![0, 1], "items 2 and 3 are never started");
        assert_eq!(summary(&tracker), (Some(FailureToleranceExceeded), 0, 2, 2));
    }

    #[test]
    fn case_8_16_all_fail_within_tolerance_is_all_completed() {
        let (tracker, started) = sequential(&CompletionConfig::tolerated_failures(3), &[F, F, F]);
        assert_eq!(started, vec![0, 1, 2]);
        assert_eq!(summary(&tracker), (Some(AllCompleted), 0, 3, 3));
    }

    #[test]
    fn case_8_17_unreachable_min_successful_does_not_stop_early() {
        let (tracker, started) = sequential(&CompletionConfig::min_successful(3), &[S, F, S]);
        assert_eq!(started, vec![0, 1, 2]);
        assert_eq!(summary(&tracker), (Some(AllCompleted), 2, 1, 3));
    }

    #[test]
    fn case_8_18_failure_tolerance_wins_over_min_successful() {
        let config = CompletionConfig::min_successful(3).with_tolerated_failures(1);
        let (tracker, started) = sequential(&config, &[F, F, S, S]);
        assert_eq!(started, vec![0, 1], "branches 2 and 3 are never started");
        assert_eq!(summary(&tracker), (Some(FailureToleranceExceeded), 0, 2, 2));
    }

    #[test]
    fn case_8_20_one_failure_tolerated_runs_all_three() {
        let (tracker, _) = sequential(&CompletionConfig::tolerated_failures(1), &[S, F, S]);
        assert_eq!(summary(&tracker), (Some(AllCompleted), 2, 1, 3));
    }

    #[test]
    fn case_8_22_percentage_at_the_boundary_does_not_stop() {
        let config = CompletionConfig::tolerated_failure_percentage(25.0);
        let (tracker, started) = sequential(&config, &[F, S, S, S]);
        assert_eq!(started, vec![0, 1, 2, 3]);
        assert_eq!(summary(&tracker), (Some(AllCompleted), 3, 1, 4));
    }

    #[test]
    fn case_8_1_and_9_1_default_runs_everything_in_index_order() {
        let (tracker, started) = sequential(&CompletionConfig::default(), &[S, F, S]);
        assert_eq!(started, vec![0, 1, 2]);
        assert_eq!(summary(&tracker), (Some(AllCompleted), 2, 1, 3));
    }

    #[test]
    fn case_8_19_max_concurrency_0_is_refused() {
        assert_eq!(
            BatchTracker::new(2, Some(0), &CompletionConfig::default()).unwrap_err(),
            BatchError::InvalidMaxConcurrency
        );
        assert_eq!(
            BatchTracker::new(2, Some(1), &CompletionConfig::min_successful(0)).unwrap_err(),
            BatchError::InvalidMinSuccessful
        );
    }

    #[test]
    fn last_item_reaching_min_successful_is_all_completed() {
        let (tracker, _) = sequential(&CompletionConfig::min_successful(2), &[F, S, S]);
        assert_eq!(summary(&tracker), (Some(AllCompleted), 2, 1, 3));
    }

    #[test]
    fn last_item_exceeding_the_tolerance_is_failure_tolerance_exceeded() {
        let (tracker, _) = sequential(&CompletionConfig::all_successful(), &[S, S, F]);
        assert_eq!(summary(&tracker), (Some(FailureToleranceExceeded), 2, 1, 3));
    }

    #[test]
    fn concurrent_items_start_in_order_and_running_ones_are_cancelled_on_decision() {
        let mut t = BatchTracker::new(5, Some(2), &CompletionConfig::first_successful()).unwrap();
        assert_eq!(t.next_to_start(), Some(0));
        assert_eq!(t.next_to_start(), Some(1));
        assert_eq!(t.next_to_start(), None, "limit of 2");
        assert_eq!(t.record(1, F).unwrap(), None);
        assert_eq!(t.next_to_start(), Some(2));
        assert_eq!(t.next_to_start(), None);
        assert_eq!(t.record(2, S).unwrap(), Some(MinSuccessfulReached));
        assert_eq!(t.next_to_start(), None, "nothing starts once decided");
        assert_eq!(t.running(), vec![0], "item 0 is to be cancelled");
        assert_eq!(summary(&t), (Some(MinSuccessfulReached), 1, 1, 3));
        assert_eq!(
            t.record(0, S),
            Err(BatchError::AlreadyDecided {
                index: 0,
                reason: MinSuccessfulReached
            })
        );
        assert_eq!(
            summary(&t),
            (Some(MinSuccessfulReached), 1, 1, 3),
            "unchanged"
        );
        assert_eq!(
            t.final_statuses(),
            Some(vec![
                ItemStatus::Cancelled,
                ItemStatus::Failed,
                ItemStatus::Succeeded,
                ItemStatus::NotStarted,
                ItemStatus::NotStarted,
            ])
        );
    }

    #[test]
    fn bad_records_are_refused_and_change_nothing() {
        let mut t = BatchTracker::new(3, None, &CompletionConfig::default()).unwrap();
        assert_eq!(t.record(0, S), Err(BatchError::NotRunning { index: 0 }));
        assert_eq!(
            t.record(3, S),
            Err(BatchError::IndexOutOfRange { index: 3, total: 3 })
        );
        assert_eq!(t.next_to_start(), Some(0));
        assert_eq!(t.final_status(0), None, "not decided yet");
        t.record(0, F).unwrap();
        assert_eq!(t.record(0, S), Err(BatchError::NotRunning { index: 0 }));
        assert_eq!(summary(&t), (None, 0, 1, 1));
        assert_eq!(t.next_to_start(), Some(1));
        assert_eq!(t.next_to_start(), Some(2), "no limit");
        assert_eq!(t.next_to_start(), None, "every item started");
        assert_eq!(t.running(), vec![1, 2]);
    }

    #[test]
    fn huge_batches_allocate_only_for_started_items() {
        let mut t = BatchTracker::new(usize::MAX, Some(3), &CompletionConfig::default()).unwrap();
        assert_eq!(t.next_to_start(), Some(0));
        assert_eq!(t.item_count(), usize::MAX);
        assert_eq!(t.total_count(), 1);
    }
}
