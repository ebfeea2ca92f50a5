//! `Envelope`: a CloudEvent as the mesh carries it.
//!
//! Everything the mesh needs to remember about an event (its hop budget, when it arrived, its trace
//! context, where a re-drive must go) travels inside the event as extensions, so a record in a channel
//! is self-describing and survives Kafka and a restart. The extensions that are the mesh's own
//! business are stripped before a subscriber sees the event ([`Envelope::for_subscriber`]).

use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, AttributesWriter, Event};

/// Hops left before the broker refuses the event (Knative's loop guard). Hidden from subscribers.
pub const TTL_EXTENSION: &str = "knativebrokerttl";
/// RFC 3339 time at which the broker accepted the event.
pub const ARRIVAL_TIME_EXTENSION: &str = "knativearrivaltime";
/// Dead-letter extensions, as Knative names them.
pub const ERROR_DEST_EXTENSION: &str = "knativeerrordest";
pub const ERROR_CODE_EXTENSION: &str = "knativeerrorcode";
pub const ERROR_DATA_EXTENSION: &str = "knativeerrordata";
/// Kafka record key, and the memory channel's partition key.
pub const PARTITION_KEY_EXTENSION: &str = "partitionkey";
/// W3C trace context carried in the event (CloudEvents distributed-tracing extension).
pub const TRACEPARENT_EXTENSION: &str = "traceparent";
pub const TRACESTATE_EXTENSION: &str = "tracestate";
/// knactor's own: a re-driven event is for this one trigger only (`<namespace>/<name>`).
pub const REDRIVE_TARGET_EXTENSION: &str = "knactorredriveto";
/// knactor's own, on parked events: the trigger whose delivery gave up, and why.
pub const PARKED_TRIGGER_EXTENSION: &str = "knactorparkedfor";
pub const PARKED_REASON_EXTENSION: &str = "knactorparkreason";
pub const PARKED_AT_EXTENSION: &str = "knactorparkedat";
/// knactor's own, in memory only: the `dataschema` exactly as its producer wrote it, when the
/// URL type would write it otherwise (`http://Example.COM/Schema` comes back as
/// `http://example.com/Schema`). The bindings write it as the `dataschema` and never as an
/// extension, so on the wire an event's attributes are byte for byte what the producer sent;
/// filters and CESQL read it as the `dataschema`.
pub use knactor_cesql::DATASCHEMA_AS_SENT_EXTENSION;

/// The hop budget a new event starts with (Knative's `MAX_TTL`).
pub const DEFAULT_MAX_TTL: i32 = 255;

/// A failure report keeps at most this many bytes of the last response body (more than
/// `knativeerrordata` can show, for the parking reason and the logs).
pub const MAX_ERROR_DATA_BYTES: usize = 1024;
/// `knativeerrordata` is the response body base64-encoded, the encoded text cut to this many
/// characters (Knative's dispatcher cuts after encoding: 768 bytes of body).
pub const MAX_ERROR_DATA_CHARS: usize = 1024;

/// Extensions a subscriber must never see.
const MESH_ONLY_EXTENSIONS: [&str; 5] = [
    TTL_EXTENSION,
    REDRIVE_TARGET_EXTENSION,
    PARKED_TRIGGER_EXTENSION,
    PARKED_REASON_EXTENSION,
    PARKED_AT_EXTENSION,
];

/// An event's `dataschema` (`schemaurl` in 0.3) as its producer wrote it.
pub fn dataschema_as_sent(event: &Event) -> Option<&str> {
    match event.extension(DATASCHEMA_AS_SENT_EXTENSION) {
        Some(ExtensionValue::String(text)) => Some(text),
        _ => event.dataschema().map(url::Url::as_str),
    }
}

/// Sets `dataschema` from the text a producer sent, parsed as `url`; keeps the text when the
/// URL would write it otherwise.
pub fn set_dataschema_as_sent(event: &mut Event, text: &str, url: url::Url) {
    let normalized = url.as_str() != text;
    event.set_dataschema(Some(url));
    if normalized {
        event.set_extension(DATASCHEMA_AS_SENT_EXTENSION, text);
    } else {
        event.remove_extension(DATASCHEMA_AS_SENT_EXTENSION);
    }
}

/// Whether an extension is the mesh's own business, never shown to a subscriber.
pub fn is_mesh_only(name: &str) -> bool {
    MESH_ONLY_EXTENSIONS.contains(&name)
}

/// Whether an extension is one a binding writes as an attribute instead (never on the wire).
pub fn is_attribute_stash(name: &str) -> bool {
    name == DATASCHEMA_AS_SENT_EXTENSION
}

/// The length of an attribute's text, without formatting it when it is already text.
fn attribute_len(value: &cloudevents::event::AttributeValue<'_>) -> usize {
    use cloudevents::event::AttributeValue;
    match value {
        AttributeValue::String(text) => text.len(),
        AttributeValue::URI(uri) => uri.as_str().len(),
        AttributeValue::URIRef(uri) => uri.len(),
        AttributeValue::Boolean(_) | AttributeValue::Integer(_) => 8,
        AttributeValue::Time(_) => 32,
        other => other.to_string().len(),
    }
}

/// About how many bytes a parsed JSON value takes: its strings, plus a word per scalar and per
/// container entry.
fn json_footprint(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(text) => 24 + text.len(),
        Value::Array(items) => 24 + items.iter().map(json_footprint).sum::<usize>(),
        Value::Object(entries) => {
            48 + entries
                .iter()
                .map(|(key, value)| 24 + key.len() + json_footprint(value))
                .sum::<usize>()
        }
    }
}

/// Why the broker refused to take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("event {id} has exhausted its hop budget ({TTL_EXTENSION} reached 0): it is probably looping through a reply")]
    TtlExhausted { id: String, event_source: String },
}

/// A CloudEvent inside the mesh. It does not change once made, so what is read of it on every
/// event's way (its footprint, counted at the append and again when the channel lets it go, and
/// whether it has the extensions the broker and the dispatcher look for) is worked out once, in
/// one pass over its attributes: the usual event, which has none of those extensions, costs no
/// look-up in its extension map for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    event: Event,
    footprint: usize,
    has_partition_key: bool,
    has_redrive_target: bool,
    has_traceparent: bool,
}

impl Envelope {
    /// Admits an event into a broker: stamps the arrival time and spends one hop of its TTL.
    ///
    /// An event without a TTL (or with one that is not an integer) starts with `max_ttl`; one that has
    /// a TTL is decremented, and refused once the TTL is spent, which is what stops reply loops.
    pub fn admit(mut event: Event, max_ttl: i32, now: DateTime<Utc>) -> Result<Self, AdmitError> {
        let ttl = match read_ttl(&event) {
            None => max_ttl,
            Some(ttl) => {
                let left = ttl.saturating_sub(1).max(0);
                if left <= 0 {
                    return Err(AdmitError::TtlExhausted {
                        id: event.id().to_string(),
                        event_source: event.source().to_string(),
                    });
                }
                left
            }
        };
        event.set_extension(TTL_EXTENSION, ExtensionValue::Integer(i64::from(ttl)));
        event.set_extension(
            ARRIVAL_TIME_EXTENSION,
            now.to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        Ok(Self::from_stored(event))
    }

    /// Wraps an event read back from a channel, as it was stored.
    pub fn from_stored(event: Event) -> Self {
        const OVERHEAD: usize = 256;
        let mut envelope = Self {
            footprint: OVERHEAD,
            has_partition_key: false,
            has_redrive_target: false,
            has_traceparent: false,
            event,
        };
        for (name, value) in envelope.event.iter() {
            envelope.footprint += name.len() + attribute_len(&value);
            match name {
                PARTITION_KEY_EXTENSION => envelope.has_partition_key = true,
                REDRIVE_TARGET_EXTENSION => envelope.has_redrive_target = true,
                TRACEPARENT_EXTENSION => envelope.has_traceparent = true,
                _ => {}
            }
        }
        envelope.footprint += match envelope.event.data() {
            None => 0,
            Some(cloudevents::Data::Binary(bytes)) => bytes.len(),
            Some(cloudevents::Data::String(text)) => text.len(),
            Some(cloudevents::Data::Json(value)) => json_footprint(value),
        };
        envelope
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    /// About how many bytes the event takes in memory: its attributes, extensions and data, plus
    /// a fixed overhead per event. What the memory channel's byte budget counts.
    pub fn footprint(&self) -> usize {
        self.footprint
    }

    pub fn into_event(self) -> Event {
        self.event
    }

    pub fn id(&self) -> &str {
        self.event.id()
    }

    /// The event's `source`: with its id, what makes the event unique.
    pub fn source(&self) -> &str {
        self.event.source().as_str()
    }

    /// Hops left, as stamped at admission.
    pub fn ttl(&self) -> Option<i32> {
        read_ttl(&self.event)
    }

    pub fn arrival_time(&self) -> Option<&str> {
        match self.event.extension(ARRIVAL_TIME_EXTENSION) {
            Some(ExtensionValue::String(text)) => Some(text),
            _ => None,
        }
    }

    /// Whether it carries a W3C trace context (the `traceparent` extension).
    pub fn has_traceparent(&self) -> bool {
        self.has_traceparent
    }

    /// The key that places the event in a partition (Kafka's record key).
    pub fn partition_key(&self) -> Option<String> {
        if !self.has_partition_key {
            return None;
        }
        self.event
            .extension(PARTITION_KEY_EXTENSION)
            .map(|value| value.to_string())
    }

    /// The trigger a re-driven event is meant for, if it is one.
    pub fn redrive_target(&self) -> Option<&str> {
        if !self.has_redrive_target {
            return None;
        }
        match self.event.extension(REDRIVE_TARGET_EXTENSION) {
            Some(ExtensionValue::String(target)) => Some(target),
            _ => None,
        }
    }

    /// The event as a subscriber receives it: the mesh's own extensions removed. (A delivery
    /// does not copy the event: its writer leaves out what [`is_mesh_only`] names.)
    pub fn for_subscriber(&self) -> Event {
        let mut event = self.event.clone();
        for name in MESH_ONLY_EXTENSIONS {
            event.remove_extension(name);
        }
        event
    }

    /// A reply from a subscriber, given this event's TTL so that the broker can spend one more hop.
    pub fn reply_with_ttl(&self, mut reply: Event) -> Event {
        for name in MESH_ONLY_EXTENSIONS {
            reply.remove_extension(name);
        }
        if let Some(ttl) = self.ttl() {
            reply.set_extension(TTL_EXTENSION, ExtensionValue::Integer(i64::from(ttl)));
        }
        reply
    }

    /// The event a dead-letter sink receives: the original, plus what failed and how.
    pub fn dead_letter(&self, failure: &FailureReport) -> Event {
        let mut event = self.for_subscriber();
        failure.stamp(&mut event);
        event
    }
}

/// What went wrong with the last attempt of a delivery, in the shape Knative's dead-letter
/// extensions report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    /// The URL that failed: the subscriber, or the reply target.
    pub destination: String,
    /// The HTTP status; 500 when there was no response at all (as Knative reports transport errors).
    pub code: u16,
    /// The response body (or the transport error's text), cut to [`MAX_ERROR_DATA_BYTES`].
    pub data: Vec<u8>,
}

impl FailureReport {
    pub fn new(destination: impl Into<String>, code: u16, data: &[u8]) -> Self {
        let data = data[..data.len().min(MAX_ERROR_DATA_BYTES)].to_vec();
        Self {
            destination: destination.into(),
            code,
            data,
        }
    }

    fn stamp(&self, event: &mut Event) {
        use base64::Engine as _;
        event.set_extension(ERROR_DEST_EXTENSION, self.destination.as_str());
        event.set_extension(
            ERROR_CODE_EXTENSION,
            ExtensionValue::Integer(i64::from(self.code)),
        );
        if !self.data.is_empty() {
            // As Knative's dispatcher does: the body is encoded, and the encoded text cut.
            let mut encoded = base64::engine::general_purpose::STANDARD.encode(&self.data);
            encoded.truncate(MAX_ERROR_DATA_CHARS);
            event.set_extension(ERROR_DATA_EXTENSION, encoded);
        }
    }
}

fn read_ttl(event: &Event) -> Option<i32> {
    match event.extension(TTL_EXTENSION)? {
        ExtensionValue::Integer(ttl) => i32::try_from(*ttl).ok(),
        ExtensionValue::String(text) => text.trim().parse().ok(),
        ExtensionValue::Boolean(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn event() -> Event {
        EventBuilderV10::new()
            .id("1")
            .source("/test")
            .ty("test.type")
            .build()
            .unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_new_event_starts_with_the_full_ttl_and_an_arrival_time() {
        let envelope = Envelope::admit(event(), DEFAULT_MAX_TTL, now()).unwrap();
        assert_eq!(envelope.ttl(), Some(255));
        assert_eq!(envelope.arrival_time(), Some("2026-11-24T10:00:00.000000Z"));
    }

    #[test]
    fn what_an_envelope_works_out_once_agrees_with_the_event() {
        let plain = Envelope::admit(event(), DEFAULT_MAX_TTL, now()).unwrap();
        assert_eq!(plain.partition_key(), None);
        assert_eq!(plain.redrive_target(), None);
        assert!(!plain.has_traceparent());

        let mut event = event();
        event.set_extension(PARTITION_KEY_EXTENSION, "order-7");
        event.set_extension(REDRIVE_TARGET_EXTENSION, "team-a/t");
        event.set_extension(
            TRACEPARENT_EXTENSION,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        event.set_data("application/json", serde_json::json!({"n": [1, 2, 3]}));
        let marked = Envelope::admit(event, DEFAULT_MAX_TTL, now()).unwrap();
        assert_eq!(marked.partition_key().as_deref(), Some("order-7"));
        assert_eq!(marked.redrive_target(), Some("team-a/t"));
        assert!(marked.has_traceparent());
        assert!(marked.footprint() > plain.footprint());
        // Read back as stored: the same facts, the same footprint.
        let stored = Envelope::from_stored(marked.event().clone());
        assert_eq!(stored, marked);
    }

    #[test]
    fn every_pass_through_the_broker_spends_one_hop() {
        let mut event = event();
        event.set_extension(TTL_EXTENSION, "7");
        let envelope = Envelope::admit(event, DEFAULT_MAX_TTL, now()).unwrap();
        assert_eq!(envelope.ttl(), Some(6));
    }

    #[test]
    fn an_event_with_one_hop_left_is_refused() {
        let mut event = event();
        event.set_extension(TTL_EXTENSION, ExtensionValue::Integer(1));
        assert_eq!(
            Envelope::admit(event, DEFAULT_MAX_TTL, now()),
            Err(AdmitError::TtlExhausted {
                id: "1".into(),
                event_source: "/test".into()
            })
        );
    }

    #[test]
    fn a_ttl_that_is_not_a_number_is_reset() {
        let mut event = event();
        event.set_extension(TTL_EXTENSION, "lots");
        let envelope = Envelope::admit(event, 10, now()).unwrap();
        assert_eq!(envelope.ttl(), Some(10));
    }

    #[test]
    fn subscribers_never_see_the_ttl() {
        let envelope = Envelope::admit(event(), DEFAULT_MAX_TTL, now()).unwrap();
        let delivered = envelope.for_subscriber();
        assert!(delivered.extension(TTL_EXTENSION).is_none());
        assert!(delivered.extension(ARRIVAL_TIME_EXTENSION).is_some());
    }

    #[test]
    fn a_reply_carries_the_ttl_of_the_event_it_answers() {
        let mut original = event();
        original.set_extension(TTL_EXTENSION, ExtensionValue::Integer(10));
        let envelope = Envelope::admit(original, DEFAULT_MAX_TTL, now()).unwrap();
        let reply = envelope.reply_with_ttl(event());
        assert_eq!(read_ttl(&reply), Some(9));
    }

    #[test]
    fn dead_letters_carry_the_failure_with_the_encoded_body_cut_to_1024_characters() {
        let envelope = Envelope::admit(event(), DEFAULT_MAX_TTL, now()).unwrap();
        let report = FailureReport::new("http://sub/", 503, &[b'x'; 2000]);
        let dead = envelope.dead_letter(&report);
        assert_eq!(
            dead.extension(ERROR_DEST_EXTENSION).unwrap().to_string(),
            "http://sub/"
        );
        assert_eq!(
            dead.extension(ERROR_CODE_EXTENSION).unwrap().to_string(),
            "503"
        );
        use base64::Engine as _;
        let text = dead.extension(ERROR_DATA_EXTENSION).unwrap().to_string();
        assert_eq!(text.len(), 1024, "the encoded text, cut");
        let data = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        assert_eq!(data, [b'x'; 768], "768 bytes of the body");
        assert!(dead.extension(TTL_EXTENSION).is_none());
    }
}
