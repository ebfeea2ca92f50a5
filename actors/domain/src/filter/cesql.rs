//! `cesql`: a CloudEvents SQL expression; it matches when it evaluates to TRUE without error (an
//! evaluation error counts as no match, as in Knative).

use std::sync::Arc;

use cloudevents::Event;
use knactor_cesql::Expression;

#[derive(Debug, Clone)]
pub struct CesqlFilter {
    pub expression: Arc<Expression>,
}

impl CesqlFilter {
    pub fn new(expression: Arc<Expression>) -> Self {
        Self { expression }
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.expression.matches(event)
    }
}

impl PartialEq for CesqlFilter {
    fn eq(&self, other: &Self) -> bool {
        self.expression.source() == other.expression.source()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    fn cesql(text: &str) -> CesqlFilter {
        CesqlFilter::new(Arc::new(Expression::parse(text).unwrap()))
    }

    #[test]
    fn cesql_matches_when_the_expression_is_true() {
        let event = event("order.created", "/orders");
        assert!(cesql("type LIKE 'order.%' AND source = '/orders'").matches(&event));
        assert!(!cesql("type = 'order.updated'").matches(&event));
    }

    #[test]
    fn an_evaluation_error_is_no_match() {
        assert!(!cesql("missingext = 'x'").matches(&event("t", "/s")));
    }
}
