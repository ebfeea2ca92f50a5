//! Trace context across the mesh: W3C `traceparent`/`tracestate`, carried inside the event.
//!
//! One event is one trace, whatever hops it takes. The context of the hop that last touched an event
//! travels in the event's CloudEvents distributed-tracing extensions (`traceparent`, `tracestate`),
//! so it survives the channel (a Kafka record carries them as `ce_traceparent` headers) and a node
//! restart. Each hop makes its span a child of what the event carries ([`follow`]) and, before the
//! event moves on, writes its own span's context back into it ([`stamp`]):
//!
//! ```text
//!   producer ─traceparent─► ingress ─stamp─► append ─stamp─► [channel] ─► dispatch ─► deliver
//!                                                                             attempt ─stamp─► subscriber
//!                                                                             reply ─stamp─► append ─► ...
//! ```
//!
//! Spans are made with [`event_span!`](crate::event_span) under the target [`TARGET`]. When no OpenTelemetry layer is
//! installed, nothing subscribes to that target: the spans are disabled at their call site, their
//! fields are never evaluated, and [`follow`] and [`stamp`] return at once, so an event that arrived
//! with a producer's `traceparent` keeps it unchanged (pass-through).
//!
//! Sampling is decided here, at the hop, before any span exists ([`traced`], by the
//! [`HeadSampling`] the telemetry setup installs; the exporter then keeps every span it gets). An
//! event that is not sampled makes no spans at all: a later hop follows the sampled flag of the
//! context the event carries, and a trace that starts in the mesh starts where the event entered
//! it (the ingress); a later hop never starts one of its own for an event without context, unless
//! every trace is kept. An unsampled event that came without context therefore still carries none,
//! and costs what it costs with tracing off. That is what keeps 1 % sampling cheap.

use std::str::FromStr;
use std::sync::OnceLock;

use cloudevents::event::ExtensionValue;
use cloudevents::Event;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::envelope::{TRACEPARENT_EXTENSION, TRACESTATE_EXTENSION};

/// The `tracing` target of every span that follows an event; the telemetry layer exports exactly
/// these, and the log output never formats them.
pub const TARGET: &str = "knactor::trace";

/// An event-path span: `event_span!("knactor.dispatch", broker = %key, ...)`, a root at INFO
/// under [`TARGET`] (follow the event's context with [`follow`]); `event_span!(parent: &span,
/// "name", ...)` for a child, which is disabled when the parent is.
#[macro_export]
macro_rules! event_span {
    (parent: $parent:expr, $name:literal $($fields:tt)*) => {{
        let parent: &::tracing::Span = $parent;
        if parent.is_disabled() {
            ::tracing::Span::none()
        } else {
            ::tracing::info_span!(target: "knactor::trace", parent: parent, $name $($fields)*)
        }
    }};
    ($name:literal $($fields:tt)*) => {
        ::tracing::info_span!(target: "knactor::trace", parent: ::core::option::Option::<::tracing::Id>::None, $name $($fields)*)
    };
}

/// Which events are traced, decided at each hop from the context the event carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadSampling {
    /// Every event, whatever its producer decided.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// Follow the producer's decision; an event without one is traced with probability `root`.
    ParentBased { root: f64 },
}

static SAMPLING: OnceLock<HeadSampling> = OnceLock::new();

/// Told once by the telemetry setup, when spans are exported.
pub fn set_exporting(sampling: HeadSampling) {
    let _ = SAMPLING.set(sampling);
}

/// Whether spans are exported at all.
pub fn exporting() -> bool {
    SAMPLING.get().is_some()
}

/// Where a hop is on an event's way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Where events enter the mesh (the ingress): a trace may start here.
    Entry,
    /// Any later hop: follows the event's context.
    Inner,
}

/// Whether a hop makes spans for an event whose context has this sampled flag (`None`: the event
/// carries no context).
pub fn traced(parent_sampled: Option<bool>, at: At) -> bool {
    match (SAMPLING.get(), parent_sampled) {
        (None, _) | (Some(HeadSampling::AlwaysOff), _) => false,
        (Some(HeadSampling::AlwaysOn), _) => true,
        (Some(HeadSampling::ParentBased { .. }), Some(sampled)) => sampled,
        (Some(HeadSampling::ParentBased { root }), None) => {
            *root >= 1.0 || (at == At::Entry && rand::random::<f64>() < *root)
        }
    }
}

/// The sampled flag of the context an event carries, read without parsing the rest (the hot
/// path asks this of every event; only traced events are parsed in full).
pub fn sampled_flag(event: &Event) -> Option<bool> {
    let Some(ExtensionValue::String(text)) = event.extension(TRACEPARENT_EXTENSION) else {
        return None;
    };
    let bytes = text.trim().as_bytes();
    if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let flags = std::str::from_utf8(&bytes[53..55]).ok()?;
    u8::from_str_radix(flags, 16)
        .ok()
        .map(|flags| flags & 1 == 1)
}

/// A W3C trace context: the `traceparent` header (or extension) and its `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
    pub state: Option<String>,
}

impl TraceParent {
    /// Parses a `traceparent` value (version 00, or a later version read as 00 as the spec asks).
    /// Anything malformed, and the all-zero ids, are `None`: an unusable context is ignored.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let value = traceparent.trim();
        let mut parts = value.splitn(5, '-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) {
            return None;
        }
        if !hex(flags, 2) || (version == "00" && rest.is_some()) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace_id).ok()?;
        let span_id = SpanId::from_hex(span_id).ok()?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            state: tracestate
                .map(str::trim)
                .filter(|state| !state.is_empty())
                .map(str::to_string),
        })
    }

    /// The context an event carries, if it carries a usable one.
    pub fn of_event(event: &Event) -> Option<Self> {
        let text = |name| match event.extension(name) {
            Some(ExtensionValue::String(text)) => Some(text.as_str()),
            _ => None,
        };
        Self::parse(text(TRACEPARENT_EXTENSION)?, text(TRACESTATE_EXTENSION))
    }

    /// The `traceparent` value.
    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// Writes this context into the event's extensions (replacing what was there).
    pub fn write_to(&self, event: &mut Event) {
        event.set_extension(TRACEPARENT_EXTENSION, self.header());
        match &self.state {
            Some(state) => event.set_extension(TRACESTATE_EXTENSION, state.as_str()),
            None => {
                event.remove_extension(TRACESTATE_EXTENSION);
            }
        }
    }

    fn span_context(&self) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = self
            .state
            .as_deref()
            .and_then(|state| TraceState::from_str(state).ok())
            .unwrap_or_default();
        SpanContext::new(self.trace_id, self.span_id, flags, true, state)
    }

    /// The context of a span, if it is being traced.
    pub fn of_span(span: &Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span_ref = context.span();
        let span_context = span_ref.span_context();
        span_context.is_valid().then(|| Self {
            trace_id: span_context.trace_id(),
            span_id: span_context.span_id(),
            sampled: span_context.is_sampled(),
            state: Some(span_context.trace_state().header()).filter(|s| !s.is_empty()),
        })
    }
}

/// Makes `span` a child of `parent` (a context from another process, or read back from a channel).
/// Call it right after making the span, before it is entered or given children.
pub fn follow_context(span: &Span, parent: Option<&TraceParent>) {
    if span.is_disabled() {
        return;
    }
    if let Some(parent) = parent {
        let context = opentelemetry::Context::new().with_remote_span_context(parent.span_context());
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the context `event` carries.
pub fn follow(span: &Span, event: &Event) {
    if span.is_disabled() {
        return;
    }
    follow_context(span, TraceParent::of_event(event).as_ref());
}

/// Writes `span`'s context into `event`, so that the next hop is its child. When `span` is not
/// traced, the event keeps the context it came with.
pub fn stamp(span: &Span, event: &mut Event) {
    if let Some(context) = TraceParent::of_span(span) {
        context.write_to(event);
    }
}

/// Events of a batch that share a parent context: one span covers them.
#[derive(Debug)]
struct ContextGroup {
    parent: Option<TraceParent>,
    /// Indexes into the batch, in order; never empty.
    members: Vec<usize>,
}

/// Splits a batch by the parent context `parent_of` picks for each event (same trace and span
/// id), in order of first appearance: a batch gathered from several producers makes one span per
/// producer, so each event stays in its own trace. A single event, or a batch from one producer,
/// is one group.
fn group_by_parent(
    events: &[Event],
    parent_of: impl Fn(&Event) -> Option<TraceParent>,
) -> Vec<ContextGroup> {
    let mut groups: Vec<ContextGroup> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let parent = parent_of(event);
        let same = |group: &&mut ContextGroup| match (&group.parent, &parent) {
            (Some(a), Some(b)) => a.trace_id == b.trace_id && a.span_id == b.span_id,
            (None, None) => true,
            _ => false,
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.members.push(index),
            None => groups.push(ContextGroup {
                parent,
                members: vec![index],
            }),
        }
    }
    groups
}

/// The spans of one hop over a batch: one per parent context `parent_of` picks (see
/// `group_by_parent`), made by `make` from the group's first event and its size, a child of that
/// context; the group's events are stamped with it, so the next hop is its child. A group this hop
/// does not trace (`at`, its sampled flag) makes no span, and each of its events is passed to
/// `untraced` instead.
pub fn span_per_group(
    events: &mut [Event],
    parent_of: impl Fn(&Event) -> Option<TraceParent>,
    at: At,
    make: impl Fn(&Event, usize) -> Span,
    mut untraced: impl FnMut(&mut Event),
) -> Vec<Span> {
    // One event (the common request): no grouping, and nothing allocated when it is not traced.
    if let [event] = events {
        let parent = parent_of(event);
        if !traced(parent.as_ref().map(|parent| parent.sampled), at) {
            untraced(event);
            return Vec::new();
        }
        let span = make(event, 1);
        follow_context(&span, parent.as_ref());
        stamp(&span, event);
        return vec![span];
    }
    let groups = group_by_parent(events, parent_of);
    let mut spans = Vec::with_capacity(groups.len());
    for group in groups {
        if !traced(group.parent.as_ref().map(|parent| parent.sampled), at) {
            for &index in &group.members {
                untraced(&mut events[index]);
            }
            continue;
        }
        let span = make(&events[group.members[0]], group.members.len());
        follow_context(&span, group.parent.as_ref());
        for &index in &group.members {
            stamp(&span, &mut events[index]);
        }
        spans.push(span);
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips() {
        let parent = TraceParent::parse(SAMPLE, Some("congo=t61rcWkgMzE")).unwrap();
        assert!(parent.sampled);
        assert_eq!(parent.header(), SAMPLE);
        assert_eq!(parent.state.as_deref(), Some("congo=t61rcWkgMzE"));
    }

    #[test]
    fn malformed_or_zero_contexts_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next";
        let parent = TraceParent::parse(later, None).unwrap();
        assert!(!parent.sampled);
        assert_eq!(
            parent.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn the_context_travels_in_the_event_extensions() {
        let mut event = EventBuilderV10::new()
            .id("1")
            .source("/t")
            .ty("t")
            .build()
            .unwrap();
        assert_eq!(TraceParent::of_event(&event), None);
        let parent = TraceParent::parse(SAMPLE, Some("a=b")).unwrap();
        parent.write_to(&mut event);
        assert_eq!(TraceParent::of_event(&event), Some(parent));
        TraceParent::parse(SAMPLE, None)
            .unwrap()
            .write_to(&mut event);
        assert!(event.extension(TRACESTATE_EXTENSION).is_none());
    }

    #[test]
    fn the_sampled_flag_is_read_without_a_full_parse() {
        let with = |traceparent: &str| {
            EventBuilderV10::new()
                .id("1")
                .source("/t")
                .ty("t")
                .extension(TRACEPARENT_EXTENSION, traceparent)
                .build()
                .unwrap()
        };
        assert_eq!(sampled_flag(&with(SAMPLE)), Some(true));
        assert_eq!(
            sampled_flag(&with(&SAMPLE.replace("-01", "-00"))),
            Some(false)
        );
        assert_eq!(sampled_flag(&with("garbage")), None);
        assert_eq!(
            sampled_flag(&with(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz"
            )),
            None
        );
    }

    #[test]
    fn without_a_tracing_layer_stamping_leaves_the_event_alone() {
        let mut event = EventBuilderV10::new()
            .id("1")
            .source("/t")
            .ty("t")
            .extension(TRACEPARENT_EXTENSION, SAMPLE)
            .build()
            .unwrap();
        let span = event_span!("knactor.test", id = "1");
        assert!(span.is_disabled());
        follow(&span, &event);
        stamp(&span, &mut event);
        assert_eq!(
            event.extension(TRACEPARENT_EXTENSION).unwrap().to_string(),
            SAMPLE
        );
    }

    #[test]
    fn a_batch_splits_by_parent_context_in_order_of_appearance() {
        let with = |id: &str, traceparent: Option<&str>| {
            let mut builder = EventBuilderV10::new().id(id).source("/t").ty("t");
            if let Some(traceparent) = traceparent {
                builder = builder.extension(TRACEPARENT_EXTENSION, traceparent);
            }
            builder.build().unwrap()
        };
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let events = [
            with("a", Some(SAMPLE)),
            with("b", None),
            with("c", Some(other)),
            with("d", Some(SAMPLE)),
            with("e", None),
        ];
        let groups = group_by_parent(&events, TraceParent::of_event);
        let members: Vec<Vec<usize>> = groups.iter().map(|g| g.members.clone()).collect();
        assert_eq!(members, vec![vec![0, 3], vec![1, 4], vec![2]]);
        assert_eq!(groups[0].parent, TraceParent::parse(SAMPLE, None));
        assert_eq!(groups[1].parent, None);
        assert_eq!(groups[2].parent, TraceParent::parse(other, None));
    }
}
