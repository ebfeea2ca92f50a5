//! Delivery policy at runtime: retries, dead letter, content mode ([`ContentMode`], the
//! `format` field as written, is the API shape's), and its conversion from a [`DeliverySpec`].

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::destination::{Destination, ResolveError, Resolver};
use crate::duration;
use crate::resources::field::{join, Checker};
use crate::resources::{ContentMode, DeliverySpec};
use crate::retry::{BackoffPolicy, RetryPolicy};

/// A validated `DeliverySpec`, dead-letter sink still unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub retry: RetryPolicy,
    pub dead_letter: Option<Destination>,
    /// `None`: keep the mode the event arrived in... which for knactor means binary.
    pub format: Option<ContentMode>,
}

impl Delivery {
    /// Validates as Knative's `DeliverySpec.Validate` does and converts to the runtime shape.
    pub fn from_spec(
        spec: &DeliverySpec,
        checker: &mut Checker,
        path: &str,
        namespace: &str,
    ) -> Option<Delivery> {
        let dead_letter = spec.dead_letter_sink.as_ref().and_then(|sink| {
            Destination::from_spec(sink, checker, &join(path, "deadLetterSink"), namespace)
        });

        let retries = match spec.retry {
            None => 0,
            Some(retry) => u32::try_from(retry).unwrap_or_else(|_| {
                checker.error(
                    join(path, "retry"),
                    format!(
                        "{retry} is not a valid retry count: it must be 0 or more (and below 2^31)"
                    ),
                );
                0
            }),
        };

        let policy = match spec.backoff_policy.as_deref() {
            None | Some("exponential") => BackoffPolicy::Exponential,
            Some("linear") => BackoffPolicy::Linear,
            Some(other) => {
                checker.error(
                    join(path, "backoffPolicy"),
                    format!("{other:?} is not a backoff policy: use linear or exponential"),
                );
                BackoffPolicy::Exponential
            }
        };

        // Without a delay, retries fire at once (Knative's behaviour).
        let delay = check_duration(checker, &join(path, "backoffDelay"), &spec.backoff_delay)
            .unwrap_or(Duration::ZERO);

        let timeout = check_duration(checker, &join(path, "timeout"), &spec.timeout);
        if timeout == Some(Duration::ZERO) {
            checker.error(join(path, "timeout"), "must be longer than zero");
        }
        let retry_after_max =
            check_duration(checker, &join(path, "retryAfterMax"), &spec.retry_after_max);

        let format = match spec.format.as_deref() {
            None => None,
            Some("json") => Some(ContentMode::Structured),
            Some("binary") => Some(ContentMode::Binary),
            Some(other) => {
                checker.error(
                    join(path, "format"),
                    format!("{other:?} is not a delivery format: use json or binary"),
                );
                None
            }
        };

        Some(Delivery {
            retry: RetryPolicy {
                retries,
                policy,
                delay,
                timeout,
                retry_after_max,
            },
            dead_letter,
            format,
        })
    }

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
                Ok(url) => (Some(Arc::new(url)), None),
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

/// Parses an ISO-8601 duration field. `P0` is zero (Knative's parser special-cases it); a value that
/// only lacks its leading `P` or its final designator (`T0`, which Knative's test renders contain)
/// is tolerated.
fn check_duration(checker: &mut Checker, path: &str, text: &Option<String>) -> Option<Duration> {
    let text = text.as_deref()?;
    if text == "P0" {
        return Some(Duration::ZERO);
    }
    match duration::parse(text) {
        Ok(parsed) => Some(parsed),
        Err(error) => match repair_duration(text)
            .and_then(|fixed| duration::parse(&fixed).ok().map(|parsed| (fixed, parsed)))
        {
            Some((fixed, parsed)) => {
                checker.tolerate(
                    path,
                    format!("{text:?} is not an ISO-8601 duration (Knative refuses it); read as {fixed}"),
                );
                Some(parsed)
            }
            None => {
                checker.error(path, error.to_string());
                None
            }
        },
    }
}

fn repair_duration(text: &str) -> Option<String> {
    let mut fixed = text.trim().to_string();
    if fixed.starts_with('T') {
        fixed.insert(0, 'P');
    }
    if fixed.starts_with("PT") && fixed.ends_with(|c: char| c.is_ascii_digit()) {
        fixed.push('S');
    }
    (fixed != text).then_some(fixed)
}

/// Delivery policy with the dead-letter sink as a URL: what a trigger actor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDelivery {
    pub retry: RetryPolicy,
    /// Shared: every attempt's request to the sink names it.
    pub dead_letter: Option<Arc<Url>>,
    pub mode: ContentMode,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::field::Strictness;
    use crate::retry::BackoffPolicy;

    fn check(
        spec: &DeliverySpec,
        strictness: Strictness,
    ) -> Result<(Delivery, Vec<String>), Vec<String>> {
        let mut checker = Checker::new(strictness);
        let delivery = Delivery::from_spec(spec, &mut checker, "spec.delivery", "default");
        checker
            .finish(delivery)
            .map(|checked| {
                (
                    checked.value.unwrap(),
                    checked.warnings.iter().map(ToString::to_string).collect(),
                )
            })
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn knatives_default_is_ten_exponential_retries_from_200ms() {
        let (delivery, _) = check(&DeliverySpec::knative_default(), Strictness::Strict).unwrap();
        assert_eq!(delivery.retry.retries, 10);
        assert_eq!(delivery.retry.policy, BackoffPolicy::Exponential);
        assert_eq!(delivery.retry.delay, Duration::from_millis(200));
    }

    #[test]
    fn retries_without_a_delay_fire_at_once() {
        let spec = DeliverySpec {
            retry: Some(3),
            ..DeliverySpec::default()
        };
        let (delivery, _) = check(&spec, Strictness::Strict).unwrap();
        assert_eq!(delivery.retry.delay, Duration::ZERO);
    }

    #[test]
    fn every_bad_field_is_named() {
        let spec = DeliverySpec {
            retry: Some(-1),
            backoff_policy: Some("fibonacci".into()),
            backoff_delay: Some("soon".into()),
            timeout: Some("PT0S".into()),
            retry_after_max: Some("-PT1S".into()),
            format: Some("xml".into()),
            dead_letter_sink: None,
        };
        let errors = check(&spec, Strictness::Lenient).unwrap_err();
        let paths: Vec<_> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            vec![
                "spec.delivery.retry",
                "spec.delivery.backoffPolicy",
                "spec.delivery.backoffDelay",
                "spec.delivery.timeout",
                "spec.delivery.retryAfterMax",
                "spec.delivery.format",
            ]
        );
    }

    #[test]
    fn a_duration_missing_its_p_is_tolerated_with_a_warning_and_refused_when_strict() {
        let spec = DeliverySpec {
            retry: Some(3),
            backoff_delay: Some("T0".into()),
            ..DeliverySpec::default()
        };
        let (delivery, warnings) = check(&spec, Strictness::Lenient).unwrap();
        assert_eq!(delivery.retry.delay, Duration::ZERO);
        assert_eq!(
            warnings,
            vec!["spec.delivery.backoffDelay: \"T0\" is not an ISO-8601 duration (Knative refuses it); read as PT0S"]
        );
        assert!(check(&spec, Strictness::Strict).is_err());
    }

    #[test]
    fn p0_is_zero() {
        let spec = DeliverySpec {
            backoff_delay: Some("P0".into()),
            ..DeliverySpec::default()
        };
        let (delivery, warnings) = check(&spec, Strictness::Strict).unwrap();
        assert_eq!(delivery.retry.delay, Duration::ZERO);
        assert!(warnings.is_empty());
    }

    #[test]
    fn format_json_means_structured_mode() {
        let spec = DeliverySpec {
            format: Some("json".into()),
            ..DeliverySpec::default()
        };
        let (delivery, _) = check(&spec, Strictness::Strict).unwrap();
        assert_eq!(delivery.format, Some(ContentMode::Structured));
    }
}
