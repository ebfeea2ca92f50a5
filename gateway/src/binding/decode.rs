//! Reading CloudEvents from HTTP messages (HTTP protocol binding 1.0 and 0.3): binary mode
//! (`ce-` headers, body as data), structured mode (`application/cloudevents+json`) and batched
//! mode (`application/cloudevents-batch+json`). Every refusal says why, in a sentence the producer
//! can act on.

use std::borrow::Cow;

use cloudevents::event::{Data, ExtensionValue, SpecVersion};
use cloudevents::{
    AttributesReader, AttributesWriter, Event, EventBuilder, EventBuilderV03, EventBuilderV10,
};
use knactor_actors::envelope::set_dataschema_as_sent;
use url::Url;

use super::headers::{percent_decode, PercentDecodeError};

pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// Why a message does not carry a valid CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a CloudEvent: no ce-specversion header (binary mode) and content type is not {STRUCTURED_CONTENT_TYPE} or {BATCH_CONTENT_TYPE}")]
    NotAnEvent,
    #[error("unsupported specversion {0:?}: knactor accepts 1.0 and 0.3")]
    UnsupportedSpecVersion(String),
    #[error("missing required attribute {0:?}")]
    MissingAttribute(&'static str),
    #[error("attribute {name:?}: {reason}")]
    InvalidAttribute { name: String, reason: String },
    #[error("attribute {name:?}: {source}")]
    UndecodableHeader {
        name: String,
        #[source]
        source: PercentDecodeError,
    },
    #[error("invalid extension name {0:?}: CloudEvents attribute names use only lowercase letters and digits")]
    InvalidExtensionName(String),
    #[error("header {0:?} is not valid text")]
    InvalidHeader(String),
    #[error("invalid structured event: {0}")]
    InvalidJson(String),
    #[error("attribute {name:?} is {size} bytes, over this node's limit of {limit}")]
    AttributeTooLarge {
        name: String,
        size: usize,
        limit: usize,
    },
    #[error("the event has {count} extension attributes, over this node's limit of {limit}")]
    TooManyExtensions { count: usize, limit: usize },
    #[error("event {index} of the batch: {error}")]
    InBatch {
        index: usize,
        error: Box<DecodeError>,
    },
}

/// How large a decoded event's attributes may be. CloudEvents and Knative set no limit; these
/// defaults are far above what real events carry (and what HTTP proxies pass in one header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeLimits {
    /// Bytes of any one attribute's value (id, source, type, subject, every extension...) and of
    /// an extension's name.
    pub max_attribute_bytes: usize,
    /// Extension attributes on one event.
    pub max_extensions: usize,
}

impl Default for AttributeLimits {
    fn default() -> Self {
        Self {
            max_attribute_bytes: 4096,
            max_extensions: 100,
        }
    }
}

/// Refuses an event with an attribute or an extension name over `limits`, or too many
/// extensions, naming the first one found.
pub fn check_attribute_limits(event: &Event, limits: &AttributeLimits) -> Result<(), DecodeError> {
    let count = event.iter_extensions().count();
    if count > limits.max_extensions {
        return Err(DecodeError::TooManyExtensions {
            count,
            limit: limits.max_extensions,
        });
    }
    let limit = limits.max_attribute_bytes;
    let check = |name: &str, size: usize| {
        if size > limit {
            Err(DecodeError::AttributeTooLarge {
                name: shortened(name),
                size,
                limit,
            })
        } else {
            Ok(())
        }
    };
    check("id", event.id().len())?;
    check("source", event.source().len())?;
    check("type", event.ty().len())?;
    if let Some(subject) = event.subject() {
        check("subject", subject.len())?;
    }
    if let Some(schema) = event.dataschema() {
        check("dataschema", schema.as_str().len())?;
    }
    if let Some(content_type) = event.datacontenttype() {
        check("datacontenttype", content_type.len())?;
    }
    for (name, value) in event.iter_extensions() {
        check(name, name.len())?;
        if let ExtensionValue::String(text) = value {
            check(name, text.len())?;
        }
    }
    Ok(())
}

/// A name as it goes into a refusal: at most 64 characters of it.
fn shortened(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_string(),
    }
}

/// About how many bytes the events decoded from a message take, at most: binary-mode data is a
/// copy of the body; JSON (structured and batched modes) becomes a tree of values that takes
/// far more than its text (`[1,1,1,...]` about forty times), counted here from the number of
/// values and keys in one linear pass over the text, before it is parsed.
pub fn decoded_size(headers: &[(&str, &[u8])], body: &[u8]) -> usize {
    let json = headers.iter().any(|&(name, value)| {
        name == "content-type"
            && std::str::from_utf8(value).is_ok_and(|ct| {
                let media = media_type(ct);
                media == STRUCTURED_CONTENT_TYPE || media == BATCH_CONTENT_TYPE
            })
    });
    if !json {
        return body.len();
    }
    let mut values = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b'[' | b'{' | b':' => values += 1,
                _ => {}
            }
        }
    }
    // A value (or a map key's string) and its slot in its array or map.
    let per_value = std::mem::size_of::<serde_json::Value>() + 16;
    body.len().saturating_add(values.saturating_mul(per_value))
}

/// The media type of a `Content-Type` value, lowercased, without parameters.
pub fn media_type(content_type: &str) -> Cow<'_, str> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    // Almost every client sends it in lower case already: no copy then.
    if media.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(media.to_ascii_lowercase())
    } else {
        Cow::Borrowed(media)
    }
}

/// Reads the events of an HTTP message. `headers` yields (lowercase name, raw value).
pub fn decode_message(headers: &[(&str, &[u8])], body: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let content_type = header_text(headers, "content-type")?;
    let media = content_type.as_deref().map(media_type).unwrap_or_default();
    if media == STRUCTURED_CONTENT_TYPE {
        return decode_structured(body).map(|event| vec![event]);
    }
    if media == BATCH_CONTENT_TYPE {
        return decode_batch(body);
    }
    if header_text(headers, "ce-specversion")?.is_some() {
        return decode_binary(headers, content_type, body).map(|event| vec![event]);
    }
    Err(DecodeError::NotAnEvent)
}

/// Whether a message has CloudEvent markers at all (a response body without them is "not an event").
pub fn looks_like_event(headers: &[(&str, &[u8])]) -> bool {
    headers.iter().any(|&(name, value)| {
        name == "ce-specversion"
            || (name == "content-type"
                && std::str::from_utf8(value)
                    .map(|ct| media_type(ct) == STRUCTURED_CONTENT_TYPE)
                    .unwrap_or(false))
    })
}

fn header_text(headers: &[(&str, &[u8])], wanted: &str) -> Result<Option<String>, DecodeError> {
    headers
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(name, value)| {
            std::str::from_utf8(value)
                .map(|text| text.trim().to_string())
                .map_err(|_| DecodeError::InvalidHeader(name.to_string()))
        })
        .transpose()
}

/// Binary mode: attributes from `ce-` headers (percent-decoded), `Content-Type` as
/// `datacontenttype`, the body as data, byte for byte.
fn decode_binary(
    headers: &[(&str, &[u8])],
    content_type: Option<String>,
    body: &[u8],
) -> Result<Event, DecodeError> {
    // Names as the request has them, values decoded once and moved into the event (an event's
    // way in allocates for what the event keeps, not for copies of it).
    let mut attributes: Vec<(&str, String)> = Vec::new();
    for &(name, value) in headers {
        let Some(attribute) = name.strip_prefix("ce-") else {
            continue;
        };
        let raw =
            std::str::from_utf8(value).map_err(|_| DecodeError::InvalidHeader(name.to_string()))?;
        let value = percent_decode(raw).map_err(|source| DecodeError::UndecodableHeader {
            name: attribute.to_string(),
            source,
        })?;
        attributes.push((attribute, value));
    }
    let spec_version = take_attribute(&mut attributes, "specversion").unwrap_or_default();
    let id = take_attribute(&mut attributes, "id");
    let source = take_attribute(&mut attributes, "source");
    let ty = take_attribute(&mut attributes, "type");
    let mut event = build_required(&spec_version, id, source, ty)?;
    let version = event.specversion();
    for (name, value) in attributes {
        match name {
            "specversion" | "id" | "source" | "type" => {}
            "subject" => {
                event.set_subject(Some(value));
            }
            "time" => {
                let time = chrono::DateTime::parse_from_rfc3339(&value).map_err(|error| {
                    DecodeError::InvalidAttribute {
                        name: "time".into(),
                        reason: format!("{value:?} is not an RFC 3339 time ({error})"),
                    }
                })?;
                event.set_time(Some(time.with_timezone(&chrono::Utc)));
            }
            "dataschema" if version == SpecVersion::V10 => {
                set_schema(&mut event, "dataschema", &value)?
            }
            "schemaurl" if version == SpecVersion::V03 => {
                set_schema(&mut event, "schemaurl", &value)?
            }
            "datacontenttype" => {
                // Binary mode carries it in Content-Type; a ce- header for it is tolerated.
                if content_type.is_none() {
                    event.set_datacontenttype(Some(value));
                }
            }
            extension => {
                check_extension_name(extension)?;
                event.set_extension(extension, ExtensionValue::String(value));
            }
        }
    }
    if let Some(content_type) = content_type {
        event.set_datacontenttype(Some(content_type));
    }
    if !body.is_empty() {
        event.set_data_unchecked(Data::Binary(body.to_vec()));
    }
    Ok(event)
}

/// The value of the first `ce-` header of attribute `wanted`, taken out (the later ones of the same
/// name stay, and are ignored as before).
fn take_attribute(attributes: &mut [(&str, String)], wanted: &str) -> Option<String> {
    attributes
        .iter_mut()
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| std::mem::take(value))
}

fn set_schema(event: &mut Event, name: &str, value: &str) -> Result<(), DecodeError> {
    let url = Url::parse(value).map_err(|error| DecodeError::InvalidAttribute {
        name: name.into(),
        reason: format!("{value:?} is not an absolute URI ({error})"),
    })?;
    // Kept as written: a subscriber and a filter see exactly what the producer sent.
    set_dataschema_as_sent(event, value, url);
    Ok(())
}

fn build_required(
    spec_version: &str,
    id: Option<String>,
    source: Option<String>,
    ty: Option<String>,
) -> Result<Event, DecodeError> {
    let required = |value: Option<String>, name: &'static str| {
        value
            .filter(|value| !value.is_empty())
            .ok_or(DecodeError::MissingAttribute(name))
    };
    let (id, source, ty) = (
        required(id, "id")?,
        required(source, "source")?,
        required(ty, "type")?,
    );
    let built = match spec_version {
        "1.0" => EventBuilderV10::new().id(id).source(source).ty(ty).build(),
        "0.3" => EventBuilderV03::new().id(id).source(source).ty(ty).build(),
        other => return Err(DecodeError::UnsupportedSpecVersion(other.to_string())),
    };
    built.map_err(|error| DecodeError::InvalidAttribute {
        name: "source".into(),
        reason: error.to_string(),
    })
}

/// CloudEvents attribute names: lowercase ASCII letters and digits.
pub fn check_extension_name(name: &str) -> Result<(), DecodeError> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(DecodeError::InvalidExtensionName(name.to_string()))
    }
}

/// Structured mode: the event as a JSON object.
pub fn decode_structured(body: &[u8]) -> Result<Event, DecodeError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| DecodeError::InvalidJson(error.to_string()))?;
    decode_json_value(value)
}

fn decode_json_value(mut value: serde_json::Value) -> Result<Event, DecodeError> {
    let serde_json::Value::Object(object) = &mut value else {
        return Err(DecodeError::InvalidJson("expected a JSON object".into()));
    };
    // `null` means "not set" in the JSON format.
    object.retain(|_, value| !value.is_null());
    let object = &*object;
    // Check what serde's messages would say vaguely, in the terms of the spec.
    let spec_version = match object.get("specversion") {
        Some(serde_json::Value::String(version)) => version.clone(),
        Some(_) => {
            return Err(DecodeError::InvalidAttribute {
                name: "specversion".into(),
                reason: "must be a string".into(),
            })
        }
        None => return Err(DecodeError::MissingAttribute("specversion")),
    };
    if spec_version != "1.0" && spec_version != "0.3" {
        return Err(DecodeError::UnsupportedSpecVersion(spec_version));
    }
    for required in ["id", "source", "type"] {
        match object.get(required) {
            Some(serde_json::Value::String(text)) if !text.is_empty() => {}
            Some(serde_json::Value::String(_)) | None => {
                return Err(DecodeError::MissingAttribute(match required {
                    "id" => "id",
                    "source" => "source",
                    _ => "type",
                }))
            }
            Some(_) => {
                return Err(DecodeError::InvalidAttribute {
                    name: required.into(),
                    reason: "must be a string".into(),
                })
            }
        }
    }
    for name in object.keys() {
        if !matches!(name.as_str(), "data" | "data_base64") {
            check_extension_name(name)?;
        }
    }
    check_structured_attributes(object, &spec_version)?;
    let schema_key = if spec_version == "0.3" {
        "schemaurl"
    } else {
        "dataschema"
    };
    let schema_as_sent = match object.get(schema_key) {
        Some(serde_json::Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    let mut event: Event = serde_json::from_value(value)
        .map_err(|error| DecodeError::InvalidJson(error.to_string()))?;
    if let (Some(text), Some(url)) = (schema_as_sent, event.dataschema().cloned()) {
        // Kept as written: a subscriber and a filter see exactly what the producer sent.
        set_dataschema_as_sent(&mut event, &text, url);
    }
    Ok(event)
}

/// What the JSON format's deserializer would refuse with a message that names nothing: checked
/// first, so the error says which attribute and what it expects.
fn check_structured_attributes(
    object: &serde_json::Map<String, serde_json::Value>,
    spec_version: &str,
) -> Result<(), DecodeError> {
    use base64::Engine as _;
    let text = |name: &str| match object.get(name) {
        Some(serde_json::Value::String(text)) => Ok(Some(text.as_str())),
        None => Ok(None),
        Some(_) => Err(DecodeError::InvalidAttribute {
            name: name.into(),
            reason: "must be a string".into(),
        }),
    };
    if let Some(time) = text("time")? {
        chrono::DateTime::parse_from_rfc3339(time).map_err(|error| {
            DecodeError::InvalidAttribute {
                name: "time".into(),
                reason: format!(
                    "{time:?} is not an RFC 3339 time ({error}), such as 2024-05-01T12:00:00Z"
                ),
            }
        })?;
    }
    let schema = if spec_version == "0.3" {
        "schemaurl"
    } else {
        "dataschema"
    };
    if let Some(value) = text(schema)? {
        Url::parse(value).map_err(|error| DecodeError::InvalidAttribute {
            name: schema.into(),
            reason: format!("{value:?} is not an absolute URI ({error})"),
        })?;
    }
    if let Some(data) = text("data_base64")? {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|error| DecodeError::InvalidAttribute {
                name: "data_base64".into(),
                reason: format!(
                    "not base64 ({error}): encode the data with the standard alphabet (RFC 4648), with padding"
                ),
            })?;
    }
    Ok(())
}

/// Batched mode: a JSON array of structured events (possibly empty, which the spec allows).
pub fn decode_batch(body: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|error| {
        DecodeError::InvalidJson(format!("a batch must be a JSON array of events: {error}"))
    })?;
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            decode_json_value(value).map_err(|error| DecodeError::InBatch {
                index,
                error: Box::new(error),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static [u8])> {
        pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
    }

    fn decode(
        pairs: &[(&'static str, &'static str)],
        body: &[u8],
    ) -> Result<Vec<Event>, DecodeError> {
        decode_message(&headers(pairs), body)
    }

    #[test]
    fn binary_mode_reads_headers_and_keeps_the_body_as_is() {
        let events = decode(
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "42"),
                ("ce-source", "/orders"),
                ("ce-type", "order.created"),
                ("ce-subject", "o-1"),
                ("ce-time", "2026-11-24T10:00:00+02:00"),
                ("ce-region", "eu%20west"),
                ("content-type", "application/json"),
            ],
            br#"{"b":1,"a":2}"#,
        )
        .unwrap();
        let event = &events[0];
        assert_eq!(event.id(), "42");
        assert_eq!(event.ty(), "order.created");
        assert_eq!(event.subject(), Some("o-1"));
        assert_eq!(event.datacontenttype(), Some("application/json"));
        assert_eq!(event.extension("region").unwrap().to_string(), "eu west");
        assert_eq!(
            event.data(),
            Some(&Data::Binary(br#"{"b":1,"a":2}"#.to_vec()))
        );
    }

    #[test]
    fn binary_mode_needs_id_source_and_type() {
        assert_eq!(
            decode(
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-source", "/s"),
                    ("ce-type", "t")
                ],
                b""
            ),
            Err(DecodeError::MissingAttribute("id"))
        );
    }

    #[test]
    fn unknown_spec_versions_are_refused() {
        assert_eq!(
            decode(
                &[
                    ("ce-specversion", "2.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t")
                ],
                b""
            ),
            Err(DecodeError::UnsupportedSpecVersion("2.0".into()))
        );
    }

    #[test]
    fn version_0_3_is_kept() {
        let events = decode(
            &[
                ("ce-specversion", "0.3"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-schemaurl", "http://s/x"),
            ],
            b"",
        )
        .unwrap();
        assert_eq!(events[0].specversion(), SpecVersion::V03);
        assert_eq!(events[0].dataschema().unwrap().as_str(), "http://s/x");
    }

    #[test]
    fn a_bad_time_is_refused_with_the_value() {
        let error = decode(
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-time", "yesterday"),
            ],
            b"",
        )
        .unwrap_err();
        assert!(error
            .to_string()
            .contains("\"yesterday\" is not an RFC 3339 time"));
    }

    #[test]
    fn structured_mode_reads_json() {
        let events = decode(
            &[("content-type", "application/cloudevents+json; charset=utf-8")],
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json","data":{"z":1,"a":[1,2]},"ext":"v"}"#,
        )
        .unwrap();
        assert_eq!(events[0].extension("ext").unwrap().to_string(), "v");
        assert!(matches!(events[0].data(), Some(Data::Json(_))));
    }

    #[test]
    fn structured_mode_names_the_attribute_of_a_bad_time_schema_or_base64() {
        let ct = [("content-type", "application/cloudevents+json")];
        for (body, attribute) in [
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}"#,
                "time",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","dataschema":"not a uri"}"#,
                "dataschema",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!"}"#,
                "data_base64",
            ),
        ] {
            let error = decode(&ct, body.as_bytes()).unwrap_err().to_string();
            assert!(
                error.contains(&format!("attribute \"{attribute}\""))
                    || error.contains(&format!("{attribute}:")),
                "{error}"
            );
        }
    }

    #[test]
    fn structured_mode_names_what_is_wrong() {
        let ct = [("content-type", "application/cloudevents+json")];
        assert_eq!(
            decode(&ct, br#"{"specversion":"1.0","source":"/s","type":"t"}"#),
            Err(DecodeError::MissingAttribute("id"))
        );
        assert_eq!(
            decode(
                &ct,
                br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad_Name":1}"#
            ),
            Err(DecodeError::InvalidExtensionName("Bad_Name".into()))
        );
        assert!(matches!(
            decode(&ct, b"{not json"),
            Err(DecodeError::InvalidJson(_))
        ));
        assert!(matches!(
            decode(&ct, b"[]"),
            Err(DecodeError::InvalidJson(_))
        ));
    }

    #[test]
    fn batches_carry_many_events_and_name_the_bad_one() {
        let ct = [("content-type", "application/cloudevents-batch+json")];
        let events = decode(
            &ct,
            br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"0.3","id":"2","source":"/s","type":"t"}]"#,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        let error = decode(&ct, br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","source":"/s","type":"t"}]"#)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "event 1 of the batch: missing required attribute \"id\""
        );
        assert_eq!(decode(&ct, b"[]"), Ok(vec![]), "an empty batch is valid");
    }

    #[test]
    fn attributes_and_extensions_over_the_limits_are_refused_by_name() {
        let limits = AttributeLimits {
            max_attribute_bytes: 8,
            max_extensions: 2,
        };
        let event = |pairs: &[(&'static str, &'static str)]| {
            let mut all = pairs.to_vec();
            for (name, value) in [
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ] {
                if !pairs.iter().any(|(given, _)| *given == name) {
                    all.push((name, value));
                }
            }
            decode(&all, b"").unwrap().remove(0)
        };
        assert_eq!(check_attribute_limits(&event(&[]), &limits), Ok(()));
        assert_eq!(
            check_attribute_limits(&event(&[("ce-id", "123456789")]), &limits)
                .unwrap_err()
                .to_string(),
            "attribute \"id\" is 9 bytes, over this node's limit of 8"
        );
        // The decoded value counts: "eu west-1".
        assert_eq!(
            check_attribute_limits(&event(&[("ce-region", "eu%20west-1")]), &limits),
            Err(DecodeError::AttributeTooLarge {
                name: "region".into(),
                size: 9,
                limit: 8
            })
        );
        assert_eq!(
            check_attribute_limits(&event(&[("ce-longername", "x")]), &limits),
            Err(DecodeError::AttributeTooLarge {
                name: "longername".into(),
                size: 10,
                limit: 8
            })
        );
        assert_eq!(
            check_attribute_limits(
                &event(&[("ce-a", "1"), ("ce-b", "2"), ("ce-c", "3")]),
                &limits
            ),
            Err(DecodeError::TooManyExtensions { count: 3, limit: 2 })
        );
        let long_name = "n".repeat(100);
        let refused = check_attribute_limits(
            &event(&[]),
            &AttributeLimits {
                max_attribute_bytes: 0,
                max_extensions: 0,
            },
        )
        .unwrap_err();
        assert!(matches!(refused, DecodeError::AttributeTooLarge { ref name, .. } if name == "id"));
        assert_eq!(shortened(&long_name).len(), 67);
    }

    #[test]
    fn json_is_counted_by_its_values_and_binary_data_by_its_bytes() {
        let binary = headers(&[("ce-specversion", "1.0")]);
        assert_eq!(decoded_size(&binary, &[0u8; 1000]), 1000);
        let structured = headers(&[("content-type", "application/cloudevents+json")]);
        let ones = format!("[{}1]", "1,".repeat(1000));
        let per_value = std::mem::size_of::<serde_json::Value>() + 16;
        assert_eq!(
            decoded_size(&structured, ones.as_bytes()),
            ones.len() + 1002 * per_value
        );
        assert!(decoded_size(&structured, ones.as_bytes()) > 20 * ones.len());
        // What is inside strings does not count: one object, one key, one value.
        let text = format!("{{\"data\":\"{}\"}}", "[,{:".repeat(100));
        assert_eq!(
            decoded_size(&structured, text.as_bytes()),
            text.len() + 3 * per_value
        );
    }

    #[test]
    fn a_plain_request_is_not_an_event() {
        assert_eq!(
            decode(&[("content-type", "text/plain")], b"hello"),
            Err(DecodeError::NotAnEvent)
        );
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Whatever arrives, decoding answers with events or a reason; it never panics.
        #[test]
        fn arbitrary_messages_never_panic(
            names in prop::collection::vec("(ce-[a-z]{0,12}|content-type|[a-z-]{1,10})", 0..8),
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 8),
            body in prop::collection::vec(any::<u8>(), 0..200),
            structured in any::<bool>(),
        ) {
            let mut headers: Vec<(&str, &[u8])> = names
                .iter()
                .zip(&values)
                .map(|(name, value)| (name.as_str(), value.as_slice()))
                .collect();
            if structured {
                headers.push(("content-type", b"application/cloudevents+json"));
            }
            let _ = decode_message(&headers, &body);
            let _ = decode_batch(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(text in "\\PC{0,200}") {
            let _ = decode_structured(text.as_bytes());
            let _ = decode_batch(text.as_bytes());
        }
    }
}
