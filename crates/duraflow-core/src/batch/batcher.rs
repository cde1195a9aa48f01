//! Splitting a list of serialized items into batches of bounded length and size.

use std::ops::Range;

use super::BatchError;
use crate::Payload;

/// Splits a list of already-serialized items into consecutive batches of at most `max_items`
/// items and at most `max_bytes` bytes each (`None`: no limit).
///
/// A batch's size is the sum of its items' sizes (for a [`Payload`], the length of its JSON
/// text); whatever framing joins them is not counted. Batches are filled greedily in order: an
/// item goes into the current batch unless that would break a limit, and then starts the next.
/// An item bigger than `max_bytes` on its own goes alone in its batch. No batch is empty, and
/// an empty list gives no batch.
///
/// ```
/// use duraflow_core::batch::ItemBatcher;
///
/// let batcher = ItemBatcher::new(Some(3), Some(10))?;
/// // Sizes 4, 4, 4, 1, 20, 1: the third 4 would make 12 bytes; 20 is alone.
/// assert_eq!(
///     batcher.split_sizes(&[4, 4, 4, 1, 20, 1])?,
///     vec![0..2, 2..4, 4..5, 5..6]
/// );
/// assert!(ItemBatcher::new(Some(0), None).is_err());
/// # Ok::<(), duraflow_core::batch::BatchError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ItemBatcher {
    /// The most items a batch may hold (`None`: no limit). Must not be 0.
    pub max_items: Option<usize>,
    /// The most bytes a batch may hold, unless a single item is bigger (`None`: no limit).
    /// Must not be 0.
    pub max_bytes: Option<usize>,
}

impl ItemBatcher {
    /// A batcher with these limits, refusing a limit of 0 ([`BatchError::InvalidMaxItems`],
    /// [`BatchError::InvalidMaxBytes`]).
    pub fn new(max_items: Option<usize>, max_bytes: Option<usize>) -> Result<Self, BatchError> {
        let batcher = ItemBatcher {
            max_items,
            max_bytes,
        };
        batcher.validate()?;
        Ok(batcher)
    }

    /// Refuses a `max_items` of 0 (no item could ever be placed) and a `max_bytes` of 0 (every
    /// batch would be over the limit).
    pub fn validate(&self) -> Result<(), BatchError> {
        if self.max_items == Some(0) {
            return Err(BatchError::InvalidMaxItems);
        }
        if self.max_bytes == Some(0) {
            return Err(BatchError::InvalidMaxBytes);
        }
        Ok(())
    }

    /// The batches for items of these sizes, as consecutive ranges of indexes covering
    /// `0..sizes.len()`.
    pub fn split_sizes(&self, sizes: &[usize]) -> Result<Vec<Range<usize>>, BatchError> {
        self.validate()?;
        let mut batches = Vec::new();
        let mut start = 0;
        let mut bytes: usize = 0;
        for (index, &size) in sizes.iter().enumerate() {
            let count = index - start;
            let full = count > 0
                && (self.max_items.is_some_and(|max| count >= max)
                    || self
                        .max_bytes
                        .is_some_and(|max| bytes.saturating_add(size) > max));
            if full {
                batches.push(start..index);
                start = index;
                bytes = 0;
            }
            bytes = bytes.saturating_add(size);
        }
        if start < sizes.len() {
            batches.push(start..sizes.len());
        }
        Ok(batches)
    }

    /// The batches of these payloads, each a slice of `items`, in order; a payload's size is
    /// the length of its JSON text.
    pub fn split<'a>(&self, items: &'a [Payload]) -> Result<Vec<&'a [Payload]>, BatchError> {
        let sizes: Vec<usize> = items.iter().map(|p| p.as_json().len()).collect();
        Ok(self
            .split_sizes(&sizes)?
            .into_iter()
            .filter_map(|range| items.get(range))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limits_is_one_batch_and_empty_is_none() {
        let b = ItemBatcher::default();
        assert_eq!(b.split_sizes(&[1, 2, 3]).unwrap(), vec![0..3]);
        assert_eq!(b.split_sizes(&[]).unwrap(), vec![]);
    }

    #[test]
    fn max_items_alone() {
        let b = ItemBatcher::new(Some(2), None).unwrap();
        assert_eq!(
            b.split_sizes(&[9, 9, 9, 9, 9]).unwrap(),
            vec![0..2, 2..4, 4..5]
        );
    }

    #[test]
    fn max_bytes_alone_and_oversized_items_go_alone() {
        let b = ItemBatcher::new(None, Some(5)).unwrap();
        assert_eq!(
            b.split_sizes(&[2, 3, 1, 9, 0, 5, 0]).unwrap(),
            vec![0..2, 2..3, 3..4, 4..7]
        );
        assert_eq!(
            b.split_sizes(&[usize::MAX, usize::MAX]).unwrap(),
            vec![0..1, 1..2]
        );
    }

    #[test]
    fn zero_limits_are_refused() {
        assert_eq!(
            ItemBatcher::new(Some(0), None),
            Err(BatchError::InvalidMaxItems)
        );
        assert_eq!(
            ItemBatcher::new(None, Some(0)),
            Err(BatchError::InvalidMaxBytes)
        );
        let bad = ItemBatcher {
            max_items: Some(0),
            max_bytes: None,
        };
        assert_eq!(bad.split_sizes(&[1]), Err(BatchError::InvalidMaxItems));
    }

    #[test]
    fn payloads_are_measured_by_their_json_text() {
        let items: Vec<Payload> = ["\"ab\"", "1", "[1,2,3]", "null"]
            .iter()
            .map(|j| Payload::from_json(j).unwrap())
            .collect();
        // Sizes 4, 1, 7, 4.
        let b = ItemBatcher::new(None, Some(5)).unwrap();
        let batches = b.split(&items).unwrap();
        assert_eq!(
            batches.iter().map(|s| s.len()).collect::<Vec<_>>(),
            vec![2, 1, 1]
        );
        assert_eq!(batches[1][0].as_json(), "[1,2,3]");
    }
}
