//! Reconstruction error per window: the raw signal every detector works on.
//!
//! A window's error is the mean squared difference between the normalised
//! window and its reconstruction, over all T·F values of the features read
//! from data; the per-feature errors average over time only, so the window
//! error is their mean. Derived inputs (the time of day) are reconstructed
//! but not counted: the clock cannot be anomalous.

use std::borrow::Cow;

use burn::prelude::*;

use crate::data::calendar;
use crate::data::window::Segment;
use crate::data::{Series, WindowSet};
use crate::detect::{
    CoarseErrors, Decision, DetectorConfig, Event, KCalibration, PointValues, calibrate_k,
    detect_all_scales,
};
use crate::error::{Error, Result};
use crate::model::Network;
use crate::model::artifact::TrainedModel;

/// The error of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowError {
    /// Mean over time and features.
    pub total: f64,
    /// Mean over time, one per feature.
    pub per_feature: Vec<f64>,
}

/// Per-feature squared reconstruction errors of a `[B, T, F]` batch,
/// averaged over time: `[B, F]` row-major. The one place where the error is
/// defined, for `score`, `eval`, training's validation and the daemon.
pub fn reconstruction_errors(network: &Network, input: Tensor<3>) -> Result<Vec<f32>> {
    let output = network.reconstruct(input.clone());
    (output - input)
        .powf_scalar(2.0)
        .mean_dim(1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("reading scores back: {e:?}")))
}

/// A window's error from its per-feature errors: the mean over the first
/// `scored`, the features read from data (derived ones follow them).
pub fn window_error(per_feature: impl IntoIterator<Item = f64>, scored: usize) -> f64 {
    per_feature.into_iter().take(scored).sum::<f64>() / scored.max(1) as f64
}

/// Scores every window of `windows`, `batch_size` at a time; the first
/// `scored` features make the total, and `per_feature` holds only them.
pub fn window_errors(
    network: &Network,
    windows: &WindowSet,
    scored: usize,
    device: &Device,
    batch_size: usize,
) -> Result<Vec<WindowError>> {
    let features = windows.features();
    let ids: Vec<usize> = (0..windows.len()).collect();
    let mut errors = Vec::with_capacity(ids.len());
    for batch in ids.chunks(batch_size.max(1)) {
        let values = reconstruction_errors(network, windows.batch(batch, device))?;
        errors.extend(values.chunks_exact(features).map(|row| {
            let per_feature: Vec<f64> = row[..scored.min(features)]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            WindowError {
                total: window_error(per_feature.iter().copied(), scored),
                per_feature,
            }
        }));
    }
    Ok(errors)
}

/// `series` as `model` takes it: the data columns it was trained on, with
/// the derived time-of-day features appended when it was trained with them.
pub fn model_input<'a>(model: &TrainedModel, series: &'a Series) -> Result<Cow<'a, Series>> {
    let spec = &model.manifest.windowing;
    let columns = spec.data_columns();
    if series.feature_names.len() != columns.len() {
        return Err(Error::Shape(format!(
            "{} has {} feature column(s) [{}] but the model was trained on {} [{}]",
            series.source.display(),
            series.feature_names.len(),
            series.feature_names.join(", "),
            columns.len(),
            columns.join(", "),
        )));
    }
    if spec.time_of_day {
        Ok(Cow::Owned(calendar::with_time_of_day(series)?))
    } else {
        Ok(Cow::Borrowed(series))
    }
}

/// Scores every row of `series` with a stride-1 sliding window over the
/// model's points: the row that completes a point gets the error of the
/// window that ends at that point. Rows inside a point, and those before
/// the first full window, have none.
pub fn score_series(
    model: &TrainedModel,
    series: &Series,
    device: &Device,
    batch_size: usize,
) -> Result<Vec<Option<WindowError>>> {
    let spec = &model.manifest.windowing;
    let input = model_input(model, series)?;
    let rows_per_point = spec.aggregate.max(1);
    let values = normalised_points(model, &input);
    let windows = WindowSet::new(
        vec![Segment { values }],
        spec.window,
        1,
        spec.feature_names.len(),
    )
    .centered(spec.centering());
    let errors = window_errors(
        &model.network,
        &windows,
        spec.scored_features(),
        device,
        batch_size,
    )?;
    let mut rows: Vec<Option<WindowError>> = vec![None; series.rows()];
    // Window w ends at point w + T - 1, whose last row is the one scored.
    for (window, error) in errors.into_iter().enumerate() {
        rows[last_row(window + spec.window - 1, rows_per_point)] = Some(error);
    }
    Ok(rows)
}

/// The model's points of `series` (rows averaged as it was trained, with
/// every input feature: [`model_input`]), normalised as its input:
/// row-major `[points, features]`.
fn normalised_points(model: &TrainedModel, series: &Series) -> Vec<f32> {
    let points = series.aggregate(model.manifest.windowing.aggregate.max(1));
    let mut values = Vec::new();
    model
        .manifest
        .scaler
        .transform_into(&points.values, &mut values);
    values
}

/// The row that completes `point`: where its window's error and its values
/// go.
fn last_row(point: usize, rows_per_point: usize) -> usize {
    (point + 1) * rows_per_point - 1
}

/// The values [`detect_rows`]' range check judges, aligned with
/// [`score_series`]' rows: row-major `[rows, features]`, each row that
/// completes a point holding that point's normalised values, the others
/// NaN. Only the features read from data: the clock is never out of range.
pub fn point_rows(model: &TrainedModel, series: &Series) -> Result<Vec<f32>> {
    let spec = &model.manifest.windowing;
    let (width, features) = (spec.feature_names.len(), spec.scored_features());
    let rows_per_point = spec.aggregate.max(1);
    let input = model_input(model, series)?;
    let mut rows = vec![f32::NAN; series.rows() * features];
    for (point, values) in normalised_points(model, &input)
        .chunks_exact(width.max(1))
        .enumerate()
    {
        let row = last_row(point, rows_per_point);
        if let Some(slot) = rows.get_mut(row * features..(row + 1) * features) {
            slot.copy_from_slice(&values[..features]);
        }
    }
    Ok(rows)
}

/// The first row of the window whose error [`score_series`] puts on `row`:
/// where the data that error judges begins. An event reported from its
/// first flag covers the anomaly only from here on (a label on a single
/// row is at the end of that window, not at its start).
pub fn window_first_row(model: &TrainedModel, row: usize) -> usize {
    let spec = &model.manifest.windowing;
    row.saturating_sub((spec.window * spec.aggregate.max(1)).saturating_sub(1))
}

/// Runs the detector over the per-row window errors of `model` (from
/// [`score_series`]); `coarse` holds the coarse model's, for a multi-scale
/// model, and `points` the rows' values ([`point_rows`]) for the range
/// check (artifacts of format 4 on); mean-std's k is multiplied by the
/// artifact's `k_factor` ([`DetectorConfig::for_model`]). The one place
/// that knows how an artifact is detected offline.
pub fn detect_rows(
    config: &DetectorConfig,
    model: &TrainedModel,
    errors: &[Option<f64>],
    coarse: Option<&[Option<f64>]>,
    points: Option<&[f32]>,
) -> (Vec<Option<Decision>>, Vec<Event>) {
    let config = &config.for_model(model.manifest.threshold.k_factor);
    let range = model.manifest.point_range();
    let values = range
        .as_ref()
        .zip(points)
        .map(|(range, rows)| PointValues { range, rows });
    detect_all_scales(
        config,
        model.manifest.threshold.value,
        model.manifest.windowing.window,
        errors,
        coarse_errors(model, coarse),
        values,
    )
}

/// [`calibrate_k`] on the per-row window errors of `model` over data taken
/// to be normal, as [`detect_rows`] would judge them.
pub fn calibrate_k_rows(
    config: &DetectorConfig,
    model: &TrainedModel,
    errors: &[Option<f64>],
    coarse: Option<&[Option<f64>]>,
) -> Option<KCalibration> {
    calibrate_k(
        config,
        model.manifest.threshold.value,
        model.manifest.windowing.window,
        errors,
        coarse_errors(model, coarse),
    )
}

/// What mean-std's k must be multiplied by for `model`'s own training data,
/// taken as normal, to raise no marginal event ([`calibrate_k`] on each
/// training series' errors with `config`): the largest factor any series
/// asks for, from 1 + 1/8 (one step of margin) to 2. `None` when `config`'s
/// threshold is not mean-std or no series is long enough for a window.
/// This is `eval`'s calibration on a train file, done once by `train` so
/// that `serve` and `score` judge as `eval` measured.
pub fn calibrate_k_factor(
    config: &DetectorConfig,
    model: &TrainedModel,
    series: &[Series],
    device: &Device,
    batch_size: usize,
) -> Result<Option<f64>> {
    let Some(configured) = config.mean_std_k() else {
        return Ok(None);
    };
    let mut factor: Option<f64> = None;
    for one in series {
        let scored = score_scales(model, one, device, batch_size)?;
        let errors: Vec<Option<f64>> = scored
            .main
            .iter()
            .map(|e| e.as_ref().map(|e| e.total))
            .collect();
        if errors.iter().all(Option::is_none) {
            continue;
        }
        if let Some(calibration) =
            calibrate_k_rows(config, model, &errors, scored.coarse.as_deref())
        {
            let this = calibration.k / configured;
            factor = Some(factor.map_or(this, |f| f.max(this)));
        }
    }
    Ok(factor)
}

/// Records in `model` the k factor [`calibrate_k_factor`] finds for
/// `config` on `series`, and `config` as the detector it was measured for:
/// what `anomalyd train` does after fitting.
pub fn record_k_factor(
    config: &DetectorConfig,
    model: &mut TrainedModel,
    series: &[Series],
    device: &Device,
    batch_size: usize,
) -> Result<()> {
    let factor = calibrate_k_factor(config, model, series, device, batch_size)?;
    model.manifest.threshold.k_factor = factor;
    model.manifest.threshold.calibrated_for = factor.map(|_| *config);
    Ok(())
}

fn coarse_errors<'a>(
    model: &TrainedModel,
    coarse: Option<&'a [Option<f64>]>,
) -> Option<CoarseErrors<'a>> {
    match (&model.coarse, model.coarse_multiple(), coarse) {
        (Some(member), Some(multiple), Some(errors)) => Some(CoarseErrors {
            multiple,
            calibrated: member.manifest.threshold.value,
            errors,
        }),
        _ => None,
    }
}

/// Per-row errors of a possibly multi-scale model.
pub struct ScaleErrors {
    /// The main model's, as [`score_series`] gives them.
    pub main: Vec<Option<WindowError>>,
    /// The coarse model's totals, for a multi-scale model.
    pub coarse: Option<Vec<Option<f64>>>,
}

/// [`score_series`] for the main model and, for a multi-scale model, the
/// coarse one.
pub fn score_scales(
    model: &TrainedModel,
    series: &Series,
    device: &Device,
    batch_size: usize,
) -> Result<ScaleErrors> {
    let main = score_series(model, series, device, batch_size)?;
    let coarse = match &model.coarse {
        Some(member) => Some(
            score_series(member, series, device, batch_size)?
                .into_iter()
                .map(|e| e.map(|e| e.total))
                .collect(),
        ),
        None => None,
    };
    Ok(ScaleErrors { main, coarse })
}
