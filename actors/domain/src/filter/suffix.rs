//! `suffix`: the attribute ends with the value.

use cloudevents::Event;

use super::attribute::lookup;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuffixFilter {
    pub attribute: String,
    pub suffix: String,
}

impl SuffixFilter {
    pub fn new(attribute: impl Into<String>, suffix: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            suffix: suffix.into(),
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        lookup(event, &self.attribute).is_some_and(|value| value.ends_with(&self.suffix))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    #[test]
    fn suffix_matches_the_end_of_the_value() {
        let event = event("com.example.order.created", "/orders");
        assert!(SuffixFilter::new("type", ".created").matches(&event));
        assert!(!SuffixFilter::new("type", ".updated").matches(&event));
        assert!(!SuffixFilter::new("subject", "x").matches(&event));
    }
}
