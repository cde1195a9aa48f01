//! OpenTelemetry export of the engine's tracing spans (feature `otel`).
//!
//! The engine opens a `tracing` span for every workflow turn (`turn`: `instance_id`,
//! `execution`, `queue`, `workflow`) and every activity attempt (`activity`: `instance_id`,
//! `execution`, `operation_id`, `activity`, `attempt`, `queue`), at level DEBUG; what it logs
//! inside them carries their fields. [`layer`] turns those spans into OpenTelemetry spans sent
//! through a tracer provider built with whichever exporter the application chose (OTLP with
//! the `opentelemetry-otlp` crate, stdout, an in-memory one in tests).
//!
//! ```no_run
//! use duraflow::otel::opentelemetry_sdk::trace::SdkTracerProvider;
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! // With an exporter: `.with_batch_exporter(exporter)`.
//! let provider = SdkTracerProvider::builder().build();
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::EnvFilter::new("info,duraflow_runtime=debug"))
//!     .with(duraflow::otel::layer(&provider))
//!     .init();
//! // ... run the engine; at exit, `provider.shutdown()` flushes the spans still buffered.
//! ```

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

/// The name of the tracer duraflow's spans are recorded by (their instrumentation scope).
pub const TRACER_NAME: &str = "duraflow";

/// A `tracing` layer that records spans (duraflow's among them) as OpenTelemetry spans of
/// `provider`'s tracer [`TRACER_NAME`]. Add it to a `tracing_subscriber::registry()`, with a
/// filter that lets DEBUG spans of the `duraflow_runtime` target through.
pub fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, Tracer>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME))
}
