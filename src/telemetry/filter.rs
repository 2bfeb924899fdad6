//! One global filter for the whole subscriber, with separate rules for spans and events: spans
//! follow `telemetry.span_filter` (what is exported), events follow the log filter (what is
//! logged, and attached to exported spans).
//!
//! Why not a per-layer filter on each layer: with two per-layer-filtered layers, tracing-subscriber
//! loses events under re-entrant dispatch (tokio-rs/tracing#2704, tracing-opentelemetry#257). Here
//! the log lines after the first PostgreSQL migration, and every span, vanished.

use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Spans by one filter, events by another.
pub struct SplitFilter {
    spans: EnvFilter,
    events: EnvFilter,
}

impl SplitFilter {
    /// Enables spans that `spans` enables and events that `events` enables.
    pub fn new(spans: EnvFilter, events: EnvFilter) -> Self {
        Self { spans, events }
    }

    fn for_metadata(&self, metadata: &Metadata<'_>) -> &EnvFilter {
        if metadata.is_span() {
            &self.spans
        } else {
            &self.events
        }
    }
}

impl<S> Layer<S> for SplitFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        Layer::<S>::register_callsite(self.for_metadata(metadata), metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        Layer::<S>::enabled(self.for_metadata(metadata), metadata, ctx)
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        Layer::<S>::event_enabled(&self.events, event, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let spans = Layer::<S>::max_level_hint(&self.spans);
        let events = Layer::<S>::max_level_hint(&self.events);
        match (spans, events) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        }
    }

    // Span-scoped directives (`[span]=level`) track the spans they match.
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.spans.on_new_span(attrs, id, ctx.clone());
        self.events.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.spans.on_record(id, values, ctx.clone());
        self.events.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.spans.on_enter(id, ctx.clone());
        self.events.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.spans.on_exit(id, ctx.clone());
        self.events.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.spans.on_close(id.clone(), ctx.clone());
        self.events.on_close(id, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Records the names of spans and the messages' targets of events it sees.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
        fn on_new_span(&self, attrs: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("span {}", attrs.metadata().name()));
        }

        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("event {}", event.metadata().level()));
        }
    }

    #[test]
    fn spans_and_events_follow_their_own_filters() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(SplitFilter::new(
                EnvFilter::new("debug"),
                EnvFilter::new("info"),
            ))
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            let _span = tracing::debug_span!("child").entered();
            tracing::debug!("hidden");
            tracing::info!("shown");
            let _trace = tracing::trace_span!("too_fine").entered();
        });
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec!["span child".to_owned(), "event INFO".to_owned()]
        );
    }
}
