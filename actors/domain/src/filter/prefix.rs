//! `prefix`: the attribute starts with the value.

use cloudevents::Event;

use super::attribute::lookup;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixFilter {
    pub attribute: String,
    pub prefix: String,
}

impl PrefixFilter {
    pub fn new(attribute: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            prefix: prefix.into(),
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        lookup(event, &self.attribute).is_some_and(|value| value.starts_with(&self.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    #[test]
    fn prefix_matches_the_start_of_the_value() {
        let event = event("com.example.order.created", "/orders/eu");
        assert!(PrefixFilter::new("source", "/orders/").matches(&event));
        assert!(PrefixFilter::new("type", "com.example.order.created").matches(&event));
        assert!(!PrefixFilter::new("source", "orders").matches(&event));
        assert!(!PrefixFilter::new("subject", "/").matches(&event));
    }
}
