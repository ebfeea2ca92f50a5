//! `KafkaLog`: the [`EventLog`] port on one Kafka cluster.
//!
//! - **append**: an idempotent producer with `acks=all`; an append resolves when every record of it
//!   is acknowledged, so the gateway's 202 means "in the in-sync replicas".
//! - **subscribe**: a consumer-group member on a thread of its own ([`crate::group`]).
//! - **read**: a consumer with no group, assigned to one partition at an offset (a lagging trigger
//!   catching up), taken from a small pool.
//! - **admin**: topics created with the broker's partitions, replication and topic configs;
//!   offsets and commits of any group for the parking lot's bookkeeping.
//!
//! Every call into librdkafka that blocks runs on tokio's blocking pool, never on an actor thread.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use knactor_actors::channel::{
    AppendError, ChannelError, EventLog, Offset, Partition, PartitionOffsets, ReadBatch, StartAt,
    Subscription, TopicSpec,
};
use knactor_actors::envelope::Envelope;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::TopicPartitionList;
use tracing::{debug, warn};

use crate::record::{encode, to_record};
use crate::settings::KafkaSettings;
use crate::unavailable;

/// How long an administrative request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a metadata or offsets request may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a catch-up read polls before returning what it has.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// The channel on one Kafka cluster.
pub struct KafkaLog {
    settings: KafkaSettings,
    /// Replaced when librdkafka reports a fatal error (an idempotent producer that lost its
    /// sequence, for example after the cluster lost data): such a producer fails every append
    /// from then on, so the node would answer 503 forever.
    producer: std::sync::RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    readers: Arc<Mutex<Vec<BaseConsumer>>>,
}

impl fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cluster, not its client settings: they may hold the auth Secret's `sasl.password`.
        f.debug_struct("KafkaLog")
            .field("bootstrap", &self.settings.bootstrap)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connects lazily: a wrong address shows up as appends that fail, not here.
    pub fn new(settings: KafkaSettings) -> Result<Self, ChannelError> {
        let producer: FutureProducer = settings
            .producer_config()
            .create()
            .map_err(|error| unavailable("creating the Kafka producer", &error))?;
        let admin: AdminClient<DefaultClientContext> = settings
            .client_config()
            .create()
            .map_err(|error| unavailable("creating the Kafka admin client", &error))?;
        Ok(Self {
            settings,
            producer: std::sync::RwLock::new(producer),
            admin,
            readers: Arc::default(),
        })
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a failed append: when `producer` hit a fatal error, a new producer takes its place
    /// (once, however many appends saw the error).
    fn recover_from_fatal(&self, producer: &FutureProducer) {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if current.client().native_ptr() != producer.client().native_ptr() {
            return;
        }
        match self.settings.producer_config().create::<FutureProducer>() {
            Ok(fresh) => {
                warn!(%code, reason, "the Kafka producer hit a fatal error; a new producer takes over");
                *current = fresh;
            }
            Err(error) => {
                warn!(%code, reason, "the Kafka producer hit a fatal error and a new one cannot be made: {error}")
            }
        }
    }

    /// A consumer outside any group (or in `group`, for reading and committing its offsets without
    /// joining it).
    fn plain_consumer(&self, group: Option<&str>) -> Result<BaseConsumer, ChannelError> {
        let mut config = self.settings.client_config();
        config
            .set("group.id", group.unwrap_or("knactor-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        config
            .create()
            .map_err(|error| unavailable("creating a Kafka consumer", &error))
    }

    async fn blocking<T: Send + 'static>(
        work: impl FnOnce() -> Result<T, ChannelError> + Send + 'static,
    ) -> Result<T, ChannelError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| ChannelError::Unavailable(format!("a Kafka call panicked: {error}")))?
    }

    fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<Partition>, ChannelError> {
        let metadata = consumer
            .fetch_metadata(Some(topic), QUERY_TIMEOUT)
            .map_err(|error| unavailable("reading topic metadata", &error))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| ChannelError::UnknownTopic(topic.to_string()))?;
        Ok(found.partitions().iter().map(|p| p.id()).collect())
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn durable(&self) -> bool {
        true
    }

    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), ChannelError> {
        if spec.external {
            let consumer = self.plain_consumer(None)?;
            let topic = spec.name.clone();
            return Self::blocking(move || Self::partitions_of(&consumer, &topic).map(|_| ()))
                .await
                .map_err(|error| match error {
                    ChannelError::UnknownTopic(topic) => ChannelError::TopicCreateFailed {
                        topic,
                        reason: "the external topic does not exist (knactor never creates one)"
                            .into(),
                    },
                    other => other,
                });
        }
        let replication = spec
            .replication_factor
            .map_or(self.settings.replication_factor, i32::from);
        let config: Vec<(&str, &str)> = spec
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions as i32,
            TopicReplication::Fixed(replication),
        );
        for (key, value) in &config {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Timeout::After(ADMIN_TIMEOUT)));
        let results = self
            .admin
            .create_topics([&topic], &options)
            .await
            .map_err(|error| ChannelError::TopicCreateFailed {
                topic: spec.name.clone(),
                reason: error.to_string(),
            })?;
        for result in results {
            match result {
                Ok(name) => debug!(topic = %name, "topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(ChannelError::TopicCreateFailed {
                        topic: name,
                        reason: code.to_string(),
                    })
                }
            }
        }
        // Kafka answers CreateTopics before every broker knows the topic and its partitions
        // have leaders: until then reads of its offsets fail. Return once it is usable.
        let producer = self.producer();
        let topic = spec.name.clone();
        Self::blocking(move || {
            let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
            loop {
                match topic_ready(&producer, &topic) {
                    Ok(()) => return Ok(()),
                    Err(error) if std::time::Instant::now() >= deadline => {
                        return Err(ChannelError::TopicCreateFailed {
                            topic: topic.clone(),
                            reason: format!("created, but not usable in time: {error}"),
                        })
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .await
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), ChannelError> {
        let options = AdminOptions::new().operation_timeout(Some(Timeout::After(ADMIN_TIMEOUT)));
        let results = self
            .admin
            .delete_topics(&[topic], &options)
            .await
            .map_err(|error| unavailable("deleting a topic", &error))?;
        for result in results {
            if let Err((name, code)) = result {
                if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                    return Err(ChannelError::Unavailable(format!(
                        "deleting topic {name}: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn append(&self, topic: &str, events: Vec<Envelope>) -> Result<(), AppendError> {
        let producer = self.producer();
        let result = append_with(&producer, topic, &events).await;
        if result.is_err() {
            self.recover_from_fatal(&producer);
        }
        result
    }

    async fn probe(&self, topic: &str) -> Result<(), ChannelError> {
        let producer = self.producer();
        let topic = topic.to_string();
        Self::blocking(move || topic_ready(&producer, &topic)).await
    }

    fn subscribe(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
    ) -> Result<Subscription, ChannelError> {
        crate::group::subscribe(&self.settings, topic, group, start)
    }

    async fn read(
        &self,
        topic: &str,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<ReadBatch, ChannelError> {
        let consumer = match self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(consumer) => consumer,
            None => self.plain_consumer(None)?,
        };
        let readers = self.readers.clone();
        let topic = topic.to_string();
        Self::blocking(move || {
            let result = read_partition(&consumer, &topic, partition, from, max);
            // A consumer that failed might be in a bad state: only healthy ones go back.
            if result.is_ok() {
                let _ = consumer.unassign();
                readers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(consumer);
            }
            result
        })
        .await
    }

    async fn offsets(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<PartitionOffsets>, ChannelError> {
        let consumer = self.plain_consumer(Some(group))?;
        let topic = topic.to_string();
        Self::blocking(move || {
            // A leader that moved (a broker restarting, a topic just created) fails a query for
            // a moment: ask again a few times before giving up.
            let mut attempts = 0;
            loop {
                match offsets_of(&consumer, &topic) {
                    Err(ChannelError::Unavailable(_)) if attempts < 20 => {
                        attempts += 1;
                        std::thread::sleep(Duration::from_millis(100 * attempts));
                    }
                    result => return result,
                }
            }
        })
        .await
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: Partition,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<Offset, ChannelError> {
        let consumer = self.plain_consumer(None)?;
        let topic = topic.to_string();
        Self::blocking(move || {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(
                &topic,
                partition,
                rdkafka::Offset::Offset(time.timestamp_millis()),
            )
            .map_err(|error| unavailable("building an offset request", &error))?;
            let found = consumer
                .offsets_for_times(list, QUERY_TIMEOUT)
                .map_err(|error| unavailable("looking up an offset by time", &error))?;
            let offset = found
                .find_partition(&topic, partition)
                .and_then(|element| element.offset().to_raw())
                .filter(|offset| *offset >= 0);
            let (_, high) = consumer
                .fetch_watermarks(&topic, partition, QUERY_TIMEOUT)
                .map_err(|error| unavailable("reading watermarks", &error))?;
            // Some brokers answer offset 0 instead of "none" for a time after the last record:
            // believe an answer only when that record really is that recent.
            match offset.filter(|&offset| offset < high) {
                Some(offset)
                    if record_time(&consumer, &topic, partition, offset)?
                        >= Some(time.timestamp_millis()) =>
                {
                    Ok(offset)
                }
                _ => Ok(high),
            }
        })
        .await
    }

    async fn commit_offsets(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(Partition, Offset)],
    ) -> Result<(), ChannelError> {
        let consumer = self.plain_consumer(Some(group))?;
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
                .map_err(|error| unavailable("building a commit", &error))?;
        }
        Self::blocking(move || {
            consumer
                .commit(&list, CommitMode::Sync)
                .map_err(|error| unavailable("committing offsets", &error))
        })
        .await
    }
}

/// Low and high watermarks of every partition of `topic`, and the consumer's group's commits.
fn offsets_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<PartitionOffsets>, ChannelError> {
    let topic = topic.to_string();
    let partitions = KafkaLog::partitions_of(consumer, &topic)?;
    let mut list = TopicPartitionList::new();
    for &partition in &partitions {
        list.add_partition(&topic, partition);
    }
    // Watermarks before committed offsets: a node appends to a new broker only after it
    // committed the group's start, so "no commit yet" read after the watermarks means the
    // watermarks still are that start (two nodes starting one broker commit the same).
    let watermarks = partitions
        .iter()
        .map(|&partition| {
            consumer
                .fetch_watermarks(&topic, partition, QUERY_TIMEOUT)
                .map_err(|error| unavailable("reading watermarks", &error))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let committed = consumer
        .committed_offsets(list, QUERY_TIMEOUT)
        .map_err(|error| unavailable("reading committed offsets", &error))?;
    Ok(partitions
        .into_iter()
        .zip(watermarks)
        .map(|(partition, (low, high))| {
            let committed = committed
                .find_partition(&topic, partition)
                .and_then(|element| element.offset().to_raw())
                .filter(|offset| *offset >= 0);
            PartitionOffsets {
                partition,
                low,
                high,
                committed,
            }
        })
        .collect())
}

/// Whether `topic` exists and every partition of it has a leader, as the cluster's metadata says.
fn topic_ready(producer: &FutureProducer, topic: &str) -> Result<(), ChannelError> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), QUERY_TIMEOUT)
        .map_err(|error| unavailable("reading topic metadata", &error))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| ChannelError::UnknownTopic(topic.to_string()))?;
    let leaderless: Vec<Partition> = found
        .partitions()
        .iter()
        .filter(|p| p.leader() < 0 || p.error().is_some())
        .map(|p| p.id())
        .collect();
    if leaderless.is_empty() {
        Ok(())
    } else {
        Err(ChannelError::Unavailable(format!(
            "partitions {leaderless:?} of topic {topic} have no leader"
        )))
    }
}

/// Enqueues every record first (in order), then waits for all acknowledgements.
async fn append_with(
    producer: &FutureProducer,
    topic: &str,
    events: &[Envelope],
) -> Result<(), AppendError> {
    let parts: Vec<_> = events.iter().map(encode).collect();
    let mut deliveries = Vec::with_capacity(parts.len());
    for part in &parts {
        let mut headers = OwnedHeaders::new_with_capacity(part.headers.len());
        for (name, value) in &part.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &part.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &part.value {
            record = record.payload(value.as_slice());
        }
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push((delivery, part.size())),
            Err((error, _)) => return Err(append_error(topic, &error, part.size())),
        }
    }
    for (delivery, size) in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(append_error(topic, &error, size)),
            Err(_) => {
                return Err(AppendError::Unavailable(
                    "the Kafka producer was closed".into(),
                ))
            }
        }
    }
    Ok(())
}

/// Reads up to `max` records of one partition from `from`, stopping at the high watermark or
/// after [`READ_TIMEOUT`], whichever comes first (then with what it has, maybe nothing).
fn read_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: Partition,
    from: Offset,
    max: usize,
) -> Result<ReadBatch, ChannelError> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, QUERY_TIMEOUT)
        .map_err(|error| match error {
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition)
            | KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                ChannelError::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                }
            }
            other => unavailable("reading watermarks", &other),
        })?;
    let start = from.max(low);
    let mut batch = ReadBatch {
        records: Vec::new(),
        next: from,
    };
    if start >= high || max == 0 {
        return Ok(batch);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(start))
        .map_err(|error| unavailable("assigning a partition", &error))?;
    consumer
        .assign(&list)
        .map_err(|error| unavailable("assigning a partition", &error))?;
    let wanted = max.min((high - start) as usize);
    let mut looked_at = 0;
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while looked_at < wanted && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Err(error)) => return Err(unavailable("reading a partition", &error)),
            Some(Ok(message)) => {
                looked_at += 1;
                if let Some(record) = to_record(&message) {
                    batch.records.push(record);
                }
                // Not an event (skipped with a warning by `to_record`): its offset still counts
                // as read.
                batch.next = batch.next.max(message.offset() + 1);
                if message.offset() + 1 >= high {
                    break;
                }
            }
        }
    }
    Ok(batch)
}

/// The timestamp (ms) of the record at `offset`, if it can be read.
fn record_time(
    consumer: &BaseConsumer,
    topic: &str,
    partition: Partition,
    offset: Offset,
) -> Result<Option<i64>, ChannelError> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
        .map_err(|error| unavailable("assigning a partition", &error))?;
    consumer
        .assign(&list)
        .map_err(|error| unavailable("assigning a partition", &error))?;
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(result) = consumer.poll(Duration::from_millis(50)) {
            let message = result.map_err(|error| unavailable("reading a record", &error))?;
            return Ok(message.timestamp().to_millis());
        }
    }
    Ok(None)
}

fn append_error(topic: &str, error: &KafkaError, size: usize) -> AppendError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            AppendError::TooLarge {
                size,
                limit: None,
                events: 1,
            }
        }
        Some(RDKafkaErrorCode::QueueFull) => AppendError::Full {
            retry_after: Duration::from_secs(1),
            reason: "the Kafka producer's queue is full (Kafka does not keep up)".into(),
        },
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            AppendError::UnknownTopic(topic.to_string())
        }
        _ => AppendError::Unavailable(error.to_string()),
    }
}

/// Settings as `(key, value)` pairs, for logging what a client was configured with (secrets
/// redacted).
pub fn describe(config: &ClientConfig) -> BTreeMap<String, String> {
    config
        .config_map()
        .iter()
        .map(|(key, value)| {
            let shown = if key.contains("password") || key.ends_with(".pem") || key.contains("key")
            {
                "<redacted>".to_string()
            } else {
                value.clone()
            };
            (key.clone(), shown)
        })
        .collect()
}
