//! The model artifact: one directory with `manifest.json` (everything needed
//! to rebuild, normalise and judge) and `weights.safetensors`.
//!
//! Weights are safetensors rather than burnpack: it is the format every
//! other ML tool reads (PyTorch, numpy, JAX), it is a flat header plus raw
//! little-endian tensors that cannot execute code, and operators can inspect
//! it without anomalyd. The manifest records the weight file's size and
//! SHA-256, checked before any byte of it is parsed.
//!
//! The artifact is deterministic: no wall-clock times or host names go in,
//! so the same data, seed and backend give identical bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleStore, SafetensorsStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::Scaler;
use crate::data::window::Centering;
use crate::detect::{DetectorConfig, ValueRange};
use crate::error::{Error, Result};
use crate::model::{ModelConfig, Network};
use crate::train::{EpochStats, TrainConfig, quantile};

/// Bumped whenever an older anomalyd could misread a newer artifact.
/// Format 4 adds `value_range`; older artifacts have none, and the
/// detector's range check stays off for them. Format 5 adds
/// `windowing.centered` (absent: not centred). Format 6 adds
/// `threshold.k_factor` (absent: mean-std's k as configured). Format 7 adds
/// `windowing.time_of_day` (absent: no derived features), whose model takes
/// two inputs more than the data has columns. Format 8 adds
/// `windowing.detrended` (absent: a centred window loses its mean alone).
pub const FORMAT_VERSION: u32 = 8;
/// Version 1 lacks `windowing.aggregate`, which then means one row per point.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// Shape of the windows the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowingSpec {
    pub window: usize,
    pub stride: usize,
    pub val_fraction: f64,
    pub feature_names: Vec<String>,
    /// Consecutive rows averaged into one point before windowing; the
    /// window, stride and threshold history count points.
    #[serde(default = "one_row_per_point")]
    pub aggregate: usize,
    /// Each window has its per-feature mean subtracted before the model
    /// sees it (and in the error), so the model judges shape, not level.
    #[serde(default)]
    pub centered: bool,
    /// A centred window loses its least-squares line, not its mean alone
    /// ([`Centering::Trend`]).
    #[serde(default)]
    pub detrended: bool,
    /// The last entries of `feature_names` are the time-of-day features
    /// ([`crate::data::calendar`]), derived from each row's timestamp.
    #[serde(default)]
    pub time_of_day: bool,
}

impl WindowingSpec {
    /// What comes out of each window before the model sees it.
    pub fn centering(&self) -> Centering {
        Centering::new(self.centered, self.detrended)
    }

    /// The features read from data, which the error and the detector's
    /// checks count; the derived ones follow them in the model's input.
    pub fn scored_features(&self) -> usize {
        let derived = if self.time_of_day {
            crate::data::calendar::TIME_OF_DAY_FEATURES.len()
        } else {
            0
        };
        self.feature_names.len().saturating_sub(derived)
    }

    /// The columns a series must have: the names of the scored features.
    pub fn data_columns(&self) -> &[String] {
        &self.feature_names[..self.scored_features()]
    }
}

fn one_row_per_point() -> usize {
    1
}

/// Distribution of window errors on the calibration data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// `validation`, or `train` when no validation windows existed.
    pub calibrated_on: String,
    pub count: usize,
    pub mean: f64,
    pub std: f64,
    pub max: f64,
    /// Keyed `q0.5`, `q0.9`, … for readability in the JSON.
    pub quantiles: BTreeMap<String, f64>,
}

impl ErrorStats {
    pub fn from_errors(errors: &[f64], calibrated_on: &str) -> Self {
        let count = errors.len();
        let n = count.max(1) as f64;
        let mean = errors.iter().sum::<f64>() / n;
        let variance = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n;
        let quantiles = [0.5, 0.9, 0.95, 0.99, 0.995, 0.999]
            .into_iter()
            .map(|q| (format!("q{q}"), quantile(errors, q)))
            .collect();
        Self {
            calibrated_on: calibrated_on.to_owned(),
            count,
            mean,
            std: variance.sqrt(),
            max: errors.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            quantiles,
        }
    }

    /// The median error (NaN in stats written without it).
    pub fn median(&self) -> f64 {
        self.quantiles.get("q0.5").copied().unwrap_or(f64::NAN)
    }
}

/// The default decision threshold on the window error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub quantile: f64,
    pub value: f64,
    /// What `anomalyd train` found mean-std's k must be multiplied by for
    /// the training data, taken as normal, to raise no marginal event
    /// ([`crate::score::calibrate_k_factor`]); `serve` and `score` apply it
    /// (format 6; absent: k as configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_factor: Option<f64>,
    /// The detector `k_factor` was measured for (`train --detector-config`;
    /// absent: the default detector, which artifacts before this field were
    /// all calibrated with). An older anomalyd ignores it, so it needs no
    /// new format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_for: Option<DetectorConfig>,
}

/// One training file, identified by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub path: String,
    pub rows: usize,
    pub sha256: String,
}

/// Where the weights are and how to recognise them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    pub file: String,
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub anomalyd_version: String,
    pub model: ModelConfig,
    pub training: TrainConfig,
    pub windowing: WindowingSpec,
    pub scaler: Scaler,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
    pub validation_errors: ErrorStats,
    pub threshold: Threshold,
    pub data: Vec<FileFingerprint>,
    /// Filled in by [`TrainedModel::save`].
    pub weights: Option<WeightsInfo>,
    /// Per-feature bounds of the training points (all of them, validation
    /// included), in the data's own units: what the detector's range check
    /// starts from (format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_range: Option<ValueRange>,
    /// Multi-scale (format 3): the subdirectory holding the coarse model,
    /// a complete artifact of its own whose points average a multiple of
    /// this one's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse: Option<String>,
}

impl Manifest {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: ModelConfig,
        training: TrainConfig,
        windowing: WindowingSpec,
        scaler: Scaler,
        history: Vec<EpochStats>,
        best_epoch: usize,
        validation_errors: ErrorStats,
        threshold: Threshold,
        data: Vec<FileFingerprint>,
        value_range: Option<ValueRange>,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            anomalyd_version: env!("CARGO_PKG_VERSION").to_owned(),
            model,
            training,
            windowing,
            scaler,
            history,
            best_epoch,
            validation_errors,
            threshold,
            data,
            weights: None,
            value_range,
            coarse: None,
        }
    }

    /// [`Manifest::value_range`] normalised by the scaler, the units the
    /// detector sees a point's values in.
    pub fn point_range(&self) -> Option<ValueRange> {
        self.value_range
            .as_ref()
            .filter(|range| range.features() == self.windowing.scored_features())
            .map(|range| range.mapped(&self.scaler.offset, &self.scaler.scale))
    }

    /// Reads and checks `dir/manifest.json` without touching the weights.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        // The version is read on its own first, so that a newer artifact is
        // reported as such rather than as a field this build does not know.
        let raw: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::artifact(&path, format!("not valid JSON: {e}")))?;
        let version = raw
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::artifact(&path, "no numeric format_version"))?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(Error::artifact(
                &path,
                format!(
                    "format version {version} is newer than this anomalyd ({}) reads (up to {FORMAT_VERSION}); upgrade anomalyd",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        if version < u64::from(OLDEST_FORMAT_VERSION) {
            return Err(Error::artifact(
                &path,
                format!(
                    "format version {version} is older than the oldest supported, {OLDEST_FORMAT_VERSION}"
                ),
            ));
        }
        let manifest: Self =
            serde_json::from_value(raw).map_err(|e| Error::artifact(&path, e.to_string()))?;
        manifest.check_consistency(&path)?;
        Ok(manifest)
    }

    fn check_consistency(&self, path: &Path) -> Result<()> {
        let (window, features) = self.model.input_shape();
        let names = self.windowing.feature_names.len();
        if window != self.windowing.window || features != names || self.scaler.n_features() != names
        {
            return Err(Error::artifact(
                path,
                format!(
                    "inconsistent shapes: model {window}x{features}, windowing {}x{names}, scaler {} features",
                    self.windowing.window,
                    self.scaler.n_features()
                ),
            ));
        }
        let derived = crate::data::calendar::TIME_OF_DAY_FEATURES;
        if self.windowing.time_of_day
            && !self
                .windowing
                .feature_names
                .ends_with(&derived.map(String::from))
        {
            return Err(Error::artifact(
                path,
                format!(
                    "windowing.time_of_day is set but the feature names do not end with {}",
                    derived.join(", ")
                ),
            ));
        }
        if self.windowing.aggregate == 0 {
            return Err(Error::artifact(
                path,
                "windowing.aggregate is 0; a point averages at least one row",
            ));
        }
        self.model
            .validate()
            .map_err(|e| Error::artifact(path, format!("model config: {e}")))
    }
}

/// Where a multi-scale artifact keeps its coarse model.
const COARSE_DIR: &str = "coarse";

/// A network with everything needed to use it.
#[derive(Debug)]
pub struct TrainedModel {
    pub manifest: Manifest,
    pub network: Network,
    /// The coarse model of a multi-scale artifact.
    pub coarse: Option<Box<TrainedModel>>,
}

impl TrainedModel {
    pub fn new(manifest: Manifest, network: Network) -> Self {
        Self {
            manifest,
            network,
            coarse: None,
        }
    }

    /// Makes this a multi-scale model with `coarse` as its coarse scale.
    pub fn attach_coarse(&mut self, coarse: TrainedModel) {
        self.manifest.coarse = Some(COARSE_DIR.to_owned());
        self.coarse = Some(Box::new(coarse));
    }

    /// Main-model points per coarse point, for a multi-scale model.
    pub fn coarse_multiple(&self) -> Option<usize> {
        self.coarse
            .as_ref()
            .map(|c| c.manifest.windowing.aggregate / self.manifest.windowing.aggregate.max(1))
    }

    /// Writes `dir/weights.safetensors` and `dir/manifest.json`, creating
    /// `dir`. The manifest goes last, so a directory with a manifest always
    /// has the weights it describes.
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(coarse) = &mut self.coarse {
            coarse.save(&dir.join(COARSE_DIR))?;
            self.manifest.coarse = Some(COARSE_DIR.to_owned());
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        // No metadata: burn's default map is a HashMap whose order would make
        // the bytes differ from run to run.
        let mut store = SafetensorsStore::from_bytes(None).clear_metadata();
        store
            .collect_from(&self.network)
            .map_err(|e| Error::artifact(&weights_path, format!("serialising weights: {e}")))?;
        let bytes = store
            .get_bytes()
            .map_err(|e| Error::artifact(&weights_path, format!("serialising weights: {e}")))?;
        std::fs::write(&weights_path, &bytes).map_err(|e| Error::io(&weights_path, e))?;
        self.manifest.weights = Some(WeightsInfo {
            file: WEIGHTS_FILE.to_owned(),
            format: "safetensors".to_owned(),
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
        let manifest_path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(&self.manifest)
            .map_err(|e| Error::artifact(&manifest_path, e.to_string()))?;
        text.push('\n');
        std::fs::write(&manifest_path, text).map_err(|e| Error::io(&manifest_path, e))
    }

    /// Loads and verifies an artifact directory onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let Some(info) = &manifest.weights else {
            return Err(Error::artifact(
                dir.join(MANIFEST_FILE),
                "no 'weights' entry",
            ));
        };
        let weights_path: PathBuf = dir.join(&info.file);
        let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        if bytes.len() as u64 != info.bytes {
            return Err(Error::artifact(
                &weights_path,
                format!(
                    "{} bytes, the manifest says {} (truncated or replaced)",
                    bytes.len(),
                    info.bytes
                ),
            ));
        }
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != info.sha256 {
            return Err(Error::artifact(
                &weights_path,
                format!(
                    "SHA-256 {digest} does not match the manifest's {}",
                    info.sha256
                ),
            ));
        }
        let mut network = manifest.model.init(device);
        let mut store = SafetensorsStore::from_bytes(Some(bytes)).validate(true);
        let kind = manifest.model.kind();
        let applied = store.apply_to(&mut network).map_err(|e| {
            Error::artifact(
                &weights_path,
                format!("weights do not fit the {kind:?} model: {e}"),
            )
        })?;
        if !applied.errors.is_empty() || !applied.missing.is_empty() || !applied.unused.is_empty() {
            let mut problems: Vec<String> =
                applied.errors.iter().map(|e| format!("{e:?}")).collect();
            problems.extend(
                applied
                    .missing
                    .iter()
                    .map(|(p, _)| format!("missing tensor {p}")),
            );
            problems.extend(
                applied
                    .unused
                    .iter()
                    .map(|p| format!("unexpected tensor {p}")),
            );
            return Err(Error::artifact(
                &weights_path,
                format!(
                    "weights do not fit the {:?} model: {}",
                    manifest.model.kind(),
                    problems.join("; ")
                ),
            ));
        }
        let coarse = match &manifest.coarse {
            None => None,
            Some(subdir) if subdir != COARSE_DIR => {
                return Err(Error::artifact(
                    dir.join(MANIFEST_FILE),
                    format!("coarse is `{subdir}`; the coarse model lives in `{COARSE_DIR}`"),
                ));
            }
            Some(subdir) => {
                let coarse = Self::load(&dir.join(subdir), device)?;
                check_coarse(&manifest, &coarse.manifest, &dir.join(subdir))?;
                Some(Box::new(coarse))
            }
        };
        Ok(Self {
            manifest,
            network,
            coarse,
        })
    }
}

/// A coarse model must read the same features through the same scaler
/// (the daemon normalises a sample once, for both), beside the time of day
/// when it alone takes it, average a whole multiple (> 1) of the main
/// model's rows per point, and have no coarse model of its own.
fn check_coarse(main: &Manifest, coarse: &Manifest, dir: &Path) -> Result<()> {
    let path = dir.join(MANIFEST_FILE);
    let (rows, coarse_rows) = (main.windowing.aggregate, coarse.windowing.aggregate);
    if coarse_rows <= rows || coarse_rows % rows != 0 {
        return Err(Error::artifact(
            &path,
            format!(
                "windowing.aggregate {coarse_rows} is not a multiple of the main model's {rows} rows per point"
            ),
        ));
    }
    if coarse.windowing.data_columns() != main.windowing.data_columns() {
        return Err(Error::artifact(
            &path,
            "the coarse model reads other features than the main model",
        ));
    }
    // The daemon keeps one buffer per series for both: the coarse model
    // takes every input the main one does, and may take the clock alone.
    if main.windowing.time_of_day && !coarse.windowing.time_of_day {
        return Err(Error::artifact(
            &path,
            "windowing.time_of_day: the main model takes the time of day and the coarse model does not",
        ));
    }
    let shared = main.scaler.n_features();
    let (offset, scale) = (&coarse.scaler.offset, &coarse.scaler.scale);
    if coarse.scaler.kind != main.scaler.kind
        || offset.get(..shared) != Some(&main.scaler.offset[..])
        || scale.get(..shared) != Some(&main.scaler.scale[..])
    {
        return Err(Error::artifact(
            &path,
            "the coarse model's scaler differs from the main model's",
        ));
    }
    if coarse.coarse.is_some() {
        return Err(Error::artifact(
            &path,
            "a coarse model cannot have a coarse model of its own",
        ));
    }
    Ok(())
}
