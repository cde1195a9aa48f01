//! Subscribers: reading the store's feed from a durable cursor, at least once.

use std::sync::Arc;
use std::time::Duration;

use duraflow_store::feed::{read_limit, validate_subscriber};
use duraflow_store::{FeedEntry, Store};

use super::Client;
use crate::error::ClientError;

/// How a [`Subscription`] reads the feed.
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// Only records whose topic starts with this (all when `None`).
    pub topic_prefix: Option<String>,
    /// The most records one batch holds (default 512; at most
    /// [`duraflow_store::feed::MAX_FEED_READ`]).
    pub batch: usize,
    /// How often to look for new records when nothing woke the subscription (records committed
    /// in this process wake it at once, and so, on SQLite, do other processes' commits, within
    /// milliseconds; on PostgreSQL those of other processes are seen at the next poll).
    /// Default 100 ms.
    pub poll_interval: Duration,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            topic_prefix: None,
            batch: 512,
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl SubscribeOptions {
    /// Only records under `prefix`, the rest as by default.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        SubscribeOptions {
            topic_prefix: Some(prefix.into()),
            ..SubscribeOptions::default()
        }
    }
}

/// A named subscriber's view of the feed (see [`Client::subscribe`]).
///
/// Delivery is at least once: [`Subscription::next_batch`] hands out the records after the
/// last one handed out, starting from the subscriber's saved cursor, and
/// [`Subscription::ack`] saves the cursor once the caller has processed them. A subscriber
/// that stops (or crashes) before acknowledging gets the records after its saved cursor again
/// when it subscribes next, so a projection kept by it misses nothing; one that must not count
/// a record twice keeps the position it has applied alongside its state and skips records at
/// or below it.
pub struct Subscription {
    store: Arc<dyn Store>,
    name: String,
    options: SubscribeOptions,
    delivered: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl Client {
    /// Subscribes to the feed as `name`: records that workflows publish with
    /// `ctx.publish(topic, &payload)`, appended with the commits of their turns, in commit
    /// order. The subscription starts after the cursor `name` last saved (from the beginning
    /// of the feed the first time). Several subscriptions of one name share its cursor; use
    /// one name per projection.
    pub async fn subscribe(
        &self,
        name: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, ClientError> {
        validate_subscriber(name).map_err(ClientError::Store)?;
        let delivered = self
            .store
            .feed_cursor(name)
            .await
            .map_err(ClientError::Store)?
            .unwrap_or(0);
        Ok(Subscription {
            store: self.store.clone(),
            name: name.to_owned(),
            options,
            delivered,
        })
    }
}

impl Subscription {
    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The position of the last record handed out or passed over (the saved cursor before the
    /// first batch).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The next records after the last one handed out, up to the batch size, without waiting:
    /// empty when there are none yet.
    ///
    /// With a topic prefix, records are read in position order and filtered here, and the
    /// subscription moves past the records it filters out too ([`Subscription::delivered`]
    /// counts them), so a subscriber whose topics are rare does not read the same records
    /// again at every poll, and acknowledging what it was handed skips them for good.
    pub async fn try_next_batch(&mut self) -> Result<Vec<FeedEntry>, ClientError> {
        let limit = read_limit(self.options.batch);
        loop {
            let read = self
                .store
                .read_feed(self.delivered, limit, None)
                .await
                .map_err(ClientError::Store)?;
            let Some(last) = read.last() else {
                return Ok(read);
            };
            self.delivered = last.position;
            let full = read.len() >= limit;
            let batch: Vec<FeedEntry> = match &self.options.topic_prefix {
                Some(prefix) => read
                    .into_iter()
                    .filter(|e| e.topic.starts_with(prefix.as_str()))
                    .collect(),
                None => read,
            };
            if !batch.is_empty() || !full {
                return Ok(batch);
            }
        }
    }

    /// The next records after the last one handed out, waiting until there is at least one:
    /// woken at once by a commit in this process that appends records, otherwise polling at
    /// the subscription's interval.
    pub async fn next_batch(&mut self) -> Result<Vec<FeedEntry>, ClientError> {
        let store = self.store.clone();
        loop {
            let notified = store.notifier().map(|n| n.feed.notified());
            let mut notified = std::pin::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            let batch = self.try_next_batch().await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            let sleep = tokio::time::sleep(self.options.poll_interval);
            match notified.as_mut().as_pin_mut() {
                Some(n) => {
                    tokio::select! {
                        () = n => {}
                        () = sleep => {}
                    }
                }
                None => sleep.await,
            }
        }
    }

    /// Saves the cursor: every record up to `position` has been processed, and a subscription
    /// of this name made later starts after it. The cursor never moves backwards.
    pub async fn ack(&self, position: u64) -> Result<(), ClientError> {
        self.store
            .save_feed_cursor(&self.name, position)
            .await
            .map_err(ClientError::Store)
    }

    /// Acknowledges everything handed out so far ([`Subscription::ack`] of
    /// [`Subscription::delivered`]).
    pub async fn ack_delivered(&self) -> Result<(), ClientError> {
        self.ack(self.delivered).await
    }
}
