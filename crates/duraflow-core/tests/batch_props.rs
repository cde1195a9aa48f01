//! Property tests of the batch decision logic (`duraflow_core::batch`): for random batch
//! sizes, concurrency limits, completion configs and outcomes, with items finishing in random
//! order among those running, the tracker
//!
//! - never runs more than `max_concurrency` items at a time,
//! - starts items in index order, and the same outcomes give the same starts,
//! - is decided exactly at the first outcome where the rules (recomputed here, in integers,
//!   by [`reference_decision`]) say so, with the right reason and counts,
//! - starts nothing after the decision, and refuses later outcomes;
//!
//! and the item batcher's batches keep order, cover every item and respect both limits.
//!
//! `PROPTEST_CASES=20000 cargo test -p duraflow-core --test batch_props` runs more cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use duraflow_core::batch::{
    BatchError, BatchItem, BatchResult, BatchStatus, BatchTracker, CompletionConfig,
    CompletionReason, ItemBatcher, ItemOutcome, ItemStatus,
};
use duraflow_core::{Failure, FailureKind, Payload};
use proptest::prelude::*;

/// A completion config as the test sees it: the percentage in half percents, so that the
/// reference can decide in exact integers.
#[derive(Clone, Debug)]
struct Rules {
    min_successful: Option<usize>,
    tolerated_failures: Option<usize>,
    tolerated_half_percent: Option<usize>,
}

impl Rules {
    fn config(&self) -> CompletionConfig {
        let mut config = CompletionConfig::all_completed();
        if let Some(k) = self.min_successful {
            config = config.with_min_successful(k);
        }
        if let Some(n) = self.tolerated_failures {
            config = config.with_tolerated_failures(n);
        }
        if let Some(h) = self.tolerated_half_percent {
            config = config.with_tolerated_failure_percentage(h as f64 / 2.0);
        }
        config
    }
}

/// R10, independently: after `successes` and `failures` out of `total` items, is the batch
/// decided, and why?
fn reference_decision(
    rules: &Rules,
    total: usize,
    successes: usize,
    failures: usize,
) -> Option<CompletionReason> {
    let too_many = rules.tolerated_failures.is_some_and(|n| failures > n);
    // failures / total > h / 2 percent  <=>  failures * 200 > h * total
    let too_large_a_share = rules
        .tolerated_half_percent
        .is_some_and(|h| total > 0 && failures * 200 > h * total);
    if too_many || too_large_a_share {
        Some(CompletionReason::FailureToleranceExceeded)
    } else if successes + failures == total {
        Some(CompletionReason::AllCompleted)
    } else if rules.min_successful.is_some_and(|k| successes >= k) {
        Some(CompletionReason::MinSuccessfulReached)
    } else {
        None
    }
}

fn rules() -> impl Strategy<Value = Rules> {
    (
        proptest::option::of(1usize..10),
        proptest::option::of(0usize..6),
        proptest::option::of(0usize..=200),
    )
        .prop_map(
            |(min_successful, tolerated_failures, tolerated_half_percent)| Rules {
                min_successful,
                tolerated_failures,
                tolerated_half_percent,
            },
        )
}

/// What happened in a run, step by step.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Start(usize),
    Finish(usize, ItemOutcome, Option<CompletionReason>),
}

/// A run's trace and the tracker at its end.
struct Run {
    trace: Vec<Step>,
    tracker: BatchTracker,
}

/// Runs a batch of `outcomes.len()` items (item `i` ends with `outcomes[i]`), starting all it
/// may, then finishing the running item `picks[step] % running` (in index order), until the
/// tracker starts nothing and nothing runs. Checks the properties along the way.
fn run(
    rules: &Rules,
    limit: Option<usize>,
    outcomes: &[ItemOutcome],
    picks: &[usize],
) -> Result<Run, TestCaseError> {
    let total = outcomes.len();
    let mut tracker = BatchTracker::new(total, limit, &rules.config()).unwrap();
    let mut trace = Vec::new();
    let (mut successes, mut failures, mut started) = (0, 0, 0);
    let mut decided_at_record: Option<CompletionReason> = None;
    if total == 0 {
        prop_assert_eq!(tracker.decision(), Some(CompletionReason::AllCompleted));
        decided_at_record = tracker.decision();
    }
    for step in 0.. {
        while let Some(index) = tracker.next_to_start() {
            // (d) nothing starts after the decision
            prop_assert!(
                decided_at_record.is_none(),
                "item {} started after the decision",
                index
            );
            // (b) index order
            prop_assert_eq!(index, started, "items start in index order");
            started += 1;
            trace.push(Step::Start(index));
            // (a) the limit
            if let Some(limit) = limit {
                prop_assert!(tracker.running_count() <= limit);
            }
        }
        let running = tracker.running();
        prop_assert_eq!(running.len(), tracker.running_count());
        if let Some(limit) = limit {
            prop_assert!(
                running.len() <= limit,
                "{} running, limit {}",
                running.len(),
                limit
            );
        }
        if tracker.is_decided() || running.is_empty() {
            break;
        }
        // The tracker stops starting only at the limit or when every item has started.
        prop_assert!(limit == Some(running.len()) || started == total);
        let pick = picks.get(step % picks.len().max(1)).copied().unwrap_or(0);
        let index = running[pick % running.len()];
        let outcome = outcomes[index];
        match outcome {
            ItemOutcome::Succeeded => successes += 1,
            ItemOutcome::Failed => failures += 1,
        }
        let decision = tracker.record(index, outcome).unwrap();
        trace.push(Step::Finish(index, outcome, decision));
        // (c) decided exactly when the reference says so, for the right reason
        let expected = reference_decision(rules, total, successes, failures);
        prop_assert_eq!(
            decision,
            expected,
            "after {} successes, {} failures",
            successes,
            failures
        );
        prop_assert_eq!(tracker.decision(), expected);
        prop_assert_eq!(tracker.success_count(), successes);
        prop_assert_eq!(tracker.failure_count(), failures);
        prop_assert_eq!(tracker.started_count(), started);
        prop_assert_eq!(tracker.total_count(), started);
        if decision.is_some() {
            decided_at_record = decision;
        }
    }
    // Every batch is decided: at worst every item finishes.
    prop_assert!(tracker.is_decided());
    prop_assert_eq!(tracker.decision(), decided_at_record);
    // (d) nothing starts after the decision, and later outcomes are refused.
    prop_assert_eq!(tracker.next_to_start(), None);
    for index in tracker.running() {
        prop_assert_eq!(
            tracker.record(index, outcomes[index]),
            Err(BatchError::AlreadyDecided {
                index,
                reason: decided_at_record.unwrap()
            })
        );
    }
    prop_assert_eq!(tracker.success_count(), successes);
    prop_assert_eq!(tracker.failure_count(), failures);
    Ok(Run { trace, tracker })
}

fn outcome() -> impl Strategy<Value = ItemOutcome> {
    prop_oneof![Just(ItemOutcome::Succeeded), Just(ItemOutcome::Failed)]
}

proptest! {
    #[test]
    fn tracker_follows_the_rules(
        rules in rules(),
        limit in proptest::option::of(1usize..5),
        outcomes in proptest::collection::vec(outcome(), 0..14),
        picks in proptest::collection::vec(any::<usize>(), 1..20),
    ) {
        let first = run(&rules, limit, &outcomes, &picks)?;
        // (b) the same outcomes in the same order give the same run.
        let second = run(&rules, limit, &outcomes, &picks)?;
        prop_assert_eq!(&first.trace, &second.trace);

        // The result assembled from the tracker agrees with it (R10).
        let tracker = &first.tracker;
        let statuses = tracker.final_statuses().unwrap();
        prop_assert_eq!(statuses.len(), outcomes.len());
        let items: Vec<BatchItem<usize>> = statuses
            .iter()
            .enumerate()
            .map(|(i, status)| match status {
                ItemStatus::Succeeded => BatchItem::succeeded(i, i),
                ItemStatus::Failed => BatchItem::failed(i, Failure::new(FailureKind::Application, i.to_string())),
                ItemStatus::NotStarted => BatchItem::not_started(i),
                ItemStatus::Cancelled => BatchItem::cancelled(i),
            })
            .collect();
        for (i, status) in statuses.iter().enumerate() {
            prop_assert_eq!(status.was_started(), i < tracker.started_count());
            if matches!(status, ItemStatus::Succeeded | ItemStatus::Failed) {
                let expected = if outcomes[i] == ItemOutcome::Succeeded { ItemStatus::Succeeded } else { ItemStatus::Failed };
                prop_assert_eq!(*status, expected);
            }
        }
        let result = BatchResult::new(tracker.decision().unwrap(), items);
        prop_assert_eq!(result.success_count(), tracker.success_count());
        prop_assert_eq!(result.failure_count(), tracker.failure_count());
        prop_assert_eq!(result.total_count(), tracker.total_count());
        prop_assert_eq!(result.cancelled_count(), tracker.running_count());
        prop_assert_eq!(result.status() == BatchStatus::Failed, tracker.failure_count() > 0);
        let successful: Vec<usize> = (0..outcomes.len()).filter(|&i| statuses[i] == ItemStatus::Succeeded).collect();
        prop_assert_eq!(result.results().into_iter().copied().collect::<Vec<_>>(), successful.clone());
        let first_failed = statuses.iter().position(|s| *s == ItemStatus::Failed);
        match result.into_result() {
            Ok(values) => { prop_assert_eq!(first_failed, None); prop_assert_eq!(values, successful); }
            Err(failure) => prop_assert_eq!(Some(failure.message), first_failed.map(|i| i.to_string())),
        }
    }

    /// With `max_concurrency = 1`, each item starts only after the previous one finished (R2).
    #[test]
    fn one_at_a_time_is_strictly_sequential(
        rules in rules(),
        outcomes in proptest::collection::vec(outcome(), 0..14),
    ) {
        let run = run(&rules, Some(1), &outcomes, &[0])?;
        for (n, step) in run.trace.iter().enumerate() {
            let expected = n / 2;
            match step {
                Step::Start(i) => prop_assert!(n % 2 == 0 && *i == expected),
                Step::Finish(i, _, _) => prop_assert!(n % 2 == 1 && *i == expected),
            }
        }
    }

    #[test]
    fn configs_validate_exactly_the_documented_range(
        p in prop_oneof![any::<f64>(), -10.0f64..110.0, Just(f64::NAN), Just(0.0), Just(100.0)],
        k in 0usize..4,
        limit in proptest::option::of(0usize..3),
        total in 0usize..5,
    ) {
        let config = CompletionConfig::min_successful(k).with_tolerated_failure_percentage(p);
        let valid = k > 0 && (0.0..=100.0).contains(&p);
        prop_assert_eq!(config.validate().is_ok(), valid);
        let tracker = BatchTracker::new(total, limit, &config);
        prop_assert_eq!(tracker.is_ok(), valid && limit != Some(0));
        if limit == Some(0) {
            prop_assert_eq!(tracker.err(), Some(BatchError::InvalidMaxConcurrency));
        }
        if !p.is_nan() {
            let back: CompletionConfig =
                serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
            prop_assert_eq!(back, config);
        }
    }

    #[test]
    fn batcher_keeps_order_covers_everything_and_respects_limits(
        sizes in proptest::collection::vec(prop_oneof![0usize..20, 0usize..200], 0..40),
        max_items in proptest::option::of(1usize..7),
        max_bytes in proptest::option::of(1usize..80),
    ) {
        let batcher = ItemBatcher::new(max_items, max_bytes).unwrap();
        let batches = batcher.split_sizes(&sizes).unwrap();
        let mut next = 0;
        for (n, batch) in batches.iter().enumerate() {
            prop_assert_eq!(batch.start, next, "consecutive, in order");
            prop_assert!(batch.end > batch.start, "no empty batch");
            next = batch.end;
            let len = batch.len();
            let bytes: usize = sizes[batch.clone()].iter().sum();
            if let Some(max) = max_items {
                prop_assert!(len <= max);
            }
            if let Some(max) = max_bytes {
                prop_assert!(bytes <= max || len == 1, "{} bytes in {} items", bytes, len);
            }
            // Greedy: a batch closes only because the next item would break a limit.
            if n + 1 < batches.len() {
                let with_next = bytes + sizes[batch.end];
                prop_assert!(
                    max_items.is_some_and(|m| len + 1 > m)
                        || max_bytes.is_some_and(|m| with_next > m)
                );
            }
        }
        prop_assert_eq!(next, sizes.len(), "every item is in a batch");

        // Payloads are split as their JSON texts' lengths.
        let payloads: Vec<Payload> = sizes
            .iter()
            .map(|&n| Payload::encode(&"x".repeat(n.saturating_sub(2))).unwrap())
            .collect();
        let lengths: Vec<usize> = payloads.iter().map(|p| p.as_json().len()).collect();
        let slices = batcher.split(&payloads).unwrap();
        let ranges = batcher.split_sizes(&lengths).unwrap();
        prop_assert_eq!(slices.len(), ranges.len());
        for (slice, range) in slices.iter().zip(ranges) {
            prop_assert_eq!(*slice, &payloads[range]);
        }
    }
}
