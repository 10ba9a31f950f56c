//! The daemon's Prometheus metrics: one struct owns a private registry,
//! registered once and shared by `Arc`. Series labels are capped: beyond
//! `max_series_labels` distinct series, the rest share `__overflow__`.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::error::{Error, Result};

/// The label value shared by series beyond the cap.
pub const OVERFLOW_SERIES: &str = "__overflow__";

pub struct Metrics {
    registry: Registry,
    pub anomaly_score: GaugeVec,
    pub reconstruction_error: GaugeVec,
    pub threshold: GaugeVec,
    pub smoothed_error: GaugeVec,
    pub anomalous: IntGaugeVec,
    pub anomalies: IntCounterVec,
    pub escalations: IntCounterVec,
    pub out_of_range: IntCounterVec,
    pub flatlines: IntCounterVec,
    pub rough: IntCounterVec,
    pub seasonal: IntCounterVec,
    pub samples: IntCounterVec,
    pub invalid_messages: IntCounterVec,
    pub windows_scored: IntCounter,
    pub inference_seconds: Histogram,
    pub batch_size: Histogram,
    pub sample_lag_seconds: Histogram,
    pub series_tracked: IntGauge,
    pub series_evicted: IntCounter,
    pub series_folded: IntCounter,
    pub model_info: IntGaugeVec,
    pub model_reloads: IntCounterVec,
    pub detector_restarts: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub offsets_committed: IntCounter,
    pub ready: Gauge,
    labelled: Mutex<HashSet<String>>,
    max_labels: usize,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> Result<T> {
    registry
        .register(Box::new(metric.clone()))
        .map_err(|e| Error::config("metrics", e.to_string()))?;
    Ok(metric)
}

fn fail(e: prometheus::Error) -> Error {
    Error::config("metrics", e.to_string())
}

impl Metrics {
    pub fn new(max_series_labels: usize) -> Result<Self> {
        let registry = Registry::new();
        let r = &registry;
        let series_gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["series"]).map_err(fail)
        };
        let build = register(
            r,
            IntGaugeVec::new(
                Opts::new("anomalyd_build_info", "Build information (value 1)."),
                &["version"],
            )
            .map_err(fail)?,
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let metrics = Self {
            anomaly_score: register(
                r,
                series_gauge(
                    "anomalyd_anomaly_score",
                    "Latest anomaly score in [0, 1), 0.5 at the threshold: s/(s+threshold), \
                     or the coarse scale's or the range check's where larger.",
                )?,
            )?,
            reconstruction_error: register(
                r,
                series_gauge(
                    "anomalyd_reconstruction_error",
                    "Latest window reconstruction error (mean squared, normalised units).",
                )?,
            )?,
            threshold: register(
                r,
                series_gauge(
                    "anomalyd_threshold",
                    "Current causal threshold on the smoothed error (anomalyd_smoothed_error).",
                )?,
            )?,
            smoothed_error: register(
                r,
                series_gauge(
                    "anomalyd_smoothed_error",
                    "Latest smoothed reconstruction error, what the threshold judges (main scale).",
                )?,
            )?,
            anomalous: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "anomalyd_anomalous",
                        "1 while the series is inside an anomaly event.",
                    ),
                    &["series"],
                )
                .map_err(fail)?,
            )?,
            anomalies: register(
                r,
                IntCounterVec::new(
                    Opts::new("anomalyd_anomalies_total", "Anomaly events opened."),
                    &["series"],
                )
                .map_err(fail)?,
            )?,
            escalations: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "anomalyd_escalations_total",
                        format!(
                            "Open anomaly events that grew: a flag's error over its threshold reached {} times the event's peak.",
                            crate::detect::events::ESCALATION
                        ),
                    ),
                    &["series"],
                )
                .map_err(fail)?,
            )?,
            out_of_range: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "anomalyd_out_of_range_total",
                        "Points whose values left the model's training range by more than detector.range_tolerance of it.",
                    ),
                    &["series"],
                )
                .map_err(fail)?,
            )?,
            flatlines: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "anomalyd_flatline_total",
                        "Points whose window moved less than detector.flatline_ratio of the quietest training window.",
                    ),
                    &["series"],
                )
                .map_err(fail)?,
            )?,
            rough: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "anomalyd_rough_total",
                        "Points whose window's median step exceeded detector.roughness_ratio times the roughest training window's.",
                    ),
                    &["series"],
                )
                .map_err(fail)?,
            )?,
            seasonal: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "anomalyd_seasonal_total",
                        "Points whose window differed from a day earlier by more than detector.seasonal_ratio times the largest training window's difference, or from a week earlier by more than detector.weekly_ratio times.",
                    ),
                    &["series"],
                )
                .map_err(fail)?,
            )?,
            samples: register(
                r,
                IntCounterVec::new(
                    Opts::new("anomalyd_samples_total", "Samples consumed, by outcome."),
                    &["outcome"],
                )
                .map_err(fail)?,
            )?,
            invalid_messages: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "anomalyd_invalid_messages_total",
                        "Rejected messages, by reason.",
                    ),
                    &["reason"],
                )
                .map_err(fail)?,
            )?,
            windows_scored: register(
                r,
                IntCounter::new(
                    "anomalyd_windows_scored_total",
                    "Windows scored by a model.",
                )
                .map_err(fail)?,
            )?,
            inference_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "anomalyd_inference_seconds",
                        "Forward pass time per batch.",
                    )
                    .buckets(prometheus::exponential_buckets(1e-5, 3.0, 12).map_err(fail)?),
                )
                .map_err(fail)?,
            )?,
            batch_size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("anomalyd_batch_size", "Windows per inference batch.")
                        .buckets(prometheus::exponential_buckets(1.0, 2.0, 12).map_err(fail)?),
                )
                .map_err(fail)?,
            )?,
            sample_lag_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "anomalyd_sample_lag_seconds",
                        "Time from a sample's timestamp to its score.",
                    )
                    .buckets(prometheus::exponential_buckets(1e-3, 4.0, 12).map_err(fail)?),
                )
                .map_err(fail)?,
            )?,
            series_tracked: register(
                r,
                IntGauge::new("anomalyd_series_tracked", "Series with state in memory.")
                    .map_err(fail)?,
            )?,
            series_evicted: register(
                r,
                IntCounter::new(
                    "anomalyd_series_evicted_total",
                    "Series dropped from memory, least recently seen first, to stay within series.max_series.",
                )
                .map_err(fail)?,
            )?,
            series_folded: register(
                r,
                IntCounter::new(
                    "anomalyd_series_folded_total",
                    "Updates of series beyond the label cap, folded into __overflow__.",
                )
                .map_err(fail)?,
            )?,
            model_info: register(
                r,
                IntGaugeVec::new(
                    Opts::new("anomalyd_model_info", "The loaded model (value 1)."),
                    &["model", "kind", "version"],
                )
                .map_err(fail)?,
            )?,
            model_reloads: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "anomalyd_model_reloads_total",
                        "Model reloads (SIGHUP), by outcome.",
                    ),
                    &["outcome"],
                )
                .map_err(fail)?,
            )?,
            detector_restarts: register(
                r,
                IntCounter::new(
                    "anomalyd_detector_restarts_total",
                    "Series whose detector started afresh (warming up again) because a reloaded model centres its windows otherwise.",
                )
                .map_err(fail)?,
            )?,
            consumer_lag: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "anomalyd_consumer_lag_messages",
                        "Consumer lag per partition, from librdkafka statistics.",
                    ),
                    &["topic", "partition"],
                )
                .map_err(fail)?,
            )?,
            offsets_committed: register(
                r,
                IntCounter::new(
                    "anomalyd_offset_commits_total",
                    "Synchronous offset commits.",
                )
                .map_err(fail)?,
            )?,
            ready: register(
                r,
                Gauge::new(
                    "anomalyd_ready",
                    "1 when the model is loaded and partitions are assigned.",
                )
                .map_err(fail)?,
            )?,
            labelled: Mutex::new(HashSet::new()),
            max_labels: max_series_labels,
            registry,
        };
        // Pre-create the outcome and reason series so that rates exist at 0.
        for outcome in [
            "scored",
            "warming",
            "averaging",
            "skipped",
            "invalid",
            "dropped",
        ] {
            metrics.samples.with_label_values(&[outcome]);
        }
        for outcome in ["ok", "rejected"] {
            metrics.model_reloads.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }

    /// Brings the series gauge and the eviction counter up to the series
    /// table: `tracked` series now, `evicted` since start-up.
    pub fn observe_series(&self, tracked: usize, evicted: u64) {
        self.series_tracked.set(tracked as i64);
        // Called per sample: a read, and an increment only after evictions.
        let unreported = evicted.saturating_sub(self.series_evicted.get());
        if unreported > 0 {
            self.series_evicted.inc_by(unreported);
        }
    }

    /// The label value for `series`: itself while under the cap, or
    /// `__overflow__` (counted) beyond it.
    pub fn series_label<'a>(&self, series: &'a str) -> &'a str {
        let mut labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if labelled.contains(series) {
            return series;
        }
        if labelled.len() < self.max_labels {
            labelled.insert(series.to_owned());
            return series;
        }
        self.series_folded.inc();
        OVERFLOW_SERIES
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        buffer
    }
}
