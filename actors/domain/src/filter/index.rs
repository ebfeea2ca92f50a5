//! `FilterIndex`: the filters of one broker's triggers compiled together.
//!
//! Most triggers pin an attribute to a value (`type: com.example.order.created`) or to a prefix or
//! suffix. The index files each trigger under one such term of its top-level conjunction, and per
//! event looks up only the buckets the event's own attribute values select:
//!
//! ```text
//!   event ──► exact:  for each indexed attribute a:   bucket[a][value(a)]
//!         ──► prefix: for each indexed attribute a and each prefix length L in use:
//!                                                      bucket[a][value(a)[..L]]
//!         ──► suffix: the same with value(a)[len-L..]
//!         ──► scan:   triggers with no indexable term
//!                 └──► candidates ──► full filter of each candidate ──► matches
//! ```
//!
//! So 1,000 triggers on other event types cost one hash lookup, not 1,000 filter evaluations. The
//! full filter is still evaluated for every candidate, so the index only ever prunes.

use std::collections::{BTreeSet, HashMap};

use rustc_hash::FxHashMap;

use cloudevents::Event;

use super::{attribute::lookup, Filter};

/// Where one trigger is filed.
enum Key {
    Exact { attribute: String, value: String },
    Prefix { attribute: String, prefix: String },
    Suffix { attribute: String, suffix: String },
    Scan,
}

/// Buckets of one attribute for prefix or suffix terms: by text, plus the lengths in use so that
/// an event's value is cut only at lengths some trigger asked for.
#[derive(Debug, Default)]
struct AffixTable {
    buckets: FxHashMap<String, Vec<usize>>,
    lengths: BTreeSet<usize>,
}

/// The compiled filters of one broker; `T` is what a match yields (a trigger handle).
#[derive(Debug)]
pub struct FilterIndex<T> {
    entries: Vec<(T, Filter)>,
    // Fx hashing: keys are short attribute values, and the hash runs on every event.
    exact: FxHashMap<String, FxHashMap<String, Vec<usize>>>,
    prefix: FxHashMap<String, AffixTable>,
    suffix: FxHashMap<String, AffixTable>,
    scan: Vec<usize>,
}

impl<T> Default for FilterIndex<T> {
    fn default() -> Self {
        Self::build(Vec::new())
    }
}

impl<T> FilterIndex<T> {
    pub fn build(entries: Vec<(T, Filter)>) -> Self {
        // Prefer the attribute most triggers pin, so an event needs as few lookups as possible.
        let mut popularity: HashMap<&str, usize> = HashMap::new();
        for (_, filter) in &entries {
            for term in filter.conjuncts() {
                if let Filter::Exact(exact) = term {
                    *popularity.entry(exact.attribute.as_str()).or_default() += 1;
                }
            }
        }
        let keys: Vec<Key> = entries
            .iter()
            .map(|(_, filter)| choose_key(filter, &popularity))
            .collect();

        let mut index = Self {
            entries: Vec::new(),
            exact: FxHashMap::default(),
            prefix: FxHashMap::default(),
            suffix: FxHashMap::default(),
            scan: Vec::new(),
        };
        for (position, key) in keys.into_iter().enumerate() {
            match key {
                Key::Exact { attribute, value } => index
                    .exact
                    .entry(attribute)
                    .or_default()
                    .entry(value)
                    .or_default()
                    .push(position),
                Key::Prefix { attribute, prefix } => {
                    let table = index.prefix.entry(attribute).or_default();
                    table.lengths.insert(prefix.len());
                    table.buckets.entry(prefix).or_default().push(position);
                }
                Key::Suffix { attribute, suffix } => {
                    let table = index.suffix.entry(attribute).or_default();
                    table.lengths.insert(suffix.len());
                    table.buckets.entry(suffix).or_default().push(position);
                }
                Key::Scan => index.scan.push(position),
            }
        }
        index.entries = entries;
        index
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &(T, Filter)> {
        self.entries.iter()
    }

    pub fn get(&self, position: usize) -> Option<&(T, Filter)> {
        self.entries.get(position)
    }

    /// Positions (into [`FilterIndex::entries`]) of the filters that match `event`, in ascending
    /// order, written into `out` (cleared first) so the caller can reuse one buffer per event.
    pub fn matching(&self, event: &Event, out: &mut Vec<usize>) {
        out.clear();
        for (attribute, buckets) in &self.exact {
            if let Some(value) = lookup(event, attribute) {
                if let Some(bucket) = buckets.get(value.as_ref()) {
                    out.extend_from_slice(bucket);
                }
            }
        }
        for (attribute, table) in &self.prefix {
            if let Some(value) = lookup(event, attribute) {
                for &length in table.lengths.range(..=value.len()) {
                    if let Some(bucket) =
                        value.get(..length).and_then(|head| table.buckets.get(head))
                    {
                        out.extend_from_slice(bucket);
                    }
                }
            }
        }
        for (attribute, table) in &self.suffix {
            if let Some(value) = lookup(event, attribute) {
                for &length in table.lengths.range(..=value.len()) {
                    let tail = value.get(value.len() - length..);
                    if let Some(bucket) = tail.and_then(|tail| table.buckets.get(tail)) {
                        out.extend_from_slice(bucket);
                    }
                }
            }
        }
        out.extend_from_slice(&self.scan);
        // Each trigger sits in one bucket, so there are no duplicates to remove; only the filters
        // beyond the indexed term are left to check.
        out.retain(|&position| self.entries[position].1.matches(event));
        out.sort_unstable();
    }

    /// The matching handles themselves (allocates; for tests and cold paths).
    pub fn matching_handles(&self, event: &Event) -> Vec<&T> {
        let mut positions = Vec::new();
        self.matching(event, &mut positions);
        positions
            .into_iter()
            .map(|position| &self.entries[position].0)
            .collect()
    }
}

fn choose_key(filter: &Filter, popularity: &HashMap<&str, usize>) -> Key {
    let terms = filter.conjuncts();
    let best_exact = terms
        .iter()
        .filter_map(|term| match term {
            Filter::Exact(exact) => Some(exact),
            _ => None,
        })
        .max_by_key(|exact| {
            (
                popularity
                    .get(exact.attribute.as_str())
                    .copied()
                    .unwrap_or(0),
                exact.attribute == "type",
            )
        });
    if let Some(exact) = best_exact {
        return Key::Exact {
            attribute: exact.attribute.clone(),
            value: exact.value.clone(),
        };
    }
    for term in terms {
        match term {
            Filter::Prefix(prefix) => {
                return Key::Prefix {
                    attribute: prefix.attribute.clone(),
                    prefix: prefix.prefix.clone(),
                }
            }
            Filter::Suffix(suffix) => {
                return Key::Suffix {
                    attribute: suffix.attribute.clone(),
                    suffix: suffix.suffix.clone(),
                }
            }
            _ => {}
        }
    }
    Key::Scan
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::super::*;
    use super::*;
    use proptest::prelude::*;

    fn exact(attribute: &str, value: &str) -> Filter {
        Filter::Exact(ExactFilter::new(attribute, value))
    }

    #[test]
    fn an_event_finds_only_the_triggers_of_its_type() {
        let index = FilterIndex::build(vec![
            ("orders", exact("type", "order.created")),
            ("payments", exact("type", "payment.done")),
            ("everything", Filter::MatchAll),
        ]);
        let event = event("order.created", "/shop");
        assert_eq!(
            index.matching_handles(&event),
            vec![&"orders", &"everything"]
        );
    }

    #[test]
    fn residual_terms_are_checked_after_the_lookup() {
        let index = FilterIndex::build(vec![(
            "eu-orders",
            Filter::all(vec![
                exact("type", "order.created"),
                Filter::Prefix(PrefixFilter::new("source", "/eu/")),
            ]),
        )]);
        assert!(index
            .matching_handles(&event("order.created", "/us/1"))
            .is_empty());
        assert_eq!(
            index
                .matching_handles(&event("order.created", "/eu/1"))
                .len(),
            1
        );
    }

    #[test]
    fn prefix_and_suffix_terms_are_indexed_by_length() {
        let index = FilterIndex::build(vec![
            ("p", Filter::Prefix(PrefixFilter::new("source", "/eu/"))),
            ("q", Filter::Prefix(PrefixFilter::new("source", "/e"))),
            ("s", Filter::Suffix(SuffixFilter::new("type", ".created"))),
        ]);
        assert_eq!(
            index.matching_handles(&event("order.created", "/eu/1")),
            vec![&"p", &"q", &"s"]
        );
        assert!(index.matching_handles(&event("x", "/")).is_empty());
    }

    #[test]
    fn multibyte_values_are_cut_only_at_character_boundaries() {
        let index = FilterIndex::build(vec![
            ("p", Filter::Prefix(PrefixFilter::new("source", "/é"))),
            ("s", Filter::Suffix(SuffixFilter::new("source", "ü"))),
            ("odd", Filter::Prefix(PrefixFilter::new("source", "/x"))),
        ]);
        assert_eq!(
            index.matching_handles(&event("t", "/é/ü")),
            vec![&"p", &"s"]
        );
    }

    fn arbitrary_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            Just(Filter::MatchAll),
            "[abc]".prop_map(|value| exact("type", &value)),
            "[abc]".prop_map(|value| exact("source", &value)),
            "[abc]{0,2}".prop_map(|value| Filter::Prefix(PrefixFilter::new("source", value))),
            "[abc]{0,2}".prop_map(|value| Filter::Suffix(SuffixFilter::new("type", value))),
            Just(Filter::Exists(ExistsFilter::new("subject"))),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::all),
                prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::any),
                inner.prop_map(Filter::negate),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_index_agrees_with_evaluating_every_filter(
            filters in prop::collection::vec(arbitrary_filter(), 0..12),
            ty in "[abc]{1,2}",
            source in "[abc]{1,2}",
        ) {
            let event = event(&ty, &source);
            let expected: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, filter)| filter.matches(&event))
                .map(|(position, _)| position)
                .collect();
            let index = FilterIndex::build(filters.into_iter().enumerate().collect());
            let found: Vec<usize> = index.matching_handles(&event).into_iter().copied().collect();
            prop_assert_eq!(found, expected);
        }
    }
}
