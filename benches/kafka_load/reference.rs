//! The reference knactor is measured against: raw rdkafka behind the same kind of HTTP front as
//! knactor's ingress, in a process of its own (this bench binary run with `--reference`), so that
//! its CPU is read from /proc exactly as a node's is.
//!
//! ```text
//!   POST (binary-mode CloudEvent) ──► actix-web, 2 workers ──► decode, admit, encode
//!       ──► rdkafka produce (the node's producer settings) ──► 202 once Kafka acknowledged it
//!
//!   with --deliver-to URL, beside it:
//!   consumer group (the node's consumer settings) ──► POST each record to URL, 64 in flight
//! ```
//!
//! The front does per request what the node's ingress must do to store an event, with the node's
//! own functions (`decode_message`, `Envelope::admit`, `record::encode`) and nothing else: no
//! routing, no actors, no limits, no metrics. The reader is simpler than the node's dispatcher:
//! it maps record headers to HTTP headers as they are, does not retry, and commits the positions
//! it has read every 20 ms (the node's commit interval), whether or not their deliveries finished
//! (at most once). It is the faster of the two by construction, which is what a reference is for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use knactor_actors::channel::StartAt;
use knactor_actors::envelope::{Envelope, DEFAULT_MAX_TTL};
use knactor_gateway::binding::decode_message;
use knactor_kafka::record::{encode, RecordParts};
use knactor_kafka::KafkaSettings;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Deliveries the reader runs at once: a trigger's default (`--trigger-concurrency`).
const IN_FLIGHT: usize = 64;

/// How often the reader commits: the node's default `--commit-interval`.
const COMMIT_INTERVAL: Duration = Duration::from_millis(20);

/// What the front's handlers share.
struct Front {
    producer: FutureProducer,
    topic: String,
}

/// `--reference --bootstrap B --topic T [--deliver-to URL --group G]`: serves the front (and runs
/// the reader) until killed; prints `reference listening on <url>` once it takes requests.
pub fn serve(args: &[String]) {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let bootstrap = value("--bootstrap").expect("--reference needs --bootstrap");
    let topic = value("--topic").expect("--reference needs --topic");
    let settings = KafkaSettings::new(&bootstrap);
    if let Some(url) = value("--deliver-to") {
        let group = value("--group").unwrap_or_else(|| format!("reference.{topic}"));
        let (settings, topic) = (settings.clone(), topic.clone());
        std::thread::spawn(move || read_and_deliver(&settings, &topic, &group, &url));
    }
    let producer: FutureProducer = settings
        .producer_config()
        .create()
        .expect("a Kafka producer");
    let front = web::Data::new(Front { producer, topic });
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(front.clone())
                .default_service(web::to(publish))
        })
        // As many as the node's --http-workers default on this machine.
        .workers(
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
        )
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("a loopback port");
        let address = server.addrs()[0];
        println!("reference listening on http://{address}");
        server.run().await.expect("the reference front runs");
    });
}

/// One request: its events stored in Kafka, then 202; 400 for what is not an event, 503 for what
/// Kafka did not take.
async fn publish(request: HttpRequest, body: web::Bytes, front: web::Data<Front>) -> HttpResponse {
    let headers: Vec<(&str, &[u8])> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let Ok(events) = decode_message(&headers, &body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut parts = Vec::with_capacity(events.len());
    for event in events {
        match Envelope::admit(event, DEFAULT_MAX_TTL, Utc::now()) {
            Ok(envelope) => parts.push(encode(&envelope)),
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    for part in &parts {
        if produce(&front.producer, &front.topic, part).await.is_err() {
            return HttpResponse::ServiceUnavailable().finish();
        }
    }
    HttpResponse::Accepted().finish()
}

/// Produces one record and waits for its acknowledgement.
async fn produce(producer: &FutureProducer, topic: &str, part: &RecordParts) -> Result<(), ()> {
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
    let delivery = producer.send_result(record).map_err(|_| ())?;
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(()),
    }
}

/// The reader: a consumer-group member of `topic` that POSTs every record to `url`.
fn read_and_deliver(settings: &KafkaSettings, topic: &str, group: &str, url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the reader");
    runtime.block_on(async {
        let consumer: StreamConsumer = settings
            .group_config(group, StartAt::Earliest)
            .create()
            .expect("a Kafka consumer");
        consumer.subscribe(&[topic]).expect("the topic subscribed");
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()
            .expect("an HTTP client");
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut last_commit = Instant::now();
        loop {
            if let Ok(Ok(message)) = tokio::time::timeout(COMMIT_INTERVAL, consumer.recv()).await {
                let mut request = client.post(url);
                if let Some(headers) = message.headers() {
                    for header in headers.iter() {
                        let Some(value) = header.value else { continue };
                        let name = match header.key.strip_prefix("ce_") {
                            Some(attribute) => format!("ce-{attribute}"),
                            None => header.key.to_string(),
                        };
                        request = request.header(name, value);
                    }
                }
                let body = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
                let slot = slots.clone().acquire_owned().await.expect("open semaphore");
                tokio::spawn(async move {
                    let _ = request.body(body).send().await;
                    drop(slot);
                });
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                let _ = consumer.commit_consumer_state(CommitMode::Async);
                last_commit = Instant::now();
            }
        }
    });
}
