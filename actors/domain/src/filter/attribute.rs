//! Reading an attribute of an event by name, as Knative's filters see it: every context attribute as
//! text, `time` in RFC 3339, `schemaurl` as an alias of `dataschema`, `datamediatype` as the media
//! type of `datacontenttype` without its parameters, and every extension.

use std::borrow::Cow;

use chrono::SecondsFormat;
use cloudevents::event::{ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, Event};

/// The value of attribute `name`, or `None` when the event does not have it. An attribute that is
/// present but empty counts as absent, as it does in Knative's filters.
pub fn lookup<'a>(event: &'a Event, name: &str) -> Option<Cow<'a, str>> {
    let value = match name {
        "type" => Cow::Borrowed(event.ty()),
        "source" => Cow::Borrowed(event.source().as_str()),
        "id" => Cow::Borrowed(event.id()),
        "specversion" => Cow::Borrowed(match event.specversion() {
            SpecVersion::V03 => "0.3",
            SpecVersion::V10 => "1.0",
        }),
        "subject" => Cow::Borrowed(event.subject()?),
        "time" => Cow::Owned(event.time()?.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        "dataschema" | "schemaurl" => Cow::Borrowed(crate::envelope::dataschema_as_sent(event)?),
        "datacontenttype" => Cow::Borrowed(event.datacontenttype()?),
        "datamediatype" => Cow::Borrowed(
            event
                .datacontenttype()?
                .split(';')
                .next()
                .unwrap_or_default()
                .trim(),
        ),
        extension => match event.extension(extension)? {
            ExtensionValue::String(text) => Cow::Borrowed(text.as_str()),
            other => Cow::Owned(other.to_string()),
        },
    };
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV03, EventBuilderV10};

    #[test]
    fn context_attributes_and_extensions_are_found_by_name() {
        let event = EventBuilderV10::new()
            .id("42")
            .source("/orders")
            .ty("order.created")
            .subject("o-1")
            .time("2026-11-24T10:00:00Z")
            .data("application/json; charset=utf-8", serde_json::json!({}))
            .extension("priority", 3i64)
            .extension("region", "eu")
            .build()
            .unwrap();
        assert_eq!(lookup(&event, "id").as_deref(), Some("42"));
        assert_eq!(lookup(&event, "source").as_deref(), Some("/orders"));
        assert_eq!(lookup(&event, "type").as_deref(), Some("order.created"));
        assert_eq!(lookup(&event, "subject").as_deref(), Some("o-1"));
        assert_eq!(lookup(&event, "specversion").as_deref(), Some("1.0"));
        assert_eq!(
            lookup(&event, "time").as_deref(),
            Some("2026-11-24T10:00:00Z")
        );
        assert_eq!(
            lookup(&event, "datamediatype").as_deref(),
            Some("application/json")
        );
        assert_eq!(lookup(&event, "priority").as_deref(), Some("3"));
        assert_eq!(lookup(&event, "region").as_deref(), Some("eu"));
        assert_eq!(lookup(&event, "missing"), None);
        assert_eq!(lookup(&event, "dataschema"), None);
    }

    #[test]
    fn schemaurl_and_dataschema_are_the_same_attribute() {
        let event = EventBuilderV03::new()
            .id("1")
            .source("/s")
            .ty("t")
            .data_with_schema("text/plain", "http://schemas/x", "x")
            .build()
            .unwrap();
        assert_eq!(
            lookup(&event, "schemaurl").as_deref(),
            Some("http://schemas/x")
        );
        assert_eq!(
            lookup(&event, "dataschema").as_deref(),
            Some("http://schemas/x")
        );
        assert_eq!(lookup(&event, "specversion").as_deref(), Some("0.3"));
    }
}
