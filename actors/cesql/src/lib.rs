//! CloudEvents SQL (CESQL) v1: parsing expressions once and evaluating
//! them against many events, as Knative Trigger filters do.
//!
//! Start with [`Expression`]. The pipeline is `lexer` → `parser` (producing
//! the tree in `ast`) → `eval`; `value` holds the type system and casts,
//! `functions` the built-ins, `like` the LIKE matcher. The error-value rule
//! that makes evaluation total is explained at the top of `eval`.
//!
//! Interpretations where the spec and its TCK leave room (each is also
//! noted where it is implemented):
//! * operators of equal precedence group left to right, including
//!   `AND`/`OR`/`XOR`, and unary `NOT`/`-` bind tighter than any binary
//!   operator (§3.6);
//! * an error anywhere in an operand makes the consuming operator, and so
//!   every enclosing one, yield its zero value: `NOT (missing = 1)` is
//!   `false` (the TCK's `true AND (1 != 1 / 0)` is `false`);
//! * a failed cast continues with the zero value, as §3.7 specifies for
//!   casts, so `'abc' = 0` is `true` with a cast error;
//! * operators never implicitly cast Integer to Boolean (`NOT 10` is a
//!   cast error, per the TCK); `BOOL(10)` does;
//! * integer overflow saturates and raises a math error, as `ABS` does;
//! * in LIKE patterns `\` escapes only `%` and `_`; before anything else
//!   it is a literal backslash;
//! * `time` renders as RFC 3339 in UTC, the only form the SDK keeps.

// Every public type can be printed with `{:?}`: in a log line, a test failure, a caller's own Debug.
#![warn(missing_debug_implementations)]

/// The extension in which knactor keeps, in memory only, an event's `dataschema` exactly as its
/// producer wrote it when the URL type would write it otherwise (`http://Example.COM/Schema` comes
/// back as `http://example.com/Schema`): expressions compare what the producer sent. Defined here,
/// the crate every other knactor crate depends on; `knactor_actors::envelope` says the rest.
pub const DATASCHEMA_AS_SENT_EXTENSION: &str = "knactordataschemaassent";

mod ast;
mod error;
mod eval;
mod functions;
mod lexer;
mod like;
mod parser;
mod value;

use cloudevents::Event;

pub use error::{EvalError, EvalErrorKind, ParseError};
pub use value::Value;

/// A parsed CESQL expression, ready to be evaluated against any number of
/// events.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    root: ast::Node,
}

/// The outcome of evaluating an expression: a value always, plus every
/// error met on the way (§3.3). An empty `errors` means success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub value: Value,
    pub errors: Vec<EvalError>,
}

impl Expression {
    /// Parses `src`. Unknown functions are not a parse error: the spec's
    /// TCK expects them to surface as a MissingFunction evaluation error.
    pub fn parse(src: &str) -> Result<Expression, ParseError> {
        Ok(Expression {
            source: src.to_owned(),
            root: parser::parse(src)?,
        })
    }

    /// Evaluates the expression against `event`, collecting all errors.
    pub fn evaluate(&self, event: &Event) -> Evaluation {
        let mut errors = Vec::new();
        let value = eval::eval(&self.root, event, &mut errors).into_value();
        Evaluation { value, errors }
    }

    /// Whether `event` passes this expression used as a filter: the result
    /// is `true` and no error occurred (a runtime error counts as no match,
    /// as in Knative and §1.2).
    pub fn matches(&self, event: &Event) -> bool {
        let mut errors = Vec::new();
        let value = eval::eval(&self.root, event, &mut errors);
        errors.is_empty() && value == value::Val::Bool(true)
    }

    /// The text the expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names of the attributes the expression reads, in order of first use: what an
    /// explanation of a result shows the values of.
    pub fn attributes(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.root.attributes(&mut names);
        names
    }
}

impl std::fmt::Display for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn event() -> Event {
        EventBuilderV10::new()
            .id("1")
            .source("http://localhost/source")
            .ty("com.example.created")
            .subject("orders/42")
            .time("2018-04-26T14:48:09+02:00")
            .extension("hop", "5")
            .extension("ttl", 10_i64)
            .extension("flag", true)
            .extension("big", 1_i64 << 40)
            .build()
            .expect("valid event")
    }

    fn run(src: &str) -> (Value, Vec<EvalErrorKind>) {
        let evaluation = Expression::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .evaluate(&event());
        let kinds = evaluation.errors.iter().map(|e| e.kind).collect();
        (evaluation.value, kinds)
    }

    fn ok(src: &str) -> Value {
        let (value, errors) = run(src);
        assert!(errors.is_empty(), "{src}: unexpected errors {errors:?}");
        value
    }

    #[test]
    fn expressions_are_shareable_across_threads() {
        fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync>() {}
        assert_traits::<Expression>();
        assert_traits::<Evaluation>();
    }

    #[test]
    fn source_returns_the_original_text() {
        let expr = Expression::parse("  type = 'x' ").unwrap();
        assert_eq!(expr.source(), "  type = 'x' ");
        assert_eq!(expr.to_string(), "  type = 'x' ");
    }

    #[test]
    fn matches_requires_true_and_no_errors() {
        let event = event();
        let expr = |src| Expression::parse(src).unwrap();
        assert!(expr("type LIKE 'com.example.%'").matches(&event));
        assert!(!expr("type = 'other'").matches(&event));
        assert!(!expr("'true'").matches(&event));
        assert!(expr("TRUE OR missing").matches(&event));
        assert!(!expr("missing = 1 OR TRUE").matches(&event));
        assert!(!expr("NOT 10").matches(&event));
    }

    #[test]
    fn context_attributes_are_addressable() {
        assert_eq!(ok("specversion"), Value::from("1.0"));
        assert_eq!(ok("id"), Value::from("1"));
        assert_eq!(ok("source"), Value::from("http://localhost/source"));
        assert_eq!(ok("TYPE"), Value::from("com.example.created"));
        assert_eq!(ok("subject"), Value::from("orders/42"));
        assert_eq!(ok("time"), Value::from("2018-04-26T12:48:09Z"));
    }

    #[test]
    fn extensions_keep_their_types() {
        assert_eq!(ok("hop"), Value::from("5"));
        assert_eq!(ok("ttl"), Value::Integer(10));
        assert_eq!(ok("flag"), Value::Boolean(true));
        assert_eq!(ok("hop < ttl"), Value::Boolean(true));
    }

    #[test]
    fn integer_extensions_beyond_32_bits_become_strings() {
        assert_eq!(ok("big"), Value::from("1099511627776"));
        assert_eq!(run("big + 0").1, vec![EvalErrorKind::Cast]);
    }

    #[test]
    fn missing_attribute_yields_the_zero_value_of_the_consuming_operator() {
        assert_eq!(
            run("missing"),
            (Value::Boolean(false), vec![EvalErrorKind::MissingAttribute])
        );
        assert_eq!(
            run("missing * 5"),
            (Value::Integer(0), vec![EvalErrorKind::MissingAttribute])
        );
        assert_eq!(
            run("1 / missing"),
            (Value::Integer(0), vec![EvalErrorKind::MissingAttribute])
        );
        assert_eq!(
            run("NOT missing"),
            (Value::Boolean(false), vec![EvalErrorKind::MissingAttribute])
        );
        assert_eq!(
            run("LOWER(missing)"),
            (Value::from(""), vec![EvalErrorKind::MissingAttribute])
        );
    }

    #[test]
    fn an_operand_error_makes_every_enclosing_operator_yield_zero() {
        assert_eq!(
            run("NOT (missing = 1)"),
            (Value::Boolean(false), vec![EvalErrorKind::MissingAttribute])
        );
        assert_eq!(
            run("-(1 / 0) + 5"),
            (Value::Integer(0), vec![EvalErrorKind::Math])
        );
        // An error raised by the outermost operator itself keeps its value.
        assert_eq!(
            run("NOT 10"),
            (Value::Boolean(true), vec![EvalErrorKind::Cast])
        );
    }

    #[test]
    fn and_or_short_circuit_skips_errors_on_the_right() {
        assert_eq!(ok("FALSE AND missing"), Value::Boolean(false));
        assert_eq!(ok("TRUE OR 1 / 0 = 0"), Value::Boolean(true));
    }

    #[test]
    fn every_error_of_a_complete_evaluation_is_reported() {
        let (_, errors) = run("missing1 + missing2");
        assert_eq!(errors, vec![EvalErrorKind::MissingAttribute; 2]);
        let (value, errors) = run("1 IN (1, missing)");
        assert_eq!(
            (value, errors),
            (Value::Boolean(false), vec![EvalErrorKind::MissingAttribute])
        );
    }

    #[test]
    fn equality_casts_the_left_operand_to_the_right_type() {
        assert_eq!(ok("true = 'TRUE'"), Value::Boolean(false));
        assert_eq!(ok("'TRUE' = true"), Value::Boolean(true));
        assert_eq!(ok("hop = 5"), Value::Boolean(true));
        assert_eq!(
            run("'abc' = 1"),
            (Value::Boolean(false), vec![EvalErrorKind::Cast])
        );
    }

    #[test]
    fn in_casts_elements_to_the_left_type() {
        assert_eq!(ok("'1' IN (1, 2)"), Value::Boolean(true));
        assert_eq!(ok("TRUE IN ('true')"), Value::Boolean(true));
        assert_eq!(ok("5 NOT IN (hop)"), Value::Boolean(false));
    }

    #[test]
    fn division_of_the_most_negative_integer_by_minus_one_saturates() {
        assert_eq!(
            run("-2147483648 / -1"),
            (Value::Integer(i32::MAX), vec![EvalErrorKind::Math])
        );
        assert_eq!(ok("-2147483648 % -1"), Value::Integer(0));
        assert_eq!(
            run("--2147483648"),
            (Value::Integer(i32::MAX), vec![EvalErrorKind::Math])
        );
    }

    #[test]
    fn arithmetic_overflow_saturates_with_a_math_error() {
        assert_eq!(
            run("2147483647 + 1"),
            (Value::Integer(i32::MAX), vec![EvalErrorKind::Math])
        );
        assert_eq!(
            run("-2147483648 - 1"),
            (Value::Integer(i32::MIN), vec![EvalErrorKind::Math])
        );
        assert_eq!(
            run("65536 * -65536"),
            (Value::Integer(i32::MIN), vec![EvalErrorKind::Math])
        );
    }

    #[test]
    fn remainder_keeps_the_sign_of_the_dividend() {
        assert_eq!(ok("-7 % 3"), Value::Integer(-1));
        assert_eq!(ok("7 % -3"), Value::Integer(1));
        assert_eq!(ok("-7 / 2"), Value::Integer(-3));
    }

    #[test]
    fn unknown_functions_are_missing_function_errors() {
        assert_eq!(
            run("NOPE(1)"),
            (Value::Boolean(false), vec![EvalErrorKind::MissingFunction])
        );
        assert_eq!(
            run("ABS(1, 2)"),
            (Value::Boolean(false), vec![EvalErrorKind::MissingFunction])
        );
    }

    #[test]
    fn variadic_calls_beyond_the_inline_limit_work() {
        assert_eq!(
            ok("CONCAT('a', 1, TRUE, 'b', hop)"),
            Value::from("a1trueb5")
        );
        assert_eq!(
            run("CONCAT('a', 'b', 'c', missing)"),
            (Value::from(""), vec![EvalErrorKind::MissingAttribute])
        );
    }

    #[test]
    fn like_with_odd_escapes_does_not_panic() {
        for pattern in [r"'\'", r"'\\'", r"'%\'", r"'\%\_\\\x'", "'é\\é_'", "'%%%%'"] {
            let src = format!("subject LIKE {pattern}");
            if let Ok(expr) = Expression::parse(&src) {
                let _ = expr.evaluate(&event());
            }
        }
    }

    #[test]
    fn unicode_strings_are_handled_by_character() {
        assert_eq!(ok("LENGTH('日本語')"), Value::Integer(3));
        assert_eq!(ok("'日本語' LIKE '日_語'"), Value::Boolean(true));
        assert_eq!(ok("UPPER('straße')"), Value::from("STRASSE"));
        assert_eq!(ok("SUBSTRING('日本語', -1)"), Value::from("語"));
    }

    #[test]
    fn the_deepest_allowed_tree_evaluates_without_exhausting_the_stack() {
        let chain = vec!["1"; 1024].join(" + ");
        assert_eq!(ok(&chain), Value::Integer(1024));
        let nested = format!("{}TRUE{}", "NOT (".repeat(127), ")".repeat(127));
        assert_eq!(ok(&nested), Value::Boolean(false));
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let inputs = [
            "",
            "(",
            ")",
            "'",
            "\"",
            "'unterminated",
            "\"unterminated\\\"",
            "9999999999999999999999999999",
            "-2147483648 / -1",
            "ABS(-2147483648)",
            "SUBSTRING('x', -2147483648, 2147483647)",
            "LEFT('x', -2147483648)",
            "RIGHT('x', 2147483647)",
            "a LIKE",
            "a NOT",
            "a IN",
            "a IN (",
            "EXISTS",
            "NOT",
            "-",
            "+",
            "+'1'",
            "1 ++ 2",
            "é = 'é'",
            "'\u{0}' = '\u{0}'",
            "\u{feff}a",
            "CONCAT(,)",
            "f(1,)",
            "a <",
            "a !",
        ];
        for src in inputs {
            if let Ok(expr) = Expression::parse(src) {
                let _ = expr.evaluate(&event());
                let _ = expr.matches(&event());
            }
        }
    }
}

#[cfg(test)]
mod dataschema_tests {
    use super::*;
    use cloudevents::{AttributesWriter, EventBuilder, EventBuilderV10};

    #[test]
    fn dataschema_is_compared_as_its_producer_sent_it() {
        let as_sent = "http://Example.COM:80/Schema/../v1";
        let mut event = EventBuilderV10::new()
            .id("1")
            .source("HTTP://Producer.Example:80/A")
            .ty("t")
            .build()
            .unwrap();
        event.set_dataschema(Some(url::Url::parse(as_sent).unwrap()));
        event.set_extension(DATASCHEMA_AS_SENT_EXTENSION, as_sent);
        let expression = Expression::parse(&format!(
            "dataschema = '{as_sent}' AND source = 'HTTP://Producer.Example:80/A'"
        ))
        .unwrap();
        assert!(expression.matches(&event));
    }
}
