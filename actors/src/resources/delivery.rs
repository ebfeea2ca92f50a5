//! `DeliverySpec` (Knative duck v1), on a Broker or a Trigger, and its conversion to [`Delivery`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::destination::DestinationSpec;
use super::field::{join, Checker};
use crate::duration;
use crate::retry::{BackoffPolicy, RetryPolicy};
use crate::routes::Delivery;

/// `delivery:` as written in YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliverySpec {
    #[serde(default)]
    pub dead_letter_sink: Option<DestinationSpec>,
    /// Minimum number of retries; total attempts = retry + 1.
    #[serde(default)]
    pub retry: Option<i64>,
    #[serde(default)]
    pub backoff_policy: Option<String>,
    #[serde(default)]
    pub backoff_delay: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retry_after_max: Option<String>,
    /// `json` (structured mode) or `binary`.
    #[serde(default)]
    pub format: Option<String>,
}

/// How an event is put on the wire to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentMode {
    /// Attributes in `ce-` headers, data as the body (the default).
    #[default]
    Binary,
    /// The whole event as `application/cloudevents+json` (`delivery.format: json`).
    Structured,
}

impl DeliverySpec {
    /// Knative's cluster default (`config-br-defaults`): 10 retries, exponential, from 0.2 s.
    pub fn knative_default() -> Self {
        Self {
            retry: Some(10),
            backoff_policy: Some("exponential".into()),
            backoff_delay: Some("PT0.2S".into()),
            ..Self::default()
        }
    }

    /// Validates as Knative's `DeliverySpec.Validate` does and converts to the runtime shape.
    pub fn check(&self, checker: &mut Checker, path: &str, namespace: &str) -> Option<Delivery> {
        let dead_letter = self.dead_letter_sink.as_ref().and_then(|sink| {
            crate::routes::Destination::from_spec(
                sink,
                checker,
                &join(path, "deadLetterSink"),
                namespace,
            )
        });

        let retries = match self.retry {
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

        let policy = match self.backoff_policy.as_deref() {
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
        let delay = check_duration(checker, &join(path, "backoffDelay"), &self.backoff_delay)
            .unwrap_or(Duration::ZERO);

        let timeout = check_duration(checker, &join(path, "timeout"), &self.timeout);
        if timeout == Some(Duration::ZERO) {
            checker.error(join(path, "timeout"), "must be longer than zero");
        }
        let retry_after_max =
            check_duration(checker, &join(path, "retryAfterMax"), &self.retry_after_max);

        let format = match self.format.as_deref() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::field::Strictness;

    fn check(
        spec: &DeliverySpec,
        strictness: Strictness,
    ) -> Result<(Delivery, Vec<String>), Vec<String>> {
        let mut checker = Checker::new(strictness);
        let delivery = spec.check(&mut checker, "spec.delivery", "default");
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
