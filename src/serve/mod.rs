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
mod state;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

use crate::config::{EventFormat, EventPhase, SeriesPattern, ServeConfig};
use crate::data::window::Centering;
use crate::detect::{Cause, DetectorConfig, EventChange, ValueRange};
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::Network;
use crate::model::artifact::TrainedModel;
use codec::{Invalid, decode, format_of};
use prost::Message as _;
use series::{Admission, CoarseShape, ModelKey, ModelShape, OpenEvent, SeriesTable, normalise};

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

/// A change of the partitions this member consumes, for the pipeline.
#[derive(Debug)]
enum Rebalanced {
    Revoked(Vec<(String, i32)>),
    Assigned(Vec<(String, i32)>),
}

fn partition_list(partitions: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    partitions
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// The consumer's callbacks: a synchronous commit before partitions are
/// revoked, readiness bookkeeping, lag from librdkafka's statistics.
struct ServeContext {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    rebalanced: mpsc::UnboundedSender<Rebalanced>,
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
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                // The next owner re-reads from the last commit (at-least-once);
                // worth seeing, as it repeats work.
                Err(e) => tracing::warn!(error = %e, "commit on revoke failed"),
            }
            let _ = self
                .rebalanced
                .send(Rebalanced::Revoked(partition_list(partitions)));
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
            let _ = self
                .rebalanced
                .send(Rebalanced::Assigned(partition_list(partitions)));
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
    /// First sample of the window (see [`Admission::Window`]).
    window_start: f64,
    /// The index of this sample's coarse window in its model's coarse part
    /// (multi-scale models), observed before this window is judged.
    coarse: Option<usize>,
    /// The window's newest points to judge against the range and the
    /// stillness floor (see [`Admission::Window`]).
    fresh_points: usize,
}

/// One model's share of a batch.
#[derive(Default)]
struct Part {
    /// `[jobs, T, F]` row-major.
    windows: Vec<f32>,
    jobs: Vec<Job>,
}

/// Windows batched across series (one part per model), plus the offsets
/// they carry.
#[derive(Default)]
struct Batch {
    parts: BTreeMap<usize, Part>,
    /// Windows in all parts.
    windows: usize,
    /// Highest consumed offset per partition up to the batch's close.
    offsets: HashMap<(String, i32), i64>,
    opened: Option<Instant>,
}

struct Scored {
    batch: Batch,
    /// Per part, in the parts' order: `[jobs, F]` per-feature errors.
    per_feature: Vec<Vec<f32>>,
}

/// A loaded model, less its network (which lives on the inference thread).
struct ServedModel {
    path: PathBuf,
    name: String,
    kind: String,
    version: String,
    window: usize,
    rows_per_point: usize,
    /// The main network's inputs.
    feature_names: Vec<String>,
    /// Normalises a sample (with the clock, when a model takes it); for
    /// the data's columns, the main model's.
    scaler: crate::data::Scaler,
    threshold: f64,
    /// Mean-std's k factor calibrated on the training data (format 6 on).
    k_factor: Option<f64>,
    /// The detector that factor was measured for (`None`: the default).
    calibrated_for: Option<DetectorConfig>,
    coarse: Option<ServedCoarse>,
    /// The training range, normalised (artifacts of format 4 on).
    range: Option<ValueRange>,
    /// What comes out of each window before the main network sees it.
    centering: Centering,
    /// Values per point in a series' buffers: the data's columns and, when
    /// a model takes the time of day, its two inputs, derived from each
    /// sample's time. The coarse network takes them all; the main network
    /// its `feature_names`, the first of them.
    point_width: usize,
    /// The leading features the samples carry, which the error counts.
    scored_features: usize,
}

/// The coarse model of a multi-scale artifact.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ServedCoarse {
    /// Its network's index on the inference thread (after the main models').
    slot: usize,
    shape: CoarseShape,
    centering: Centering,
}

impl ServedModel {
    /// `coarse_slot` is where a coarse network goes, if the model has one.
    fn new(path: &Path, model: &TrainedModel, coarse_slot: usize) -> Self {
        let manifest = &model.manifest;
        let coarse_clock = model
            .coarse
            .as_ref()
            .filter(|c| c.manifest.windowing.time_of_day);
        // A coarse model that alone takes the clock has the wider scaler:
        // the main model's for the data's columns (checked at load), and
        // the clock's.
        let scaler = match coarse_clock {
            Some(coarse) if !manifest.windowing.time_of_day => coarse.manifest.scaler.clone(),
            _ => manifest.scaler.clone(),
        };
        let coarse =
            model
                .coarse
                .as_ref()
                .zip(model.coarse_multiple())
                .map(|(member, multiple)| ServedCoarse {
                    slot: coarse_slot,
                    shape: CoarseShape {
                        multiple,
                        window: member.manifest.windowing.window,
                        threshold: member.manifest.threshold.value,
                    },
                    centering: member.manifest.windowing.centering(),
                });
        Self {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            kind: format!("{:?}", manifest.model.kind()).to_lowercase(),
            version: manifest.anomalyd_version.clone(),
            window: manifest.windowing.window,
            rows_per_point: manifest.windowing.aggregate,
            feature_names: manifest.windowing.feature_names.clone(),
            point_width: scaler.n_features(),
            scaler,
            threshold: manifest.threshold.value,
            k_factor: manifest.threshold.k_factor,
            calibrated_for: manifest.threshold.calibrated_for,
            coarse,
            range: manifest.point_range(),
            centering: manifest.windowing.centering(),
            scored_features: manifest.windowing.scored_features(),
        }
    }

    /// Says so when `detector` applies this model's k factor although it
    /// was measured for another detector: the operator should train with
    /// `--detector-config` on the daemon's file.
    fn warn_if_factor_measured_elsewhere(&self, detector: &DetectorConfig) {
        if detector.applies_factor_measured_for_another(self.k_factor, self.calibrated_for.as_ref())
        {
            tracing::warn!(
                model = %self.name,
                k_factor = ?self.k_factor,
                "the model's k factor was calibrated for another [detector] than this daemon runs, and is applied all the same; train with --detector-config on this configuration file to measure it for this one"
            );
        }
    }

    /// What a reload of `model` in this one's place does to its series.
    fn reload_plan(&self, model: &TrainedModel) -> ReloadPlan {
        let (old, new) = (self.key(), Self::new(&self.path, model, 0).key());
        if old == new {
            return ReloadPlan::Swap;
        }
        let changes = Self::key_changes(&old, &new);
        if old.same_buffers(&new) {
            ReloadPlan::SwapAndRestart(changes.join("; "))
        } else {
            ReloadPlan::Reject(changes)
        }
    }

    /// What differs between two keys, named for an operator.
    fn key_changes(old: &ModelKey, new: &ModelKey) -> Vec<String> {
        let centring = |centered: bool, detrended: bool| match (centered, detrended) {
            (false, _) => "levels",
            (true, false) => "centred",
            (true, true) => "detrended",
        };
        let pair = |key: &ModelKey| {
            format!(
                "main {}, coarse {}",
                centring(key.centered.0, key.detrended.0),
                centring(key.centered.1, key.detrended.1)
            )
        };
        let mut changes = Vec::new();
        let mut differs = |what: &str, before: String, after: String| {
            if before != after {
                changes.push(format!("{what} {before} -> {after}"));
            }
        };
        differs("window", old.window.to_string(), new.window.to_string());
        differs(
            "features",
            old.feature_names.join(","),
            new.feature_names.join(","),
        );
        differs(
            "rows per point",
            old.rows_per_point.to_string(),
            new.rows_per_point.to_string(),
        );
        differs(
            "coarse model (multiple, window)",
            format!("{:?}", old.coarse),
            format!("{:?}", new.coarse),
        );
        // `--center auto` decides this per training run.
        differs("centring", pair(old), pair(new));
        differs("time of day", old.clock.to_string(), new.clock.to_string());
        if changes.is_empty() {
            // The key is what decides; the list above only names its parts.
            changes.push("what the series' buffers and detectors depend on".to_owned());
        }
        changes
    }

    /// Whether a model takes the time of day: the points carry more than
    /// the sample's values.
    fn takes_clock(&self) -> bool {
        self.point_width > self.scored_features
    }

    /// What the series' buffers and detectors depend on.
    fn key(&self) -> ModelKey {
        ModelKey {
            path: self.path.display().to_string(),
            window: self.window,
            feature_names: self.feature_names.clone(),
            rows_per_point: self.rows_per_point,
            coarse: self.coarse.map(|c| (c.shape.multiple, c.shape.window)),
            centered: (
                self.centering.is_on(),
                self.coarse.is_some_and(|c| c.centering.is_on()),
            ),
            detrended: (
                self.centering == Centering::Trend,
                self.coarse.is_some_and(|c| c.centering == Centering::Trend),
            ),
            clock: self.takes_clock(),
        }
    }

    /// How its main network takes its windows.
    fn main_input(&self) -> NetworkInput {
        NetworkInput {
            window: self.window,
            features: self.feature_names.len(),
            centering: self.centering,
        }
    }

    /// Its coarse network's slot and how it takes its windows: points of
    /// the full width (with the clock, where the coarse model takes it).
    fn coarse_input(&self) -> Option<(usize, NetworkInput)> {
        self.coarse.map(|c| {
            let input = NetworkInput {
                window: c.shape.window,
                features: self.point_width,
                centering: c.centering,
            };
            (c.slot, input)
        })
    }

    fn shape(&self, model: usize) -> ModelShape<'_> {
        ModelShape {
            model,
            window: self.window,
            features: self.point_width,
            rows_per_point: self.rows_per_point,
            threshold: self.threshold,
            k_factor: self.k_factor,
            coarse: self.coarse.map(|c| c.shape),
            range: self.range.as_ref(),
        }
    }
}

/// Each served model's window and training range, by index: what
/// [`SeriesTable::resume_window_checks`] starts missing checks from.
fn window_check_shapes(models: &[ServedModel]) -> Vec<(usize, Option<&ValueRange>)> {
    models
        .iter()
        .map(|m| (m.window, m.range.as_ref()))
        .collect()
}

/// Takes the series state a graceful stop left at `path`, if any. A state
/// that cannot be used is reported and dropped: the daemon then warms every
/// series up, as it would without one, rather than refusing to start.
/// Series of a model that now centres its windows otherwise keep their
/// windows and restart their detectors, as after such a reload; returns
/// their events that were open, by model and series, to be closed.
fn resume(
    table: &mut SeriesTable,
    path: &Path,
    models: &[ServedModel],
    metrics: &Metrics,
) -> Vec<(usize, String, OpenEvent)> {
    let keys: Vec<ModelKey> = models.iter().map(ServedModel::key).collect();
    let mut ended = Vec::new();
    match state::take(path) {
        Ok(None) => {}
        Ok(Some(snapshot)) => match table.restore(snapshot, &keys) {
            Ok(restored) => {
                tracing::info!(
                    series = restored.series,
                    skipped = restored.skipped,
                    file = %path.display(),
                    "series state resumed"
                );
                for &index in &restored.rescaled {
                    let (restarted, open) = table.restart_detectors(&models[index].shape(index));
                    if restarted == 0 {
                        continue;
                    }
                    metrics.detector_restarts.inc_by(restarted as u64);
                    tracing::warn!(
                        model = %models[index].name,
                        series = restarted,
                        closed_events = open.len(),
                        "the model centres its windows otherwise than when the state was saved, so its errors are on another scale: its series keep their windows and start their detectors afresh (warming up again), and their open events close"
                    );
                    ended.extend(
                        open.into_iter()
                            .map(|(series, event)| (index, series, event)),
                    );
                }
                let started = table.resume_window_checks(&window_check_shapes(models));
                if started > 0 {
                    tracing::info!(
                        series = started,
                        "stillness, roughness or seasonal check started (or given the data's resolution) on resumed series saved without it"
                    );
                }
            }
            Err(reason) => tracing::warn!(
                %reason,
                file = %path.display(),
                "series state not resumed; every series warms up again"
            ),
        },
        Err(e) => tracing::warn!(
            error = %e,
            "series state not resumed; every series warms up again"
        ),
    }
    ended
}

/// What a reload does with a model's new artifact.
#[derive(Debug, Clone, PartialEq)]
enum ReloadPlan {
    /// Swap it in; the series keep their windows and detectors.
    Swap,
    /// Swap it in and start its series' detectors afresh, keeping their
    /// windows: the new artifact centres its windows otherwise (as `--center
    /// auto` may decide anew on each training run), so its errors are on
    /// another scale than the detectors' histories. Names the change.
    SwapAndRestart(String),
    /// Keep the old one: the series' windows would not fit the new one.
    /// What it changes.
    Reject(Vec<String>),
}

/// How a network on the inference thread takes its windows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct NetworkInput {
    window: usize,
    features: usize,
    centering: Centering,
}

/// The input of every network on the inference thread, by slot: the main
/// models' first, then the coarse models'. A reload keeps them (see
/// `ServedModel::key`).
fn network_shapes(models: &[ServedModel]) -> Vec<NetworkInput> {
    let mut shapes: Vec<NetworkInput> = models.iter().map(ServedModel::main_input).collect();
    let mut coarse: Vec<(usize, NetworkInput)> = models
        .iter()
        .filter_map(ServedModel::coarse_input)
        .collect();
    coarse.sort_by_key(|&(slot, _)| slot);
    shapes.extend(coarse.into_iter().map(|(_, shape)| shape));
    shapes
}

/// Picks a series' model: the first matching route, else the default.
struct Router {
    routes: Vec<(SeriesPattern, usize)>,
    fallback: Option<usize>,
}

impl Router {
    fn route(&self, series: &str) -> Option<usize> {
        self.routes
            .iter()
            .find(|(pattern, _)| pattern.matches(series))
            .map(|(_, model)| *model)
            .or(self.fallback)
    }
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

/// A message written to `kafka.events_topic` about one event: when it
/// opens, escalates or closes (`phase`). `series` and `start` identify the
/// event across its messages.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AnomalyEvent {
    pub series: String,
    #[serde(default)]
    pub phase: EventPhase,
    /// The sample whose window was first flagged (seconds since the epoch).
    pub start: f64,
    /// The first sample of that window: the data the first flag judged
    /// begins here, so the anomaly may lie anywhere from here on. `eval`
    /// scores an event from this point.
    #[serde(default)]
    pub window_start: f64,
    /// The last flagged sample so far: when the event closes, the last
    /// one (the merge gap after it passed unflagged).
    pub end: f64,
    /// The highest score so far and the threshold at it.
    pub peak_score: f64,
    pub threshold: f64,
    pub model: String,
    pub kind: String,
    /// Features by their share of the peak window's error, largest first.
    pub top_features: Vec<FeatureContribution>,
    /// Which check scored the peak: where it is `range` or `stillness`,
    /// the values did what training never saw and `top_features` say
    /// little. (`error` in messages written before it was.)
    #[serde(default)]
    pub cause: Cause,
}

impl AnomalyEvent {
    /// The `anomalyd.v1.AnomalyEvent` form.
    pub fn to_proto(&self) -> crate::proto::AnomalyEvent {
        crate::proto::AnomalyEvent {
            series: self.series.clone(),
            start_ms: (self.start * 1000.0).round() as i64,
            window_start_ms: (self.window_start * 1000.0).round() as i64,
            phase: match self.phase {
                EventPhase::Opened => crate::proto::EventPhase::Opened,
                EventPhase::Escalated => crate::proto::EventPhase::Escalated,
                EventPhase::Closed => crate::proto::EventPhase::Closed,
            }
            .into(),
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
            cause: match self.cause {
                Cause::Error => crate::proto::Cause::Error,
                Cause::Coarse => crate::proto::Cause::Coarse,
                Cause::Range => crate::proto::Cause::Range,
                Cause::Stillness => crate::proto::Cause::Stillness,
                Cause::Roughness => crate::proto::Cause::Roughness,
                Cause::Seasonal => crate::proto::Cause::Seasonal,
            }
            .into(),
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
    let device = device.build()?;
    // Every distinct artifact is loaded once, however many routes use it.
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut index_of = |path: &Path| match paths.iter().position(|p| p == path) {
        Some(i) => i,
        None => {
            paths.push(path.to_path_buf());
            paths.len() - 1
        }
    };
    let fallback =
        (!config.model.path.as_os_str().is_empty()).then(|| index_of(&config.model.path));
    let mut routes = Vec::new();
    for (i, route) in config.model.routes.iter().enumerate() {
        let pattern = SeriesPattern::parse(&route.series)
            .map_err(|reason| Error::config(format!("model.routes[{i}].series"), reason))?;
        routes.push((pattern, index_of(&route.path)));
    }
    let router = Router { routes, fallback };
    let mut models = Vec::with_capacity(paths.len());
    let mut networks = Vec::with_capacity(paths.len());
    let mut coarse_networks = Vec::new();
    for path in &paths {
        let model = TrainedModel::load(path, &device)?;
        models.push(ServedModel::new(
            path,
            &model,
            paths.len() + coarse_networks.len(),
        ));
        networks.push(model.network);
        if let Some(coarse) = model.coarse {
            coarse_networks.push(coarse.network);
        }
    }
    networks.extend(coarse_networks);
    let metrics = Arc::new(Metrics::new(config.series.max_series_labels)?);
    let readiness = Arc::new(Readiness::default());
    for model in &models {
        metrics
            .model_info
            .with_label_values(&[&model.name, &model.kind, &model.version])
            .set(1);
        tracing::info!(
            model = %model.name,
            kind = %model.kind,
            window = model.window,
            // What new series are judged with: the configured k times the
            // artifact's calibrated factor.
            k = ?config.detector.for_model(model.k_factor).mean_std_k(),
            "model loaded"
        );
        model.warn_if_factor_measured_elsewhere(&config.detector);
    }
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

    // Rebalances are rare; the queue is bounded by them.
    let (rebalanced_tx, rebalanced_rx) = mpsc::unbounded_channel();
    let context = ServeContext {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        rebalanced: rebalanced_tx,
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
        models = paths.len(),
        "anomalyd serving"
    );
    let mut table = SeriesTable::new(
        config.scoring.stride,
        config.series.max_series,
        config.series.max_gap_seconds,
        config.detector,
    );
    let mut closing = Vec::new();
    if let Some(path) = &config.series.state_file {
        closing = resume(&mut table, path, &models, &metrics);
        metrics.observe_series(table.len(), table.events.evicted);
    }
    let resumed = !table.is_empty();
    let pipeline = Pipeline {
        metrics: metrics.clone(),
        table,
        models,
        router,
        producer,
        rebalanced: rebalanced_rx,
        resumed,
        closing,
        device,
        config,
    };
    let reload = Arc::new(Notify::new());
    let task = tokio::spawn(pipeline.run(consumer, networks, shutdown, reload.clone()));
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
    models: Vec<ServedModel>,
    router: Router,
    producer: Option<FutureProducer>,
    rebalanced: mpsc::UnboundedReceiver<Rebalanced>,
    /// The table holds series resumed from a state file, and no partitions
    /// have been assigned since.
    resumed: bool,
    /// Events open in the state file that the resume closed (their model
    /// centres its windows otherwise now), by model and series: their
    /// closed messages go out first.
    closing: Vec<(usize, String, OpenEvent)>,
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
        networks: Vec<Network>,
        shutdown: CancellationToken,
        reload: Arc<Notify>,
    ) -> Result<()> {
        let device = self.device.clone();
        let capacity = self.config.scoring.queue_batches;
        let (batch_tx, batch_rx) = mpsc::channel::<Work>(capacity);
        let (scored_tx, mut scored_rx) = mpsc::channel::<Result<Scored>>(capacity);
        let shapes = network_shapes(&self.models);
        let inference_metrics = self.metrics.clone();
        let inference = std::thread::Builder::new()
            .name("anomalyd-inference".into())
            .spawn(move || {
                infer_loop(
                    networks,
                    device,
                    shapes,
                    batch_rx,
                    scored_tx,
                    inference_metrics,
                )
            })
            .map_err(|e| Error::Backend(format!("starting the inference thread: {e}")))?;

        let closing = std::mem::take(&mut self.closing);
        self.close_events(closing).await;
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
                        self.reload(tx, &consumer, &mut scored_rx, &mut in_flight).await?;
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
                    self.apply_rebalances();
                    match message {
                        Ok(message) => self.admit(&message, &mut batch).await,
                        Err(e) => tracing::warn!(error = %e, "kafka consume error"),
                    }
                    if batch.windows >= self.config.scoring.max_batch
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
        if let Some(path) = self.config.series.state_file.clone() {
            if in_flight == 0 {
                let keys = self.models.iter().map(ServedModel::key).collect();
                let series = self.table.len();
                match state::save(&path, &self.table.into_snapshot(keys)) {
                    Ok(()) => tracing::info!(series, file = %path.display(), "series state saved"),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "series state not saved; every series warms up again after the restart"
                    ),
                }
            } else {
                tracing::warn!(
                    in_flight,
                    "series state not saved: windows were left unscored, and the state would skip them"
                );
            }
        }
        tracing::info!("anomalyd stopped");
        Ok(())
    }

    /// Loads every artifact again. One that fails to load, or whose
    /// windows its series' buffers would not fit, is rejected and counted,
    /// and its old version keeps serving; the others are swapped in between
    /// two batches. Where a new artifact centres its windows otherwise, the
    /// batches in flight are first judged as the old one scored them, and
    /// then its series' detectors start afresh (`ReloadPlan`).
    async fn reload(
        &mut self,
        work: &mpsc::Sender<Work>,
        consumer: &StreamConsumer<ServeContext>,
        scored: &mut mpsc::Receiver<Result<Scored>>,
        in_flight: &mut usize,
    ) -> Result<()> {
        for index in 0..self.models.len() {
            let path = self.models[index].path.clone();
            let device = self.device.clone();
            let loaded = tokio::task::spawn_blocking(move || TrainedModel::load(&path, &device))
                .await
                .map_err(|e| Error::Backend(format!("model reload task: {e}")))?;
            let served = &self.models[index];
            let (model, restart) = match loaded.map(|model| {
                let plan = served.reload_plan(&model);
                (model, plan)
            }) {
                Ok((model, ReloadPlan::Swap)) => (model, None),
                Ok((model, ReloadPlan::SwapAndRestart(change))) => (model, Some(change)),
                Ok((_, ReloadPlan::Reject(changes))) => {
                    self.reject_reload(
                        index,
                        &format!(
                            "a reload must keep the window, the aggregation, the coarse model, the time of day and the features; restart to change them (this artifact changes: {}; pin `train --time-of-day` to keep it across retraining)",
                            changes.join("; ")
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    self.reject_reload(index, &e.to_string());
                    continue;
                }
            };
            if restart.is_some() {
                self.settle(consumer, scored, in_flight).await?;
            }
            let served = &self.models[index];
            let coarse_slot = served.coarse.map_or(0, |c| c.slot);
            let replacement = ServedModel::new(&served.path.clone(), &model, coarse_slot);
            work.send(Work::Swap(
                index,
                Box::new(model.network),
                replacement.main_input(),
            ))
            .await
            .map_err(|_| inference_stopped())?;
            if let (Some(coarse), Some((slot, input))) = (model.coarse, replacement.coarse_input())
            {
                work.send(Work::Swap(slot, Box::new(coarse.network), input))
                    .await
                    .map_err(|_| inference_stopped())?;
            }
            self.models[index] = replacement;
            // Before the reload counts as done: whoever watches the counter
            // then sees the detectors restarted.
            if let Some(change) = restart {
                self.restart_detectors(index, &change).await;
            }
            // An artifact retrained by a newer anomalyd may carry what a
            // check starts from (the quietest or roughest training window)
            // where the old one had none: the series it already serves get
            // the check now, not only at their next cold start.
            let started = self
                .table
                .resume_window_checks(&window_check_shapes(&self.models));
            if started > 0 {
                tracing::info!(
                    model = %self.models[index].name,
                    series = started,
                    "stillness, roughness or seasonal check started on series whose earlier artifact lacked it"
                );
            }
            self.metrics.model_reloads.with_label_values(&["ok"]).inc();
            tracing::info!(model = %self.models[index].name, "model reloaded");
            self.models[index].warn_if_factor_measured_elsewhere(&self.config.detector);
        }
        self.metrics.model_info.reset();
        for model in &self.models {
            self.metrics
                .model_info
                .with_label_values(&[&model.name, &model.kind, &model.version])
                .set(1);
        }
        Ok(())
    }

    /// Counts and logs a reload of model `index` that was not taken.
    fn reject_reload(&self, index: usize, reason: &str) {
        self.metrics
            .model_reloads
            .with_label_values(&["rejected"])
            .inc();
        tracing::error!(
            model = %self.models[index].name,
            reason,
            "model reload rejected; the old model keeps serving"
        );
    }

    /// Waits for the batches in flight and judges them, so that nothing
    /// sent before now meets a detector restarted after it.
    async fn settle(
        &mut self,
        consumer: &StreamConsumer<ServeContext>,
        scored: &mut mpsc::Receiver<Result<Scored>>,
        in_flight: &mut usize,
    ) -> Result<()> {
        while *in_flight > 0 {
            let batch = scored.recv().await.ok_or_else(inference_stopped)?;
            *in_flight -= 1;
            self.finish_batch(consumer, batch?).await;
        }
        Ok(())
    }

    /// Starts afresh the detectors of model `index`'s series, which a
    /// reload gave errors on another scale (`change` says how), and closes
    /// their open events where they stand: what follows is judged anew.
    async fn restart_detectors(&mut self, index: usize, change: &str) {
        let (restarted, ended) = self
            .table
            .restart_detectors(&self.models[index].shape(index));
        self.metrics.detector_restarts.inc_by(restarted as u64);
        tracing::warn!(
            model = %self.models[index].name,
            change,
            series = restarted,
            closed_events = ended.len(),
            "the reloaded model centres its windows otherwise, so its errors are on another scale: its series' detectors start afresh (warming up again) and their open events close"
        );
        self.close_events(
            ended
                .into_iter()
                .map(|(series, open)| (index, series, open))
                .collect(),
        )
        .await;
    }

    /// Writes the closed messages of `ended` events (by model and series),
    /// which ended because their series' detectors restarted.
    async fn close_events(&self, ended: Vec<(usize, String, OpenEvent)>) {
        if !self.config.kafka.event_phases.contains(&EventPhase::Closed) {
            return;
        }
        let events = ended
            .into_iter()
            .map(|(model, series, open)| self.event(model, &series, EventPhase::Closed, open))
            .collect();
        self.publish(events).await;
    }

    /// Writes `events` to the events topic, if there is one.
    async fn publish(&self, events: Vec<AnomalyEvent>) {
        let (Some(producer), Some(topic)) = (&self.producer, &self.config.kafka.events_topic)
        else {
            return;
        };
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

    /// Forgets the series of revoked partitions, and after a resume, the
    /// resumed series of partitions that went to another member.
    fn apply_rebalances(&mut self) {
        while let Ok(change) = self.rebalanced.try_recv() {
            match change {
                Rebalanced::Revoked(lost) => {
                    let dropped = self.table.drop_partitions(&lost);
                    tracing::info!(
                        partitions = lost.len(),
                        series = dropped,
                        "partitions revoked"
                    );
                }
                // The first assignment is the whole one, under the eager
                // and the cooperative protocols alike; later ones may be
                // increments, and the table then holds live series only.
                Rebalanced::Assigned(assigned) if self.resumed => {
                    self.resumed = false;
                    let dropped = self.table.keep_partitions(&assigned);
                    tracing::info!(
                        series = dropped,
                        "resumed series of partitions assigned elsewhere dropped"
                    );
                }
                Rebalanced::Assigned(_) => {}
            }
            self.metrics
                .observe_series(self.table.len(), self.table.events.evicted);
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
            let routed = sample.and_then(|sample| {
                let model = self
                    .table
                    .model_of(&sample.series)
                    .or_else(|| self.router.route(&sample.series))
                    .ok_or_else(|| Invalid::NoModel(sample.series.clone()))?;
                codec::check_features(&sample, self.models[model].scored_features)?;
                Ok((sample, model))
            });
            match routed {
                Ok((sample, model)) => self.admit_sample(sample, model, (&topic, partition), batch),
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
        model: usize,
        (topic, partition): (&str, i32),
        batch: &mut Batch,
    ) {
        let served = &self.models[model];
        let clock = served
            .takes_clock()
            .then(|| crate::data::calendar::time_of_day(sample.time));
        let normalised = normalise(
            &served.scaler,
            sample
                .values
                .iter()
                .copied()
                .chain(clock.into_iter().flatten()),
        );
        let shape = served.shape(model);
        let shape_width = shape.features;
        let gap_resets = self.table.events.gap_resets;
        let admission = self.table.admit(
            &sample.series,
            sample.time,
            &normalised,
            (topic, partition),
            shape,
        );
        if self.table.events.gap_resets > gap_resets {
            self.metrics.samples.with_label_values(&["gap_reset"]).inc();
        }
        let outcome = match admission {
            Admission::Window(values, coarse_window, window_start, fresh_points) => {
                let coarse = match (coarse_window, self.models[model].coarse) {
                    (Some(window), Some(served)) => {
                        let part = batch.parts.entry(served.slot).or_default();
                        part.windows.extend(window);
                        batch.windows += 1;
                        part.jobs.push(Job {
                            series: sample.series.clone(),
                            time: sample.time,
                            window_start,
                            coarse: None,
                            fresh_points: 0,
                        });
                        Some(part.jobs.len() - 1)
                    }
                    _ => None,
                };
                let part = batch.parts.entry(model).or_default();
                let main_width = self.models[model].feature_names.len();
                if main_width < shape_width {
                    // The clock is the coarse network's alone.
                    part.windows.extend(
                        values
                            .chunks_exact(shape_width)
                            .flat_map(|point| &point[..main_width]),
                    );
                } else {
                    part.windows.extend(values);
                }
                batch.windows += 1;
                part.jobs.push(Job {
                    series: sample.series,
                    time: sample.time,
                    window_start,
                    coarse,
                    fresh_points,
                });
                "scored"
            }
            Admission::Warming => "warming",
            Admission::Averaging => "averaging",
            Admission::Skipped => "skipped",
            Admission::OutOfOrder => "dropped",
        };
        self.metrics.samples.with_label_values(&[outcome]).inc();
        self.metrics
            .observe_series(self.table.len(), self.table.events.evicted);
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
        let now = now_seconds();
        let mut events = Vec::new();
        let per_slot: HashMap<usize, &Vec<f32>> = scored
            .batch
            .parts
            .keys()
            .copied()
            .zip(&scored.per_feature)
            .collect();
        // Coarse parts are read through their main windows' jobs.
        for ((&model, part), per_feature) in scored
            .batch
            .parts
            .iter()
            .zip(&scored.per_feature)
            .filter(|((slot, _), _)| **slot < self.models.len())
        {
            let features = self.models[model].feature_names.len();
            let scored = self.models[model].scored_features;
            let point_values = self.models[model].window * features;
            let mean = |contributions: &[f32]| {
                crate::score::window_error(contributions.iter().map(|&c| f64::from(c)), scored)
            };
            let coarse_errors = self.models[model]
                .coarse
                .and_then(|c| per_slot.get(&c.slot));
            let windows = part.windows.chunks_exact(point_values.max(1));
            for ((job, contributions), window) in part
                .jobs
                .iter()
                .zip(per_feature.chunks_exact(features))
                .zip(windows)
            {
                let error = mean(contributions);
                let Some(state) = self.table.get_mut(&job.series) else {
                    continue; // evicted or revoked while in flight
                };
                let coarse_width = self.models[model].point_width;
                if let Some(errors) = job.coarse.zip(coarse_errors).and_then(|(index, errors)| {
                    errors.get(index * coarse_width..(index + 1) * coarse_width)
                }) {
                    state.detector.observe_coarse(mean(errors));
                }
                // The window's newest point is the one this error judges;
                // with a stride, the skipped points before it are judged
                // with it.
                let fresh = job.fresh_points.max(1) * features;
                if let Some(newest) = window.get(window.len().saturating_sub(fresh)..) {
                    for point in newest.chunks_exact(features.max(1)) {
                        state.detector.observe_values(&point[..scored]);
                    }
                }
                let decision = state.detector.update(error);
                let label = self.metrics.series_label(&job.series);
                if decision.out_of_range {
                    self.metrics.out_of_range.with_label_values(&[label]).inc();
                }
                if decision.flatline {
                    self.metrics.flatlines.with_label_values(&[label]).inc();
                }
                if decision.rough {
                    self.metrics.rough.with_label_values(&[label]).inc();
                }
                if decision.seasonal {
                    self.metrics.seasonal.with_label_values(&[label]).inc();
                }
                self.metrics
                    .reconstruction_error
                    .with_label_values(&[label])
                    .set(error);
                self.metrics
                    .anomaly_score
                    .with_label_values(&[label])
                    .set(decision.score);
                self.metrics
                    .smoothed_error
                    .with_label_values(&[label])
                    .set(decision.smoothed);
                self.metrics
                    .threshold
                    .with_label_values(&[label])
                    // NaN while the detector warms up: no threshold yet.
                    .set(decision.threshold.unwrap_or(f64::NAN));
                self.metrics
                    .anomalous
                    .with_label_values(&[label])
                    .set(i64::from(decision.anomalous));
                self.metrics
                    .sample_lag_seconds
                    .observe((now - job.time).max(0.0));
                // An event confirmed after its first flag starts there.
                let back = match decision.event {
                    Some(EventChange::Started { start }) => state.detector.decisions_since(start),
                    _ => 0,
                };
                let (start_time, window_start) = state.judged(
                    job.time,
                    job.window_start,
                    self.config.detector.events.confirmation_lag(),
                    back,
                );
                if matches!(decision.event, Some(EventChange::Started { .. })) {
                    self.metrics.anomalies.with_label_values(&[label]).inc();
                    state.open_event = Some(OpenEvent {
                        start_time,
                        window_start: Some(window_start),
                        last_flagged: Some(job.time),
                        peak_score: 0.0,
                        peak_threshold: decision.threshold.unwrap_or(f64::NAN),
                        peak_contributions: Vec::new(),
                        peak_cause: decision.cause,
                    });
                }
                if let Some(open) = state.open_event.as_mut()
                    && decision.flagged
                {
                    open.last_flagged = Some(job.time);
                }
                if let Some(open) = state.open_event.as_mut()
                    && decision.anomalous
                    && decision.score >= open.peak_score
                {
                    open.peak_score = decision.score;
                    open.peak_cause = decision.cause;
                    open.peak_threshold = decision.threshold.unwrap_or(f64::NAN);
                    open.peak_contributions = contributions[..scored]
                        .iter()
                        .map(|&c| f64::from(c))
                        .collect();
                }
                // After the peak took this point in, so that an opened or
                // escalated message carries it.
                let phase = match decision.event {
                    Some(EventChange::Started { .. }) => Some(EventPhase::Opened),
                    Some(EventChange::Escalated { .. }) => {
                        self.metrics.escalations.with_label_values(&[label]).inc();
                        Some(EventPhase::Escalated)
                    }
                    Some(EventChange::Ended(_)) => Some(EventPhase::Closed),
                    None => None,
                };
                let open = match phase {
                    Some(EventPhase::Closed) => state.open_event.take(),
                    Some(_) => state.open_event.clone(),
                    None => None,
                };
                if let (Some(phase), Some(open)) = (phase, open)
                    && self.config.kafka.event_phases.contains(&phase)
                {
                    events.push(self.event(model, &job.series, phase, open));
                }
            }
        }
        self.metrics
            .windows_scored
            .inc_by(scored.batch.windows as u64);
        self.publish(events).await;
        for ((topic, partition), offset) in &scored.batch.offsets {
            if let Err(e) = consumer.store_offset(topic, *partition, *offset) {
                tracing::debug!(error = %e, topic, partition, "offset not stored (partition revoked?)");
            }
        }
    }

    fn event(
        &self,
        model: usize,
        series: &str,
        phase: EventPhase,
        open: OpenEvent,
    ) -> AnomalyEvent {
        let served = &self.models[model];
        let mut top: Vec<FeatureContribution> = open
            .peak_contributions
            .iter()
            .zip(&served.feature_names)
            .map(|(&error, name)| FeatureContribution {
                feature: name.clone(),
                error,
            })
            .collect();
        top.sort_by(|a, b| b.error.total_cmp(&a.error));
        top.truncate(5);
        AnomalyEvent {
            series: series.to_owned(),
            phase,
            start: open.start_time,
            window_start: open.window_start.unwrap_or(open.start_time),
            end: open.last_flagged.unwrap_or(open.start_time),
            peak_score: open.peak_score,
            threshold: open.peak_threshold,
            model: served.name.clone(),
            kind: served.kind.clone(),
            top_features: top,
            cause: open.peak_cause,
        }
    }
}

/// What the inference thread is asked to do, in order.
enum Work {
    Score(Batch),
    /// Replace the network in slot `.0` and how it takes its windows (a
    /// reload); batches after it use the new ones.
    Swap(usize, Box<Network>, NetworkInput),
}

/// The inference thread's channel closed: it stopped (or panicked).
fn inference_stopped() -> Error {
    Error::Backend("the inference thread stopped".into())
}

/// Closes the open batch and queues it; returns how many batches went.
async fn send_batch(tx: &mpsc::Sender<Work>, batch: &mut Batch) -> Result<usize> {
    if batch.opened.is_none() {
        return Ok(0);
    }
    let full = std::mem::take(batch);
    tx.send(Work::Score(full))
        .await
        .map_err(|_| inference_stopped())?;
    Ok(1)
}

/// The inference thread: batches in, per-feature errors out, in order.
fn infer_loop(
    mut networks: Vec<Network>,
    device: Device,
    mut shapes: Vec<NetworkInput>,
    mut work: mpsc::Receiver<Work>,
    scored: mpsc::Sender<Result<Scored>>,
    metrics: Arc<Metrics>,
) {
    while let Some(next) = work.blocking_recv() {
        let batch = match next {
            Work::Score(batch) => batch,
            Work::Swap(slot, replacement, input) => {
                if let (Some(network), Some(shape)) = (networks.get_mut(slot), shapes.get_mut(slot))
                {
                    *network = *replacement;
                    *shape = input;
                }
                continue;
            }
        };
        let started = Instant::now();
        let mut per_feature = Vec::with_capacity(batch.parts.len());
        let mut failure = None;
        for (&model, part) in &batch.parts {
            let (Some(network), Some(&shape)) = (networks.get(model), shapes.get(model)) else {
                failure = Some(Error::Backend(format!("no network for model {model}")));
                break;
            };
            let count = part.jobs.len();
            let mut windows = part.windows.clone();
            if shape.centering.is_on() {
                for window in windows.chunks_exact_mut(shape.window * shape.features) {
                    shape.centering.apply(window, shape.features);
                }
            }
            let input = crate::data::window::to_tensor(
                windows,
                [count, shape.window, shape.features],
                &device,
            );
            match crate::score::reconstruction_errors(network, input) {
                Ok(values) => per_feature.push(values),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if batch.windows > 0 {
            metrics
                .inference_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(batch.windows as f64);
        }
        let message = match failure {
            Some(error) => Err(error),
            None => Ok(Scored { batch, per_feature }),
        };
        if scored.blocking_send(message).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCA model (fitted in milliseconds) of a seasonal series, with
    /// `window`s taken as `center` and `detrend` say.
    fn pca_model(center: crate::train::Center, detrend: bool, window: usize) -> TrainedModel {
        use crate::train::{Aggregate, DataConfig, TimeOfDay, TrainConfig, TrainRequest};
        let values = crate::synthetic::seasonal(400, 1, 3, &[]);
        let mut text = String::from("t,value\n");
        for (row, value) in values.iter().enumerate() {
            text.push_str(&format!("{row},{value}\n"));
        }
        let series = crate::data::Series::from_bytes(
            Path::new("train.csv"),
            text.as_bytes(),
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let request = TrainRequest {
            data: DataConfig {
                window,
                stride: 1,
                val_fraction: 0.2,
                scaler: crate::data::ScalerKind::Zscore,
                aggregate: Aggregate::Rows(1),
                coarse: 1,
                center,
                detrend,
                time_of_day: TimeOfDay::Off,
            },
            model: crate::model::ModelConfig::Pca(crate::model::PcaConfig {
                window,
                features: 1,
                components: 3,
            }),
            train: TrainConfig::default(),
        };
        let device = DeviceSpec::Cpu.build().unwrap_or_else(|e| panic!("{e}"));
        crate::train::train(&[series], &request, &device, &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A retrained artifact whose centring `--center auto` chose otherwise
    /// is swapped in with its series' detectors restarted, and the reload
    /// names the change; the same shape is swapped in as it is; another
    /// window is refused, with the changes named.
    #[test]
    fn a_reload_names_what_the_new_artifact_changes() {
        use crate::train::Center;
        let served = ServedModel::new(Path::new("m"), &pca_model(Center::Off, false, 16), 0);
        assert_eq!(
            served.reload_plan(&pca_model(Center::Off, false, 16)),
            ReloadPlan::Swap
        );
        assert_eq!(
            served.reload_plan(&pca_model(Center::Main, true, 16)),
            ReloadPlan::SwapAndRestart(
                "centring main levels, coarse levels -> main detrended, coarse levels".into()
            )
        );
        assert_eq!(
            served.reload_plan(&pca_model(Center::Main, true, 12)),
            ReloadPlan::Reject(vec![
                "window 16 -> 12".into(),
                "centring main levels, coarse levels -> main detrended, coarse levels".into()
            ])
        );
    }

    fn escalated() -> AnomalyEvent {
        AnomalyEvent {
            series: "db-1/latency".into(),
            phase: EventPhase::Escalated,
            start: 1_700_000_300.0,
            window_start: 1_700_000_000.0,
            end: 1_700_000_600.5,
            peak_score: 0.9,
            threshold: 0.03,
            model: "m".into(),
            kind: "dense".into(),
            top_features: vec![FeatureContribution {
                feature: "v0".into(),
                error: 1.5,
            }],
            cause: Cause::Stillness,
        }
    }

    #[test]
    fn phase_and_cause_travel_in_both_encodings_and_old_json_reads_as_closed_by_error() {
        let event = escalated();
        let bytes = event.to_proto().encode_to_vec();
        let decoded =
            crate::proto::AnomalyEvent::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.phase(), crate::proto::EventPhase::Escalated);
        assert_eq!(decoded.cause(), crate::proto::Cause::Stillness);
        assert_eq!(decoded.start_ms, 1_700_000_300_000);
        assert_eq!(decoded.end_ms, 1_700_000_600_500);

        let json = serde_json::to_value(&event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["phase"], "escalated");
        assert_eq!(json["cause"], "stillness");
        let mut old = json;
        if let Some(fields) = old.as_object_mut() {
            fields.remove("phase");
            fields.remove("cause");
        }
        let read: AnomalyEvent = serde_json::from_value(old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((read.phase, read.cause), (EventPhase::Closed, Cause::Error));
    }
}
