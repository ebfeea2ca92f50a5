//! The PingSource: one event per schedule point, exactly once across restarts.
//!
//! The task keeps the last schedule point whose event its sink accepted (in the [`StateStore`](super::StateStore)),
//! and after a restart first sends the points it missed while it was down (up to
//! [`MAX_CATCH_UP`] of them, none older than [`CATCH_UP_WINDOW`]), then ticks on. A point's event
//! id is derived from the source and the point, so the one event that a crash between delivery and
//! save can repeat is recognisably the same event. Knative sends a fresh UUID per tick and skips the
//! points it was down for.
//!
//! The first start of a source (nothing saved, or a changed schedule) begins with the next point.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use cloudevents::{Event, EventBuilder as _, EventBuilderV10};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::{info, warn};

use super::{
    source_identity, stable_event_id, state_key, SourceContext, SourceStopped, SourceTask,
    StateError,
};
use crate::routes::{PingSource, PING_EVENT_TYPE};

/// Most missed points sent after a restart or an outage of the sink; older ones are skipped.
pub const MAX_CATCH_UP: usize = 100;
/// Missed points older than this are skipped.
pub const CATCH_UP_WINDOW: TimeDelta = TimeDelta::hours(24);

/// What a PingSource saves after each accepted tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Position {
    schedule: String,
    timezone: String,
    last: DateTime<Utc>,
}

/// Why a PingSource's task stopped.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("cannot load the last delivered tick: {0}")]
    LoadFailed(#[source] StateError),
    #[error("cannot save the last delivered tick: {0}")]
    SaveFailed(#[source] StateError),
    #[error("the schedule {schedule:?} has no further points")]
    ScheduleEnded { schedule: String },
}

#[derive(Debug)]
pub struct PingTask {
    source: Arc<PingSource>,
}

impl PingTask {
    pub fn new(source: Arc<PingSource>) -> Self {
        Self { source }
    }
}

impl SourceTask for PingTask {
    fn run(
        self: Box<Self>,
        context: SourceContext,
    ) -> BoxFuture<'static, Result<(), SourceStopped>> {
        run(self.source, context)
            .map(|outcome| outcome.map_err(SourceStopped::from))
            .boxed()
    }
}

async fn run(source: Arc<PingSource>, context: SourceContext) -> Result<(), PingError> {
    let key = state_key(
        "pingsource",
        &source_identity(source.uid.as_deref(), &source.key),
    );
    let schedule = &source.schedule;
    let saved: Option<Position> = context
        .state
        .load(&key)
        .await
        .map_err(PingError::LoadFailed)?
        .and_then(|text| serde_json::from_str(&text).ok());
    let mut cursor = match saved {
        Some(position)
            if position.schedule == schedule.text() && position.timezone == schedule.zone() =>
        {
            info!(source = %source.key, last = %position.last, "PingSource resumes after its last delivered tick");
            position.last
        }
        _ => Utc::now(),
    };
    context.health.set_ready();
    loop {
        let now = Utc::now();
        let (resumed, skipped) = skip_stale(source.as_ref(), cursor, now);
        if skipped > 0 {
            warn!(source = %source.key, skipped, "PingSource skips missed ticks older than its catch-up bound ({MAX_CATCH_UP} ticks, {CATCH_UP_WINDOW})");
            cursor = resumed;
        }
        let Some(point) = schedule.next_after(cursor) else {
            return Err(PingError::ScheduleEnded {
                schedule: schedule.text().to_string(),
            });
        };
        if let Ok(wait) = (point - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        match context.sink.deliver(ping_event(&source, point)).await {
            Ok(()) => context.health.clear_problem(),
            Err(rejected) => {
                warn!(source = %source.key, "{rejected}");
                context.health.set_problem(rejected.to_string());
            }
        }
        let position = Position {
            schedule: schedule.text().to_string(),
            timezone: schedule.zone().to_string(),
            last: point,
        };
        let text = serde_json::to_string(&position).expect("a position is JSON");
        context
            .state
            .save(&key, &text)
            .await
            .map_err(PingError::SaveFailed)?;
        cursor = point;
    }
}

/// When more than [`MAX_CATCH_UP`] points (or points older than [`CATCH_UP_WINDOW`]) lie between
/// `cursor` and `now`, the cursor that keeps only the newest ones, and how many were skipped.
fn skip_stale(
    source: &PingSource,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, usize) {
    let schedule = &source.schedule;
    if schedule.next_after(cursor).is_none_or(|next| next > now) {
        return (cursor, 0);
    }
    let mut start = cursor;
    let mut skipped = 0;
    if now - cursor > CATCH_UP_WINDOW {
        start = now - CATCH_UP_WINDOW;
        let mut point = cursor;
        while let Some(next) = schedule.next_after(point).filter(|next| *next <= start) {
            skipped += 1;
            point = next;
        }
    }
    let mut missed = vec![start];
    let mut point = start;
    while let Some(next) = schedule.next_after(point).filter(|next| *next <= now) {
        missed.push(next);
        point = next;
    }
    let points = missed.len() - 1;
    if points > MAX_CATCH_UP {
        let dropped = points - MAX_CATCH_UP;
        (missed[dropped], skipped + dropped)
    } else {
        (start, skipped)
    }
}

/// The event of one schedule point.
pub fn ping_event(source: &PingSource, point: DateTime<Utc>) -> Event {
    let id = stable_event_id(
        &source_identity(source.uid.as_deref(), &source.key),
        &[
            source.schedule.text(),
            &point.to_rfc3339_opts(SecondsFormat::Millis, true),
        ],
    );
    let mut event = EventBuilderV10::new()
        .id(id)
        .ty(PING_EVENT_TYPE)
        .source(source.event_source())
        .time(point)
        .build()
        .expect("id, type and source are set");
    if let Some(data) = &source.data {
        match &source.content_type {
            Some(content_type) => {
                event.set_data(content_type, data.to_vec());
            }
            None => {
                event.set_data_unchecked(data.to_vec());
            }
        }
    }
    for (name, value) in &source.extensions {
        event.set_extension(name, value.as_str());
    }
    event
}

#[cfg(test)]
mod tests {
    use cloudevents::AttributesReader as _;

    use super::*;
    use crate::resources::Strictness;
    use crate::routes::{load_str, Resource};

    fn source(schedule: &str) -> PingSource {
        let yaml = format!(
            "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p, namespace: ns}}\n\
             spec: {{schedule: '{schedule}', contentType: text/plain, data: hi, ceOverrides: {{extensions: {{team: a}}}}, sink: {{uri: 'http://x/'}}}}\n"
        );
        let report = load_str(&yaml, "p.yaml", Strictness::Strict);
        match report.accepted.into_iter().next() {
            Some((_, Resource::PingSource(source))) => source,
            _ => panic!("{:?}", report.refused),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_event_per_point_with_a_stable_id() {
        let source = source("* * * * *");
        let first = ping_event(&source, at("2026-11-24T10:00:00Z"));
        assert_eq!(first.ty(), "dev.knative.sources.ping");
        assert_eq!(
            first.source().to_string(),
            "/apis/v1/namespaces/ns/pingsources/p"
        );
        assert_eq!(
            first.time().unwrap().to_rfc3339(),
            "2026-11-24T10:00:00+00:00"
        );
        assert_eq!(first.datacontenttype(), Some("text/plain"));
        assert_eq!(first.extension("team").unwrap().to_string(), "a");
        let again = ping_event(&source, at("2026-11-24T10:00:00Z"));
        let next = ping_event(&source, at("2026-11-24T10:01:00Z"));
        assert_eq!(first.id(), again.id(), "the same point is the same event");
        assert_ne!(first.id(), next.id());
    }

    #[test]
    fn missed_points_are_caught_up_within_bounds() {
        let every_minute = source("* * * * *");
        let now = at("2026-11-24T10:00:30Z");
        // Three missed minutes: all sent.
        assert_eq!(
            skip_stale(&every_minute, at("2026-11-24T09:57:00Z"), now),
            (at("2026-11-24T09:57:00Z"), 0)
        );
        // Two hundred missed minutes: the newest hundred are kept.
        let (cursor, skipped) = skip_stale(&every_minute, now - TimeDelta::minutes(200), now);
        assert_eq!(skipped, 100);
        assert_eq!(
            every_minute.schedule.next_after(cursor),
            Some(at("2026-11-24T08:21:00Z"))
        );
        // Two days down: nothing older than a day.
        let (cursor, skipped) = skip_stale(&every_minute, now - TimeDelta::days(2), now);
        assert!(skipped > 24 * 60);
        assert!(now - cursor <= TimeDelta::minutes(101));
        // Nothing missed.
        assert_eq!(skip_stale(&every_minute, now, now), (now, 0));
    }
}
