//! `exact`: the attribute equals the value (case-sensitive).

use cloudevents::Event;

use super::attribute::lookup;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactFilter {
    pub attribute: String,
    pub value: String,
}

impl ExactFilter {
    pub fn new(attribute: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            value: value.into(),
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        lookup(event, &self.attribute).is_some_and(|value| value == self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    #[test]
    fn exact_matches_only_the_whole_value() {
        let event = event("com.example.order.created", "/orders");
        assert!(ExactFilter::new("type", "com.example.order.created").matches(&event));
        assert!(!ExactFilter::new("type", "com.example.order").matches(&event));
        assert!(!ExactFilter::new("type", "COM.EXAMPLE.ORDER.CREATED").matches(&event));
    }

    #[test]
    fn exact_on_a_missing_attribute_does_not_match() {
        assert!(!ExactFilter::new("subject", "x").matches(&event("t", "/s")));
    }
}
