//! From reconstruction error to anomalies, causally: every decision at point
//! t uses only the errors up to t. `score`, `eval` and the daemon all go
//! through [`Detector`].
//!
//! error → [`smoothing`] → threshold ([`ThresholdConfig`]) → [`events`].
//!
//! The per-point **anomaly score** is `s / (s + θ)` for smoothed error `s`
//! and threshold `θ`: it lies in [0, 1), is exactly 0.5 at the threshold,
//! and grows monotonically with how far the error exceeds it.
//!
//! **Warm-up.** Every method but `static` learns its threshold from the
//! errors it has judged, and flags nothing (score 0, no threshold) until it
//! has seen `min_history` of them (SPOT/POT: their calibration points).
//! Borrowing the artifact's calibrated threshold meanwhile was measured to
//! be worse: on NAB's scored groups 10 of the 32 false events started in
//! the first 100 points, and warming up silently lifts the mean F1 from
//! 0.622 to 0.662 without losing a true one (README, "Detection").
//!
//! **Range.** Beside the error, a point whose values leave the training
//! data's range by more than `range_tolerance` of it is flagged ([`range`]);
//! its score is the larger of the two.
//!
//! **Stillness.** A window whose spread falls below `flatline_ratio` of the
//! quietest training window's is flagged too ([`stillness`]): a flat line
//! is what an autoencoder reconstructs best.
//!
//! **Roughness.** A window whose median step exceeds `roughness_ratio` times
//! the roughest training window's is flagged as well ([`roughness`]): a
//! fast oscillation keeps its level and range, and is reconstructed nearly
//! as well as the slow ones.
//!
//! **Seasonal.** Where the data's interval divides a day, a window whose
//! median difference from a day earlier exceeds `seasonal_ratio` times the
//! largest training window's is flagged too ([`seasonal`]): a day shaped
//! unlike the days before it, which a window of a few hours cannot see.
//! Where it divides a week and training saw two, the same goes for the
//! difference from a week earlier at `weekly_ratio`: a weekday shaped like
//! a weekend.

pub mod events;
pub mod range;
pub mod roughness;
pub mod seasonal;
pub mod smoothing;
pub mod spot;
pub mod stillness;
pub mod telemanom;
pub mod threshold;

use serde::{Deserialize, Serialize};

pub use events::{Event, EventChange, EventConfig, EventTracker};
pub use range::{CycleBound, RangeGuard, RangeJudgement, ValueRange};
pub use roughness::RoughnessGuard;
pub use seasonal::{Cycle, SeasonalGuard};
pub use smoothing::{Smoother, SmoothingConfig};
use spot::{Spot, SpotConfig, SpotMode};
pub use stillness::{StillnessGuard, WindowJudgement};
use telemanom::Telemanom;
use threshold::{Exclusion, MeanStd, MedianMad};

use crate::error::{Error, Result};

/// How the threshold on the smoothed error is set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ThresholdConfig {
    /// The artifact's calibrated quantile of the validation errors.
    Static,
    /// Trailing mean + k·σ over `window` points, the largest `trim`
    /// fraction left out of the mean and σ, and flagged points too, up to
    /// `exclude` model windows' worth of them (main scale only).
    MeanStd {
        window: usize,
        k: f64,
        #[serde(default = "default_trim")]
        trim: f64,
        #[serde(default = "default_exclude")]
        exclude: f64,
    },
    /// Trailing median + k·1.4826·MAD over `window` points.
    Mad { window: usize, k: f64 },
    /// Telemanom's dynamic threshold with pruning over a trailing buffer.
    Telemanom {
        window: usize,
        z_max: f64,
        prune: f64,
    },
    /// Peaks-over-threshold, calibrated once on the first points.
    Pot(SpotConfig),
    /// Streaming POT.
    Spot(SpotConfig),
    /// Streaming POT on the error minus a moving average of `depth` points.
    Dspot { spot: SpotConfig, depth: usize },
}

/// The threshold methods, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdKind {
    Static,
    MeanStd,
    Mad,
    Telemanom,
    Pot,
    Spot,
    Dspot,
}

/// Optional overrides of a threshold method's parameters; what is left
/// `None` takes the method's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThresholdParams {
    pub window: Option<usize>,
    pub k: Option<f64>,
    pub trim: Option<f64>,
    pub exclude: Option<f64>,
    pub z_max: Option<f64>,
    pub prune: Option<f64>,
    pub risk: Option<f64>,
    pub init_quantile: Option<f64>,
    pub calibration: Option<usize>,
    pub depth: Option<usize>,
}

/// The default `trim` of mean-std (see docs/detection.md for the measurement).
pub const DEFAULT_TRIM: f64 = 0.01;

fn default_trim() -> f64 {
    DEFAULT_TRIM
}

/// The default `exclude` of mean-std, in model windows (see docs/detection.md).
pub const DEFAULT_EXCLUDE: f64 = 2.0;

fn default_exclude() -> f64 {
    DEFAULT_EXCLUDE
}

impl ThresholdConfig {
    /// Builds a method from its name and overrides; the defaults live here.
    pub fn build(kind: ThresholdKind, params: ThresholdParams) -> Self {
        let spot = SpotConfig {
            risk: params.risk.unwrap_or(SpotConfig::default().risk),
            init_quantile: params
                .init_quantile
                .unwrap_or(SpotConfig::default().init_quantile),
            calibration: params
                .calibration
                .unwrap_or(SpotConfig::default().calibration),
            ..SpotConfig::default()
        };
        let window = params.window.unwrap_or(DEFAULT_TRAILING_WINDOW);
        match kind {
            ThresholdKind::Static => Self::Static,
            ThresholdKind::MeanStd => Self::MeanStd {
                window: params.window.unwrap_or(DEFAULT_MEANSTD_WINDOW),
                k: params.k.unwrap_or(4.0),
                trim: params.trim.unwrap_or(DEFAULT_TRIM),
                exclude: params.exclude.unwrap_or(DEFAULT_EXCLUDE),
            },
            ThresholdKind::Mad => Self::Mad {
                window,
                k: params.k.unwrap_or(6.0),
            },
            ThresholdKind::Telemanom => Self::Telemanom {
                window,
                z_max: params.z_max.unwrap_or(10.0),
                prune: params.prune.unwrap_or(0.13),
            },
            ThresholdKind::Pot => Self::Pot(spot),
            ThresholdKind::Spot => Self::Spot(spot),
            ThresholdKind::Dspot => Self::Dspot {
                spot,
                depth: params.depth.unwrap_or(50),
            },
        }
    }
}

/// The whole detector configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub smoothing: SmoothingConfig,
    pub threshold: ThresholdConfig,
    pub events: EventConfig,
    /// Points a learning threshold judges before it may flag (its warm-up).
    pub min_history: usize,
    /// A point whose values leave the training data's range (widened by
    /// every point since) by more than this fraction of it is flagged; 0
    /// turns the check off.
    pub range_tolerance: f64,
    /// A window whose spread (per feature) falls below this fraction of the
    /// quietest training window's is flagged; 0 turns the check off.
    pub flatline_ratio: f64,
    /// A window whose median step (per feature) exceeds this multiple of
    /// the roughest training window's is flagged; 0 turns the check off.
    pub roughness_ratio: f64,
    /// A window whose median difference from a day earlier (per feature)
    /// exceeds this multiple of the largest training window's is flagged;
    /// 0 turns the check off.
    pub seasonal_ratio: f64,
    /// The same for the difference from a week earlier, where training saw
    /// two weeks; 0 turns that guard off.
    pub weekly_ratio: f64,
    /// Multiply mean-std's k by the factor a model's artifact carries
    /// (`threshold.k_factor`, calibrated by `anomalyd train` on its
    /// training data), where it has one.
    pub calibrated_k: bool,
}

/// The default trailing window of mean-std, in points. A quiet stretch
/// shorter than the window cannot pull the threshold under the normal
/// excursions before it; at 2000 points (a week of 5-minute data) it did,
/// and the next normal excursion was a false event: NAB's streaming score
/// 65.6 → 68.9 over four seeds, false positives 140 → 93 at seed 42
/// (docs/detection.md, "The threshold's window").
pub const DEFAULT_MEANSTD_WINDOW: usize = 5000;
/// The default trailing window of `mad` and `telemanom`, in points.
pub const DEFAULT_TRAILING_WINDOW: usize = 2000;

/// The default method, chosen by measurement on NAB (see docs/detection.md):
/// trailing mean + 4σ over 5000 points on the EWMA(0.3)-smoothed error,
/// its largest 1% and up to two model windows of flagged points left out,
/// with flags up to 50 points apart merged into one event, which a run
/// becomes once its score reaches 0.52, and no cool-down after it beyond
/// the merge gap (docs/detection.md, "The cool-down, measured again").
pub const DEFAULT_THRESHOLD: ThresholdKind = ThresholdKind::MeanStd;
pub const DEFAULT_ALPHA: f64 = 0.3;
pub const DEFAULT_EVENTS: EventConfig = EventConfig {
    min_length: 1,
    merge_gap: 50,
    cooldown: 0,
    min_peak: DEFAULT_MIN_PEAK,
};
/// The score a run of flags must reach to be an event: its smoothed error
/// 1/12 over its threshold (docs/detection.md, "A run must clear its threshold").
pub const DEFAULT_MIN_PEAK: f64 = 0.52;
pub const DEFAULT_MIN_HISTORY: usize = 100;
/// The default `range_tolerance` (see docs/detection.md, "Values beyond
/// the training range").
pub const DEFAULT_RANGE_TOLERANCE: f64 = 0.05;

/// The default `flatline_ratio` (see docs/detection.md, "A signal that
/// stops moving").
pub const DEFAULT_FLATLINE_RATIO: f64 = 0.5;

/// The default `roughness_ratio`: a quarter over the roughest training
/// window. Once the seasonal check and no cool-down were in, 1.25 found
/// more on NAB's streaming protocol and the NASA-like set than 2 did, at
/// a false event or three on NAB's halves (see docs/detection.md, "A
/// signal that moves faster than it ever did").
pub const DEFAULT_ROUGHNESS_RATIO: f64 = 1.25;

/// The default `seasonal_ratio`: three times the largest training window,
/// since one day differs from the next more than one step from the next
/// (see docs/detection.md, "A day unlike the days before it").
pub const DEFAULT_SEASONAL_RATIO: f64 = 3.0;

/// The default `weekly_ratio`: a quarter over the largest training
/// window's difference from a week earlier. The same hours a week apart
/// differ far less than a day apart do (a Saturday is not a Friday), so
/// the bound is tight where the data has a weekly cycle (see
/// docs/detection.md, "A week unlike the weeks before it").
pub const DEFAULT_WEEKLY_RATIO: f64 = 1.25;

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            smoothing: SmoothingConfig::Ewma {
                alpha: DEFAULT_ALPHA,
            },
            threshold: ThresholdConfig::build(DEFAULT_THRESHOLD, ThresholdParams::default()),
            events: DEFAULT_EVENTS,
            min_history: DEFAULT_MIN_HISTORY,
            range_tolerance: DEFAULT_RANGE_TOLERANCE,
            flatline_ratio: DEFAULT_FLATLINE_RATIO,
            roughness_ratio: DEFAULT_ROUGHNESS_RATIO,
            seasonal_ratio: DEFAULT_SEASONAL_RATIO,
            weekly_ratio: DEFAULT_WEEKLY_RATIO,
            calibrated_k: true,
        }
    }
}

impl DetectorConfig {
    /// The same detector for points that each average `multiple` of these
    /// points: every count of points is divided, so that warm-up and
    /// trailing windows span the same time. Mean-std counts every coarse
    /// point: a coarse flag holds for `multiple` points, so a coarse
    /// threshold kept low holds events open, merging false ones into true
    /// ones (measured: docs/detection.md).
    pub fn coarsened(&self, multiple: usize) -> Self {
        let scale = |points: usize| points.div_ceil(multiple.max(1)).max(2);
        let threshold = match self.threshold {
            ThresholdConfig::MeanStd {
                window, k, trim, ..
            } => ThresholdConfig::MeanStd {
                window: scale(window),
                k,
                trim,
                exclude: 0.0,
            },
            ThresholdConfig::Mad { window, k } => ThresholdConfig::Mad {
                window: scale(window),
                k,
            },
            ThresholdConfig::Telemanom {
                window,
                z_max,
                prune,
            } => ThresholdConfig::Telemanom {
                window: scale(window),
                z_max,
                prune,
            },
            ThresholdConfig::Pot(spot) => ThresholdConfig::Pot(SpotConfig {
                calibration: scale(spot.calibration),
                ..spot
            }),
            ThresholdConfig::Spot(spot) => ThresholdConfig::Spot(SpotConfig {
                calibration: scale(spot.calibration),
                ..spot
            }),
            ThresholdConfig::Dspot { spot, depth } => ThresholdConfig::Dspot {
                spot: SpotConfig {
                    calibration: scale(spot.calibration),
                    ..spot
                },
                depth: scale(depth),
            },
            ThresholdConfig::Static => ThresholdConfig::Static,
        };
        Self {
            threshold,
            min_history: scale(self.min_history),
            ..*self
        }
    }

    /// Mean-std's k, the one setting [`calibrate_k`] tunes.
    pub fn mean_std_k(&self) -> Option<f64> {
        match self.threshold {
            ThresholdConfig::MeanStd { k, .. } => Some(k),
            _ => None,
        }
    }

    /// The same detector with mean-std's k set to `k` (other methods are
    /// returned unchanged).
    pub fn with_mean_std_k(&self, k: f64) -> Self {
        let mut config = *self;
        if let ThresholdConfig::MeanStd { k: current, .. } = &mut config.threshold {
            *current = k;
        }
        config
    }

    /// Whether this detector applies a model's `k_factor` that was measured
    /// for another detector (`calibrated_for`; `None`: the default one):
    /// the factor that kept the training data quiet under one smoothing,
    /// window and k need not under another, so the callers warn.
    pub fn applies_factor_measured_for_another(
        &self,
        k_factor: Option<f64>,
        calibrated_for: Option<&DetectorConfig>,
    ) -> bool {
        k_factor.is_some()
            && self.calibrated_k
            && self.mean_std_k().is_some()
            && calibrated_for.copied().unwrap_or_default() != *self
    }

    /// The detector for a model whose artifact carries `k_factor`: mean-std's
    /// k multiplied by it, unless `calibrated_k` is off.
    pub fn for_model(&self, k_factor: Option<f64>) -> Self {
        match (self.mean_std_k(), k_factor) {
            (Some(k), Some(factor)) if self.calibrated_k => self.with_mean_std_k(k * factor),
            _ => *self,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.range_tolerance >= 0.0 && self.range_tolerance.is_finite()) {
            return Err(Error::config(
                "range_tolerance",
                "must be a fraction of the range, at least 0 (0: off)",
            ));
        }
        if !(EventConfig::at_the_threshold()..1.0).contains(&self.events.min_peak) {
            return Err(Error::config(
                "events.min_peak",
                "must lie in [0.5, 1): a score (0.5: the threshold itself)",
            ));
        }
        if !(0.0..1.0).contains(&self.flatline_ratio) {
            return Err(Error::config(
                "flatline_ratio",
                "must lie in [0, 1): a fraction of the quietest training window's spread (0: off)",
            ));
        }
        if !(self.roughness_ratio == 0.0
            || (self.roughness_ratio > 1.0 && self.roughness_ratio.is_finite()))
        {
            return Err(Error::config(
                "roughness_ratio",
                "must be 0 (off) or above 1: a multiple of the roughest training window's median step",
            ));
        }
        if !(self.seasonal_ratio == 0.0
            || (self.seasonal_ratio > 1.0 && self.seasonal_ratio.is_finite()))
        {
            return Err(Error::config(
                "seasonal_ratio",
                "must be 0 (off) or above 1: a multiple of the largest training window's median difference from a day earlier",
            ));
        }
        if !(self.weekly_ratio == 0.0 || (self.weekly_ratio > 1.0 && self.weekly_ratio.is_finite()))
        {
            return Err(Error::config(
                "weekly_ratio",
                "must be 0 (off) or above 1: a multiple of the largest training window's median difference from a week earlier",
            ));
        }
        match self.smoothing {
            SmoothingConfig::Ewma { alpha } if !(alpha > 0.0 && alpha <= 1.0) => {
                return Err(Error::config("smoothing.alpha", "must lie in (0, 1]"));
            }
            SmoothingConfig::Mean { window: 0 } => {
                return Err(Error::config("smoothing.window", "must be positive"));
            }
            _ => {}
        }
        let spot_ok = |spot: &SpotConfig| {
            if !(spot.risk > 0.0 && spot.risk < 1.0) {
                return Err(Error::config("threshold.risk", "must lie in (0, 1)"));
            }
            if !(spot.init_quantile > 0.0 && spot.init_quantile < 1.0) {
                return Err(Error::config(
                    "threshold.init_quantile",
                    "must lie in (0, 1)",
                ));
            }
            Ok(())
        };
        match &self.threshold {
            ThresholdConfig::MeanStd { trim, .. } if !(0.0..0.5).contains(trim) => {
                Err(Error::config("threshold.trim", "must lie in [0, 0.5)"))
            }
            ThresholdConfig::MeanStd { exclude, .. } if !(0.0..=100.0).contains(exclude) => Err(
                Error::config("threshold.exclude", "must lie in [0, 100] (model windows)"),
            ),
            ThresholdConfig::MeanStd { window, .. }
            | ThresholdConfig::Mad { window, .. }
            | ThresholdConfig::Telemanom { window, .. }
                if *window < 10 =>
            {
                Err(Error::config("threshold.window", "must be at least 10"))
            }
            ThresholdConfig::Pot(spot) | ThresholdConfig::Spot(spot) => spot_ok(spot),
            ThresholdConfig::Dspot { spot, .. } => spot_ok(spot),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ThresholdState {
    Static,
    MeanStd(MeanStd),
    Mad(MedianMad),
    Telemanom(Telemanom),
    Spot(Spot),
}

/// Which check gave a point its score: what an event's peak says raised
/// it. Where the range or stillness check scored, the reconstruction
/// errors say little about what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// The main model's smoothed reconstruction error against its threshold.
    #[default]
    Error,
    /// The coarse model's.
    Coarse,
    /// Values outside the training data's range (see [`range`]).
    Range,
    /// A window that moved less than any training window (see
    /// [`stillness`]).
    Stillness,
    /// A window that moved faster than any training window (see
    /// [`roughness`]).
    Roughness,
    /// A window unlike the same hours a day (or a week) earlier, more than
    /// any training window (see [`seasonal`]).
    Seasonal,
}

impl Cause {
    /// Its name, as messages and tables write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Error => "error",
            Cause::Coarse => "coarse",
            Cause::Range => "range",
            Cause::Stillness => "stillness",
            Cause::Roughness => "roughness",
            Cause::Seasonal => "seasonal",
        }
    }
}

/// The detector's output for one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub smoothed: f64,
    /// None while the method warms up (see the module docs).
    pub threshold: Option<f64>,
    /// `smoothed / (smoothed + threshold)`, in [0, 1), 0 while warming up;
    /// the coarse scale's or the range check's score where larger.
    pub score: f64,
    /// The point itself crossed the threshold, or its values left the
    /// range.
    pub flagged: bool,
    /// Its values left the training data's range (see [`range`]).
    pub out_of_range: bool,
    /// Its window moved less than any training window (see [`stillness`]).
    pub flatline: bool,
    /// Its window moved faster than any training window (see
    /// [`roughness`]).
    pub rough: bool,
    /// Its window differed from a day (or a week) earlier more than any
    /// training window (see [`seasonal`]).
    pub seasonal: bool,
    /// The point lies in a confirmed anomaly event.
    pub anomalous: bool,
    pub event: Option<EventChange>,
    /// Which check's score `score` is (the main scale's on a tie).
    pub cause: Cause,
}

/// One resolution's smoother and threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scale {
    smoother: Smoother,
    threshold: ThresholdState,
    /// The artifact's threshold: the `static` method's, and only its.
    calibrated: f64,
}

/// What one scale made of one error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Judgement {
    smoothed: f64,
    threshold: Option<f64>,
    flagged: bool,
    score: f64,
}

impl Scale {
    /// `model_window`: the model's window length in points, the footprint
    /// of one anomalous sample in its errors.
    fn new(config: &DetectorConfig, calibrated: f64, model_window: usize) -> Self {
        let history = config.min_history;
        let threshold = match config.threshold {
            ThresholdConfig::Static => ThresholdState::Static,
            ThresholdConfig::MeanStd {
                window,
                k,
                trim,
                exclude,
            } => {
                let exclusion = Exclusion {
                    budget: (exclude * model_window as f64).round() as usize,
                    run: model_window,
                };
                ThresholdState::MeanStd(MeanStd::new(window, k, trim, history, exclusion))
            }
            ThresholdConfig::Mad { window, k } => {
                ThresholdState::Mad(MedianMad::new(window, k, history))
            }
            ThresholdConfig::Telemanom {
                window,
                z_max,
                prune,
            } => ThresholdState::Telemanom(Telemanom::new(window, history, z_max, prune)),
            ThresholdConfig::Pot(spot) => ThresholdState::Spot(Spot::new(spot, SpotMode::Pot)),
            ThresholdConfig::Spot(spot) => ThresholdState::Spot(Spot::new(spot, SpotMode::Spot)),
            ThresholdConfig::Dspot { spot, depth } => {
                ThresholdState::Spot(Spot::new(spot, SpotMode::Dspot { depth }))
            }
        };
        Self {
            smoother: Smoother::new(config.smoothing),
            threshold,
            calibrated,
        }
    }

    fn judge(&mut self, error: f64) -> Judgement {
        let smoothed = self.smoother.update(error);
        let above = |threshold: Option<f64>| (threshold, threshold.is_some_and(|t| smoothed > t));
        let (threshold, flagged) = match &mut self.threshold {
            ThresholdState::Static => above(Some(self.calibrated)),
            ThresholdState::MeanStd(t) => above(t.update(smoothed)),
            ThresholdState::Mad(t) => above(t.update(smoothed)),
            ThresholdState::Telemanom(t) => match t.update(smoothed) {
                Some(verdict) => (Some(verdict.threshold), verdict.anomalous),
                None => (None, false),
            },
            ThresholdState::Spot(t) => above(t.update(smoothed)),
        };
        let score = match threshold {
            Some(threshold) if threshold > 0.0 => {
                smoothed.max(0.0) / (smoothed.max(0.0) + threshold)
            }
            Some(threshold) if smoothed > threshold => 1.0 - f64::EPSILON,
            _ => 0.0,
        };
        Judgement {
            smoothed,
            threshold,
            flagged,
            score,
        }
    }
}

/// The coarse scale of a multi-scale model and its latest judgement, which
/// holds until its next point.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Coarse {
    scale: Scale,
    latest: Option<Judgement>,
}

/// The causal detector of one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detector {
    fine: Scale,
    coarse: Option<Coarse>,
    events: EventTracker,
    index: usize,
    #[serde(default)]
    range: Option<RangeGuard>,
    /// The range's verdict on the point about to be judged.
    #[serde(skip)]
    pending_range: Option<RangeJudgement>,
    #[serde(default)]
    stillness: Option<StillnessGuard>,
    #[serde(skip)]
    pending_stillness: Option<WindowJudgement>,
    #[serde(default)]
    roughness: Option<RoughnessGuard>,
    #[serde(skip)]
    pending_roughness: Option<WindowJudgement>,
    #[serde(default)]
    seasonal: Option<SeasonalGuard>,
    #[serde(skip)]
    pending_seasonal: Option<WindowJudgement>,
    /// The seasonal check's guard for a week.
    #[serde(default)]
    weekly: Option<SeasonalGuard>,
    #[serde(skip)]
    pending_weekly: Option<WindowJudgement>,
    /// The model's window in points: the stillness and roughness checks'
    /// window.
    #[serde(default)]
    model_window: usize,
}

impl Detector {
    /// `calibrated` is the artifact's static threshold, used by `static`;
    /// `model_window` its window length in points.
    pub fn new(config: &DetectorConfig, calibrated: f64, model_window: usize) -> Self {
        Self {
            fine: Scale::new(config, calibrated, model_window),
            coarse: None,
            events: EventTracker::new(config.events),
            index: 0,
            range: None,
            pending_range: None,
            stillness: None,
            pending_stillness: None,
            roughness: None,
            pending_roughness: None,
            seasonal: None,
            pending_seasonal: None,
            weekly: None,
            pending_weekly: None,
            model_window,
        }
    }

    /// Guards the range of the model's training data, in the units of the
    /// values [`Detector::observe_values`] will be given. Without a range
    /// (an artifact older than format 4), or with `range_tolerance` 0,
    /// values are not judged.
    /// The same range's `quietest` spreads (format 5 on) start the
    /// stillness check, unless `flatline_ratio` is 0, and its `roughest`
    /// steps the roughness check, unless `roughness_ratio` is 0, and its
    /// `daily` and `weekly` bounds the seasonal check, unless
    /// `seasonal_ratio` (`weekly_ratio`) is 0.
    pub fn with_range(mut self, config: &DetectorConfig, range: Option<ValueRange>) -> Self {
        self.seasonal = seasonal_guard(config, range.as_ref(), Cycle::Day, self.model_window);
        self.weekly = seasonal_guard(config, range.as_ref(), Cycle::Week, self.model_window);
        self.roughness = range
            .as_ref()
            .and_then(|range| range.roughest.clone())
            .filter(|_| config.roughness_ratio > 0.0)
            .map(|ceiling| {
                RoughnessGuard::new(
                    ceiling,
                    resolution_of(range.as_ref()),
                    config.roughness_ratio,
                    self.model_window,
                )
            });
        self.stillness = range
            .as_ref()
            .and_then(|range| range.quietest.clone())
            .filter(|_| config.flatline_ratio > 0.0)
            .map(|floor| StillnessGuard::new(floor, config.flatline_ratio, self.model_window));
        self.range = range
            .filter(|_| config.range_tolerance > 0.0)
            .map(|range| RangeGuard::new(range, config.range_tolerance));
        self
    }

    /// Starts the stillness, roughness and seasonal checks on a detector resumed from
    /// a state file written before the check existed (no guard, no model
    /// window), as [`Detector::with_range`] starts them for a new series:
    /// without this, a series that keeps streaming across such an upgrade
    /// is never judged by them, since only a cold start builds the guards.
    /// A guard fills its window before it judges. The roughness and
    /// seasonal guards saved before they kept the data's resolution take
    /// the artifact's. True when it started or updated one.
    pub fn resume_window_checks(
        &mut self,
        config: &DetectorConfig,
        range: Option<&ValueRange>,
        model_window: usize,
    ) -> bool {
        if self.model_window == 0 {
            self.model_window = model_window;
        }
        let mut started = false;
        if let Some(floor) = range.and_then(|r| r.quietest.clone())
            && self.stillness.is_none()
            && config.flatline_ratio > 0.0
        {
            self.stillness = Some(StillnessGuard::new(
                floor,
                config.flatline_ratio,
                self.model_window,
            ));
            started = true;
        }
        if let Some(ceiling) = range.and_then(|r| r.roughest.clone())
            && self.roughness.is_none()
            && config.roughness_ratio > 0.0
        {
            self.roughness = Some(RoughnessGuard::new(
                ceiling,
                resolution_of(range),
                config.roughness_ratio,
                self.model_window,
            ));
            started = true;
        }
        for cycle in Cycle::ALL {
            let held = match cycle {
                Cycle::Day => &mut self.seasonal,
                Cycle::Week => &mut self.weekly,
            };
            if held.is_none()
                && let Some(guard) = seasonal_guard(config, range, cycle, self.model_window)
            {
                *held = Some(guard);
                started = true;
            }
        }
        let resolution = resolution_of(range);
        if let Some(guard) = &mut self.roughness {
            started |= guard.adopt_resolution(&resolution);
        }
        for guard in [&mut self.seasonal, &mut self.weekly].into_iter().flatten() {
            started |= guard.adopt_resolution(&resolution);
        }
        started
    }

    /// Judges the values of the point whose error comes next (one per
    /// feature, normalised as the model's input) against the range, and
    /// widens it. Call it before [`Detector::update`] for that point. A
    /// caller that scores only every n-th window (the daemon's
    /// `scoring.stride`) calls it for each point since the last update, in
    /// order: the update then carries the most severe of their verdicts, so
    /// a point between scored windows is judged all the same.
    pub fn observe_values(&mut self, values: &[f32]) {
        fn most_severe<T: Copy>(pending: Option<T>, verdict: T, score: fn(&T) -> f64) -> T {
            match pending {
                Some(earlier) if score(&earlier) >= score(&verdict) => earlier,
                _ => verdict,
            }
        }
        if let Some(guard) = &mut self.range {
            let verdict = guard.judge(values);
            self.pending_range = Some(most_severe(self.pending_range, verdict, |j| j.score));
        }
        if let Some(guard) = &mut self.stillness {
            let verdict = guard.judge(values);
            self.pending_stillness =
                Some(most_severe(self.pending_stillness, verdict, |j| j.score));
        }
        if let Some(guard) = &mut self.roughness {
            let verdict = guard.judge(values);
            self.pending_roughness =
                Some(most_severe(self.pending_roughness, verdict, |j| j.score));
        }
        if let Some(guard) = &mut self.seasonal {
            let verdict = guard.judge(values);
            self.pending_seasonal = Some(most_severe(self.pending_seasonal, verdict, |j| j.score));
        }
        if let Some(guard) = &mut self.weekly {
            let verdict = guard.judge(values);
            self.pending_weekly = Some(most_severe(self.pending_weekly, verdict, |j| j.score));
        }
    }

    /// A gap in time between two points: the checks that judge a window of
    /// consecutive points (stillness, roughness, seasonal) start their
    /// windows again, since one spanning the gap would compare points
    /// further apart than it means to (a day earlier would be a day and
    /// the gap).
    pub fn break_windows(&mut self) {
        if let Some(guard) = &mut self.stillness {
            guard.break_window();
        }
        if let Some(guard) = &mut self.roughness {
            guard.break_window();
        }
        for guard in [&mut self.seasonal, &mut self.weekly].into_iter().flatten() {
            guard.break_window();
        }
    }

    /// A detector for a multi-scale model: the coarse model's points each
    /// average `multiple` of the fine model's, and its errors arrive through
    /// [`Detector::observe_coarse`]. Its threshold runs on the same
    /// durations as the fine one (point counts divided by `multiple`).
    pub fn with_coarse(
        config: &DetectorConfig,
        calibrated: f64,
        model_window: usize,
        multiple: usize,
        coarse_calibrated: f64,
    ) -> Self {
        let mut detector = Self::new(config, calibrated, model_window);
        detector.coarse = Some(Coarse {
            scale: Scale::new(&config.coarsened(multiple), coarse_calibrated, model_window),
            latest: None,
        });
        detector
    }

    /// Judges the coarse model's next error. Until the next one, the fine
    /// points count as flagged whenever this one was, and their score is at
    /// least its score. Call it before [`Detector::update`] for a sample
    /// that completes both a coarse and a fine point.
    pub fn observe_coarse(&mut self, error: f64) {
        if let Some(coarse) = &mut self.coarse {
            coarse.latest = Some(coarse.scale.judge(error));
        }
    }

    /// How many decisions ago point `index` was judged (0: the latest),
    /// as an event's `start` names it.
    pub fn decisions_since(&self, index: usize) -> usize {
        self.index.saturating_sub(1).saturating_sub(index)
    }

    /// Judges the next (fine) error; a missing error (no full window yet)
    /// is `None` and leaves the state alone. With a coarse scale, a point
    /// is flagged when either scale's latest point is, and its score is the
    /// larger of the two; `smoothed` and `threshold` are the fine scale's.
    pub fn update(&mut self, error: f64) -> Decision {
        let fine = self.fine.judge(error);
        let coarse = self.coarse.as_ref().and_then(|c| c.latest);
        let range = self.pending_range.take();
        let out_of_range = range.is_some_and(|r| r.flagged);
        let stillness = self.pending_stillness.take();
        let flatline = stillness.is_some_and(|s| s.flagged);
        let roughness = self.pending_roughness.take();
        let rough = roughness.is_some_and(|r| r.flagged);
        // The day's and the week's guards are one check: its verdict is the
        // more severe of theirs.
        let cycles = match (self.pending_seasonal.take(), self.pending_weekly.take()) {
            (Some(day), Some(week)) if week.score > day.score => Some(week),
            (day, week) => day.or(week),
        };
        let seasonal = cycles.is_some_and(|c| c.flagged);
        let certain = out_of_range || flatline || rough || seasonal;
        let flagged = fine.flagged || coarse.is_some_and(|c| c.flagged) || certain;
        let coarse_score = coarse.map(|c| c.score);
        let range_score = range.map(|r| r.score);
        let stillness_score = stillness.map(|s| s.score);
        let roughness_score = roughness.map(|r| r.score);
        let seasonal_score = cycles.map(|c| c.score);
        let score = coarse_score
            .map_or(fine.score, |c| fine.score.max(c))
            .max(range_score.unwrap_or(0.0))
            .max(stillness_score.unwrap_or(0.0))
            .max(roughness_score.unwrap_or(0.0))
            .max(seasonal_score.unwrap_or(0.0));
        let cause = [
            (Cause::Coarse, coarse_score),
            (Cause::Range, range_score),
            (Cause::Stillness, stillness_score),
            (Cause::Roughness, roughness_score),
            (Cause::Seasonal, seasonal_score),
        ]
        .into_iter()
        .find(|&(_, s)| fine.score < score && s == Some(score))
        .map_or(Cause::Error, |(cause, _)| cause);
        let (anomalous, event) = self.events.update_with(self.index, flagged, score, certain);
        self.index += 1;
        Decision {
            smoothed: fine.smoothed,
            threshold: fine.threshold,
            score,
            flagged,
            out_of_range,
            flatline,
            rough,
            seasonal,
            anomalous,
            event,
            cause,
        }
    }

    /// Closes an event still open at the end of the data.
    pub fn finish(&mut self) -> Option<Event> {
        self.events.finish()
    }
}

/// The training data's resolution, which the roughness and seasonal checks
/// allow on top of their ratio; empty (none) for an artifact without it.
fn resolution_of(range: Option<&ValueRange>) -> Vec<f64> {
    range
        .and_then(|range| range.resolution.clone())
        .unwrap_or_default()
}

/// The seasonal check's guard for `range`'s bound of `cycle`, unless its
/// ratio is 0 or the range has none (the data's interval does not divide
/// the cycle, or training held less than one).
fn seasonal_guard(
    config: &DetectorConfig,
    range: Option<&ValueRange>,
    cycle: Cycle,
    model_window: usize,
) -> Option<SeasonalGuard> {
    let (bound, ratio) = match cycle {
        Cycle::Day => (range?.daily.as_ref()?, config.seasonal_ratio),
        Cycle::Week => (range?.weekly.as_ref()?, config.weekly_ratio),
    };
    (ratio > 0.0).then(|| {
        SeasonalGuard::new(
            bound.largest.clone(),
            resolution_of(range),
            ratio,
            model_window,
            bound.period,
        )
    })
}

/// The coarse model's per-row errors for [`detect_all_scales`].
#[derive(Debug, Clone, Copy)]
pub struct CoarseErrors<'a> {
    /// Fine points per coarse point.
    pub multiple: usize,
    /// The coarse artifact's static threshold.
    pub calibrated: f64,
    pub errors: &'a [Option<f64>],
}

/// The values of the points behind per-row errors, for the range check of
/// [`detect_all_scales`].
#[derive(Debug, Clone, Copy)]
pub struct PointValues<'a> {
    /// The model's training range, in the units of `rows`.
    pub range: &'a ValueRange,
    /// Row-major `[rows, features]`: on each row with an error, the values
    /// of the point it completes (other rows are not read).
    pub rows: &'a [f32],
}

/// Runs a fresh detector over a whole error sequence (rows without a window
/// are `None` and produce no decision) of a model with `model_window`
/// points per window. Returns one decision per row and the events by row
/// index.
pub fn detect_all(
    config: &DetectorConfig,
    calibrated: f64,
    model_window: usize,
    errors: &[Option<f64>],
) -> (Vec<Option<Decision>>, Vec<Event>) {
    detect_all_scales(config, calibrated, model_window, errors, None, None)
}

/// [`detect_all`] for a multi-scale model: on a row with both, the coarse
/// error is observed before the fine one is judged, as the daemon does;
/// with `values`, each point's values are judged against the range too.
pub fn detect_all_scales(
    config: &DetectorConfig,
    calibrated: f64,
    model_window: usize,
    errors: &[Option<f64>],
    coarse: Option<CoarseErrors<'_>>,
    values: Option<PointValues<'_>>,
) -> (Vec<Option<Decision>>, Vec<Event>) {
    let detector = match coarse {
        Some(c) => {
            Detector::with_coarse(config, calibrated, model_window, c.multiple, c.calibrated)
        }
        None => Detector::new(config, calibrated, model_window),
    };
    let mut detector = detector.with_range(config, values.map(|v| v.range.clone()));
    let features = values.map_or(0, |v| v.range.features());
    let mut decisions = Vec::with_capacity(errors.len());
    let mut events = Vec::new();
    // The detector counts scored points; events are mapped back to rows.
    let mut rows = Vec::new();
    for (row, error) in errors.iter().enumerate() {
        if let Some(Some(e)) = coarse.and_then(|c| c.errors.get(row)) {
            detector.observe_coarse(*e);
        }
        // Once judging has started, every point's values go to the checks,
        // scored or not, so that their windows stay a run of consecutive
        // points: where a train file's rows are followed by the series',
        // scored apart, the series' first window of points has no error,
        // and skipping them would splice points a day apart into the
        // seasonal check's differences. Before the first error the checks
        // start with the first scored point, as the daemon's do. Rows that
        // end no point (aggregated rows before a point's last) hold no
        // values.
        if let Some(point) = values
            .and_then(|v| v.rows.get(row * features..(row + 1) * features))
            .filter(|point| {
                error.is_some() || (!rows.is_empty() && point.iter().all(|v| v.is_finite()))
            })
        {
            detector.observe_values(point);
        }
        let decision = error.map(|e| {
            rows.push(row);
            detector.update(e)
        });
        if let Some(Decision {
            event: Some(EventChange::Ended(event)),
            ..
        }) = decision
        {
            events.push(event);
        }
        decisions.push(decision);
    }
    events.extend(detector.finish());
    let events = events
        .into_iter()
        .map(|e| Event {
            start: rows[e.start],
            end: rows[e.end],
        })
        .collect();
    (decisions, events)
}

/// An event whose peak score stays below this is marginal: its smoothed
/// error never reached 1.5× the threshold (score `s / (s + θ)` = 0.6).
pub const MARGINAL_SCORE: f64 = 0.6;

/// Steps of [`calibrate_k`]'s grid between the configured k and twice it.
const K_GRID_STEPS: u32 = 8;

/// What [`calibrate_k`] settled on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KCalibration {
    pub k: f64,
    /// Marginal events the normal data raised at the configured k.
    pub marginal_events: usize,
}

/// Events whose peak score (over their rows) stays below
/// [`MARGINAL_SCORE`].
pub fn marginal_events(decisions: &[Option<Decision>], events: &[Event]) -> usize {
    events
        .iter()
        .filter(|event| {
            let peak = decisions
                .get(event.start..=event.end)
                .unwrap_or_default()
                .iter()
                .flatten()
                .map(|d| d.score)
                .fold(0.0, f64::max);
            peak < MARGINAL_SCORE
        })
        .count()
}

/// Mean-std's k for a series, from errors of data taken to be normal (a
/// train file the model learnt from): the smallest k on a grid from the
/// configured k to twice it at which that data raises no marginal event,
/// plus one step of the grid, at most twice the configured k. Errors whose
/// regular peaks (each cycle of a periodic signal, each ordinary step) end
/// just above mean + kσ are normal for that series, and would raise a
/// false event wherever they recur; an event far above the threshold is
/// left alone, as an anomaly the normal data happens to hold. The step of
/// margin is there because the quiet k only bounds the peaks the train
/// file holds: a series as long again holds a taller one as often as not.
/// `None` for other threshold methods.
pub fn calibrate_k(
    config: &DetectorConfig,
    calibrated: f64,
    model_window: usize,
    errors: &[Option<f64>],
    coarse: Option<CoarseErrors<'_>>,
) -> Option<KCalibration> {
    let configured = config.mean_std_k()?;
    let grid = |step: u32| {
        configured * (1.0 + f64::from(step.min(K_GRID_STEPS)) / f64::from(K_GRID_STEPS))
    };
    let mut at_configured = 0;
    for step in 0..=K_GRID_STEPS {
        let candidate = config.with_mean_std_k(grid(step));
        let (decisions, events) =
            detect_all_scales(&candidate, calibrated, model_window, errors, coarse, None);
        let marginal = marginal_events(&decisions, &events);
        if step == 0 {
            at_configured = marginal;
        }
        if marginal == 0 {
            return Some(KCalibration {
                k: grid(step + 1),
                marginal_events: at_configured,
            });
        }
    }
    Some(KCalibration {
        k: grid(K_GRID_STEPS),
        marginal_events: at_configured,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors() -> Vec<Option<f64>> {
        let mut errors: Vec<Option<f64>> = vec![None; 5];
        errors.extend(errors_without_gap());
        errors
    }

    /// 600 noisy errors around 0.1 with a burst of +1 at 400..410.
    fn errors_without_gap() -> impl Iterator<Item = Option<f64>> {
        (0..600).map(|i| {
            let base = 0.1 + ((i * 7919) % 101) as f64 / 2000.0;
            Some(if (400..410).contains(&i) {
                base + 1.0
            } else {
                base
            })
        })
    }

    #[test]
    fn a_factor_measured_for_another_detector_is_told_apart() {
        let default = DetectorConfig::default();
        let other = default.with_mean_std_k(3.0);
        // Artifacts without the field were calibrated with the default.
        assert!(!default.applies_factor_measured_for_another(Some(1.5), None));
        assert!(!default.applies_factor_measured_for_another(Some(1.5), Some(&default)));
        assert!(other.applies_factor_measured_for_another(Some(1.5), None));
        assert!(other.applies_factor_measured_for_another(Some(1.5), Some(&default)));
        assert!(!other.applies_factor_measured_for_another(Some(1.5), Some(&other)));
        // No factor, or none applied: nothing to warn about.
        assert!(!other.applies_factor_measured_for_another(None, None));
        let off = DetectorConfig {
            calibrated_k: false,
            ..other
        };
        assert!(!off.applies_factor_measured_for_another(Some(1.5), None));
        let mad = DetectorConfig {
            threshold: ThresholdConfig::build(ThresholdKind::Mad, ThresholdParams::default()),
            ..default
        };
        assert!(!mad.applies_factor_measured_for_another(Some(1.5), None));
    }

    #[test]
    fn a_models_k_factor_raises_mean_std_k_unless_turned_off() {
        let config = DetectorConfig::default();
        let k = config.mean_std_k();
        assert_eq!(config.for_model(None), config);
        assert_eq!(config.for_model(Some(1.5)).mean_std_k(), k.map(|k| k * 1.5));
        let off = DetectorConfig {
            calibrated_k: false,
            ..config
        };
        assert_eq!(off.for_model(Some(1.5)), off);
        let mad = DetectorConfig {
            threshold: ThresholdConfig::build(ThresholdKind::Mad, ThresholdParams::default()),
            ..config
        };
        assert_eq!(mad.for_model(Some(1.5)), mad);
    }

    #[test]
    fn every_threshold_finds_the_burst_and_nothing_else() {
        let spot = SpotConfig {
            calibration: 200,
            ..SpotConfig::default()
        };
        let thresholds = [
            ThresholdConfig::Static,
            ThresholdConfig::MeanStd {
                window: 300,
                k: 4.0,
                trim: 0.0,
                exclude: DEFAULT_EXCLUDE,
            },
            ThresholdConfig::Mad {
                window: 300,
                k: 6.0,
            },
            ThresholdConfig::Telemanom {
                window: 300,
                z_max: 10.0,
                prune: 0.13,
            },
            ThresholdConfig::Pot(spot),
            ThresholdConfig::Spot(spot),
            ThresholdConfig::Dspot { spot, depth: 20 },
        ];
        for threshold in thresholds {
            let config = DetectorConfig {
                smoothing: SmoothingConfig::None,
                threshold,
                ..DetectorConfig::default()
            };
            let (decisions, events) = detect_all(&config, 0.5, 10, &errors());
            assert_eq!(decisions.iter().filter(|d| d.is_none()).count(), 5);
            assert_eq!(events.len(), 1, "{threshold:?}: {events:?}");
            let event = events[0];
            assert!(
                event.start >= 405 && event.start <= 408 && event.end >= 410 && event.end <= 414,
                "{threshold:?}: {event:?}"
            );
        }
    }

    /// A point beyond the training range is flagged and scored though its
    /// error is normal, opens one event, and is not flagged again once the
    /// range holds it; without a range, or with the tolerance 0, values are
    /// not judged.
    /// Runs a detector (static threshold 10, window 8) over one-feature
    /// `values`, each point with the same `error`.
    fn judge_values(
        config: &DetectorConfig,
        range: Option<ValueRange>,
        values: &[f32],
        error: f64,
    ) -> Vec<Decision> {
        let mut detector = Detector::new(config, 10.0, 8).with_range(config, range);
        values
            .iter()
            .map(|&v| {
                detector.observe_values(&[v]);
                detector.update(error)
            })
            .collect()
    }

    /// A window that stops moving is flagged though its error is small,
    /// once; without the training windows' spread (an older artifact), or
    /// with the ratio 0, it is not.
    #[test]
    fn a_window_that_stops_moving_is_flagged_whatever_the_error() {
        let moving = |i: usize| if i.is_multiple_of(2) { 0.5_f32 } else { -0.5 };
        let values: Vec<f32> = (0..40)
            .map(|i| if i < 20 { moving(i) } else { 0.2 })
            .collect();
        let range = |quietest: Option<Vec<f64>>| ValueRange {
            min: vec![-1.0],
            max: vec![1.0],
            quietest,
            roughest: None,
            resolution: None,
            daily: None,
            weekly: None,
        };
        let run = |config: &DetectorConfig, range: ValueRange| {
            judge_values(config, Some(range), &values, 0.01)
        };
        let config = DetectorConfig::default();
        let decisions = run(&config, range(Some(vec![0.5])));
        let flat: Vec<usize> = (0..decisions.len())
            .filter(|&i| decisions[i].flatline)
            .collect();
        // The window of 8 points holds only 0.2s from point 27 on.
        assert_eq!(flat, [27]);
        assert!(decisions[27].flagged && decisions[27].score > 0.99);
        assert_eq!(decisions[27].cause, Cause::Stillness);
        assert_eq!(decisions[26].cause, Cause::Error);
        let off = DetectorConfig {
            flatline_ratio: 0.0,
            ..config
        };
        for decisions in [run(&config, range(None)), run(&off, range(Some(vec![0.5])))] {
            assert!(decisions.iter().all(|d| !d.flatline && !d.flagged));
        }
    }

    /// A window that starts to oscillate within the range is flagged
    /// though its error is small, as long as it is rougher than what came
    /// before it; without the training windows' steps (an older artifact),
    /// or with the ratio 0, it is not.
    #[test]
    fn a_window_that_oscillates_is_flagged_whatever_the_error() {
        let slow = |i: usize| (i as f32 / 10.0).sin() * 0.5;
        let values: Vec<f32> = (0..80)
            .map(|i| {
                if i < 40 {
                    slow(i)
                } else {
                    slow(i) + if i.is_multiple_of(2) { 0.3 } else { -0.3 }
                }
            })
            .collect();
        let range = |roughest: Option<Vec<f64>>| ValueRange {
            min: vec![-1.0],
            max: vec![1.0],
            quietest: None,
            roughest,
            resolution: None,
            daily: None,
            weekly: None,
        };
        let run = |config: &DetectorConfig, range: ValueRange| {
            judge_values(config, Some(range), &values, 0.01)
        };
        let config = DetectorConfig::default();
        let decisions = run(&config, range(Some(vec![0.05])));
        let rough: Vec<usize> = (0..decisions.len())
            .filter(|&i| decisions[i].rough)
            .collect();
        // From point 43 on, four of the window's seven steps are 0.3 or more.
        assert_eq!(rough.first(), Some(&43), "{rough:?}");
        assert!(
            rough.iter().all(|&i| i < 40 + 3 * 8),
            "then remembered: {rough:?}"
        );
        assert!(decisions[43].flagged && decisions[43].score > 0.5);
        assert_eq!(decisions[43].cause, Cause::Roughness);
        assert_eq!(decisions[42].cause, Cause::Error);
        let off = DetectorConfig {
            roughness_ratio: 0.0,
            ..config
        };
        for decisions in [
            run(&config, range(None)),
            run(&off, range(Some(vec![0.05]))),
        ] {
            assert!(decisions.iter().all(|d| !d.rough && !d.flagged));
        }
    }

    /// The artifact's resolution reaches the roughness check: counts that
    /// step by 2 where training windows stepped by 1 are one quantum
    /// rougher, not news; without the resolution they are flagged.
    #[test]
    fn the_roughness_check_allows_the_training_datas_resolution() {
        let values: Vec<f32> = (0..80)
            .map(|i| {
                let step = if i < 40 { 1.0 } else { 2.0 };
                if i % 2 == 0 { 10.0 } else { 10.0 + step }
            })
            .collect();
        let range = |resolution: Option<Vec<f64>>| ValueRange {
            min: vec![0.0],
            max: vec![20.0],
            quietest: None,
            roughest: Some(vec![1.0]),
            resolution,
            daily: None,
            weekly: None,
        };
        let config = DetectorConfig::default();
        let rough = |resolution| {
            judge_values(&config, Some(range(resolution)), &values, 0.01)
                .iter()
                .any(|d| d.rough)
        };
        assert!(!rough(Some(vec![1.0])));
        assert!(rough(None));

        // A detector saved before the resolution was kept takes it from
        // the artifact as it resumes, once.
        let mut resumed = Detector::new(&config, 10.0, 8).with_range(&config, Some(range(None)));
        let with = range(Some(vec![1.0]));
        assert!(resumed.resume_window_checks(&config, Some(&with), 8));
        assert!(!resumed.resume_window_checks(&config, Some(&with), 8));
        let flagged = values.iter().any(|&v| {
            resumed.observe_values(&[v]);
            resumed.update(0.01).rough
        });
        assert!(!flagged);
    }

    /// Days of 8 points, busy in points 2 to 5 on the first five days of
    /// every seven, but on the days in `holidays` (counted from 0).
    fn working_week(days: std::ops::Range<usize>, holidays: &[usize]) -> Vec<f32> {
        (days.start * 8..days.end * 8)
            .map(|i| {
                let (day, hour) = (i / 8, i % 8);
                let busy = day % 7 < 5 && (2..6).contains(&hour) && !holidays.contains(&day);
                f32::from(u8::from(busy)) * 3.0 + ((i * 7919) % 13) as f32 / 100.0
            })
            .collect()
    }

    /// A weekday shaped like a weekend day differs from its day before no
    /// more than a Saturday does from its Friday, so the day's guard lets
    /// it be; the week's guard flags it, and only it (its echo a week later
    /// is within the windows it remembers). A detector resumed from a state
    /// saved before the week's guard existed starts it.
    #[test]
    fn a_holiday_is_flagged_by_the_weeks_guard_alone() {
        let (window, day, week) = (8, 8, 56);
        let training: Vec<f64> = working_week(0..21, &[])
            .into_iter()
            .map(f64::from)
            .collect();
        let bound = |period| {
            seasonal::largest_cycle_differences([&training[..]], 1, window, period)
                .map(|largest| CycleBound { period, largest })
        };
        let range = ValueRange {
            min: vec![-1.0],
            max: vec![4.0],
            quietest: None,
            roughest: None,
            resolution: None,
            daily: bound(day),
            weekly: bound(week),
        };
        // Weeks 0 and 1 fill the guards; day 17, the fourth of week 2, is off.
        let live = working_week(0..28, &[17]);
        let holiday = 17 * day + 2..17 * day + 6 + window;
        let seasonal_rows = |config: &DetectorConfig, range: &ValueRange| -> Vec<usize> {
            judge_values(config, Some(range.clone()), &live, 0.01)
                .iter()
                .enumerate()
                .filter_map(|(row, d)| d.seasonal.then_some(row))
                .collect()
        };
        let config = DetectorConfig::default();
        let flagged = seasonal_rows(&config, &range);
        assert!(!flagged.is_empty(), "the holiday is found");
        assert!(
            flagged.iter().all(|row| holiday.contains(row)),
            "{flagged:?}"
        );
        let day_alone = DetectorConfig {
            weekly_ratio: 0.0,
            ..config
        };
        assert_eq!(seasonal_rows(&day_alone, &range), Vec::<usize>::new());

        let mut resumed = Detector::new(&config, 10.0, window).with_range(
            &config,
            Some(ValueRange {
                weekly: None,
                ..range.clone()
            }),
        );
        assert!(resumed.resume_window_checks(&config, Some(&range), window));
        assert!(!resumed.resume_window_checks(&config, Some(&range), window));
        let found = live.iter().any(|&v| {
            resumed.observe_values(&[v]);
            resumed.update(0.01).seasonal
        });
        assert!(found, "the resumed detector's week guard judges");
    }

    #[test]
    fn values_beyond_the_training_range_are_flagged_whatever_the_error() {
        let range = ValueRange {
            min: vec![-1.0],
            max: vec![1.0],
            quietest: None,
            roughest: None,
            resolution: None,
            daily: None,
            weekly: None,
        };
        let run = |config: &DetectorConfig, range: Option<ValueRange>| {
            judge_values(config, range, &[0.5, 1.05, 1.5, 1.5, 0.0], 1.0)
        };
        let config = DetectorConfig {
            threshold: ThresholdConfig::Static,
            ..DetectorConfig::default()
        };
        let decisions = run(&config, Some(range.clone()));
        let flags: Vec<bool> = decisions.iter().map(|d| d.out_of_range).collect();
        assert_eq!(flags, [false, false, true, false, false]);
        assert!(decisions[2].flagged && decisions[2].score > 0.5);
        // 1.05 is within the tolerance, unflagged, yet scored by the range
        // check above the error's 1/11.
        let causes: Vec<Cause> = decisions.iter().map(|d| d.cause).collect();
        assert_eq!(
            causes,
            [
                Cause::Error,
                Cause::Range,
                Cause::Range,
                Cause::Error,
                Cause::Error
            ]
        );
        assert!(matches!(
            decisions[2].event,
            Some(EventChange::Started { .. })
        ));
        // The static threshold alone: error 1 against 10.
        assert!((decisions[0].score - 1.0 / 11.0).abs() < 1e-9);
        let off = DetectorConfig {
            range_tolerance: 0.0,
            ..config
        };
        for decisions in [run(&config, None), run(&off, Some(range))] {
            assert!(decisions.iter().all(|d| !d.flagged && !d.out_of_range));
        }
    }

    #[test]
    fn the_score_is_one_half_at_the_threshold_and_monotone() {
        let mut detector = Detector::new(
            &DetectorConfig {
                smoothing: SmoothingConfig::None,
                threshold: ThresholdConfig::Static,
                ..DetectorConfig::default()
            },
            2.0,
            32,
        );
        let scores: Vec<f64> = [0.0, 1.0, 2.0, 6.0]
            .iter()
            .map(|&e| detector.update(e).score)
            .collect();
        assert_eq!(scores, vec![0.0, 1.0 / 3.0, 0.5, 0.75]);
    }

    #[test]
    fn learning_thresholds_flag_nothing_while_warming_up_and_static_does() {
        // A huge error on the very first point: only `static`, which needs
        // no history, may call it.
        let mut errors: Vec<Option<f64>> = vec![Some(50.0)];
        errors.extend(errors_without_gap());
        let judged = |threshold| {
            let config = DetectorConfig {
                smoothing: SmoothingConfig::None,
                threshold,
                min_history: 100,
                ..DetectorConfig::default()
            };
            detect_all(&config, 0.5, 10, &errors)
        };
        let (decisions, events) = judged(ThresholdConfig::MeanStd {
            window: 300,
            k: 4.0,
            trim: 0.0,
            exclude: 0.0,
        });
        for decision in decisions[..100].iter().flatten() {
            assert_eq!(
                (decision.threshold, decision.score, decision.flagged),
                (None, 0.0, false)
            );
        }
        assert!(
            decisions[100..]
                .iter()
                .flatten()
                .all(|d| d.threshold.is_some())
        );
        assert_eq!(events.len(), 1, "only the burst: {events:?}");
        let (decisions, events) = judged(ThresholdConfig::Static);
        assert_eq!(decisions[0].map(|d| d.threshold), Some(Some(0.5)));
        assert_eq!(events.first().map(|e| e.start), Some(0));
    }

    #[test]
    fn a_coarse_flag_holds_until_the_next_coarse_point_and_joins_the_events() {
        // Fine errors are flat, so only the coarse scale can flag. Every
        // fourth row completes a coarse point; one coarse burst at row 403.
        let fine: Vec<Option<f64>> = (0..600).map(|_| Some(0.1)).collect();
        let coarse: Vec<Option<f64>> = (0..600)
            .map(|row| {
                (row % 4 == 3).then(|| {
                    let base = 0.1 + ((row * 7919) % 101) as f64 / 2000.0;
                    if row == 403 { base + 1.0 } else { base }
                })
            })
            .collect();
        let config = DetectorConfig {
            smoothing: SmoothingConfig::None,
            threshold: ThresholdConfig::MeanStd {
                window: 300,
                k: 4.0,
                trim: 0.0,
                exclude: DEFAULT_EXCLUDE,
            },
            min_history: 100,
            events: EventConfig::default(),
            range_tolerance: DEFAULT_RANGE_TOLERANCE,
            flatline_ratio: DEFAULT_FLATLINE_RATIO,
            roughness_ratio: DEFAULT_ROUGHNESS_RATIO,
            seasonal_ratio: DEFAULT_SEASONAL_RATIO,
            weekly_ratio: DEFAULT_WEEKLY_RATIO,
            calibrated_k: true,
        };
        let (alone, events_alone) = detect_all(&config, 0.5, 10, &fine);
        assert!(events_alone.is_empty());
        let (decisions, events) = detect_all_scales(
            &config,
            0.5,
            10,
            &fine,
            Some(CoarseErrors {
                multiple: 4,
                calibrated: 0.5,
                errors: &coarse,
            }),
            None,
        );
        // Rows 403..=406 see the burst's coarse point; row 407 the next one.
        assert_eq!(
            events,
            vec![Event {
                start: 403,
                end: 406
            }]
        );
        let flagged: Vec<usize> = (0..600)
            .filter(|&row| decisions[row].is_some_and(|d| d.flagged))
            .collect();
        assert_eq!(flagged, vec![403, 404, 405, 406]);
        for row in 403..=406 {
            let (with, without) = (decisions[row], alone[row]);
            assert!(with.is_some_and(|d| d.score > 0.5), "{with:?}");
            assert_eq!(with.map(|d| d.cause), Some(Cause::Coarse));
            // The fine scale's own figures are unchanged.
            assert_eq!(with.map(|d| d.threshold), without.map(|d| d.threshold));
        }
        // The coarse warm-up is in coarse points: 100 / 4 = 25 of them.
        assert_eq!(config.coarsened(4).min_history, 25);
    }

    #[test]
    fn a_decision_never_depends_on_later_points() {
        let config = DetectorConfig::default();
        let all = errors();
        let (full, _) = detect_all(&config, 0.5, 10, &all);
        let (prefix, _) = detect_all(&config, 0.5, 10, &all[..420]);
        assert_eq!(&full[..420], &prefix[..]);
    }
}

#[cfg(test)]
mod calibration_tests {
    use super::*;

    /// Noisy errors around 0.1 with a peak of `peak` (3 points wide) every
    /// `period` points: a normal series whose model misses one sharp
    /// feature of each cycle by a little, differently each time.
    fn periodic(points: usize, period: usize, peak: f64) -> Vec<Option<f64>> {
        (0..points)
            .map(|i| {
                let noise = ((i * 7919) % 101) as f64 / 2000.0;
                let cycle = i / period;
                let wobble = ((cycle * 37) % 11) as f64 / 10.0;
                Some(if i % period < 3 {
                    0.1 + noise + peak * (0.6 + 0.4 * wobble)
                } else {
                    0.1 + noise
                })
            })
            .collect()
    }

    fn detect(config: &DetectorConfig, errors: &[Option<f64>]) -> (usize, usize) {
        let (decisions, events) = detect_all(config, 1.0, 16, errors);
        (events.len(), marginal_events(&decisions, &events))
    }

    #[test]
    fn recurring_marginal_peaks_raise_k_until_normal_data_is_quiet() {
        let config = DetectorConfig::default();
        let normal = periodic(3000, 60, 0.1);
        let (events, marginal) = detect(&config, &normal);
        assert!(
            marginal > 0,
            "the test needs marginal false events at k=4 ({events} events)"
        );
        let calibration = calibrate_k(&config, 1.0, 16, &normal, None)
            .unwrap_or_else(|| panic!("mean-std calibrates"));
        assert!(
            calibration.k > 4.5 && calibration.k <= 8.0,
            "{calibration:?}"
        );
        assert_eq!(calibration.marginal_events, marginal);
        let calibrated = config.with_mean_std_k(calibration.k);
        assert_eq!(detect(&calibrated, &normal).1, 0);
        // One grid step (k/8) above the smallest quiet k: a step lower is
        // still quiet, two steps lower are not.
        let quiet = config.with_mean_std_k(calibration.k - 0.5);
        assert_eq!(detect(&quiet, &normal).1, 0);
        let loud = config.with_mean_std_k(calibration.k - 1.0);
        assert!(detect(&loud, &normal).1 > 0);
        // A later anomaly far above the normal peaks is still found.
        let mut later = periodic(3000, 60, 0.1);
        for e in later.iter_mut().skip(2000).take(20) {
            *e = e.map(|v| v + 2.0);
        }
        let (decisions, events) = detect_all(&calibrated, 1.0, 16, &later);
        assert!(events.iter().any(|e| e.start >= 2000 && e.start < 2020));
        assert_eq!(marginal_events(&decisions, &events), 0);
    }

    #[test]
    fn an_anomaly_far_above_the_threshold_does_not_raise_k() {
        let config = DetectorConfig::default();
        let mut errors = periodic(3000, 60, 0.0);
        for e in errors.iter_mut().skip(1500).take(10) {
            *e = e.map(|v| v + 2.0);
        }
        assert_eq!(detect(&config, &errors), (1, 0), "one event, not marginal");
        let calibration = calibrate_k(&config, 1.0, 16, &errors, None);
        // Quiet at k = 4 already: one step of margin and no more.
        assert_eq!(
            calibration,
            Some(KCalibration {
                k: 4.5,
                marginal_events: 0
            })
        );
    }

    #[test]
    fn only_mean_std_is_calibrated() {
        let config = DetectorConfig {
            threshold: ThresholdConfig::Mad {
                window: 300,
                k: 6.0,
            },
            ..DetectorConfig::default()
        };
        assert_eq!(
            calibrate_k(&config, 1.0, 16, &periodic(1000, 60, 0.1), None),
            None
        );
        assert_eq!(config.with_mean_std_k(9.0), config);
    }
}
