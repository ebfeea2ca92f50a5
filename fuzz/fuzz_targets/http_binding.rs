//! The CloudEvents HTTP binding decoder, over raw messages: the input is `name: value` header
//! lines, a blank line, then the body (so the seeds are readable requests). Whatever arrives,
//! decoding answers with events or a reason, and a decoded binary-mode event survives being
//! written in binary mode and read again, attribute for attribute and byte for byte.

#![no_main]

use cloudevents::{AttributesReader, Event};
use knactor_gateway::binding::{
    check_attribute_limits, decode_message, to_binary, to_structured, AttributeLimits,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (head, body) = split(input);
    let names: Vec<String> = head
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    let headers: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&head)
        .map(|(name, (_, value))| (name.as_str(), *value))
        .collect();
    let Ok(events) = decode_message(&headers, body) else {
        return;
    };
    let binary_mode = headers.iter().any(|(name, _)| *name == "ce-specversion")
        && !headers.iter().any(|(name, value)| {
            *name == "content-type"
                && value
                    .to_ascii_lowercase()
                    .starts_with(b"application/cloudevents")
        });
    for event in &events {
        let _ = check_attribute_limits(event, &AttributeLimits::default());
        let _ = to_structured(event);
        if binary_mode {
            let (headers, body) = to_binary(event);
            let again: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()))
                .collect();
            let decoded = decode_message(&again, &body).expect("what was written is read again");
            assert_same(event, &decoded[0]);
        }
    }
});

fn assert_same(sent: &Event, read: &Event) {
    assert_eq!(sent.specversion(), read.specversion());
    assert_eq!(sent.id(), read.id());
    assert_eq!(sent.source(), read.source());
    assert_eq!(sent.ty(), read.ty());
    assert_eq!(sent.subject(), read.subject());
    assert_eq!(sent.time(), read.time());
    assert_eq!(sent.dataschema(), read.dataschema());
    assert_eq!(sent.datacontenttype(), read.datacontenttype());
    let extensions = |event: &Event| {
        let mut all: Vec<(String, String)> = event
            .iter_extensions()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        all.sort();
        all
    };
    assert_eq!(extensions(sent), extensions(read));
    assert_eq!(sent.data(), read.data());
}

/// `name: value` lines up to the first empty line, then the body.
fn split(input: &[u8]) -> (Vec<(String, &[u8])>, &[u8]) {
    let mut headers = Vec::new();
    let mut rest = input;
    loop {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if line.is_empty() {
            return (headers, rest);
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
            let value = &line[colon + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            headers.push((name, value));
        }
        if rest.is_empty() {
            return (headers, rest);
        }
    }
}
