//! What a batch returns.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::CompletionReason;
use crate::Failure;

/// How one item of a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// The item returned a result.
    Succeeded,
    /// The item failed.
    Failed,
    /// The batch was decided before the item was started.
    NotStarted,
    /// The item was running when the batch was decided, and was cancelled.
    Cancelled,
}

impl ItemStatus {
    /// Whether the item was started (every status but [`NotStarted`](Self::NotStarted)).
    pub fn was_started(self) -> bool {
        self != ItemStatus::NotStarted
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ItemStatus::Succeeded => "succeeded",
            ItemStatus::Failed => "failed",
            ItemStatus::NotStarted => "not_started",
            ItemStatus::Cancelled => "cancelled",
        })
    }
}

/// A batch's overall status (R10): [`Failed`](Self::Failed) if and only if at least one item
/// failed, whatever the [`CompletionReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// No item failed.
    Succeeded,
    /// At least one item failed.
    Failed,
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BatchStatus::Succeeded => "succeeded",
            BatchStatus::Failed => "failed",
        })
    }
}

/// One item (map) or branch (parallel) of a [`BatchResult`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchItem<T> {
    /// The item's 0-based index in the batch's input.
    pub index: usize,
    /// How it ended.
    pub status: ItemStatus,
    /// Its result, if it succeeded.
    ///
    /// Serialized only when present, and a present field always reads back as `Some`, even
    /// when `T` serializes as `null` (`()`, `Option::None`): an item's result survives the
    /// round trip through the journal.
    #[serde(
        default = "none",
        deserialize_with = "present",
        bound(deserialize = "T: Deserialize<'de>"),
        skip_serializing_if = "Option::is_none"
    )]
    pub result: Option<T>,
    /// Its failure, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

fn none<T>() -> Option<T> {
    None
}

/// A field that is present is `Some`, whatever its value (`null` included).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl<T> BatchItem<T> {
    /// Item `index` succeeded with `result`.
    pub fn succeeded(index: usize, result: T) -> Self {
        BatchItem {
            index,
            status: ItemStatus::Succeeded,
            result: Some(result),
            error: None,
        }
    }

    /// Item `index` failed with `error`.
    pub fn failed(index: usize, error: Failure) -> Self {
        BatchItem {
            index,
            status: ItemStatus::Failed,
            result: None,
            error: Some(error),
        }
    }

    /// Item `index` was never started.
    pub fn not_started(index: usize) -> Self {
        BatchItem {
            index,
            status: ItemStatus::NotStarted,
            result: None,
            error: None,
        }
    }

    /// Item `index` was cancelled when the batch was decided.
    pub fn cancelled(index: usize) -> Self {
        BatchItem {
            index,
            status: ItemStatus::Cancelled,
            result: None,
            error: None,
        }
    }
}

/// What a map or parallel batch returns: every item, in index order, and why the batch
/// stopped.
///
/// A batch does not fail because items failed (R9): it returns this, and the workflow decides,
/// for example with [`into_result`](Self::into_result) (AWS's `throw_if_error`), which turns the
/// first failure by index into an error.
///
/// Counts follow R10: [`total_count`](Self::total_count) counts the **started** items
/// (succeeded, failed and cancelled), not those never started; [`status`](Self::status) is
/// [`Failed`](BatchStatus::Failed) if and only if an item failed.
///
/// ```
/// use duraflow_core::batch::{BatchItem, BatchResult, BatchStatus, CompletionReason};
/// use duraflow_core::{Failure, FailureKind};
///
/// let result = BatchResult::new(
///     CompletionReason::FailureToleranceExceeded,
///     vec![
///         BatchItem::succeeded(0, "ok"),
///         BatchItem::failed(1, Failure::new(FailureKind::Application, "boom")),
///         BatchItem::not_started(2),
///     ],
/// );
/// assert_eq!(result.status(), BatchStatus::Failed);
/// assert_eq!((result.success_count(), result.failure_count(), result.total_count()), (1, 1, 2));
/// assert_eq!(result.results(), vec![&"ok"]);
/// assert_eq!(result.into_result().unwrap_err().message, "boom");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResult<T> {
    /// Every item of the batch, in index order.
    pub items: Vec<BatchItem<T>>,
    /// Why the batch stopped.
    pub completion_reason: CompletionReason,
}

impl<T> BatchResult<T> {
    /// A result of `items` (put in index order), stopped for `completion_reason`.
    pub fn new(completion_reason: CompletionReason, mut items: Vec<BatchItem<T>>) -> Self {
        items.sort_by_key(|item| item.index);
        BatchResult {
            items,
            completion_reason,
        }
    }

    /// The items with `status`, in index order.
    fn with_status(&self, status: ItemStatus) -> impl Iterator<Item = &BatchItem<T>> {
        self.items.iter().filter(move |item| item.status == status)
    }

    /// The items that succeeded, in index order.
    pub fn succeeded(&self) -> Vec<&BatchItem<T>> {
        self.with_status(ItemStatus::Succeeded).collect()
    }

    /// The items that failed, in index order.
    pub fn failed(&self) -> Vec<&BatchItem<T>> {
        self.with_status(ItemStatus::Failed).collect()
    }

    /// The successful items' results, in index order.
    pub fn results(&self) -> Vec<&T> {
        self.with_status(ItemStatus::Succeeded)
            .filter_map(|item| item.result.as_ref())
            .collect()
    }

    /// The failed items' failures, in index order.
    pub fn errors(&self) -> Vec<&Failure> {
        self.with_status(ItemStatus::Failed)
            .filter_map(|item| item.error.as_ref())
            .collect()
    }

    /// How many items succeeded.
    pub fn success_count(&self) -> usize {
        self.with_status(ItemStatus::Succeeded).count()
    }

    /// How many items failed.
    pub fn failure_count(&self) -> usize {
        self.with_status(ItemStatus::Failed).count()
    }

    /// How many items were cancelled when the batch was decided.
    pub fn cancelled_count(&self) -> usize {
        self.with_status(ItemStatus::Cancelled).count()
    }

    /// R10's `total_count`: how many items were **started** (succeeded, failed or cancelled);
    /// items never started do not count. The batch's size is `items.len()`.
    pub fn total_count(&self) -> usize {
        self.items
            .iter()
            .filter(|item| item.status.was_started())
            .count()
    }

    /// Whether at least one item failed.
    pub fn has_failure(&self) -> bool {
        self.with_status(ItemStatus::Failed).next().is_some()
    }

    /// [`Failed`](BatchStatus::Failed) if and only if at least one item failed (R10), whatever
    /// the [`completion_reason`](Self::completion_reason).
    pub fn status(&self) -> BatchStatus {
        if self.has_failure() {
            BatchStatus::Failed
        } else {
            BatchStatus::Succeeded
        }
    }

    /// The first failure by index, if any: what [`throw_if_error`](Self::throw_if_error) and
    /// [`into_result`](Self::into_result) return.
    pub fn first_error(&self) -> Option<&Failure> {
        self.errors().into_iter().next()
    }

    /// AWS's `throw_if_error`: the first failure by index as an error, if any item failed.
    pub fn throw_if_error(&self) -> Result<(), Failure> {
        match self.first_error() {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }

    /// The successful results in index order, or the first failure by index if any item
    /// failed. Items not started or cancelled are left out, as in [`results`](Self::results).
    pub fn into_result(self) -> Result<Vec<T>, Failure> {
        self.throw_if_error()?;
        Ok(self
            .items
            .into_iter()
            .filter(|item| item.status == ItemStatus::Succeeded)
            .filter_map(|item| item.result)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureKind;

    fn boom(message: &str) -> Failure {
        Failure::new(FailureKind::Application, message)
    }

    /// parallel/8-20: `[ok, fail, ok]` tolerating one failure.
    #[test]
    fn case_8_20_accessors_agree_with_the_counts() {
        let r = BatchResult::new(
            CompletionReason::AllCompleted,
            vec![
                BatchItem::succeeded(0, 1),
                BatchItem::failed(1, boom("b1")),
                BatchItem::succeeded(2, 3),
            ],
        );
        assert!(r.has_failure());
        assert_eq!(r.succeeded().len(), 2);
        assert_eq!(r.failed().len(), 1);
        assert_eq!(r.errors().len(), 1);
        assert_eq!(r.status(), BatchStatus::Failed);
        assert_eq!(r.results(), vec![&1, &3]);
        assert_eq!(r.total_count(), 3);
    }

    /// parallel/8-6: `[ok, fail, (never started)]`, fail fast.
    #[test]
    fn case_8_6_total_count_counts_started_items_only() {
        let r = BatchResult::new(
            CompletionReason::FailureToleranceExceeded,
            vec![
                BatchItem::not_started(2),
                BatchItem::failed(1, boom("b1")),
                BatchItem::succeeded(0, "ok"),
            ],
        );
        assert_eq!(
            r.items.iter().map(|i| i.index).collect::<Vec<_>>(),
            vec![0, 1, 2],
            "put in index order"
        );
        assert_eq!(
            (r.success_count(), r.failure_count(), r.total_count()),
            (1, 1, 2)
        );
        assert_eq!(r.status(), BatchStatus::Failed);
    }

    #[test]
    fn cancelled_items_count_as_started_but_not_as_results() {
        let r = BatchResult::new(
            CompletionReason::MinSuccessfulReached,
            vec![
                BatchItem::cancelled(0),
                BatchItem::succeeded(1, 'a'),
                BatchItem::not_started(2),
            ],
        );
        assert_eq!(r.total_count(), 2);
        assert_eq!(r.cancelled_count(), 1);
        assert_eq!(r.status(), BatchStatus::Succeeded);
        assert!(!r.has_failure());
        assert_eq!(r.throw_if_error(), Ok(()));
        assert_eq!(r.into_result(), Ok(vec!['a']));
    }

    #[test]
    fn into_result_returns_the_first_failure_by_index() {
        let r = BatchResult::new(
            CompletionReason::AllCompleted,
            vec![
                BatchItem::failed(3, boom("third")),
                BatchItem::succeeded(0, ()),
                BatchItem::failed(1, boom("first")),
            ],
        );
        assert_eq!(r.first_error().map(|f| f.message.as_str()), Some("first"));
        assert_eq!(r.throw_if_error().unwrap_err().message, "first");
        assert_eq!(r.into_result().unwrap_err().message, "first");
    }

    #[test]
    fn empty_result_succeeds_with_nothing() {
        let r: BatchResult<u8> = BatchResult::new(CompletionReason::AllCompleted, vec![]);
        assert_eq!((r.total_count(), r.status()), (0, BatchStatus::Succeeded));
        assert_eq!(r.into_result(), Ok(vec![]));
    }

    #[test]
    fn serde_round_trips() {
        let r = BatchResult::new(
            CompletionReason::FailureToleranceExceeded,
            vec![
                BatchItem::succeeded(0, "x".to_string()),
                BatchItem::failed(1, boom("no")),
                BatchItem::cancelled(2),
                BatchItem::not_started(3),
            ],
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["completion_reason"], "failure_tolerance_exceeded");
        assert_eq!(json["items"][0]["status"], "succeeded");
        assert_eq!(json["items"][0]["result"], "x");
        assert_eq!(json["items"][1]["error"]["message"], "no");
        assert_eq!(json["items"][3]["status"], "not_started");
        assert_eq!(
            serde_json::from_value::<BatchResult<String>>(json).unwrap(),
            r
        );
        assert_eq!(ItemStatus::Cancelled.to_string(), "cancelled");
        // Results that serialize as null survive too.
        let unit = BatchResult::new(
            CompletionReason::AllCompleted,
            vec![BatchItem::succeeded(0, ())],
        );
        let back: BatchResult<()> =
            serde_json::from_str(&serde_json::to_string(&unit).unwrap()).unwrap();
        assert_eq!(back.into_result(), Ok(vec![()]));
        let none = BatchResult::new(
            CompletionReason::AllCompleted,
            vec![
                BatchItem::succeeded(0, None::<u8>),
                BatchItem::not_started(1),
            ],
        );
        let json = serde_json::to_string(&none).unwrap();
        assert_eq!(
            json,
            r#"{"items":[{"index":0,"status":"succeeded","result":null},{"index":1,"status":"not_started"}],"completion_reason":"all_completed"}"#
        );
        assert_eq!(
            serde_json::from_str::<BatchResult<Option<u8>>>(&json).unwrap(),
            none
        );
        assert_eq!(BatchStatus::Failed.to_string(), "failed");
    }
}
