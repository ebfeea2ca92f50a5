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
