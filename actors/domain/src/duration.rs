//! ISO-8601 durations, as Knative's `DeliverySpec` writes them (`PT0.2S`, `PT1M30S`, `P1D`).
//!
//! Parsed once, when a resource is converted to its runtime shape; nothing downstream sees the text.
//! Knative parses with `rickb777/date/period`, which also takes weeks, years and months; years and months
//! have no fixed length, so they are approximated (365 and 30 days), as that library's
//! `DurationApprox` does. A time interval `start/duration`, `duration/end` or `start/end` (ISO-8601
//! section 4.4) is accepted too and reduced to its length, because rendered Knative test manifests
//! carry one.

use std::time::Duration;

use chrono::DateTime;

/// Why a duration was refused; the text is shown after the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not an ISO-8601 duration (expected the form PnYnMnWnDTnHnMnS, for example PT0.5S)")]
    Malformed(String),
    #[error("{0:?} is negative; a duration here must be zero or more")]
    Negative(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

const SECONDS_PER_DAY: f64 = 86_400.0;

/// Parses an ISO-8601 duration or time interval into its length.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if let Some((left, right)) = trimmed.split_once('/') {
        return parse_interval(trimmed, left, right);
    }
    let (negative, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let seconds = parse_designators(body).ok_or_else(|| DurationError::Malformed(text.into()))?;
    if negative && seconds > 0.0 {
        return Err(DurationError::Negative(text.into()));
    }
    to_duration(seconds, text)
}

fn parse_interval(text: &str, left: &str, right: &str) -> Result<Duration, DurationError> {
    let malformed = || DurationError::Malformed(text.into());
    match (left.starts_with('P'), right.starts_with('P')) {
        (false, true) => {
            DateTime::parse_from_rfc3339(left).map_err(|_| malformed())?;
            parse(right)
        }
        (true, false) => {
            DateTime::parse_from_rfc3339(right).map_err(|_| malformed())?;
            parse(left)
        }
        (false, false) => {
            let start = DateTime::parse_from_rfc3339(left).map_err(|_| malformed())?;
            let end = DateTime::parse_from_rfc3339(right).map_err(|_| malformed())?;
            (end - start)
                .to_std()
                .map_err(|_| DurationError::Negative(text.into()))
        }
        (true, true) => Err(malformed()),
    }
}

/// `PnYnMnWnDTnHnMnS` -> seconds. Each designator at most once, in order; the last number may have a
/// fraction (ISO allows it on the smallest unit only, `period` is more lenient and so are we).
fn parse_designators(body: &str) -> Option<f64> {
    let rest = body.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date_part, time_part) = match rest.split_once('T') {
        Some((date, time)) => {
            if time.is_empty() {
                return None;
            }
            (date, Some(time))
        }
        None => (rest, None),
    };
    let date_units = [
        ('Y', 365.0 * SECONDS_PER_DAY),
        ('M', 30.0 * SECONDS_PER_DAY),
        ('W', 7.0 * SECONDS_PER_DAY),
        ('D', SECONDS_PER_DAY),
    ];
    let time_units = [('H', 3600.0), ('M', 60.0), ('S', 1.0)];
    let mut total = sum_units(date_part, &date_units)?;
    if let Some(time) = time_part {
        total += sum_units(time, &time_units)?;
    }
    Some(total)
}

fn sum_units(mut text: &str, units: &[(char, f64)]) -> Option<f64> {
    let mut total = 0.0;
    let mut next_unit = 0;
    while !text.is_empty() {
        let number_len = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .filter(|&n| n > 0)?;
        let number: f64 = text[..number_len].replace(',', ".").parse().ok()?;
        let designator = text[number_len..].chars().next()?;
        let position = units[next_unit..]
            .iter()
            .position(|(unit, _)| *unit == designator)?;
        total += number * units[next_unit + position].1;
        next_unit += position + 1;
        text = &text[number_len + designator.len_utf8()..];
    }
    Some(total)
}

fn to_duration(seconds: f64, text: &str) -> Result<Duration, DurationError> {
    Duration::try_from_secs_f64(seconds).map_err(|_| DurationError::Overflow(text.into()))
}

/// Formats a duration back into ISO-8601 (`PT1.5S`), for status fields and messages.
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1000 == 0 {
        format!("PT{}S", millis / 1000)
    } else {
        format!("PT{}S", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_with_a_fraction_parse() {
        assert_eq!(parse("PT0.2S"), Ok(Duration::from_millis(200)));
        assert_eq!(parse("PT0.5S"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("PT30S"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn every_designator_adds_up() {
        assert_eq!(parse("PT1M30S"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("PT2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("P1D"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("P1W"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("P1DT1S"), Ok(Duration::from_secs(86_401)));
        assert_eq!(parse("P1Y"), Ok(Duration::from_secs(365 * 86_400)));
    }

    #[test]
    fn month_and_minute_are_told_apart_by_the_t() {
        assert_eq!(parse("P1M"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("PT1M"), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn zero_is_a_duration() {
        assert_eq!(parse("PT0S"), Ok(Duration::ZERO));
        assert_eq!(parse("-PT0S"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_text_is_refused_with_the_text_quoted() {
        for bad in [
            "", "P", "PT", "1S", "PTS", "PT1", "P1S", "PT1S1M", "PT1H1H", "30s", "PT-1S",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(err, DurationError::Malformed(_)),
                "{bad:?} gave {err:?}"
            );
        }
        assert!(parse("banana")
            .unwrap_err()
            .to_string()
            .contains("\"banana\""));
    }

    #[test]
    fn negative_durations_are_refused() {
        assert_eq!(parse("-PT1S"), Err(DurationError::Negative("-PT1S".into())));
    }

    #[test]
    fn huge_durations_are_refused_not_panicked_on() {
        assert!(matches!(
            parse("PT1e400S"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse("P99999999999999999999999Y"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn an_interval_reduces_to_its_length() {
        let expected = 365 * 86_400 + 2 * 30 * 86_400 + 10 * 86_400 + 2 * 3600 + 30 * 60;
        assert_eq!(
            parse("2007-03-01T13:00:00Z/P1Y2M10DT2H30M"),
            Ok(Duration::from_secs(expected))
        );
        assert_eq!(
            parse("2007-03-01T13:00:00Z/2007-03-01T13:00:05Z"),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(
            parse("PT5S/2007-03-01T13:00:05Z"),
            Ok(Duration::from_secs(5))
        );
        assert!(parse("P1D/P2D").is_err());
        assert!(parse("2007-03-01T13:00:05Z/2007-03-01T13:00:00Z").is_err());
    }

    #[test]
    fn formatting_round_trips_whole_and_fractional_seconds() {
        assert_eq!(format(Duration::from_secs(2)), "PT2S");
        assert_eq!(format(Duration::from_millis(200)), "PT0.2S");
        assert_eq!(
            parse(&format(Duration::from_millis(1500))),
            Ok(Duration::from_millis(1500))
        );
    }
}
