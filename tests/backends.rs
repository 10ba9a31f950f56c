//! Cross-backend checks, compiled with the `tch` feature: an artifact scores
//! the same on flex and on LibTorch, and an artifact trained on either
//! backend loads and scores on the other.
#![cfg(feature = "tch")]

mod common;

use std::path::Path;

use anomalyd::device::DeviceSpec;
use anomalyd::model::ModelConfig;
use anomalyd::model::artifact::TrainedModel;
use anomalyd::score::score_series;
use anomalyd::train::{TrainRequest, train};
use burn::tensor::Device;
use common::{data_config, series, train_config};

/// The parity bound the issue sets: per-window relative error.
const MAX_RELATIVE_ERROR: f64 = 1e-4;

fn device(spec: DeviceSpec) -> Device {
    spec.build().unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn train_and_save(model: ModelConfig, on: DeviceSpec, dir: &Path) -> TrainedModel {
    let data = series("train.csv", &common::seasonal(400, 1, 3, &[]), 1);
    let request = TrainRequest {
        data: data_config(),
        model,
        train: train_config(3),
    };
    let mut trained = train(&[data], &request, &device(on), &mut |_| {})
        .unwrap_or_else(|e| panic!("training on {on}: {e}"));
    trained
        .save(dir)
        .unwrap_or_else(|e| panic!("saving the {on} artifact: {e}"));
    trained
}

/// Scores a test series containing a spike with the artifact in `dir`,
/// loaded on `on`: one total error per window.
fn scores(dir: &Path, on: DeviceSpec) -> Vec<f64> {
    let device = device(on);
    let model = TrainedModel::load(dir, &device).unwrap_or_else(|e| panic!("loading on {on}: {e}"));
    let test = series(
        "test.csv",
        &common::seasonal(
            160,
            1,
            11,
            &[common::Injection::Spike { at: 90, size: 6.0 }],
        ),
        1,
    );
    score_series(&model, &test, &device, 64)
        .unwrap_or_else(|e| panic!("scoring on {on}: {e}"))
        .into_iter()
        .flatten()
        .map(|error| error.total)
        .collect()
}

fn worst_relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max)
}

#[test]
fn every_kind_scores_the_same_on_flex_and_libtorch() {
    for model in common::zoo(1) {
        let kind = model.kind();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        train_and_save(model, DeviceSpec::Cpu, dir.path());
        let flex = scores(dir.path(), DeviceSpec::Cpu);
        let libtorch = scores(dir.path(), DeviceSpec::LibTorch);
        let worst = worst_relative_error(&flex, &libtorch);
        assert!(
            worst <= MAX_RELATIVE_ERROR,
            "{kind:?}: worst relative error {worst:e} between flex and libtorch"
        );
        // The scores must mean something, not just agree: the spike window
        // stands out on both backends.
        let spread = flex.iter().cloned().fold(0.0, f64::max)
            / flex
                .iter()
                .cloned()
                .fold(f64::INFINITY, f64::min)
                .max(1e-12);
        assert!(spread > 2.0, "{kind:?}: flat scores (max/min {spread})");
    }
}

#[test]
fn an_artifact_trained_on_either_backend_loads_on_the_other() {
    for trained_on in [DeviceSpec::Cpu, DeviceSpec::LibTorch] {
        for model in [common::zoo(1)[0].clone(), common::zoo(1)[3].clone()] {
            let kind = model.kind();
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let trained = train_and_save(model, trained_on, dir.path());
            let history = &trained.manifest.history;
            let (first, last) = (history.first(), history.last());
            assert!(
                matches!((first, last), (Some(a), Some(b)) if b.val_loss < a.val_loss),
                "{kind:?} trained on {trained_on} did not learn: {history:?}"
            );
            let flex = scores(dir.path(), DeviceSpec::Cpu);
            let libtorch = scores(dir.path(), DeviceSpec::LibTorch);
            let worst = worst_relative_error(&flex, &libtorch);
            assert!(
                worst <= MAX_RELATIVE_ERROR,
                "{kind:?} trained on {trained_on}: worst relative error {worst:e}"
            );
        }
    }
}

#[test]
fn the_same_seed_trains_the_same_weights_on_libtorch() {
    let model = common::zoo(1)[0].clone();
    let (a, b) = (tempfile::tempdir(), tempfile::tempdir());
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        _ => panic!("temporary directories"),
    };
    train_and_save(model.clone(), DeviceSpec::LibTorch, a.path());
    train_and_save(model, DeviceSpec::LibTorch, b.path());
    let read = |dir: &Path| {
        std::fs::read(dir.join(anomalyd::model::artifact::WEIGHTS_FILE))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(read(a.path()) == read(b.path()));
}
