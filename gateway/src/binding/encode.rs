//! Writing CloudEvents into HTTP messages: binary mode (the default for deliveries) and structured
//! mode (`delivery.format: json`).
//!
//! The data goes out as it came in: binary-mode bytes stay the same bytes; in structured mode JSON
//! data is embedded as JSON (not base64), text as a string, anything else as `data_base64`.

use base64::Engine as _;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use cloudevents::event::{Data, ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, Event};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use knactor_actors::envelope::{
    dataschema_as_sent, is_attribute_stash, ARRIVAL_TIME_EXTENSION, ERROR_CODE_EXTENSION,
    ERROR_DATA_EXTENSION, ERROR_DEST_EXTENSION, PARTITION_KEY_EXTENSION, TRACEPARENT_EXTENSION,
    TRACESTATE_EXTENSION,
};

use super::decode::{media_type, STRUCTURED_CONTENT_TYPE};
use super::headers::percent_encode;

// The names binary mode writes, made at compile time: `HeaderName::from_static` at run time looks
// the name up among HTTP's standard ones and checks its bytes, for each header of each delivery.
const CE_SPECVERSION: HeaderName = HeaderName::from_static("ce-specversion");
const CE_ID: HeaderName = HeaderName::from_static("ce-id");
const CE_SOURCE: HeaderName = HeaderName::from_static("ce-source");
const CE_TYPE: HeaderName = HeaderName::from_static("ce-type");
const CE_SUBJECT: HeaderName = HeaderName::from_static("ce-subject");
const CE_TIME: HeaderName = HeaderName::from_static("ce-time");
const CE_SCHEMAURL: HeaderName = HeaderName::from_static("ce-schemaurl");
const CE_DATASCHEMA: HeaderName = HeaderName::from_static("ce-dataschema");
const CE_KNATIVEARRIVALTIME: HeaderName = HeaderName::from_static("ce-knativearrivaltime");
const CE_TRACEPARENT: HeaderName = HeaderName::from_static("ce-traceparent");
const CE_TRACESTATE: HeaderName = HeaderName::from_static("ce-tracestate");
const CE_PARTITIONKEY: HeaderName = HeaderName::from_static("ce-partitionkey");
const CE_KNATIVEERRORDEST: HeaderName = HeaderName::from_static("ce-knativeerrordest");
const CE_KNATIVEERRORCODE: HeaderName = HeaderName::from_static("ce-knativeerrorcode");
const CE_KNATIVEERRORDATA: HeaderName = HeaderName::from_static("ce-knativeerrordata");

/// RFC 3339 with as many fraction digits as needed (Go's `RFC3339Nano`, what Knative writes).
pub fn format_time(time: &chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Binary mode: `(header name, value)` pairs and the body.
pub fn to_binary(event: &Event) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = Vec::with_capacity(8 + event.iter_extensions().count());
    each_binary_header(
        event,
        |_| true,
        |name, value| {
            let name = match name {
                BinaryName::Fixed(name) => name.as_str().to_string(),
                BinaryName::Extension(name) => format!("ce-{name}"),
            };
            headers.push((name, value));
        },
    );
    (headers, binary_body(event))
}

/// Binary mode written straight into a request's headers (the client's path: no pair of strings
/// per header, and the spec's own header names are static); an extension goes only when
/// `sends_extension` says so. The body, or the first header whose value HTTP cannot carry.
pub fn write_binary(
    event: &Event,
    sends_extension: impl Fn(&str) -> bool,
    headers: &mut HeaderMap,
) -> Result<Vec<u8>, InvalidBinaryHeader> {
    let mut scratch = String::new();
    let mut invalid = None;
    each_binary_header(event, sends_extension, |name, value| {
        if invalid.is_some() {
            return;
        }
        let name = match name {
            BinaryName::Fixed(name) => name,
            BinaryName::Extension(name) => match known_extension_header(name) {
                Some(known) => known,
                None => {
                    scratch.clear();
                    scratch.push_str("ce-");
                    scratch.push_str(name);
                    match HeaderName::from_bytes(scratch.as_bytes()) {
                        Ok(name) => name,
                        Err(_) => {
                            invalid = Some(InvalidBinaryHeader(scratch.clone()));
                            return;
                        }
                    }
                }
            },
        };
        match HeaderValue::from_maybe_shared(Bytes::from(value)) {
            Ok(value) => {
                headers.append(name, value);
            }
            Err(_) => invalid = Some(InvalidBinaryHeader(name.as_str().to_string())),
        }
    });
    match invalid {
        Some(invalid) => Err(invalid),
        None => Ok(binary_body(event)),
    }
}

/// The extensions [`known_extension_header`] names without parsing.
#[cfg(test)]
const KNOWN_EXTENSIONS: [&str; 7] = [
    ARRIVAL_TIME_EXTENSION,
    TRACEPARENT_EXTENSION,
    TRACESTATE_EXTENSION,
    PARTITION_KEY_EXTENSION,
    ERROR_DEST_EXTENSION,
    ERROR_CODE_EXTENSION,
    ERROR_DATA_EXTENSION,
];

/// The header of an extension most deliveries carry (Knative's arrival time, a trace context, a
/// partition key), made without parsing or allocating a name for each event.
fn known_extension_header(extension: &str) -> Option<HeaderName> {
    Some(match extension {
        ARRIVAL_TIME_EXTENSION => CE_KNATIVEARRIVALTIME,
        TRACEPARENT_EXTENSION => CE_TRACEPARENT,
        TRACESTATE_EXTENSION => CE_TRACESTATE,
        PARTITION_KEY_EXTENSION => CE_PARTITIONKEY,
        ERROR_DEST_EXTENSION => CE_KNATIVEERRORDEST,
        ERROR_CODE_EXTENSION => CE_KNATIVEERRORCODE,
        ERROR_DATA_EXTENSION => CE_KNATIVEERRORDATA,
        _ => return None,
    })
}

/// A header binary mode would write that HTTP cannot carry (its name).
#[derive(Debug, thiserror::Error)]
#[error("the event's {0} header is not valid HTTP")]
pub struct InvalidBinaryHeader(pub String);

/// The name of a header binary mode writes: the spec's own, or `ce-` and an extension's name.
enum BinaryName<'a> {
    Fixed(HeaderName),
    Extension(&'a str),
}

/// Each header binary mode writes for `event`, in order, with its value.
fn each_binary_header(
    event: &Event,
    sends_extension: impl Fn(&str) -> bool,
    mut put: impl FnMut(BinaryName<'_>, String),
) {
    let version = event.specversion();
    put(
        BinaryName::Fixed(CE_SPECVERSION),
        version.as_str().to_string(),
    );
    put(BinaryName::Fixed(CE_ID), percent_encode(event.id()));
    put(
        BinaryName::Fixed(CE_SOURCE),
        percent_encode(event.source().as_str()),
    );
    put(BinaryName::Fixed(CE_TYPE), percent_encode(event.ty()));
    if let Some(subject) = event.subject() {
        put(BinaryName::Fixed(CE_SUBJECT), percent_encode(subject));
    }
    if let Some(time) = event.time() {
        put(BinaryName::Fixed(CE_TIME), format_time(time));
    }
    if let Some(schema) = dataschema_as_sent(event) {
        let name = match version {
            SpecVersion::V03 => CE_SCHEMAURL,
            SpecVersion::V10 => CE_DATASCHEMA,
        };
        put(BinaryName::Fixed(name), percent_encode(schema));
    }
    for (name, value) in event.iter_extensions() {
        if is_attribute_stash(name) || !sends_extension(name) {
            continue;
        }
        let value = match value {
            ExtensionValue::String(text) => percent_encode(text),
            other => other.to_string(),
        };
        put(BinaryName::Extension(name), value);
    }
    if let Some(content_type) = event.datacontenttype() {
        put(BinaryName::Fixed(CONTENT_TYPE), content_type.to_string());
    }
}

fn binary_body(event: &Event) -> Vec<u8> {
    match event.data() {
        None => Vec::new(),
        Some(Data::Binary(bytes)) => bytes.clone(),
        Some(Data::String(text)) => text.as_bytes().to_vec(),
        Some(Data::Json(value)) => serde_json::to_vec(value).unwrap_or_default(),
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    match content_type.map(media_type) {
        // The JSON format: no datacontenttype means application/json.
        None => true,
        Some(media) => {
            media == "application/json" || media == "text/json" || media.ends_with("+json")
        }
    }
}

/// Structured mode: the JSON object and its content type.
pub fn to_structured(event: &Event) -> (Vec<u8>, &'static str) {
    write_structured(event, |_| true)
}

/// Structured mode, with only the extensions `sends_extension` names.
pub fn write_structured(
    event: &Event,
    sends_extension: impl Fn(&str) -> bool,
) -> (Vec<u8>, &'static str) {
    let mut object = Map::new();
    let version = event.specversion();
    object.insert("specversion".into(), Value::String(version.as_str().into()));
    object.insert("id".into(), Value::String(event.id().into()));
    object.insert(
        "source".into(),
        Value::String(event.source().as_str().into()),
    );
    object.insert("type".into(), Value::String(event.ty().into()));
    if let Some(subject) = event.subject() {
        object.insert("subject".into(), Value::String(subject.into()));
    }
    if let Some(time) = event.time() {
        object.insert("time".into(), Value::String(format_time(time)));
    }
    if let Some(schema) = dataschema_as_sent(event) {
        let name = match version {
            SpecVersion::V03 => "schemaurl",
            SpecVersion::V10 => "dataschema",
        };
        object.insert(name.into(), Value::String(schema.into()));
    }
    if let Some(content_type) = event.datacontenttype() {
        object.insert("datacontenttype".into(), Value::String(content_type.into()));
    }
    for (name, value) in event.iter_extensions() {
        if is_attribute_stash(name) || !sends_extension(name) {
            continue;
        }
        let value = match value {
            ExtensionValue::String(text) => Value::String(text.clone()),
            ExtensionValue::Boolean(flag) => Value::Bool(*flag),
            ExtensionValue::Integer(number) => Value::from(*number),
        };
        object.insert(name.to_string(), value);
    }
    let json_data = is_json(event.datacontenttype());
    let mut raw_data: Option<Box<RawValue>> = None;
    match event.data() {
        None => {}
        Some(Data::Json(value)) => {
            object.insert("data".into(), value.clone());
        }
        Some(Data::String(text)) => {
            let embedded = json_data
                .then(|| serde_json::from_str::<Value>(text).ok())
                .flatten();
            object.insert(
                "data".into(),
                embedded.unwrap_or_else(|| Value::String(text.clone())),
            );
        }
        Some(Data::Binary(bytes)) => {
            // JSON bytes are embedded verbatim (key order and number formatting kept).
            let raw = json_data
                .then(|| std::str::from_utf8(bytes).ok())
                .flatten()
                .and_then(|text| RawValue::from_string(text.trim().to_string()).ok());
            match raw {
                Some(raw) => raw_data = Some(raw),
                None if is_text(event.datacontenttype()) && std::str::from_utf8(bytes).is_ok() => {
                    let text = String::from_utf8_lossy(bytes).into_owned();
                    object.insert("data".into(), Value::String(text));
                }
                None => {
                    let encoded =
                        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
                    match version {
                        // CloudEvents 0.3's JSON format has no data_base64 (a 0.3 reader takes it
                        // for an extension and loses the data): base64 is said by an attribute.
                        SpecVersion::V03 => {
                            object.insert("datacontentencoding".into(), "base64".into());
                            object.insert("data".into(), encoded);
                        }
                        SpecVersion::V10 => {
                            object.insert("data_base64".into(), encoded);
                        }
                    }
                }
            }
        }
    }
    let body = serde_json::to_vec(&Structured {
        attributes: object,
        data: raw_data.as_deref(),
    })
    .unwrap_or_default();
    (body, STRUCTURED_CONTENT_TYPE)
}

/// The JSON object, with JSON data spliced in as raw text when it came as bytes.
#[derive(serde::Serialize)]
struct Structured<'a> {
    #[serde(flatten)]
    attributes: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
}

fn is_text(content_type: Option<&str>) -> bool {
    content_type.map(media_type).is_some_and(|media| {
        media.starts_with("text/") || media == "application/xml" || media.ends_with("+xml")
    })
}

#[cfg(test)]
mod tests {
    use super::super::decode::{decode_message, decode_structured};
    use super::*;

    fn binary_round_trip(event: &Event) -> Event {
        let (headers, body) = to_binary(event);
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        decode_message(&pairs, &body).unwrap().remove(0)
    }

    #[test]
    fn a_known_extension_header_is_the_one_its_name_would_parse_to() {
        for extension in KNOWN_EXTENSIONS {
            let parsed = HeaderName::from_bytes(format!("ce-{extension}").as_bytes()).unwrap();
            assert_eq!(known_extension_header(extension), Some(parsed));
        }
        assert_eq!(known_extension_header("comexampleother"), None);
    }

    /// Every example event of the JSON format spec (testdata/spec_examples/json_format) that is
    /// literally valid survives structured -> binary -> structured unchanged.
    #[test]
    fn the_json_format_examples_survive_both_modes() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/spec_examples/json_format"
        );
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // ex1's data_base64 is the placeholder "... base64 encoded string ...".
            if !name.ends_with(".json") || name.starts_with("4.3") || name.starts_with("3.2_ex1") {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            let event = decode_structured(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (structured, _) = to_structured(&event);
            let again = decode_structured(&structured).unwrap();
            assert_eq!(again, event, "{name}: structured round trip");
            let through_binary = binary_round_trip(&event);
            assert_eq!(through_binary.id(), event.id(), "{name}");
            assert_eq!(
                through_binary
                    .extension("comexampleothervalue")
                    .map(|v| v.to_string()),
                event
                    .extension("comexampleothervalue")
                    .map(|v| v.to_string()),
                "{name}"
            );
            checked += 1;
        }
        assert_eq!(checked, 5);
    }

    #[test]
    fn binary_json_data_is_embedded_verbatim_in_structured_mode() {
        let pairs = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("content-type", "application/json"),
        ];
        let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let event = decode_message(&pairs, br#"{"z":1.50,"a":2}"#)
            .unwrap()
            .remove(0);
        let (body, content_type) = to_structured(&event);
        assert_eq!(content_type, "application/cloudevents+json");
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with(r#""data":{"z":1.50,"a":2}}"#), "{text}");
    }

    #[test]
    fn opaque_bytes_go_as_base64() {
        let pairs = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("content-type", "application/octet-stream"),
        ];
        let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let event = decode_message(&pairs, &[0, 159, 146, 150])
            .unwrap()
            .remove(0);
        let (body, _) = to_structured(&event);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["data_base64"], "AJ+Slg==");
        assert_eq!(decode_structured(&body).unwrap().data(), event.data());
    }

    #[test]
    fn opaque_bytes_of_a_0_3_event_go_as_its_base64_data() {
        // Found by the structured_json fuzz target: written as data_base64, a 0.3 reader took
        // it for an extension and the data was lost.
        let event = decode_structured(
            br#"{"specversion":"0.3","id":"1","source":"/s","type":"t","datacontenttype":"application/j//#x","datacontentencoding":"base64","data":"aGku"}"#,
        )
        .unwrap();
        let (body, _) = to_structured(&event);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["datacontentencoding"], "base64");
        assert_eq!(value["data"], "aGku");
        assert!(value.get("data_base64").is_none(), "{value}");
        let read = decode_structured(&body).unwrap();
        assert_eq!(read.data(), event.data());
        assert_eq!(read.iter_extensions().count(), 0);
    }

    #[test]
    fn binary_headers_are_percent_encoded() {
        let mut event = decode_structured(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","note":"caf\u00e9 50%"}"#,
        )
        .unwrap();
        event.set_extension("flag", true);
        let (headers, _) = to_binary(&event);
        assert!(headers.contains(&("ce-note".into(), "caf%C3%A9%2050%25".into())));
        assert!(headers.contains(&("ce-flag".into(), "true".into())));
        assert_eq!(
            binary_round_trip(&event)
                .extension("note")
                .unwrap()
                .to_string(),
            "café 50%"
        );
    }

    #[test]
    fn the_client_writes_the_headers_to_binary_writes_leaving_out_what_it_is_told() {
        let mut event = decode_structured(
            br#"{"specversion":"1.0","id":"a b","source":"/s","type":"t","subject":"x",
                "time":"2026-12-07T10:00:00.5Z","datacontenttype":"text/plain","data":"hi",
                "note":"caf\u00e9","knativebrokerttl":255}"#,
        )
        .unwrap();
        event.set_extension("flag", true);
        let (pairs, body) = to_binary(&event);
        let mut headers = HeaderMap::new();
        let written = write_binary(&event, |_| true, &mut headers).unwrap();
        assert_eq!(written, body);
        let as_pairs: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect();
        let (mut expected, mut got) = (pairs.clone(), as_pairs);
        expected.sort();
        got.sort();
        assert_eq!(got, expected);

        let mut headers = HeaderMap::new();
        write_binary(&event, |name| name != "knativebrokerttl", &mut headers).unwrap();
        assert!(headers.get("ce-knativebrokerttl").is_none());
        assert_eq!(headers.get("ce-note").unwrap(), "caf%C3%A9");
        assert_eq!(headers.len(), pairs.len() - 1);
        let (structured, _) = write_structured(&event, |name| name != "note");
        let object: Value = serde_json::from_slice(&structured).unwrap();
        assert!(object.get("note").is_none());
        assert_eq!(object["knativebrokerttl"], 255);
    }
}
