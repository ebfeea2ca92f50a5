//! The event-display sink: prints every CloudEvent it receives in the layout of Knative's
//! `event-display` (the CloudEvents Go SDK's `Event.String()`), and answers 202.
//!
//! ```text
//! ☁️  cloudevents.Event
//! Validation: valid
//! Context Attributes,
//!   specversion: 1.0
//!   type: dev.knative.apiserver.resource.add
//!   ...
//! Extensions,
//!   kind: Event
//! Data,
//!   {
//!     "apiVersion": "v1",
//!     ...
//!   }
//! ```

use std::fmt::Write as _;
use std::io::Write as _;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Timelike;
use cloudevents::event::{Data, SpecVersion};
use cloudevents::{AttributesReader, Event};

use crate::binding::{decode_message, media_type};

/// The event as Knative's event-display prints it.
pub fn render(event: &Event) -> String {
    let mut out = String::from("☁️  cloudevents.Event\nValidation: valid\nContext Attributes,\n");
    let version = event.specversion();
    let _ = writeln!(out, "  specversion: {}", version.as_str());
    let _ = writeln!(out, "  type: {}", event.ty());
    let _ = writeln!(out, "  source: {}", event.source());
    if let Some(subject) = event.subject() {
        let _ = writeln!(out, "  subject: {subject}");
    }
    let _ = writeln!(out, "  id: {}", event.id());
    if let Some(time) = event.time() {
        let _ = writeln!(out, "  time: {}", go_rfc3339_nano(time));
    }
    if let Some(schema) = event.dataschema() {
        let name = match version {
            SpecVersion::V03 => "schemaurl",
            SpecVersion::V10 => "dataschema",
        };
        let _ = writeln!(out, "  {name}: {schema}");
    }
    if let Some(content_type) = event.datacontenttype() {
        let _ = writeln!(out, "  datacontenttype: {content_type}");
    }
    let mut extensions: Vec<_> = event.iter_extensions().collect();
    if !extensions.is_empty() {
        extensions.sort_by(|a, b| a.0.cmp(b.0));
        out.push_str("Extensions,\n");
        for (name, value) in extensions {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    if let Some(data) = event.data() {
        let bytes: Vec<u8> = match data {
            Data::Binary(bytes) => bytes.clone(),
            Data::String(text) => text.as_bytes().to_vec(),
            Data::Json(value) => serde_json::to_vec(value).unwrap_or_default(),
        };
        out.push_str("Data,\n  ");
        let is_json = event.datacontenttype().map(media_type).as_deref()
            == Some("application/json")
            || (event.datacontenttype().is_none() && matches!(data, Data::Json(_)));
        match is_json.then(|| indent_json(&bytes)).flatten() {
            Some(pretty) => out.push_str(&pretty),
            None => out.push_str(&String::from_utf8_lossy(&bytes)),
        }
        out.push('\n');
    }
    out
}

/// Go's `json.Indent(dst, src, "  ", "  ")`: two-space indent, every line after the first prefixed
/// by two spaces; `None` when the bytes are not JSON (printed raw instead, as Go does).
fn indent_json(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let pretty = serde_json::to_string_pretty(&value).ok()?;
    Some(pretty.replace('\n', "\n  "))
}

/// Go's `time.RFC3339Nano`: fraction digits without trailing zeros.
fn go_rfc3339_nano(time: &chrono::DateTime<chrono::Utc>) -> String {
    let base = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = time.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        format!("{base}Z")
    } else {
        let fraction = format!("{nanos:09}");
        format!("{base}.{}Z", fraction.trim_end_matches('0'))
    }
}

/// The display sink's single handler: any path, POST a CloudEvent.
pub async fn receive(request: HttpRequest, body: web::Bytes) -> HttpResponse {
    if request.method() == Method::OPTIONS {
        return HttpResponse::Ok()
            .insert_header(("Allow", "POST, OPTIONS"))
            .insert_header(("WebHook-Allowed-Origin", "*"))
            .finish();
    }
    if request.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", "POST, OPTIONS"))
            .body("POST a CloudEvent\n");
    }
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect::<Vec<_>>();
    match decode_message(&headers, &body) {
        Ok(events) => {
            let mut stdout = std::io::stdout().lock();
            for event in &events {
                let _ = stdout.write_all(render(event).as_bytes());
            }
            let _ = stdout.flush();
            HttpResponse::Accepted().finish()
        }
        Err(error) => {
            eprintln!("display: refused a request: {error}");
            HttpResponse::BadRequest().body(format!("invalid CloudEvent: {error}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::decode_structured;

    /// The layout of knative-docs' event-display output (testdata/k8s_events): same blocks, same
    /// indentation, extensions sorted.
    #[test]
    fn the_layout_matches_knatives_event_display() {
        let event = decode_structured(
            br#"{"specversion":"1.0","type":"dev.knative.apiserver.resource.update","source":"https://10.96.0.1:443",
                "subject":"/apis/v1/namespaces/apiserversource-example/events/testevents.15dd3050eb1e6f50",
                "id":"e0447eb7-36b5-443b-9d37-faf4fe5c62f0","time":"2020-07-28T19:14:54.719501054Z",
                "datacontenttype":"application/json","namespace":"apiserversource-example","kind":"Event",
                "name":"busybox.1626008649e617e3","data":{"apiVersion":"v1","count":1,"involvedObject":{"kind":"Pod"}}}"#,
        )
        .unwrap();
        let expected = "☁️  cloudevents.Event
Validation: valid
Context Attributes,
  specversion: 1.0
  type: dev.knative.apiserver.resource.update
  source: https://10.96.0.1:443
  subject: /apis/v1/namespaces/apiserversource-example/events/testevents.15dd3050eb1e6f50
  id: e0447eb7-36b5-443b-9d37-faf4fe5c62f0
  time: 2020-07-28T19:14:54.719501054Z
  datacontenttype: application/json
Extensions,
  kind: Event
  name: busybox.1626008649e617e3
  namespace: apiserversource-example
Data,
  {
    \"apiVersion\": \"v1\",
    \"count\": 1,
    \"involvedObject\": {
      \"kind\": \"Pod\"
    }
  }
";
        assert_eq!(render(&event), expected);
    }

    #[test]
    fn the_header_lines_are_those_of_the_recorded_output() {
        let recorded = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/k8s_events/knative-docs.apiserversource-received-cloudevent.txt"
        ))
        .unwrap();
        for line in [
            "☁️  cloudevents.Event",
            "Validation: valid",
            "Context Attributes,",
            "Extensions,",
            "Data,",
        ] {
            assert!(
                recorded.lines().any(|l| l == line),
                "{line:?} in the recording"
            );
        }
    }

    #[test]
    fn text_data_is_printed_as_it_is() {
        let event = decode_structured(br#"{"specversion":"0.3","type":"t","source":"/s","id":"1","datacontenttype":"text/plain","data":"hello"}"#).unwrap();
        assert!(render(&event).ends_with("Data,\n  hello\n"));
    }
}
