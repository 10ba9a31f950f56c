//! `anomalyd bench`: scoring throughput and training-step time of one model
//! shape on one device, for capacity planning and for side-by-side runs with
//! PyTorch.
//!
//! The flags, the models and the JSON keys follow
//! `../shared/bench/pytorch_reference.py`, so that both programs take the
//! same arguments and print comparable lines: inference is the median time
//! of a forward pass on one batch, without autodiff; training is the median
//! time of one Adam step (forward, MSE, backward, update) on one batch.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::data::window::to_tensor;
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::model::{
    Activation, ConvAeConfig, DeepAeConfig, LstmAeConfig, ModelConfig, ModelKind, VaeConfig,
};
use crate::train::{TrainConfig, Trainer};

/// Untimed repetitions before measuring, as in the reference.
const WARMUP: usize = 3;

/// One benchmark's shape and device.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub kind: ModelKind,
    pub window: usize,
    pub hidden: usize,
    pub features: usize,
    pub infer_batch: usize,
    pub train_batch: usize,
    pub threads: usize,
    pub reps: usize,
    pub device: DeviceSpec,
    pub seed: u64,
}

/// The JSON line `anomalyd bench` prints; the keys are the reference's.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    #[serde(rename = "impl")]
    pub implementation: String,
    pub kind: String,
    pub window: usize,
    pub hidden: usize,
    pub features: usize,
    pub threads: usize,
    pub device: String,
    /// `None` for PCA, which has no training step.
    pub train_step_ms: Option<f64>,
    pub train_batch: usize,
    pub infer_windows_per_s: f64,
    pub infer_batch: usize,
}

impl BenchConfig {
    /// The model measured for `--kind` at `--hidden H`. `lstm` and `dense`
    /// are the reference's two models: the LSTM autoencoder with hidden size
    /// H, and the dense autoencoder `T·F → H → H/4 → H → T·F` with ReLU,
    /// which in our zoo is `deep --hidden H,H/4`. The other kinds take H as
    /// their hidden width and H/4 as their code.
    pub fn model(&self) -> Result<ModelConfig> {
        let (window, features, hidden) = (self.window, self.features, self.hidden);
        let code = (hidden / 4).max(1);
        let model = match self.kind {
            ModelKind::Lstm => ModelConfig::Lstm(LstmAeConfig::new(window, features, hidden)),
            ModelKind::Dense | ModelKind::Deep => ModelConfig::Deep(
                DeepAeConfig::new(window, features, vec![hidden, code])
                    .with_activation(Activation::Relu),
            ),
            ModelKind::Conv => ModelConfig::Conv(
                ConvAeConfig::new(window, features)
                    .with_channels(hidden)
                    .with_code_channels(code),
            ),
            ModelKind::Vae => {
                ModelConfig::Vae(VaeConfig::new(window, features, code).with_hidden(hidden))
            }
            ModelKind::Pca => ModelConfig::Pca(crate::model::PcaConfig::new(
                window,
                features,
                code.min(window * features),
            )),
        };
        model.validate()?;
        Ok(model)
    }

    fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("--window", self.window),
            ("--hidden", self.hidden),
            ("--features", self.features),
            ("--infer-batch", self.infer_batch),
            ("--train-batch", self.train_batch),
            ("--threads", self.threads),
            ("--reps", self.reps),
        ] {
            if value == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Sine windows with a random frequency, phase and a little uniform noise,
/// drawn the way the reference draws them: `[batch, window, features]`
/// row-major.
pub fn sine_windows(batch: usize, window: usize, features: usize, rng: &mut StdRng) -> Vec<f32> {
    use std::f32::consts::TAU;
    let per_series: Vec<(f32, f32)> = (0..batch * features)
        .map(|_| (rng.random_range(1.0..4.0), rng.random_range(0.0..TAU)))
        .collect();
    let mut values = Vec::with_capacity(batch * window * features);
    for b in 0..batch {
        for t in 0..window {
            for f in 0..features {
                let (frequency, phase) = per_series[b * features + f];
                let noise: f32 = rng.random_range(-0.05..0.05);
                values.push((TAU * frequency * t as f32 / window as f32 + phase).sin() + noise);
            }
        }
    }
    values
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => samples[n / 2],
        _ => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
    }
}

/// Runs the benchmark in this process. Thread counts must be set before
/// (see [`set_threads`]): they are process-wide in both backends.
pub fn run(config: &BenchConfig) -> Result<BenchReport> {
    config.validate()?;
    let model = config.model()?;
    let device = config.device.build()?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let shape = |batch| [batch, config.window, config.features];

    let (train_step_ms, network) = if matches!(model, ModelConfig::Pca(_)) {
        (None, model.init(&device))
    } else {
        let train = TrainConfig {
            batch_size: config.train_batch,
            learning_rate: 1e-3,
            seed: config.seed,
            // The reference steps plain Adam.
            grad_clip_norm: None,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(&model, &train, &device)?;
        let mut steps = Vec::with_capacity(config.reps);
        for rep in 0..WARMUP + config.reps {
            let batch = sine_windows(config.train_batch, config.window, config.features, &mut rng);
            let start = Instant::now();
            // `step` reads the loss back, which waits for the device.
            trainer.step(&batch, config.train_batch)?;
            if rep >= WARMUP {
                steps.push(start.elapsed().as_secs_f64());
            }
        }
        (Some(median(steps) * 1e3), trainer.network())
    };

    let input = sine_windows(config.infer_batch, config.window, config.features, &mut rng);
    let input = to_tensor(input, shape(config.infer_batch), &device);
    let mut passes = Vec::with_capacity(config.reps);
    for rep in 0..WARMUP + config.reps {
        let start = Instant::now();
        // Reading one number back forces the whole forward pass to finish,
        // on an asynchronous device too.
        let total = network
            .reconstruct(input.clone())
            .sum()
            .into_scalar::<f32>();
        std::hint::black_box(total);
        if rep >= WARMUP {
            passes.push(start.elapsed().as_secs_f64());
        }
    }
    let backend = if config.device.is_libtorch() {
        "libtorch"
    } else {
        "flex"
    };
    Ok(BenchReport {
        implementation: format!("anomalyd-{}-{backend}", env!("CARGO_PKG_VERSION")),
        kind: format!("{:?}", config.kind).to_lowercase(),
        window: config.window,
        hidden: config.hidden,
        features: config.features,
        threads: config.threads,
        device: config.device.to_string(),
        train_step_ms: train_step_ms.map(|ms| (ms * 1e3).round() / 1e3),
        train_batch: config.train_batch,
        infer_windows_per_s: (config.infer_batch as f64 / median(passes) * 10.0).round() / 10.0,
        infer_batch: config.infer_batch,
    })
}

/// Sets the CPU thread count of both backends: rayon's global pool (flex)
/// and LibTorch's intra-op pool. Call once, before any tensor op.
pub fn set_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| Error::config("--threads", format!("{threads}: {e}")))?;
    crate::device::set_libtorch_threads(threads);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(kind: ModelKind) -> BenchConfig {
        BenchConfig {
            kind,
            window: 8,
            hidden: 8,
            features: 2,
            infer_batch: 4,
            train_batch: 4,
            threads: 1,
            reps: 2,
            device: DeviceSpec::Cpu,
            seed: 7,
        }
    }

    #[test]
    fn every_kind_reports_positive_speeds_with_its_shapes() {
        for kind in [
            ModelKind::Dense,
            ModelKind::Deep,
            ModelKind::Conv,
            ModelKind::Lstm,
            ModelKind::Vae,
            ModelKind::Pca,
        ] {
            let report = run(&tiny(kind));
            let report = report.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert!(report.infer_windows_per_s > 0.0, "{kind:?}");
            assert_eq!(report.train_step_ms.is_some(), kind != ModelKind::Pca);
            assert!(report.train_step_ms.unwrap_or(1.0) > 0.0);
            assert_eq!(
                (report.window, report.features, report.infer_batch),
                (8, 2, 4)
            );
        }
    }

    #[test]
    fn dense_is_the_references_four_layer_relu_autoencoder() {
        let model = tiny(ModelKind::Dense).model().ok();
        let Some(ModelConfig::Deep(deep)) = model else {
            panic!("dense benchmarks the deep model, got {model:?}");
        };
        assert_eq!(deep.hidden, vec![8, 2]);
        assert_eq!(deep.activation, Activation::Relu);
    }

    #[test]
    fn zero_sizes_are_rejected_by_flag() {
        let mut config = tiny(ModelKind::Lstm);
        config.reps = 0;
        let message = run(&config).err().map(|e| e.to_string());
        assert!(message.is_some_and(|m| m.contains("--reps")));
    }

    #[test]
    fn the_windows_are_seeded() {
        let draw = |seed| sine_windows(3, 5, 2, &mut StdRng::seed_from_u64(seed));
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert_eq!(draw(1).len(), 30);
        assert!(draw(1).iter().all(|v| v.abs() <= 1.05));
    }
}
