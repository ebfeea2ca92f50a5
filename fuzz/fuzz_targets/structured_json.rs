//! The structured and batched JSON parsers. Whatever arrives, they answer with events or a
//! reason; an event they read is written in structured mode and read again with the same
//! attributes, and a batch of them as a batch.

#![no_main]

use cloudevents::{AttributesReader, Event};
use knactor_gateway::binding::{decode_batch, decode_structured, to_structured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(event) = decode_structured(input) {
        let (written, _) = to_structured(&event);
        let read = decode_structured(&written).expect("what was written is read again");
        assert_same_attributes(&event, &read);
    }
    if let Ok(events) = decode_batch(input) {
        let mut batch = b"[".to_vec();
        for (index, event) in events.iter().enumerate() {
            if index > 0 {
                batch.push(b',');
            }
            batch.extend_from_slice(&to_structured(event).0);
        }
        batch.push(b']');
        let read = decode_batch(&batch).expect("a batch written is read again");
        assert_eq!(read.len(), events.len());
        for (sent, read) in events.iter().zip(&read) {
            assert_same_attributes(sent, read);
        }
    }
});

/// Data may change form (base64 of JSON bytes becomes JSON); the attributes may not.
fn assert_same_attributes(sent: &Event, read: &Event) {
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
}
