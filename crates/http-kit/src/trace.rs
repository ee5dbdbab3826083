//! W3C trace context (`traceparent`) across the services: the client puts
//! the current span's context on every call ([`ServiceClient`] does it), the
//! server layer ([`TraceLayer`]) opens one span per request as a child of the
//! caller's, and the bus carries the same string with each event
//! ([`current_traceparent`], [`follow`]).
//!
//! The spans are at `debug` level, so that they exist only when something
//! wants them: the OpenTelemetry layer a process installs with
//! `--otlp-endpoint`, or logs at `debug`. Without either, creating one costs
//! a cached level check, nothing is injected and nothing is exported.
//!
//! [`ServiceClient`]: crate::ServiceClient

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::labels::{UNMATCHED_ROUTE, method_label};

/// The W3C header (and outbox column, and AMQP header) a trace context
/// travels in.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The longest `traceparent` accepted from outside: the W3C form is 55
/// characters; anything much longer is not one and is ignored.
pub const MAX_TRACEPARENT_LENGTH: usize = 128;

/// One `traceparent` value as a propagation carrier.
struct Traceparent<'a>(Option<&'a str>);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT_HEADER).then_some(self.0).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT_HEADER]
    }
}

/// Receives the `traceparent` a propagator writes (and drops `tracestate`,
/// which Stockroom does not use).
#[derive(Default)]
struct Written(Option<String>);

impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT_HEADER {
            self.0 = Some(value);
        }
    }
}

/// The `traceparent` of the current span, or `None` when it is not traced
/// (no exporter, or the span is disabled).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The `traceparent` of `span`, or `None` when it is not traced.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut written = Written::default();
    TraceContextPropagator::new().inject_context(&context, &mut written);
    written.0
}

/// Makes `span` a child of the span `traceparent` names, when it names one;
/// an absent, oversized or malformed value leaves `span` a root. Call it
/// before `span` is first entered.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    let Some(traceparent) = traceparent.filter(|value| value.len() <= MAX_TRACEPARENT_LENGTH)
    else {
        return;
    };
    let context = TraceContextPropagator::new().extract(&Traceparent(Some(traceparent)));
    if context.span().span_context().is_valid() {
        // It fails only when no OpenTelemetry layer is installed, where a
        // parent means nothing anyway.
        let _ = span.set_parent(context);
    }
}

/// A span for `service` handling one event of the bus, continuing the trace
/// the event carries: `name` is what is done (`payment`, `settlement`).
pub fn event_span(
    service: &'static str,
    name: &'static str,
    order_id: &str,
    traceparent: Option<&str>,
) -> tracing::Span {
    let span = tracing::debug_span!(
        "event",
        otel.name = name,
        otel.kind = "consumer",
        service,
        order_id
    );
    follow(&span, traceparent);
    span
}

/// Adds the current span's `traceparent` to an outgoing request.
pub(crate) fn inject(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match current_traceparent() {
        Some(traceparent) => builder.header(TRACEPARENT_HEADER, traceparent),
        None => builder,
    }
}

/// Opens one span per request, named after the method and the matched route
/// template, as a child of the caller's span when the request carries a
/// `traceparent`.
#[derive(Clone)]
pub struct TraceLayer {
    service: &'static str,
}

impl TraceLayer {
    pub fn new(service: &'static str) -> TraceLayer {
        TraceLayer { service }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
    service: &'static str,
}

impl<S> Service<Request> for TraceService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = method_label(request.method());
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        let span = tracing::debug_span!(
            "request",
            otel.name = %format_args!("{} {method} {route}", self.service),
            otel.kind = "server",
            service = self.service,
            http.request.method = method,
            http.route = route,
            http.response.status_code = tracing::field::Empty,
        );
        let traceparent = request
            .headers()
            .get(TRACEPARENT_HEADER)
            .and_then(|value| value.to_str().ok());
        follow(&span, traceparent);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let response = inner.call(request).await?;
                tracing::Span::current()
                    .record("http.response.status_code", response.status().as_u16());
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const INCOMING: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn without_an_exporter_nothing_is_propagated() {
        let span = tracing::debug_span!("request");
        follow(&span, Some(INCOMING));
        assert_eq!(traceparent_of(&span), None);
    }

    #[test]
    fn a_followed_span_continues_the_callers_trace() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::debug_span!("request");
            follow(&span, Some(INCOMING));
            let outgoing = traceparent_of(&span).expect("a traced span has a context");
            assert!(
                outgoing.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{outgoing}"
            );
            assert!(
                !outgoing.contains("b7ad6b7169203331"),
                "a child has its own id"
            );

            let root = tracing::debug_span!("request");
            follow(&root, Some("not a traceparent"));
            let own = traceparent_of(&root).expect("a root is traced too");
            assert!(!own.contains("0af7651916cd43dd8448eb211c80319c"), "{own}");
        });
    }
}
