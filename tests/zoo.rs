//! Every kind of the zoo, and every regulariser, trains for real on a
//! synthetic seasonal set, cuts its validation loss, and ranks windows that
//! hold an injected anomaly above normal windows.

mod common;

use anomalyd::model::artifact::TrainedModel;
use anomalyd::model::{ConvAeConfig, DeepAeConfig, DenseAeConfig, ModelConfig};
use anomalyd::score::score_series;
use anomalyd::train::{Corruption, Regularizers, TrainRequest, train};
use common::{Injection, WINDOW, data_config, roc_auc, series, train_config, zoo};

fn fit(model: ModelConfig, regularizers: Regularizers, epochs: usize) -> TrainedModel {
    let device = common::test_device();
    let training = series("train.csv", &common::seasonal(1200, 1, 1, &[]), 1);
    let mut config = train_config(epochs);
    config.regularizers = regularizers;
    let request = TrainRequest {
        data: data_config(),
        model,
        train: config,
    };
    match train(&[training], &request, &device, &mut |_| {}) {
        Ok(model) => model,
        Err(e) => panic!("{:?} did not train: {e}", request.model.kind()),
    }
}

/// Validation loss after training against the untrained network (epoch 0).
fn loss_cut(model: &TrainedModel) -> f64 {
    let history = &model.manifest.history;
    let best = history
        .iter()
        .map(|e| e.val_loss)
        .fold(f64::INFINITY, f64::min);
    history[0].val_loss / best
}

/// ROC AUC of window errors: windows overlapping the anomaly by at least
/// half a window against windows that do not touch it.
fn auc_for(model: &TrainedModel, injection: Injection) -> f64 {
    let device = common::test_device();
    let values = common::seasonal(600, 1, 99, &[injection]);
    let test = series("test.csv", &values, 1);
    let rows = match score_series(model, &test, &device, 256) {
        Ok(rows) => rows,
        Err(e) => panic!("scoring failed: {e}"),
    };
    let span = injection.span();
    let (mut positives, mut negatives) = (Vec::new(), Vec::new());
    for (end, row) in rows.iter().enumerate() {
        let Some(error) = row else { continue };
        let start = end + 1 - WINDOW;
        let overlap = span.end.min(end + 1).saturating_sub(span.start.max(start));
        let needed = span.len().min(WINDOW).div_ceil(2);
        if overlap == 0 {
            negatives.push(error.total);
        } else if overlap >= needed {
            positives.push(error.total);
        }
    }
    roc_auc(&positives, &negatives)
}

const INJECTIONS: [Injection; 3] = [
    Injection::Spike { at: 300, size: 1.0 },
    Injection::Shift {
        from: 300,
        to: 360,
        size: 0.5,
    },
    Injection::Frequency {
        from: 300,
        to: 360,
        factor: 1.5,
    },
];

#[test]
fn every_kind_learns_and_ranks_injected_anomalies_first() {
    for config in zoo(1) {
        let kind = config.kind();
        let model = fit(config, Regularizers::default(), 25);
        if kind != anomalyd::model::ModelKind::Pca {
            let cut = loss_cut(&model);
            assert!(cut > 3.0, "{kind:?}: validation loss only fell {cut:.2}x");
        }
        let cut = loss_cut(&model);
        for injection in INJECTIONS {
            let auc = auc_for(&model, injection);
            eprintln!("{kind:?}: loss cut {cut:.1}x, {injection:?} ROC AUC {auc:.3}");
            assert!(auc >= 0.9, "{kind:?} on {injection:?}: ROC AUC {auc:.3}");
        }
    }
}

#[test]
fn every_regulariser_trains_and_still_detects() {
    let dense = ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 6));
    let cases = [
        (
            "sparse",
            dense.clone(),
            Regularizers {
                sparse_l1: Some(1e-3),
                ..Regularizers::default()
            },
        ),
        (
            "denoise gaussian",
            ModelConfig::Deep(DeepAeConfig::new(WINDOW, 1, vec![32, 6])),
            Regularizers {
                corruption: Some(Corruption::Gaussian { sigma: 0.2 }),
                ..Regularizers::default()
            },
        ),
        (
            "denoise mask",
            ModelConfig::Conv(
                ConvAeConfig::new(WINDOW, 1)
                    .with_channels(8)
                    .with_code_channels(2),
            ),
            Regularizers {
                corruption: Some(Corruption::Mask { fraction: 0.1 }),
                ..Regularizers::default()
            },
        ),
        (
            "contractive",
            dense,
            Regularizers {
                contractive: Some(1e-3),
                ..Regularizers::default()
            },
        ),
    ];
    for (name, config, regularizers) in cases {
        let model = fit(config, regularizers.clone(), 25);
        assert_eq!(model.manifest.training.regularizers, regularizers);
        let cut = loss_cut(&model);
        assert!(cut > 3.0, "{name}: validation loss only fell {cut:.2}x");
        let auc = auc_for(&model, INJECTIONS[0]);
        eprintln!("{name}: loss cut {cut:.1}x, spike ROC AUC {auc:.3}");
        assert!(auc >= 0.9, "{name}: spike ROC AUC {auc:.3}");
    }
}

#[test]
fn regularisers_that_do_not_fit_the_kind_are_refused_by_name() {
    let device = common::test_device();
    let training = series("train.csv", &common::seasonal(200, 1, 1, &[]), 1);
    let mut config = train_config(1);
    config.regularizers.contractive = Some(0.1);
    let request = TrainRequest {
        data: data_config(),
        model: ModelConfig::Deep(DeepAeConfig::new(WINDOW, 1, vec![8, 4])),
        train: config,
    };
    let message = train(&[training], &request, &device, &mut |_| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("--contractive"), "{message}");
}

/// Mean error of the windows inside `span` over the median error of the
/// windows that do not touch it, on the series the model was trained on.
fn contrast_on_training_data(
    model: &TrainedModel,
    values: &[f64],
    span: std::ops::Range<usize>,
) -> f64 {
    let device = common::test_device();
    let rows = match score_series(model, &series("train.csv", values, 1), &device, 256) {
        Ok(rows) => rows,
        Err(e) => panic!("scoring failed: {e}"),
    };
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for (end, row) in rows.iter().enumerate() {
        let Some(error) = row else { continue };
        let start = end + 1 - WINDOW;
        if start >= span.start && end < span.end {
            inside.push(error.total);
        } else if end < span.start || start >= span.end {
            outside.push(error.total);
        }
    }
    outside.sort_by(f64::total_cmp);
    let median = outside[outside.len() / 2];
    inside.iter().sum::<f64>() / inside.len() as f64 / median
}

#[test]
fn a_refit_leaves_the_anomalies_in_the_training_data_out() {
    // Forty rows of a level shift in the training rows: seen that often,
    // a single fit learns to reconstruct it.
    let anomaly = Injection::Shift {
        from: 400,
        to: 440,
        size: 1.0,
    };
    let values = common::seasonal(1200, 1, 5, &[anomaly]);
    let training = series("train.csv", &values, 1);
    let device = common::test_device();
    let contrast = |refit_drop: f64| {
        let mut config = train_config(25);
        config.refit_drop = refit_drop;
        let request = TrainRequest {
            data: data_config(),
            model: ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 6)),
            train: config,
        };
        match train(
            std::slice::from_ref(&training),
            &request,
            &device,
            &mut |_| {},
        ) {
            Ok(trained) => contrast_on_training_data(&trained, &values, anomaly.span()),
            Err(e) => panic!("did not train: {e}"),
        }
    };
    let (once, refitted) = (contrast(0.0), contrast(0.03));
    eprintln!("anomaly/normal window error: {once:.1} fitted once, {refitted:.1} refitted");
    assert!(
        refitted > 2.0 * once,
        "the refit should keep the shift's windows unlearnt: {once:.1} once, {refitted:.1} refitted"
    );
}
