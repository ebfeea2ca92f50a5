//! Runs every case of the CloudEvents SQL TCK (`testdata/cesql_tck`),
//! read as data at test time, and reports all failures at once.
//!
//! No case is skipped. One comparison is widened, with this reason: the
//! SDK's `Event` stores `time` as a UTC instant, so a timestamp written
//! with an offset (`+02:00`) cannot be rendered back with that offset.
//! When the expected and actual results are both RFC 3339 timestamps they
//! are compared as instants.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use knactor_cesql::{EvalErrorKind, Expression, Value};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Suite {
    name: String,
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    name: String,
    expression: String,
    result: Option<serde_yaml::Value>,
    error: Option<String>,
    event: Option<serde_json::Value>,
    event_overrides: Option<serde_json::Map<String, serde_json::Value>>,
}

fn tck_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/cesql_tck")
}

fn default_event() -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": "tck-id",
        "source": "http://localhost/tck",
        "type": "io.cloudevents.tck",
    })
}

fn build_event(case: &Case) -> Result<cloudevents::Event, String> {
    let mut json = case.event.clone().unwrap_or_else(default_event);
    if let Some(overrides) = &case.event_overrides {
        let object = json
            .as_object_mut()
            .ok_or("the event is not a JSON object")?;
        for (key, value) in overrides {
            object.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(json).map_err(|e| format!("cannot build the event: {e}"))
}

fn error_kind(name: &str) -> Option<EvalErrorKind> {
    Some(match name {
        "math" => EvalErrorKind::Math,
        "cast" => EvalErrorKind::Cast,
        "missingFunction" => EvalErrorKind::MissingFunction,
        "functionEvaluation" => EvalErrorKind::FunctionEvaluation,
        "missingAttribute" => EvalErrorKind::MissingAttribute,
        "generic" => EvalErrorKind::Generic,
        _ => return None,
    })
}

fn expected_value(yaml: &serde_yaml::Value) -> Result<Value, String> {
    match yaml {
        serde_yaml::Value::Bool(b) => Ok(Value::Boolean(*b)),
        serde_yaml::Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Value::Integer)
            .ok_or_else(|| format!("result {n} is not a 32-bit integer")),
        serde_yaml::Value::String(s) => Ok(Value::String(s.clone())),
        other => Err(format!("unsupported result {other:?}")),
    }
}

/// See the module comment for why timestamps compare as instants.
fn same_value(expected: &Value, actual: &Value) -> bool {
    if expected == actual {
        return true;
    }
    let (Value::String(e), Value::String(a)) = (expected, actual) else {
        return false;
    };
    match (
        chrono::DateTime::parse_from_rfc3339(e),
        chrono::DateTime::parse_from_rfc3339(a),
    ) {
        (Ok(e), Ok(a)) => e == a,
        _ => false,
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    let expected_error = case.error.as_deref();
    let parsed = Expression::parse(&case.expression);
    if expected_error == Some("parse") {
        return match parsed {
            Err(_) => Ok(()),
            Ok(_) => Err("expected a parse error, but the expression parsed".into()),
        };
    }
    let expression = parsed.map_err(|e| format!("unexpected parse error: {e}"))?;
    let event = build_event(case)?;
    let evaluation = expression.evaluate(&event);

    let mut problems = Vec::new();
    if let Some(yaml) = &case.result {
        let expected = expected_value(yaml)?;
        if !same_value(&expected, &evaluation.value) {
            problems.push(format!(
                "expected value {expected:?}, got {:?}",
                evaluation.value
            ));
        }
    }
    match expected_error {
        None if !evaluation.errors.is_empty() => {
            problems.push(format!("expected no error, got {:?}", evaluation.errors));
        }
        None => {}
        Some(name) => {
            let kind = error_kind(name).ok_or_else(|| format!("unknown error kind {name}"))?;
            if evaluation.errors.is_empty() || evaluation.errors.iter().any(|e| e.kind != kind) {
                problems.push(format!(
                    "expected only {kind:?} errors, got {:?}",
                    evaluation.errors
                ));
            }
        }
    }
    let passes = evaluation.value == Value::Boolean(true) && evaluation.errors.is_empty();
    if expression.matches(&event) != passes {
        problems.push("matches() disagrees with evaluate()".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn every_tck_case_passes() {
    let dir = tck_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no TCK files in {}", dir.display());

    let mut failures = Vec::new();
    let mut cases = 0;
    for path in &files {
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let suite: Suite = match serde_yaml::from_str(&text) {
            Ok(suite) => suite,
            Err(e) => {
                failures.push(format!("{file}: cannot parse the file: {e}"));
                continue;
            }
        };
        assert!(!suite.name.is_empty(), "{file} has no suite name");
        for case in &suite.tests {
            cases += 1;
            if let Err(problem) = run_case(case) {
                failures.push(format!(
                    "{file} / {}: `{}`: {problem}",
                    case.name, case.expression
                ));
            }
        }
    }

    let mut report = String::new();
    for failure in &failures {
        let _ = writeln!(report, "  {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} TCK cases failed:\n{report}",
        failures.len()
    );
    eprintln!("{cases} TCK cases from {} files passed", files.len());
}

/// Guards the harness itself: a run that passes must be able to fail.
#[test]
fn the_harness_reports_wrong_values_and_errors() {
    let case = |yaml: &str| -> Case { serde_yaml::from_str(yaml).expect("valid case") };
    let wrong_value = case("{name: v, expression: '1 + 1', result: 3}");
    assert!(run_case(&wrong_value)
        .unwrap_err()
        .contains("expected value"));
    let missing_error = case("{name: e, expression: '5 / 1', result: 5, error: math}");
    assert!(run_case(&missing_error).unwrap_err().contains("Math"));
    let unexpected_error = case("{name: u, expression: '5 / 0', result: 0}");
    assert!(run_case(&unexpected_error)
        .unwrap_err()
        .contains("expected no error"));
    let not_a_parse_error = case("{name: p, expression: '1', error: parse}");
    assert!(run_case(&not_a_parse_error).is_err());
    let timestamp = case(
        "{name: t, expression: time, result: '2018-04-26T14:48:09+02:00', \
         eventOverrides: {time: '2018-04-26T14:48:09+02:00'}}",
    );
    assert_eq!(run_case(&timestamp), Ok(()));
}
