//! The YAML Knative users already have: every Broker, Trigger and source in Knative's docs and
//! rendered test manifests loads; every flawed documentation snippet is refused with a message that
//! names the file and the field.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use knactor_actors::resources::Strictness;
use knactor_actors::routes::{load_str, LoadReport};

fn samples(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/knative_samples")
        .join(folder);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());
    files
}

fn load(path: &Path, strictness: Strictness) -> LoadReport {
    let text = fs::read_to_string(path).unwrap();
    load_str(&text, &path.display().to_string(), strictness)
}

#[test]
fn every_concrete_and_rendered_sample_loads() {
    let mut failures = Vec::new();
    let mut loaded = 0;
    for folder in ["concrete", "rekt_rendered"] {
        for path in samples(folder) {
            let report = load(&path, Strictness::Lenient);
            failures.extend(report.refused.iter().map(ToString::to_string));
            loaded += report.accepted.len();
        }
    }
    assert!(failures.is_empty(), "refused:\n{}", failures.join("\n"));
    assert_eq!(loaded, 83, "every sample file holds one resource");
}

#[test]
fn every_flawed_sample_is_refused_naming_file_resource_and_field() {
    for path in samples("flawed") {
        let report = load(&path, Strictness::Lenient);
        assert!(
            report.accepted.is_empty(),
            "{} was accepted",
            path.display()
        );
        assert_eq!(report.refused.len(), 1, "{}", path.display());
        let line = report.refused[0].to_string();
        let file = path.display().to_string();
        assert!(line.starts_with(&file), "{line}");
        assert!(line.contains(" default/"), "names the resource: {line}");
        assert!(line.contains("spec"), "names a field: {line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }
}

/// Knative's webhook refuses a few of its own documentation and test renders (a filter object
/// with two dialects, a duration without its `P`, triggers without a subscriber). Lenient loading
/// accepts them with a warning; strict loading refuses exactly those.
#[test]
fn strict_mode_refuses_what_knatives_webhook_refuses_and_lenient_mode_warns() {
    let mut strict_refusals = Vec::new();
    let mut lenient_warnings = 0;
    for folder in ["concrete", "rekt_rendered"] {
        for path in samples(folder) {
            let lenient = load(&path, Strictness::Lenient);
            let strict = load(&path, Strictness::Strict);
            lenient_warnings += lenient.warnings.len();
            assert_eq!(
                strict.refused.is_empty(),
                lenient.warnings.is_empty(),
                "{}: strict refuses exactly the documents lenient warns about",
                path.display()
            );
            strict_refusals.extend(strict.refused.iter().map(ToString::to_string));
        }
    }
    assert!(lenient_warnings > 0);
    let two_dialects = strict_refusals
        .iter()
        .find(|line| line.contains("Trigger__triggers_README__5.yaml"))
        .expect("the two-dialect docs example is refused when strict");
    assert!(two_dialects.contains("spec.filters[0]: sets 2 dialects (exact, suffix)"));
    assert!(strict_refusals
        .iter()
        .any(|line| line.contains("trigger__ExampleWithRetry.yaml") && line.contains("\"T0\"")));
}
