//! Per-point cost of the detector at steady state, for every threshold
//! method at its defaults, and of the default with the range check fed
//! each point's value, beside the time the dense model takes to score one
//! window in a batch of 256 (the work the daemon does for the same point).
//! `cargo bench --bench detect`.

use anomalyd::data::window::to_tensor;
use anomalyd::detect::{
    CycleBound, Detector, DetectorConfig, ThresholdConfig, ThresholdKind, ThresholdParams,
    ValueRange,
};
use anomalyd::device::DeviceSpec;
use anomalyd::model::{DenseAeConfig, ModelConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const POINTS: usize = 20_000;

/// Reconstruction-error-like values: small positive noise, and a burst
/// every 997 points.
fn errors() -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..POINTS)
        .map(|i| {
            let noise: f64 = rng.random::<f64>();
            if i % 997 == 996 {
                50.0 * noise
            } else {
                0.01 + 0.01 * noise * noise
            }
        })
        .collect()
}

fn detectors(c: &mut Criterion) {
    let errors = errors();
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.sample_size(20);
    let kinds = [
        ThresholdKind::Static,
        ThresholdKind::MeanStd,
        ThresholdKind::Mad,
        ThresholdKind::Telemanom,
        ThresholdKind::Spot,
        ThresholdKind::Dspot,
    ];
    for kind in kinds {
        let config = DetectorConfig {
            threshold: ThresholdConfig::build(kind, ThresholdParams::default()),
            ..DetectorConfig::default()
        };
        group.bench_function(BenchmarkId::new("points", format!("{kind:?}")), |b| {
            b.iter(|| {
                // The default model window (32 points): mean-std's exclusion
                // budget is counted in them.
                let mut detector = Detector::new(&config, 1.0, 32);
                let mut flagged = 0usize;
                for &e in &errors {
                    flagged += usize::from(detector.update(e).flagged);
                }
                flagged
            })
        });
    }
    // The default again, each point's value judged against a range first:
    // a sine within the training range, a new extreme every 997 points.
    let config = DetectorConfig::default();
    let values: Vec<f32> = (0..POINTS)
        .map(|i| (i as f32 / 20.0).sin() * (1.0 + (i / 997) as f32 * 0.1))
        .collect();
    let range = ValueRange {
        min: vec![-1.0],
        max: vec![1.0],
        quietest: None,
        roughest: None,
        resolution: None,
        daily: None,
        weekly: None,
    };
    // With the training windows' quietest spread too, the stillness check
    // runs over the last 32 values at every point.
    let still = ValueRange {
        quietest: Some(vec![0.01]),
        ..range.clone()
    };
    // And with the roughest window's median step (above the sine's, so
    // that it never fires), the roughness check as well: a median of 31
    // steps at every point.
    let rough = ValueRange {
        roughest: Some(vec![0.2]),
        ..still.clone()
    };
    // And with a daily bound too (a day of five-minute points, above the
    // sine's differences), the seasonal check: a median of 32 differences
    // at every point.
    let all = ValueRange {
        daily: Some(CycleBound {
            period: 288,
            largest: vec![2.0],
        }),
        // A week of five-minute points is more than a guard keeps.
        weekly: None,
        ..rough.clone()
    };
    for (name, range) in [
        ("MeanStd + range check", range),
        ("MeanStd + range and stillness checks", still),
        ("MeanStd + range, stillness and roughness checks", rough),
        ("MeanStd + all four checks", all),
    ] {
        group.bench_function(BenchmarkId::new("points", name), |b| {
            b.iter(|| {
                let mut detector =
                    Detector::new(&config, 1.0, 32).with_range(&config, Some(range.clone()));
                let mut flagged = 0usize;
                for (&e, &v) in errors.iter().zip(&values) {
                    detector.observe_values(&[v]);
                    flagged += usize::from(detector.update(e).flagged);
                }
                flagged
            })
        });
    }
    group.finish();

    // The model's share of the same point, for scale.
    let device = DeviceSpec::Cpu.build().unwrap_or_else(|e| panic!("{e}"));
    let model = ModelConfig::Dense(DenseAeConfig::new(32, 1, 8));
    let network = model.init(&device);
    let batch = 256;
    let windows = anomalyd::bench::sine_windows(batch, 32, 1, &mut StdRng::seed_from_u64(0));
    let input = to_tensor(windows, [batch, 32, 1], &device);
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(BenchmarkId::new("points", "dense model, batch 256"), |b| {
        b.iter(|| network.reconstruct(input.clone()).into_data())
    });
    group.finish();
}

criterion_group!(benches, detectors);
criterion_main!(benches);
