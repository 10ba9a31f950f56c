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

use serde::{Deserialize, Serialize};

use super::threshold::mean_and_variance;

/// The dynamic threshold's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Telemanom {
    window: usize,
    min_history: usize,
    z_min: f64,
    z_max: f64,
    z_step: f64,
    prune: f64,
    buffer: VecDeque<f64>,
    /// The same values, kept sorted: the values below each candidate are
    /// then a prefix, found by binary search instead of a filtered copy.
    sorted: Vec<f64>,
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
            sorted: Vec::new(),
        }
    }

    /// Adds `value` to the trailing buffer and judges it against the buffer;
    /// no verdict while the buffer is shorter than `min_history`.
    pub fn update(&mut self, value: f64) -> Option<DynamicVerdict> {
        self.buffer.push_back(value);
        let at = self.sorted.partition_point(|v| *v < value);
        self.sorted.insert(at, value);
        if self.buffer.len() > self.window
            && let Some(old) = self.buffer.pop_front()
        {
            let at = self.sorted.partition_point(|v| *v < old);
            self.sorted.remove(at);
        }
        if self.buffer.len() < self.min_history {
            return None;
        }
        self.buffer.make_contiguous();
        let (values, _) = self.buffer.as_slices();
        let epsilon = select_epsilon(values, &self.sorted, self.z_min, self.z_max, self.z_step);
        Some(DynamicVerdict {
            threshold: epsilon,
            anomalous: value > epsilon && self.last_run_survives(values, epsilon),
        })
    }
}

/// The best ε = μ + zσ for z from `z_min` to `z_max`; `sorted` holds
/// `values` in ascending order.
fn select_epsilon(values: &[f64], sorted: &[f64], z_min: f64, z_max: f64, z_step: f64) -> f64 {
    let (mean, variance) = mean_and_variance(&[values]);
    let std = variance.sqrt();
    let mut best = (f64::NEG_INFINITY, mean + z_max * std);
    if std <= 0.0 {
        return best.1;
    }
    let mut z = z_min;
    while z <= z_max + 1e-9 {
        let epsilon = mean + z * std;
        let below = &sorted[..sorted.partition_point(|&v| v < epsilon)];
        let above = values.len() - below.len();
        if above > 0 && !below.is_empty() {
            let (below_mean, below_variance) = mean_and_variance(&[below]);
            let below_std = below_variance.sqrt();
            let runs = count_runs_above(values, epsilon);
            let gain = (mean - below_mean) / mean.abs().max(1e-12) + (std - below_std) / std;
            let score = gain / (above as f64 + (runs * runs) as f64);
            if score > best.0 {
                best = (score, epsilon);
            }
        }
        z += z_step;
    }
    best.1
}

/// The number of runs of consecutive values above `epsilon`.
fn count_runs_above(values: &[f64], epsilon: f64) -> usize {
    let first = values.first().is_some_and(|&v| v > epsilon);
    let starts = values
        .windows(2)
        .filter(|pair| pair[1] > epsilon && pair[0] <= epsilon)
        .count();
    usize::from(first) + starts
}

impl Telemanom {
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
    fn runs_are_found_inclusive_and_counted_alike() {
        for values in [
            vec![0.0, 2.0, 2.0, 0.0, 3.0],
            vec![2.0, 0.0, 1.0, 2.0],
            vec![1.0, 1.0],
            vec![],
        ] {
            assert_eq!(
                count_runs_above(&values, 1.0),
                runs_above(&values, 1.0).len(),
                "{values:?}"
            );
        }
        assert_eq!(
            runs_above(&[0.0, 2.0, 2.0, 0.0, 3.0], 1.0),
            vec![(1, 2), (4, 4)]
        );
    }
}
