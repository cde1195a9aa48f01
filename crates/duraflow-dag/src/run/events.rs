//! A typed subscriber to DAG lifecycle events.

use duraflow_runtime::{Client, ClientError, SubscribeOptions, Subscription};

use super::lifecycle::{LifecycleEvent, TOPIC_PREFIX};

/// DAG lifecycle events from the feed, for one named subscriber (see [`dag_events`]).
#[derive(Debug)]
pub struct DagEvents {
    sub: Subscription,
}

/// Subscribes as `subscriber` to the lifecycle events of every DAG run (the feed's topics
/// under [`TOPIC_PREFIX`]), from the position the subscriber last acknowledged: delivery is at
/// least once across restarts, so acknowledge with [`DagEvents::ack`] once an event's effects
/// are kept.
pub async fn dag_events(client: &Client, subscriber: &str) -> Result<DagEvents, ClientError> {
    dag_events_with(client, subscriber, SubscribeOptions::prefix(TOPIC_PREFIX)).await
}

/// [`dag_events`] with the subscription's batch size and polling interval; its topic prefix
/// is narrowed to [`TOPIC_PREFIX`] if it is not under it.
pub async fn dag_events_with(
    client: &Client,
    subscriber: &str,
    mut options: SubscribeOptions,
) -> Result<DagEvents, ClientError> {
    if !options
        .topic_prefix
        .as_deref()
        .is_some_and(|p| p.starts_with(TOPIC_PREFIX))
    {
        options.topic_prefix = Some(TOPIC_PREFIX.to_owned());
    }
    Ok(DagEvents {
        sub: client.subscribe(subscriber, options).await?,
    })
}

impl DagEvents {
    /// The next events, each with its feed position, waiting until there is at least one.
    /// `Decode` for a record under the prefix that is not a [`LifecycleEvent`].
    pub async fn next_batch(&mut self) -> Result<Vec<(u64, LifecycleEvent)>, ClientError> {
        let batch = self.sub.next_batch().await?;
        batch
            .into_iter()
            .map(|e| {
                e.payload
                    .decode::<LifecycleEvent>()
                    .map(|event| (e.position, event))
                    .map_err(|err| ClientError::Decode {
                        id: e.instance_id.clone(),
                        message: format!("feed record {} ({}): {err}", e.position, e.topic),
                    })
            })
            .collect()
    }

    /// Acknowledges every event up to `position`: a later subscription of this name starts
    /// after it.
    pub async fn ack(&self, position: u64) -> Result<(), ClientError> {
        self.sub.ack(position).await
    }

    /// The underlying subscription.
    pub fn subscription(&mut self) -> &mut Subscription {
        &mut self.sub
    }
}
