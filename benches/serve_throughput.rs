//! End-to-end daemon throughput, as a ratio to a plain consumer measured in
//! the same run, and the memory bound under a flood of distinct series.
//!
//! `cargo bench --bench serve_throughput` pre-fills a topic on the
//! in-process mock cluster, then times (a) an rdkafka consumer that only
//! counts messages and (b) `anomalyd serve` taking every sample to scored,
//! for the dense model alone, the dense model in the shape `train` gives
//! by default (a coarse model beside it that takes the time of day), and
//! the LSTM model. Then it feeds 100k distinct series to a
//! daemon capped at 10k and reports the tracked series and the resident
//! memory, and p50/p99 latency from sample to scored at a fixed offered rate.

use std::path::Path;
use std::time::{Duration, Instant};

use anomalyd::config::{
    HttpConfig, KafkaConfig, ModelSource, ScoringConfig, SeriesConfig, ServeConfig,
};
use anomalyd::data::{CsvOptions, Series};
use anomalyd::device::DeviceSpec;
use anomalyd::model::{DenseAeConfig, LstmAeConfig, ModelConfig};
use anomalyd::synthetic::seasonal;
use anomalyd::train::{DataConfig, TrainConfig, TrainRequest, train};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

const WINDOW: usize = 32;

/// Trains `config` on 2000 one-minute rows (33 hours). `default_shape`
/// trains what `anomalyd train` does by default around it: a coarse model
/// of 4-row points, which takes the time of day (the rows span a day and
/// its window two hours), so the daemon derives the clock per sample and
/// runs two networks.
fn model(dir: &Path, config: ModelConfig, default_shape: bool) {
    let values = seasonal(2000, 1, 1, &[]);
    let mut text = String::from("t,value\n");
    for (i, v) in values.iter().enumerate() {
        text.push_str(&format!("{},{v}\n", 1_700_000_000 + i * 60));
    }
    let series = Series::from_bytes(
        Path::new("bench.csv"),
        text.as_bytes(),
        &CsvOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let request = TrainRequest {
        data: DataConfig {
            window: WINDOW,
            stride: 1,
            val_fraction: 0.2,
            scaler: anomalyd::data::ScalerKind::Zscore,
            aggregate: anomalyd::train::Aggregate::Rows(1),
            coarse: if default_shape { 4 } else { 1 },
            center: Default::default(),
            detrend: false,
            time_of_day: if default_shape {
                anomalyd::train::TimeOfDay::Auto
            } else {
                anomalyd::train::TimeOfDay::Off
            },
        },
        model: config,
        train: TrainConfig {
            epochs: 2,
            ..TrainConfig::default()
        },
    };
    let mut trained = train(
        &[series],
        &request,
        &DeviceSpec::Cpu.build().unwrap_or_else(|e| panic!("{e}")),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        trained
            .coarse
            .as_ref()
            .map(|c| c.manifest.windowing.time_of_day),
        default_shape.then_some(true),
        "the default shape: a coarse model that takes the clock"
    );
    trained.save(dir).unwrap_or_else(|e| panic!("{e}"));
}

async fn fill(brokers: &str, topic: &str, series: usize, rows: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let values = seasonal(rows, 1, 7, &[]);
    let mut pending = Vec::new();
    for (row, value) in values.iter().enumerate() {
        for s in 0..series {
            let payload = format!(
                r#"{{"ts":{},"value":{value}}}"#,
                1_700_000_000_000i64 + row as i64 * 60_000,
            );
            let key = format!("s{s}");
            let record = FutureRecord::to(topic).key(&key).payload(&payload);
            pending.push(
                producer
                    .send_result(record)
                    .unwrap_or_else(|(e, _)| panic!("{e}")),
            );
            if pending.len() >= 10_000 {
                for d in pending.drain(..) {
                    let _ = d.await;
                }
            }
        }
    }
    for d in pending.drain(..) {
        let _ = d.await;
    }
}

async fn plain_consumer(brokers: &str, topic: &str, group: &str, total: usize) -> Duration {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut seen = 0;
    while seen < total {
        if consumer.recv().await.is_ok() {
            seen += 1;
        }
    }
    started.elapsed()
}

fn serve_config(brokers: &str, topic: &str, group: &str, model: &Path) -> ServeConfig {
    ServeConfig {
        kafka: KafkaConfig {
            brokers: brokers.to_owned(),
            group_id: group.to_owned(),
            topics: vec![topic.to_owned()],
            ..KafkaConfig::default()
        },
        model: ModelSource {
            path: model.to_path_buf(),
            device: "cpu".into(),
            routes: Vec::new(),
        },
        scoring: ScoringConfig::default(),
        http: HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        },
        ..ServeConfig::default()
    }
}

fn consumed(metrics: &anomalyd::metrics::Metrics) -> u64 {
    ["scored", "warming", "skipped", "dropped", "invalid"]
        .iter()
        .map(|o| metrics.samples.with_label_values(&[*o]).get())
        .sum()
}

async fn daemon(config: ServeConfig, total: usize) -> Duration {
    let shutdown = CancellationToken::new();
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    // Consumed is not enough: the last batch must be scored too.
    let scored_target = running.metrics.samples.with_label_values(&["scored"]);
    loop {
        let all_in = consumed(&running.metrics) >= total as u64;
        if all_in && running.metrics.windows_scored.get() >= scored_target.get() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    let _ = running.task.await;
    elapsed
}

/// p50 and p99 from sample to scored at a fixed offered rate. One
/// partition keeps the order exact, so the k-th scored window is known to
/// come from the k-th sample that completes a window, whose send time was
/// recorded; a poller stamps each window when the scored counter passes it.
async fn latency(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    brokers: &str,
    model: &Path,
) {
    const RATE: f64 = 2000.0;
    const SAMPLES: usize = 20_000;
    const SERIES: usize = 10;
    cluster.create_topic("live", 1, 1).ok();
    let shutdown = CancellationToken::new();
    let mut config = serve_config(brokers, "live", "anomalyd-live", model);
    config.scoring.max_wait_ms = 5;
    // The mock broker answers a fetch only when fetch.wait.max.ms runs out
    // (500 ms by default), which would measure the broker, not anomalyd.
    config
        .kafka
        .properties
        .insert("fetch.wait.max.ms".into(), "5".into());
    let running = anomalyd::serve::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(3)).await; // group join
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics = running.metrics.clone();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::with_capacity(
        SAMPLES,
    )));
    let poller = tokio::spawn({
        let sent = sent.clone();
        async move {
            let mut latencies = Vec::new();
            let expected = SAMPLES - SERIES * (WINDOW - 1);
            let deadline = Instant::now() + Duration::from_secs(120);
            while latencies.len() < expected && Instant::now() < deadline {
                {
                    let scored = metrics.windows_scored.get() as usize;
                    let now = Instant::now();
                    let sent = sent.lock().unwrap_or_else(|p| p.into_inner());
                    while latencies.len() < scored.min(sent.len()) {
                        latencies.push(now.duration_since(sent[latencies.len()]));
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            latencies
        }
    });
    let values = seasonal(SAMPLES / SERIES + 1, 1, 9, &[]);
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..SAMPLES {
        let (series, row) = (i % SERIES, i / SERIES);
        let due = started + Duration::from_secs_f64(i as f64 / RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let payload = format!(
            r#"{{"ts":{},"value":{}}}"#,
            1_700_000_000_000i64 + row as i64 * 60_000,
            values[row]
        );
        let key = format!("l{series}");
        let record = FutureRecord::to("live").key(&key).payload(&payload);
        if row >= WINDOW - 1 {
            sent.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
        }
        pending.push(
            producer
                .send_result(record)
                .unwrap_or_else(|(e, _)| panic!("{e}")),
        );
    }
    for d in pending.drain(..) {
        let _ = d.await;
    }
    let mut latencies = poller.await.unwrap_or_default();
    shutdown.cancel();
    let _ = running.task.await;
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"bench\":\"latency\",\"model\":\"dense\",\"offered_samples_per_s\":{RATE},\"windows\":{},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        latencies.len(),
        at(0.5),
        at(0.99)
    );
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dense = dir.path().join("dense");
        let default = dir.path().join("default");
        let lstm = dir.path().join("lstm");
        let dense_config = ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 8));
        model(&dense, dense_config.clone(), false);
        model(&default, dense_config, true);
        model(&lstm, ModelConfig::Lstm(LstmAeConfig::new(WINDOW, 1, 32)), false);

        let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("{e}"));
        let brokers = cluster.bootstrap_servers();
        let (series, rows) = (100, 500);
        let total = series * rows;
        cluster.create_topic("bench", 4, 1).ok();
        fill(&brokers, "bench", series, rows).await;

        let models = [
            ("dense", &dense),
            ("dense-multiscale-clock", &default),
            ("lstm", &lstm),
        ];
        for (name, path) in models {
            let plain = plain_consumer(&brokers, "bench", &format!("plain-{name}"), total).await;
            let group = format!("anomalyd-{name}");
            let served = daemon(serve_config(&brokers, "bench", &group, path), total).await;
            let plain_rate = total as f64 / plain.as_secs_f64();
            let served_rate = total as f64 / served.as_secs_f64();
            println!(
                "{{\"bench\":\"serve_throughput\",\"model\":\"{name}\",\"samples\":{total},\"plain_consumer_samples_per_s\":{plain_rate:.0},\"anomalyd_samples_per_s\":{served_rate:.0},\"ratio\":{:.3}}}",
                served_rate / plain_rate
            );
        }

        latency(&cluster, &brokers, &dense).await;

        // 100k distinct series against a 10k cap: memory stays bounded.
        let flood = 100_000;
        cluster.create_topic("flood", 4, 1).ok();
        fill(&brokers, "flood", flood, 1).await;
        let before = resident_kib();
        let mut config = serve_config(&brokers, "flood", "anomalyd-flood", &dense);
        config.series = SeriesConfig {
            max_series: 10_000,
            ..SeriesConfig::default()
        };
        let shutdown = CancellationToken::new();
        let running = anomalyd::serve::start(config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut peak_tracked = 0;
        while consumed(&running.metrics) < flood as u64 {
            peak_tracked = peak_tracked.max(running.metrics.series_tracked.get());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = resident_kib();
        shutdown.cancel();
        let _ = running.task.await;
        println!(
            "{{\"bench\":\"series_flood\",\"series\":{flood},\"max_series\":10000,\"peak_tracked\":{peak_tracked},\"rss_before_kib\":{before},\"rss_after_kib\":{after}}}"
        );
    });
}
