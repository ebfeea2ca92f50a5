//! `BrokerActor`: the write side of one broker.
//!
//! Owns the broker's admission rule (TTL, arrival time) and its two topics: the channel, where
//! accepted events go, and the parking lot, where events whose delivery gave up are kept.
//!
//! Answers: [`Publish`] (from the gateway and from triggers' replies; resolves once the events are
//! stored), [`ListParked`], [`Redrive`], [`Shutdown`], [`Crash`].

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use cloudevents::Event;

use super::{Crash, Shared, Shutdown};
use crate::channel::{AppendError, ChannelError, EventLog, Offset, Partition};
use crate::envelope::{
    AdmitError, Envelope, ERROR_CODE_EXTENSION, ERROR_DATA_EXTENSION, ERROR_DEST_EXTENSION,
    PARKED_AT_EXTENSION, PARKED_REASON_EXTENSION, PARKED_TRIGGER_EXTENSION,
    REDRIVE_TARGET_EXTENSION,
};
use crate::metrics::{inc, BrokerMetrics};
use crate::resources::ObjectKey;
use crate::routes::BrokerRoute;

/// The group whose committed offsets mark which parked events were re-driven.
pub const PARKING_GROUP: &str = "knactor-parking";

pub struct BrokerActor {
    route: Arc<BrokerRoute>,
    shared: Arc<Shared>,
    /// The broker's channel.
    log: Arc<dyn EventLog>,
    metrics: Arc<BrokerMetrics>,
}

impl BrokerActor {
    pub fn new(route: Arc<BrokerRoute>, shared: Arc<Shared>, log: Arc<dyn EventLog>) -> Self {
        let metrics = shared.metrics.broker(route.key());
        Self {
            route,
            shared,
            log,
            metrics,
        }
    }
}

impl Actor for BrokerActor {
    type Context = Context<Self>;
}

/// Admit and store events.
#[derive(Message)]
#[rtype(result = "Result<(), PublishError>")]
pub struct Publish {
    pub events: Vec<Event>,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error(transparent)]
    Append(#[from] AppendError),
}

impl Handler<Publish> for BrokerActor {
    type Result = ResponseFuture<Result<(), PublishError>>;

    /// Admits every event (all or none), then appends them; resolves when they are stored.
    fn handle(&mut self, publish: Publish, _: &mut Context<Self>) -> Self::Result {
        let now = Utc::now();
        let max_ttl = self.shared.options.max_ttl;
        let admitted: Result<Vec<Envelope>, AdmitError> = publish
            .events
            .into_iter()
            .map(|event| Envelope::admit(event, max_ttl, now))
            .collect();
        let metrics = self.metrics.clone();
        let log = self.log.clone();
        let topic = self.route.channel.topic.clone();
        Box::pin(async move {
            let envelopes = admitted.inspect_err(|_| inc(&metrics.refused))?;
            let count = envelopes.len() as u64;
            match log.append(&topic, envelopes).await {
                Ok(()) => {
                    metrics
                        .accepted
                        .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                }
                Err(error) => {
                    inc(&metrics.refused);
                    Err(error.into())
                }
            }
        })
    }
}

/// A parked event, as listed.
#[derive(Debug, Clone)]
pub struct ParkedEvent {
    pub partition: Partition,
    pub offset: Offset,
    /// `<namespace>/<name>` of the trigger whose delivery gave up.
    pub trigger: String,
    pub reason: String,
    pub parked_at: String,
    pub event: Event,
}

/// List the events parked and not yet re-driven (at most `max`).
#[derive(Message)]
#[rtype(result = "Result<ParkedList, ChannelError>")]
pub struct ListParked {
    pub max: usize,
}

/// Parked events, and how many there are in all.
#[derive(Debug, Clone, Default)]
pub struct ParkedList {
    pub total: u64,
    pub events: Vec<ParkedEvent>,
}

impl Handler<ListParked> for BrokerActor {
    type Result = ResponseFuture<Result<ParkedList, ChannelError>>;

    /// Reads the parking lot from the re-drive mark to its end.
    fn handle(&mut self, list: ListParked, _: &mut Context<Self>) -> Self::Result {
        let log = self.log.clone();
        let topic = self.route.channel.park_topic();
        Box::pin(async move {
            let mut parked = ParkedList::default();
            for partition in log.offsets(&topic, PARKING_GROUP).await? {
                let from = partition
                    .committed
                    .unwrap_or(partition.low)
                    .max(partition.low);
                parked.total += (partition.high - from).max(0) as u64;
                let room = list.max.saturating_sub(parked.events.len());
                if room == 0 {
                    continue;
                }
                let records = log.read(&topic, partition.partition, from, room).await?;
                parked.events.extend(records.iter().map(|record| {
                    let event = record.envelope.event();
                    let text = |name: &str| {
                        event
                            .extension(name)
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    };
                    ParkedEvent {
                        partition: record.partition,
                        offset: record.offset,
                        trigger: text(PARKED_TRIGGER_EXTENSION),
                        reason: text(PARKED_REASON_EXTENSION),
                        parked_at: text(PARKED_AT_EXTENSION),
                        event: event.clone(),
                    }
                }));
            }
            Ok(parked)
        })
    }
}

/// Deliver parked events again: to the trigger that parked them, and only to it. With a trigger
/// named, only its parked events go; the others stay parked.
#[derive(Message)]
#[rtype(result = "Result<RedriveReport, ChannelError>")]
pub struct Redrive {
    pub trigger: Option<ObjectKey>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Put back into the broker for their trigger.
    pub redriven: u64,
    /// Left parked: for another trigger than the one asked, or for a trigger that no longer exists.
    pub kept: u64,
}

impl Handler<Redrive> for BrokerActor {
    type Result = ResponseFuture<Result<RedriveReport, ChannelError>>;

    /// Moves parked events back into the channel, marked for their trigger. The parking lot is an
    /// append-only log, so events that stay parked are appended to it again before the re-drive
    /// mark moves past them.
    fn handle(&mut self, redrive: Redrive, _: &mut Context<Self>) -> Self::Result {
        let log = self.log.clone();
        let topic = self.route.channel.topic.clone();
        let park_topic = self.route.channel.park_topic();
        let live: BTreeSet<String> = self
            .route
            .triggers
            .iter()
            .map(|trigger| trigger.key.to_string())
            .collect();
        let wanted = redrive.trigger.map(|key| key.to_string());
        Box::pin(async move {
            let mut report = RedriveReport::default();
            for partition in log.offsets(&park_topic, PARKING_GROUP).await? {
                let mut from = partition
                    .committed
                    .unwrap_or(partition.low)
                    .max(partition.low);
                while from < partition.high {
                    let records = log
                        .read(&park_topic, partition.partition, from, 256)
                        .await?;
                    let Some(last) = records.last() else { break };
                    let next = last.offset + 1;
                    for record in records.iter().filter(|r| r.offset < partition.high) {
                        let event = record.envelope.event();
                        let trigger = event
                            .extension(PARKED_TRIGGER_EXTENSION)
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        let selected = wanted.as_ref().is_none_or(|wanted| *wanted == trigger);
                        if selected && live.contains(&trigger) {
                            let mut event = event.clone();
                            for name in [
                                PARKED_TRIGGER_EXTENSION,
                                PARKED_REASON_EXTENSION,
                                PARKED_AT_EXTENSION,
                                ERROR_DEST_EXTENSION,
                                ERROR_CODE_EXTENSION,
                                ERROR_DATA_EXTENSION,
                            ] {
                                event.remove_extension(name);
                            }
                            event.set_extension(REDRIVE_TARGET_EXTENSION, trigger);
                            log.append(&topic, vec![Envelope::from_stored(event)])
                                .await
                                .map_err(|error| ChannelError::Unavailable(error.to_string()))?;
                            report.redriven += 1;
                        } else {
                            log.append(&park_topic, vec![Envelope::from_stored(event.clone())])
                                .await
                                .map_err(|error| ChannelError::Unavailable(error.to_string()))?;
                            report.kept += 1;
                        }
                    }
                    from = next.min(partition.high);
                    log.commit_offsets(&park_topic, PARKING_GROUP, &[(partition.partition, from)])
                        .await?;
                }
            }
            Ok(report)
        })
    }
}

impl Handler<Shutdown> for BrokerActor {
    /// Stops the actor.
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Crash> for BrokerActor {
    /// Panics (fault injection).
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!(
            "fault injection: broker {} crashed on request",
            self.route.key()
        );
    }
}
