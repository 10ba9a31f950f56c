//! `anomalyd demo`: the whole loop on one machine, no external services.
//!
//! An in-process librdkafka mock cluster; a producer that replays synthetic
//! series with injected anomalies in accelerated time; a model trained on
//! the fly (unless one is given); the real serve pipeline with `/metrics` on
//! localhost; and a summary of the anomalies found against those injected.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{EventPhase, HttpConfig, KafkaConfig, ModelSource, ScoringConfig, ServeConfig};
use crate::data::{CsvOptions, Series};
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::model::artifact::TrainedModel;
use crate::model::{DenseAeConfig, ModelConfig};
use crate::serve::AnomalyEvent;
use crate::synthetic::{Injection, seasonal};
use crate::train::{DataConfig, TrainConfig, TrainRequest, train};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Rows per series.
    pub rows: usize,
    /// Rows per second replayed (per series).
    pub rate: f64,
    pub listen: SocketAddr,
    /// A trained univariate artifact; trained on the fly when `None`.
    pub model: Option<PathBuf>,
    /// Where the on-the-fly model is written.
    pub work_dir: PathBuf,
    pub seed: u64,
    /// Where the model trains and scores.
    pub device: DeviceSpec,
}

/// One replayed series and what was found in it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesSummary {
    pub series: String,
    /// Rows carrying an injected anomaly, half-open.
    pub labelled: Vec<(usize, usize)>,
    /// Events the daemon emitted, as row ranges (inclusive).
    pub events: Vec<(usize, usize)>,
    /// Labelled anomalies touched by at least one event.
    pub found: usize,
    /// Events that touch no labelled anomaly.
    pub false_events: usize,
}

/// What `demo` reports at the end.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DemoSummary {
    pub http: SocketAddr,
    pub windows_scored: u64,
    pub series: Vec<SeriesSummary>,
}

const START_SECONDS: f64 = 1_700_000_000.0;
const STEP_SECONDS: f64 = 60.0;

fn demo_series(rows: usize, seed: u64) -> Vec<(String, Vec<f64>, Vec<Injection>)> {
    let at = |share: f64| (rows as f64 * share) as usize;
    let cases = [
        ("demo/clean", vec![]),
        (
            "demo/spike",
            vec![Injection::Spike {
                at: at(0.75),
                size: 4.0,
            }],
        ),
        (
            "demo/shift",
            vec![Injection::Shift {
                from: at(0.6),
                to: at(0.65),
                size: 2.0,
            }],
        ),
        (
            "demo/frequency",
            vec![Injection::Frequency {
                from: at(0.7),
                to: at(0.75),
                factor: 2.0,
            }],
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, injections))| {
            let values = seasonal(rows, 1, seed + i as u64, &injections);
            (name.to_owned(), values, injections)
        })
        .collect()
}

fn train_model(options: &DemoOptions) -> Result<PathBuf> {
    if let Some(path) = &options.model {
        return Ok(path.clone());
    }
    let values = seasonal(3000, 1, options.seed + 100, &[]);
    let mut text = String::from("t,value\n");
    for (row, value) in values.iter().enumerate() {
        text.push_str(&format!("{row},{value}\n"));
    }
    let series = Series::from_bytes(
        std::path::Path::new("demo-training.csv"),
        text.as_bytes(),
        &CsvOptions::default(),
    )?;
    let request = TrainRequest {
        data: DataConfig {
            window: 32,
            stride: 1,
            val_fraction: 0.2,
            scaler: crate::data::ScalerKind::Zscore,
            aggregate: crate::train::Aggregate::Rows(1),
            coarse: crate::train::DEFAULT_COARSE,
            center: Default::default(),
            detrend: false,
            time_of_day: Default::default(),
        },
        model: ModelConfig::Dense(DenseAeConfig::new(32, 1, 8)),
        train: TrainConfig {
            epochs: 20,
            seed: options.seed,
            ..TrainConfig::default()
        },
    };
    let device = options.device.build()?;
    let series = [series];
    let mut model: TrainedModel = train(&series, &request, &device, &mut |_| {})?;
    // As `anomalyd train` does by default.
    crate::score::record_k_factor(
        &crate::detect::DetectorConfig::default(),
        &mut model,
        &series,
        &device,
        1024,
    )?;
    let dir = options.work_dir.join("model");
    model.save(&dir)?;
    Ok(dir)
}

fn kafka(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("demo {context}: {e}"))
}

/// Runs the demo; `on_tick` sees a one-line status about once a second.
pub async fn run(options: DemoOptions, on_tick: &mut dyn FnMut(&str)) -> Result<DemoSummary> {
    let model_dir = train_model(&options)?;
    let cluster = MockCluster::new(1).map_err(|e| kafka("mock cluster", e))?;
    cluster
        .create_topic("samples", 2, 1)
        .map_err(|e| kafka("topic", e))?;
    cluster
        .create_topic("events", 1, 1)
        .map_err(|e| kafka("topic", e))?;
    let brokers = cluster.bootstrap_servers();

    let config = ServeConfig {
        kafka: KafkaConfig {
            brokers: brokers.clone(),
            group_id: "anomalyd-demo".into(),
            topics: vec!["samples".into()],
            events_topic: Some("events".into()),
            ..KafkaConfig::default()
        },
        model: ModelSource {
            path: model_dir,
            device: options.device.to_string(),
            routes: Vec::new(),
        },
        scoring: ScoringConfig {
            max_wait_ms: 20,
            ..ScoringConfig::default()
        },
        http: HttpConfig {
            listen: options.listen,
        },
        ..ServeConfig::default()
    };
    let shutdown = CancellationToken::new();
    let running = crate::serve::start(config, shutdown.clone()).await?;
    let metrics = running.metrics.clone();
    let window = 32;

    let series = demo_series(options.rows, options.seed);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| kafka("producer", e))?;
    let events_reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "anomalyd-demo-events")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| kafka("events consumer", e))?;
    events_reader
        .subscribe(&["events"])
        .map_err(|e| kafka("events subscribe", e))?;

    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut events: Vec<AnomalyEvent> = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(1.0));
    let mut pending = Vec::new();
    for row in 0..options.rows {
        for (name, values, _) in &series {
            let payload = format!(
                r#"{{"ts":{},"value":{}}}"#,
                ((START_SECONDS + row as f64 * STEP_SECONDS) * 1000.0) as i64,
                values[row]
            );
            let record = FutureRecord::to("samples").key(name).payload(&payload);
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| kafka("produce", e))?,
            );
        }
        // Deliveries are awaited in groups, so that pacing, not round
        // trips, sets the rate.
        if pending.len() >= 256 || row + 1 == options.rows {
            for delivery in pending.drain(..) {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(kafka("produce", e)),
                    Err(_) => return Err(kafka("produce", "delivery cancelled")),
                }
            }
        }
        let due = started + interval * (row as u32 + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            on_tick(&status(&metrics, &series, row + 1, options.rows));
        }
    }
    let expected = (series.len() * options.rows.saturating_sub(window - 1)) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.windows_scored.get() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Events close a little after their anomaly; give the producer a moment.
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        if let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(200), events_reader.recv()).await
            && let Ok(event) =
                serde_json::from_slice::<AnomalyEvent>(message.payload().unwrap_or_default())
        {
            events.push(event);
        }
    }
    on_tick(&status(&metrics, &series, options.rows, options.rows));
    shutdown.cancel();
    if let Ok(outcome) = running.task.await {
        outcome?;
    }
    let row_of = |t: f64| ((t - START_SECONDS) / STEP_SECONDS).round().max(0.0) as usize;
    let summaries = series
        .iter()
        .map(|(name, _, injections)| {
            let labelled: Vec<Range<usize>> = injections.iter().map(|i| i.span()).collect();
            let spans: Vec<(usize, usize)> = events
                .iter()
                .filter(|e| &e.series == name && e.phase == EventPhase::Closed)
                .map(|e| (row_of(e.start), row_of(e.end)))
                .collect();
            // An event is credited when it starts before the anomaly has
            // scrolled out of the window and ends after it began.
            let touches = |span: &(usize, usize), truth: &Range<usize>| {
                span.0 < truth.end + window && span.1 >= truth.start
            };
            SeriesSummary {
                series: name.clone(),
                labelled: labelled.iter().map(|r| (r.start, r.end)).collect(),
                found: labelled
                    .iter()
                    .filter(|truth| spans.iter().any(|s| touches(s, truth)))
                    .count(),
                false_events: spans
                    .iter()
                    .filter(|s| !labelled.iter().any(|truth| touches(s, truth)))
                    .count(),
                events: spans,
            }
        })
        .collect();
    Ok(DemoSummary {
        http: running.http_addr,
        windows_scored: metrics.windows_scored.get(),
        series: summaries,
    })
}

fn status(
    metrics: &crate::metrics::Metrics,
    series: &[(String, Vec<f64>, Vec<Injection>)],
    produced: usize,
    rows: usize,
) -> String {
    let mut line = format!(
        "rows {produced}/{rows}  windows scored {}",
        metrics.windows_scored.get()
    );
    for (name, _, _) in series {
        line.push_str(&format!(
            "  | {name} score {:.2} events {}",
            metrics.anomaly_score.with_label_values(&[name]).get(),
            metrics.anomalies.with_label_values(&[name]).get()
        ));
    }
    line
}
