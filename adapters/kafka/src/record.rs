//! The CloudEvents Kafka protocol binding, binary mode: pure functions between an [`Envelope`] and
//! the parts of a Kafka record (key, headers, value).
//!
//! ```text
//!   key     = the event's `partitionkey` extension (absent: no key, round-robin placement)
//!   headers = ce_specversion, ce_id, ce_source, ce_type, ce_subject, ce_time, ce_dataschema,
//!             ce_<extension> for every extension (the mesh's own too: the TTL and arrival time
//!             must survive the channel), content-type = datacontenttype
//!   value   = the data, byte for byte
//! ```
//!
//! `to_record` reads a consumed message into a channel record with [`decode`].
//!
//! Reading also accepts structured mode (`content-type: application/cloudevents+json`, the whole
//! event in the value), which other producers of an external topic may write.
//!
//! Why not `cloudevents-sdk`'s own Kafka binding (its `rdkafka` feature, which builds against our
//! rdkafka 0.38): it writes `dataschema` from the parsed URL (a producer's `dataschema` text would
//! come back normalized; ours keeps it as sent, [`dataschema_as_sent`]), it would put the mesh's
//! attribute stash on the wire as `ce_` headers, and it works on rdkafka's message types where the
//! channel needs plain parts it can size against a topic's limit before producing.

use std::sync::Arc;

use cloudevents::event::{Data, ExtensionValue, SpecVersion};
use cloudevents::{
    AttributesReader, AttributesWriter, Event, EventBuilder, EventBuilderV03, EventBuilderV10,
};
use knactor_actors::channel::Record;
use knactor_actors::envelope::{
    dataschema_as_sent, is_attribute_stash, set_dataschema_as_sent, Envelope,
    PARTITION_KEY_EXTENSION,
};

use rdkafka::message::{Headers, Message};
use tracing::warn;

const PREFIX: &str = "ce_";
const CONTENT_TYPE: &str = "content-type";
const STRUCTURED: &str = "application/cloudevents+json";

/// The parts of a Kafka record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordParts {
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Option<Vec<u8>>,
}

impl RecordParts {
    /// Bytes the record takes (key, header names and values, value): what a topic's size limit
    /// is checked against, roughly.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
            + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// Why a record is not a CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record has no ce_specversion header and is not a structured CloudEvent")]
    NotAnEvent,
    #[error("header {0} is not UTF-8")]
    NotText(String),
    #[error("unsupported specversion {0:?}")]
    UnsupportedSpecVersion(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("attribute {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("structured event: {0}")]
    Structured(String),
}

/// Binary mode.
pub fn encode(envelope: &Envelope) -> RecordParts {
    let event = envelope.event();
    let mut headers: Vec<(String, Vec<u8>)> =
        Vec::with_capacity(8 + event.iter_extensions().count());
    let mut header = |name: &str, value: &str| {
        headers.push((format!("{PREFIX}{name}"), value.as_bytes().to_vec()))
    };
    let version = event.specversion();
    header("specversion", version.as_str());
    header("id", event.id());
    header("source", event.source().as_str());
    header("type", event.ty());
    if let Some(subject) = event.subject() {
        header("subject", subject);
    }
    if let Some(time) = event.time() {
        header(
            "time",
            &time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        );
    }
    if let Some(schema) = dataschema_as_sent(event) {
        let name = match version {
            SpecVersion::V03 => "schemaurl",
            SpecVersion::V10 => "dataschema",
        };
        header(name, schema);
    }
    for (name, value) in event.iter_extensions() {
        if is_attribute_stash(name) {
            continue;
        }
        header(name, &value.to_string());
    }
    if let Some(content_type) = event.datacontenttype() {
        headers.push((CONTENT_TYPE.into(), content_type.as_bytes().to_vec()));
    }
    let value = event.data().map(|data| match data {
        Data::Binary(bytes) => bytes.clone(),
        Data::String(text) => text.as_bytes().to_vec(),
        Data::Json(json) => serde_json::to_vec(json).unwrap_or_default(),
    });
    RecordParts {
        key: envelope.partition_key().map(String::into_bytes),
        headers,
        value,
    }
}

/// Reads a record back (binary mode, or structured mode). The key is not needed: the
/// `partitionkey` extension travels as a header too.
pub fn decode(headers: &[(&str, &[u8])], value: Option<&[u8]>) -> Result<Envelope, RecordError> {
    let text = |name: &str, bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| RecordError::NotText(name.to_string()))
    };
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(CONTENT_TYPE))
        .map(|(name, value)| text(name, value))
        .transpose()?;
    let is_structured = content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case(STRUCTURED)
    });
    if is_structured {
        let event: Event = serde_json::from_slice(value.unwrap_or_default())
            .map_err(|error| RecordError::Structured(error.to_string()))?;
        return Ok(Envelope::from_stored(event));
    }

    let mut attributes: Vec<(String, String)> = Vec::new();
    for (name, bytes) in headers {
        if let Some(attribute) = name.strip_prefix(PREFIX) {
            attributes.push((attribute.to_ascii_lowercase(), text(name, bytes)?));
        }
    }
    let get = |wanted: &str| {
        attributes
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, v)| v.clone())
    };
    let version = get("specversion").ok_or(RecordError::NotAnEvent)?;
    let required = |name: &'static str| {
        get(name)
            .filter(|v| !v.is_empty())
            .ok_or(RecordError::Missing(name))
    };
    let (id, source, ty) = (required("id")?, required("source")?, required("type")?);
    let built = match version.as_str() {
        "1.0" => EventBuilderV10::new().id(id).source(source).ty(ty).build(),
        "0.3" => EventBuilderV03::new().id(id).source(source).ty(ty).build(),
        other => return Err(RecordError::UnsupportedSpecVersion(other.to_string())),
    };
    let mut event = built.map_err(|error| RecordError::Invalid {
        name: "source".into(),
        reason: error.to_string(),
    })?;
    for (name, value) in &attributes {
        match name.as_str() {
            "specversion" | "id" | "source" | "type" => {}
            "subject" => {
                event.set_subject(Some(value.clone()));
            }
            "time" => {
                let time = chrono::DateTime::parse_from_rfc3339(value).map_err(|error| {
                    RecordError::Invalid {
                        name: "time".into(),
                        reason: error.to_string(),
                    }
                })?;
                event.set_time(Some(time.with_timezone(&chrono::Utc)));
            }
            "dataschema" | "schemaurl" => {
                let url = value
                    .parse::<url::Url>()
                    .map_err(|error| RecordError::Invalid {
                        name: name.clone(),
                        reason: error.to_string(),
                    })?;
                set_dataschema_as_sent(&mut event, value, url);
            }
            "datacontenttype" => {
                if content_type.is_none() {
                    event.set_datacontenttype(Some(value.clone()));
                }
            }
            extension => {
                event.set_extension(extension, ExtensionValue::String(value.clone()));
            }
        }
    }
    if let Some(content_type) = content_type {
        event.set_datacontenttype(Some(content_type));
    }
    if let Some(bytes) = value.filter(|bytes| !bytes.is_empty()) {
        event.set_data_unchecked(Data::Binary(bytes.to_vec()));
    }
    Ok(Envelope::from_stored(event))
}

/// The record key of an envelope, as bytes (the `partitionkey` extension).
pub fn key_of(envelope: &Envelope) -> Option<Vec<u8>> {
    envelope
        .event()
        .extension(PARTITION_KEY_EXTENSION)
        .map(|key| key.to_string().into_bytes())
}

/// A consumed message as a channel record, or `None` when it is not a CloudEvent.
pub(crate) fn to_record<M: Message>(message: &M) -> Option<Record> {
    let headers: Vec<(&str, &[u8])> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|header| header.value.map(|value| (header.key, value)))
                .collect()
        })
        .unwrap_or_default();
    match decode(&headers, message.payload()) {
        Ok(envelope) => Some(Record {
            partition: message.partition(),
            offset: message.offset(),
            envelope: Arc::new(envelope),
        }),
        Err(error) => {
            warn!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "record is not a CloudEvent: {error}"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use knactor_actors::envelope::{ARRIVAL_TIME_EXTENSION, DEFAULT_MAX_TTL, TTL_EXTENSION};

    fn round_trip(envelope: &Envelope) -> Envelope {
        let parts = encode(envelope);
        let headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        decode(&headers, parts.value.as_deref()).unwrap()
    }

    fn admitted(event: Event) -> Envelope {
        Envelope::admit(event, DEFAULT_MAX_TTL, Utc::now()).unwrap()
    }

    #[test]
    fn an_event_survives_a_record_with_the_mesh_extensions() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/orders")
            .ty("order.created")
            .subject("o-1")
            .time("2026-11-24T10:00:00.5Z")
            .extension(PARTITION_KEY_EXTENSION, "customer-7")
            .extension("region", "eu")
            .data("application/json", serde_json::json!({"b": 1, "a": 2}))
            .build()
            .unwrap();
        let envelope = admitted(event);
        let parts = encode(&envelope);
        assert_eq!(parts.key.as_deref(), Some(&b"customer-7"[..]));
        assert!(parts
            .headers
            .iter()
            .any(|(n, v)| n == "ce_type" && v == b"order.created"));
        assert!(parts
            .headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == b"application/json"));
        assert_eq!(parts.value.as_deref(), Some(&br#"{"b":1,"a":2}"#[..]));

        let back = round_trip(&envelope);
        let event = back.event();
        assert_eq!(event.id(), "1");
        assert_eq!(event.subject(), Some("o-1"));
        assert_eq!(event.time(), envelope.event().time());
        assert_eq!(
            back.ttl(),
            Some(DEFAULT_MAX_TTL),
            "the TTL survives as text"
        );
        assert_eq!(back.arrival_time(), envelope.arrival_time());
        assert!(event.extension(ARRIVAL_TIME_EXTENSION).is_some());
        assert_eq!(event.extension("region").unwrap().to_string(), "eu");
        assert_eq!(back.partition_key().as_deref(), Some("customer-7"));
        assert_eq!(
            event.data(),
            Some(&Data::Binary(br#"{"b":1,"a":2}"#.to_vec()))
        );
        assert!(event.extension(TTL_EXTENSION).is_some());
    }

    #[test]
    fn version_0_3_and_its_schemaurl_survive() {
        let event = EventBuilderV03::new()
            .id("1")
            .source("/s")
            .ty("t")
            .data_with_schema("text/plain", "http://schemas/x", "hello")
            .build()
            .unwrap();
        let back = round_trip(&admitted(event));
        assert_eq!(back.event().specversion(), SpecVersion::V03);
        assert_eq!(
            back.event().dataschema().unwrap().as_str(),
            "http://schemas/x"
        );
        assert_eq!(back.event().data(), Some(&Data::Binary(b"hello".to_vec())));
    }

    #[test]
    fn structured_records_are_read_too() {
        let headers: [(&str, &[u8]); 1] = [("content-type", b"application/cloudevents+json")];
        let value = br#"{"specversion":"1.0","id":"s","source":"/s","type":"t","data":{"x":1}}"#;
        let envelope = decode(&headers, Some(value)).unwrap();
        assert_eq!(envelope.id(), "s");
    }

    #[test]
    fn records_that_are_not_events_are_refused_with_a_reason() {
        assert_eq!(decode(&[], Some(b"plain")), Err(RecordError::NotAnEvent));
        let headers: [(&str, &[u8]); 3] = [
            ("ce_specversion", b"1.0"),
            ("ce_source", b"/s"),
            ("ce_type", b"t"),
        ];
        assert_eq!(decode(&headers, None), Err(RecordError::Missing("id")));
        let headers: [(&str, &[u8]); 1] = [("ce_specversion", b"\xff")];
        assert!(matches!(
            decode(&headers, None),
            Err(RecordError::NotText(_))
        ));
    }
}
