//! The CloudEvents HTTP protocol binding, both ways.

mod decode;
mod encode;
mod headers;

pub use decode::{
    check_attribute_limits, check_extension_name, decode_batch, decode_message, decode_structured,
    decoded_size, looks_like_event, media_type, AttributeLimits, DecodeError, BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
};
pub use encode::{
    format_time, to_binary, to_structured, write_binary, write_structured, InvalidBinaryHeader,
};
pub use headers::{percent_decode, percent_encode, PercentDecodeError};

use knactor_actors::transport::ReplyBody;

/// Reads a subscriber's response body as a reply: nothing, a CloudEvent, or something else (which
/// with a 2xx status counts as a failed delivery).
pub fn decode_reply(headers: &[(&str, &[u8])], body: &[u8]) -> ReplyBody {
    if !looks_like_event(headers) {
        return if body.iter().all(u8::is_ascii_whitespace) {
            ReplyBody::Empty
        } else {
            ReplyBody::NotAnEvent("the response body is not a CloudEvent".into())
        };
    }
    match decode_message(headers, body) {
        Ok(mut events) if events.len() == 1 => ReplyBody::Event(Box::new(events.remove(0))),
        Ok(_) => ReplyBody::NotAnEvent("a reply must be one event".into()),
        Err(error) => {
            ReplyBody::NotAnEvent(format!("malformed CloudEvent in the response: {error}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(pairs: &[(&'static str, &'static str)], body: &[u8]) -> ReplyBody {
        let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        decode_reply(&pairs, body)
    }

    #[test]
    fn an_empty_body_is_no_reply() {
        assert!(matches!(reply(&[], b""), ReplyBody::Empty));
        assert!(matches!(
            reply(&[("content-type", "text/plain")], b"  \n"),
            ReplyBody::Empty
        ));
    }

    #[test]
    fn a_binary_or_structured_event_is_a_reply() {
        let binary = reply(
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "r"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            b"",
        );
        assert!(matches!(binary, ReplyBody::Event(_)));
        let structured = reply(
            &[("content-type", "application/cloudevents+json")],
            br#"{"specversion":"1.0","id":"r","source":"/s","type":"t"}"#,
        );
        assert!(matches!(structured, ReplyBody::Event(_)));
    }

    #[test]
    fn other_bodies_and_broken_events_are_not_replies() {
        assert!(matches!(
            reply(&[("content-type", "text/plain")], b"OK"),
            ReplyBody::NotAnEvent(_)
        ));
        assert!(matches!(
            reply(&[("ce-specversion", "1.0")], b""),
            ReplyBody::NotAnEvent(_)
        ));
    }
}
