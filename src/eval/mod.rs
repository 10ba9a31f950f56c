//! `anomalyd eval`: train, detect causally and score against labels, the
//! way the field does.
//!
//! Dataset layout (NAB's, generalised): `DIR/data/<group>/<name>.csv`,
//! `DIR/labels/combined_windows.json` mapping `"<group>/<name>.csv"` to
//! `[[start, end], ...]` (timestamps written as in the CSV), and optionally
//! `DIR/train/<group>/<name>.csv` to train that series' model on.

pub mod nab;
pub mod orion;
pub mod plot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::csv::{epoch_seconds, parse_timestamp};
use crate::data::window::Centering;
use crate::data::{CsvOptions, Series};
use crate::detect::{Decision, DetectorConfig, Event, EventChange, KCalibration, detect_all};
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::model::artifact::TrainedModel;
use crate::score::{
    ScaleErrors, calibrate_k_rows, detect_rows, point_rows, score_scales, window_first_row,
};
use crate::train::{Aggregate, DataConfig, TrainConfig, TrainRequest, train};
use orion::{Counts, Interval};

/// How the detector may learn, and how it is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Train on the series (or its train file), detect causally, score with
    /// Orion's overlapping-segment F1.
    Orion,
    /// NAB's rules: learn only from the past (the probationary period, then
    /// optional retraining), scored by the NAB scorer and Orion's F1.
    Streaming,
}

/// One labelled series of a dataset.
#[derive(Debug, Clone)]
pub struct Entry {
    pub group: String,
    /// `<group>/<name>.csv`, the labels file's key.
    pub key: String,
    pub data: PathBuf,
    pub train: Option<PathBuf>,
    /// Labelled anomaly windows, in seconds.
    pub windows: Vec<Interval>,
}

/// A dataset directory, read and checked.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub entries: Vec<Entry>,
    /// `<group>/<name>.csv` files under `data/` (in the selected groups)
    /// that the labels file does not mention: not evaluated, since a file
    /// without anomalies is written with `[]`.
    pub unlabelled: Vec<String>,
}

impl Dataset {
    /// Reads `root`, keeping only `groups` when given.
    pub fn open(root: &Path, groups: Option<&[String]>) -> Result<Self> {
        let labels_path = root.join("labels").join("combined_windows.json");
        let text = std::fs::read_to_string(&labels_path).map_err(|e| Error::io(&labels_path, e))?;
        let labels: BTreeMap<String, Vec<Vec<serde_json::Value>>> = serde_json::from_str(&text)
            .map_err(|e| Error::Data {
                path: labels_path.clone(),
                line: e.line() as u64,
                column: None,
                reason: format!(
                    "labels must map \"<group>/<name>.csv\" to [[start, end], ...]: {e}"
                ),
            })?;
        let stamp = |key: &str, value: &serde_json::Value| {
            let parsed = match value {
                serde_json::Value::String(s) => parse_timestamp(s),
                serde_json::Value::Number(n) => n.as_f64().map(epoch_seconds),
                _ => None,
            };
            parsed.ok_or_else(|| Error::Labels {
                path: labels_path.clone(),
                series: key.to_owned(),
                reason: format!("{value} is not a timestamp"),
            })
        };
        let mut entries = Vec::new();
        for (key, raw_windows) in &labels {
            let Some((group, _)) = key.split_once('/') else {
                return Err(Error::Labels {
                    path: labels_path.clone(),
                    series: key.clone(),
                    reason: "keys must look like <group>/<name>.csv".into(),
                });
            };
            if groups.is_some_and(|wanted| !wanted.iter().any(|g| g == group)) {
                continue;
            }
            let mut windows = Vec::with_capacity(raw_windows.len());
            for pair in raw_windows {
                let [start, end] = pair.as_slice() else {
                    return Err(Error::Labels {
                        path: labels_path.clone(),
                        series: key.clone(),
                        reason: "each window must be [start, end]".into(),
                    });
                };
                let (start_time, end_time) = (stamp(key, start)?, stamp(key, end)?);
                if end_time < start_time {
                    return Err(Error::Labels {
                        path: labels_path.clone(),
                        series: key.clone(),
                        reason: format!("window [{start}, {end}] ends before it starts"),
                    });
                }
                windows.push((start_time, end_time));
            }
            let data = root.join("data").join(key);
            if !data.is_file() {
                return Err(Error::io(
                    &data,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "labelled series has no data file",
                    ),
                ));
            }
            let train = Some(root.join("train").join(key)).filter(|p| p.is_file());
            entries.push(Entry {
                group: group.to_owned(),
                key: key.clone(),
                data,
                train,
                windows,
            });
        }
        let mut unlabelled = Vec::new();
        let data_dir = root.join("data");
        let groups_on_disk = std::fs::read_dir(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
        for group in groups_on_disk.flatten() {
            let group_name = group.file_name().to_string_lossy().into_owned();
            if groups.is_some_and(|wanted| !wanted.contains(&group_name)) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(group.path()) else {
                continue; // a file beside the groups, not a group
            };
            for file in files.flatten() {
                let key = format!("{group_name}/{}", file.file_name().to_string_lossy());
                if key.ends_with(".csv") && !labels.contains_key(&key) {
                    unlabelled.push(key);
                }
            }
        }
        unlabelled.sort();
        if entries.is_empty() {
            return Err(Error::config(
                "--groups",
                format!("no labelled series selected in {}", labels_path.display()),
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            entries,
            unlabelled,
        })
    }
}

/// Everything `eval` needs besides the dataset.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub protocol: Protocol,
    pub data: DataConfig,
    pub csv: CsvOptions,
    pub train: TrainConfig,
    pub detector: DetectorConfig,
    /// Streaming only: retrain on everything seen so far every this many
    /// rows after the probationary period.
    pub retrain_every: Option<usize>,
    /// Rows per forward pass when scoring.
    pub batch_size: usize,
    /// Calibrate mean-std's k on the rows the first model was trained on
    /// ([`crate::detect::calibrate_k`]): a train file under `orion`, the
    /// probationary period under `streaming`.
    pub calibrate_k: bool,
}

/// What one series produced.
#[derive(Debug, Clone)]
pub struct SeriesOutcome {
    pub group: String,
    pub key: String,
    pub times: Vec<f64>,
    /// The first feature, for plots, and its column name.
    pub signal: Vec<f64>,
    pub signal_name: String,
    pub errors: Vec<Option<f64>>,
    pub decisions: Vec<Option<Decision>>,
    pub truth: Vec<Interval>,
    pub detected: Vec<Interval>,
    pub segment: Counts,
    pub point: Counts,
    /// Why the series was not evaluated (unreadable, or too short to train
    /// on): its windows count as missed, and it has no errors or detections.
    pub skipped: Option<String>,
    /// k calibrated on the train file or the probationary period, when it
    /// was.
    pub calibration: Option<KCalibration>,
    /// What the first model's main and coarse networks took out of each
    /// window (what `--center auto` chose for this series).
    pub centering: Option<Centering>,
    pub coarse_centering: Option<Centering>,
    pub input: InputNotes,
}

/// What reading a series' files found, repaired or left out: logged, and
/// reported per series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputNotes {
    /// Cells filled under `--fill` (series and train file together).
    #[serde(default)]
    pub filled_cells: usize,
    /// Rows dropped for a repeated or backward timestamp (both files).
    #[serde(default)]
    pub dropped_rows: usize,
    /// Labelled windows that lie wholly outside the series' time span:
    /// missed whatever the detector does, and most often a sign that the
    /// labels are written in other units or another time zone.
    #[serde(default)]
    pub windows_outside: usize,
    /// Value columns named like labels, left out of the features.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_columns: Vec<String>,
    /// Value columns without a single number (every cell empty, missing
    /// or text), left out of the features.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_numeric_columns: Vec<String>,
}

/// How many of `windows` lie wholly outside the span of `times`.
pub fn windows_outside(times: &[f64], windows: &[Interval]) -> usize {
    match (times.first(), times.last()) {
        (Some(&first), Some(&last)) => windows
            .iter()
            .filter(|(start, end)| *end < first || *start > last)
            .count(),
        _ => windows.len(),
    }
}

/// The per-row anomaly score handed to NAB's scorer: the detector's score
/// where an event starts or escalates, 0 elsewhere.
/// NAB rewards the earliest detection in a window and charges every
/// detection outside one, so an event is reported when it is confirmed, as
/// an operator would be paged once, and again only if it escalates (see
/// `detect::events`): on NAB every escalation after the probationary
/// period fell inside a labelled window (docs/detection.md, "An event that grows").
pub fn nab_reports(decisions: &[Option<Decision>]) -> Vec<f64> {
    decisions
        .iter()
        .map(|d| match d {
            Some(
                d @ Decision {
                    event: Some(EventChange::Started { .. } | EventChange::Escalated { .. }),
                    ..
                },
            ) => d.score,
            _ => 0.0,
        })
        .collect()
}

impl SeriesOutcome {
    /// Writes one row per input row: time (seconds), the first feature,
    /// the raw and smoothed error, the threshold, the score, whether the
    /// point crossed the threshold, whether it lies in a detected event and
    /// whether it lies in a labelled window, the score handed to NAB's
    /// scorer where an event starts or escalates (`nab_reports`: with it,
    /// NAB's own scorer can be run on these files), and which check gave
    /// the score. Rows without a decision (no
    /// full window yet, or the inside of an averaged point) leave the
    /// detector's columns empty. This is what the plots are drawn from, in
    /// a form other tools can read.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let failed = |e: ::csv::Error| Error::io(path, std::io::Error::other(e.to_string()));
        let mut writer = ::csv::Writer::from_path(path).map_err(failed)?;
        writer
            .write_record([
                "time",
                "value",
                "error",
                "smoothed",
                "threshold",
                "score",
                "flagged",
                "anomalous",
                "labelled",
                "reported",
                "cause",
            ])
            .map_err(failed)?;
        let reported = nab_reports(&self.decisions);
        let inside =
            |t: f64, intervals: &[Interval]| intervals.iter().any(|&(a, b)| a <= t && t <= b);
        for (row, &time) in self.times.iter().enumerate() {
            let mut record = vec![time.to_string(), self.signal[row].to_string()];
            record.push(self.errors[row].map_or_else(String::new, |e| e.to_string()));
            match &self.decisions[row] {
                Some(d) => record.extend([
                    d.smoothed.to_string(),
                    d.threshold.map_or_else(String::new, |t| t.to_string()),
                    format!("{:.6}", d.score),
                    u8::from(d.flagged).to_string(),
                ]),
                None => record.extend(std::iter::repeat_n(String::new(), 4)),
            }
            record.push(u8::from(inside(time, &self.detected)).to_string());
            record.push(u8::from(inside(time, &self.truth)).to_string());
            // Blank where nothing was reported, as NAB's results files hold 0.
            let nab = reported[row];
            record.push(if nab > 0.0 {
                format!("{nab:.6}")
            } else {
                String::new()
            });
            record.push(
                self.decisions[row]
                    .map_or("", |d| d.cause.as_str())
                    .to_owned(),
            );
            writer.write_record(&record).map_err(failed)?;
        }
        writer.flush().map_err(|e| Error::io(path, e))
    }
}

fn slice_series(series: &Series, rows: std::ops::Range<usize>) -> Series {
    let f = series.n_features();
    Series {
        source: series.source.clone(),
        feature_names: series.feature_names.clone(),
        timestamps: series.timestamps[rows.clone()].to_vec(),
        times: series.times[rows.clone()].to_vec(),
        values: series.values[rows.start * f..rows.end * f].to_vec(),
        sha256: series.sha256.clone(),
        dropped_rows: 0,
        filled_cells: 0,
    }
}

/// Header names of columns that hold labels, not data. The layout keeps
/// labels in `labels/combined_windows.json`, but benchmark files are often
/// copied as they come (Yahoo S5's `is_anomaly`, `anomaly` and
/// `changepoint`, SWaT's attack flag): taken for a feature, such a column
/// hands the model the answer.
const LABEL_COLUMNS: [&str; 7] = [
    "is_anomaly",
    "is_anomalous",
    "anomaly",
    "label",
    "labels",
    "changepoint",
    "attack",
];

/// A synthetic benchmark's generator components, written beside its labels
/// (Yahoo S5 A3/A4: `trend`, `noise`, `seasonality1`–`3`): the value less
/// their sum is the injected anomaly, so they are left out with the labels,
/// but only in a file that has a label column.
fn is_generator_component(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "trend"
        || name == "noise"
        || name
            .strip_prefix("seasonality")
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// The CSV options for `entry`: without `--columns`, every value column of
/// its data file but those named like labels (and, beside them, a
/// generator's components) and those without a value, which are returned
/// too (in `label_columns` and `non_numeric_columns`). The columns are named explicitly, so that its train file is read by
/// the same names: a train file may carry columns its series does not (its
/// own labels).
fn series_columns(entry: &Entry, csv: &CsvOptions) -> Result<(CsvOptions, InputNotes)> {
    if csv.columns.is_some() {
        return Ok((csv.clone(), InputNotes::default()));
    }
    let columns = Series::value_columns(&entry.data)?;
    let non_numeric = Series::columns_without_numbers(&entry.data)?;
    let is_label = |name: &String| LABEL_COLUMNS.iter().any(|l| name.eq_ignore_ascii_case(l));
    let labelled = columns.iter().any(is_label);
    let (labels, rest): (Vec<String>, Vec<String>) = columns
        .into_iter()
        .partition(|name| is_label(name) || (labelled && is_generator_component(name)));
    let (non_numeric, features): (Vec<String>, Vec<String>) = rest
        .into_iter()
        .partition(|name| non_numeric.contains(name));
    if features.is_empty() {
        // Nothing would be left: the reader names the problem.
        return Ok((csv.clone(), InputNotes::default()));
    }
    let options = CsvOptions {
        columns: Some(features),
        ..csv.clone()
    };
    let left_out = InputNotes {
        label_columns: labels,
        non_numeric_columns: non_numeric,
        ..InputNotes::default()
    };
    Ok((options, left_out))
}

/// The share of a column's 1s that must lie inside the labelled windows
/// for it to be taken for labels (see [`columns_marking_the_windows`]).
const LABEL_LIKE_SHARE: f64 = 0.9;

/// The share of the labelled windows' rows that such a column's 1s must
/// fill.
const LABEL_LIKE_COVER: f64 = 0.5;

/// Value columns that hold labels under a name [`LABEL_COLUMNS`] does not
/// know (`is_outlier`, `fault`, `y`): nothing but 0s and 1s, nearly all of
/// its 1s inside the labelled windows (`LABEL_LIKE_SHARE`), and filling
/// most of them (`LABEL_LIKE_COVER`), as a label column does when the
/// windows were written from it. A binary feature of the data falls
/// inside the windows about as often as they cover the series; a rare
/// pulse (a command channel beside telemetry) that happens to fall in one
/// fills little of it.
fn columns_marking_the_windows(series: &Series, windows: &[Interval]) -> Vec<String> {
    if windows.is_empty() {
        return Vec::new();
    }
    let inside: Vec<bool> = series
        .times
        .iter()
        .map(|&t| {
            windows
                .iter()
                .any(|&(start, end)| (start..=end).contains(&t))
        })
        .collect();
    let window_rows = inside.iter().filter(|&&inside| inside).count();
    (0..series.n_features())
        .filter(|&feature| {
            let column = (0..series.rows()).map(|row| series.row(row)[feature]);
            let binary = column.clone().all(|v| v == 0.0 || v == 1.0);
            let ones: Vec<bool> = column
                .zip(&inside)
                .filter(|(v, _)| *v == 1.0)
                .map(|(_, &inside)| inside)
                .collect();
            let marking = ones.iter().filter(|&&inside| inside).count();
            binary
                && marking > 0
                && marking as f64 >= LABEL_LIKE_SHARE * ones.len() as f64
                && marking as f64 >= LABEL_LIKE_COVER * window_rows as f64
        })
        .map(|feature| series.feature_names[feature].clone())
        .collect()
}

/// Trains, detects and counts one series. A series whose file (or train
/// file) cannot be read, or whose training rows cannot hold one training
/// window, is not an error: one bad or short file must not stop a
/// benchmark, so it comes back not evaluated, with the reason, its windows
/// missed.
pub fn evaluate_series(
    entry: &Entry,
    config: &EvalConfig,
    model_for: &dyn Fn(usize) -> ModelConfig,
    device: &Device,
) -> Result<SeriesOutcome> {
    let read = || -> Result<(InputNotes, Series, Option<Series>)> {
        let (mut csv, mut left_out) = series_columns(entry, &config.csv)?;
        let mut series = Series::from_path(&entry.data, &csv)?;
        let marking = match config.csv.columns {
            // Columns the user named are taken as named.
            Some(_) => Vec::new(),
            None => columns_marking_the_windows(&series, &entry.windows),
        };
        if !marking.is_empty() && marking.len() < series.n_features() {
            let features = series
                .feature_names
                .iter()
                .filter(|name| !marking.contains(name))
                .cloned()
                .collect();
            csv.columns = Some(features);
            series = Series::from_path(&entry.data, &csv)?;
            left_out.label_columns.extend(marking);
        }
        let training = match &entry.train {
            Some(path) if config.protocol == Protocol::Orion => {
                Some(Series::from_path(path, &csv)?)
            }
            _ => None,
        };
        Ok((left_out, series, training))
    };
    let (left_out, series, training) = match read() {
        Ok(read) => read,
        Err(unreadable @ (Error::Data { .. } | Error::Io { .. })) => {
            return Ok(SeriesOutcome::not_evaluated(
                entry,
                None,
                format!("unreadable: {unreadable}"),
            ));
        }
        Err(other) => return Err(other),
    };
    let mut outcome = match detect_series(
        entry,
        config,
        model_for,
        device,
        &series,
        training.as_ref(),
    ) {
        Err(Error::TooFewRows {
            window,
            rows,
            detail,
        }) => {
            let source = match (&training, config.protocol) {
                (Some(_), _) => "its train file",
                (None, Protocol::Orion) => "the series",
                (None, Protocol::Streaming) => "the probationary period",
            };
            let reason = format!(
                "{source} has {rows} training rows, too few for one window of {window} ({detail})"
            );
            SeriesOutcome::not_evaluated(entry, Some(&series), reason)
        }
        other => other?,
    };
    outcome.input = InputNotes {
        filled_cells: series.filled_cells + training.as_ref().map_or(0, |t| t.filled_cells),
        dropped_rows: series.dropped_rows + training.as_ref().map_or(0, |t| t.dropped_rows),
        windows_outside: windows_outside(&series.times, &entry.windows),
        ..left_out
    };
    Ok(outcome)
}

impl SeriesOutcome {
    /// An outcome without detections: every labelled window missed.
    /// `series` is the series as read, if it could be.
    fn not_evaluated(entry: &Entry, series: Option<&Series>, reason: String) -> Self {
        let rows = series.map_or(0, Series::rows);
        let detected = Vec::new();
        let times = series.map(|s| s.times.clone()).unwrap_or_default();
        Self {
            group: entry.group.clone(),
            key: entry.key.clone(),
            signal: series.map_or_else(Vec::new, |s| (0..rows).map(|r| s.row(r)[0]).collect()),
            signal_name: series
                .and_then(|s| s.feature_names.first().cloned())
                .unwrap_or_default(),
            errors: vec![None; rows],
            decisions: vec![None; rows],
            truth: entry.windows.clone(),
            segment: orion::overlap_segment(&entry.windows, &detected),
            point: orion::point_counts(&times, &entry.windows, &detected),
            times,
            detected,
            skipped: Some(reason),
            calibration: None,
            centering: None,
            coarse_centering: None,
            input: InputNotes::default(),
        }
    }
}

fn detect_series(
    entry: &Entry,
    config: &EvalConfig,
    model_for: &dyn Fn(usize) -> ModelConfig,
    device: &Device,
    series: &Series,
    train_file: Option<&Series>,
) -> Result<SeriesOutcome> {
    let model = model_for(series.n_features());
    let data = match (config.protocol, config.data.aggregate) {
        // NAB scores every row and its probationary period is counted in
        // rows, so streaming models see rows; `auto` would pick a different
        // resolution for every retrained model.
        (Protocol::Streaming, Aggregate::Auto | Aggregate::Rows(1)) => DataConfig {
            aggregate: Aggregate::Rows(1),
            ..config.data.clone()
        },
        (Protocol::Streaming, Aggregate::Rows(_)) => {
            return Err(Error::config(
                "--aggregate",
                "the streaming protocol scores every row; use 1 or auto (which means 1 there)",
            ));
        }
        (Protocol::Orion, _) => config.data.clone(),
    };
    let fit = |training: &[Series]| {
        let request = TrainRequest {
            data: data.clone(),
            model: model.clone(),
            train: config.train.clone(),
        };
        train(training, &request, device, &mut |_| {})
    };
    let rows = series.rows();
    let mut errors: Vec<Option<f64>> = vec![None; rows];
    let mut coarse_errors: Vec<Option<f64>> = vec![None; rows];
    // The first model: its static thresholds serve the whole series.
    let mut first: Option<TrainedModel> = None;
    // Errors of rows before the series (a train file's), which the
    // detector judges first, so that it is warm when the series starts.
    let mut before = ScaleRows::default();
    match config.protocol {
        Protocol::Orion => {
            let trained = fit(std::slice::from_ref(train_file.unwrap_or(series)))?;
            let scored =
                ScaleRows::from(score_scales(&trained, series, device, config.batch_size)?);
            errors = scored.main;
            coarse_errors = scored.coarse;
            if let Some(training) = train_file {
                before =
                    ScaleRows::from(score_scales(&trained, training, device, config.batch_size)?);
            }
            first = Some(trained);
        }
        Protocol::Streaming => {
            let probation = nab::probation_rows(rows);
            let mut start = probation;
            let step = config.retrain_every.unwrap_or(rows).max(1);
            while start < rows {
                let end = (start + step).min(rows);
                let trained = fit(&[slice_series(series, 0..start)])?;
                // Score the rows this model is responsible for, with the
                // history their windows need.
                // The first model also scores the probationary rows: they
                // are never counted, but they warm the detector up.
                let from = if start == probation {
                    0
                } else {
                    start.saturating_sub(data.window - 1)
                };
                let part = slice_series(series, from..end);
                let ScaleErrors { main, coarse } =
                    score_scales(&trained, &part, device, config.batch_size)?;
                for (offset, row) in main.into_iter().enumerate() {
                    if from + offset >= start || start == probation {
                        errors[from + offset] = row.map(|e| e.total);
                    }
                }
                for (offset, row) in coarse.into_iter().flatten().enumerate() {
                    if from + offset >= start || start == probation {
                        coarse_errors[from + offset] = row;
                    }
                }
                first.get_or_insert(trained);
                start = end;
            }
        }
    }
    // The detector runs over the whole series from the first row (after
    // the train file's rows, when there is one), with the first model's
    // static thresholds (what `static` uses).
    let lead = before.main.len();
    let all_errors: Vec<Option<f64>> = before
        .main
        .into_iter()
        .chain(errors.iter().copied())
        .collect();
    let all_coarse: Vec<Option<f64>> = before
        .coarse
        .into_iter()
        .chain(coarse_errors.iter().copied())
        .collect();
    // The first model's training rows are taken to be normal (a train
    // file, or in streaming the probationary period, as `train` takes its
    // data for the daemon): k rises until they are quiet.
    let normal_rows = match config.protocol {
        Protocol::Orion => lead,
        Protocol::Streaming => nab::probation_rows(rows),
    };
    let calibration = match &first {
        Some(model) if config.calibrate_k && normal_rows > 0 => calibrate_k_rows(
            &config.detector,
            model,
            &all_errors[..normal_rows],
            Some(&all_coarse[..normal_rows]),
        ),
        _ => None,
    };
    let detector = match calibration {
        Some(c) => config.detector.with_mean_std_k(c.k),
        None => config.detector,
    };
    let (mut decisions, events) = match &first {
        Some(model) => {
            // The range check starts from the first model's training data
            // (the train file, the probationary rows, or in `orion` without
            // a train file the series itself, where it never fires).
            let mut points = match train_file {
                Some(training) => point_rows(model, training)?,
                None => Vec::new(),
            };
            points.extend(point_rows(model, series)?);
            detect_rows(
                &detector,
                model,
                &all_errors,
                Some(&all_coarse),
                Some(&points),
            )
        }
        None => detect_all(&detector, f64::INFINITY, data.window, &all_errors),
    };
    decisions.drain(..lead);
    // An event open when the series starts counts from its first row.
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| e.end >= lead)
        .map(|e| Event {
            start: e.start.max(lead) - lead,
            end: e.end - lead,
        })
        .collect();
    let times = series.times.clone();
    // A flag judges a whole window, not its last row: the event covers the
    // rows of the window that raised it (as the daemon's `window_start`),
    // so that an anomaly on a single row (a label [t, t]) can lie strictly
    // inside it, as Orion's overlap test needs. The decision itself stays
    // at the flagged row (NAB scores that).
    let first_row = |row: usize| first.as_ref().map_or(row, |m| window_first_row(m, row));
    let detected: Vec<Interval> = events
        .iter()
        .map(|e| (times[first_row(e.start)], times[e.end]))
        .collect();
    let segment = orion::overlap_segment(&entry.windows, &detected);
    let point = orion::point_counts(&times, &entry.windows, &detected);
    Ok(SeriesOutcome {
        group: entry.group.clone(),
        key: entry.key.clone(),
        signal: (0..rows).map(|r| series.row(r)[0]).collect(),
        signal_name: series.feature_names.first().cloned().unwrap_or_default(),
        times,
        errors,
        decisions,
        truth: entry.windows.clone(),
        detected,
        segment,
        point,
        skipped: None,
        calibration,
        centering: first.as_ref().map(|m| m.manifest.windowing.centering()),
        coarse_centering: first
            .as_ref()
            .and_then(|m| m.coarse.as_ref())
            .map(|c| c.manifest.windowing.centering()),
        input: InputNotes::default(),
    })
}

/// Per-row errors of both scales, the coarse one `None` where it has none.
#[derive(Debug, Default)]
struct ScaleRows {
    main: Vec<Option<f64>>,
    coarse: Vec<Option<f64>>,
}

impl From<ScaleErrors> for ScaleRows {
    fn from(scored: ScaleErrors) -> Self {
        let main: Vec<Option<f64>> = scored
            .main
            .into_iter()
            .map(|r| r.map(|e| e.total))
            .collect();
        let coarse = scored.coarse.unwrap_or_else(|| vec![None; main.len()]);
        Self { main, coarse }
    }
}

/// Per-group figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub point_precision: f64,
    pub point_recall: f64,
    pub point_f1: f64,
    pub series: usize,
}

/// Per-series counts, for finding where the errors are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    pub key: String,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub detections: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Mean-std's k calibrated on the series' train file (streaming: its
    /// probationary period), and the marginal events those rows raised at
    /// `--k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<KCalibration>,
    /// What the main model took out of each window: `off` (levels),
    /// `mean` or `trend` (`--center`, `--detrend`; `auto` chooses per
    /// series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centering: Option<Centering>,
    /// The same for the coarse model of a multi-scale artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse_centering: Option<Centering>,
    #[serde(flatten)]
    pub input: InputNotes,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub protocol: Protocol,
    pub groups: BTreeMap<String, GroupReport>,
    /// Mean F1 over the groups that hold at least one labelled window (F1
    /// is undefined without anything to find).
    pub mean_f1: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nab: Option<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nab_details: Option<BTreeMap<String, nab::ProfileResult>>,
    pub series: Vec<SeriesReport>,
    /// Data files the labels do not mention (see [`Dataset::unlabelled`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlabelled: Vec<String>,
}

impl Report {
    pub fn build(protocol: Protocol, outcomes: &[SeriesOutcome]) -> Self {
        let mut sums: BTreeMap<String, (Counts, Counts, usize)> = BTreeMap::new();
        for outcome in outcomes {
            let entry = sums.entry(outcome.group.clone()).or_default();
            entry.0.add(outcome.segment);
            entry.1.add(outcome.point);
            entry.2 += 1;
        }
        let groups: BTreeMap<String, GroupReport> = sums
            .into_iter()
            .map(|(group, (segment, point, series))| {
                let report = GroupReport {
                    tp: segment.tp,
                    fp: segment.fp,
                    fn_: segment.fn_,
                    precision: segment.precision(),
                    recall: segment.recall(),
                    f1: segment.f1(),
                    point_precision: point.precision(),
                    point_recall: point.recall(),
                    point_f1: point.f1(),
                    series,
                };
                (group, report)
            })
            .collect();
        let labelled: Vec<f64> = groups
            .values()
            .filter(|g| g.tp + g.fn_ > 0)
            .map(|g| g.f1)
            .collect();
        // Without a labelled window anywhere there is nothing to find: 0,
        // not the -0 an empty float sum starts from.
        let mean_f1 = if labelled.is_empty() {
            0.0
        } else {
            labelled.iter().sum::<f64>() / labelled.len() as f64
        };
        let (nab, nab_details) = match protocol {
            Protocol::Orion => (None, None),
            Protocol::Streaming => {
                let corpus: Vec<(nab::NabSeries, Vec<f64>)> = outcomes
                    .iter()
                    .map(|o| {
                        (
                            nab::NabSeries::new(&o.times, &o.truth),
                            nab_reports(&o.decisions),
                        )
                    })
                    .collect();
                let details: BTreeMap<String, nab::ProfileResult> = nab::PROFILES
                    .iter()
                    .map(|p| (p.name.to_owned(), nab::score_corpus(&corpus, p)))
                    .collect();
                let headline = details
                    .iter()
                    .map(|(name, r)| (name.clone(), r.normalized))
                    .collect();
                (Some(headline), Some(details))
            }
        };
        let series = outcomes
            .iter()
            .map(|o| SeriesReport {
                key: o.key.clone(),
                tp: o.segment.tp,
                fp: o.segment.fp,
                fn_: o.segment.fn_,
                detections: o.detected.len(),
                skipped: o.skipped.clone(),
                calibration: o.calibration,
                centering: o.centering,
                coarse_centering: o.coarse_centering,
                input: o.input.clone(),
            })
            .collect();
        Self {
            protocol,
            groups,
            mean_f1,
            nab,
            nab_details,
            series,
            unlabelled: Vec::new(),
        }
    }

    /// Appends to `md` a titled list of the series for which `line` says
    /// something about their input; nothing when it says nothing for any.
    fn series_list(
        &self,
        md: &mut String,
        title: &str,
        line: impl Fn(&InputNotes) -> Option<String>,
    ) {
        let lines: Vec<String> = self
            .series
            .iter()
            .filter_map(|s| line(&s.input).map(|l| format!("- {}: {l}\n", s.key)))
            .collect();
        if !lines.is_empty() {
            md.push_str(&format!("\n{title}:\n\n"));
            lines.iter().for_each(|l| md.push_str(l));
        }
    }

    /// `report.md`: the same figures as tables.
    pub fn markdown(&self) -> String {
        let mut md = format!("# anomalyd eval ({:?} protocol)\n\n", self.protocol);
        md.push_str("| group | series | tp | fp | fn | precision | recall | F1 | point F1 |\n");
        md.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for (name, g) in &self.groups {
            md.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                g.series, g.tp, g.fp, g.fn_, g.precision, g.recall, g.f1, g.point_f1
            ));
        }
        md.push_str(&format!(
            "\nMean F1 over groups with labelled anomalies: **{:.3}**\n",
            self.mean_f1
        ));
        let skipped: Vec<&SeriesReport> =
            self.series.iter().filter(|s| s.skipped.is_some()).collect();
        if !skipped.is_empty() {
            md.push_str("\nNot evaluated (their labelled windows count as missed):\n\n");
            for s in skipped {
                let reason = s.skipped.as_deref().unwrap_or_default();
                md.push_str(&format!("- {}: {reason}\n", s.key));
            }
        }
        self.series_list(
            &mut md,
            "Labelled windows outside their series' time span (missed; labels in other units or another time zone?)",
            |n| (n.windows_outside > 0).then(|| n.windows_outside.to_string()),
        );
        self.series_list(
            &mut md,
            "Columns named like labels, left out of the features (`--columns` chooses them)",
            |n| (!n.label_columns.is_empty()).then(|| n.label_columns.join(", ")),
        );
        self.series_list(
            &mut md,
            "Columns without a single number (empty, missing or text), left out of the features",
            |n| (!n.non_numeric_columns.is_empty()).then(|| n.non_numeric_columns.join(", ")),
        );
        let calibrated: Vec<&SeriesReport> = self
            .series
            .iter()
            .filter(|s| s.calibration.is_some())
            .collect();
        if !calibrated.is_empty() {
            md.push_str("\n| series | k calibrated on its train file (streaming: probationary period) | marginal events those rows raised at --k |\n|---|---|---|\n");
            for s in calibrated {
                if let Some(c) = s.calibration {
                    md.push_str(&format!(
                        "| {} | {} | {} |\n",
                        s.key, c.k, c.marginal_events
                    ));
                }
            }
        }
        let detrended: Vec<&str> = self
            .series
            .iter()
            .filter(|s| s.centering == Some(Centering::Trend))
            .map(|s| s.key.as_str())
            .collect();
        if !detrended.is_empty() {
            md.push_str(&format!(
                "\nMain model on detrended windows (`--center auto` chose it, or `--detrend`): {} of {} series: {}\n",
                detrended.len(),
                self.series.len(),
                detrended.join(", ")
            ));
        }
        if !self.unlabelled.is_empty() {
            md.push_str(&format!(
                "\nNot in the labels file, so not evaluated: {}\n",
                self.unlabelled.join(", ")
            ));
        }
        if let Some(details) = &self.nab_details {
            md.push_str("\n| NAB profile | score | threshold | raw | null | perfect |\n|---|---|---|---|---|---|\n");
            for (name, r) in details {
                md.push_str(&format!(
                    "| {name} | {:.1} | {:.4} | {:.2} | {:.2} | {:.1} |\n",
                    r.normalized, r.threshold, r.raw, r.null, r.perfect
                ));
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NAB is handed an event where it is confirmed and where it escalates,
    /// nowhere else: not at the points inside it, nor where it ends.
    #[test]
    fn nab_is_told_of_an_event_when_it_starts_and_when_it_escalates() {
        let at = |score: f64, event: Option<EventChange>| {
            Some(Decision {
                smoothed: 0.0,
                threshold: Some(1.0),
                score,
                flagged: event.is_some(),
                out_of_range: false,
                flatline: false,
                rough: false,
                seasonal: false,
                anomalous: true,
                event,
                cause: crate::detect::Cause::Error,
            })
        };
        let decisions = [
            None,
            at(0.55, Some(EventChange::Started { start: 1 })),
            at(0.6, None),
            at(0.9, Some(EventChange::Escalated { start: 1 })),
            at(0.2, Some(EventChange::Ended(Event { start: 1, end: 3 }))),
        ];
        assert_eq!(nab_reports(&decisions), [0.0, 0.55, 0.0, 0.9, 0.0]);
    }

    #[test]
    fn generator_components_are_named_as_yahoo_writes_them() {
        for name in [
            "trend",
            "Noise",
            "seasonality",
            "seasonality1",
            "SEASONALITY3",
        ] {
            assert!(is_generator_component(name), "{name}");
        }
        for name in ["value", "trend_2", "seasonality_daily", "noisy", "cpu"] {
            assert!(!is_generator_component(name), "{name}");
        }
    }
}
