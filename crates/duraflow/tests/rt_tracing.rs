//! Tracing spans: every turn runs in a `turn` span naming its instance, execution, queue and
//! workflow, and every activity attempt in an `activity` span naming its instance, operation,
//! activity and attempt; with the feature `otel`, they reach an OpenTelemetry exporter with
//! those fields as attributes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{echo, flaky};
use duraflow::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

async fn two_calls(ctx: WorkflowContext, x: u32) -> Result<u32, WorkflowError> {
    let a: u32 = ctx.activity("echo", &x).await?;
    let b: u32 = ctx
        .activity("flaky", &x)
        .retry(RetryPolicy::fixed(Duration::ZERO).max_attempts(2))
        .await?;
    Ok(a + b)
}

/// Runs one `two_calls` instance named `id` to its end on a fresh engine.
async fn run_two_calls(id: &str) {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .workflow("two-calls", two_calls)
        .activity("echo", echo)
        .activity("flaky", flaky)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("two-calls", &7u32).id(id).await.unwrap();
    let out: u32 = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 14);
    engine.shutdown().await;
}

/// A span as opened: its name and fields.
#[derive(Clone, Debug)]
struct Opened {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Opened {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields
            .insert(field.name().to_owned(), value.to_string());
    }
}

/// Records every span opened.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Opened>>>);

impl<S: Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut opened = Opened {
            name: attrs.metadata().name().to_owned(),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut opened);
        self.0.lock().unwrap().push(opened);
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.fields.clone())
            .collect()
    }
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// One thread: the subscriber set for this test is the thread's, and every task of the engine
// runs on it.
#[tokio::test(flavor = "current_thread")]
async fn turns_and_activity_attempts_run_in_spans_naming_them() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    run_two_calls("traced").await;

    let turns = spans.named("turn");
    assert!(
        turns.len() >= 3,
        "a turn for the start and one per result: {turns:?}"
    );
    for turn in &turns {
        assert_eq!(
            turn,
            &fields(&[
                ("instance_id", "traced"),
                ("execution", "1"),
                ("queue", "default"),
                ("workflow", "two-calls"),
            ])
        );
    }
    let activities = spans.named("activity");
    let attempt = |activity: &str, op: &str, attempt: &str| {
        fields(&[
            ("instance_id", "traced"),
            ("execution", "1"),
            ("operation_id", op),
            ("activity", activity),
            ("attempt", attempt),
            ("queue", "default"),
        ])
    };
    assert_eq!(
        activities,
        vec![
            attempt("echo", "0", "1"),
            attempt("flaky", "1", "1"),
            attempt("flaky", "1", "2"),
        ],
        "a span per attempt, in order"
    );
}

#[cfg(feature = "otel")]
mod otel {
    use super::*;
    use duraflow::otel::opentelemetry::Value;
    use duraflow::otel::opentelemetry_sdk::error::OTelSdkResult;
    use duraflow::otel::opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

    /// Keeps every exported span.
    #[derive(Clone, Debug, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| match &kv.value {
                Value::String(s) => s.as_str().to_owned(),
                other => other.to_string(),
            })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn spans_reach_an_opentelemetry_exporter_with_their_ids() {
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(duraflow::otel::layer(&provider));
        let guard = tracing::subscriber::set_default(subscriber);
        run_two_calls("exported").await;
        drop(guard);
        provider.force_flush().unwrap();

        let spans = kept.0.lock().unwrap().clone();
        let turns: Vec<&SpanData> = spans.iter().filter(|s| s.name == "turn").collect();
        assert!(turns.len() >= 3, "{spans:?}");
        for turn in &turns {
            assert_eq!(attribute(turn, "instance_id").as_deref(), Some("exported"));
            assert_eq!(attribute(turn, "workflow").as_deref(), Some("two-calls"));
            assert_eq!(
                turn.instrumentation_scope.name(),
                duraflow::otel::TRACER_NAME
            );
        }
        let activities: Vec<&SpanData> = spans.iter().filter(|s| s.name == "activity").collect();
        assert_eq!(activities.len(), 3, "{activities:?}");
        let ids: Vec<(Option<String>, Option<String>, Option<String>)> = activities
            .iter()
            .map(|s| {
                (
                    attribute(s, "operation_id"),
                    attribute(s, "activity"),
                    attribute(s, "attempt"),
                )
            })
            .collect();
        let some = |op: &str, name: &str, attempt: &str| {
            (
                Some(op.to_owned()),
                Some(name.to_owned()),
                Some(attempt.to_owned()),
            )
        };
        assert_eq!(
            ids,
            vec![
                some("0", "echo", "1"),
                some("1", "flaky", "1"),
                some("1", "flaky", "2")
            ]
        );
        for span in &activities {
            assert_eq!(attribute(span, "instance_id").as_deref(), Some("exported"));
        }
    }
}
