//! Scoring throughput (windows/s) of every kind at batch 1, 64 and 256, and
//! the time of one training step at batch 64. Shapes follow the speed
//! protocol in `../shared/bench/README.md`: window 64, one feature.

use anomalyd::data::window::to_tensor;
use anomalyd::device::DeviceSpec;
use anomalyd::model::{
    ConvAeConfig, DeepAeConfig, DenseAeConfig, LstmAeConfig, ModelConfig, PcaConfig, VaeConfig,
};
use anomalyd::train::{TrainConfig, Trainer};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const WINDOW: usize = 64;
const HIDDEN: usize = 64;

fn zoo() -> Vec<(&'static str, ModelConfig)> {
    vec![
        (
            "dense",
            ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, HIDDEN / 4)),
        ),
        (
            "deep",
            ModelConfig::Deep(DeepAeConfig::new(WINDOW, 1, vec![HIDDEN, HIDDEN / 4])),
        ),
        ("conv", ModelConfig::Conv(ConvAeConfig::new(WINDOW, 1))),
        (
            "lstm",
            ModelConfig::Lstm(LstmAeConfig::new(WINDOW, 1, HIDDEN)),
        ),
        (
            "vae",
            ModelConfig::Vae(VaeConfig::new(WINDOW, 1, HIDDEN / 4).with_hidden(HIDDEN)),
        ),
        (
            "pca",
            ModelConfig::Pca(PcaConfig::new(WINDOW, 1, HIDDEN / 4)),
        ),
    ]
}

fn sine_windows(batch: usize) -> Vec<f32> {
    anomalyd::bench::sine_windows(batch, WINDOW, 1, &mut StdRng::seed_from_u64(0))
}

/// `ANOMALYD_BENCH_DEVICE=libtorch cargo bench --features tch --bench zoo`
/// measures the LibTorch backend with the same code.
fn device() -> burn::tensor::Device {
    let spec: DeviceSpec = std::env::var("ANOMALYD_BENCH_DEVICE")
        .unwrap_or_else(|_| String::from("cpu"))
        .parse()
        .unwrap_or_else(|e| panic!("ANOMALYD_BENCH_DEVICE: {e}"));
    spec.build().unwrap_or_else(|e| panic!("{e}"))
}

fn scoring(c: &mut Criterion) {
    let device = device();
    let mut group = c.benchmark_group("score");
    for (name, config) in zoo() {
        let network = config.init(&device);
        for batch in [1usize, 64, 256] {
            let input = to_tensor(sine_windows(batch), [batch, WINDOW, 1], &device);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(name, batch), &input, |b, input| {
                b.iter(|| {
                    let output = network.reconstruct(input.clone());
                    output.into_data()
                })
            });
        }
    }
    group.finish();
}

fn training(c: &mut Criterion) {
    let device = device();
    let mut group = c.benchmark_group("train_step");
    let batch = 64;
    let windows = sine_windows(batch);
    for (name, config) in zoo() {
        if matches!(config, ModelConfig::Pca(_)) {
            continue; // closed form: no step to time
        }
        let train = TrainConfig::default();
        let mut trainer = match Trainer::new(&config, &train, &device) {
            Ok(trainer) => trainer,
            Err(e) => panic!("{name}: {e}"),
        };
        group.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter(|| trainer.step(&windows, batch))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = scoring, training
}
criterion_main!(benches);
