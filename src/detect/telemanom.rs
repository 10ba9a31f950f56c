//! The nonparametric dynamic threshold of Hundman et al., "Detecting
//! Spacecraft Anomalies Using LSTMs and Nonparametric Dynamic Thresholding"
//! (KDD 2018), run causally over a trailing buffer.
//!
//! For candidates ε = μ + z·σ of the buffer, pick the one that best trades
//! the drop in mean and spread of what lies below it against the number of
//! values and runs above it:
//! `(Δμ/μ + Δσ/σ) / (|above| + |runs|²)`. Then prune: the runs' peaks,
//! followed by the largest normal value, are sorted descending; a run whose
//! peak is within `prune` (relative) of the next one, and every run after
//! it, is reclassified as normal.

use std::collections::VecDeque;

/// The dynamic threshold's state.
#[derive(Debug, Clone)]
pub struct Telemanom {
    window: usize,
    min_history: usize,
    z_min: f64,
    z_max: f64,
    z_step: f64,
    prune: f64,
    buffer: VecDeque<f64>,
}

/// The verdict for one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicVerdict {
    pub threshold: f64,
    /// Above the threshold and in a run that survived pruning.
    pub anomalous: bool,
}

impl Telemanom {
    pub fn new(window: usize, min_history: usize, z_max: f64, prune: f64) -> Self {
        Self {
            window: window.max(10),
            min_history: min_history.max(10),
            z_min: 2.0,
            z_max: z_max.max(2.0),
            z_step: 0.5,
            prune,
            buffer: VecDeque::new(),
        }
    }

    /// Adds `value` to the trailing buffer and judges it against the buffer;
    /// no verdict while the buffer is shorter than `min_history`.
    pub fn update(&mut self, value: f64) -> Option<DynamicVerdict> {
        self.buffer.push_back(value);
        if self.buffer.len() > self.window {
            self.buffer.pop_front();
        }
        if self.buffer.len() < self.min_history {
            return None;
        }
        let values: Vec<f64> = self.buffer.iter().copied().collect();
        let epsilon = self.select_epsilon(&values);
        Some(DynamicVerdict {
            threshold: epsilon,
            anomalous: value > epsilon && self.last_run_survives(&values, epsilon),
        })
    }

    fn select_epsilon(&self, values: &[f64]) -> f64 {
        let (mean, std) = mean_std(values);
        let mut best = (f64::NEG_INFINITY, mean + self.z_max * std);
        if std <= 0.0 {
            return best.1;
        }
        let mut z = self.z_min;
        while z <= self.z_max + 1e-9 {
            let epsilon = mean + z * std;
            let below: Vec<f64> = values.iter().copied().filter(|&v| v < epsilon).collect();
            let above = values.len() - below.len();
            if above > 0 && !below.is_empty() {
                let (below_mean, below_std) = mean_std(&below);
                let runs = runs_above(values, epsilon).len();
                let gain = (mean - below_mean) / mean.abs().max(1e-12) + (std - below_std) / std;
                let score = gain / (above as f64 + (runs * runs) as f64);
                if score > best.0 {
                    best = (score, epsilon);
                }
            }
            z += self.z_step;
        }
        best.1
    }

    /// Whether the run that ends at the newest value survives pruning.
    fn last_run_survives(&self, values: &[f64], epsilon: f64) -> bool {
        let runs = runs_above(values, epsilon);
        let Some(&(_, last_end)) = runs.last() else {
            return false;
        };
        if last_end != values.len() - 1 {
            return false;
        }
        let peak = |&(start, end): &(usize, usize)| {
            values[start..=end]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let normal_max = values
            .iter()
            .copied()
            .filter(|&v| v <= epsilon)
            .fold(f64::NEG_INFINITY, f64::max);
        let newest_peak = runs.last().map(peak).unwrap_or(f64::NEG_INFINITY);
        let mut peaks: Vec<f64> = runs.iter().map(peak).collect();
        peaks.sort_by(|a, b| b.total_cmp(a));
        peaks.push(normal_max);
        // The runs ranked before the last significant drop survive.
        let mut keep = 0;
        for i in 0..peaks.len() - 1 {
            let drop = (peaks[i] - peaks[i + 1]) / peaks[i].abs().max(1e-12);
            if drop > self.prune {
                keep = i + 1;
            }
        }
        let rank = peaks
            .iter()
            .position(|&p| p == newest_peak)
            .unwrap_or(usize::MAX);
        rank < keep
    }
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// Inclusive index ranges of consecutive values above `epsilon`.
fn runs_above(values: &[f64], epsilon: f64) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &v) in values.iter().enumerate() {
        match (v > epsilon, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, values.len() - 1));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: usize) -> f64 {
        0.1 + ((i * 7919) % 97) as f64 / 970.0
    }

    #[test]
    fn a_clear_burst_is_flagged_and_noise_is_not() {
        let mut detector = Telemanom::new(500, 50, 10.0, 0.13);
        let mut flagged = Vec::new();
        for i in 0..400 {
            let value = if (300..305).contains(&i) {
                2.0
            } else {
                noise(i)
            };
            if detector.update(value).is_some_and(|v| v.anomalous) {
                flagged.push(i);
            }
        }
        assert_eq!(flagged, (300..305).collect::<Vec<_>>());
    }

    #[test]
    fn pruning_drops_a_run_barely_above_the_normal_peak() {
        let detector = Telemanom::new(500, 50, 10.0, 0.13);
        let mut values: Vec<f64> = (0..200).map(noise).collect();
        values[50] = 3.0;
        // The normal peak is 0.1 + 96/970 ≈ 0.199; 0.215 is 7% above it.
        values.push(0.215);
        assert!(!detector.last_run_survives(&values, 0.2));
        values.push(0.1);
        values.push(3.5);
        assert!(detector.last_run_survives(&values, 0.2));
    }

    #[test]
    fn runs_are_found_inclusive() {
        assert_eq!(
            runs_above(&[0.0, 2.0, 2.0, 0.0, 3.0], 1.0),
            vec![(1, 2), (4, 4)]
        );
    }
}
