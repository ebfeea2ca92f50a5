//! The legacy `filter.attributes` entry with an empty value: the attribute is present, any value.

use cloudevents::Event;

use super::attribute::lookup;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistsFilter {
    pub attribute: String,
}

impl ExistsFilter {
    pub fn new(attribute: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        lookup(event, &self.attribute).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    #[test]
    fn exists_needs_the_attribute_with_any_value() {
        let event = event("t", "/s");
        assert!(ExistsFilter::new("source").matches(&event));
        assert!(!ExistsFilter::new("subject").matches(&event));
    }
}
