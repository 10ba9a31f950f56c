//! Fixtures shared by the integration tests: synthetic seasonal series with
//! injected anomalies, and small model configurations that train in seconds
//! on two cores.
#![allow(dead_code)]

use std::path::Path;

use anomalyd::data::ScalerKind;
use anomalyd::data::{CsvOptions, Series};
use anomalyd::model::{
    Activation, ConvAeConfig, DeepAeConfig, DenseAeConfig, LstmAeConfig, ModelConfig, PcaConfig,
    VaeConfig,
};
use anomalyd::train::{DataConfig, TrainConfig};

pub const WINDOW: usize = 16;
#[allow(unused_imports)] // each test binary uses its own part of the fixtures
pub use anomalyd::synthetic::{Injection, seasonal, seasonal_with_period};

/// Writes `values` as a CSV with a NAB-style datetime column.
pub fn csv_text(values: &[f64], features: usize) -> String {
    let names: Vec<String> = (0..features).map(|f| format!("v{f}")).collect();
    let mut text = format!("timestamp,{}\n", names.join(","));
    for (row, chunk) in values.chunks(features).enumerate() {
        let minutes = row * 5;
        let cells: Vec<String> = chunk.iter().map(|v| format!("{v:.6}")).collect();
        text.push_str(&format!(
            "2024-01-{:02} {:02}:{:02}:00,{}\n",
            1 + minutes / (24 * 60),
            (minutes / 60) % 24,
            minutes % 60,
            cells.join(",")
        ));
    }
    text
}

pub fn series(name: &str, values: &[f64], features: usize) -> Series {
    let text = csv_text(values, features);
    match Series::from_bytes(Path::new(name), text.as_bytes(), &CsvOptions::default()) {
        Ok(series) => series,
        Err(e) => panic!("fixture series does not parse: {e}"),
    }
}

pub fn data_config() -> DataConfig {
    DataConfig {
        window: WINDOW,
        stride: 1,
        val_fraction: 0.2,
        scaler: ScalerKind::Zscore,
        aggregate: anomalyd::train::Aggregate::Rows(1),
        coarse: 1,
        // Tests choose what they test; `auto` fits the main model twice.
        center: anomalyd::train::Center::Off,
        detrend: false,
        time_of_day: anomalyd::train::TimeOfDay::Off,
    }
}

pub fn train_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        learning_rate: 3e-3,
        seed: 7,
        patience: 5,
        ..TrainConfig::default()
    }
}

/// One small configuration of every kind, for `features` channels.
pub fn zoo(features: usize) -> Vec<ModelConfig> {
    vec![
        ModelConfig::Dense(DenseAeConfig::new(WINDOW, features, 6)),
        ModelConfig::Deep(DeepAeConfig::new(WINDOW, features, vec![32, 6])),
        ModelConfig::Conv(
            ConvAeConfig::new(WINDOW, features)
                .with_channels(8)
                .with_code_channels(2),
        ),
        ModelConfig::Lstm(LstmAeConfig::new(WINDOW, features, 16)),
        ModelConfig::Vae(
            VaeConfig::new(WINDOW, features, 6)
                .with_hidden(32)
                .with_beta(0.1),
        ),
        ModelConfig::Pca(PcaConfig::new(WINDOW, features, 6)),
    ]
}

pub fn linear_dense(code: usize) -> ModelConfig {
    ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, code).with_activation(Activation::Identity))
}

/// Area under the ROC curve: the probability that a random positive scores
/// above a random negative (ties count half).
pub fn roc_auc(positives: &[f64], negatives: &[f64]) -> f64 {
    let mut wins = 0.0;
    for p in positives {
        for n in negatives {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (positives.len() * negatives.len()) as f64
}

/// The device the model tests run on: flex unless `ANOMALYD_TEST_DEVICE`
/// names another (`libtorch` in CI's LibTorch pass), so one suite checks
/// every backend.
pub fn test_device() -> burn::tensor::Device {
    let spec: anomalyd::device::DeviceSpec = std::env::var("ANOMALYD_TEST_DEVICE")
        .unwrap_or_else(|_| String::from("cpu"))
        .parse()
        .unwrap_or_else(|e| panic!("ANOMALYD_TEST_DEVICE: {e}"));
    spec.build()
        .unwrap_or_else(|e| panic!("ANOMALYD_TEST_DEVICE={spec}: {e}"))
}
