//! Extreme-value thresholds (Siffer et al., "Anomaly Detection in Streams
//! with Extreme Value Theory", KDD 2017).
//!
//! Peaks over an initial high quantile `t` follow a generalised Pareto
//! distribution; fitting it by maximum likelihood gives the value `z_q` that
//! is exceeded with probability `q`. POT calibrates once; SPOT keeps adding
//! normal peaks and refitting; DSPOT runs SPOT on the value minus a moving
//! average of recent normal values, so it follows drift.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Parameters shared by POT, SPOT and DSPOT.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotConfig {
    /// Risk: the probability of exceeding the threshold under normal data.
    pub risk: f64,
    /// Quantile of the calibration values used as the initial threshold t.
    pub init_quantile: f64,
    /// Values collected before the first fit.
    pub calibration: usize,
    /// Most recent peaks kept, which bounds memory on endless streams.
    pub max_peaks: usize,
}

impl Default for SpotConfig {
    fn default() -> Self {
        Self {
            risk: 1e-3,
            init_quantile: 0.98,
            calibration: 400,
            max_peaks: 2000,
        }
    }
}

/// A fitted generalised Pareto distribution (shape γ, scale σ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gpd {
    pub shape: f64,
    pub scale: f64,
}

/// Log-likelihood of the GPD with parameter θ = γ/σ in Grimshaw's
/// reduction, where γ(θ) = mean(ln(1 + θ·y)) and σ = γ/θ.
fn reduced_likelihood(peaks: &[f64], theta: f64) -> Option<(f64, Gpd)> {
    let n = peaks.len() as f64;
    if theta.abs() < 1e-12 {
        let scale = peaks.iter().sum::<f64>() / n;
        return (scale > 0.0).then(|| (-n * scale.ln() - n, Gpd { shape: 0.0, scale }));
    }
    let mut log_sum = 0.0;
    for &y in peaks {
        let arg = 1.0 + theta * y;
        if arg <= 0.0 {
            return None;
        }
        log_sum += arg.ln();
    }
    let shape = log_sum / n;
    let scale = shape / theta;
    if scale.is_nan() || scale <= 0.0 || shape.abs() < 1e-12 {
        return None;
    }
    Some((
        -n * scale.ln() - (1.0 + 1.0 / shape) * log_sum,
        Gpd { shape, scale },
    ))
}

/// Maximum-likelihood GPD fit. The likelihood is searched over θ on a
/// log-spaced grid in Grimshaw's bounds, (−1/max y, 0) and
/// (0, 2(ȳ − min y)/min y²), then refined by golden-section search.
pub fn fit_gpd(peaks: &[f64]) -> Option<Gpd> {
    if peaks.is_empty() {
        return None;
    }
    let (min, max) = peaks
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &y| {
            (lo.min(y), hi.max(y))
        });
    let mean = peaks.iter().sum::<f64>() / peaks.len() as f64;
    let epsilon = 1e-8 / mean.max(1e-12);
    let lower = -1.0 / max + epsilon;
    let upper = if min > 0.0 {
        (2.0 * (mean - min) / (min * min)).max(2.0 * epsilon)
    } else {
        2.0 / mean.max(1e-12)
    };
    let mut candidates = vec![0.0];
    const STEPS: usize = 40;
    for i in 1..=STEPS {
        let share = i as f64 / STEPS as f64;
        // Log-spaced towards zero on both sides, where the optimum usually is.
        candidates.push(lower * (1e-6f64).powf(1.0 - share));
        candidates.push(upper * (1e-6f64).powf(1.0 - share));
    }
    let score = |theta: f64| reduced_likelihood(peaks, theta).map(|(l, _)| l);
    let (mut best_theta, mut best) = (0.0, score(0.0).unwrap_or(f64::NEG_INFINITY));
    for &theta in &candidates {
        if let Some(l) = score(theta)
            && l > best
        {
            (best_theta, best) = (theta, l);
        }
    }
    // Refine between the neighbouring candidates.
    let mut sorted = candidates.clone();
    sorted.sort_by(f64::total_cmp);
    let at = sorted.partition_point(|&t| t < best_theta);
    let (mut a, mut b) = (
        sorted[at.saturating_sub(1)],
        sorted[(at + 1).min(sorted.len() - 1)],
    );
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let c = b - ratio * (b - a);
        let d = a + ratio * (b - a);
        let (fc, fd) = (
            score(c).unwrap_or(f64::NEG_INFINITY),
            score(d).unwrap_or(f64::NEG_INFINITY),
        );
        if fc > fd {
            b = d;
        } else {
            a = c;
        }
    }
    let refined = 0.5 * (a + b);
    if score(refined).is_some_and(|l| l > best) {
        best_theta = refined;
    }
    reduced_likelihood(peaks, best_theta).map(|(_, gpd)| gpd)
}

/// `z_q = t + σ/γ·((q·n/N_t)^(−γ) − 1)`, or `t − σ·ln(q·n/N_t)` for γ = 0.
fn extreme_quantile(t: f64, gpd: Gpd, risk: f64, n: usize, peaks: usize) -> f64 {
    let r = risk * n as f64 / peaks.max(1) as f64;
    if gpd.shape.abs() < 1e-9 {
        t - gpd.scale * r.ln()
    } else {
        t + gpd.scale / gpd.shape * (r.powf(-gpd.shape) - 1.0)
    }
}

/// Which extreme-value variant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpotMode {
    /// Calibrate once, never update.
    Pot,
    /// Update with every normal peak.
    Spot,
    /// SPOT on the value minus the mean of the last `depth` normal values.
    Dspot { depth: usize },
}

/// A streaming POT/SPOT/DSPOT threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spot {
    config: SpotConfig,
    mode: SpotMode,
    calibration: Vec<f64>,
    /// Recent normal values, for DSPOT's moving average.
    recent: VecDeque<f64>,
    initial: f64,
    peaks: VecDeque<f64>,
    seen: usize,
    z: Option<f64>,
}

impl Spot {
    pub fn new(config: SpotConfig, mode: SpotMode) -> Self {
        Self {
            config,
            mode,
            calibration: Vec::new(),
            recent: VecDeque::new(),
            initial: 0.0,
            peaks: VecDeque::new(),
            seen: 0,
            z: None,
        }
    }

    fn drift(&self) -> f64 {
        match self.mode {
            SpotMode::Dspot { .. } if !self.recent.is_empty() => {
                // Summed afresh: a running sum keeps the rounding residue
                // of every burst that has left the window.
                self.recent.iter().sum::<f64>() / self.recent.len() as f64
            }
            _ => 0.0,
        }
    }

    fn remember(&mut self, value: f64) {
        if let SpotMode::Dspot { depth } = self.mode {
            self.recent.push_back(value);
            if self.recent.len() > depth.max(1) {
                self.recent.pop_front();
            }
        }
    }

    fn refit(&mut self) {
        let peaks: Vec<f64> = self.peaks.iter().copied().collect();
        self.z = match fit_gpd(&peaks) {
            Some(gpd) => Some(extreme_quantile(
                self.initial,
                gpd,
                self.config.risk,
                self.seen,
                peaks.len(),
            )),
            // No peaks to fit: the initial threshold is the best estimate.
            None => Some(self.initial),
        };
    }

    /// The threshold that applies to `value` (from what came before), in the
    /// value's own units; then `value` updates the state unless it is an
    /// alarm. None while calibrating.
    pub fn update(&mut self, value: f64) -> Option<f64> {
        let drift = self.drift();
        let Some(z) = self.z else {
            let centred = value - drift;
            self.calibration.push(centred);
            self.remember(value);
            if self.calibration.len() >= self.config.calibration.max(10) {
                self.calibrate();
            }
            return None;
        };
        let threshold = z + drift;
        let centred = value - drift;
        if value > threshold {
            return Some(threshold); // an alarm: kept out of the model
        }
        if self.mode != SpotMode::Pot {
            self.seen += 1;
            if centred > self.initial {
                self.peaks.push_back(centred - self.initial);
                if self.peaks.len() > self.config.max_peaks.max(10) {
                    self.peaks.pop_front();
                }
                self.refit();
            }
        }
        self.remember(value);
        Some(threshold)
    }

    fn calibrate(&mut self) {
        let mut sorted = std::mem::take(&mut self.calibration);
        sorted.sort_by(f64::total_cmp);
        self.initial = crate::train::quantile(&sorted, self.config.init_quantile);
        self.seen = sorted.len();
        self.peaks = sorted
            .iter()
            .filter(|&&v| v > self.initial)
            .map(|v| v - self.initial)
            .collect();
        self.refit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn gpd_fit_recovers_known_parameters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for (shape, scale) in [(0.2, 1.0), (-0.2, 2.0), (0.0, 0.5)] {
            // Inverse-CDF sampling of GPD(γ, σ).
            let peaks: Vec<f64> = (0..5000)
                .map(|_| {
                    let u: f64 = rng.random::<f64>();
                    if shape == 0.0 {
                        -scale * (1.0 - u).ln()
                    } else {
                        scale / shape * ((1.0 - u).powf(-shape) - 1.0)
                    }
                })
                .collect();
            let fit = fit_gpd(&peaks);
            let fit = fit.unwrap_or(Gpd {
                shape: f64::NAN,
                scale: f64::NAN,
            });
            assert!((fit.shape - shape).abs() < 0.06, "{shape}: {fit:?}");
            assert!((fit.scale / scale - 1.0).abs() < 0.08, "{scale}: {fit:?}");
        }
    }

    #[test]
    fn thresholds_match_their_risk_on_exponential_data() {
        // Exp(1): P(X > z) = e^{-z}, so risk 1e-3 means z = ln 1000 ≈ 6.9.
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let draws: Vec<f64> = (0..20_000)
            .map(|_| -(1.0 - rng.random::<f64>()).ln())
            .collect();
        let run = |mode, calibration| {
            let config = SpotConfig {
                calibration,
                ..SpotConfig::default()
            };
            let mut spot = Spot::new(config, mode);
            let mut alarms = 0;
            let mut last = 0.0;
            for &x in &draws {
                last = spot.update(x).unwrap_or(f64::INFINITY);
                alarms += usize::from(x > last);
            }
            (last, alarms as f64 / (draws.len() - calibration) as f64)
        };
        let (pot, _) = run(SpotMode::Pot, 19_000);
        assert!((pot - 1000f64.ln()).abs() < 0.5, "POT threshold {pot}");
        // SPOT keeps its alarms out of the fit, which censors the tail and
        // pulls the threshold down a little; the alarm rate stays near q.
        let (spot, rate) = run(SpotMode::Spot, 2000);
        assert!(
            spot > 5.0 && rate < 5e-3,
            "SPOT threshold {spot}, alarm rate {rate}"
        );
    }

    #[test]
    fn dspot_follows_a_drift_that_spot_flags_forever() {
        let series: Vec<f64> = (0..3000)
            .map(|i| i as f64 * 0.01 + ((i * 7919) % 100) as f64 / 100.0)
            .collect();
        let alarms = |mode| {
            let mut spot = Spot::new(SpotConfig::default(), mode);
            series
                .iter()
                .filter(|&&x| spot.update(x).is_some_and(|threshold| x > threshold))
                .count()
        };
        let (plain, drifting) = (
            alarms(SpotMode::Spot),
            alarms(SpotMode::Dspot { depth: 50 }),
        );
        assert!(plain > 1000, "SPOT should flag the drifted tail: {plain}");
        assert!(drifting < 100, "DSPOT should follow the drift: {drifting}");
    }
}
