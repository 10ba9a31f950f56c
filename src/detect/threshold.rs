//! Trailing-window thresholds: mean + k·σ (optionally trimmed), and its
//! robust median + k·MAD variant. Both see only past values; until
//! `min_history` values are in the window they have no threshold, and the
//! detector flags nothing.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Scales the MAD to a standard deviation for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// mean + k·σ over the last `window` values, leaving the largest `trim`
/// fraction of them out of the mean and σ: one past burst then does not
/// raise the bar for the next one for a whole window.
///
/// The statistics are recomputed from the window at every point (two
/// passes, O(window)) rather than kept as running sums: over months, one
/// burst orders of magnitude above the usual errors would leave rounding
/// residue in a running sum of squares larger than the variance itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeanStd {
    window: usize,
    k: f64,
    trim: f64,
    min_history: usize,
    values: VecDeque<f64>,
    /// The same values, kept sorted (only when trimming).
    sorted: Vec<f64>,
}

impl MeanStd {
    pub fn new(window: usize, k: f64, trim: f64, min_history: usize) -> Self {
        Self {
            window: window.max(2),
            k,
            trim: trim.clamp(0.0, 0.5),
            min_history: min_history.max(2),
            values: VecDeque::new(),
            sorted: Vec::new(),
        }
    }

    /// The threshold for `value` from the history before it (none while
    /// the history is shorter than `min_history`); then `value` joins the
    /// history.
    pub fn update(&mut self, value: f64) -> Option<f64> {
        let n = self.values.len();
        let threshold = (n >= self.min_history).then(|| {
            let (mean, variance) = if self.trim > 0.0 {
                let dropped = (n as f64 * self.trim).floor() as usize;
                mean_and_variance(&[&self.sorted[..n - dropped]])
            } else {
                let (front, back) = self.values.as_slices();
                mean_and_variance(&[front, back])
            };
            mean + self.k * variance.sqrt()
        });
        self.values.push_back(value);
        if self.trim > 0.0 {
            let at = self.sorted.partition_point(|v| *v < value);
            self.sorted.insert(at, value);
        }
        if self.values.len() > self.window
            && let Some(old) = self.values.pop_front()
            && self.trim > 0.0
        {
            let at = self.sorted.partition_point(|v| *v < old);
            self.sorted.remove(at);
        }
        threshold
    }
}

/// Population mean and variance of the values in `parts`, in two passes.
pub(super) fn mean_and_variance(parts: &[&[f64]]) -> (f64, f64) {
    let count = parts.iter().map(|p| p.len()).sum::<usize>().max(1) as f64;
    let mean = parts.iter().map(|p| lane_sum(p, |v| v)).sum::<f64>() / count;
    let squares = parts
        .iter()
        .map(|p| lane_sum(p, |v| (v - mean) * (v - mean)))
        .sum::<f64>();
    (mean, squares / count)
}

/// Σ f(v) in eight interleaved partial sums: a single accumulator is a
/// serial chain the compiler may not reorder, eight of them vectorise (the
/// window is summed at every point).
fn lane_sum(values: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f64>() + rest.iter().map(|&v| f(v)).sum::<f64>()
}

/// median + k·1.4826·MAD over the last `window` values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MedianMad {
    window: usize,
    k: f64,
    min_history: usize,
    arrival: VecDeque<f64>,
    /// The same values, kept sorted.
    sorted: Vec<f64>,
    scratch: Vec<f64>,
}

impl MedianMad {
    pub fn new(window: usize, k: f64, min_history: usize) -> Self {
        Self {
            window: window.max(2),
            k,
            min_history: min_history.max(2),
            arrival: VecDeque::new(),
            sorted: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn update(&mut self, value: f64) -> Option<f64> {
        let threshold = (self.sorted.len() >= self.min_history).then(|| {
            let median = median_of_sorted(&self.sorted);
            self.scratch.clear();
            self.scratch
                .extend(self.sorted.iter().map(|v| (v - median).abs()));
            self.scratch.sort_by(f64::total_cmp);
            median + self.k * MAD_TO_SIGMA * median_of_sorted(&self.scratch)
        });
        let at = self.sorted.partition_point(|v| *v < value);
        self.sorted.insert(at, value);
        self.arrival.push_back(value);
        if self.arrival.len() > self.window
            && let Some(old) = self.arrival.pop_front()
        {
            let at = self.sorted.partition_point(|v| *v < old);
            self.sorted.remove(at);
        }
        threshold
    }
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_uses_only_the_past_and_has_no_threshold_while_warming_up() {
        let mut t = MeanStd::new(4, 2.0, 0.0, 2);
        assert_eq!(t.update(1.0), None);
        assert_eq!(t.update(3.0), None);
        // history [1, 3]: mean 2, σ 1.
        assert_eq!(t.update(100.0), Some(4.0));
    }

    #[test]
    fn trimming_leaves_the_largest_values_out_and_slides() {
        // Window 10, trim 0.2: the two largest of ten values are left out.
        let mut t = MeanStd::new(10, 2.0, 0.2, 2);
        for v in [1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 100.0, 50.0] {
            t.update(v);
        }
        // Kept [1, 3, 1, 3, 1, 3, 1, 3]: mean 2, σ 1.
        assert_eq!(t.update(0.0), Some(4.0));
        // The window slides: 1.0 leaves, 0.0 came in; 100 and 50 still out.
        // Kept [0, 1, 1, 1, 3, 3, 3, 3]: mean 15/8.
        let threshold = t.update(0.0).unwrap_or(f64::NAN);
        let kept = [0.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0];
        let mean = kept.iter().sum::<f64>() / 8.0;
        let sigma = (kept.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 8.0).sqrt();
        assert!(
            (threshold - (mean + 2.0 * sigma)).abs() < 1e-12,
            "{threshold}"
        );
        // Untrimmed, the burst dominates.
        let mut plain = MeanStd::new(10, 2.0, 0.0, 2);
        for v in [1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 100.0, 50.0] {
            plain.update(v);
        }
        assert!(plain.update(0.0).is_some_and(|t| t > 60.0));
    }

    /// The daemon runs for months: a burst many orders of magnitude above
    /// the usual errors must not leave rounding residue in the statistics
    /// once it is out of the window (nor, trimmed, while it is in).
    #[test]
    fn mean_std_is_exact_after_a_huge_burst() {
        let noise = |i: usize| 0.01 + 0.001 * ((i * 7919) % 13) as f64;
        for trim in [0.0, 0.01] {
            let mut t = MeanStd::new(200, 4.0, trim, 10);
            let mut history = Vec::new();
            for v in (0..300).map(noise).chain([1e9]) {
                history.push(v);
                t.update(v);
            }
            let mut checked = 0;
            for i in 0..500 {
                history.push(noise(i));
                let got = t.update(noise(i)).unwrap_or(f64::NAN);
                let past = &history[history.len() - 201..history.len() - 1];
                let mut sorted = past.to_vec();
                sorted.sort_by(f64::total_cmp);
                let kept = &sorted[..200 - (200.0 * trim) as usize];
                if kept.iter().any(|&v| v > 1.0) {
                    continue; // untrimmed with the burst inside: it dominates
                }
                let mean = kept.iter().sum::<f64>() / kept.len() as f64;
                let variance =
                    kept.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / kept.len() as f64;
                let want = mean + 4.0 * variance.sqrt();
                assert!(
                    (got - want).abs() < 1e-9 * want,
                    "trim {trim}, point {i} after the burst: {got} vs {want}"
                );
                checked += 1;
            }
            assert!(checked >= 300, "trim {trim}: {checked}");
        }
    }

    #[test]
    fn median_mad_ignores_a_single_outlier_and_slides() {
        let mut t = MedianMad::new(5, 3.0, 3);
        for v in [1.0, 2.0, 3.0, 1000.0] {
            t.update(v);
        }
        // history [1, 2, 3, 1000]: median 2.5, |dev| [0.5, 0.5, 1.5, 997.5] → MAD 1.
        let threshold = t.update(0.0).unwrap_or(f64::NAN);
        assert!(
            (threshold - (2.5 + 3.0 * MAD_TO_SIGMA)).abs() < 1e-12,
            "{threshold}"
        );
        t.update(0.0); // window of 5 drops the 1.0
        // history [2, 3, 1000, 0, 0]: median 2, |dev| [0, 1, 998, 2, 2] → MAD 2.
        let threshold = t.update(0.0).unwrap_or(f64::NAN);
        assert!(
            (threshold - (2.0 + 3.0 * MAD_TO_SIGMA * 2.0)).abs() < 1e-12,
            "{threshold}"
        );
    }
}
