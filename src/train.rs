//! Offline training: windows in, a fitted network and its calibration out.
//!
//! Adam on the mean squared reconstruction error plus the regulariser terms,
//! early stopping on the validation reconstruction error with the best
//! weights kept, then a threshold calibrated on the validation errors.
//! Everything random (initial weights, shuffling, input corruption, the VAE's
//! noise) derives from one seed, so the same data, seed and backend give the
//! same artifact bytes.

use std::sync::Mutex;

use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::data::calendar;
use crate::data::window::{Centering, Segment, to_tensor};
use crate::data::{Scaler, ScalerKind, Series, WindowSet};
use crate::detect::{ValueRange, seasonal};
use crate::error::{Error, Result};
use crate::model::artifact::{
    ErrorStats, FileFingerprint, Manifest, Threshold, TrainedModel, WindowingSpec,
};
use crate::model::{Activation, ModelConfig, Network};
use crate::score;

/// Burn's CPU backends keep one process-wide random generator, and parameters
/// are initialised lazily from it. Runs that train concurrently would
/// interleave their draws; seeding it and drawing every initial weight under
/// this lock keeps each run's draws its own. Nothing after the initial
/// weights draws from it (our own generator draws the rest), so runs train
/// side by side once their weights exist.
static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// Runs every lazy parameter initialiser now.
struct Materialise;

impl burn::module::ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
    fn visit_int<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D, Int>>) {
        let _ = param.val();
    }
    fn visit_bool<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D, Bool>>) {
        let _ = param.val();
    }
}

/// The validation-error quantile that becomes the artifact's threshold. At
/// 0.99 a stream would cross it once every hundred points by construction,
/// which pages an operator many times a day; 0.999 sits near the largest
/// validation error.
pub const DEFAULT_THRESHOLD_QUANTILE: f64 = 0.999;

/// Unlabelled training data holds the anomalies the model should not learn
/// to reconstruct. The first fit finds the windows it reconstructs worst
/// (anomalies among them, as it has seen each only a few times); a second
/// fit without them keeps their errors high. 3% won on NAB over four seeds
/// (docs/detection.md has the figures).
pub const DEFAULT_REFIT_DROP: f64 = 0.03;

/// How the input is corrupted for a denoising autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Corruption {
    /// Add N(0, σ²) noise on the normalised scale.
    Gaussian { sigma: f64 },
    /// Zero each value with this probability.
    Mask { fraction: f64 },
}

/// Regularisers; each one is off when `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Regularizers {
    /// Weight of the L1 penalty on the code activations (sparse AE).
    pub sparse_l1: Option<f64>,
    /// Input corruption with a clean target (denoising AE).
    pub corruption: Option<Corruption>,
    /// Weight of the encoder-Jacobian Frobenius penalty (contractive AE).
    pub contractive: Option<f64>,
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
    /// Epochs without a validation improvement before stopping.
    pub patience: usize,
    /// Clip the gradient's global L2 norm to this value.
    pub grad_clip_norm: Option<f32>,
    pub regularizers: Regularizers,
    /// The quantile of the validation window errors used as the default
    /// threshold.
    pub threshold_quantile: f64,
    /// Fraction of the training windows, those the first fit reconstructs
    /// worst, left out of a second fit from scratch (0: fit once). Absent
    /// from artifacts written before it existed, which were fitted once.
    #[serde(default)]
    pub refit_drop: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            batch_size: 64,
            learning_rate: 1e-3,
            seed: 42,
            patience: 5,
            grad_clip_norm: Some(1.0),
            regularizers: Regularizers::default(),
            threshold_quantile: DEFAULT_THRESHOLD_QUANTILE,
            refit_drop: DEFAULT_REFIT_DROP,
        }
    }
}

impl TrainConfig {
    /// Checks the settings against the model they will train.
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::config("--batch-size", "must be positive"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(Error::config("--lr", "must be a positive number"));
        }
        if !(0.0..1.0).contains(&self.threshold_quantile) || self.threshold_quantile == 0.0 {
            return Err(Error::config("--threshold-quantile", "must lie in (0, 1)"));
        }
        if !(0.0..1.0).contains(&self.refit_drop) {
            return Err(Error::config("--refit-drop", "must lie in [0, 1)"));
        }
        let regs = &self.regularizers;
        let any =
            regs.sparse_l1.is_some() || regs.corruption.is_some() || regs.contractive.is_some();
        if matches!(model, ModelConfig::Pca(_)) && any {
            return Err(Error::config(
                "--kind",
                "pca is fitted in closed form; --sparse, --denoise, --mask and --contractive do not apply",
            ));
        }
        if let Some(weight) = regs.contractive {
            let supported = matches!(model, ModelConfig::Dense(c)
                if matches!(c.activation, Activation::Tanh | Activation::Sigmoid));
            if !supported {
                return Err(Error::config(
                    "--contractive",
                    "needs --kind dense with --activation tanh or sigmoid (the closed-form Jacobian of a one-layer encoder)",
                ));
            }
            non_negative("--contractive", weight)?;
        }
        if let Some(weight) = regs.sparse_l1 {
            non_negative("--sparse", weight)?;
        }
        match regs.corruption {
            Some(Corruption::Gaussian { sigma }) => non_negative("--denoise", sigma)?,
            Some(Corruption::Mask { fraction }) if !(0.0..1.0).contains(&fraction) => {
                return Err(Error::config("--mask", "must lie in [0, 1)"));
            }
            _ => {}
        }
        Ok(())
    }
}

fn non_negative(field: &str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::config(field, "must be a non-negative number"))
    }
}

/// Training history a model sees at most under [`Aggregate::Auto`]: longer
/// histories are averaged down to about this many points. Chosen by
/// measurement on NAB (docs/detection.md, "Why `--aggregate auto` won").
pub const AUTO_AGGREGATE_POINTS: usize = 3000;

/// How many consecutive rows are averaged into one point before windowing.
///
/// Averaging is what lets a fixed-length window and a trailing threshold
/// measured in points see the same span of behaviour on a week of
/// five-minute samples as on a day of hourly ones, and it takes the
/// sample-to-sample noise out of the reconstruction error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// `ceil(training rows / AUTO_AGGREGATE_POINTS)`, decided at training.
    Auto,
    Rows(usize),
}

impl Aggregate {
    /// Rows per point for a training history of `rows` rows.
    pub fn rows_per_point(self, rows: usize) -> usize {
        match self {
            Self::Auto => rows.div_ceil(AUTO_AGGREGATE_POINTS).max(1),
            Self::Rows(n) => n,
        }
    }
}

impl std::str::FromStr for Aggregate {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        if text == "auto" {
            return Ok(Self::Auto);
        }
        match text.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Self::Rows(n)),
            _ => Err(format!(
                "expected `auto` or a whole number of rows >= 1, got `{text}`"
            )),
        }
    }
}

impl std::fmt::Display for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Rows(n) => write!(f, "{n}"),
        }
    }
}

/// The default `--coarse`: see docs/detection.md for the measurement.
pub const DEFAULT_COARSE: usize = 4;

/// Windows the coarse model trains on at least: on less data the multiple
/// steps down towards 2 until it has them. A model trained on a few
/// hundred rows (NAB's probationary periods of 604 and 750 rows give the
/// coarse model 120 and 156 windows of 32 at 4x) learnt too little at 4x:
/// at 2x and 3x there, NAB's standard score rose by 0.9 over seven seeds,
/// and no set trained on 3000 points moved (docs/detection.md, "A coarse
/// model with enough windows").
pub const COARSE_MIN_WINDOWS: usize = 200;

/// The multiple the coarse model is trained at: `requested`, or less (not
/// under 2) while its windows over `series`, at `rows_per_point` rows per
/// main point and `stride` points between window starts, number fewer
/// than [`COARSE_MIN_WINDOWS`]. 1 stays 1.
pub fn coarse_multiple(
    requested: usize,
    series: &[Series],
    rows_per_point: usize,
    window: usize,
    stride: usize,
) -> usize {
    let windows = |multiple: usize| -> usize {
        let rows_per_coarse_point = (rows_per_point * multiple).max(1);
        series
            .iter()
            .map(|s| s.rows() / rows_per_coarse_point)
            .filter(|&points| points >= window)
            .map(|points| (points - window) / stride.max(1) + 1)
            .sum()
    };
    let mut multiple = requested;
    while multiple > 2 && windows(multiple) < COARSE_MIN_WINDOWS {
        multiple -= 1;
    }
    multiple
}

/// Which models see their windows centred: each window less its own
/// per-feature mean (or line, with `detrend`), so that the model (and its
/// error) judges the shape of a window, not its level. For series whose
/// level wanders (random walks, trends) a model of levels spends itself on
/// levels it has not seen; see docs/detection.md for what each choice measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Center {
    /// The data decide: the main model is fitted on levels and on
    /// detrended windows, and the detrended fit is kept when its median
    /// validation window error is below [`AUTO_DETREND_RATIO`] times the
    /// other's, which says that levels and slopes it has not seen are most
    /// of what the model of levels gets wrong. The coarse model keeps
    /// levels, and so, without the second fit, do the kinds that did not
    /// gain by it on the sets measured (docs/detection.md, *Detrended windows*): the
    /// LSTM (detrended, it lost NAB's level anomalies), conv (lost on
    /// average) and deep (drew).
    #[default]
    Auto,
    /// Every model sees levels.
    Off,
    /// The main model judges shape; a multi-scale artifact's coarse model
    /// keeps levels.
    Main,
    /// Every model judges shape (the range check still sees levels).
    All,
}

/// `--center auto` keeps the detrended main model when its median
/// validation window error is below this fraction of the model of levels'
/// (docs/detection.md, "Detrended windows": 0.5 to 0.7 simulated alike).
pub const AUTO_DETREND_RATIO: f64 = 0.7;

impl Center {
    /// Whether the main (`true`) or the coarse model is centred. `Auto`
    /// is resolved by [`train`] into `Off` or a detrended `Main`; left
    /// unresolved it means levels.
    pub fn applies_to(self, main: bool) -> bool {
        match self {
            Self::Off | Self::Auto => false,
            Self::Main => main,
            Self::All => true,
        }
    }
}

/// Which models also take the time of day ([`crate::data::calendar`]);
/// the default, `Auto`, is docs/detection.md's measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TimeOfDay {
    /// The coarse model of a multi-scale artifact, and the main model too
    /// when it is an LSTM, when its window spans less than a day and the
    /// training data span at least one: a window that spans a day shows
    /// where in the day it is, and data shorter than a day would teach
    /// part of the clock, as would timestamps before 1980 (row numbers,
    /// seconds from the data's start) however many days they count. A
    /// dense main model keeps its whole code for the window's shape (on
    /// 5-minute data the clock cost it small outliers); an LSTM's gained on
    /// every set measured (docs/detection.md, "The time of day").
    #[default]
    Auto,
    /// No model does.
    Off,
    /// A multi-scale artifact's coarse model, whose points span hours,
    /// does; the main model keeps its whole code for the window's shape.
    Coarse,
    /// Every model does.
    All,
}

impl TimeOfDay {
    /// Whether the main (`true`) or the coarse model takes the time of day
    /// under `Off`, `Coarse` or `All` (`Auto` decides per model from the
    /// data: [`TimeOfDay::takes_clock`]).
    pub fn applies_to(self, main: bool) -> bool {
        match self {
            Self::Off | Self::Auto => false,
            Self::Coarse => !main,
            Self::All => true,
        }
    }

    /// Whether the main (`true`) or the coarse model of `model`'s kind
    /// takes the time of day, for training data whose longest series spans
    /// `data_span` seconds and a model whose window spans `window_span`
    /// seconds.
    pub fn takes_clock(
        self,
        main: bool,
        model: &ModelConfig,
        data_span: f64,
        window_span: f64,
    ) -> bool {
        match self {
            Self::Auto => {
                (!main || matches!(model, ModelConfig::Lstm(_)))
                    && data_span >= calendar::SECONDS_PER_DAY
                    && window_span < calendar::SECONDS_PER_DAY
            }
            other => other.applies_to(main),
        }
    }
}

/// How series become windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub window: usize,
    pub stride: usize,
    /// The last fraction of each file's rows held out for validation.
    pub val_fraction: f64,
    pub scaler: ScalerKind,
    pub aggregate: Aggregate,
    /// Multi-scale: also train a coarse model whose points each average
    /// this many of the main model's points (1: off). Its flags join the
    /// main model's (see `detect`).
    pub coarse: usize,
    /// Which models see centred windows.
    #[serde(default)]
    pub center: Center,
    /// A centred window loses its least-squares line, not only its mean.
    #[serde(default)]
    pub detrend: bool,
    /// Which models also take the time of day.
    #[serde(default)]
    pub time_of_day: TimeOfDay,
}

impl DataConfig {
    pub fn validate(&self) -> Result<()> {
        if self.window < 2 {
            return Err(Error::config("--window", "must be at least 2"));
        }
        if self.stride == 0 {
            return Err(Error::config("--stride", "must be positive"));
        }
        if self.aggregate == Aggregate::Rows(0) {
            return Err(Error::config("--aggregate", "must be at least 1 row"));
        }
        if self.coarse == 0 {
            return Err(Error::config(
                "--coarse",
                "must be at least 1 (1 turns the coarse model off)",
            ));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(Error::config("--val-fraction", "must lie in [0, 1)"));
        }
        if self.detrend && !matches!(self.center, Center::Main | Center::All) {
            return Err(Error::config(
                "--detrend",
                "applies to centred windows: add --center main or all (--center auto chooses for itself)",
            ));
        }
        Ok(())
    }

    /// The settings the main (`true`) or the coarse model is fitted under,
    /// in order: this one, or under `--center auto` levels and then, for a
    /// dense, VAE or PCA main model, detrended windows, for [`train`] to
    /// choose between (see [`Center::Auto`]).
    pub fn candidates(&self, model: &ModelConfig, main: bool) -> Vec<DataConfig> {
        let with = |center, detrend| DataConfig {
            center,
            detrend,
            ..self.clone()
        };
        match (self.center, model) {
            // The coarse model keeps levels: detrended by the same rule it
            // lost NAB's level anomalies (docs/detection.md, *Detrended windows*).
            (Center::Auto, ModelConfig::Dense(_) | ModelConfig::Vae(_) | ModelConfig::Pca(_))
                if main =>
            {
                vec![with(Center::Off, false), with(Center::Main, true)]
            }
            (Center::Auto, _) => vec![with(Center::Off, false)],
            _ => vec![self.clone()],
        }
    }

    /// What comes out of the main (`true`) or the coarse model's windows.
    pub fn centering(&self, main: bool) -> Centering {
        Centering::new(self.center.applies_to(main), self.detrend)
    }
}

/// Training and validation windows, normalised with a scaler fitted on the
/// training rows only.
#[derive(Debug, Clone)]
pub struct PreparedData {
    pub feature_names: Vec<String>,
    /// The leading features read from data, which the error counts (the
    /// derived ones follow).
    pub scored_features: usize,
    pub scaler: Scaler,
    pub train: WindowSet,
    pub validation: WindowSet,
    pub fingerprint: Vec<FileFingerprint>,
}

/// Splits every series chronologically, fits the scaler on the training
/// parts and cuts the windows.
pub fn prepare(series: &[Series], config: &DataConfig) -> Result<PreparedData> {
    prepare_scaled(series, config, None, 0)
}

/// [`prepare`] with a scaler fitted elsewhere (`None`: fit one here), for
/// series whose last `derived` features are derived inputs: those are not
/// fitted but scaled by a fixed transform ([`calendar::with_clock_scaling`]),
/// and a scaler that lacks them is extended so.
fn prepare_scaled(
    series: &[Series],
    config: &DataConfig,
    scaler: Option<&Scaler>,
    derived: usize,
) -> Result<PreparedData> {
    config.validate()?;
    let is_main = scaler.is_none();
    let Some(first) = series.first() else {
        return Err(Error::config("--data", "no input files"));
    };
    let feature_names = first.feature_names.clone();
    for other in &series[1..] {
        if other.feature_names != feature_names {
            return Err(Error::Shape(format!(
                "{} has columns [{}] but {} has [{}]; every --data file needs the same columns",
                other.source.display(),
                other.feature_names.join(", "),
                first.source.display(),
                feature_names.join(", "),
            )));
        }
    }
    let features = feature_names.len();
    let cut = |s: &Series| {
        let held_out = (s.rows() as f64 * config.val_fraction).round() as usize;
        (s.rows() - held_out.min(s.rows())) * features
    };
    let scored = features.saturating_sub(derived);
    let scaler = match scaler {
        Some(scaler) => scaler.clone(),
        None => {
            let columns: Vec<Vec<f64>> = series
                .iter()
                .map(|s| calendar::scored_columns(&s.values[..cut(s)], features, scored))
                .collect();
            Scaler::fit(config.scaler, scored, columns.iter().map(Vec::as_slice))
        }
    };
    let scaler = calendar::with_clock_scaling(&scaler, features);
    let mut train = Vec::new();
    let mut validation = Vec::new();
    for s in series {
        let (head, tail) = s.values.split_at(cut(s));
        for (part, into) in [(head, &mut train), (tail, &mut validation)] {
            let mut values = Vec::new();
            scaler.transform_into(part, &mut values);
            into.push(Segment { values });
        }
    }
    let centering = config.centering(is_main);
    let train = WindowSet::new(train, config.window, config.stride, features).centered(centering);
    let validation =
        WindowSet::new(validation, config.window, config.stride, features).centered(centering);
    if train.is_empty() {
        let rows: usize = series.iter().map(Series::rows).sum();
        return Err(Error::TooFewRows {
            window: config.window,
            rows,
            detail: format!("validation takes {:.0}%", config.val_fraction * 100.0),
        });
    }
    let fingerprint = series
        .iter()
        .map(|s| FileFingerprint {
            path: s.source.display().to_string(),
            rows: s.rows(),
            sha256: s.sha256.clone(),
        })
        .collect();
    Ok(PreparedData {
        scored_features: scored,
        feature_names,
        scaler,
        train,
        validation,
        fingerprint,
    })
}

/// One epoch's losses, as stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training objective (MSE plus regulariser terms) over the epoch;
    /// for epoch 0, the untrained network's reconstruction MSE.
    pub train_loss: f64,
    /// Mean reconstruction MSE over the validation windows (training windows
    /// when there is no validation data).
    pub val_loss: f64,
}

/// The outcome of [`fit`].
#[derive(Debug)]
pub struct Fitted {
    pub network: Network,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
}

/// Trains `model` on `data`. `on_epoch` sees each epoch's losses as they
/// come, for progress reporting.
pub fn fit(
    model: &ModelConfig,
    config: &TrainConfig,
    data: &PreparedData,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Fitted> {
    model.validate()?;
    config.validate(model)?;
    let (window, features) = model.input_shape();
    if (window, features) != (data.train.window(), data.train.features()) {
        return Err(Error::Shape(format!(
            "model expects windows of {window}x{features}, data has {}x{}",
            data.train.window(),
            data.train.features()
        )));
    }
    let monitor = if data.validation.is_empty() {
        &data.train
    } else {
        &data.validation
    };
    let all: Vec<usize> = (0..data.train.len()).collect();
    let first = fit_windows(model, config, data, all, monitor, device, on_epoch)?;
    if config.refit_drop <= 0.0 {
        return Ok(first);
    }
    let errors = window_totals(
        &first.network,
        &data.train,
        data.scored_features,
        device,
        1024,
    )?;
    let cut = quantile(&errors, 1.0 - config.refit_drop);
    let kept: Vec<usize> = (0..errors.len()).filter(|&i| errors[i] <= cut).collect();
    fit_windows(model, config, data, kept, monitor, device, on_epoch)
}

/// One fit from a fresh start on the training windows `ids`.
fn fit_windows(
    model: &ModelConfig,
    config: &TrainConfig,
    data: &PreparedData,
    ids: Vec<usize>,
    monitor: &WindowSet,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Fitted> {
    if let ModelConfig::Pca(pca) = model {
        let network = Network::Pca(pca.fit(&data.train, &ids, device));
        let stats = EpochStats {
            epoch: 1,
            train_loss: mean_error(
                &network,
                &data.train,
                data.scored_features,
                device,
                config.batch_size,
            )?,
            val_loss: mean_error(
                &network,
                monitor,
                data.scored_features,
                device,
                config.batch_size,
            )?,
        };
        on_epoch(&stats);
        return Ok(Fitted {
            network,
            history: vec![stats],
            best_epoch: 1,
        });
    }
    descend(model, config, data, ids, monitor, device, on_epoch)
}

/// Gradient descent from a fresh initialisation (the seed's) over the
/// training windows in `order`, keeping the epoch with the best monitored
/// loss.
fn descend(
    model: &ModelConfig,
    config: &TrainConfig,
    data: &PreparedData,
    mut order: Vec<usize>,
    monitor: &WindowSet,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Fitted> {
    let mut trainer = Trainer::new(model, config, device)?;
    // Epoch 0 is the untrained network, so the history shows what training
    // bought, and early stopping can never keep weights worse than these.
    let untrained = trainer.network();
    let epoch_zero = EpochStats {
        epoch: 0,
        train_loss: mean_error(&untrained, &data.train, data.scored_features, device, 1024)?,
        val_loss: mean_error(&untrained, monitor, data.scored_features, device, 1024)?,
    };
    on_epoch(&epoch_zero);
    let mut best = (epoch_zero.val_loss, 0, untrained);
    let mut history = vec![epoch_zero];
    let mut clean = Vec::new();
    for epoch in 1..=config.epochs.max(1) {
        order.shuffle(&mut trainer.rng);
        let mut objective_sum = 0.0;
        for batch in order.chunks(config.batch_size) {
            data.train.gather(batch, &mut clean);
            let objective = trainer.step(&clean, batch.len()).map_err(|e| match e {
                Error::Backend(reason) => Error::Backend(format!("epoch {epoch}: {reason}")),
                other => other,
            })?;
            objective_sum += objective * batch.len() as f64;
        }
        let inference = trainer.network();
        let stats = EpochStats {
            epoch,
            train_loss: objective_sum / order.len() as f64,
            val_loss: mean_error(&inference, monitor, data.scored_features, device, 1024)?,
        };
        on_epoch(&stats);
        if stats.val_loss < best.0 {
            best = (stats.val_loss, epoch, inference);
        }
        history.push(stats);
        if epoch - best.1 >= config.patience.max(1) {
            break;
        }
    }
    let (_, best_epoch, network) = best;
    Ok(Fitted {
        network,
        history,
        best_epoch,
    })
}

/// One model under optimisation: the unit a training loop (or a benchmark)
/// drives one batch at a time.
pub struct Trainer {
    network: Network,
    optimizer: ModuleOptimizer,
    config: TrainConfig,
    /// The device without autodiff, where gradients live.
    device: Device,
    autodiff: Device,
    /// Draws shuffles, input corruption and the VAE's noise.
    pub rng: StdRng,
    latent: Option<usize>,
    window: usize,
    features: usize,
}

impl Trainer {
    /// Seeds the backend and builds the network and the optimiser.
    pub fn new(model: &ModelConfig, config: &TrainConfig, device: &Device) -> Result<Self> {
        model.validate()?;
        config.validate(model)?;
        if matches!(model, ModelConfig::Pca(_)) {
            return Err(Error::config(
                "--kind",
                "pca is fitted in closed form, not by steps",
            ));
        }
        let autodiff = device.clone().autodiff();
        let network = {
            let _draws = BACKEND_RNG
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            device.seed(config.seed);
            let network = model.init(&autodiff);
            network.visit(&mut Materialise);
            network
        };
        let optimizer = AdamConfig::new()
            .with_grad_clipping(config.grad_clip_norm.map(GradientClippingConfig::Norm))
            .init();
        let (window, features) = model.input_shape();
        Ok(Self {
            network,
            optimizer,
            config: config.clone(),
            device: device.clone(),
            autodiff,
            rng: StdRng::seed_from_u64(config.seed),
            latent: match model {
                ModelConfig::Vae(vae) => Some(vae.latent),
                _ => None,
            },
            window,
            features,
        })
    }

    /// One Adam step on `batch` clean windows (`[batch, T, F]` row-major);
    /// returns the objective before the step.
    pub fn step(&mut self, clean: &[f32], batch: usize) -> Result<f64> {
        let input = match self.config.regularizers.corruption {
            Some(corruption) => corrupt(clean, corruption, &mut self.rng),
            None => clean.to_vec(),
        };
        // The LSTM and conv train through their own kernels where there is
        // one: burn's op-by-op LSTM with autodiff is 6-12x slower than
        // PyTorch on flex and 26-33x on a GPU; burn-flex's conv backward
        // kept a conv step at 0.7-1x PyTorch's.
        if let Some(step) = self.kernel_step(&input, clean, batch) {
            return step;
        }
        let noise = self.latent.map(|k| {
            (0..batch * k)
                .map(|_| self.rng.sample::<f32, _>(StandardNormal))
                .collect::<Vec<f32>>()
        });
        let batch_data = Batch {
            input: &input,
            clean,
            noise: noise.as_deref(),
            rows: batch,
        };
        let loss = self.objective(&self.network, &batch_data);
        let value = f64::from(loss.clone().into_scalar::<f32>());
        let gradients = GradientsParams::from_grads(loss.backward(), &self.network);
        self.apply(value, gradients)
    }

    /// The training objective of `network` on one batch: mean squared error
    /// plus the KL term and the regularisers, each a mean over the batch.
    fn objective(&self, network: &Network, batch: &Batch<'_>) -> Tensor<1> {
        let shape = [batch.rows, self.window, self.features];
        let noise = batch.noise.zip(self.latent).map(|(draws, k)| {
            Tensor::<2>::from_data(
                TensorData::new(draws.to_vec(), [batch.rows, k]),
                &self.autodiff,
            )
        });
        let target = to_tensor(batch.clean.to_vec(), shape, &self.autodiff);
        let pass = network.forward_train(
            to_tensor(batch.input.to_vec(), shape, &self.autodiff),
            noise,
        );
        let regs = &self.config.regularizers;
        let mut loss = (pass.output - target).powf_scalar(2.0).mean();
        if let Some(kl) = pass.kl {
            loss = loss + kl;
        }
        if let Some(weight) = regs.sparse_l1 {
            loss = loss + pass.code.clone().abs().mean().mul_scalar(weight);
        }
        if let (Some(weight), Network::Dense(dense)) = (regs.contractive, network)
            && let Some(penalty) = dense.contractive_penalty(&pass.code)
        {
            loss = loss + penalty.mul_scalar(weight);
        }
        loss
    }

    /// One Adam step with gradients from a hand-written kernel, where the
    /// model and device have one: the LSTM's on flex
    /// ([`crate::model::lstm_cpu`]) and on LibTorch (its fused LSTM,
    /// [`crate::model::lstm_tch`]), the conv autoencoder's on flex
    /// ([`crate::model::conv_cpu`]). The same objective, regularisers and
    /// optimiser (clipping included) as the burn path, which the kernels'
    /// tests hold them to. `None`: no kernel here.
    fn kernel_step(&mut self, input: &[f32], clean: &[f32], batch: usize) -> Option<Result<f64>> {
        use crate::model::conv_cpu::ConvCpu;
        use crate::model::lstm_cpu::{LstmCpu, Objective};
        let objective = Objective {
            input,
            target: clean,
            batch,
            window: self.window,
            sparse_l1: self.config.regularizers.sparse_l1,
        };
        let flex = self.device == Device::flex();
        let computed = match &self.network {
            Network::Lstm(model) if flex => LstmCpu::from_model(model)
                .map(|kernel| kernel.loss_and_gradients(&objective))
                .map(|(loss, g)| (loss, lstm_gradients(model, g, &self.device))),
            #[cfg(feature = "tch")]
            Network::Lstm(model) => {
                let torch = crate::model::lstm_tch::torch_device(&self.device)?;
                crate::model::lstm_tch::loss_and_gradients(model, &objective, torch)
                    .map(|(loss, g)| (loss, lstm_gradients(model, g, &self.device)))
            }
            Network::Conv(model) if flex => ConvCpu::from_model(model, self.window)
                .map(|kernel| kernel.loss_and_gradients(&objective))
                .map(|(loss, g)| (loss, conv_gradients(model, g, &self.device))),
            _ => return None,
        };
        Some(computed.and_then(|(loss, gradients)| self.apply(loss, gradients)))
    }

    /// Checks the objective, then takes one Adam step with `gradients`.
    fn apply(&mut self, loss: f64, gradients: GradientsParams) -> Result<f64> {
        if !loss.is_finite() {
            return Err(Error::Backend(format!(
                "training diverged (loss {loss}); lower --lr or keep gradient clipping on"
            )));
        }
        self.network =
            self.optimizer
                .step(self.config.learning_rate, self.network.clone(), gradients);
        Ok(loss)
    }

    /// The current weights, without autodiff.
    pub fn network(&self) -> Network {
        self.network.valid()
    }
}

/// The LSTM kernels' gradients as burn's, by parameter id.
fn lstm_gradients(
    model: &crate::model::LstmAe,
    g: crate::model::lstm_cpu::LstmGradients,
    device: &Device,
) -> GradientsParams {
    let [hidden, four_h] = model.encoder.recurrent.weight.dims();
    let features = model.head.weight.dims()[1];
    let matrix = |values: Vec<f32>, shape: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(values, shape), device)
    };
    let vector = |values: Vec<f32>| {
        let len = values.len();
        Tensor::<1>::from_data(TensorData::new(values, [len]), device)
    };
    let mut gradients = GradientsParams::new();
    gradients.register(
        model.encoder.input.weight.id,
        matrix(g.encoder_input, [features, four_h]),
    );
    gradients.register(
        model.encoder.recurrent.weight.id,
        matrix(g.encoder_recurrent, [hidden, four_h]),
    );
    gradients.register(
        model.decoder.input.weight.id,
        matrix(g.decoder_input, [hidden, four_h]),
    );
    gradients.register(
        model.decoder.recurrent.weight.id,
        matrix(g.decoder_recurrent, [hidden, four_h]),
    );
    gradients.register(model.head.weight.id, matrix(g.head, [hidden, features]));
    for (bias, values) in [
        (&model.encoder.input.bias, g.encoder_bias),
        (&model.decoder.input.bias, g.decoder_bias),
        (&model.head.bias, g.head_bias),
    ] {
        if let Some(bias) = bias {
            gradients.register(bias.id, vector(values));
        }
    }
    gradients
}

/// The conv kernel's gradients as burn's, by parameter id.
fn conv_gradients(
    model: &crate::model::ConvAe,
    g: crate::model::conv_cpu::ConvGradients,
    device: &Device,
) -> GradientsParams {
    let mut gradients = GradientsParams::new();
    let [w1, w2, w3, w4] = g.weights;
    let [b1, b2, b3, b4] = g.biases;
    let layers = [
        (&model.down1.weight, &model.down1.bias, w1, b1),
        (&model.down2.weight, &model.down2.bias, w2, b2),
        (&model.up1.weight, &model.up1.bias, w3, b3),
        (&model.up2.weight, &model.up2.bias, w4, b4),
    ];
    for (weight, bias, weight_gradient, bias_gradient) in layers {
        let shape = weight.dims();
        gradients.register(
            weight.id,
            Tensor::<3>::from_data(TensorData::new(weight_gradient, shape), device),
        );
        if let Some(bias) = bias {
            let len = bias_gradient.len();
            gradients.register(
                bias.id,
                Tensor::<1>::from_data(TensorData::new(bias_gradient, [len]), device),
            );
        }
    }
    gradients
}

/// One training batch as flat `[rows, T, F]` buffers (the VAE's noise
/// `[rows, K]`).
struct Batch<'a> {
    input: &'a [f32],
    clean: &'a [f32],
    noise: Option<&'a [f32]>,
    rows: usize,
}

fn corrupt(clean: &[f32], corruption: Corruption, rng: &mut StdRng) -> Vec<f32> {
    match corruption {
        Corruption::Gaussian { sigma } => clean
            .iter()
            .map(|&x| x + sigma as f32 * rng.sample::<f32, _>(StandardNormal))
            .collect(),
        Corruption::Mask { fraction } => clean
            .iter()
            .map(|&x| {
                if rng.random::<f64>() < fraction {
                    0.0
                } else {
                    x
                }
            })
            .collect(),
    }
}

fn mean_error(
    network: &Network,
    windows: &WindowSet,
    scored: usize,
    device: &Device,
    batch_size: usize,
) -> Result<f64> {
    let errors = window_totals(network, windows, scored, device, batch_size)?;
    Ok(errors.iter().sum::<f64>() / errors.len().max(1) as f64)
}

/// Each window's error ([`score::window_errors`]' totals over the first
/// `scored` features).
fn window_totals(
    network: &Network,
    windows: &WindowSet,
    scored: usize,
    device: &Device,
    batch_size: usize,
) -> Result<Vec<f64>> {
    Ok(
        score::window_errors(network, windows, scored, device, batch_size)?
            .into_iter()
            .map(|e| e.total)
            .collect(),
    )
}

/// Everything `train` needs.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
}

/// Prepares the data, fits the model and calibrates the threshold on the
/// validation errors: the whole of `anomalyd train` short of writing files.
/// With `data.coarse > 1` a coarse model follows, on the same rows and the
/// main model's scaler (so that the daemon normalises a sample once); when
/// the rows are too few for it, the model stays single-scale, with a
/// warning.
pub fn train(
    series: &[Series],
    request: &TrainRequest,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<TrainedModel> {
    let span_of = |s: &Series| match (s.times.first(), s.times.last()) {
        (Some(first), Some(last)) => last - first,
        _ => 0.0,
    };
    let longest = series
        .iter()
        .max_by(|a, b| span_of(a).total_cmp(&span_of(b)));
    // Row numbers and relative seconds span no day of the clock, however long.
    let span = longest
        .filter(|s| s.times.first() >= Some(&calendar::WALL_CLOCK_FROM))
        .map_or(0.0, span_of);
    let spacing = longest.map_or(0.0, |s| calendar::typical_spacing(&s.times));
    let total_rows = series.iter().map(Series::rows).sum();
    let rows_per_point = request.data.aggregate.rows_per_point(total_rows);
    let multiple = coarse_multiple(
        request.data.coarse,
        series,
        rows_per_point,
        request.data.window,
        request.data.stride,
    );
    if multiple != request.data.coarse {
        tracing::info!(
            requested = request.data.coarse,
            multiple,
            min_windows = COARSE_MIN_WINDOWS,
            "the coarse model takes a smaller multiple: the training data gives too few windows at the requested one"
        );
    }
    let choice = request.data.time_of_day;
    let takes_clock = |main: bool| {
        let rows_per_window =
            rows_per_point * if main { 1 } else { multiple } * request.data.window;
        choice.takes_clock(main, &request.model, span, spacing * rows_per_window as f64)
    };
    let (main_clock, coarse_clock) = (takes_clock(true), multiple > 1 && takes_clock(false));
    if choice == TimeOfDay::Auto {
        tracing::debug!(
            span_seconds = span,
            spacing_seconds = spacing,
            main_clock,
            coarse_clock,
            "--time-of-day auto"
        );
    } else if (main_clock || coarse_clock) && span < calendar::SECONDS_PER_DAY {
        tracing::warn!(
            span_seconds = span,
            "the training data spans less than a day (or its timestamps are row numbers): the model that takes the time of day sees only part of the clock"
        );
    }
    // Derived per row, before rows are averaged into points, as the
    // daemon derives them per sample.
    let timed: Vec<Series> = if main_clock || coarse_clock {
        series
            .iter()
            .map(calendar::with_time_of_day)
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let input = |clock: bool| if clock { &timed[..] } else { series };
    if multiple > 1 {
        tracing::debug!(rows_per_point, "training the main model");
    }
    let mut main = train_candidates(
        input(main_clock),
        request,
        rows_per_point,
        None,
        main_clock,
        device,
        on_epoch,
    )?;
    if multiple > 1 {
        tracing::debug!(
            rows_per_point = rows_per_point * multiple,
            "training the coarse model (multi-scale)"
        );
        let scaler = main.manifest.scaler.clone();
        match train_candidates(
            input(coarse_clock),
            request,
            rows_per_point * multiple,
            Some(&scaler),
            coarse_clock,
            device,
            on_epoch,
        ) {
            Ok(coarse) => main.attach_coarse(coarse),
            Err(error @ Error::TooFewRows { .. }) => tracing::warn!(
                %error,
                "too few rows for the coarse model ({multiple}x coarser points); training a single-scale model"
            ),
            Err(other) => return Err(other),
        }
    }
    Ok(main)
}

/// Trains the main model (no `scaler`: it fits one) or the coarse one
/// under each of [`DataConfig::candidates`] and keeps, of levels and
/// detrended windows, the detrended fit when its median validation window
/// error is under [`AUTO_DETREND_RATIO`] times the other's.
fn train_candidates(
    series: &[Series],
    request: &TrainRequest,
    rows_per_point: usize,
    scaler: Option<&Scaler>,
    time_of_day: bool,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<TrainedModel> {
    let main = scaler.is_none();
    let mut fits = Vec::new();
    for data in request.data.candidates(&request.model, main) {
        let candidate = TrainRequest {
            data,
            ..request.clone()
        };
        fits.push(train_scale(
            series,
            &candidate,
            rows_per_point,
            scaler,
            time_of_day,
            device,
            on_epoch,
        )?);
    }
    // One fit, or under `auto` levels then detrended: `candidates`' order.
    let mut fits = fits.into_iter();
    let (Some(only_or_levels), detrended) = (fits.next(), fits.next()) else {
        return Err(Error::config("--center", "no model to fit"));
    };
    let Some(detrended) = detrended else {
        return Ok(only_or_levels);
    };
    let levels = only_or_levels;
    let median = |fit: &TrainedModel| fit.manifest.validation_errors.median();
    let (levels_error, detrended_error) = (median(&levels), median(&detrended));
    let keep_detrended = detrended_error < AUTO_DETREND_RATIO * levels_error;
    tracing::info!(
        model = if main { "main" } else { "coarse" },
        levels_error,
        detrended_error,
        detrended = keep_detrended,
        "--center auto: median validation window error on levels and detrended"
    );
    Ok(if keep_detrended { detrended } else { levels })
}

/// Trains one model on points of `rows_per_point` rows; with
/// `time_of_day`, `series` carry the derived inputs after their columns.
fn train_scale(
    series: &[Series],
    request: &TrainRequest,
    rows_per_point: usize,
    scaler: Option<&Scaler>,
    time_of_day: bool,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<TrainedModel> {
    let points: Vec<Series> = series.iter().map(|s| s.aggregate(rows_per_point)).collect();
    let derived = if time_of_day {
        calendar::TIME_OF_DAY_FEATURES.len()
    } else {
        0
    };
    let mut data =
        prepare_scaled(&points, &request.data, scaler, derived).map_err(|e| match e {
            Error::TooFewRows {
                window,
                rows,
                detail,
            } if rows_per_point > 1 => Error::TooFewRows {
                window,
                rows,
                detail: format!("{detail}; a point averages {rows_per_point} rows, --aggregate"),
            },
            other => other,
        })?;
    // The fingerprint identifies the files as read, not their averages.
    for (print, file) in data.fingerprint.iter_mut().zip(series) {
        print.rows = file.rows();
    }
    let model = request.model.with_features(data.feature_names.len());
    let fitted = fit(&model, &request.train, &data, device, on_epoch)?;
    let (calibration_set, calibrated_on) = if data.validation.is_empty() {
        (&data.train, "train")
    } else {
        (&data.validation, "validation")
    };
    let errors = window_totals(
        &fitted.network,
        calibration_set,
        data.scored_features,
        device,
        1024,
    )?;
    let error_stats = ErrorStats::from_errors(&errors, calibrated_on);
    let threshold = Threshold {
        quantile: request.train.threshold_quantile,
        value: quantile(&errors, request.train.threshold_quantile),
        k_factor: None,
        calibrated_for: None,
    };
    let manifest = Manifest::new(
        model,
        request.train.clone(),
        WindowingSpec {
            window: request.data.window,
            stride: request.data.stride,
            val_fraction: request.data.val_fraction,
            feature_names: data.feature_names.clone(),
            aggregate: rows_per_point,
            centered: data.train.centering().is_on(),
            detrended: data.train.centering() == Centering::Trend,
            time_of_day,
        },
        data.scaler.clone(),
        fitted.history,
        fitted.best_epoch,
        error_stats,
        threshold,
        data.fingerprint.clone(),
        training_range(
            &points,
            data.feature_names.len(),
            data.scored_features,
            request.data.window,
        ),
    );
    Ok(TrainedModel::new(manifest, fitted.network))
}

/// The per-feature range of the training points and the spread of their
/// quietest and roughest windows of `window` points, and where a day or a
/// week is a whole number of points its windows' largest difference from
/// a cycle earlier: what the range, stillness, roughness and seasonal checks start
/// from. Only the first `scored` of each point's `width` features,
/// those read from data.
fn training_range(
    points: &[Series],
    width: usize,
    scored: usize,
    window: usize,
) -> Option<ValueRange> {
    let columns: Vec<Vec<f64>> = points
        .iter()
        .map(|p| calendar::scored_columns(&p.values, width, scored))
        .collect();
    let parts = || columns.iter().map(Vec::as_slice);
    // The day in points at the longest part's typical spacing (points
    // average rows alike, so one part's spacing is every part's).
    let spacing = points
        .iter()
        .max_by_key(|p| p.rows())
        .map_or(0.0, |p| calendar::typical_spacing(&p.times));
    let cycle = |cycle: seasonal::Cycle| {
        seasonal::cycle_period(spacing, cycle)
            .filter(|&period| seasonal::cycle_explains(parts(), scored, period))
            .and_then(|period| {
                seasonal::largest_cycle_differences(parts(), scored, window, period)
                    .map(|largest| crate::detect::CycleBound { period, largest })
            })
    };
    ValueRange::of_rows(parts(), scored).map(|range| ValueRange {
        quietest: crate::detect::stillness::quietest_windows(parts(), scored, window),
        roughest: crate::detect::roughness::roughest_windows(parts(), scored, window),
        resolution: Some(crate::detect::roughness::finest_steps(parts(), scored)),
        daily: cycle(seasonal::Cycle::Day),
        weekly: cycle(seasonal::Cycle::Week),
        ..range
    })
}

/// The `q` quantile with linear interpolation between order statistics (the
/// definition numpy uses by default).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let share = position - lower as f64;
    sorted[lower] + share * (sorted[upper] - sorted[lower])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_numpy() {
        let values = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert_eq!(quantile(&values, 1.0), 4.0);
        assert_eq!(quantile(&values, 0.5), 2.5);
        assert!((quantile(&values, 0.9) - 3.7).abs() < 1e-12);
    }

    #[test]
    fn auto_aggregation_caps_the_training_history_in_points() {
        let cap = AUTO_AGGREGATE_POINTS;
        assert_eq!(Aggregate::Auto.rows_per_point(0), 1);
        assert_eq!(Aggregate::Auto.rows_per_point(cap), 1);
        assert_eq!(Aggregate::Auto.rows_per_point(cap + 1), 2);
        assert_eq!(Aggregate::Auto.rows_per_point(5 * cap + 1), 6);
        assert_eq!(Aggregate::Rows(4).rows_per_point(10 * cap), 4);
        assert_eq!("auto".parse(), Ok(Aggregate::Auto));
        assert_eq!("3".parse(), Ok(Aggregate::Rows(3)));
        for bad in ["0", "-1", "2.5", "max"] {
            let parsed: std::result::Result<Aggregate, String> = bad.parse();
            assert!(parsed.is_err(), "{bad}");
        }
        assert_eq!(Aggregate::Auto.to_string(), "auto");
    }

    fn rows(n: usize) -> Series {
        Series {
            source: "rows.csv".into(),
            feature_names: vec!["value".into()],
            timestamps: (0..n).map(|i| i.to_string()).collect(),
            times: (0..n).map(|i| i as f64).collect(),
            values: vec![0.0; n],
            sha256: String::new(),
            dropped_rows: 0,
            filled_cells: 0,
        }
    }

    /// `n` rows `spacing` seconds apart from 2024-01-01 (a Monday), busy
    /// in the working hours of the first five days of every seven.
    fn working_rows(n: usize, spacing: f64) -> Series {
        let start = 1_704_067_200.0;
        let times: Vec<f64> = (0..n).map(|i| start + i as f64 * spacing).collect();
        let values = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (day, hour) = (
                    ((t - start) / 86_400.0) as usize,
                    ((t - start) % 86_400.0) / 3600.0,
                );
                let busy = day % 7 < 5 && (9.0..17.0).contains(&hour);
                f64::from(u8::from(busy)) * 3.0 + (i % 5) as f64 * 0.01
            })
            .collect();
        Series {
            timestamps: times.iter().map(|t| t.to_string()).collect(),
            times,
            values,
            ..rows(n)
        }
    }

    /// The seasonal check's bounds: a day wherever the interval divides one
    /// and the data hold two of them, a week likewise; the week's
    /// largest difference is the noise's, the day's that of a Saturday
    /// from its Friday.
    #[test]
    fn the_training_range_holds_a_week_only_where_the_data_hold_one() {
        let window = 16;
        let hourly = |n| training_range(&[working_rows(n, 3600.0)], 1, 1, window);
        let three_weeks = hourly(3 * 168).unwrap_or_else(|| panic!("finite values"));
        let daily = three_weeks
            .daily
            .unwrap_or_else(|| panic!("a day of hours"));
        let weekly = three_weeks
            .weekly
            .unwrap_or_else(|| panic!("a week of hours"));
        assert_eq!((daily.period, weekly.period), (24, 168));
        assert!(weekly.largest[0] < 0.05, "the noise: {weekly:?}");
        assert!(
            daily.largest[0] > 1.0,
            "a weekday from a weekend: {daily:?}"
        );
        // Two weeks, so that every hour of the week has been compared with
        // the week before.
        let short = hourly(2 * 168 - 1).unwrap_or_else(|| panic!("finite values"));
        assert!(short.daily.is_some() && short.weekly.is_none(), "{short:?}");
        assert!(hourly(2 * 168).is_some_and(|r| r.weekly.is_some()));
        // A week of five-minute points is more than a guard keeps.
        let fine = training_range(&[working_rows(3 * 2016, 300.0)], 1, 1, window)
            .unwrap_or_else(|| panic!("finite values"));
        assert!(fine.daily.is_some() && fine.weekly.is_none(), "{fine:?}");
    }

    /// Hourly noise for three weeks holds days and weeks enough, but the
    /// values do not follow them: the range is kept, no cycle's bound.
    #[test]
    fn the_training_range_bounds_no_cycle_the_data_do_not_follow() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let noise = Series {
            values: (0..3 * 168).map(|_| rng.random::<f64>()).collect(),
            ..working_rows(3 * 168, 3600.0)
        };
        let range = training_range(&[noise], 1, 1, 16).unwrap_or_else(|| panic!("finite values"));
        assert!(range.daily.is_none() && range.weekly.is_none(), "{range:?}");
        assert!(
            range.roughest.is_some(),
            "the other checks keep their bounds"
        );
    }

    #[test]
    fn the_coarse_multiple_steps_down_until_the_coarse_model_has_its_windows() {
        let multiple = |series: &[Series], rows_per_point, window, stride| {
            coarse_multiple(4, series, rows_per_point, window, stride)
        };
        // NAB's probationary period: 187 points at 4x give 156 windows of
        // 32, 250 at 3x give 219.
        assert_eq!(multiple(&[rows(750)], 1, 32, 1), 3);
        // 800 rows at 4x: 200 points, 169 windows; at 3x, 235.
        assert_eq!(multiple(&[rows(800)], 1, 32, 1), 3);
        assert_eq!(
            multiple(&[rows(924)], 1, 32, 1),
            4,
            "231 points, 200 windows"
        );
        assert_eq!(multiple(&[rows(923)], 1, 32, 1), 3);
        // Aggregated rows count as points, and several files add up.
        assert_eq!(multiple(&[rows(1848)], 2, 32, 1), 4);
        assert_eq!(multiple(&[rows(924), rows(924)], 2, 32, 1), 3);
        assert_eq!(multiple(&[rows(700)], 1, 32, 1), 3, "144 windows");
        assert_eq!(multiple(&[rows(700), rows(700)], 1, 32, 1), 4, "288");
        // A stride thins the windows out.
        assert_eq!(multiple(&[rows(924)], 1, 32, 2), 2);
        // Never under 2, whatever the data; a single-scale request stays so.
        assert_eq!(multiple(&[rows(100)], 1, 32, 1), 2);
        assert_eq!(multiple(&[], 1, 32, 1), 2);
        assert_eq!(coarse_multiple(1, &[rows(100)], 1, 32, 1), 1);
        assert_eq!(coarse_multiple(8, &[rows(100_000)], 1, 32, 1), 8);
    }

    #[test]
    fn refit_drop_outside_zero_to_one_is_refused_by_flag() {
        let model = ModelConfig::Dense(crate::model::DenseAeConfig::new(16, 1, 4));
        for bad in [-0.1, 1.0, f64::NAN] {
            let config = TrainConfig {
                refit_drop: bad,
                ..TrainConfig::default()
            };
            match config.validate(&model) {
                Err(Error::Config { field, .. }) => assert_eq!(field, "--refit-drop"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        for good in [0.0, 0.03, 0.5] {
            let config = TrainConfig {
                refit_drop: good,
                ..TrainConfig::default()
            };
            assert!(config.validate(&model).is_ok(), "{good}");
        }
    }
}
