//! `anomalyd serve`: Kafka in; reconstruction scores, Prometheus metrics and
//! anomaly events out.
//!
//! One task owns the consumer and all per-series state; windows are batched
//! across series and sent over a bounded queue to a dedicated inference
//! thread; results come back in order, go through each series' causal
//! detector, update the metrics and produce events. Offsets are stored only
//! after a batch's results (and the events they caused) are done, in
//! consumption order, so delivery is at-least-once. At most
//! `scoring.queue_batches` batches are in flight: when the model is slow the
//! consumer stops reading instead of buffering.

pub mod codec;
mod http;
pub mod series;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burn::prelude::*;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{EventFormat, ServeConfig};
use crate::detect::EventChange;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::Network;
use crate::model::artifact::TrainedModel;
use codec::{Invalid, decode, format_of};
use prost::Message as _;
use series::{Admission, OpenEvent, SeriesTable, normalise};

/// Shared readiness: the model is loaded and partitions are assigned.
#[derive(Debug, Default)]
pub struct Readiness {
    pub model_loaded: AtomicBool,
    pub assigned_partitions: AtomicUsize,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.model_loaded.load(Ordering::Relaxed)
            && self.assigned_partitions.load(Ordering::Relaxed) > 0
    }
}

/// The consumer's callbacks: a synchronous commit before partitions are
/// revoked, readiness bookkeeping, lag from librdkafka's statistics.
struct ServeContext {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    revoked: mpsc::UnboundedSender<Vec<(String, i32)>>,
}

impl ClientContext for ServeContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for ServeContext {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Everything stored so far is committed before another member
            // takes these partitions over.
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => self.metrics.offsets_committed.inc(),
                Err(e) => tracing::debug!(error = %e, "commit on revoke (nothing stored yet?)"),
            }
            let lost: Vec<(String, i32)> = partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let _ = self.revoked.send(lost);
            self.readiness
                .assigned_partitions
                .store(0, Ordering::Relaxed);
            self.metrics.ready.set(0.0);
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.readiness
                .assigned_partitions
                .store(partitions.count(), Ordering::Relaxed);
            tracing::info!(partitions = partitions.count(), "partitions assigned");
            if self.readiness.ready() {
                self.metrics.ready.set(1.0);
            }
        }
    }
}

/// A window waiting for its score.
struct Job {
    series: String,
    time: f64,
}

/// Windows batched across series, plus the offsets they carry.
#[derive(Default)]
struct Batch {
    windows: Vec<f32>,
    jobs: Vec<Job>,
    /// Highest consumed offset per partition up to the batch's close.
    offsets: HashMap<(String, i32), i64>,
    opened: Option<Instant>,
}

struct Scored {
    batch: Batch,
    /// `[jobs, F]` per-feature errors.
    per_feature: Vec<f32>,
}

/// A running daemon.
pub struct Running {
    pub http_addr: SocketAddr,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    pub task: tokio::task::JoinHandle<Result<()>>,
    /// Notify to reload the model artifact (what SIGHUP does).
    pub reload: Arc<Notify>,
}

fn kafka_error(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("kafka {context}: {e}"))
}

/// The event written to `kafka.events_topic`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AnomalyEvent {
    pub series: String,
    pub start: f64,
    pub end: f64,
    pub peak_score: f64,
    pub threshold: f64,
    pub model: String,
    pub kind: String,
    /// Features by their share of the peak window's error, largest first.
    pub top_features: Vec<FeatureContribution>,
}

impl AnomalyEvent {
    /// The `anomalyd.v1.AnomalyEvent` form.
    pub fn to_proto(&self) -> crate::proto::AnomalyEvent {
        crate::proto::AnomalyEvent {
            series: self.series.clone(),
            start_ms: (self.start * 1000.0).round() as i64,
            end_ms: (self.end * 1000.0).round() as i64,
            peak_score: self.peak_score,
            threshold: self.threshold,
            model: self.model.clone(),
            kind: self.kind.clone(),
            top_features: self
                .top_features
                .iter()
                .map(|f| crate::proto::FeatureContribution {
                    feature: f.feature.clone(),
                    error: f.error,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FeatureContribution {
    pub feature: String,
    pub error: f64,
}

/// Loads the model, binds the HTTP endpoints, connects to Kafka and starts
/// the pipeline. Start-up errors (config, artifact, bind) return here.
pub async fn start(config: ServeConfig, shutdown: CancellationToken) -> Result<Running> {
    config.validate()?;
    let device: DeviceSpec = if config.model.device.is_empty() {
        DeviceSpec::Cpu
    } else {
        config.model.device.parse()?
    };
    let device = device.build();
    let model = TrainedModel::load(&config.model.path, &device)?;
    let metrics = Arc::new(Metrics::new(config.series.max_series_labels)?);
    let readiness = Arc::new(Readiness::default());
    let manifest = &model.manifest;
    metrics
        .model_info
        .with_label_values(&[
            &config.model.path.display().to_string(),
            &format!("{:?}", manifest.model.kind()).to_lowercase(),
            &manifest.anomalyd_version,
        ])
        .set(1);
    readiness.model_loaded.store(true, Ordering::Relaxed);

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| Error::config("http.listen", format!("{}: {e}", config.http.listen)))?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| Error::config("http.listen", e.to_string()))?;
    http::spawn(
        listener,
        metrics.clone(),
        readiness.clone(),
        shutdown.clone(),
    );

    // Revocations are rare; the queue is bounded by the rebalances.
    let (revoked_tx, revoked_rx) = mpsc::unbounded_channel();
    let context = ServeContext {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        revoked: revoked_tx,
    };
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    for (key, value) in &config.kafka.properties {
        client.set(key, value);
    }
    let consumer: StreamConsumer<ServeContext> = client
        .create_with_context(context)
        .map_err(|e| kafka_error("consumer", e))?;
    let topics: Vec<&str> = config.kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| kafka_error("subscribe", e))?;
    let producer: Option<FutureProducer> =
        if config.kafka.events_topic.is_some() || config.kafka.dead_letter_topic.is_some() {
            let mut producer = ClientConfig::new();
            producer.set("bootstrap.servers", &config.kafka.brokers);
            for (key, value) in &config.kafka.properties {
                producer.set(key, value);
            }
            Some(producer.create().map_err(|e| kafka_error("producer", e))?)
        } else {
            None
        };
    tracing::info!(
        brokers = %config.kafka.brokers,
        topics = ?config.kafka.topics,
        group = %config.kafka.group_id,
        http = %http_addr,
        model = %config.model.path.display(),
        "anomalyd serving"
    );
    let pipeline = Pipeline {
        metrics: metrics.clone(),
        table: SeriesTable::new(
            manifest.windowing.window,
            manifest.windowing.feature_names.len(),
            config.scoring.stride,
            config.series.max_series,
            config.series.max_gap_seconds,
            config.detector,
            manifest.threshold.value,
        ),
        model_name: config.model.path.display().to_string(),
        model_kind: format!("{:?}", manifest.model.kind()).to_lowercase(),
        feature_names: manifest.windowing.feature_names.clone(),
        scaler: manifest.scaler.clone(),
        window: manifest.windowing.window,
        producer,
        revoked: revoked_rx,
        device,
        config,
    };
    let reload = Arc::new(Notify::new());
    let task = tokio::spawn(pipeline.run(consumer, model.network, shutdown, reload.clone()));
    Ok(Running {
        http_addr,
        readiness,
        metrics,
        task,
        reload,
    })
}

struct Pipeline {
    metrics: Arc<Metrics>,
    table: SeriesTable,
    model_name: String,
    model_kind: String,
    feature_names: Vec<String>,
    scaler: crate::data::Scaler,
    window: usize,
    producer: Option<FutureProducer>,
    revoked: mpsc::UnboundedReceiver<Vec<(String, i32)>>,
    device: Device,
    config: ServeConfig,
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Pipeline {
    async fn run(
        mut self,
        consumer: StreamConsumer<ServeContext>,
        network: Network,
        shutdown: CancellationToken,
        reload: Arc<Notify>,
    ) -> Result<()> {
        let device = self.device.clone();
        let capacity = self.config.scoring.queue_batches;
        let (batch_tx, batch_rx) = mpsc::channel::<Work>(capacity);
        let (scored_tx, mut scored_rx) = mpsc::channel::<Result<Scored>>(capacity);
        let shape = (self.window, self.feature_names.len());
        let inference_metrics = self.metrics.clone();
        let inference = std::thread::Builder::new()
            .name("anomalyd-inference".into())
            .spawn(move || {
                infer_loop(
                    network,
                    device,
                    shape,
                    batch_rx,
                    scored_tx,
                    inference_metrics,
                )
            })
            .map_err(|e| Error::Backend(format!("starting the inference thread: {e}")))?;

        let max_wait = Duration::from_millis(self.config.scoring.max_wait_ms);
        let mut batch = Batch::default();
        let mut in_flight = 0usize;
        let mut batch_tx = Some(batch_tx);
        loop {
            let deadline = batch
                .opened
                .map(|opened| tokio::time::Instant::from_std(opened + max_wait));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = reload.notified() => {
                    if let Some(tx) = &batch_tx {
                        self.reload(tx).await?;
                    }
                }
                Some(scored) = scored_rx.recv() => {
                    in_flight -= 1;
                    self.finish_batch(&consumer, scored?).await;
                }
                _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                    if let Some(tx) = &batch_tx {
                        in_flight += send_batch(tx, &mut batch).await?;
                    }
                }
                message = consumer.recv(), if in_flight < capacity => {
                    self.drop_revoked();
                    match message {
                        Ok(message) => self.admit(&message, &mut batch).await,
                        Err(e) => tracing::warn!(error = %e, "kafka consume error"),
                    }
                    if batch.jobs.len() >= self.config.scoring.max_batch
                        && let Some(tx) = &batch_tx
                    {
                        in_flight += send_batch(tx, &mut batch).await?;
                    }
                }
            }
        }

        // Drain: score what was consumed, finish in-flight batches, commit.
        let drain = Duration::from_secs_f64(self.config.shutdown.drain_deadline_seconds);
        let until = tokio::time::Instant::now() + drain;
        if let Some(tx) = &batch_tx {
            in_flight += send_batch(tx, &mut batch).await?;
        }
        batch_tx = None;
        drop(batch_tx);
        while in_flight > 0 {
            match tokio::time::timeout_at(until, scored_rx.recv()).await {
                Ok(Some(scored)) => {
                    in_flight -= 1;
                    self.finish_batch(&consumer, scored?).await;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        in_flight,
                        "drain deadline passed; unfinished batches will be re-read"
                    );
                    break;
                }
            }
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => self.metrics.offsets_committed.inc(),
            // Nothing stored since the last automatic commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "final commit"),
        }
        let _ = inference.join();
        tracing::info!("anomalyd stopped");
        Ok(())
    }

    /// Loads the artifact again. A model that fails to load, or that
    /// windows differently, is rejected and counted; the old one keeps
    /// serving.
    async fn reload(&mut self, work: &mpsc::Sender<Work>) -> Result<()> {
        let path = self.config.model.path.clone();
        let device = self.device.clone();
        let loaded = tokio::task::spawn_blocking(move || TrainedModel::load(&path, &device))
            .await
            .map_err(|e| Error::Backend(format!("model reload task: {e}")))?;
        let model = match loaded {
            Ok(model) => model,
            Err(e) => {
                self.metrics
                    .model_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                tracing::error!(error = %e, "model reload rejected; the old model keeps serving");
                return Ok(());
            }
        };
        let windowing = &model.manifest.windowing;
        if windowing.window != self.window || windowing.feature_names != self.feature_names {
            self.metrics
                .model_reloads
                .with_label_values(&["rejected"])
                .inc();
            tracing::error!(
                window = windowing.window,
                features = ?windowing.feature_names,
                "model reload rejected: a reload must keep the window and features; restart to change them"
            );
            return Ok(());
        }
        let kind = format!("{:?}", model.manifest.model.kind()).to_lowercase();
        self.metrics.model_info.reset();
        self.metrics
            .model_info
            .with_label_values(&[&self.model_name, &kind, &model.manifest.anomalyd_version])
            .set(1);
        self.model_kind = kind;
        self.scaler = model.manifest.scaler.clone();
        self.table
            .set_calibrated_threshold(model.manifest.threshold.value);
        work.send(Work::Swap(Box::new(model.network)))
            .await
            .map_err(|_| Error::Backend("the inference thread stopped".into()))?;
        self.metrics.model_reloads.with_label_values(&["ok"]).inc();
        tracing::info!(model = %self.model_name, "model reloaded");
        Ok(())
    }

    fn drop_revoked(&mut self) {
        while let Ok(lost) = self.revoked.try_recv() {
            let dropped = self.table.drop_partitions(&lost);
            self.metrics.series_tracked.set(self.table.len() as i64);
            tracing::info!(
                partitions = lost.len(),
                series = dropped,
                "partitions revoked"
            );
        }
    }

    /// Decodes a message and adds its sample to its series.
    async fn admit(&mut self, message: &rdkafka::message::BorrowedMessage<'_>, batch: &mut Batch) {
        let topic = message.topic().to_owned();
        let partition = message.partition();
        batch
            .offsets
            .insert((topic.clone(), partition), message.offset());
        if batch.opened.is_none() {
            batch.opened = Some(Instant::now());
        }
        let payload = message.payload().unwrap_or_default();
        let content_type = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key.eq_ignore_ascii_case("content-type"))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        });
        let kafka = &self.config.kafka;
        let configured = kafka
            .topic_formats
            .get(&topic)
            .copied()
            .unwrap_or(kafka.format);
        let decoded = decode(
            format_of(content_type, configured),
            message.key(),
            payload,
            self.feature_names.len(),
            kafka.max_message_bytes,
        );
        let samples = match decoded {
            Ok(samples) => samples,
            Err(invalid) => {
                self.reject(&invalid, message).await;
                return;
            }
        };
        let mut forwarded = false;
        for sample in samples {
            match sample {
                Ok(sample) => self.admit_sample(sample, (&topic, partition), batch),
                Err(invalid) => {
                    // A batch goes to the dead-letter topic once, with the
                    // first reason; every bad sample is counted.
                    if forwarded {
                        self.count_invalid(&invalid, message);
                    } else {
                        self.reject(&invalid, message).await;
                        forwarded = true;
                    }
                }
            }
        }
    }

    fn admit_sample(
        &mut self,
        sample: codec::Sample,
        (topic, partition): (&str, i32),
        batch: &mut Batch,
    ) {
        let normalised = normalise(&self.scaler, &sample.values);
        let gap_resets = self.table.events.gap_resets;
        let admission =
            self.table
                .admit(&sample.series, sample.time, &normalised, (topic, partition));
        if self.table.events.gap_resets > gap_resets {
            self.metrics.samples.with_label_values(&["gap_reset"]).inc();
        }
        let outcome = match admission {
            Admission::Window(values) => {
                batch.windows.extend(values);
                batch.jobs.push(Job {
                    series: sample.series,
                    time: sample.time,
                });
                "scored"
            }
            Admission::Warming => "warming",
            Admission::Skipped => "skipped",
            Admission::OutOfOrder => "dropped",
        };
        self.metrics.samples.with_label_values(&[outcome]).inc();
        self.metrics.series_tracked.set(self.table.len() as i64);
    }

    fn count_invalid(&self, invalid: &Invalid, message: &rdkafka::message::BorrowedMessage<'_>) {
        self.metrics.samples.with_label_values(&["invalid"]).inc();
        self.metrics
            .invalid_messages
            .with_label_values(&[invalid.reason()])
            .inc();
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason = invalid.reason(),
            detail = %invalid,
            "invalid message"
        );
    }

    /// Counts and logs a rejected message and forwards it to the
    /// dead-letter topic when there is one.
    async fn reject(&self, invalid: &Invalid, message: &rdkafka::message::BorrowedMessage<'_>) {
        self.count_invalid(invalid, message);
        if let (Some(producer), Some(topic)) =
            (&self.producer, &self.config.kafka.dead_letter_topic)
        {
            let payload = message.payload().unwrap_or_default();
            let mut record =
                FutureRecord::to(topic)
                    .payload(payload)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: "anomalyd-reason",
                        value: Some(invalid.reason()),
                    }));
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Err((e, _)) = producer.send(record, Duration::from_secs(10)).await {
                tracing::error!(error = %e, "dead-letter delivery failed");
            }
        }
    }

    /// Applies a batch's scores, produces its events, then stores its
    /// offsets.
    async fn finish_batch(&mut self, consumer: &StreamConsumer<ServeContext>, scored: Scored) {
        let features = self.feature_names.len();
        let now = now_seconds();
        let mut events = Vec::new();
        for (job, contributions) in scored
            .batch
            .jobs
            .iter()
            .zip(scored.per_feature.chunks_exact(features))
        {
            let error = contributions.iter().map(|&c| f64::from(c)).sum::<f64>() / features as f64;
            let Some(state) = self.table.get_mut(&job.series) else {
                continue; // evicted or revoked while in flight
            };
            let decision = state.detector.update(error);
            let label = self.metrics.series_label(&job.series);
            self.metrics
                .reconstruction_error
                .with_label_values(&[label])
                .set(error);
            self.metrics
                .anomaly_score
                .with_label_values(&[label])
                .set(decision.score);
            self.metrics
                .anomalous
                .with_label_values(&[label])
                .set(i64::from(decision.anomalous));
            self.metrics
                .sample_lag_seconds
                .observe((now - job.time).max(0.0));
            if matches!(decision.event, Some(EventChange::Started { .. })) {
                self.metrics.anomalies.with_label_values(&[label]).inc();
                state.open_event = Some(OpenEvent {
                    start_time: job.time,
                    peak_score: 0.0,
                    peak_threshold: decision.threshold,
                    peak_contributions: Vec::new(),
                });
            }
            if let Some(open) = state.open_event.as_mut()
                && decision.anomalous
                && decision.score >= open.peak_score
            {
                open.peak_score = decision.score;
                open.peak_threshold = decision.threshold;
                open.peak_contributions = contributions.iter().map(|&c| f64::from(c)).collect();
            }
            if matches!(decision.event, Some(EventChange::Ended(_)))
                && let Some(open) = state.open_event.take()
            {
                events.push(self.event(&job.series, open, job.time));
            }
        }
        self.metrics
            .windows_scored
            .inc_by(scored.batch.jobs.len() as u64);
        if let (Some(producer), Some(topic)) = (&self.producer, &self.config.kafka.events_topic) {
            for event in events {
                let payload = match self.config.kafka.events_format {
                    EventFormat::Json => match serde_json::to_vec(&event) {
                        Ok(payload) => payload,
                        Err(e) => {
                            tracing::error!(error = %e, "event encoding failed");
                            continue;
                        }
                    },
                    EventFormat::Protobuf => event.to_proto().encode_to_vec(),
                };
                let record = FutureRecord::to(topic).key(&event.series).payload(&payload);
                if let Err((e, _)) = producer.send(record, Duration::from_secs(30)).await {
                    tracing::error!(error = %e, series = %event.series, "event delivery failed");
                }
            }
        }
        for ((topic, partition), offset) in &scored.batch.offsets {
            if let Err(e) = consumer.store_offset(topic, *partition, *offset) {
                tracing::debug!(error = %e, topic, partition, "offset not stored (partition revoked?)");
            }
        }
    }

    fn event(&self, series: &str, open: OpenEvent, end: f64) -> AnomalyEvent {
        let mut top: Vec<FeatureContribution> = open
            .peak_contributions
            .iter()
            .zip(&self.feature_names)
            .map(|(&error, name)| FeatureContribution {
                feature: name.clone(),
                error,
            })
            .collect();
        top.sort_by(|a, b| b.error.total_cmp(&a.error));
        top.truncate(5);
        AnomalyEvent {
            series: series.to_owned(),
            start: open.start_time,
            end,
            peak_score: open.peak_score,
            threshold: open.peak_threshold,
            model: self.model_name.clone(),
            kind: self.model_kind.clone(),
            top_features: top,
        }
    }
}

/// What the inference thread is asked to do, in order.
enum Work {
    Score(Batch),
    /// Replace the network (a reload); batches after it use the new one.
    Swap(Box<Network>),
}

/// Closes the open batch and queues it; returns how many batches went.
async fn send_batch(tx: &mpsc::Sender<Work>, batch: &mut Batch) -> Result<usize> {
    if batch.opened.is_none() {
        return Ok(0);
    }
    let full = std::mem::take(batch);
    tx.send(Work::Score(full))
        .await
        .map_err(|_| Error::Backend("the inference thread stopped".into()))?;
    Ok(1)
}

/// The inference thread: batches in, per-feature errors out, in order.
fn infer_loop(
    mut network: Network,
    device: Device,
    (window, features): (usize, usize),
    mut work: mpsc::Receiver<Work>,
    scored: mpsc::Sender<Result<Scored>>,
    metrics: Arc<Metrics>,
) {
    while let Some(next) = work.blocking_recv() {
        let batch = match next {
            Work::Score(batch) => batch,
            Work::Swap(replacement) => {
                network = *replacement;
                continue;
            }
        };
        let count = batch.jobs.len();
        let result = if count == 0 {
            Ok(Vec::new())
        } else {
            let started = Instant::now();
            let input = crate::data::window::to_tensor(
                batch.windows.clone(),
                [count, window, features],
                &device,
            );
            let output = network.reconstruct(input.clone());
            let per_feature = (output - input).powf_scalar(2.0).mean_dim(1);
            let values = per_feature
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Backend(format!("reading scores back: {e:?}")));
            metrics
                .inference_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(count as f64);
            values
        };
        let message = result.map(|per_feature| Scored { batch, per_feature });
        if scored.blocking_send(message).is_err() {
            break;
        }
    }
}
