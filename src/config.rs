//! The daemon's configuration: `anomalyd serve --config anomalyd.toml`.
//!
//! Plain documented data with defaults; [`ServeConfig::validate`] checks the
//! cross-field rules at start-up and names the offending field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::DetectorConfig;
use crate::error::{Error, Result};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Where samples come from and where events go.
    pub kafka: KafkaConfig,
    /// The model artifact that scores every series.
    pub model: ModelSource,
    /// Micro-batching of windows for inference.
    pub scoring: ScoringConfig,
    /// Per-series state limits.
    pub series: SeriesConfig,
    /// How reconstruction errors become anomalies (see `anomalyd::detect`).
    pub detector: DetectorConfig,
    /// The HTTP endpoints: /metrics, /healthz, /readyz.
    pub http: HttpConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
}

/// Payload encoding of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// `{"series": "...", "ts": <RFC 3339 or epoch ms>, "values": [..]}` or `"value": x`.
    #[default]
    Json,
    /// One `anomalyd.v1.Sample` per message.
    Protobuf,
    /// One `anomalyd.v1.SampleBatch` per message.
    ProtobufBatch,
}

/// Encoding of the anomaly events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    #[default]
    Json,
    /// `anomalyd.v1.AnomalyEvent`.
    Protobuf,
}

/// A point in an anomaly event's life at which a message is written.
/// Every message of one event carries the same `series` and `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventPhase {
    /// Confirmed: the row at which `eval` hands the event to NAB, and the
    /// first moment an alert can go out.
    Opened,
    /// An open event grew (see `detect::events::ESCALATION`).
    Escalated,
    /// Ended: the merge gap passed unflagged; the message holds the event's
    /// whole span and peak. (The only message before phases were written,
    /// hence the default when a message has none.)
    #[default]
    Closed,
}

impl EventPhase {
    pub const ALL: [EventPhase; 3] = [Self::Opened, Self::Escalated, Self::Closed];
}

/// Kafka input and output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Consumer group id; replicas in one group share the partitions.
    pub group_id: String,
    /// Topics to consume. A name starting with `^` is a regex subscription.
    pub topics: Vec<String>,
    /// Payload format of the input topics. A `content-type` header on a
    /// message overrides it: `application/json`, `application/x-protobuf`
    /// (a Sample) or `application/x-protobuf; proto=anomalyd.v1.SampleBatch`.
    pub format: PayloadFormat,
    /// Per-topic formats, overriding `format` for the topics named.
    pub topic_formats: BTreeMap<String, PayloadFormat>,
    /// Topic that receives anomaly events; none when unset.
    pub events_topic: Option<String>,
    /// Encoding of the events: json or protobuf.
    pub events_format: EventFormat,
    /// The phases of an event that are written to the events topic.
    pub event_phases: Vec<EventPhase>,
    /// Topic that receives invalid messages, with the reason in the
    /// `anomalyd-reason` header; none when unset.
    pub dead_letter_topic: Option<String>,
    /// Messages larger than this many bytes are rejected as `oversized`.
    pub max_message_bytes: usize,
    /// Any librdkafka property, passed through as is (SASL, TLS, timeouts).
    /// The offset-management properties are set by anomalyd and refused here.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group_id: "anomalyd".into(),
            topics: Vec::new(),
            format: PayloadFormat::Json,
            topic_formats: BTreeMap::new(),
            events_topic: None,
            events_format: EventFormat::Json,
            event_phases: EventPhase::ALL.to_vec(),
            dead_letter_topic: None,
            max_message_bytes: 1 << 20,
            properties: BTreeMap::new(),
        }
    }
}

/// Which model scores which series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSource {
    /// Artifact directory written by `anomalyd train`: the model of every
    /// series that no route claims. Leave it empty to serve only routed
    /// series (the rest are rejected as `no_model`).
    pub path: PathBuf,
    /// Routes, tried in order; the first whose pattern matches the series
    /// key picks the model. One model can serve many series.
    pub routes: Vec<ModelRoute>,
    /// Compute device: `cpu` (default), `libtorch` or `cuda:N` (the last
    /// two need the `tch` build).
    pub device: String,
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    /// A glob on the series key (`host-*/cpu`), or a regex when it starts
    /// with `^`.
    pub series: String,
    /// Artifact directory.
    pub path: PathBuf,
}

/// Micro-batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// A batch closes at this many windows...
    pub max_batch: usize,
    /// ...or this many milliseconds after its first message, whichever first.
    pub max_wait_ms: u64,
    /// Score every `stride`-th point of each series.
    pub stride: usize,
    /// Batches queued between stages; a slow model slows the consumer.
    pub queue_batches: usize,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_wait_ms: 50,
            stride: 1,
            queue_batches: 4,
        }
    }
}

/// Per-series state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesConfig {
    /// Series tracked at once; the least recently seen is evicted beyond it
    /// (counted in `anomalyd_series_evicted_total`). The default, 10,000,
    /// holds about 0.8 GB of detector history once every window is full
    /// (80 kB a series with the default detector, `cargo bench --bench
    /// series_memory`): a bound a pod can have, where the old 100,000
    /// bounded nothing in practice.
    pub max_series: usize,
    /// A gap between samples longer than this resets the series' window.
    pub max_gap_seconds: f64,
    /// Series with their own metric labels; the rest share `__overflow__`.
    pub max_series_labels: usize,
    /// Where the series' windows and detectors are saved on a graceful
    /// stop and taken back on start, so a restart does not warm every
    /// series up again. None keeps them in memory only.
    pub state_file: Option<PathBuf>,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        Self {
            max_series: 10_000,
            max_gap_seconds: 3600.0,
            max_series_labels: 1000,
            state_file: None,
        }
    }
}

/// HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Bind address of /metrics, /healthz and /readyz.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9898)),
        }
    }
}

/// Shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Time allowed to drain in-flight batches and commit after SIGTERM.
    /// Keep it below Kafka's session timeout and Kubernetes' grace period.
    pub drain_deadline_seconds: f64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_deadline_seconds: 20.0,
        }
    }
}

/// A compiled series pattern: a glob, or a regex when it starts with `^`.
#[derive(Debug, Clone)]
pub enum SeriesPattern {
    Glob(globset::GlobMatcher),
    Regex(regex::Regex),
}

impl SeriesPattern {
    pub fn parse(pattern: &str) -> std::result::Result<Self, String> {
        if pattern.starts_with('^') {
            regex::Regex::new(pattern)
                .map(Self::Regex)
                .map_err(|e| e.to_string())
        } else {
            globset::Glob::new(pattern)
                .map(|g| Self::Glob(g.compile_matcher()))
                .map_err(|e| e.to_string())
        }
    }

    pub fn matches(&self, series: &str) -> bool {
        match self {
            Self::Glob(glob) => glob.is_match(series),
            Self::Regex(regex) => regex.is_match(series),
        }
    }
}

/// Properties anomalyd owns for at-least-once delivery.
const RESERVED_PROPERTIES: [&str; 4] = [
    "enable.auto.offset.store",
    "enable.auto.commit",
    "group.id",
    "bootstrap.servers",
];

impl ServeConfig {
    /// Reads a TOML file; unknown fields and type errors name the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config {
            field: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The `[detector]` of a configuration file, checked as `serve` checks
    /// it: `train` calibrates k for it and `score` judges with it, as the
    /// daemon run on that file will. Errors name the file and the field.
    pub fn detector_from_file(path: &Path) -> Result<DetectorConfig> {
        let detector = Self::from_file(path)?.detector;
        detector.validate().map_err(|e| match e {
            Error::Config { field, reason } => Error::Config {
                field: format!("{}: detector.{field}", path.display()),
                reason,
            },
            other => other,
        })?;
        Ok(detector)
    }

    /// Checks every rule that crosses fields or needs a value.
    pub fn validate(&self) -> Result<()> {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return Err(Error::config("kafka.brokers", "is empty"));
        }
        if k.group_id.trim().is_empty() {
            return Err(Error::config("kafka.group_id", "is empty"));
        }
        if k.topics.is_empty() {
            return Err(Error::config("kafka.topics", "name at least one topic"));
        }
        if k.events_topic.is_some() && k.event_phases.is_empty() {
            return Err(Error::config(
                "kafka.event_phases",
                "is empty: name opened, escalated or closed, or leave kafka.events_topic unset",
            ));
        }
        if k.max_message_bytes == 0 {
            return Err(Error::config("kafka.max_message_bytes", "must be positive"));
        }
        for key in k.properties.keys() {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                return Err(Error::config(
                    format!("kafka.properties.{key}"),
                    "is set by anomalyd (use kafka.brokers / kafka.group_id for those)",
                ));
            }
        }
        if !self.model.device.is_empty()
            && self
                .model
                .device
                .parse::<crate::device::DeviceSpec>()
                .is_err()
        {
            return Err(Error::config(
                "model.device",
                format!(
                    "unknown device '{}'; expected {}",
                    self.model.device,
                    crate::device::DEVICE_SYNTAX
                ),
            ));
        }
        if self.model.path.as_os_str().is_empty() && self.model.routes.is_empty() {
            return Err(Error::config(
                "model.path",
                "is empty and there are no model.routes",
            ));
        }
        for (i, route) in self.model.routes.iter().enumerate() {
            if route.path.as_os_str().is_empty() {
                return Err(Error::config(format!("model.routes[{i}].path"), "is empty"));
            }
            SeriesPattern::parse(&route.series)
                .map_err(|reason| Error::config(format!("model.routes[{i}].series"), reason))?;
        }
        let s = &self.scoring;
        if s.max_batch == 0 {
            return Err(Error::config("scoring.max_batch", "must be positive"));
        }
        if s.stride == 0 {
            return Err(Error::config("scoring.stride", "must be positive"));
        }
        if s.queue_batches == 0 {
            return Err(Error::config("scoring.queue_batches", "must be positive"));
        }
        if self.series.max_series == 0 {
            return Err(Error::config("series.max_series", "must be positive"));
        }
        if self.series.max_gap_seconds.is_nan() || self.series.max_gap_seconds <= 0.0 {
            return Err(Error::config("series.max_gap_seconds", "must be positive"));
        }
        if let Some(file) = &self.series.state_file {
            // Found now rather than at the stop, when the state would be lost.
            let folder = match file.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if file.file_name().is_none() || !folder.is_dir() {
                return Err(Error::config(
                    "series.state_file",
                    format!("{}: not a file in an existing folder", file.display()),
                ));
            }
        }
        if self.shutdown.drain_deadline_seconds.is_nan()
            || self.shutdown.drain_deadline_seconds <= 0.0
        {
            return Err(Error::config(
                "shutdown.drain_deadline_seconds",
                "must be positive",
            ));
        }
        self.detector.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<ServeConfig, String> {
        toml::from_str::<ServeConfig>(text).map_err(|e| e.to_string())
    }

    /// The message `validate` refuses `config` with ("valid" if it does not).
    fn refusal(config: &ServeConfig) -> String {
        config
            .validate()
            .map_or_else(|e| e.to_string(), |()| "valid".into())
    }

    #[test]
    fn a_minimal_file_takes_the_defaults() {
        let config = parse("[kafka]\ntopics = [\"m\"]\n[model]\npath = \"models/a\"\n");
        let config = config.unwrap_or_default();
        assert_eq!(config.kafka.topics, vec!["m".to_string()]);
        assert_eq!(config.scoring, ScoringConfig::default());
        assert_eq!(config.http.listen.port(), 9898);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn event_phases_default_to_all_are_read_by_name_and_may_not_be_empty() {
        let base = "[kafka]\ntopics = [\"m\"]\nevents_topic = \"e\"\n";
        let config = parse(base).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.kafka.event_phases, EventPhase::ALL.to_vec());
        let closed = parse(&format!("{base}event_phases = [\"closed\"]\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(closed.kafka.event_phases, vec![EventPhase::Closed]);
        let unknown = parse(&format!("{base}event_phases = [\"started\"]\n"))
            .map_or_else(|e| e, |_| "parsed".into());
        assert!(unknown.contains("started"), "{unknown}");
        let none = parse(&format!("{base}event_phases = []\n")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            refusal(&none).contains("kafka.event_phases"),
            "{}",
            refusal(&none)
        );
    }

    #[test]
    fn a_meanstd_threshold_without_trim_gets_the_defaults_and_a_bad_trim_or_exclude_is_named() {
        let base = "[kafka]\ntopics = [\"m\"]\n[model]\npath = \"m\"\n[detector.threshold]\nkind = \"meanstd\"\nwindow = 500\nk = 3.0\n";
        let config = parse(base).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.detector.threshold,
            crate::detect::ThresholdConfig::MeanStd {
                window: 500,
                k: 3.0,
                trim: crate::detect::DEFAULT_TRIM,
                exclude: crate::detect::DEFAULT_EXCLUDE
            }
        );
        for (line, field) in [
            ("trim = 0.6", "threshold.trim"),
            ("exclude = -1.0", "threshold.exclude"),
        ] {
            let config = parse(&format!("{base}{line}\n")).unwrap_or_else(|e| panic!("{e}"));
            let message = refusal(&config);
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn a_negative_range_tolerance_or_a_flatline_ratio_of_one_is_named() {
        let base = "[kafka]\ntopics = [\"m\"]\n[model]\npath = \"m\"\n[detector]\n";
        for (line, field) in [
            ("range_tolerance = -0.1", "range_tolerance"),
            ("flatline_ratio = 1.0", "flatline_ratio"),
            ("flatline_ratio = -0.5", "flatline_ratio"),
            ("roughness_ratio = 0.5", "roughness_ratio"),
            ("roughness_ratio = 1.0", "roughness_ratio"),
            ("roughness_ratio = inf", "roughness_ratio"),
            ("seasonal_ratio = 0.9", "seasonal_ratio"),
            ("weekly_ratio = 1.0", "weekly_ratio"),
        ] {
            let config = parse(&format!("{base}{line}\n")).unwrap_or_else(|e| panic!("{e}"));
            let message = refusal(&config);
            assert!(message.contains(field), "{message}");
        }
        let off = parse(&format!(
            "{base}range_tolerance = 0.0\nflatline_ratio = 0.0\nroughness_ratio = 0.0\nseasonal_ratio = 0.0\nweekly_ratio = 0.0\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(off.validate().is_ok());
    }

    /// An `[detector.events]` written before `min_peak` was takes the
    /// default; one under 0.5 (below the threshold) is refused by name.
    #[test]
    fn events_without_min_peak_take_the_default_and_one_under_a_half_is_named() {
        let base = "[kafka]\ntopics = [\"m\"]\n[model]\npath = \"m\"\n[detector.events]\nmin_length = 1\nmerge_gap = 50\ncooldown = 100\n";
        let older = parse(base).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            older.detector.events.min_peak,
            crate::detect::DEFAULT_MIN_PEAK
        );
        let low = parse(&format!("{base}min_peak = 0.45\n")).unwrap_or_else(|e| panic!("{e}"));
        let message = refusal(&low);
        assert!(message.contains("events.min_peak"), "{message}");
    }

    #[test]
    fn the_shipped_example_parses_validates_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/anomalyd.toml");
        let config = ServeConfig::from_file(&path).map_err(|e| e.to_string());
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert!(config.validate().is_ok());
        assert_eq!(config.scoring, ScoringConfig::default());
        assert_eq!(config.series, SeriesConfig::default());
        assert_eq!(config.detector, DetectorConfig::default());
        assert_eq!(config.shutdown, ShutdownConfig::default());
    }

    #[test]
    fn the_kubernetes_config_parses_and_fits_the_pod() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/base/anomalyd.toml");
        let config = ServeConfig::from_file(&path).map_err(|e| e.to_string());
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert!(config.validate().is_ok());
        // The Deployment mounts the models volume at /models and serves the
        // probes on 9898; deploy/check.py checks the grace period.
        assert!(config.model.path.starts_with("/models"));
        assert_eq!(config.http.listen.port(), 9898);
    }

    #[test]
    fn routes_take_globs_and_regexes_and_bad_patterns_name_their_route() {
        let glob = SeriesPattern::parse("host-*/cpu").map_err(|e| e.to_string());
        assert!(
            glob.as_ref()
                .is_ok_and(|p| p.matches("host-7/cpu") && !p.matches("host-7/mem"))
        );
        let regex = SeriesPattern::parse("^db-[0-9]+$").map_err(|e| e.to_string());
        assert!(
            regex
                .as_ref()
                .is_ok_and(|p| p.matches("db-12") && !p.matches("db-x"))
        );
        let text = "[kafka]\ntopics = [\"m\"]\n[[model.routes]]\nseries = \"ok-*\"\npath = \"a\"\n[[model.routes]]\nseries = \"^(\"\npath = \"b\"\n";
        let config = parse(text).unwrap_or_default();
        let message = refusal(&config);
        assert!(message.contains("model.routes[1].series"), "{message}");
    }

    #[test]
    fn a_state_file_outside_an_existing_folder_names_series_state_file() {
        let config = parse(
            "[kafka]\ntopics = [\"m\"]\n[model]\npath = \"a\"\n[series]\nstate_file = \"/no/such/folder/state.bin\"\n",
        )
        .unwrap_or_default();
        let message = refusal(&config);
        assert!(message.contains("series.state_file"), "{message}");
        let fine = parse(
            "[kafka]\ntopics = [\"m\"]\n[model]\npath = \"a\"\n[series]\nstate_file = \"state.bin\"\n",
        );
        assert!(fine.is_ok_and(|c| c.validate().is_ok()));
    }

    #[test]
    fn a_bad_device_names_model_device() {
        let config = parse("[kafka]\ntopics = [\"m\"]\n[model]\npath = \"a\"\ndevice = \"gpu0\"\n");
        let message = config
            .unwrap_or_default()
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("model.device") && message.contains("gpu0"),
            "{message}"
        );
        let config =
            parse("[kafka]\ntopics = [\"m\"]\n[model]\npath = \"a\"\ndevice = \"cuda:1\"\n");
        // Parsing is not running: whether this binary can use CUDA is
        // checked when the daemon starts.
        assert!(config.is_ok_and(|c| c.validate().is_ok()));
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let message = parse("[kafka]\ntopicz = [\"m\"]\n")
            .err()
            .unwrap_or_default();
        assert!(message.contains("topicz"), "{message}");
        let config = ServeConfig {
            kafka: KafkaConfig {
                topics: vec!["m".into()],
                ..KafkaConfig::default()
            },
            model: ModelSource {
                path: "m".into(),
                ..ModelSource::default()
            },
            scoring: ScoringConfig {
                max_batch: 0,
                ..ScoringConfig::default()
            },
            ..ServeConfig::default()
        };
        let message = refusal(&config);
        assert!(message.contains("scoring.max_batch"), "{message}");
        let mut reserved = config.clone();
        reserved.scoring = ScoringConfig::default();
        reserved
            .kafka
            .properties
            .insert("enable.auto.commit".into(), "true".into());
        let message = refusal(&reserved);
        assert!(
            message.contains("kafka.properties.enable.auto.commit"),
            "{message}"
        );
    }
}
