//! The trace context an outbox event carries: the W3C `traceparent` of the span that
//! was current when the event was appended, so the work it causes later (a notice
//! sent, a referral opened) joins the trace of the call that caused it.
//!
//! Off until [`enable`] is called (a serving binary does when it exports traces);
//! until then no span is looked at and events carry none. The text holds trace and
//! span ids only, never anything about a member.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Longest `traceparent` kept: version, 32 + 16 hex digits, flags and dashes.
const TRACEPARENT_LEN: usize = 55;

/// Starts recording trace contexts with outbox events.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether trace contexts are recorded.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The `traceparent` of the current span, when traces are on and the span is sampled
/// into one.
pub fn current() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span = span.span_context();
    span.is_valid().then(|| traceparent(span))
}

/// The W3C `traceparent` header value of `span`.
pub fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// The remote span a `traceparent` names, or `None` when the text is not one
/// (version 00 layout: `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    if traceparent.len() != TRACEPARENT_LEN {
        return None;
    }
    let mut parts = traceparent.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Makes `span` a child of the remote span `traceparent` names; a text that is not a
/// `traceparent` (or traces off) leaves the span as it is.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(parent) = traceparent.and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_reads_back_as_written() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = parse(text).expect("valid");
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(traceparent(&span), text);
    }

    #[test]
    fn anything_else_is_no_parent() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
