//! Delivery policy at runtime: retries, dead letter, content mode ([`ContentMode`], the
//! `format` field as written, is the API shape's).

use url::Url;

use super::destination::{Destination, ResolveError, Resolver};
use crate::resources::ContentMode;
use crate::retry::RetryPolicy;

/// A validated `DeliverySpec`, dead-letter sink still unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub retry: RetryPolicy,
    pub dead_letter: Option<Destination>,
    /// `None`: keep the mode the event arrived in... which for knactor means binary.
    pub format: Option<ContentMode>,
}

impl Delivery {
    /// No retries, no dead letter: what a trigger gets when neither it, its broker nor the node
    /// configures delivery.
    pub fn none() -> Self {
        Self {
            retry: RetryPolicy::NONE,
            dead_letter: None,
            format: None,
        }
    }

    /// Resolves the dead-letter sink. An unresolvable sink is reported and left out: the event is
    /// then parked instead of dead-lettered, so nothing is lost.
    pub fn resolve(&self, resolver: &dyn Resolver) -> (ResolvedDelivery, Option<ResolveError>) {
        let (dead_letter, problem) = match &self.dead_letter {
            None => (None, None),
            Some(destination) => match resolver.resolve(destination) {
                Ok(url) => (Some(url), None),
                Err(reason) => (None, Some(reason)),
            },
        };
        (
            ResolvedDelivery {
                retry: self.retry.clone(),
                dead_letter,
                mode: self.format.unwrap_or_default(),
            },
            problem,
        )
    }
}

/// Delivery policy with the dead-letter sink as a URL: what a trigger actor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDelivery {
    pub retry: RetryPolicy,
    pub dead_letter: Option<Url>,
    pub mode: ContentMode,
}
