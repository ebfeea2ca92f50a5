//! Laws of CESQL over random expressions and events: double negation, De Morgan, commutativity,
//! arithmetic identities and the trichotomy of comparison hold whenever the operands evaluate
//! without error; and evaluating any well-formed expression, of any mix of types, against any
//! event yields a value (never a panic), with `matches` agreeing with `evaluate`.

#![allow(clippy::unwrap_used)]

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use knactor_cesql::{Evaluation, Expression, Value};
use proptest::prelude::*;

/// An event with the attributes the expressions read, each possibly absent or odd.
fn event() -> impl Strategy<Value = Event> {
    (
        "[a-z0-9.-]{1,12}",
        proptest::option::of("[ -~]{0,12}"),
        any::<i64>(),
        any::<bool>(),
        proptest::option::of("[a-zA-Z%_ ]{0,8}"),
    )
        .prop_map(|(ty, subject, ttl, flag, name)| {
            let mut builder = EventBuilderV10::new()
                .id("1")
                .source("/properties")
                .ty(ty)
                .extension("ttl", ttl)
                .extension("small", ttl.rem_euclid(100))
                .extension("flag", flag);
            if let Some(subject) = subject {
                builder = builder.subject(subject);
            }
            if let Some(name) = name {
                builder = builder.extension("name", name);
            }
            builder.build().unwrap()
        })
}

fn string_literal() -> impl Strategy<Value = String> {
    // In a CESQL string literal a backslash escapes the next character.
    "[a-z%_' \\\\]{0,6}"
        .prop_map(|text| format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")))
}

fn int_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(|n| if n < 0 {
            format!("({n})")
        } else {
            n.to_string()
        }),
        (0..10i32).prop_map(|n| n.to_string()),
        Just("small".to_string()),
        Just("ttl".to_string()),
        Just("missing".to_string()),
        str_leaf().prop_map(|s| format!("LENGTH({s})")),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), "[-+*/%]", inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            inner.clone().prop_map(|a| format!("ABS({a})")),
            inner.prop_map(|a| format!("INT({a})")),
        ]
    })
}

fn str_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        string_literal(),
        Just("type".to_string()),
        Just("subject".to_string()),
        Just("name".to_string()),
        Just("id".to_string()),
    ]
}

fn str_expr() -> impl Strategy<Value = String> {
    str_leaf().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("CONCAT({a}, {b})")),
            inner.clone().prop_map(|a| format!("LOWER({a})")),
            inner.clone().prop_map(|a| format!("UPPER({a})")),
            (inner, int_expr()).prop_map(|(a, n)| format!("SUBSTRING({a}, {n})")),
        ]
    })
}

fn bool_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("TRUE".to_string()),
        Just("FALSE".to_string()),
        Just("flag".to_string()),
        Just("EXISTS subject".to_string()),
        Just("EXISTS name".to_string()),
        (int_expr(), "(<|<=|>|>=|=|!=)", int_expr())
            .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        (str_expr(), string_literal()).prop_map(|(a, p)| format!("({a} LIKE {p})")),
        (int_expr(), prop::collection::vec(int_expr(), 1..4))
            .prop_map(|(a, set)| format!("({a} IN ({}))", set.join(", "))),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| format!("NOT ({a})")),
            (inner.clone(), "(AND|OR|XOR|=|!=)", inner)
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        ]
    })
}

/// Any well-formed expression, types mixed at random (`'abc' + TRUE`...).
fn any_expr() -> impl Strategy<Value = String> {
    prop_oneof![bool_expr(), int_expr(), str_expr()].prop_recursive(2, 16, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                "(AND|OR|XOR|=|!=|<|>|\\+|-|\\*|/|%)",
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("CONCAT({a}, {b})")),
        ]
    })
}

fn eval(source: &str, event: &Event) -> Evaluation {
    Expression::parse(source)
        .unwrap_or_else(|error| panic!("{source}: {error}"))
        .evaluate(event)
}

/// The value of an expression that evaluated without error.
fn clean(source: &str, event: &Event) -> Option<Value> {
    let evaluation = eval(source, event);
    evaluation.errors.is_empty().then_some(evaluation.value)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn not_not_is_the_identity_on_booleans(e in bool_expr(), event in event()) {
        let once = eval(&e, &event);
        let twice = eval(&format!("NOT (NOT ({e}))"), &event);
        prop_assert_eq!(once.errors.is_empty(), twice.errors.is_empty(), "{}", e);
        if once.errors.is_empty() {
            prop_assert_eq!(&once.value, &twice.value, "{}", e);
            prop_assert!(matches!(once.value, Value::Boolean(_)), "{}", e);
        }
    }

    #[test]
    fn de_morgan_and_commutativity_hold_without_errors(
        a in bool_expr(), b in bool_expr(), event in event()
    ) {
        if clean(&a, &event).is_none() || clean(&b, &event).is_none() {
            return Ok(());
        }
        let same = |left: String, right: String| {
            prop_assert_eq!(clean(&left, &event), clean(&right, &event), "{} vs {}", left, right);
            Ok(())
        };
        same(format!("NOT (({a}) AND ({b}))"), format!("(NOT ({a})) OR (NOT ({b}))"))?;
        same(format!("NOT (({a}) OR ({b}))"), format!("(NOT ({a})) AND (NOT ({b}))"))?;
        for op in ["AND", "OR", "XOR", "=", "!="] {
            same(format!("({a}) {op} ({b})"), format!("({b}) {op} ({a})"))?;
        }
    }

    #[test]
    fn arithmetic_identities_hold_without_errors(
        x in int_expr(), y in int_expr(), event in event()
    ) {
        let (Some(Value::Integer(a)), Some(Value::Integer(b))) = (clean(&x, &event), clean(&y, &event)) else {
            return Ok(());
        };
        prop_assert_eq!(clean(&format!("({x}) - ({x})"), &event), Some(Value::Integer(0)));
        prop_assert_eq!(clean(&format!("({x}) * 1"), &event), Some(Value::Integer(a)));
        if a.checked_add(b).is_some() {
            prop_assert_eq!(clean(&format!("({x}) + ({y})"), &event), clean(&format!("({y}) + ({x})"), &event));
        }
        // Exactly one of <, = and > holds.
        let holds = |op: &str| clean(&format!("({x}) {op} ({y})"), &event) == Some(Value::Boolean(true));
        prop_assert_eq!(holds("<") as u8 + holds("=") as u8 + holds(">") as u8, 1);
        prop_assert_eq!(holds("<"), clean(&format!("({y}) > ({x})"), &event) == Some(Value::Boolean(true)));
    }

    #[test]
    fn any_expression_evaluates_to_a_value_and_matches_agrees(e in any_expr(), event in event()) {
        let expression = Expression::parse(&e).unwrap_or_else(|error| panic!("{e}: {error}"));
        let evaluation = expression.evaluate(&event);
        prop_assert_eq!(
            expression.matches(&event),
            evaluation.errors.is_empty() && evaluation.value == Value::Boolean(true)
        );
        // Deterministic: the same expression and event, the same outcome.
        prop_assert_eq!(expression.evaluate(&event), evaluation);
    }

    #[test]
    fn arbitrary_text_parses_or_is_refused_never_panics(text in "\\PC{0,80}", event in event()) {
        if let Ok(expression) = Expression::parse(&text) {
            let _ = expression.evaluate(&event);
        }
    }
}
