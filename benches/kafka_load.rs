//! Load through a node whose broker lives on Kafka (Apache Kafka, one KRaft broker on loopback),
//! next to references measured in the same run against the same broker:
//!
//! 1. **Ingress to Kafka**: events accepted per second and ack latency (a 202 is Kafka's
//!    acknowledgement), next to raw rdkafka producing the same records (same encoding, same
//!    idempotent `acks=all` producer settings, as many in flight) straight to the same broker.
//! 2. **End to end**: events delivered per second through Kafka to a subscriber.
//! 3. **Bytes read per event** by the broker's dispatcher from Kafka, with 1 trigger and with 100
//!    triggers (goal: the same, since a record is read once per broker, not once per trigger).
//!
//! `cargo bench --bench kafka_load [-- --events N --concurrency C]`; results also go to
//! `target/bench-results/kafka_load.json`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cloudevents::{EventBuilder, EventBuilderV10};
use common::*;
use futures::StreamExt;
use knactor_actors::channel::{EventLog, TopicSpec};
use knactor_actors::envelope::{Envelope, DEFAULT_MAX_TTL};
use knactor_kafka::record::encode;
use knactor_kafka::{KafkaLog, KafkaSettings};
use knactor_testkit::{Channel, Kafka, NodeProcess};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Produces `events` records (the same encoding knactor writes) with `concurrency` in flight.
fn raw_produce(
    runtime: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    topic: &str,
    events: usize,
    concurrency: usize,
) -> Run {
    runtime.block_on(async {
        let began = Instant::now();
        let results: Vec<(Duration, bool)> = futures::stream::iter(0..events)
            .map(|i| async move {
                let event = EventBuilderV10::new()
                    .id(format!("raw-{i}"))
                    .source("/bench")
                    .ty("bench")
                    .data(
                        "application/json",
                        r#"{"payload":"0123456789abcdef0123456789abcdef"}"#,
                    )
                    .build()
                    .unwrap();
                let envelope = Envelope::admit(event, DEFAULT_MAX_TTL, Utc::now()).unwrap();
                let parts = encode(&envelope);
                let mut headers = OwnedHeaders::new();
                for (name, value) in &parts.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(value),
                    });
                }
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(topic).headers(headers);
                if let Some(value) = &parts.value {
                    record = record.payload(value.as_slice());
                }
                let sent = Instant::now();
                let ok = producer.send(record, Duration::from_secs(30)).await.is_ok();
                (sent.elapsed(), ok)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let failures = results.iter().filter(|(_, ok)| !ok).count();
        Run {
            sent_at: Vec::new(),
            ack: results.into_iter().map(|(latency, _)| latency).collect(),
            elapsed: began.elapsed(),
            failures,
        }
    })
}

/// A raw rdkafka consumer-group member reading a topic on a thread, committing every 20 ms.
struct RawReader {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl RawReader {
    fn start(settings: &KafkaSettings, topic: &str) -> Self {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let consumer: BaseConsumer = settings
            .group_config(
                "bench-raw-reader",
                knactor_actors::channel::StartAt::Earliest,
            )
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut read = 0;
            let mut last_commit = Instant::now();
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
                    read += 1;
                }
                if last_commit.elapsed() > Duration::from_millis(20) {
                    let _ = consumer.commit_consumer_state(CommitMode::Async);
                    last_commit = Instant::now();
                }
            }
            read
        });
        Self { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn broker_with_triggers(name: &str, triggers: usize, sink: &str) -> String {
    let mut yaml = format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: bench\n  annotations: {{eventing.knative.dev/broker.class: Kafka}}\nspec: {{}}\n"
    );
    for i in 0..triggers {
        // One trigger takes the bench's events; the others filter on other types.
        let ty = if i == 0 {
            "bench".to_string()
        } else {
            format!("other{i}")
        };
        yaml.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t{i}, namespace: bench}}\n\
             spec: {{broker: {name}, filter: {{attributes: {{type: {ty}}}}}, subscriber: {{uri: '{sink}/{name}'}}}}\n"
        ));
    }
    yaml
}

fn bytes_read(node: &NodeProcess, broker: &str) -> f64 {
    node.metric(
        "knactor_broker_channel_bytes_read_total",
        &format!("namespace=\"bench\",broker=\"{broker}\""),
    )
}

fn main() {
    let events = arg("--events", 10_000);
    let concurrency = arg("--concurrency", 32);
    let start = Instant::now();
    let kafka = Kafka::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1a. The reference: raw rdkafka, same producer settings, same records, same broker.
    let settings = KafkaSettings::new(&kafka.bootstrap);
    let log = KafkaLog::new(settings.clone()).unwrap();
    runtime
        .block_on(log.ensure_topic(&TopicSpec::new("bench-raw", 10)))
        .unwrap();
    let producer: FutureProducer = settings.producer_config().create().unwrap();
    raw_produce(&runtime, &producer, "bench-raw", 1_000, concurrency);
    let raw = raw_produce(&runtime, &producer, "bench-raw", events, concurrency);
    // 1a'. The same while a raw consumer group reads the topic and commits as it goes, which any
    // broker built on Kafka does: what reads and commits beside it cost the producer.
    runtime
        .block_on(log.ensure_topic(&TopicSpec::new("bench-consumed", 10)))
        .unwrap();
    let reading = RawReader::start(&settings, "bench-consumed");
    let raw_consumed = raw_produce(&runtime, &producer, "bench-consumed", events, concurrency);
    let read_back = reading.stop();
    drop(producer);

    // 1b and 2: knactor on the same broker.
    let arrivals = Arrivals::new(start, events);
    let sink = start_sink(arrivals.clone(), "run");
    // The node of the main measurement runs one broker, like the reference's one reader.
    let config = broker_with_triggers("one", 1, &sink);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_knactor"));
    // Every node of the bench: Kafka on the same broker, one node reading every partition.
    let kafka_node = |config: &str| {
        NodeProcess::spawn_on(
            bin,
            config,
            &[
                "--kafka-bootstrap",
                &kafka.bootstrap,
                "--kafka-partition-assignment",
                "all",
            ],
            Channel::Memory,
        )
    };
    let mut node = kafka_node(&config);
    let one = node.broker("bench", "one");
    load(&runtime, &one, "warm", 1_000, concurrency, start);
    let knactor = load(&runtime, &one, "run", events, concurrency, start);
    arrivals.wait_for(events - knactor.failures, Duration::from_secs(300));

    // 3. Bytes read per event: the same events into a broker with 1 trigger and one with 100.
    node.kill();
    let config = format!(
        "{}{}",
        broker_with_triggers("one", 1, &sink),
        broker_with_triggers("hundred", 100, &sink)
    );
    let mut node = kafka_node(&config);
    let one = node.broker("bench", "one");
    let hundred = node.broker("bench", "hundred");
    std::thread::sleep(Duration::from_millis(1500));
    let before_one = bytes_read(&node, "one");
    let before_hundred = bytes_read(&node, "hundred");
    let sample = events.min(5_000);
    load(&runtime, &one, "bytes-one", sample, concurrency, start);
    load(
        &runtime,
        &hundred,
        "bytes-hundred",
        sample,
        concurrency,
        start,
    );
    // Give the deliveries and the once-a-second statistics time to land.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let delivered = |broker: &str| {
            node.metric(
                "knactor_trigger_events_delivered_total",
                &format!("namespace=\"bench\",broker=\"{broker}\",trigger=\"t0\""),
            )
        };
        if delivered("one") >= sample as f64 && delivered("hundred") >= sample as f64 {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(2500));
    let per_event_one = (bytes_read(&node, "one") - before_one) / sample as f64;
    let per_event_hundred = (bytes_read(&node, "hundred") - before_hundred) / sample as f64;
    node.kill();

    let (mut end_to_end, delivered_rate) = arrivals.end_to_end(&knactor);
    let raw_rate = rate(&raw, events);
    let raw_consumed_rate = rate(&raw_consumed, events);
    let mut raw_consumed_ack = raw_consumed.ack.clone();
    let (rc_p50, rc_p99) = (
        percentile(&mut raw_consumed_ack, 0.50),
        percentile(&mut raw_consumed_ack, 0.99),
    );
    let accepted_rate = rate(&knactor, events);
    let (mut raw_ack, mut knactor_ack) = (raw.ack.clone(), knactor.ack.clone());
    let (raw_p50, raw_p99) = (
        percentile(&mut raw_ack, 0.50),
        percentile(&mut raw_ack, 0.99),
    );
    let (ack_p50, ack_p99) = (
        percentile(&mut knactor_ack, 0.50),
        percentile(&mut knactor_ack, 0.99),
    );
    let (e2e_p50, e2e_p99) = (
        percentile(&mut end_to_end, 0.50),
        percentile(&mut end_to_end, 0.99),
    );

    println!("kafka load: {events} events, {concurrency} in flight, Apache Kafka (one KRaft broker) on loopback, 10 partitions");
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "", "events/s", "p50 ms", "p99 ms"
    );
    for (label, rate, p50, p99) in [
        (
            "reference: raw rdkafka produce (acks=all, idempotent)",
            raw_rate,
            raw_p50,
            raw_p99,
        ),
        (
            "reference: the same while a consumer group reads it",
            raw_consumed_rate,
            rc_p50,
            rc_p99,
        ),
        (
            "knactor ingress to Kafka: accepted (202 = acked)",
            accepted_rate,
            ack_p50,
            ack_p99,
        ),
        (
            "knactor end to end through Kafka: delivered",
            delivered_rate,
            e2e_p50,
            e2e_p99,
        ),
    ] {
        println!(
            "{label:<52} {rate:>10.0} {:>10.2} {:>10.2}",
            ms(p50),
            ms(p99)
        );
    }
    println!(
        "ratios: accepted / raw produce {:.2}x, accepted / raw produce while read {:.2}x (the reader read {read_back}); delivered {}/{}; failures: raw {}, knactor {}",
        accepted_rate / raw_rate,
        accepted_rate / raw_consumed_rate,
        arrivals.delivered(),
        events,
        raw.failures,
        knactor.failures
    );
    println!(
        "bytes read from Kafka per event by the dispatcher: 1 trigger {per_event_one:.0}, 100 triggers {per_event_hundred:.0} ({:.2}x)",
        per_event_hundred / per_event_one
    );
    write_results(
        "kafka_load",
        &serde_json::json!({
            "events": events,
            "concurrency": concurrency,
            "raw_produce": {"events_per_s": raw_rate, "p50_ms": ms(raw_p50), "p99_ms": ms(raw_p99)},
            "raw_produce_while_read": {"events_per_s": raw_consumed_rate, "p50_ms": ms(rc_p50), "p99_ms": ms(rc_p99)},
            "ratio_accepted_to_raw_while_read": accepted_rate / raw_consumed_rate,
            "accepted": {"events_per_s": accepted_rate, "p50_ms": ms(ack_p50), "p99_ms": ms(ack_p99)},
            "delivered": {"events_per_s": delivered_rate, "p50_ms": ms(e2e_p50), "p99_ms": ms(e2e_p99), "count": arrivals.delivered()},
            "ratio_accepted_to_raw": accepted_rate / raw_rate,
            "bytes_read_per_event": {"one_trigger": per_event_one, "hundred_triggers": per_event_hundred},
        }),
    );
    assert_eq!(
        arrivals.delivered(),
        events - knactor.failures,
        "every accepted event was delivered"
    );
}
