//! The resource loader over any text: YAML in, resources or one-line refusals out, never a panic,
//! never a stall on deep nesting (libFuzzer's -timeout catches a slow input), and strict mode
//! never accepts what lenient mode refuses.

#![no_main]

use knactor_actors::resources::Strictness;
use knactor_actors::routes::load_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let lenient = load_str(text, "fuzz.yaml", Strictness::Lenient);
    let strict = load_str(text, "fuzz.yaml", Strictness::Strict);
    assert!(strict.accepted.len() <= lenient.accepted.len());
    for refusal in &lenient.refused {
        let line = refusal.to_string();
        assert!(!line.is_empty());
    }
});
