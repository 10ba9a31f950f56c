//! Command-line interface: clap definitions and the command handlers. This
//! is the edge where library errors become `anyhow` reports.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use anomalyd::config::ServeConfig;
use anomalyd::data::window::Centering;
use anomalyd::data::{CsvOptions, FillPolicy, OrderPolicy, ScalerKind, Series};
use anomalyd::detect::{
    self, DetectorConfig, EventConfig, SmoothingConfig, ThresholdConfig, ThresholdKind,
    ThresholdParams,
};
use anomalyd::device::DeviceSpec;
use anomalyd::eval::{Dataset, EvalConfig, Protocol, Report, evaluate_series};
use anomalyd::model::artifact::TrainedModel;
use anomalyd::model::{
    Activation, ConvAeConfig, DeepAeConfig, DenseAeConfig, LstmAeConfig, ModelConfig, ModelKind,
    PcaConfig, VaeConfig,
};
use anomalyd::score::{ScaleErrors, detect_rows, point_rows, score_scales, window_first_row};
use anomalyd::train::{
    Aggregate, Center, Corruption, DataConfig, EpochStats, Regularizers, TimeOfDay, TrainConfig,
    TrainRequest, train,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "anomalyd",
    version,
    about = "Streaming time-series anomaly detection with autoencoders",
    after_help = "Examples:\n  anomalyd train --data series.csv --window 32 --kind dense --out model/\n  anomalyd score --model model/ --data series.csv --out scores.csv\n  anomalyd inspect model/"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole loop on one machine: mock Kafka, replayed series, a model, the daemon.
    #[command(
        after_help = "Examples:\n  anomalyd demo\n  anomalyd demo --rows 4000 --rate 1000 --listen 127.0.0.1:9898"
    )]
    Demo(DemoArgs),
    /// Train an autoencoder on CSV series and write a model artifact.
    #[command(
        after_help = "Example:\n  anomalyd train --data ../shared/data/nab/data/realKnownCause/machine_temperature_system_failure.csv \\\n      --window 32 --kind lstm --epochs 20 --out models/machine-temp"
    )]
    Train(TrainArgs),
    /// Score a CSV series with a trained model: one row of errors per input row.
    #[command(
        after_help = "Example:\n  anomalyd score --model models/machine-temp \\\n      --data ../shared/data/nab/data/realKnownCause/machine_temperature_system_failure.csv --out scores.csv"
    )]
    Score(ScoreArgs),
    /// Train, detect causally and score against labelled data (NAB layout).
    #[command(
        after_help = "Example:\n  anomalyd eval --dataset ../shared/data/nab --protocol orion \\\n      --groups artificialWithAnomaly,realAWSCloudwatch --kind dense --out eval-out"
    )]
    Eval(Box<EvalArgs>),
    /// Run the daemon: consume Kafka, score windows, export metrics and anomaly events.
    #[command(
        after_help = "Examples:\n  anomalyd serve --config anomalyd.toml\n  anomalyd serve --brokers localhost:9092 --topic metrics --group anomalyd \\\n      --model models/machine-temp --listen 127.0.0.1:9898"
    )]
    Serve(ServeArgs),
    /// Measure scoring windows/s and training-step time of one model shape on one device.
    #[command(
        after_help = "Prints one JSON line, with the flags and keys of ../shared/bench/pytorch_reference.py.\n\nExamples:\n  anomalyd bench --kind lstm --window 64 --hidden 64 --features 1 --threads 2\n  anomalyd bench --kind dense --device cuda:0 --infer-batch 4096"
    )]
    Bench(BenchArgs),
    /// Print a model artifact's manifest for a human.
    #[command(
        after_help = "Example:\n  anomalyd inspect models/machine-temp\n  anomalyd inspect models/machine-temp --json"
    )]
    Inspect(InspectArgs),
}

/// Options shared by every command that reads CSV.
#[derive(Debug, Args)]
pub struct CsvArgs {
    /// Feature columns to use, by header name (default: every column but the timestamp and an unnamed row index).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// What to do with missing cells (empty, NaN, NA, null...): an error
    /// (none), carry the previous value forward, or interpolate linearly in
    /// time.
    #[arg(long, value_enum, default_value_t = FillPolicy::None)]
    pub fill: FillPolicy,
    /// What to do with rows whose timestamp repeats or goes backwards: reject
    /// the file (error), skip the row (drop), or keep it in file order (keep).
    #[arg(long, value_enum, default_value_t = OrderPolicy::Error)]
    pub unordered: OrderPolicy,
}

impl CsvArgs {
    fn options(&self) -> CsvOptions {
        CsvOptions {
            columns: self.columns.clone(),
            fill: self.fill,
            unordered: self.unordered,
        }
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training CSV file; repeat for several series (no window spans two files).
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub csv: CsvArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output artifact directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Take the training data as normal and record in the artifact the
    /// factor mean-std's k (the default detector's, or --detector-config's)
    /// must be raised by, in steps of 1/8 up to 2, for it to raise no
    /// marginal event there, plus one step (`threshold.k_factor`, applied by
    /// `serve` and `score`; as `eval --calibrate-k` does with a train file).
    /// `false` records none.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub calibrate_k: bool,
    /// The daemon's configuration file (`serve --config`): calibrate k for
    /// its `[detector]` (k, smoothing, trailing window, events) rather than
    /// for the default detector. Read before training; a field it gets
    /// wrong stops `train`, named.
    #[arg(long, value_name = "ANOMALYD_TOML")]
    pub detector_config: Option<PathBuf>,
    /// Compute device: cpu (pure Rust), libtorch (LibTorch on the CPU) or
    /// cuda[:N] (LibTorch on a GPU); the last two need the `tch` build.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Windowing, model and optimisation flags, shared by `train` and `eval`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Window length T in points (rows, unless --aggregate averages them).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Rows between the starts of consecutive training windows.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Consecutive rows averaged into one point before windowing: a number,
    /// or `auto` for about 3000 points of training history at most.
    /// Window, stride and the detector's counts are then in points.
    #[arg(long, default_value_t = Aggregate::Auto)]
    pub aggregate: Aggregate,
    /// Multi-scale: also train a coarse model on points of this many
    /// (aggregated) points each; a point is anomalous when either model
    /// flags it. 1 trains one model. On training data that would give the
    /// coarse model fewer than 200 windows, the multiple steps down (not
    /// under 2) until it has them.
    #[arg(long, default_value_t = anomalyd::train::DEFAULT_COARSE)]
    pub coarse: usize,
    /// Centre each window (subtract its per-feature mean) before the model
    /// sees it, so that the model judges shape rather than level: `main`
    /// for the main model only (the coarse model keeps levels), `all` for
    /// both; `auto` fits the main model on levels and on detrended windows
    /// and keeps the detrended fit when its median validation error is
    /// under 0.7 times the other's (series whose level wanders: random
    /// walks, trends); deep, conv and LSTM models keep levels.
    #[arg(long, value_enum, default_value_t = Center::default())]
    pub center: Center,
    /// Where windows are centred, take out each window's least-squares line
    /// (level and slope) rather than its mean alone: for series that trend,
    /// or whose slow cycles a window sees as a ramp.
    #[arg(long)]
    pub detrend: bool,
    /// Which models also take the time of day (UTC; two inputs derived
    /// from each row's timestamp), so that they learn what each hour looks
    /// like: the coarse model of a multi-scale artifact (`coarse`), every
    /// model (`all`, which `--time-of-day` alone means), or none; `auto`
    /// gives it to the coarse model (and to an LSTM's main model) when the
    /// training data span at least a day and its window less than one.
    #[arg(long, value_enum, default_value_t = TimeOfDay::default(),
          num_args = 0..=1, default_missing_value = "all")]
    pub time_of_day: TimeOfDay,
    /// Last fraction of each file held out (chronologically) for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Normalisation, fitted on the training rows only.
    #[arg(long, value_enum, default_value_t = ScalerKind::Zscore)]
    pub scaler: ScalerKind,
    /// Model kind.
    #[arg(long, value_enum, default_value_t = ModelKind::Dense)]
    pub kind: ModelKind,
    /// Code size: dense code width, lstm hidden size, vae latent size, pca
    /// components, conv code channels; deep takes it as the last --hidden
    /// layer when --hidden is not given. Default: 8 (lstm 32, conv 4).
    #[arg(long)]
    pub code: Option<usize>,
    /// deep: encoder layer widths, the last is the code (default 64,16);
    /// vae: the first entry is the hidden width (default 64).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// dense/deep nonlinearity (default: tanh for dense, relu for deep).
    #[arg(long, value_enum)]
    pub activation: Option<Activation>,
    /// conv: channels of the hidden convolution.
    #[arg(long, default_value_t = 16)]
    pub channels: usize,
    /// conv: odd kernel width.
    #[arg(long, default_value_t = 5)]
    pub kernel: usize,
    /// vae: weight of the KL term.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after this many epochs without a validation improvement.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Clip the gradient's global L2 norm (0 turns clipping off).
    #[arg(long, default_value_t = 1.0)]
    pub clip_grad_norm: f32,
    /// Sparse AE: weight of the L1 penalty on the code.
    #[arg(long, value_name = "L1")]
    pub sparse: Option<f64>,
    /// Denoising AE: standard deviation of Gaussian input noise (normalised scale).
    #[arg(long, value_name = "SIGMA", conflicts_with = "mask")]
    pub denoise: Option<f64>,
    /// Denoising AE with masking noise: the fraction of inputs zeroed.
    #[arg(long, value_name = "FRACTION")]
    pub mask: Option<f64>,
    /// Contractive AE: weight of the encoder-Jacobian penalty (dense with tanh/sigmoid).
    #[arg(long, value_name = "LAMBDA")]
    pub contractive: Option<f64>,
    /// Quantile of the validation window errors used as the default threshold.
    #[arg(long, default_value_t = anomalyd::train::DEFAULT_THRESHOLD_QUANTILE)]
    pub threshold_quantile: f64,
    /// Fit twice: the second fit, from scratch, leaves out this fraction of
    /// the training windows, those the first fit reconstructs worst (0 fits
    /// once).
    #[arg(long, default_value_t = anomalyd::train::DEFAULT_REFIT_DROP)]
    pub refit_drop: f64,
}

impl ModelArgs {
    fn data_config(&self) -> DataConfig {
        DataConfig {
            window: self.window,
            stride: self.stride,
            val_fraction: self.val_fraction,
            scaler: self.scaler,
            aggregate: self.aggregate,
            coarse: self.coarse,
            center: self.center,
            detrend: self.detrend,
            time_of_day: self.time_of_day,
        }
    }

    /// The model for data of `features` columns (training gives each scale
    /// its derived inputs).
    fn model_config(&self, features: usize) -> ModelConfig {
        let (window, code) = (self.window, self.code);
        match self.kind {
            ModelKind::Dense => ModelConfig::Dense(
                DenseAeConfig::new(window, features, code.unwrap_or(8))
                    .with_activation(self.activation.unwrap_or(Activation::Tanh)),
            ),
            ModelKind::Deep => {
                let hidden = match (&self.hidden, code) {
                    (Some(hidden), _) => hidden.clone(),
                    (None, Some(code)) => vec![64, code],
                    (None, None) => vec![64, 16],
                };
                ModelConfig::Deep(
                    DeepAeConfig::new(window, features, hidden)
                        .with_activation(self.activation.unwrap_or(Activation::Relu)),
                )
            }
            ModelKind::Conv => ModelConfig::Conv(
                ConvAeConfig::new(window, features)
                    .with_channels(self.channels)
                    .with_code_channels(code.unwrap_or(4))
                    .with_kernel(self.kernel),
            ),
            ModelKind::Lstm => {
                ModelConfig::Lstm(LstmAeConfig::new(window, features, code.unwrap_or(32)))
            }
            ModelKind::Vae => {
                let hidden = self.hidden.as_ref().and_then(|h| h.first().copied());
                ModelConfig::Vae(
                    VaeConfig::new(window, features, code.unwrap_or(8))
                        .with_hidden(hidden.unwrap_or(64))
                        .with_beta(self.beta),
                )
            }
            ModelKind::Pca => ModelConfig::Pca(PcaConfig::new(window, features, code.unwrap_or(8))),
        }
    }

    fn train_config(&self) -> TrainConfig {
        let corruption = match (self.denoise, self.mask) {
            (Some(sigma), _) => Some(Corruption::Gaussian { sigma }),
            (None, Some(fraction)) => Some(Corruption::Mask { fraction }),
            (None, None) => None,
        };
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            seed: self.seed,
            patience: self.patience,
            grad_clip_norm: (self.clip_grad_norm > 0.0).then_some(self.clip_grad_norm),
            regularizers: Regularizers {
                sparse_l1: self.sparse,
                corruption,
                contractive: self.contractive,
            },
            threshold_quantile: self.threshold_quantile,
            refit_drop: self.refit_drop,
        }
    }
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Model artifact directory written by `anomalyd train`.
    #[arg(long)]
    pub model: PathBuf,
    /// CSV file to score.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub csv: CsvArgs,
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// The daemon's configuration file (`serve --config`): judge with its
    /// `[detector]`, as the daemon would judge this data, instead of the
    /// detector flags (it cannot be combined with them).
    #[arg(long, value_name = "ANOMALYD_TOML", conflicts_with = "DetectorArgs")]
    pub detector_config: Option<PathBuf>,
    /// Output CSV (`-` for standard output).
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// Compute device: cpu (pure Rust), libtorch (LibTorch on the CPU) or
    /// cuda[:N] (LibTorch on a GPU); the last two need the `tch` build.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// How reconstruction errors become anomalies (see `anomalyd::detect`).
#[derive(Debug, Args)]
pub struct DetectorArgs {
    /// Error smoothing before thresholding.
    #[arg(long, value_enum, default_value_t = SmoothingKind::Ewma)]
    pub smoothing: SmoothingKind,
    /// EWMA weight of the newest error.
    #[arg(long, default_value_t = detect::DEFAULT_ALPHA)]
    pub alpha: f64,
    /// Trailing-mean smoothing length.
    #[arg(long, default_value_t = 10)]
    pub smooth_window: usize,
    /// Threshold method.
    #[arg(long, value_enum, default_value_t = detect::DEFAULT_THRESHOLD)]
    pub threshold: ThresholdKind,
    /// Trailing window of meanstd (default 5000), mad and telemanom
    /// (default 2000), in points.
    #[arg(long)]
    pub threshold_window: Option<usize>,
    /// k of meanstd (default 4) and mad (default 6).
    #[arg(long)]
    pub k: Option<f64>,
    /// meanstd: fraction of the largest values in the trailing window left
    /// out of its mean and σ (default 0.01).
    #[arg(long)]
    pub trim: Option<f64>,
    /// meanstd: points that crossed the threshold stay out of its mean and
    /// σ, at most this many model windows' worth of them in the trailing
    /// window, and at most one window's worth per run of flags (main scale;
    /// default 2, 0 counts every point).
    #[arg(long, value_name = "WINDOWS")]
    pub exclude: Option<f64>,
    /// telemanom: largest z tried (default 10).
    #[arg(long)]
    pub z_max: Option<f64>,
    /// telemanom: minimum relative drop between peaks that survive pruning (default 0.13).
    #[arg(long)]
    pub prune: Option<f64>,
    /// pot/spot/dspot: risk q (default 0.001).
    #[arg(long)]
    pub risk: Option<f64>,
    /// pot/spot/dspot: initial quantile (default 0.98).
    #[arg(long)]
    pub init_quantile: Option<f64>,
    /// pot/spot/dspot: points before the first fit (default 400).
    #[arg(long)]
    pub calibration: Option<usize>,
    /// dspot: moving-average depth (default 50).
    #[arg(long)]
    pub drift_depth: Option<usize>,
    /// Points a trailing threshold needs before replacing the static one.
    #[arg(long, default_value_t = detect::DEFAULT_MIN_HISTORY)]
    pub min_history: usize,
    /// Flagged points needed before a run is an event.
    #[arg(long, default_value_t = detect::DEFAULT_EVENTS.min_length)]
    pub min_length: usize,
    /// Unflagged points allowed inside one event.
    #[arg(long, default_value_t = detect::DEFAULT_EVENTS.merge_gap)]
    pub merge_gap: usize,
    /// Points after an event during which new flags are ignored.
    #[arg(long, default_value_t = detect::DEFAULT_EVENTS.cooldown)]
    pub cooldown: usize,
    /// The score a run of flags must reach to become an event (0.5: the
    /// threshold, any flag).
    #[arg(long, value_name = "SCORE", default_value_t = detect::DEFAULT_EVENTS.min_peak)]
    pub min_peak: f64,
    /// A point whose values leave the model's training range (widened by
    /// every point since) by more than this fraction of it is flagged;
    /// 0 turns the check off.
    #[arg(long, value_name = "FRACTION", default_value_t = detect::DEFAULT_RANGE_TOLERANCE)]
    pub range_tolerance: f64,
    /// Flag a window whose spread falls below this fraction of the quietest
    /// training window's (a signal that stopped moving: a stuck sensor, a
    /// frozen counter); 0 turns the check off.
    #[arg(long, default_value_t = anomalyd::detect::DEFAULT_FLATLINE_RATIO)]
    pub flatline_ratio: f64,
    /// Flag a window whose median step (the absolute change from one point
    /// to the next) exceeds this multiple of the roughest training
    /// window's (a signal that oscillates or turns noisy); 0 turns the
    /// check off.
    #[arg(long, default_value_t = anomalyd::detect::DEFAULT_ROUGHNESS_RATIO)]
    pub roughness_ratio: f64,
    /// Where the data's interval divides a day (into at most 1440 points),
    /// flag a window whose median difference from the same points a day
    /// earlier exceeds this multiple of the largest training window's (a
    /// daily peak missing, late or low); 0 turns the check off.
    #[arg(long, default_value_t = anomalyd::detect::DEFAULT_SEASONAL_RATIO)]
    pub seasonal_ratio: f64,
    /// Where the data's interval divides a week (into at most 1440 points)
    /// and training saw two weeks, flag a window whose median
    /// difference from the same points a week earlier exceeds this multiple
    /// of the largest training window's (a weekday shaped like a weekend);
    /// 0 turns it off.
    #[arg(long, default_value_t = anomalyd::detect::DEFAULT_WEEKLY_RATIO)]
    pub weekly_ratio: f64,
    /// Multiply mean-std's k by the factor `anomalyd train` calibrated on
    /// the model's training data (`threshold.k_factor`), where the artifact
    /// has one. Models `eval` trains have none: it calibrates on train
    /// files itself (`--calibrate-k`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub calibrated_k: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmoothingKind {
    None,
    Ewma,
    Mean,
}

impl DetectorArgs {
    fn config(&self) -> anyhow::Result<DetectorConfig> {
        let smoothing = match self.smoothing {
            SmoothingKind::None => SmoothingConfig::None,
            SmoothingKind::Ewma => SmoothingConfig::Ewma { alpha: self.alpha },
            SmoothingKind::Mean => SmoothingConfig::Mean {
                window: self.smooth_window,
            },
        };
        let params = ThresholdParams {
            window: self.threshold_window,
            k: self.k,
            trim: self.trim,
            exclude: self.exclude,
            z_max: self.z_max,
            prune: self.prune,
            risk: self.risk,
            init_quantile: self.init_quantile,
            calibration: self.calibration,
            depth: self.drift_depth,
        };
        let config = DetectorConfig {
            smoothing,
            threshold: ThresholdConfig::build(self.threshold, params),
            events: EventConfig {
                min_length: self.min_length,
                merge_gap: self.merge_gap,
                cooldown: self.cooldown,
                min_peak: self.min_peak,
            },
            min_history: self.min_history,
            range_tolerance: self.range_tolerance,
            flatline_ratio: self.flatline_ratio,
            roughness_ratio: self.roughness_ratio,
            seasonal_ratio: self.seasonal_ratio,
            weekly_ratio: self.weekly_ratio,
            calibrated_k: self.calibrated_k,
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset directory: data/<group>/<name>.csv, labels/combined_windows.json, optional train/.
    #[arg(long)]
    pub dataset: PathBuf,
    /// orion: train on the series (or its train file); streaming: NAB's rules.
    #[arg(long, value_enum, default_value_t = Protocol::Orion)]
    pub protocol: Protocol,
    /// Groups to evaluate (default: all).
    #[arg(long, value_delimiter = ',')]
    pub groups: Option<Vec<String>>,
    /// Streaming: retrain on everything seen so far every N rows.
    #[arg(long)]
    pub retrain_every: Option<usize>,
    /// Feature columns, by header name (default: every column after the
    /// timestamp but those named like labels: is_anomaly, is_anomalous,
    /// anomaly, label, labels, changepoint, attack; and, beside them, a
    /// generator's trend, noise and seasonality columns).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Take the rows the model was trained on as normal (orion: a series'
    /// train file, when it has one; streaming: the probationary period) and
    /// raise mean-std's k in steps of --k/8 until they raise no marginal
    /// event (one whose smoothed error stays under 1.5× the threshold),
    /// then one step more, at most twice --k, as `train` does for the
    /// daemon. `false` keeps --k everywhere.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub calibrate_k: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// Rows with repeated or backward timestamps (default here: drop).
    #[arg(long, value_enum, default_value_t = OrderPolicy::Drop)]
    pub unordered: OrderPolicy,
    /// Missing cells (empty, NaN, NA, null...): interpolate linearly in time
    /// (the default here, as benchmark pipelines impute; each series' count
    /// is in report.json), carry the previous value forward, or stop with
    /// the file, line and column (none).
    #[arg(long, value_enum, default_value_t = FillPolicy::Interpolate)]
    pub fill: FillPolicy,
    /// Skip the per-series PNG plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Output directory for report.json, report.md, plots/ and series/ (one CSV per series: error, threshold, score, flags, labels).
    #[arg(long)]
    pub out: PathBuf,
    /// Compute device: cpu (pure Rust), libtorch (LibTorch on the CPU) or
    /// cuda[:N] (LibTorch on a GPU); the last two need the `tch` build.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows replayed per series.
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
    /// Rows per second per series (accelerated time: one row is one minute).
    #[arg(long, default_value_t = 400.0)]
    pub rate: f64,
    /// Bind address of /metrics, /healthz and /readyz while the demo runs.
    #[arg(long, default_value = "127.0.0.1:9898")]
    pub listen: std::net::SocketAddr,
    /// A trained univariate model to use instead of training one.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print the final summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Compute device: cpu (pure Rust), libtorch (LibTorch on the CPU) or
    /// cuda[:N] (LibTorch on a GPU); the last two need the `tch` build.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

fn run_demo(args: &DemoArgs) -> Result<()> {
    let work_dir = std::env::temp_dir().join(format!("anomalyd-demo-{}", std::process::id()));
    let options = anomalyd::demo::DemoOptions {
        rows: args.rows,
        rate: args.rate,
        listen: args.listen,
        model: args.model.clone(),
        work_dir: work_dir.clone(),
        seed: args.seed,
        device: args.device,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let quiet = args.json;
    let summary = runtime.block_on(anomalyd::demo::run(options, &mut |line| {
        if !quiet {
            println!("{line}");
        }
    }));
    let _ = std::fs::remove_dir_all(&work_dir);
    let summary = summary?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    println!("\nmetrics were served on http://{}/metrics", summary.http);
    println!(
        "{:<16} {:>9} {:>7} {:>7}  events (rows)",
        "series", "labelled", "found", "false"
    );
    for s in &summary.series {
        println!(
            "{:<16} {:>9} {:>7} {:>7}  {:?}",
            s.series,
            s.labelled.len(),
            s.found,
            s.false_events,
            s.events
        );
    }
    Ok(())
}

/// Flags and `ANOMALYD_*` variables override the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (every field documented in the README).
    #[arg(long, env = "ANOMALYD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long, env = "ANOMALYD_BROKERS")]
    pub brokers: Option<String>,
    /// Input topic; repeat or separate with commas; `^regex` subscribes by pattern.
    #[arg(long = "topic", env = "ANOMALYD_TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Consumer group id.
    #[arg(long, env = "ANOMALYD_GROUP")]
    pub group: Option<String>,
    /// Static group membership (librdkafka's `group.instance.id`): a member
    /// that comes back under the same id within `session.timeout.ms` gets
    /// its partitions back without a rebalance, so its state file still
    /// covers them. Give each replica its own (a StatefulSet's pod name).
    #[arg(long, env = "ANOMALYD_GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,
    /// Model artifact directory.
    #[arg(long, env = "ANOMALYD_MODEL")]
    pub model: Option<PathBuf>,
    /// Bind address of /metrics, /healthz and /readyz.
    #[arg(long, env = "ANOMALYD_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Topic for anomaly events.
    #[arg(long, env = "ANOMALYD_EVENTS_TOPIC")]
    pub events_topic: Option<String>,
    /// Topic for invalid messages.
    #[arg(long, env = "ANOMALYD_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Compute device.
    #[arg(long, env = "ANOMALYD_DEVICE")]
    pub device: Option<DeviceSpec>,
    /// Where series state is saved on a graceful stop and resumed from on
    /// start (`series.state_file`).
    #[arg(long, env = "ANOMALYD_STATE_FILE")]
    pub state_file: Option<PathBuf>,
}

impl ServeArgs {
    fn config(&self) -> Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        if let Some(brokers) = &self.brokers {
            config.kafka.brokers.clone_from(brokers);
        }
        if !self.topics.is_empty() {
            config.kafka.topics.clone_from(&self.topics);
        }
        if let Some(group) = &self.group {
            config.kafka.group_id.clone_from(group);
        }
        if let Some(instance) = &self.group_instance_id {
            config
                .kafka
                .properties
                .insert("group.instance.id".to_owned(), instance.clone());
        }
        if let Some(model) = &self.model {
            config.model.path.clone_from(model);
        }
        if let Some(listen) = self.listen {
            config.http.listen = listen;
        }
        if self.events_topic.is_some() {
            config.kafka.events_topic.clone_from(&self.events_topic);
        }
        if self.dead_letter_topic.is_some() {
            config
                .kafka
                .dead_letter_topic
                .clone_from(&self.dead_letter_topic);
        }
        if let Some(device) = self.device {
            config.model.device = device.to_string();
        }
        if self.state_file.is_some() {
            config.series.state_file.clone_from(&self.state_file);
        }
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: lstm and dense are the reference's two models (dense is the
    /// four-layer T·F→H→H/4→H→T·F ReLU autoencoder); the others take H as
    /// their hidden width and H/4 as their code.
    #[arg(long, value_enum, default_value_t = ModelKind::Lstm)]
    pub kind: ModelKind,
    /// Window length T.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Hidden size H.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Features F per row.
    #[arg(long, default_value_t = 1)]
    pub features: usize,
    /// Windows per scoring forward pass.
    #[arg(long, default_value_t = 256)]
    pub infer_batch: usize,
    /// Windows per training step.
    #[arg(long, default_value_t = 64)]
    pub train_batch: usize,
    /// CPU threads (rayon's pool for cpu, LibTorch's intra-op pool for libtorch).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Timed repetitions after three warm-ups; the median is reported.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute device: cpu (pure Rust), libtorch (LibTorch on the CPU) or
    /// cuda[:N] (LibTorch on a GPU); the last two need the `tch` build.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model artifact directory.
    pub model: PathBuf,
    /// Print the raw manifest JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => run_demo(&args),
        Command::Train(args) => run_train(&args),
        Command::Score(args) => run_score(&args),
        Command::Eval(args) => run_eval(&args),
        Command::Serve(args) => run_serve(&args),
        Command::Bench(args) => run_bench(&args),
        Command::Inspect(args) => run_inspect(&args),
    }
}

fn run_bench(args: &BenchArgs) -> Result<()> {
    let config = anomalyd::bench::BenchConfig {
        kind: args.kind,
        window: args.window,
        hidden: args.hidden,
        features: args.features,
        infer_batch: args.infer_batch,
        train_batch: args.train_batch,
        threads: args.threads,
        reps: args.reps,
        device: args.device,
        seed: args.seed,
    };
    anomalyd::bench::set_threads(args.threads)?;
    let report = anomalyd::bench::run(&config)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Says what reading a file changed, so that no repair goes unnoticed.
fn warn_repairs(path: &Path, series: &Series) {
    if series.dropped_rows > 0 {
        tracing::warn!(file = %path.display(), rows = series.dropped_rows, "dropped rows whose timestamp repeats or goes backwards");
    }
    if series.filled_cells > 0 {
        tracing::warn!(file = %path.display(), cells = series.filled_cells, "filled missing cells (--fill)");
    }
}

fn read_all(paths: &[PathBuf], options: &CsvOptions) -> Result<Vec<Series>> {
    paths
        .iter()
        .map(|path| {
            let series = Series::from_path(path, options)?;
            warn_repairs(path, &series);
            Ok(series)
        })
        .collect()
}

fn run_train(args: &TrainArgs) -> Result<()> {
    // Read first: a mistake there should not cost a training run.
    let detector = match &args.detector_config {
        Some(path) => ServeConfig::detector_from_file(path)?,
        None => DetectorConfig::default(),
    };
    let series = read_all(&args.data, &args.csv.options())?;
    let features = series.first().map(Series::n_features).unwrap_or_default();
    let request = TrainRequest {
        data: args.model.data_config(),
        model: args.model.model_config(features),
        train: args.model.train_config(),
    };
    let device = args.device.build()?;
    tracing::info!(kind = ?args.model.kind, device = %args.device, files = series.len(), "training");
    let fits_per_model = if request.train.refit_drop > 0.0 { 2 } else { 1 };
    let main_fits = request.data.candidates(&request.model, true).len();
    let mut progress = EpochProgress::new(request.train.epochs, fits_per_model, main_fits);
    let mut trained = train(&series, &request, &device, &mut |stats| {
        progress.update(stats)
    })?;
    progress.finish();
    if args.calibrate_k {
        if detector.mean_std_k().is_none() {
            tracing::warn!(
                "no k factor recorded: the detector's threshold is not mean-std, the one calibration tunes"
            );
        }
        anomalyd::score::record_k_factor(&detector, &mut trained, &series, &device, 1024)?;
    }
    trained
        .save(&args.out)
        .with_context(|| format!("writing the artifact to {}", args.out.display()))?;
    let manifest = &trained.manifest;
    tracing::info!(
        out = %args.out.display(),
        best_epoch = manifest.best_epoch,
        threshold = manifest.threshold.value,
        k_factor = ?manifest.threshold.k_factor,
        "model written"
    );
    Ok(())
}

/// An indicatif bar on a terminal, one log line per epoch otherwise.
struct EpochProgress {
    bar: Option<ProgressBar>,
    /// 2 when each model is refitted (`--refit-drop`); a multi-scale model
    /// fits its coarse model after the main one.
    fits_per_model: usize,
    /// Main models fitted before the coarse one (2 under `--center auto`).
    main_fits: usize,
    fits_seen: usize,
    last_epoch: Option<usize>,
}

impl EpochProgress {
    fn new(epochs: usize, fits_per_model: usize, main_fits: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(epochs as u64);
            let style = ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            fits_per_model: fits_per_model.max(1),
            main_fits,
            fits_seen: 0,
            last_epoch: None,
        }
    }

    fn update(&mut self, stats: &EpochStats) {
        // Epochs count up within a fit; a fit that starts again is the next.
        if self.last_epoch.is_none_or(|last| stats.epoch <= last) {
            let fit = self.fits_seen;
            self.fits_seen += 1;
            let note = match (fit / self.fits_per_model, fit % self.fits_per_model) {
                (0, 0) => None,
                (model, 0) if model < self.main_fits => {
                    Some("training the main model again, on detrended windows (--center auto)")
                }
                (_, 0) => Some("training the coarse model (multi-scale)"),
                _ => Some("refitting without the training windows reconstructed worst"),
            };
            if let Some(note) = note {
                match &self.bar {
                    Some(bar) => bar.println(note),
                    None => tracing::info!("{note}"),
                }
            }
        }
        self.last_epoch = Some(stats.epoch);
        match &self.bar {
            Some(bar) => {
                bar.set_position(stats.epoch as u64);
                bar.set_message(format!(
                    "train {:.5} val {:.5}",
                    stats.train_loss, stats.val_loss
                ));
            }
            None => tracing::info!(
                epoch = stats.epoch,
                train_loss = stats.train_loss,
                val_loss = stats.val_loss,
                "epoch done"
            ),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

fn run_score(args: &ScoreArgs) -> Result<()> {
    let detector = match &args.detector_config {
        Some(path) => ServeConfig::detector_from_file(path)?,
        None => args.detector.config()?,
    };
    let device = args.device.build()?;
    let model = TrainedModel::load(&args.model, &device)?;
    let mut options = args.csv.options();
    if options.columns.is_none() {
        // Score the columns the model was trained on, by name, whatever
        // else the file carries.
        options.columns = Some(model.manifest.windowing.data_columns().to_vec());
    }
    let series = read_all(std::slice::from_ref(&args.data), &options)?.remove(0);
    let ScaleErrors { main: rows, coarse } =
        score_scales(&model, &series, &device, args.batch_size)?;
    let errors: Vec<Option<f64>> = rows.iter().map(|r| r.as_ref().map(|e| e.total)).collect();
    let threshold = &model.manifest.threshold;
    if detector
        .applies_factor_measured_for_another(threshold.k_factor, threshold.calibrated_for.as_ref())
    {
        tracing::warn!(
            k_factor = ?threshold.k_factor,
            "the model's k factor was calibrated for another detector than this one, and is applied all the same; --detector-config with the file it was trained with judges as it was measured, --calibrated-k false ignores the factor"
        );
    }
    let points = point_rows(&model, &series)?;
    let (decisions, events) =
        detect_rows(&detector, &model, &errors, coarse.as_deref(), Some(&points));
    let sink: Box<dyn Write> = if args.out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?,
        )
    };
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(sink));
    let multivariate = series.n_features() > 1;
    let mut header = vec!["timestamp".to_owned(), "error".to_owned()];
    if multivariate {
        header.extend(series.feature_names.iter().map(|n| format!("error_{n}")));
    }
    header.extend(["score", "threshold", "anomaly", "cause"].map(str::to_owned));
    writer.write_record(&header)?;
    let blank = 1 + if multivariate { series.n_features() } else { 0 } + 4;
    for ((stamp, row), decision) in series.timestamps.iter().zip(&rows).zip(&decisions) {
        let mut record = vec![stamp.clone()];
        match (row, decision) {
            (Some(error), Some(decision)) => {
                record.push(error.total.to_string());
                if multivariate {
                    record.extend(error.per_feature.iter().map(f64::to_string));
                }
                record.push(format!("{:.6}", decision.score));
                record.push(
                    decision
                        .threshold
                        .map_or_else(String::new, |t| t.to_string()),
                );
                record.push(u8::from(decision.anomalous).to_string());
                record.push(decision.cause.as_str().to_owned());
            }
            _ => record.extend(std::iter::repeat_n(String::new(), blank)),
        }
        writer.write_record(&record)?;
    }
    writer.flush()?;
    for event in &events {
        tracing::info!(
            window_start = %series.timestamps[window_first_row(&model, event.start)],
            start = %series.timestamps[event.start],
            end = %series.timestamps[event.end],
            "anomaly event"
        );
    }
    tracing::info!(rows = rows.len(), events = events.len(), "scored");
    Ok(())
}

fn run_eval(args: &EvalArgs) -> Result<()> {
    let dataset = Dataset::open(&args.dataset, args.groups.as_deref())?;
    for key in &dataset.unlabelled {
        tracing::warn!(series = %key, "not in labels/combined_windows.json, so not evaluated (write [] for a series without anomalies)");
    }
    let config = EvalConfig {
        protocol: args.protocol,
        data: args.model.data_config(),
        csv: CsvOptions {
            columns: args.columns.clone(),
            fill: args.fill,
            unordered: args.unordered,
        },
        train: args.model.train_config(),
        detector: args.detector.config()?,
        retrain_every: args.retrain_every,
        batch_size: 1024,
        calibrate_k: args.calibrate_k,
    };
    let device = args.device.build()?;
    let plots = args.out.join("plots");
    let tables = args.out.join("series");
    for dir in [&plots, &tables] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bar = ProgressBar::new(dataset.entries.len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} series {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let model_for = |features: usize| args.model.model_config(features);
    // Series are independent and each is trained from its own seed, so on
    // the pure-Rust device (where training a small model keeps one core
    // busy) they run side by side on rayon's pool and come back in dataset
    // order: the report is the same whatever the thread count. LibTorch
    // has its own thread pool, and a GPU one queue: one series at a time.
    let evaluate = |entry: &anomalyd::eval::Entry| -> Result<anomalyd::eval::SeriesOutcome> {
        bar.set_message(entry.key.clone());
        let outcome = evaluate_series(entry, &config, &model_for, &device)
            .with_context(|| format!("evaluating {}", entry.key))?;
        if let Some(reason) = &outcome.skipped {
            tracing::warn!(series = %entry.key, %reason, "not evaluated; its labelled windows count as missed");
        }
        if !outcome.input.label_columns.is_empty() {
            tracing::warn!(series = %entry.key, columns = %outcome.input.label_columns.join(","), "columns that hold labels (named like them, or 0/1 marking the labelled windows) are left out of the features; --columns chooses them");
        }
        if !outcome.input.non_numeric_columns.is_empty() {
            tracing::warn!(series = %entry.key, columns = %outcome.input.non_numeric_columns.join(","), "columns without a single number (empty, missing or text) are left out of the features");
        }
        if outcome.input.windows_outside > 0 {
            tracing::warn!(
                series = %entry.key,
                windows = outcome.input.windows_outside,
                series_from_epoch_s = outcome.times.first().copied().unwrap_or(f64::NAN),
                series_to_epoch_s = outcome.times.last().copied().unwrap_or(f64::NAN),
                "labelled windows lie wholly outside the series' time span and count as missed; are the labels in other units or another time zone?"
            );
        }
        if outcome.input.filled_cells + outcome.input.dropped_rows > 0 {
            tracing::warn!(series = %entry.key, filled_cells = outcome.input.filled_cells, dropped_rows = outcome.input.dropped_rows, "repaired while reading (--fill, --unordered)");
        }
        let name = entry.key.trim_end_matches(".csv").replace('/', "__");
        outcome.write_csv(&tables.join(format!("{name}.csv")))?;
        // An unreadable file leaves nothing to draw; the report says why.
        if !args.no_plots && !outcome.times.is_empty() {
            anomalyd::eval::plot::draw(&outcome, &plots.join(format!("{name}.png")))?;
        }
        tracing::debug!(series = %entry.key, tp = outcome.segment.tp, fp = outcome.segment.fp, r#fn = outcome.segment.fn_, "series done");
        bar.inc(1);
        Ok(outcome)
    };
    let outcomes: Vec<_> = if args.device == DeviceSpec::Cpu {
        dataset
            .entries
            .par_iter()
            .map(evaluate)
            .collect::<Result<_>>()?
    } else {
        dataset
            .entries
            .iter()
            .map(evaluate)
            .collect::<Result<_>>()?
    };
    bar.finish_and_clear();
    if let Some(first) = outcomes.first()
        && outcomes.iter().all(|o| o.times.is_empty())
    {
        // One bad file is the benchmark's problem; every file unreadable is
        // ours (a format this reader does not take), not a report of zeros.
        anyhow::bail!(
            "no series could be read; the first, {}: {}",
            first.key,
            first.skipped.as_deref().unwrap_or_default()
        );
    }
    let mut report = Report::build(args.protocol, &outcomes);
    report.unlabelled = dataset.unlabelled.clone();
    let json_path = args.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let markdown = report.markdown();
    std::fs::write(args.out.join("report.md"), &markdown)?;
    println!("{markdown}");
    tracing::info!(series = outcomes.len(), seconds = started.elapsed().as_secs_f64(), out = %args.out.display(), "eval done");
    Ok(())
}

fn run_serve(args: &ServeArgs) -> Result<()> {
    let config = args.config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let running = anomalyd::serve::start(config, shutdown.clone()).await?;
        let signals = tokio::spawn(wait_for_signal(shutdown.clone(), running.reload.clone()));
        let outcome = running.task.await.context("the pipeline task panicked")?;
        signals.abort();
        outcome?;
        Ok(())
    })
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal) starts the drain; SIGHUP
/// reloads the model.
async fn wait_for_signal(shutdown: CancellationToken, reload: std::sync::Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: draining");
                break;
            }
            _ = interrupt.recv() => {
                tracing::info!("SIGINT: draining");
                break;
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the model");
                reload.notify_one();
            }
        }
    }
    shutdown.cancel();
}

fn centring(windowing: &anomalyd::model::artifact::WindowingSpec) -> &'static str {
    match windowing.centering() {
        Centering::Off => "",
        Centering::Mean => ", centred (each window less its mean)",
        Centering::Trend => ", detrended (each window less its least-squares line)",
    }
}

fn clock(windowing: &anomalyd::model::artifact::WindowingSpec) -> &'static str {
    if windowing.time_of_day {
        " with the time of day (UTC, derived from each timestamp)"
    } else {
        ""
    }
}

fn run_inspect(args: &InspectArgs) -> Result<()> {
    let manifest = anomalyd::model::artifact::Manifest::read(&args.model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(());
    }
    let model_json = serde_json::to_string(&manifest.model)?;
    let w = &manifest.windowing;
    println!("artifact        {}", args.model.display());
    println!(
        "format          v{} (anomalyd {})",
        manifest.format_version, manifest.anomalyd_version
    );
    println!("model           {model_json}");
    println!(
        "window          {} points of {} row(s) each, stride {}, features [{}]{}{}",
        w.window,
        w.aggregate,
        w.stride,
        w.data_columns().join(", "),
        clock(w),
        centring(w)
    );
    println!(
        "scaler          {:?} offset {:?} scale {:?}",
        manifest.scaler.kind, manifest.scaler.offset, manifest.scaler.scale
    );
    match &manifest.value_range {
        Some(range) => println!(
            "range           min {:?} max {:?} (range check), quietest window's spread {} (stillness check), roughest window's median step {} (roughness check), {}, {} (seasonal check), resolution {} (one step more is allowed by both)",
            range.min,
            range.max,
            range
                .quietest
                .as_ref()
                .map_or_else(|| "none (format before 5)".to_owned(), |q| format!("{q:?}")),
            range.roughest.as_ref().map_or_else(
                || "none (trained before 2026-12-01)".to_owned(),
                |q| format!("{q:?}")
            ),
            range.daily.as_ref().map_or_else(
                || "no day (the interval does not divide one, training held less than two, the values do not follow one, or trained before 2026-12-01)"
                    .to_owned(),
                |d| format!(
                    "a day of {} points, largest median difference from a day earlier {:?}",
                    d.period, d.largest
                )
            ),
            range.weekly.as_ref().map_or_else(
                || "no week (the interval does not divide one, training held less than two, the values do not follow one, or trained before 2026-12-01's weekly check)"
                    .to_owned(),
                |w| format!(
                    "a week of {} points, largest median difference from a week earlier {:?}",
                    w.period, w.largest
                )
            ),
            range.resolution.as_ref().map_or_else(
                || "none (trained before 2026-12-01's second change)".to_owned(),
                |r| format!("{r:?}")
            )
        ),
        None => println!("range           none (format before 4: no range check)"),
    }
    let t = &manifest.training;
    println!(
        "training        {} epochs max, batch {}, lr {}, seed {}, patience {}, clip {:?}, refit drop {}",
        t.epochs, t.batch_size, t.learning_rate, t.seed, t.patience, t.grad_clip_norm, t.refit_drop
    );
    println!(
        "regularisers    {}",
        serde_json::to_string(&t.regularizers)?
    );
    println!(
        "best epoch      {} of {}",
        manifest.best_epoch,
        manifest.history.len()
    );
    for epoch in &manifest.history {
        let mark = if epoch.epoch == manifest.best_epoch {
            " *"
        } else {
            ""
        };
        println!(
            "  epoch {:>4}    train {:.6}  val {:.6}{mark}",
            epoch.epoch, epoch.train_loss, epoch.val_loss
        );
    }
    let e = &manifest.validation_errors;
    println!(
        "errors ({})  n={} mean {:.6} std {:.6} max {:.6}",
        e.calibrated_on, e.count, e.mean, e.std, e.max
    );
    for (q, v) in &e.quantiles {
        println!("  {q:<12}  {v:.6}");
    }
    println!(
        "threshold       {:.6} (quantile {})",
        manifest.threshold.value, manifest.threshold.quantile
    );
    if let Some(factor) = manifest.threshold.k_factor {
        let measured_for = match manifest.threshold.calibrated_for {
            Some(detector) if detector != DetectorConfig::default() => format!(
                "for the detector of --detector-config: {}",
                serde_json::to_string(&detector)?
            ),
            _ => "for the default detector".to_owned(),
        };
        println!(
            "k factor        {factor} (mean-std's k, calibrated on the training data {measured_for})"
        );
    }
    if let Some(subdir) = &manifest.coarse {
        let coarse = anomalyd::model::artifact::Manifest::read(&args.model.join(subdir))?;
        let cw = &coarse.windowing;
        println!(
            "coarse model    {subdir}/: window {} points of {} row(s) each{}{}, best epoch {} of {}, threshold {:.6}",
            cw.window,
            cw.aggregate,
            clock(cw),
            centring(cw),
            coarse.best_epoch,
            coarse.history.len(),
            coarse.threshold.value
        );
    }
    for file in &manifest.data {
        println!(
            "data            {} ({} rows, sha256 {})",
            file.path, file.rows, file.sha256
        );
    }
    match &manifest.weights {
        Some(wi) => println!(
            "weights         {} ({}, {} bytes, sha256 {})",
            wi.file, wi.format, wi.bytes, wi.sha256
        ),
        None => bail!(
            "{}: the manifest has no weights entry",
            args.model.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn serve_config(args: &[&str]) -> Result<ServeConfig> {
        let base = [
            "anomalyd",
            "serve",
            "--topic",
            "metrics",
            "--model",
            "/models/current",
        ];
        let cli = Cli::try_parse_from([&base[..], args].concat())?;
        match cli.command {
            Command::Serve(serve) => serve.config(),
            other => anyhow::bail!("parsed as {other:?}"),
        }
    }

    /// A replica's own id becomes its static group membership, beside the
    /// file's other consumer properties.
    #[test]
    fn a_group_instance_id_becomes_static_membership() {
        let config = serve_config(&["--group-instance-id", "anomalyd-2"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            config
                .kafka
                .properties
                .get("group.instance.id")
                .map(String::as_str),
            Some("anomalyd-2")
        );
        let without = serve_config(&[]).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!without.kafka.properties.contains_key("group.instance.id"));
    }
}
