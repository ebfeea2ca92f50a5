//! Whatever the YAML, loading refuses it with a reason or loads it; it never panics.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use knactor_actors::resources::Strictness;
use knactor_actors::routes::load_str;
use proptest::prelude::*;

fn samples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/knative_samples");
    let mut texts = Vec::new();
    for folder in ["concrete", "rekt_rendered", "flawed"] {
        for entry in fs::read_dir(dir.join(folder)).unwrap() {
            texts.push(fs::read_to_string(entry.unwrap().path()).unwrap());
        }
    }
    texts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let report = load_str(&text, "fuzz.yaml", Strictness::Lenient);
        for refusal in &report.refused {
            prop_assert!(!refusal.to_string().contains('\n') || refusal.to_string().contains("YAML"));
        }
    }

    #[test]
    fn damaged_knative_samples_are_refused_or_loaded_never_panicked_on(
        pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        insert in "[ \\-:{}\\[\\]'\"#&*!|>%@`\\n]{1,3}",
    ) {
        let texts = samples();
        let text = &texts[pick.index(texts.len())];
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let damaged = format!("{}{insert}{}", &text[..at], &text[at..]);
        let truncated = &text[..at];
        for input in [damaged.as_str(), truncated] {
            let lenient = load_str(input, "fuzz.yaml", Strictness::Lenient);
            let strict = load_str(input, "fuzz.yaml", Strictness::Strict);
            prop_assert!(strict.accepted.len() <= lenient.accepted.len());
        }
    }
}
