//! Trigger filters at runtime: one type per dialect, combined by [`Filter`], and compiled per broker
//! into a [`FilterIndex`] so that the cost per event does not grow with triggers that cannot match.
//!
//! The YAML shapes and their validation are in [`crate::resources::filter`]; this module is only
//! about matching.

mod attribute;
mod cesql;
mod exact;
mod exists;
mod index;
mod prefix;
mod suffix;

pub use attribute::lookup;
pub use cesql::CesqlFilter;
pub use exact::ExactFilter;
pub use exists::ExistsFilter;
pub use index::FilterIndex;
pub use prefix::PrefixFilter;
pub use suffix::SuffixFilter;

use cloudevents::Event;

/// A trigger's filter. Build compound filters with [`Filter::all`], [`Filter::any`] and
/// [`Filter::negate`], which keep the tree flat (`all` inside `all` is merged, `negate(negate(f))` is `f`), so
/// that the index sees the top-level terms of every trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// No filter: every event.
    MatchAll,
    Exact(ExactFilter),
    Prefix(PrefixFilter),
    Suffix(SuffixFilter),
    Exists(ExistsFilter),
    Cesql(CesqlFilter),
    /// Every part matches.
    All(Vec<Filter>),
    /// At least one part matches (none for an empty list).
    Any(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    /// Conjunction; `all([])` matches everything, as an empty `filters:` list does.
    pub fn all(parts: Vec<Filter>) -> Filter {
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Filter::MatchAll => {}
                Filter::All(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        match flat.len() {
            0 => Filter::MatchAll,
            1 => flat.pop().unwrap_or(Filter::MatchAll),
            _ => Filter::All(flat),
        }
    }

    /// Disjunction.
    pub fn any(parts: Vec<Filter>) -> Filter {
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Filter::MatchAll => return Filter::MatchAll,
                Filter::Any(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        match flat.len() {
            1 => flat.pop().unwrap_or(Filter::MatchAll),
            _ => Filter::Any(flat),
        }
    }

    /// Negation.
    pub fn negate(inner: Filter) -> Filter {
        match inner {
            Filter::Not(twice) => *twice,
            other => Filter::Not(Box::new(other)),
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::MatchAll => true,
            Filter::Exact(filter) => filter.matches(event),
            Filter::Prefix(filter) => filter.matches(event),
            Filter::Suffix(filter) => filter.matches(event),
            Filter::Exists(filter) => filter.matches(event),
            Filter::Cesql(filter) => filter.matches(event),
            Filter::All(parts) => parts.iter().all(|part| part.matches(event)),
            Filter::Any(parts) => parts.iter().any(|part| part.matches(event)),
            Filter::Not(inner) => !inner.matches(event),
        }
    }

    /// Why this filter refuses `event`, said as a user would check it (the part that failed, what
    /// it wanted and what the event has); `None` when it matches.
    pub fn explain(&self, event: &Event) -> Option<String> {
        if self.matches(event) {
            return None;
        }
        let has = |attribute: &str| match lookup(event, attribute) {
            Some(value) => format!("the event's {attribute} is {value:?}"),
            None => format!("the event has no {attribute}"),
        };
        Some(match self {
            Filter::MatchAll => unreachable!("matches every event"),
            Filter::Exact(filter) => format!(
                "exact {} = {:?}: {}",
                filter.attribute,
                filter.value,
                has(&filter.attribute)
            ),
            Filter::Prefix(filter) => format!(
                "prefix {} {:?}: {}",
                filter.attribute,
                filter.prefix,
                has(&filter.attribute)
            ),
            Filter::Suffix(filter) => format!(
                "suffix {} {:?}: {}",
                filter.attribute,
                filter.suffix,
                has(&filter.attribute)
            ),
            Filter::Exists(filter) => format!(
                "{} must be present: {}",
                filter.attribute,
                has(&filter.attribute)
            ),
            Filter::Cesql(filter) => {
                let expression = &filter.expression;
                let evaluation = expression.evaluate(event);
                let values: Vec<String> = expression
                    .attributes()
                    .into_iter()
                    .map(|attribute| match lookup(event, attribute) {
                        Some(value) => format!("{attribute} is {value:?}"),
                        None => format!("{attribute} is missing"),
                    })
                    .collect();
                let outcome = if evaluation.errors.is_empty() {
                    format!("is {}", evaluation.value)
                } else {
                    let errors: Vec<String> =
                        evaluation.errors.iter().map(ToString::to_string).collect();
                    format!("fails: {}", errors.join("; "))
                };
                let values = if values.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", values.join(", "))
                };
                format!("cesql {:?} {outcome}{values}", expression.source())
            }
            Filter::All(parts) => parts
                .iter()
                .find_map(|part| part.explain(event))
                .unwrap_or_default(),
            Filter::Any(parts) if parts.is_empty() => "any of no filters never matches".into(),
            Filter::Any(parts) => {
                let reasons: Vec<String> = parts
                    .iter()
                    .filter_map(|part| part.explain(event))
                    .collect();
                format!(
                    "none of the {} alternatives matches: {}",
                    parts.len(),
                    reasons.join("; ")
                )
            }
            Filter::Not(inner) => format!("not: the event matches {}", inner.describe()),
        })
    }

    /// The filter in a few words, for explanations.
    pub fn describe(&self) -> String {
        match self {
            Filter::MatchAll => "everything".into(),
            Filter::Exact(filter) => format!("exact {} = {:?}", filter.attribute, filter.value),
            Filter::Prefix(filter) => format!("prefix {} {:?}", filter.attribute, filter.prefix),
            Filter::Suffix(filter) => format!("suffix {} {:?}", filter.attribute, filter.suffix),
            Filter::Exists(filter) => format!("{} present", filter.attribute),
            Filter::Cesql(filter) => format!("cesql {:?}", filter.expression.source()),
            Filter::All(parts) => {
                let parts: Vec<String> = parts.iter().map(Filter::describe).collect();
                format!("all of [{}]", parts.join(", "))
            }
            Filter::Any(parts) => {
                let parts: Vec<String> = parts.iter().map(Filter::describe).collect();
                format!("any of [{}]", parts.join(", "))
            }
            Filter::Not(inner) => format!("not {}", inner.describe()),
        }
    }

    /// The terms that must all hold: the parts of a top-level `all`, or the filter itself.
    pub fn conjuncts(&self) -> &[Filter] {
        match self {
            Filter::All(parts) => parts,
            Filter::MatchAll => &[],
            single => std::slice::from_ref(single),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use proptest::prelude::*;

    pub(crate) fn event(ty: &str, source: &str) -> Event {
        EventBuilderV10::new()
            .id("1")
            .ty(ty)
            .source(source)
            .build()
            .unwrap()
    }

    fn exact(attribute: &str, value: &str) -> Filter {
        Filter::Exact(ExactFilter::new(attribute, value))
    }

    #[test]
    fn all_needs_every_part_and_any_needs_one() {
        let event = event("a", "/s");
        let yes = exact("type", "a");
        let no = exact("type", "b");
        assert!(Filter::all(vec![yes.clone(), yes.clone()]).matches(&event));
        assert!(!Filter::all(vec![yes.clone(), no.clone()]).matches(&event));
        assert!(Filter::any(vec![no.clone(), yes.clone()]).matches(&event));
        assert!(!Filter::any(vec![no.clone(), no]).matches(&event));
    }

    #[test]
    fn empty_all_matches_everything_and_empty_any_nothing() {
        let event = event("a", "/s");
        assert!(Filter::all(vec![]).matches(&event));
        assert!(!Filter::any(vec![]).matches(&event));
    }

    #[test]
    fn an_explanation_names_the_part_that_failed_and_what_the_event_has() {
        let event = event("order.created", "/orders");
        let filter = Filter::all(vec![
            exact("type", "order.created"),
            exact("source", "/payments"),
        ]);
        assert_eq!(
            filter.explain(&event).as_deref(),
            Some(r#"exact source = "/payments": the event's source is "/orders""#)
        );
        assert_eq!(
            filter
                .explain(&super::tests::event("x", "/payments"))
                .as_deref(),
            Some(r#"exact type = "order.created": the event's type is "x""#)
        );
        let missing = Filter::Exact(ExactFilter::new("region", "eu"));
        assert_eq!(
            missing.explain(&event).as_deref(),
            Some(r#"exact region = "eu": the event has no region"#)
        );
        assert_eq!(exact("type", "order.created").explain(&event), None);
        let cesql = Filter::Cesql(CesqlFilter::new(std::sync::Arc::new(
            knactor_cesql::Expression::parse("type = 'x' AND region = 'eu'").unwrap(),
        )));
        let why = cesql.explain(&event).unwrap();
        assert!(
            why.starts_with(r#"cesql "type = 'x' AND region = 'eu'""#),
            "{why}"
        );
        assert!(why.contains(r#"type is "order.created""#), "{why}");
        assert!(why.contains("region is missing"), "{why}");
    }

    #[test]
    fn nested_all_is_flattened_for_the_index() {
        let filter = Filter::all(vec![
            exact("type", "a"),
            Filter::all(vec![exact("source", "/s"), Filter::MatchAll]),
        ]);
        assert_eq!(filter.conjuncts().len(), 2);
    }

    fn arbitrary_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            Just(Filter::MatchAll),
            "[ab]".prop_map(|value| exact("type", &value)),
            "[ab]".prop_map(|value| Filter::Prefix(PrefixFilter::new("source", value))),
            Just(Filter::Exists(ExistsFilter::new("subject"))),
        ];
        leaf.prop_recursive(4, 16, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::all),
                prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::any),
                inner.prop_map(Filter::negate),
            ]
        })
    }

    proptest! {
        #[test]
        fn not_not_is_the_filter_itself(filter in arbitrary_filter()) {
            prop_assert_eq!(Filter::negate(Filter::negate(filter.clone())), filter);
        }

        #[test]
        fn not_inverts_the_match(filter in arbitrary_filter(), ty in "[ab]", source in "[ab/]{0,2}") {
            let event = event(&ty, if source.is_empty() { "/" } else { &source });
            prop_assert_eq!(Filter::negate(filter.clone()).matches(&event), !filter.matches(&event));
        }

        #[test]
        fn flattening_keeps_the_meaning(parts in prop::collection::vec(arbitrary_filter(), 0..4), ty in "[ab]") {
            let event = event(&ty, "/a");
            let expected_all = parts.iter().all(|part| part.matches(&event));
            let expected_any = parts.iter().any(|part| part.matches(&event));
            prop_assert_eq!(Filter::all(parts.clone()).matches(&event), expected_all);
            prop_assert_eq!(Filter::any(parts).matches(&event), expected_any);
        }
    }
}
