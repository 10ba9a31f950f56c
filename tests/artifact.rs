//! The artifact on disk: round trip, determinism, and a clear error for each
//! way it can be broken.

mod common;

use std::path::Path;

use anomalyd::data::Series;
use anomalyd::data::window::Centering;
use anomalyd::model::artifact::{FORMAT_VERSION, MANIFEST_FILE, TrainedModel, WEIGHTS_FILE};
use anomalyd::model::{DenseAeConfig, LstmAeConfig, ModelConfig};
use anomalyd::score::score_series;
use anomalyd::train::{Aggregate, Center, TrainRequest, train};
use common::{WINDOW, data_config, series, train_config};

fn trained(model: ModelConfig, features: usize, seed: u64) -> TrainedModel {
    let device = common::test_device();
    let data = series(
        "train.csv",
        &common::seasonal(500, features, 3, &[]),
        features,
    );
    let mut config = train_config(4);
    config.seed = seed;
    let request = TrainRequest {
        data: data_config(),
        model,
        train: config,
    };
    match train(&[data], &request, &device, &mut |_| {}) {
        Ok(model) => model,
        Err(e) => panic!("training failed: {e}"),
    }
}

fn saved(model: &mut TrainedModel, dir: &Path) {
    if let Err(e) = model.save(dir) {
        panic!("save failed: {e}");
    }
}

fn load_error(dir: &Path) -> String {
    match TrainedModel::load(dir, &common::test_device()) {
        Ok(_) => "loaded fine".into(),
        Err(e) => e.to_string(),
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The artifact records the range of every training row, validation rows
/// included, per feature; the detector gets it normalised as the model's
/// input, where the training data's own points lie inside it.
#[test]
fn the_artifact_holds_the_training_range_per_feature() {
    // The rows `trained` fits on, as read.
    let values = series("train.csv", &common::seasonal(500, 2, 3, &[]), 2).values;
    let model = trained(ModelConfig::Dense(DenseAeConfig::new(WINDOW, 2, 4)), 2, 1);
    let range = model
        .manifest
        .value_range
        .clone()
        .unwrap_or_else(|| panic!("no value_range in the manifest"));
    for feature in 0..2 {
        let column = values.iter().skip(feature).step_by(2);
        let lowest = column.clone().copied().fold(f64::INFINITY, f64::min);
        let highest = column.copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((range.min[feature], range.max[feature]), (lowest, highest));
    }
    let normalised = model
        .manifest
        .point_range()
        .unwrap_or_else(|| panic!("no point range"));
    let scaler = &model.manifest.scaler;
    for feature in 0..2 {
        let expected = (range.max[feature] - scaler.offset[feature]) / scaler.scale[feature];
        assert!((normalised.max[feature] - expected).abs() < 1e-12);
    }
}

#[test]
fn save_load_scores_identically_for_multivariate_input() {
    let device = common::test_device();
    let mut model = trained(ModelConfig::Lstm(LstmAeConfig::new(WINDOW, 2, 8)), 2, 1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    saved(&mut model, dir.path());
    let loaded = TrainedModel::load(dir.path(), &device).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.manifest, model.manifest);
    let test = series("test.csv", &common::seasonal(120, 2, 11, &[]), 2);
    let before = score_series(&model, &test, &device, 64).unwrap_or_else(|e| panic!("{e}"));
    let after = score_series(&loaded, &test, &device, 7).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        before, after,
        "scores differ after a round trip (or across batch sizes)"
    );
    assert_eq!(before.len(), 120);
    assert!(before[..WINDOW - 1].iter().all(Option::is_none));
    let last = before[WINDOW - 1].as_ref().map(|e| e.per_feature.len());
    assert_eq!(
        last,
        Some(2),
        "a multivariate row carries one error per feature"
    );
}

#[test]
fn same_data_and_seed_give_the_same_bytes_and_another_seed_does_not() {
    let config = || ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4));
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for (dir, seed) in dirs.iter().zip([5, 5, 6]) {
        saved(&mut trained(config(), 1, seed), dir.path());
    }
    for file in [MANIFEST_FILE, WEIGHTS_FILE] {
        let bytes: Vec<Vec<u8>> = dirs.iter().map(|d| read(&d.path().join(file))).collect();
        assert_eq!(
            bytes[0], bytes[1],
            "{file} differs between two runs with one seed"
        );
    }
    assert_ne!(
        read(&dirs[0].path().join(WEIGHTS_FILE)),
        read(&dirs[2].path().join(WEIGHTS_FILE)),
        "the seed has no effect on the weights"
    );
}

/// Runs that train side by side (eval does, one series per core) draw
/// their initial weights apart and give the bytes each gives alone.
#[test]
fn runs_training_side_by_side_give_the_bytes_they_give_alone() {
    let config = || ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4));
    let weights = |model: &mut TrainedModel| {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        saved(model, dir.path());
        read(&dir.path().join(WEIGHTS_FILE))
    };
    let alone: Vec<Vec<u8>> = [5, 6]
        .into_iter()
        .map(|seed| weights(&mut trained(config(), 1, seed)))
        .collect();
    for _ in 0..3 {
        let together: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let runs: Vec<_> = [5, 6]
                .into_iter()
                .map(|seed| scope.spawn(move || weights(&mut trained(config(), 1, seed))))
                .collect();
            runs.into_iter()
                .map(|run| run.join().unwrap_or_else(|_| panic!("a run panicked")))
                .collect()
        });
        assert!(together == alone, "side-by-side runs changed the weights");
    }
}

#[test]
fn a_broken_artifact_is_refused_with_a_message_that_names_the_problem() {
    let mut model = trained(ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4)), 1, 1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    saved(&mut model, dir.path());
    let weights = dir.path().join(WEIGHTS_FILE);
    let manifest = dir.path().join(MANIFEST_FILE);
    let original_weights = read(&weights);
    let original_manifest = String::from_utf8(read(&manifest)).unwrap_or_default();

    std::fs::write(&weights, &original_weights[..original_weights.len() / 2]).ok();
    let message = load_error(dir.path());
    assert!(
        message.contains(WEIGHTS_FILE) && message.contains("truncated"),
        "{message}"
    );

    let mut flipped = original_weights.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(&weights, &flipped).ok();
    let message = load_error(dir.path());
    assert!(message.contains("SHA-256"), "{message}");
    std::fs::write(&weights, &original_weights).ok();

    let current = format!("\"format_version\": {FORMAT_VERSION}");
    let future = original_manifest.replace(&current, "\"format_version\": 99");
    assert_ne!(future, original_manifest);
    std::fs::write(&manifest, future).ok();
    let message = load_error(dir.path());
    assert!(message.contains("format version 99 is newer"), "{message}");

    std::fs::write(&manifest, "{ not json").ok();
    let message = load_error(dir.path());
    assert!(
        message.contains(MANIFEST_FILE) && message.contains("not valid JSON"),
        "{message}"
    );

    // Weights of another shape under an intact checksum: the manifest says
    // code 4, the file holds a code-4 network, but the manifest now claims 5.
    let reshaped = original_manifest.replace("\"code\": 4", "\"code\": 5");
    assert_ne!(reshaped, original_manifest);
    std::fs::write(&manifest, reshaped).ok();
    let message = load_error(dir.path());
    assert!(
        message.contains("do not fit the Dense model") && message.contains("Dense.encoder.weight"),
        "{message}"
    );
    std::fs::write(&manifest, &original_manifest).ok();

    assert_eq!(load_error(dir.path()), "loaded fine");
}

/// With three rows per point the model learns from point averages, the
/// artifact records it, and scoring judges the row that completes each point.
#[test]
fn an_aggregating_model_scores_the_row_that_completes_each_point() {
    let device = common::test_device();
    let data = series("train.csv", &common::seasonal(600, 1, 3, &[]), 1);
    let request = TrainRequest {
        data: anomalyd::train::DataConfig {
            aggregate: Aggregate::Rows(3),
            ..data_config()
        },
        model: ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4)),
        train: train_config(2),
    };
    let mut model =
        train(&[data], &request, &device, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.manifest.windowing.aggregate, 3);
    assert_eq!(
        model.manifest.data[0].rows, 600,
        "the fingerprint counts rows read"
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    saved(&mut model, dir.path());
    let loaded = TrainedModel::load(dir.path(), &device).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.manifest.windowing.aggregate, 3);

    // 121 rows make 40 complete points; the 121st row is in no point.
    let test = series("test.csv", &common::seasonal(121, 1, 11, &[]), 1);
    let rows = score_series(&loaded, &test, &device, 64).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 121);
    let scored: Vec<usize> = (0..rows.len()).filter(|&r| rows[r].is_some()).collect();
    let expected: Vec<usize> = (WINDOW - 1..40).map(|point| point * 3 + 2).collect();
    assert_eq!(scored, expected);

    // 45 rows are 15 points: too few for one training window of 16, and
    // the error says the averaging is why.
    let short = series("short.csv", &common::seasonal(45, 1, 5, &[]), 1);
    let message = match train(&[short], &request, &device, &mut |_| {}) {
        Ok(_) => "trained".to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("--window") && message.contains("a point averages 3 rows"),
        "{message}"
    );
}

/// A model of centred windows judges shape, not level: it scores a series
/// and the same series shifted by a constant alike (after a round trip
/// through the artifact), where a model of levels does not; a detrended
/// one also scores the series tilted by a ramp alike, where a model of
/// mean-centred windows does not. PCA is fitted on the centred windows too.
#[test]
fn a_centred_model_scores_a_shifted_series_as_the_series() {
    let device = common::test_device();
    let data = series("train.csv", &common::seasonal(600, 1, 3, &[]), 1);
    let live = common::seasonal(300, 1, 17, &[]);
    let shifted: Vec<f64> = live.iter().map(|v| v + 2.5).collect();
    let tilted: Vec<f64> = live
        .iter()
        .enumerate()
        .map(|(i, v)| v + 0.05 * i as f64)
        .collect();
    let errors = |model: &TrainedModel, values: &[f64]| -> Vec<f64> {
        let rows = score_series(model, &series("live.csv", values, 1), &device, 64)
            .unwrap_or_else(|e| panic!("{e}"));
        rows.into_iter().flatten().map(|e| e.total).collect()
    };
    let largest_change = |a: &[f64], b: &[f64]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs() / a.max(1e-9))
            .fold(0.0f64, f64::max)
    };
    let pca = ModelConfig::Pca(anomalyd::model::PcaConfig {
        window: WINDOW,
        features: 1,
        components: 3,
    });
    for model in [ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4)), pca] {
        for (center, detrend) in [
            (Center::Off, false),
            (Center::All, false),
            (Center::All, true),
        ] {
            let request = TrainRequest {
                data: anomalyd::train::DataConfig {
                    center,
                    detrend,
                    ..data_config()
                },
                model: model.clone(),
                train: train_config(3),
            };
            let mut trained = train(std::slice::from_ref(&data), &request, &device, &mut |_| {})
                .unwrap_or_else(|e| panic!("{e}"));
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            saved(&mut trained, dir.path());
            let loaded = TrainedModel::load(dir.path(), &device).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                loaded.manifest.windowing.centering(),
                request.data.centering(true)
            );
            let plain = errors(&loaded, &live);
            let moved = largest_change(&plain, &errors(&loaded, &shifted));
            let tilt = largest_change(&plain, &errors(&loaded, &tilted));
            let case = format!("{model:?} {center:?} detrend {detrend}");
            match (center, detrend) {
                (Center::Off, _) => assert!(
                    moved > 0.5,
                    "{case}: a model of levels should see the shift ({moved:.2e})"
                ),
                (_, false) => {
                    assert!(
                        moved < 1e-3,
                        "{case}: a centred model's errors moved by {moved:.2e} with the level"
                    );
                    assert!(
                        tilt > 0.5,
                        "{case}: a mean-centred model should see the ramp ({tilt:.2e})"
                    );
                }
                (_, true) => assert!(
                    moved < 1e-3 && tilt < 1e-3,
                    "{case}: a detrended model's errors moved by {moved:.2e} with the level \
                     and {tilt:.2e} with the ramp"
                ),
            }
        }
    }
}

/// `--detrend` without centred windows has nothing to act on, and
/// `--center auto` decides detrending itself: both refused, naming the flag.
#[test]
fn detrending_without_centring_is_refused_by_flag() {
    for center in [Center::Off, Center::Auto] {
        let config = anomalyd::train::DataConfig {
            center,
            detrend: true,
            ..data_config()
        };
        match config.validate() {
            Err(anomalyd::Error::Config { field, .. }) => assert_eq!(field, "--detrend"),
            other => panic!("expected a --detrend error with {center:?}, got {other:?}"),
        }
    }
}

/// `--center auto`, the default, fits the main model on levels and on
/// detrended windows and keeps the detrended fit where the level wanders
/// (a random walk under the cycle: the model of levels meets levels in
/// validation it never saw), levels where it does not (the cycle alone);
/// an LSTM (as deep and conv models) keeps levels, fitted once.
#[test]
fn center_auto_detrends_where_the_level_wanders_and_keeps_levels_elsewhere() {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let device = common::test_device();
    let mut rng = StdRng::seed_from_u64(5);
    let mut normal = move || rng.sample::<f64, _>(rand_distr::StandardNormal);
    // Noise a window's line cannot take: the steady series' errors are
    // mostly noise either way.
    let steady: Vec<f64> = common::seasonal(1200, 1, 3, &[])
        .into_iter()
        .map(|value| value + 0.5 * normal())
        .collect();
    let mut level = 0.0;
    let wandering: Vec<f64> = steady
        .iter()
        .map(|value| {
            level += 0.3 * normal();
            value + level
        })
        .collect();
    let fitted = |values: &[f64], model: ModelConfig| {
        let request = TrainRequest {
            data: anomalyd::train::DataConfig {
                center: Center::Auto,
                ..data_config()
            },
            model,
            train: train_config(30),
        };
        let mut fits = 0;
        let trained = train(
            &[series("train.csv", values, 1)],
            &request,
            &device,
            &mut |stats| fits += usize::from(stats.epoch == 0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (trained, fits)
    };
    let dense = ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4));
    let lstm = ModelConfig::Lstm(LstmAeConfig::new(WINDOW, 1, 8));
    let (mut walk_model, dense_fits) = fitted(&wandering, dense.clone());
    assert_eq!(
        walk_model.manifest.windowing.centering(),
        Centering::Trend,
        "the random walk"
    );
    // Both fits are seeded, so the choice and the artifact are repeatable.
    let dirs = [(); 2].map(|_| tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")));
    saved(&mut walk_model, dirs[0].path());
    saved(&mut fitted(&wandering, dense.clone()).0, dirs[1].path());
    for file in [MANIFEST_FILE, WEIGHTS_FILE] {
        assert_eq!(
            read(&dirs[0].path().join(file)),
            read(&dirs[1].path().join(file)),
            "{file} differs between two runs with one seed"
        );
    }
    let centering = |model: &TrainedModel| model.manifest.windowing.centering();
    assert_eq!(
        centering(&fitted(&steady, dense).0),
        Centering::Off,
        "the cycle alone"
    );
    let (lstm_model, lstm_fits) = fitted(&wandering, lstm);
    assert_eq!(centering(&lstm_model), Centering::Off, "the LSTM");
    assert_eq!(dense_fits, 2 * lstm_fits, "the dense model is fitted twice");
}

/// A multi-scale artifact: the coarse model lives in `coarse/`, averages
/// four main points per point on the main model's scaler (and the time of
/// day, by default), survives the
/// round trip, and a coarse model that does not fit is refused by file.
#[test]
fn a_multiscale_artifact_round_trips_and_its_coarse_model_is_checked() {
    let device = common::test_device();
    let data = series("train.csv", &common::seasonal(1200, 1, 3, &[]), 1);
    let request = TrainRequest {
        data: anomalyd::train::DataConfig {
            coarse: 4,
            center: Center::Off,
            detrend: false,
            time_of_day: anomalyd::train::TimeOfDay::Coarse,
            ..data_config()
        },
        model: ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4)),
        train: train_config(2),
    };
    let mut model =
        train(&[data], &request, &device, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.coarse_multiple(), Some(4));
    let coarse = model.coarse.as_ref().map(|c| c.manifest.clone());
    assert_eq!(coarse.as_ref().map(|m| m.windowing.aggregate), Some(4));
    // The default: the coarse model alone takes the time of day, after the
    // data's column, which it reads through the main model's scaler; the
    // clock's two inputs are scaled by a fixed 1/std of a sine over a day.
    let main_scaler = &model.manifest.scaler;
    let clock = std::f64::consts::FRAC_1_SQRT_2;
    assert_eq!(
        coarse.as_ref().map(|m| &m.scaler),
        Some(&anomalyd::data::Scaler {
            offset: [&main_scaler.offset[..], &[0.0, 0.0]].concat(),
            scale: [&main_scaler.scale[..], &[clock, clock]].concat(),
            ..main_scaler.clone()
        }),
        "the coarse model reads samples normalised by the main model's scaler"
    );
    assert_eq!(coarse.as_ref().map(|m| m.windowing.time_of_day), Some(true));
    assert!(!model.manifest.windowing.time_of_day);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    saved(&mut model, dir.path());
    let loaded = TrainedModel::load(dir.path(), &device).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.coarse_multiple(), Some(4));

    let test = series("test.csv", &common::seasonal(200, 1, 11, &[]), 1);
    let scored = anomalyd::score::score_scales(&loaded, &test, &device, 64)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(coarse_error_rows(&scored), coarse_window_ends(200, 4));
    let before = scored
        .main
        .iter()
        .flatten()
        .map(|e| e.total)
        .collect::<Vec<_>>();
    let original = score_series(&model, &test, &device, 64).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        before,
        original
            .iter()
            .flatten()
            .map(|e| e.total)
            .collect::<Vec<_>>()
    );

    // A coarse model with a scaler of its own.
    let coarse_manifest = dir.path().join("coarse").join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&coarse_manifest).unwrap_or_default();
    let mut edited: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    edited["scaler"]["offset"][0] = serde_json::json!(123.0);
    std::fs::write(&coarse_manifest, edited.to_string()).ok();
    let message = load_error(dir.path());
    assert!(
        message.contains("coarse") && message.contains("scaler differs"),
        "{message}"
    );
    // A coarse model that does not average a multiple of the main rows.
    std::fs::write(
        &coarse_manifest,
        text.replace("\"aggregate\": 4", "\"aggregate\": 1"),
    )
    .ok();
    let message = load_error(dir.path());
    assert!(
        message.contains("coarse") && message.contains("not a multiple"),
        "{message}"
    );
    // A missing coarse model is named by its file.
    std::fs::remove_dir_all(dir.path().join("coarse")).ok();
    let message = load_error(dir.path());
    assert!(message.contains("coarse/manifest.json"), "{message}");

    // Too few rows for the coarse model: a single-scale model, not an error.
    // 36 rows are 18 coarse points even at the smallest multiple (2), 14 of
    // them for training: no window of 16.
    let short = series("short.csv", &common::seasonal(36, 1, 5, &[]), 1);
    let single = train(&[short], &request, &device, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert!(single.coarse.is_none() && single.manifest.coarse.is_none());
}

/// On little training data the coarse model steps down to a multiple that
/// gives it enough windows, and the artifact and its scoring follow it.
#[test]
fn a_coarse_model_on_little_data_averages_fewer_points() {
    let device = common::test_device();
    // 720 rows: 180 points and 165 windows of 16 at 4x, 240 and 225 at 3x.
    let data = series("train.csv", &common::seasonal(720, 1, 3, &[]), 1);
    let request = TrainRequest {
        data: anomalyd::train::DataConfig {
            coarse: 4,
            ..data_config()
        },
        model: ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4)),
        train: train_config(2),
    };
    let mut model =
        train(&[data], &request, &device, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.coarse_multiple(), Some(3));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    saved(&mut model, dir.path());
    let loaded = TrainedModel::load(dir.path(), &device).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.coarse_multiple(), Some(3));
    let test = series("test.csv", &common::seasonal(120, 1, 11, &[]), 1);
    let scored = anomalyd::score::score_scales(&loaded, &test, &device, 64)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(coarse_error_rows(&scored), coarse_window_ends(120, 3));
}

/// The rows at which a multi-scale model's coarse model gave an error.
fn coarse_error_rows(scored: &anomalyd::score::ScaleErrors) -> Vec<usize> {
    scored
        .coarse
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(row, e)| e.map(|_| row))
        .collect()
}

/// Where a coarse model of `multiple` rows per point completes a window of
/// `WINDOW` points over `rows` rows: on the last row of points
/// `WINDOW - 1` onwards (200 rows at 4x are 50 points, windows ending at
/// points 15..=49, each on the point's fourth row).
fn coarse_window_ends(rows: usize, multiple: usize) -> Vec<usize> {
    (WINDOW - 1..rows / multiple)
        .map(|point| point * multiple + multiple - 1)
        .collect()
}

#[test]
fn scoring_data_with_another_feature_count_is_a_shape_error() {
    let device = common::test_device();
    let model = trained(ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4)), 1, 1);
    let wider = series("wide.csv", &common::seasonal(50, 3, 1, &[]), 3);
    let message = match score_series(&model, &wider, &device, 16) {
        Ok(_) => "scored".to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("wide.csv has 3 feature column(s)") && message.contains("trained on 1"),
        "{message}"
    );
}

/// An LSTM artifact written by anomalyd before the LSTM had its own CPU
/// kernel (`tests/fixtures/lstm-format1`, with the scores that build wrote)
/// still loads, and scores the same windows within the cross-backend bound.
#[test]
fn an_lstm_artifact_from_before_the_cpu_kernel_scores_as_it_did() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lstm-format1");
    let device = common::test_device();
    let model = TrainedModel::load(&fixture.join("model"), &device)
        .unwrap_or_else(|e| panic!("the old artifact no longer loads: {e}"));
    let data = anomalyd::data::Series::from_path(
        &fixture.join("series.csv"),
        &anomalyd::data::CsvOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let now: Vec<f64> = score_series(&model, &data, &device, 64)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .flatten()
        .map(|error| error.total)
        .collect();
    let text = String::from_utf8(read(&fixture.join("scores.csv"))).unwrap_or_default();
    let then: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').nth(1))
        .filter(|cell| !cell.is_empty())
        .map(|cell| cell.parse().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(now.len(), then.len());
    assert!(now.len() > 300);
    for (i, (a, b)) in now.iter().zip(&then).enumerate() {
        let relative = (a - b).abs() / b.abs().max(1e-12);
        assert!(relative <= 1e-4, "window {i}: {a} now, {b} then");
    }
}

/// `--time-of-day auto`, the default: the coarse model takes the clock
/// when the training data span a day or more, so that it can learn the
/// whole clock, and its window spans less than one (a window that spans a
/// day shows where in the day it is), and only for wall-clock times; a
/// dense main model does not, an LSTM's does. Windows of 16 points, coarse
/// points of 2 rows (`--coarse 4` steps down to 2 on a few hundred rows).
#[test]
fn auto_gives_the_clock_to_the_models_whose_window_spans_less_than_a_day() {
    let device = common::test_device();
    let clocks_of = |model: ModelConfig, start: usize, rows: usize, minutes_apart: usize| {
        let request = TrainRequest {
            data: anomalyd::train::DataConfig {
                coarse: 4,
                time_of_day: anomalyd::train::TimeOfDay::Auto,
                ..data_config()
            },
            model,
            train: train_config(1),
        };
        let values = common::seasonal(rows, 1, 3, &[]);
        let mut text = String::from("t,value\n");
        for (row, value) in values.iter().enumerate() {
            let seconds = start + row * minutes_apart * 60;
            text.push_str(&format!("{seconds},{value}\n"));
        }
        let data = Series::from_bytes(Path::new("train.csv"), text.as_bytes(), &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let model =
            train(&[data], &request, &device, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        (
            model.manifest.windowing.time_of_day,
            model.coarse.map(|c| c.manifest.windowing.time_of_day),
        )
    };
    let dense = || ModelConfig::Dense(DenseAeConfig::new(WINDOW, 1, 4));
    let clocks_from = |start, rows, minutes_apart| clocks_of(dense(), start, rows, minutes_apart);
    let clocks = |rows, minutes_apart| clocks_from(1_704_067_200, rows, minutes_apart);
    // 5-minute rows: the coarse model's window spans 2 h 40 min.
    assert_eq!(clocks(300, 5), (false, Some(true)), "25 hours of data");
    assert_eq!(clocks(250, 5), (false, Some(false)), "under 21 hours");
    // Hourly rows: 32 hours.
    assert_eq!(clocks(300, 60), (false, Some(false)), "hourly rows");
    // Seconds counted from the data's start (or row numbers): no hour.
    assert_eq!(
        clocks_from(0, 300, 5),
        (false, Some(false)),
        "relative time"
    );
    // An LSTM's main model takes it too, by the same rules.
    let lstm = || ModelConfig::Lstm(LstmAeConfig::new(WINDOW, 1, 8));
    let day = 1_704_067_200;
    assert_eq!(clocks_of(lstm(), day, 300, 5), (true, Some(true)), "LSTM");
    assert_eq!(
        clocks_of(lstm(), day, 300, 120),
        (false, Some(false)),
        "LSTM, 2-hour rows"
    );
}
