//! The CESQL parser and evaluator. The input is an expression, optionally followed by a line
//! `---` and `name=value` lines that become the event's extensions. Parsing answers with an
//! expression or a reason; evaluation always yields a value; `matches` agrees with `evaluate`.

#![no_main]

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use knactor_cesql::{Expression, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let (source, extensions) = text.split_once("\n---\n").unwrap_or((text, ""));
    let Ok(expression) = Expression::parse(source) else {
        return;
    };
    let mut builder = EventBuilderV10::new()
        .id("fuzz-1")
        .source("/fuzz")
        .ty("dev.knactor.fuzz")
        .subject("orders/42")
        .time("2026-01-02T03:04:05Z");
    for line in extensions.lines() {
        if let Some((name, value)) = line.split_once('=') {
            builder = match value.parse::<i64>() {
                Ok(number) => builder.extension(name, number),
                Err(_) => match value {
                    "true" | "false" => builder.extension(name, value == "true"),
                    _ => builder.extension(name, value),
                },
            };
        }
    }
    let event: Event = builder.build().unwrap_or_else(|_| {
        EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .build()
            .unwrap()
    });
    let evaluation = expression.evaluate(&event);
    let matched = expression.matches(&event);
    assert_eq!(
        matched,
        evaluation.errors.is_empty() && evaluation.value == Value::Boolean(true),
        "{source:?}"
    );
});
