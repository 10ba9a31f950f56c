//! The daemon end to end on rdkafka's in-process mock cluster: samples in,
//! metrics, anomaly events and committed offsets out.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anomalyd::config::{EventPhase, KafkaConfig, ModelSource, ScoringConfig, ServeConfig};
use anomalyd::model::{DenseAeConfig, ModelConfig};
use anomalyd::serve::AnomalyEvent;
use anomalyd::train::{Center, TimeOfDay, TrainRequest, train};
use common::{WINDOW, data_config, series, train_config};
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const ROWS: usize = 400;
const SPIKE_AT: usize = 300;
/// The clock of `common::csv_text` (2024-01-01T00:00:00Z, a row every five
/// minutes), so that a model that takes the time of day sees the same hours
/// live as offline.
const START_MS: i64 = 1_704_067_200_000;
const STEP_MS: i64 = 300_000;
/// A season of 32 five-minute rows: nine a day, so the same time a day
/// earlier is the same phase and half a day earlier the opposite one, as
/// the seasonal check asks of its training data before it guards a day.
const DAY_FOLLOWING_PERIOD: f64 = 32.0;
/// Samples sent after the reload checks.
const EXTRA: usize = 20;

/// Scrapes /metrics until `line` reaches `value` (or 30 s pass).
async fn wait_for(addr: SocketAddr, line: &str, value: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").1)
            .await
            .unwrap_or_default();
        if metric(&body, line) >= value || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// The value of the sample line that starts with `prefix` (name and
/// labels), or 0 when there is none.
fn metric(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find(|line| line.starts_with(prefix) && line[prefix.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn trained_model(dir: &std::path::Path) {
    trained_model_with(dir, 1);
}

fn trained_model_with(dir: &std::path::Path, features: usize) {
    let device = common::test_device();
    let data = series(
        "train.csv",
        &common::seasonal(1200, features, 1, &[]),
        features,
    );
    let request = TrainRequest {
        data: data_config(),
        model: ModelConfig::Dense(DenseAeConfig::new(WINDOW, features, 6)),
        train: train_config(15),
    };
    let mut model = train(&[data], &request, &device, &mut |_| {})
        .unwrap_or_else(|e| panic!("training failed: {e}"));
    model
        .save(dir)
        .unwrap_or_else(|e| panic!("save failed: {e}"));
}

/// A message: key, payload, content-type header.
type Outgoing = (Option<String>, Vec<u8>, Option<&'static str>);

async fn produce(brokers: &str, messages: Vec<Outgoing>) {
    produce_to(brokers, "samples", messages).await;
}

async fn produce_to(brokers: &str, topic: &str, messages: Vec<Outgoing>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    for (key, payload, content_type) in messages {
        let mut record = FutureRecord::to(topic).payload(&payload);
        if let Some(key) = &key {
            record = record.key(key);
        }
        if let Some(content_type) = content_type {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(content_type),
            }));
        }
        if let Err((e, _)) = producer.send(record, Duration::from_secs(10)).await {
            panic!("produce failed: {e}");
        }
    }
}

fn sample(series: &str, row: usize, value: f64) -> Outgoing {
    let ts = START_MS + row as i64 * STEP_MS;
    (
        Some(series.to_owned()),
        format!(r#"{{"ts":{ts},"value":{value}}}"#).into_bytes(),
        None,
    )
}

/// A clean series sent as protobuf SampleBatch messages of 50 samples.
fn protobuf_batches(values: &[f64]) -> Vec<Outgoing> {
    values
        .chunks(50)
        .enumerate()
        .map(|(chunk, part)| {
            let samples = part
                .iter()
                .enumerate()
                .map(|(i, &v)| anomalyd::proto::Sample {
                    series: "pb".into(),
                    timestamp_ms: START_MS + ((chunk * 50 + i) as i64) * STEP_MS,
                    values: vec![v],
                })
                .collect();
            let batch = anomalyd::proto::SampleBatch { samples };
            // Keyed, so that every batch lands on one partition, in order.
            (
                Some("pb".to_owned()),
                batch.encode_to_vec(),
                Some("application/x-protobuf; proto=anomalyd.v1.SampleBatch"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_become_metrics_events_and_committed_offsets() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);

    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 2, 1).ok();
    cluster.create_topic("events", 1, 1).ok();
    cluster.create_topic("dead", 1, 1).ok();
    let brokers = cluster.bootstrap_servers();

    let clean = common::seasonal(ROWS, 1, 21, &[]);
    let spiky = spiky_series();
    let mut messages = Vec::new();
    for row in 0..ROWS {
        messages.push(sample("clean", row, clean[row]));
        messages.push(sample("spiky", row, spiky[row]));
    }
    let bad = [
        r#"{"series":"x","ts":1,"value":"#.to_string(),
        r#"{"series":"x","ts":1,"values":[1,2]}"#.to_string(),
        r#"{"ts":1,"value":1}"#.to_string(),
        format!(
            r#"{{"series":"x","ts":1,"value":1,"pad":"{}"}}"#,
            "p".repeat(5000)
        ),
    ];
    messages.extend(protobuf_batches(&common::seasonal(ROWS, 1, 23, &[])));
    messages.extend(
        bad.iter()
            .map(|payload| (None, payload.clone().into_bytes(), None)),
    );
    messages.push((
        Some("x".into()),
        vec![0xff, 0xff, 0xff],
        Some("application/x-protobuf"),
    ));
    produce(&brokers, messages).await;

    let mut config = plain_config(&brokers, "anomalyd-test", &model_dir);
    config.kafka.events_topic = Some("events".into());
    config.kafka.dead_letter_topic = Some("dead".into());
    config.kafka.max_message_bytes = 4096;
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
    let addr = running.http_addr;

    let expected_windows = (3 * (ROWS - WINDOW + 1)) as f64;
    let rejections = [
        "malformed_json",
        "feature_count",
        "missing_series",
        "oversized",
        "malformed_protobuf",
    ];
    let rejected = |body: &str, reason: &str| {
        metric(
            body,
            &format!(r#"anomalyd_invalid_messages_total{{reason="{reason}"}}"#),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = String::new();
    while Instant::now() < deadline {
        body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").1)
            .await
            .unwrap_or_default();
        // The bad messages sit on either partition, so the last window
        // scored does not mean the last of them was read.
        if metric(&body, "anomalyd_windows_scored_total") >= expected_windows
            && rejections.iter().all(|r| rejected(&body, r) >= 1.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(&body, "anomalyd_windows_scored_total"),
        expected_windows,
        "{body}"
    );
    assert!(
        metric(&body, r#"anomalyd_anomalies_total{series="spiky"}"#) >= 1.0,
        "{body}"
    );
    // The dashboard plots the smoothed error against the threshold: both
    // exported for every series, positive and finite.
    for series in ["clean", "spiky"] {
        let gauge = |name: &str| metric(&body, &format!(r#"{name}{{series="{series}"}}"#));
        let threshold = gauge("anomalyd_threshold");
        let smoothed = gauge("anomalyd_smoothed_error");
        let score = gauge("anomalyd_anomaly_score");
        assert!(threshold > 0.0 && threshold.is_finite(), "{series}: {body}");
        assert!(smoothed > 0.0 && smoothed.is_finite(), "{series}: {body}");
        assert!((0.0..1.0).contains(&score), "{series}: {body}");
    }
    assert_eq!(
        metric(&body, r#"anomalyd_anomalies_total{series="clean"}"#),
        0.0,
        "{body}"
    );
    let expected = offline_messages(&model_dir, &spiky, &ServeConfig::default().detector);
    let escalations = expected
        .iter()
        .filter(|(phase, _)| *phase == EventPhase::Escalated)
        .count();
    assert!(escalations >= 1, "offline detection escalates the event");
    assert_eq!(
        metric(&body, r#"anomalyd_escalations_total{series="spiky"}"#),
        escalations as f64,
        "{body}"
    );
    for reason in rejections {
        assert_eq!(rejected(&body, reason), 1.0, "{reason}: {body}");
    }
    assert_eq!(metric(&body, "anomalyd_series_tracked"), 3.0, "{body}");
    let build = format!(
        r#"anomalyd_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&body, &build), 1.0, "{body}");
    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr, "/readyz"))
        .await
        .unwrap_or_default();
    assert_eq!(
        status, 200,
        "ready once the model is loaded and partitions assigned"
    );
    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .unwrap_or_default();
    assert_eq!(status, 200);

    // SIGHUP's reload: a corrupt artifact is rejected and the old model
    // keeps scoring; a good one is taken.
    let manifest = model_dir.join("manifest.json");
    let original = std::fs::read(&manifest).unwrap_or_default();
    std::fs::write(&manifest, "{").ok();
    running.reload.notify_one();
    let rejected = r#"anomalyd_model_reloads_total{outcome="rejected"}"#;
    let body = wait_for(addr, rejected, 1.0).await;
    assert_eq!(metric(&body, rejected), 1.0, "{body}");
    produce(
        &brokers,
        (ROWS..ROWS + EXTRA)
            .map(|row| sample("clean", row, clean[row % ROWS]))
            .collect(),
    )
    .await;
    let body = wait_for(
        addr,
        "anomalyd_windows_scored_total",
        expected_windows + EXTRA as f64,
    )
    .await;
    assert_eq!(
        metric(&body, "anomalyd_windows_scored_total"),
        expected_windows + EXTRA as f64,
        "scoring goes on with the old model"
    );
    std::fs::write(&manifest, &original).ok();
    running.reload.notify_one();
    let ok = r#"anomalyd_model_reloads_total{outcome="ok"}"#;
    let body = wait_for(addr, ok, 1.0).await;
    assert_eq!(metric(&body, ok), 1.0, "{body}");

    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
    assert!(
        matches!(outcome, Ok(Ok(Ok(())))),
        "serve did not stop cleanly: {outcome:?}"
    );

    // The events topic holds, in order, each event's opened, escalated and
    // closed messages, at the rows offline detection gives them, as eval
    // counts them: from the first row of the window that opened it to its
    // last flagged row so far (the merge gap after it is not part of it).
    let events = read_events(&brokers, expected.len());
    assert!(events.iter().all(|e| e.series == "spiky"), "{events:?}");
    assert_eq!(event_rows(&events), expected, "{events:?}");
    // An event's peak and end so far only grow from message to message.
    for pair in events.windows(2).filter(|p| p[0].start == p[1].start) {
        assert!(pair[0].peak_score <= pair[1].peak_score, "{events:?}");
        assert!(pair[0].end <= pair[1].end, "{events:?}");
    }
    let spike_time = (START_MS + SPIKE_AT as i64 * STEP_MS) as f64 / 1000.0;
    assert!(
        events.iter().any(|e| e.phase == EventPhase::Closed
            && e.start <= spike_time + STEP_MS as f64 / 1000.0
            && e.end >= spike_time
            && e.peak_score > 0.5
            && e.top_features.first().map(|f| f.feature.as_str()) == Some("v0")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e.phase == EventPhase::Opened)
            .all(|e| e.peak_score > 0.5),
        "{events:?}"
    );

    // Every invalid message reached the dead-letter topic with its reason.
    let mut reasons = read_topic(&brokers, "dead", 5, |message| {
        message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "anomalyd-reason"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    });
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "feature_count",
            "malformed_json",
            "malformed_protobuf",
            "missing_series",
            "oversized"
        ]
    );

    // Every produced message is on the topic, and every consumed message
    // was committed: the group's offsets sit at the end of both partitions.
    let on_topic: usize = (0..2)
        .map(|partition| watermark(&brokers, "samples", partition) as usize)
        .sum();
    assert_eq!(
        on_topic,
        2 * ROWS + EXTRA + ROWS.div_ceil(50) + bad.len() + 1
    );
    assert_committed_to_the_end(&brokers, "anomalyd-test");
}

/// With `min_length` above 1 an event is confirmed a few points after its
/// first flag; its messages still start it at that flag, as offline
/// detection (and so `eval`) does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_confirmed_after_its_first_flag_starts_at_that_flag() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);
    let spiky = spiky_series();
    let mut detector = ServeConfig::default().detector;
    detector.events.min_length = 3;
    let expected = offline_messages(&model_dir, &spiky, &detector);
    assert!(
        expected
            .iter()
            .any(|(phase, (_, start, end))| *phase == EventPhase::Opened && start < end),
        "an event confirmed after its first flag: {expected:?}"
    );
    let windows = (ROWS - WINDOW + 1) as u64;
    let daemon = serve_one_series("spiky", &spiky, &model_dir, windows, |config| {
        config.detector = detector;
        config.kafka.events_topic = Some("events".into());
    })
    .await;
    let events = read_events(&daemon.cluster.bootstrap_servers(), expected.len());
    assert_eq!(event_rows(&events), expected, "{events:?}");
    daemon.stop().await;
}

/// What offline scoring gives `values`, for [`anomalyd::score::detect_rows`].
struct Offline {
    /// The main model's per-row totals.
    errors: Vec<Option<f64>>,
    /// The coarse model's, for a multi-scale model.
    coarse: Option<Vec<Option<f64>>>,
    /// The rows' point values, for the range check.
    points: Vec<f32>,
}

impl Offline {
    /// What offline detection with `detector` decides on each row, both
    /// scales and the point checks included, as the daemon judges.
    fn decisions(
        &self,
        detector: &anomalyd::detect::DetectorConfig,
        model: &anomalyd::model::artifact::TrainedModel,
    ) -> Vec<Option<anomalyd::detect::Decision>> {
        anomalyd::score::detect_rows(
            detector,
            model,
            &self.errors,
            self.coarse.as_deref(),
            Some(&self.points),
        )
        .0
    }

    /// What a detector started at row `from` sees: no error before it.
    fn started_at(mut self, from: usize) -> Self {
        let before = from.min(self.errors.len());
        self.errors[..before].fill(None);
        if let Some(coarse) = &mut self.coarse {
            let before = from.min(coarse.len());
            coarse[..before].fill(None);
        }
        self
    }
}

fn offline_errors(model: &anomalyd::model::artifact::TrainedModel, values: &[f64]) -> Offline {
    let device = common::test_device();
    let live = series("live.csv", values, 1);
    let scored =
        anomalyd::score::score_scales(model, &live, &device, 256).unwrap_or_else(|e| panic!("{e}"));
    let errors = scored
        .main
        .iter()
        .map(|e| e.as_ref().map(|e| e.total))
        .collect();
    Offline {
        errors,
        coarse: scored.coarse,
        points: anomalyd::score::point_rows(model, &live)
            .unwrap_or_else(|e| panic!("point rows: {e}")),
    }
}

/// A small spike 40 rows before a large one: the small one opens a
/// marginal event, which the large one, inside its merge gap, escalates.
fn spiky_series() -> Vec<f64> {
    common::seasonal(
        ROWS,
        1,
        22,
        &[
            common::Injection::Spike {
                at: SPIKE_AT - 40,
                size: 0.8,
            },
            common::Injection::Spike {
                at: SPIKE_AT,
                size: 4.0,
            },
        ],
    )
}

/// Reads the events topic until `want` messages: what a daemon wrote.
fn read_events(brokers: &str, want: usize) -> Vec<AnomalyEvent> {
    let events: Vec<AnomalyEvent> = read_topic(brokers, "events", want, |message| {
        serde_json::from_slice(message.payload().unwrap_or_default())
            .unwrap_or_else(|e| panic!("event JSON: {e}"))
    });
    assert_eq!(watermark(brokers, "events", 0) as usize, want, "{events:?}");
    events
}

/// Each message's phase and (window start, start, end) rows.
fn event_rows(events: &[AnomalyEvent]) -> Vec<(EventPhase, (usize, usize, usize))> {
    let row_of = |time: f64| ((time * 1000.0 - START_MS as f64) / STEP_MS as f64).round() as usize;
    events
        .iter()
        .map(|e| {
            (
                e.phase,
                (row_of(e.window_start), row_of(e.start), row_of(e.end)),
            )
        })
        .collect()
}

/// The messages the daemon should write about `values`' events, in order,
/// from offline detection with `detector` as the daemon has it: phase and
/// (window start, start, end) rows. An event is opened and escalated at
/// the row that does it, which is then its end so far; it closes at the
/// first row past the merge gap, if the stream reaches it.
fn offline_messages(
    model_dir: &std::path::Path,
    values: &[f64],
    detector: &anomalyd::detect::DetectorConfig,
) -> Vec<(EventPhase, (usize, usize, usize))> {
    offline_messages_from(model_dir, values, detector, 0)
}

/// [`offline_messages`] of a detector that starts at row `from`, the
/// series' windows before it taken as they come.
fn offline_messages_from(
    model_dir: &std::path::Path,
    values: &[f64],
    detector: &anomalyd::detect::DetectorConfig,
    from: usize,
) -> Vec<(EventPhase, (usize, usize, usize))> {
    use anomalyd::detect::EventChange;
    let model = anomalyd::model::artifact::TrainedModel::load(model_dir, &common::test_device())
        .unwrap_or_else(|e| panic!("{e}"));
    let decisions = offline_errors(&model, values)
        .started_at(from)
        .decisions(detector, &model);
    // Decisions count scored rows; their events' indices are mapped back.
    let scored: Vec<usize> = (0..decisions.len())
        .filter(|&row| decisions[row].is_some())
        .collect();
    let rows = |start: usize, end: usize| {
        let start = scored[start];
        (anomalyd::score::window_first_row(&model, start), start, end)
    };
    decisions
        .iter()
        .enumerate()
        .filter_map(|(row, decision)| match decision.as_ref()?.event? {
            EventChange::Started { start } => Some((EventPhase::Opened, rows(start, row))),
            EventChange::Escalated { start } => Some((EventPhase::Escalated, rows(start, row))),
            EventChange::Ended(event) => {
                Some((EventPhase::Closed, rows(event.start, scored[event.end])))
            }
        })
        .collect()
}

/// Reads `topic` from the start until `want` messages (or 20 s).
fn read_topic<T>(
    brokers: &str,
    topic: &str,
    want: usize,
    mut decode: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    reader.subscribe(&[topic]).ok();
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && read.len() < want {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) {
            read.push(decode(&message));
        }
    }
    read
}

fn plain_config(brokers: &str, group: &str, model: &std::path::Path) -> ServeConfig {
    let mut properties = std::collections::BTreeMap::new();
    // Short session and heartbeat so that group changes settle in seconds.
    properties.insert("session.timeout.ms".to_owned(), "6000".to_owned());
    properties.insert("heartbeat.interval.ms".to_owned(), "500".to_owned());
    ServeConfig {
        kafka: KafkaConfig {
            brokers: brokers.to_owned(),
            group_id: group.to_owned(),
            topics: vec!["samples".into()],
            properties,
            ..KafkaConfig::default()
        },
        model: ModelSource {
            path: model.to_path_buf(),
            device: "cpu".into(),
            routes: Vec::new(),
        },
        scoring: ScoringConfig {
            max_wait_ms: 10,
            ..ScoringConfig::default()
        },
        http: anomalyd::config::HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        },
        ..ServeConfig::default()
    }
}

fn series_rows(names: &[&str], rows: std::ops::Range<usize>) -> Vec<Outgoing> {
    let values = common::seasonal(rows.end, 1, 31, &[]);
    rows.flat_map(|row| names.iter().map(move |name| (row, *name)))
        .map(|(row, name)| sample(name, row, values[row]))
        .collect()
}

/// Waits (up to a minute) until `metrics` count `windows` scored windows.
async fn wait_until_scored(metrics: &anomalyd::metrics::Metrics, windows: u64) {
    assert!(
        until(Duration::from_secs(60), || metrics.windows_scored.get()
            >= windows)
        .await,
        "scored {} of {windows}",
        metrics.windows_scored.get()
    );
}

async fn until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// The high watermark of `topic`'s `partition`: how many messages it holds.
fn watermark(brokers: &str, topic: &str, partition: i32) -> i64 {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_or(0, |(_, high)| high)
}

/// Whether `group` has committed every partition of `samples` up to its
/// high watermark; the error says which partition is behind.
fn committed_to_the_end(brokers: &str, group: &str) -> Result<(), String> {
    let checker: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .map_err(|e| e.to_string())?;
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition("samples", 0);
    wanted.add_partition("samples", 1);
    let committed = checker
        .committed_offsets(wanted, Duration::from_secs(10))
        .map_err(|e| format!("committed offsets: {e}"))?;
    for element in committed.elements() {
        let high = watermark(brokers, "samples", element.partition());
        // A partition that received nothing has nothing to commit.
        if high > 0 && element.offset() != Offset::Offset(high) {
            return Err(format!(
                "partition {}: committed {:?}, high watermark {high}",
                element.partition(),
                element.offset()
            ));
        }
    }
    Ok(())
}

fn assert_committed_to_the_end(brokers: &str, group: &str) {
    if let Err(behind) = committed_to_the_end(brokers, group) {
        panic!("{behind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sample_is_lost_when_the_broker_goes_down_and_comes_back() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 2, 1).ok();
    let brokers = cluster.bootstrap_servers();
    let names = ["a", "b"];
    produce(&brokers, series_rows(&names, 0..200)).await;

    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(
        plain_config(&brokers, "faults", &model_dir),
        shutdown.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("start failed: {e}"));
    let metrics = running.metrics.clone();
    let first = (2 * (200 - WINDOW + 1)) as u64;
    assert!(
        until(Duration::from_secs(60), || metrics.windows_scored.get()
            >= first)
        .await
    );

    // Offsets are committed asynchronously after scoring; a broker lost
    // before that commit makes the group re-read (at-least-once), which is
    // not what this test is about.
    assert!(
        until(Duration::from_secs(30), || committed_to_the_end(
            &brokers, "faults"
        )
        .is_ok())
        .await,
        "{:?}",
        committed_to_the_end(&brokers, "faults")
    );

    // The broker goes away; samples produced meanwhile wait in the
    // producer's queue; the broker comes back.
    cluster.broker_down(1).unwrap_or_else(|e| panic!("{e}"));
    let late = tokio::spawn({
        let brokers = brokers.clone();
        async move { produce(&brokers, series_rows(&names, 200..400)).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.broker_up(1).unwrap_or_else(|e| panic!("{e}"));
    late.await.unwrap_or_else(|e| panic!("{e}"));

    // Every sample reaches the daemon. The outage may make the group
    // rebalance: a partition assigned again restarts its series' windows
    // (state is dropped on revoke), which costs each series at most one
    // warm-up, and anything scored but not yet committed is read again
    // (at-least-once). Nothing may be lost: all windows but those warm-ups
    // are scored, and the committed offsets reach the end (checked below).
    let consumed = || {
        ["scored", "warming", "skipped", "dropped", "invalid"]
            .iter()
            .map(|outcome| metrics.samples.with_label_values(&[outcome]).get())
            .sum::<u64>()
    };
    let all = (2 * (400 - WINDOW + 1)) as u64;
    let warmups = (2 * (WINDOW - 1)) as u64;
    assert!(
        until(Duration::from_secs(60), || consumed() >= 800
            && metrics.windows_scored.get() + warmups >= all)
        .await,
        "consumed {} of 800 samples, scored {} of {all} windows",
        consumed(),
        metrics.windows_scored.get()
    );
    assert_eq!(metrics.samples.with_label_values(&["dropped"]).get(), 0);
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
    assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");
    assert_committed_to_the_end(&brokers, "faults");
}

/// Beyond `series.max_series` the least recently seen series leave memory,
/// and `/metrics` counts them, so that an operator can tell the table is
/// too small for the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_beyond_max_series_are_evicted_and_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 1, 1).ok();
    let brokers = cluster.bootstrap_servers();
    // One series after the other: the third evicts the first, the fourth
    // the second.
    let names = ["s0", "s1", "s2", "s3"];
    let rows = 60;
    let messages = names
        .iter()
        .flat_map(|name| series_rows(&[name], 0..rows))
        .collect();
    produce(&brokers, messages).await;

    let mut config = plain_config(&brokers, "evicting", &model_dir);
    config.series.max_series = 2;
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
    wait_until_scored(&running.metrics, (names.len() * (rows - WINDOW + 1)) as u64).await;
    let addr = running.http_addr;
    let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").1)
        .await
        .unwrap_or_default();
    assert_eq!(metric(&body, "anomalyd_series_tracked"), 2.0, "{body}");
    assert_eq!(
        metric(&body, "anomalyd_series_evicted_total"),
        2.0,
        "{body}"
    );
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
    assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_in_one_group_share_the_partitions() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 2, 1).ok();
    let brokers = cluster.bootstrap_servers();

    let shutdown = CancellationToken::new();
    let first =
        anomalyd::serve::start(plain_config(&brokers, "pair", &model_dir), shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("start failed: {e}"));
    let assigned = |r: &anomalyd::serve::Running| {
        r.readiness
            .assigned_partitions
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        until(Duration::from_secs(30), || assigned(&first) == 2).await,
        "the first daemon got no partitions"
    );
    let second =
        anomalyd::serve::start(plain_config(&brokers, "pair", &model_dir), shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("start failed: {e}"));
    assert!(
        until(Duration::from_secs(60), || assigned(&first) == 1
            && assigned(&second) == 1)
        .await,
        "the rebalance did not split the partitions: {} and {}",
        assigned(&first),
        assigned(&second)
    );

    let names = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];
    produce(&brokers, series_rows(&names, 0..150)).await;
    let all = (names.len() * (150 - WINDOW + 1)) as u64;
    let total = || first.metrics.windows_scored.get() + second.metrics.windows_scored.get();
    assert!(
        until(Duration::from_secs(60), || total() >= all).await,
        "scored {} of {all}",
        total()
    );
    assert_eq!(total(), all, "each window scored by exactly one daemon");
    assert!(first.metrics.windows_scored.get() > 0 && second.metrics.windows_scored.get() > 0);
    assert_eq!(
        first.metrics.series_tracked.get() + second.metrics.series_tracked.get(),
        names.len() as i64,
        "each series lives on one daemon"
    );
    shutdown.cancel();
    for running in [first, second] {
        let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
        assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");
    }
    assert_committed_to_the_end(&brokers, "pair");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_each_series_to_its_model() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (univariate, bivariate) = (dir.path().join("uni"), dir.path().join("bi"));
    trained_model_with(&univariate, 1);
    trained_model_with(&bivariate, 2);
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 2, 1).ok();
    let brokers = cluster.bootstrap_servers();

    let rows = 100;
    let two = common::seasonal(rows, 2, 5, &[]);
    let mut messages = series_rows(&["host-1/cpu"], 0..rows);
    for row in 0..rows {
        let ts = START_MS + row as i64 * STEP_MS;
        let values = format!("[{},{}]", two[2 * row], two[2 * row + 1]);
        let payload = format!(r#"{{"ts":{ts},"values":{values}}}"#).into_bytes();
        messages.push((Some("db-7".into()), payload, None));
    }
    // One value for a two-feature series, and a series no route takes.
    messages.push(sample("db-8", 0, 1.0));
    messages.push(sample("mystery", 0, 1.0));
    produce(&brokers, messages).await;

    let mut config = plain_config(&brokers, "routes", std::path::Path::new(""));
    config.model.routes = vec![
        anomalyd::config::ModelRoute {
            series: "host-*/cpu".into(),
            path: univariate.clone(),
        },
        anomalyd::config::ModelRoute {
            series: "^db-[0-9]+$".into(),
            path: bivariate.clone(),
        },
    ];
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
    let metrics = running.metrics.clone();
    let all = (2 * (rows - WINDOW + 1)) as u64;
    let invalid = |reason: &str| metrics.invalid_messages.with_label_values(&[reason]).get();
    assert!(
        until(Duration::from_secs(60), || metrics.windows_scored.get()
            >= all
            && invalid("no_model") + invalid("feature_count") >= 2)
        .await,
        "scored {} of {all}",
        metrics.windows_scored.get()
    );
    assert_eq!(metrics.windows_scored.get(), all);
    assert_eq!(invalid("no_model"), 1, "the unrouted series is rejected");
    assert_eq!(
        invalid("feature_count"),
        1,
        "db-8 has one value for a two-feature model"
    );
    let body = tokio::task::spawn_blocking({
        let addr = running.http_addr;
        move || http_get(addr, "/metrics").1
    })
    .await
    .unwrap_or_default();
    for path in [&univariate, &bivariate] {
        assert!(
            body.contains(&format!("model=\"{}\"", path.display())),
            "{body}"
        );
    }
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
    assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");
}

/// A multi-scale artifact in the daemon: each coarse window is scored beside
/// the main ones, and the detector sees the coarse errors exactly where
/// `score` does, so a series' final score is the offline one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiscale_model_scores_coarse_windows_as_offline_detection_does() {
    multiscale_daemon_matches_offline(Center::Off, false, TimeOfDay::Off).await;
}

/// The same with the main model's windows centred and the coarse model's
/// not: the daemon centres each network's windows as its artifact says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_centred_main_model_scores_as_offline_detection_does() {
    multiscale_daemon_matches_offline(Center::Main, false, TimeOfDay::Off).await;
}

/// The same with every window detrended (`--detrend`): the daemon takes
/// each window's least-squares line out as training did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detrended_model_scores_as_offline_detection_does() {
    multiscale_daemon_matches_offline(Center::All, true, TimeOfDay::Off).await;
}

/// The same with models that take the time of day, the coarse one alone
/// (the default) or both: the daemon derives it from each sample's time as
/// training and `score` derive it from each row's, hands the main network
/// only the data's columns when the clock is the coarse one's, and counts
/// only the data's features in the error and its checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_that_take_the_time_of_day_score_as_offline_detection_does() {
    multiscale_daemon_matches_offline(Center::Off, false, TimeOfDay::Coarse).await;
    multiscale_daemon_matches_offline(Center::Off, false, TimeOfDay::All).await;
}

async fn multiscale_daemon_matches_offline(center: Center, detrend: bool, time_of_day: TimeOfDay) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    let MultiscaleCase {
        values,
        both,
        alone,
        smoothed,
        out_of_range,
        flatlines,
        rough,
        seasonal,
    } = multiscale_case(&model_dir, center, detrend, time_of_day);
    let rows = values.len();
    assert!(
        (both - alone).abs() > 1e-3,
        "the coarse scale should decide the last score here: {both} vs {alone}"
    );
    assert!(
        out_of_range > 0,
        "the spike should leave the training range"
    );
    assert!(flatlines > 0, "the stuck stretch should be flagged");
    assert!(
        rough > 0 && seasonal > 0,
        "the wide swings should be flagged as rough ({rough}) and unlike the day before ({seasonal})"
    );

    let windows = multiscale_windows(rows);
    let daemon = serve_one_series("ms", &values, &model_dir, windows, |_| {}).await;
    let metrics = daemon.running.metrics.clone();
    assert_eq!(
        metrics.windows_scored.get(),
        windows,
        "main and coarse windows"
    );
    let served = metrics.anomaly_score.with_label_values(&["ms"]).get();
    assert!(
        (served - both).abs() <= 1e-6,
        "the daemon's last score {served}, offline {both} (main scale alone {alone})"
    );
    // The coarse scale decides that score; the main scale's error shows
    // whether the main network saw its windows as it was trained to.
    let served_smoothed = metrics.smoothed_error.with_label_values(&["ms"]).get();
    assert!(
        (served_smoothed - smoothed).abs() <= 1e-5 * smoothed.abs().max(1e-9),
        "the daemon's main-scale smoothed error {served_smoothed}, offline {smoothed}"
    );
    for (counter, offline, what) in [
        (
            &metrics.out_of_range,
            out_of_range,
            "points out of the training range",
        ),
        (&metrics.flatlines, flatlines, "windows that stopped moving"),
        (
            &metrics.rough,
            rough,
            "windows that moved faster than any training window",
        ),
        (&metrics.seasonal, seasonal, "windows unlike the day before"),
    ] {
        assert_eq!(
            counter.with_label_values(&["ms"]).get(),
            offline as u64,
            "{what}, daemon against offline"
        );
    }
    if time_of_day != TimeOfDay::Off {
        // The same models without the clock cut a series' points otherwise:
        // a reload of them is rejected, and these keep serving.
        let plain = dir.path().join("plain");
        multiscale_case(&plain, center, detrend, TimeOfDay::Off);
        std::fs::remove_dir_all(&model_dir).ok();
        std::fs::rename(&plain, &model_dir).unwrap_or_else(|e| panic!("{e}"));
        daemon.running.reload.notify_one();
        let rejected = r#"anomalyd_model_reloads_total{outcome="rejected"}"#;
        let body = wait_for(daemon.running.http_addr, rejected, 1.0).await;
        assert_eq!(metric(&body, rejected), 1.0, "{body}");
    }
    daemon.stop().await;
}

/// Where [`centring_flip`] changes the model.
const FLIP_AT: usize = 320;

/// A multi-scale model of levels in `model`, one of detrended windows
/// (same windows otherwise) in `detrended`, and what a daemon should make
/// of [`multiscale_case`]'s series when the second replaces the first at
/// row [`FLIP_AT`] and restarts the series' detector there.
struct CentringFlip {
    values: Vec<f64>,
    model: std::path::PathBuf,
    detrended: std::path::PathBuf,
    /// The messages: the first model's up to the flip, the closing of the
    /// event open then, the second model's from the flip on.
    messages: Vec<(EventPhase, (usize, usize, usize))>,
    /// The last threshold of a detector restarted at the flip, and of one
    /// that kept the first model's errors in its history.
    restarted: f64,
    kept: f64,
}

fn centring_flip(dir: &std::path::Path) -> CentringFlip {
    let model_dir = dir.join("model");
    let detrended = dir.join("detrended");
    let MultiscaleCase { values, .. } =
        multiscale_case(&model_dir, Center::Off, false, TimeOfDay::Off);
    multiscale_case(&detrended, Center::Main, true, TimeOfDay::Off);
    let detector = ServeConfig::default().detector;
    let before = offline_messages(&model_dir, &values[..FLIP_AT], &detector);
    let opened = before
        .iter()
        .rposition(|(phase, _)| *phase == EventPhase::Opened)
        .unwrap_or_else(|| panic!("the spike at row 300 opens an event: {before:?}"));
    assert!(
        before[opened..]
            .iter()
            .all(|(phase, _)| *phase != EventPhase::Closed),
        "the event is still open at the flip: {before:?}"
    );
    // It closes where its last flag stood before the flip.
    let device = common::test_device();
    let load = |dir: &std::path::Path| {
        anomalyd::model::artifact::TrainedModel::load(dir, &device)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (old, new) = (load(&model_dir), load(&detrended));
    let last_flagged = offline_errors(&old, &values[..FLIP_AT])
        .decisions(&detector, &old)
        .iter()
        .rposition(|d| d.is_some_and(|d| d.flagged))
        .unwrap_or(0);
    let (_, (window_start, start, _)) = before[opened];
    let after = offline_messages_from(&detrended, &values, &detector, FLIP_AT);
    let messages = before
        .iter()
        .copied()
        .chain([(EventPhase::Closed, (window_start, start, last_flagged))])
        .chain(after)
        .collect();
    let last_threshold = |offline: &Offline| {
        offline
            .decisions(&detector, &new)
            .iter()
            .rev()
            .flatten()
            .next()
            .and_then(|d| d.threshold)
            .unwrap_or(f64::NAN)
    };
    let restarted = last_threshold(&offline_errors(&new, &values).started_at(FLIP_AT));
    let mut kept = offline_errors(&new, &values);
    let old_errors = offline_errors(&old, &values);
    kept.errors[..FLIP_AT].copy_from_slice(&old_errors.errors[..FLIP_AT]);
    if let (Some(kept), Some(old)) = (&mut kept.coarse, &old_errors.coarse) {
        kept[..FLIP_AT].copy_from_slice(&old[..FLIP_AT]);
    }
    let kept = last_threshold(&kept);
    assert!(
        (kept - restarted).abs() > 1e-3 * restarted.abs(),
        "the old errors should move the threshold: {kept} vs {restarted}"
    );
    CentringFlip {
        values,
        model: model_dir,
        detrended,
        messages,
        restarted,
        kept,
    }
}

impl CentringFlip {
    /// Puts the detrended model where the daemon loads its model from.
    fn swap_models(&self) {
        std::fs::remove_dir_all(&self.model).ok();
        std::fs::rename(&self.detrended, &self.model).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Checks the events topic at `brokers` and the daemon's last
    /// threshold against the expected ones, and that the stuck stretch
    /// (rows 420..450) raised its event through the stillness check, as
    /// its messages say: its window's errors are small.
    fn check(&self, brokers: &str, served_threshold: f64) {
        let events = read_events(brokers, self.messages.len());
        assert_eq!(event_rows(&events), self.messages, "{events:?}");
        let stillness: Vec<_> = event_rows(&events)
            .into_iter()
            .zip(&events)
            .filter(|(_, event)| event.cause == anomalyd::detect::Cause::Stillness)
            .map(|((_, (_, start, _)), _)| start)
            .collect();
        assert!(
            !stillness.is_empty() && stillness.iter().all(|row| (420..450).contains(row)),
            "{events:?}"
        );
        assert!(
            (served_threshold - self.restarted).abs() <= 1e-6 * self.restarted.abs(),
            "the daemon's last threshold {served_threshold}, offline from the flip {} (kept across it {})",
            self.restarted,
            self.kept
        );
    }
}

/// A retrained artifact that centres its windows otherwise (as `--center
/// auto` may decide anew on each training run) is taken on SIGHUP, where
/// the detectors' histories would misjudge its errors: the series keeps its
/// windows, the event open under the old model closes where it stood, and
/// the detector starts afresh, so that from the reload on the daemon judges
/// and reports as offline detection with the new model does from that row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_centres_otherwise_restarts_the_series_detectors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flip = centring_flip(dir.path());
    let daemon = serve_one_series(
        "ms",
        &flip.values[..FLIP_AT],
        &flip.model,
        multiscale_windows(FLIP_AT),
        |config| config.kafka.events_topic = Some("events".into()),
    )
    .await;
    flip.swap_models();
    daemon.running.reload.notify_one();
    let ok = r#"anomalyd_model_reloads_total{outcome="ok"}"#;
    let body = wait_for(daemon.running.http_addr, ok, 1.0).await;
    assert_eq!(metric(&body, ok), 1.0, "{body}");
    let metrics = daemon.running.metrics.clone();
    assert_eq!(
        metrics.detector_restarts.get(),
        1,
        "the one series restarted"
    );
    let brokers = daemon.cluster.bootstrap_servers();
    produce(
        &brokers,
        (FLIP_AT..flip.values.len())
            .map(|row| sample("ms", row, flip.values[row]))
            .collect(),
    )
    .await;
    let windows = multiscale_windows(flip.values.len());
    wait_until_scored(&metrics, windows).await;
    flip.check(&brokers, metrics.threshold.with_label_values(&["ms"]).get());
    daemon.stop().await;
}

/// The same across a restart with `series.state_file`: the resumed series
/// keeps its windows (a window for every sample from the first), its
/// detector restarts, and the event the state held open is closed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_a_model_that_centres_otherwise_restarts_the_resumed_detectors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flip = centring_flip(dir.path());
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 1, 1).ok();
    cluster.create_topic("events", 1, 1).ok();
    let brokers = cluster.bootstrap_servers();
    let mut config = plain_config(&brokers, "flip", &flip.model);
    config.series.state_file = Some(dir.path().join("state.bin"));
    config.kafka.events_topic = Some("events".into());
    let rows = |range: std::ops::Range<usize>| {
        range
            .map(|row| sample("ms", row, flip.values[row]))
            .collect()
    };
    produce(&brokers, rows(0..FLIP_AT)).await;
    serve_exactly(config.clone(), multiscale_windows(FLIP_AT)).await;
    flip.swap_models();
    let rest = flip.values.len() - FLIP_AT;
    produce(&brokers, rows(FLIP_AT..flip.values.len())).await;
    // Every sample completes a main window, every fourth a coarse one.
    let metrics = serve_exactly(config, (rest + rest / 4) as u64).await;
    assert_eq!(
        metrics.detector_restarts.get(),
        1,
        "the one series restarted"
    );
    flip.check(&brokers, metrics.threshold.with_label_values(&["ms"]).get());
}

/// What offline detection makes of [`multiscale_case`]'s live series.
struct MultiscaleCase {
    values: Vec<f64>,
    /// The last score with both scales and the range check (the daemon's).
    both: f64,
    /// The last score of the main scale alone, without the range check.
    alone: f64,
    /// The main scale's last smoothed error.
    smoothed: f64,
    /// Points flagged for leaving the training range.
    out_of_range: usize,
    /// Points flagged for a window that stopped moving.
    flatlines: usize,
    /// Points flagged for a window that moved faster than any training
    /// window, and for one unlike the same points a day earlier.
    rough: usize,
    seasonal: usize,
}

/// Trains a multi-scale model into `model_dir` and returns a live series
/// for it (a spike far beyond the training range, then a slow shift late
/// on, which the coarse scale sees best) with what offline detection makes
/// of it.
fn multiscale_case(
    model_dir: &std::path::Path,
    center: Center,
    detrend: bool,
    time_of_day: TimeOfDay,
) -> MultiscaleCase {
    let device = common::test_device();
    let data = anomalyd::train::DataConfig {
        coarse: 4,
        center,
        detrend,
        time_of_day,
        ..data_config()
    };
    let centering = (data.centering(true), Some(data.centering(false)));
    let request = TrainRequest {
        model: ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 6)),
        data,
        train: train_config(15),
    };
    let training = series(
        "train.csv",
        &common::seasonal_with_period(1200, 1, 1, DAY_FOLLOWING_PERIOD, &[]),
        1,
    );
    let mut model = train(
        std::slice::from_ref(&training),
        &request,
        &device,
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("training failed: {e}"));
    let clock = model.coarse.as_ref().map(|c| {
        (
            c.manifest.windowing.time_of_day,
            c.manifest.windowing.scored_features(),
        )
    });
    assert_eq!(
        (model.manifest.windowing.time_of_day, clock),
        (
            time_of_day.applies_to(true),
            Some((time_of_day.applies_to(false), 1))
        ),
        "what the artifact records for {time_of_day:?}"
    );
    let coarse_centering = model
        .coarse
        .as_ref()
        .map(|c| c.manifest.windowing.centering());
    assert_eq!(
        (model.manifest.windowing.centering(), coarse_centering),
        centering,
        "what the artifact records for {center:?}, detrend {detrend}"
    );
    // As `anomalyd train` does: offline detection and the daemon must both
    // raise k by it.
    anomalyd::score::record_k_factor(
        &anomalyd::detect::DetectorConfig::default(),
        &mut model,
        std::slice::from_ref(&training),
        &device,
        256,
    )
    .unwrap_or_else(|e| panic!("calibration failed: {e}"));
    assert!(model.manifest.threshold.k_factor.is_some_and(|f| f > 1.0));
    model
        .save(model_dir)
        .unwrap_or_else(|e| panic!("save failed: {e}"));
    let rows = 600;
    let mut values = common::seasonal_with_period(
        rows,
        1,
        41,
        DAY_FOLLOWING_PERIOD,
        &[
            common::Injection::Spike { at: 300, size: 8.0 },
            common::Injection::Shift {
                from: 560,
                to: rows,
                size: 1.5,
            },
        ],
    );
    // A stuck stretch, for the stillness check.
    let stuck = values[420];
    values[420..450].fill(stuck);
    // The season at six times its swing, for the roughness check (steps
    // six times the training's) and the seasonal check (a day earlier, the
    // same hours swung as usual).
    for value in &mut values[480..520] {
        *value *= 6.0;
    }
    let detector = anomalyd::detect::DetectorConfig::default();
    let offline = offline_errors(&model, &values);
    let last = |decisions: &[Option<anomalyd::detect::Decision>]| {
        decisions.iter().rev().flatten().next().copied()
    };
    let both = offline.decisions(&detector, &model);
    let (alone, _) = anomalyd::detect::detect_all(
        &detector,
        model.manifest.threshold.value,
        model.manifest.windowing.window,
        &offline.errors,
    );
    let out_of_range = both.iter().flatten().filter(|d| d.out_of_range).count();
    let flatlines = both.iter().flatten().filter(|d| d.flatline).count();
    let rough = both.iter().flatten().filter(|d| d.rough).count();
    let seasonal = both.iter().flatten().filter(|d| d.seasonal).count();
    MultiscaleCase {
        rough,
        seasonal,
        values,
        smoothed: last(&both).map_or(f64::NAN, |d| d.smoothed),
        flatlines,
        both: last(&both).map_or(f64::NAN, |d| d.score),
        alone: last(&alone).map_or(f64::NAN, |d| d.score),
        out_of_range,
    }
}

/// Main and coarse windows a fresh series of `rows` samples fills.
fn multiscale_windows(rows: usize) -> u64 {
    ((rows - WINDOW + 1) + (rows / 4 - WINDOW + 1)) as u64
}

/// With `scoring.stride` 3 the daemon scores every third window, yet its
/// range and stillness checks judge every point: a spike on a skipped row
/// and a stuck stretch are counted as offline detection (every row
/// scored) counts them, each verdict carried by the next scored window.
/// The daemon is a static group member here, as in deploy/k8s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strided_daemon_judges_the_points_it_skips() {
    const STRIDE: usize = 3;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);
    let model = anomalyd::model::artifact::TrainedModel::load(&model_dir, &common::test_device())
        .unwrap_or_else(|e| panic!("load failed: {e}"));
    let rows = 600;
    // Scored rows are WINDOW - 1 + STRIDE·m: the spike lands between two.
    let spike = WINDOW - 1 + STRIDE * 95 + 1;
    let mut values = common::seasonal(
        rows,
        1,
        41,
        &[common::Injection::Spike {
            at: spike,
            size: 8.0,
        }],
    );
    // Shorter than STRIDE windows: a window of every third point never
    // holds only the stuck value.
    let stuck = values[420];
    values[420..420 + 2 * WINDOW].fill(stuck);

    let offline = offline_errors(&model, &values);
    let (decisions, _) = anomalyd::score::detect_rows(
        &anomalyd::detect::DetectorConfig::default(),
        &model,
        &offline.errors,
        None,
        Some(&offline.points),
    );
    let carried = |flag: fn(&anomalyd::detect::Decision) -> bool| {
        let last_scored = WINDOW - 1 + STRIDE * ((rows - WINDOW) / STRIDE);
        let carriers: std::collections::BTreeSet<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.as_ref().is_some_and(flag))
            .map(|(row, _)| WINDOW - 1 + STRIDE * (row + 1 - WINDOW).div_ceil(STRIDE))
            .filter(|&carrier| carrier <= last_scored)
            .collect();
        carriers.len() as u64
    };
    let out_of_range = carried(|d| d.out_of_range);
    let flatlines = carried(|d| d.flatline);
    assert!(
        decisions[spike].is_some_and(|d| d.out_of_range) && out_of_range > 0,
        "offline, the spike should leave the training range"
    );
    assert!(
        flatlines > 0,
        "offline, the stuck stretch should be flagged"
    );

    let windows = ((rows - WINDOW) / STRIDE + 1) as u64;
    let daemon = serve_one_series("st", &values, &model_dir, windows, |config| {
        config.scoring.stride = STRIDE;
        // As a StatefulSet replica runs (deploy/k8s): static membership.
        config
            .kafka
            .properties
            .insert("group.instance.id".to_owned(), "anomalyd-0".to_owned());
    })
    .await;
    let metrics = daemon.running.metrics.clone();
    assert_eq!(
        metrics.out_of_range.with_label_values(&["st"]).get(),
        out_of_range,
        "scored windows carrying an out-of-range point"
    );
    assert_eq!(
        metrics.flatlines.with_label_values(&["st"]).get(),
        flatlines,
        "scored windows carrying a flat window"
    );
    daemon.stop().await;
}

/// A daemon serving one series on its own mock cluster.
struct OneSeries {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    running: anomalyd::serve::Running,
    shutdown: CancellationToken,
}

impl OneSeries {
    async fn stop(self) {
        self.shutdown.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(30), self.running.task).await;
        assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");
    }
}

/// Sends `values` as series `name` (one sample every five minutes) to a fresh mock
/// cluster and starts a daemon on `model_dir` with [`plain_config`], as
/// `configure` changes it; returns once it has scored `windows`.
async fn serve_one_series(
    name: &str,
    values: &[f64],
    model_dir: &std::path::Path,
    windows: u64,
    configure: impl FnOnce(&mut ServeConfig),
) -> OneSeries {
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 1, 1).ok();
    cluster.create_topic("events", 1, 1).ok();
    let brokers = cluster.bootstrap_servers();
    let messages = values
        .iter()
        .enumerate()
        .map(|(row, &value)| sample(name, row, value))
        .collect();
    produce(&brokers, messages).await;
    let mut config = plain_config(&brokers, name, model_dir);
    configure(&mut config);
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
    let metrics = running.metrics.clone();
    wait_until_scored(&metrics, windows).await;
    OneSeries {
        cluster,
        running,
        shutdown,
    }
}

/// Starts a daemon on `config`, waits until it has scored `windows` (and
/// checks it scores no more), stops it gracefully and hands back its
/// metrics.
async fn serve_exactly(
    config: ServeConfig,
    windows: u64,
) -> std::sync::Arc<anomalyd::metrics::Metrics> {
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
    let metrics = running.metrics.clone();
    let done = until(Duration::from_secs(60), || {
        metrics.windows_scored.get() >= windows
    })
    .await;
    assert!(done, "scored {} of {windows}", metrics.windows_scored.get());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metrics.windows_scored.get(), windows);
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
    assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");
    metrics
}

/// With `series.state_file`, a graceful stop saves every series' window and
/// detector, and the next start resumes them: over two runs the daemon's
/// last score is the one offline detection gives the whole stream, and the
/// second run scores a window for every sample from its first. The model
/// is the default's shape: a coarse model that takes the time of day, so
/// the saved points carry the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_every_series_from_the_state_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    let MultiscaleCase { values, both, .. } =
        multiscale_case(&model_dir, Center::Off, false, TimeOfDay::Coarse);
    let (rows, half) = (values.len(), values.len() / 2);
    let state_file = dir.path().join("state.bin");
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 1, 1).ok();
    let brokers = cluster.bootstrap_servers();
    let mut config = plain_config(&brokers, "resume", &model_dir);
    config.series.state_file = Some(state_file.clone());
    let run = |config: ServeConfig, windows: u64| async move {
        let metrics = serve_exactly(config, windows).await;
        metrics.anomaly_score.with_label_values(&["ms"]).get()
    };
    let sample_rows =
        |range: std::ops::Range<usize>| range.map(|row| sample("ms", row, values[row])).collect();

    produce(&brokers, sample_rows(0..half)).await;
    run(config.clone(), multiscale_windows(half)).await;
    assert!(state_file.exists(), "a graceful stop writes the state file");

    produce(&brokers, sample_rows(half..rows)).await;
    // Every sample completes a main window now, every fourth a coarse one.
    let resumed = run(config.clone(), ((rows - half) + (rows - half) / 4) as u64).await;
    assert!(
        (resumed - both).abs() <= 1e-6,
        "resumed daemon's last score {resumed}, offline over the whole stream {both}"
    );

    // Resumed series of partitions that this member is not assigned any
    // more (here: it now reads another topic) go at the first assignment.
    assert!(state_file.exists(), "the second stop saved the state again");
    cluster.create_topic("other", 1, 1).ok();
    produce_to(&brokers, "other", vec![sample("new", 0, 0.0)]).await;
    let mut elsewhere = config.clone();
    elsewhere.kafka.topics = vec!["other".into()];
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(elsewhere, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
    assert_eq!(running.metrics.series_tracked.get(), 1, "\"ms\" resumed");
    let metrics = running.metrics.clone();
    let consumed = until(Duration::from_secs(30), || {
        metrics.samples.with_label_values(&["warming"]).get() == 1
    })
    .await;
    assert!(consumed, "the sample on the other topic was not consumed");
    assert_eq!(
        metrics.series_tracked.get(),
        1,
        "only the new series is left: \"ms\" belongs to a partition not assigned"
    );
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
    assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");

    // A state file that is not one is reported and dropped; the daemon
    // starts cold instead of refusing to start.
    std::fs::write(&state_file, b"not a state file").ok();
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("a corrupt state file stopped the start: {e}"));
    assert!(!state_file.exists(), "the corrupt state file is taken away");
    assert_eq!(running.metrics.series_tracked.get(), 0);
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task).await;
    assert!(matches!(outcome, Ok(Ok(Ok(())))), "{outcome:?}");
}

/// Removes `field` from the `value_range` of the artifact in `model_dir`,
/// as an artifact written before that field was; returns the manifest as
/// it was, to write back for the upgrade.
fn without_range_field(model_dir: &std::path::Path, field: &str) -> String {
    let manifest_path = model_dir.join("manifest.json");
    let original = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| panic!("{e}"));
    let mut manifest: serde_json::Value =
        serde_json::from_str(&original).unwrap_or_else(|e| panic!("{e}"));
    let removed = manifest["value_range"]
        .as_object_mut()
        .and_then(|range| range.remove(field));
    assert!(removed.is_some(), "the artifact has no {field}");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap_or_else(|e| panic!("{e}"));
    original
}

/// A state file saved by a daemon whose series had no stillness check (a
/// version from before it; here an artifact without the quietest training
/// spreads) resumes them with the check: a signal that then sticks is
/// counted. Without it they would go unjudged for stillness until they
/// next started cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_resumed_from_a_state_saved_without_the_stillness_check_get_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);
    let manifest_path = model_dir.join("manifest.json");
    let original = without_range_field(&model_dir, "quietest");

    let (live, stuck) = (300, 80);
    let mut values = common::seasonal(live, 1, 2, &[]);
    values.extend(std::iter::repeat_n(values[live - 1], stuck));
    let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    cluster.create_topic("samples", 1, 1).ok();
    let brokers = cluster.bootstrap_servers();
    let mut config = plain_config(&brokers, "upgrade", &model_dir);
    config.series.state_file = Some(dir.path().join("state.bin"));
    let run = |config: ServeConfig, windows: u64| async move {
        let metrics = serve_exactly(config, windows).await;
        metrics.flatlines.with_label_values(&["sticky"]).get()
    };
    let rows = |range: std::ops::Range<usize>| {
        range
            .map(|row| sample("sticky", row, values[row]))
            .collect()
    };
    produce(&brokers, rows(0..live)).await;
    let before = run(config.clone(), (live - common::WINDOW + 1) as u64).await;
    assert_eq!(before, 0);

    // The upgrade: the same artifact, now with its quietest spreads.
    std::fs::write(&manifest_path, &original).unwrap_or_else(|e| panic!("{e}"));
    produce(&brokers, rows(live..live + stuck)).await;
    let after = run(config, stuck as u64).await;
    assert!(after > 0, "the stuck signal was not judged for stillness");
}

/// An artifact retrained by a newer anomalyd carries the roughest training
/// window where the one served had none: a reload gives the series already
/// served the roughness check, so that an oscillation after it is counted.
/// Without that they would go unjudged for roughness until they next
/// started cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_gives_series_already_served_the_roughness_check() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model_dir = dir.path().join("model");
    trained_model(&model_dir);
    let manifest_path = model_dir.join("manifest.json");
    let original = without_range_field(&model_dir, "roughest");

    let (live, oscillating) = (300, 80);
    let mut values = common::seasonal(live + oscillating, 1, 2, &[]);
    let (low, high) = values[..live]
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let swing = (high - low) / 4.0;
    for (row, value) in values.iter_mut().enumerate().skip(live) {
        *value += if row.is_multiple_of(2) { swing } else { -swing };
    }
    let daemon = serve_one_series(
        "wobbly",
        &values[..live],
        &model_dir,
        (live - common::WINDOW + 1) as u64,
        |_| {},
    )
    .await;
    std::fs::write(&manifest_path, &original).unwrap_or_else(|e| panic!("{e}"));
    daemon.running.reload.notify_one();
    let ok = r#"anomalyd_model_reloads_total{outcome="ok"}"#;
    let body = wait_for(daemon.running.http_addr, ok, 1.0).await;
    assert_eq!(metric(&body, ok), 1.0, "{body}");
    let metrics = daemon.running.metrics.clone();
    let rough = || metrics.rough.with_label_values(&["wobbly"]).get();
    assert_eq!(rough(), 0);
    produce(
        &daemon.cluster.bootstrap_servers(),
        (live..live + oscillating)
            .map(|row| sample("wobbly", row, values[row]))
            .collect(),
    )
    .await;
    wait_until_scored(&metrics, (live + oscillating - common::WINDOW + 1) as u64).await;
    assert!(rough() > 0, "the oscillation was not judged for roughness");
    daemon.stop().await;
}
