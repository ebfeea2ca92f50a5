//! Filter matching per event with 1, 100 and 1,000 triggers that do not match, through one
//! broker's compiled `FilterIndex`, next to evaluating every trigger's filter in turn (what a
//! broker without an index does). Goal: 1,000 non-matching triggers cost at most 1.5× one.
//!
//! `cargo bench --bench filter_matching` runs criterion, then prints the ratios to the 1-trigger
//! case measured in the same run (from criterion's own estimates).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use criterion::{BenchmarkId, Criterion};
use knactor_actors::filter::{ExactFilter, Filter, FilterIndex, PrefixFilter, SuffixFilter};

const SIZES: [usize; 3] = [1, 100, 1000];

fn event() -> Event {
    EventBuilderV10::new()
        .id("42")
        .ty("com.example.order.created")
        .source("/shop/eu/orders")
        .subject("order-42.json")
        .extension("region", "eu")
        .build()
        .unwrap()
}

/// Triggers that do not match the event: each pins the type to another value (the common case).
fn exact_triggers(count: usize) -> Vec<(usize, Filter)> {
    (0..count)
        .map(|i| {
            (
                i,
                Filter::Exact(ExactFilter::new("type", format!("com.example.other{i}"))),
            )
        })
        .collect()
}

/// A mix of shapes users write: exact, prefix, suffix, and conjunctions with a residual term.
fn mixed_triggers(count: usize) -> Vec<(usize, Filter)> {
    (0..count)
        .map(|i| {
            let filter = match i % 4 {
                0 => Filter::Exact(ExactFilter::new("type", format!("com.example.other{i}"))),
                1 => Filter::Prefix(PrefixFilter::new("source", format!("/shop/x{i}/"))),
                2 => Filter::Suffix(SuffixFilter::new("subject", format!(".v{i}"))),
                _ => Filter::all(vec![
                    Filter::Exact(ExactFilter::new("region", format!("r{i}"))),
                    Filter::Prefix(PrefixFilter::new("type", "com.example.")),
                ]),
            };
            (i, filter)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let event = event();
    for (family, build) in [
        ("exact", exact_triggers as fn(usize) -> Vec<(usize, Filter)>),
        ("mixed", mixed_triggers),
    ] {
        let mut group = c.benchmark_group(format!("filter_matching/{family}"));
        for size in SIZES {
            let entries = build(size);
            let index = FilterIndex::build(entries.clone());
            let mut scratch = Vec::new();
            group.bench_with_input(BenchmarkId::new("index", size), &size, |b, _| {
                b.iter(|| {
                    index.matching(black_box(&event), &mut scratch);
                    black_box(scratch.len())
                })
            });
            group.bench_with_input(BenchmarkId::new("every_filter", size), &size, |b, _| {
                b.iter(|| {
                    black_box(
                        entries
                            .iter()
                            .filter(|(_, filter)| filter.matches(black_box(&event)))
                            .count(),
                    )
                })
            });
        }
        group.finish();
    }
}

/// criterion's point estimate (ns) of one benchmark of this run.
fn estimate(group: &str, function: &str, size: usize) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target
        .join("criterion")
        .join(group.replace('/', "_"))
        .join(function)
        .join(size.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();

    println!("\nfilter matching per event, median ns, ratio to 1 trigger (same run):");
    println!(
        "{:<8} {:<13} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "family", "method", "1", "100", "1000", "100/1", "1000/1"
    );
    for family in ["exact", "mixed"] {
        for function in ["index", "every_filter"] {
            let group = format!("filter_matching/{family}");
            let times: Vec<Option<f64>> = SIZES
                .iter()
                .map(|&size| estimate(&group, function, size))
                .collect();
            let [Some(one), Some(hundred), Some(thousand)] = times[..] else {
                println!("{family:<8} {function:<13} (no estimates: run without a filter)");
                continue;
            };
            println!(
                "{family:<8} {function:<13} {one:>10.1} {hundred:>10.1} {thousand:>10.1} {:>8.2}x {:>8.2}x",
                hundred / one,
                thousand / one
            );
        }
    }
}
