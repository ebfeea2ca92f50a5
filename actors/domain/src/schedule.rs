//! A PingSource's `schedule` and `timezone`: when it ticks.
//!
//! Knative reads schedules with robfig/cron: five fields (minute hour day-of-month month
//! day-of-week), an optional leading seconds field, the descriptors `@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <duration>`, and a
//! `CRON_TZ=<zone>` (or `TZ=<zone>`) prefix, which is what `spec.timezone` becomes. knactor reads the
//! same text. `@every` points are multiples of the interval since the Unix epoch (robfig counts from
//! the adapter's start), so that a point has the same time on every node and after every restart.

use std::fmt;
use std::num::ParseFloatError;
use std::str::FromStr;
use std::time::{Duration, TryFromFloatSecsError};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// What a schedule that says nothing means (Knative's default).
pub const DEFAULT_SCHEDULE: &str = "* * * * *";

/// When a PingSource ticks.
#[derive(Clone)]
pub struct PingSchedule {
    /// The schedule as written, without a time zone prefix.
    text: String,
    zone: Tz,
    rule: Rule,
}

#[derive(Clone)]
enum Rule {
    Cron(Box<Cron>),
    Every(Duration),
}

/// Why a schedule cannot be used, and which field says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    /// `spec.schedule` or `spec.timezone`.
    pub field: &'static str,
    pub message: String,
}

impl PingSchedule {
    /// Reads `schedule` (default `* * * * *`) in `timezone` (default UTC, or the schedule's own
    /// `CRON_TZ=` prefix).
    pub fn parse(schedule: Option<&str>, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let schedule_error = |message: String| ScheduleError {
            field: "spec.schedule",
            message,
        };
        let written = schedule
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCHEDULE);
        let (prefix_zone, text) = split_zone_prefix(written);
        let zone_name = match (
            timezone.map(str::trim).filter(|t| !t.is_empty()),
            prefix_zone,
        ) {
            (Some(field), Some(prefix)) if field != prefix => {
                return Err(ScheduleError {
                    field: "spec.timezone",
                    message: format!(
                    "{field:?} contradicts the schedule's own CRON_TZ={prefix}: keep one of them"
                ),
                })
            }
            (Some(zone), _) | (None, Some(zone)) => Some(zone),
            (None, None) => None,
        };
        let zone = match zone_name {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError {
                field: if timezone.is_some() {
                    "spec.timezone"
                } else {
                    "spec.schedule"
                },
                message: format!(
                    "{name:?} is not an IANA time zone (such as Europe/Paris or America/New_York)"
                ),
            })?,
        };
        let rule = if let Some(interval) = text.strip_prefix("@every") {
            let interval = parse_go_duration(interval.trim())
                .map_err(|problem| schedule_error(format!("{text:?}: {problem}")))?;
            if interval < Duration::from_secs(1) {
                return Err(schedule_error(format!(
                    "{text:?}: the interval must be at least one second"
                )));
            }
            Rule::Every(interval)
        } else {
            let pattern = if text.eq_ignore_ascii_case("@midnight") {
                "@daily"
            } else {
                text
            };
            let fields = pattern.split_whitespace().count();
            if !pattern.starts_with('@') && !(5..=6).contains(&fields) {
                return Err(schedule_error(format!(
                    "{text:?} has {fields} fields: write minute hour day-of-month month day-of-week, optionally after a seconds field"
                )));
            }
            let cron = Cron::new(pattern)
                .with_seconds_optional()
                .parse()
                .map_err(|error| {
                    schedule_error(format!("{text:?} is not a cron schedule: {error}"))
                })?;
            Rule::Cron(Box::new(cron))
        };
        Ok(Self {
            text: text.to_string(),
            zone,
            rule,
        })
    }

    /// The first schedule point strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Every(interval) => {
                let step = interval.as_millis() as i64;
                let next = (after.timestamp_millis().div_euclid(step) + 1) * step;
                DateTime::from_timestamp_millis(next)
            }
            Rule::Cron(cron) => {
                // Points are whole seconds: start from the second `after` falls in.
                let whole = DateTime::from_timestamp(after.timestamp(), 0)?;
                let local = self.zone.from_utc_datetime(&whole.naive_utc());
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|next| next.with_timezone(&Utc))
            }
        }
    }

    /// The schedule as written (without a time zone prefix).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The IANA name of the time zone the schedule is read in.
    pub fn zone(&self) -> &str {
        self.zone.name()
    }
}

impl fmt::Debug for PingSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PingSchedule({:?} in {})", self.text, self.zone.name())
    }
}

impl PartialEq for PingSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

fn split_zone_prefix(schedule: &str) -> (Option<&str>, &str) {
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = schedule.strip_prefix(prefix) {
            let (zone, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return (Some(zone), text.trim());
        }
    }
    (None, schedule)
}

/// Why an `@every` interval is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum GoDurationError {
    #[error("@every needs an interval such as 30s, 5m or 1h30m")]
    Empty,
    #[error("{text:?} is not a duration such as 30s, 5m or 1h30m")]
    NotANumber {
        text: String,
        #[source]
        source: ParseFloatError,
    },
    #[error("{text:?} is not a duration such as 30s, 5m or 1h30m (units h, m, s, ms)")]
    UnknownUnit { text: String },
    #[error("{text:?} is out of range")]
    OutOfRange {
        text: String,
        #[source]
        source: TryFromFloatSecsError,
    },
}

/// Go's `time.ParseDuration` units (`1h30m`, `90s`, `500ms`), which `@every` takes.
fn parse_go_duration(text: &str) -> Result<Duration, GoDurationError> {
    if text.is_empty() {
        return Err(GoDurationError::Empty);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let value: f64 = number
            .parse()
            .map_err(|source| GoDurationError::NotANumber {
                text: text.to_string(),
                source,
            })?;
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => {
                return Err(GoDurationError::UnknownUnit {
                    text: text.to_string(),
                })
            }
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|source| GoDurationError::OutOfRange {
        text: text.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(schedule: &str, zone: Option<&str>, after: &str) -> String {
        PingSchedule::parse(Some(schedule), zone)
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn five_fields_tick_on_minutes_and_six_on_seconds() {
        assert_eq!(
            next("*/5 * * * *", None, "2026-11-24T10:02:30Z"),
            "2026-11-24T10:05:00+00:00"
        );
        assert_eq!(
            next("*/10 * * * * *", None, "2026-11-24T10:02:31.500Z"),
            "2026-11-24T10:02:40+00:00"
        );
        assert_eq!(
            next("* * * * * *", None, "2026-11-24T10:02:31.999Z"),
            "2026-11-24T10:02:32+00:00",
            "strictly after the second it is in"
        );
    }

    #[test]
    fn a_time_zone_shifts_the_points() {
        // 09:00 in Paris (UTC+1 in November) is 08:00 UTC.
        assert_eq!(
            next("0 9 * * *", Some("Europe/Paris"), "2026-11-24T00:00:00Z"),
            "2026-11-24T08:00:00+00:00"
        );
        assert_eq!(
            next(
                "CRON_TZ=Europe/Paris 0 9 * * *",
                None,
                "2026-11-24T00:00:00Z"
            ),
            "2026-11-24T08:00:00+00:00"
        );
    }

    #[test]
    fn descriptors_and_every() {
        assert_eq!(
            next("@hourly", None, "2026-11-24T10:02:00Z"),
            "2026-11-24T11:00:00+00:00"
        );
        assert_eq!(
            next("@midnight", None, "2026-11-24T10:02:00Z"),
            "2026-11-25T00:00:00+00:00"
        );
        assert_eq!(
            next("@every 90s", None, "1970-01-01T00:01:00Z"),
            "1970-01-01T00:01:30+00:00"
        );
        assert_eq!(
            next("@every 1h30m", None, "1970-01-01T01:00:00Z"),
            "1970-01-01T01:30:00+00:00"
        );
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let error = |s: &str, z: Option<&str>| PingSchedule::parse(Some(s), z).unwrap_err();
        assert_eq!(error("* * *", None).field, "spec.schedule");
        assert!(error("61 * * * *", None)
            .message
            .contains("not a cron schedule"));
        assert_eq!(
            error("* * * * *", Some("Mars/Olympus")).field,
            "spec.timezone"
        );
        assert_eq!(
            error("CRON_TZ=Asia/Tokyo * * * * *", Some("Europe/Paris")).field,
            "spec.timezone"
        );
        assert!(error("@every soon", None)
            .message
            .contains("not a duration"));
        assert!(error("@every 10ms", None)
            .message
            .contains("at least one second"));
    }

    #[test]
    fn no_schedule_is_every_minute() {
        let schedule = PingSchedule::parse(None, None).unwrap();
        assert_eq!(schedule.text(), DEFAULT_SCHEDULE);
        assert_eq!(schedule.zone(), "UTC");
    }
}
