//! Sliding windows over normalised segments. A segment is a contiguous run of
//! rows from one file; windows never cross segments, so they never span two
//! files nor the train/validation cut.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// What is taken out of each window before a model sees it, so that the
/// model judges shape rather than level (`--center`, `--detrend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Centering {
    /// Nothing: the model sees levels.
    #[default]
    Off,
    /// Each feature's mean over the window.
    Mean,
    /// Each feature's least-squares line over the window: its level and
    /// its slope, so that a trend, or a slow cycle that a window sees as
    /// one, does not move the window's error.
    Trend,
}

impl Centering {
    /// `Mean` or `Trend` where `centered`, by `detrend`; `Off` otherwise.
    pub fn new(centered: bool, detrend: bool) -> Self {
        match (centered, detrend) {
            (false, _) => Self::Off,
            (true, false) => Self::Mean,
            (true, true) => Self::Trend,
        }
    }

    pub fn is_on(self) -> bool {
        self != Self::Off
    }

    /// Applies it to one window, in place (`window` row-major `[T, F]`).
    pub fn apply(self, window: &mut [f32], features: usize) {
        let features = features.max(1);
        let rows = window.len() / features;
        if self == Self::Off || rows == 0 {
            return;
        }
        let middle = (rows as f32 - 1.0) / 2.0;
        // Σ (i − middle)² over the rows: the slope's denominator, which
        // only `Trend` needs (this runs on every window a centred model
        // scores).
        let spread: f32 = if self == Self::Trend {
            (0..rows).map(|i| (i as f32 - middle).powi(2)).sum()
        } else {
            0.0
        };
        for feature in 0..features {
            let column = || window.iter().skip(feature).step_by(features);
            let mean = column().sum::<f32>() / rows as f32;
            let slope = if spread > 0.0 {
                column()
                    .enumerate()
                    .map(|(i, v)| (i as f32 - middle) * v)
                    .sum::<f32>()
                    / spread
            } else {
                0.0
            };
            for (i, value) in window
                .iter_mut()
                .skip(feature)
                .step_by(features)
                .enumerate()
            {
                *value -= mean + slope * (i as f32 - middle);
            }
        }
    }
}

/// Normalised rows of one contiguous stretch of a series.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Row-major `[rows, features]`.
    pub values: Vec<f32>,
}

/// All windows of length `window` (every `stride` rows) over some segments.
#[derive(Debug, Clone)]
pub struct WindowSet {
    segments: Vec<Segment>,
    /// `(segment, first row)` of each window.
    starts: Vec<(usize, usize)>,
    window: usize,
    features: usize,
    centering: Centering,
}

impl WindowSet {
    pub fn new(segments: Vec<Segment>, window: usize, stride: usize, features: usize) -> Self {
        let stride = stride.max(1);
        let mut starts = Vec::new();
        for (index, segment) in segments.iter().enumerate() {
            let rows = segment.values.len() / features;
            if rows >= window {
                starts.extend((0..=rows - window).step_by(stride).map(|s| (index, s)));
            }
        }
        Self {
            segments,
            starts,
            window,
            features,
            centering: Centering::Off,
        }
    }

    /// The same windows, each centred as it is gathered.
    pub fn centered(mut self, centering: Centering) -> Self {
        self.centering = centering;
        self
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn centering(&self) -> Centering {
        self.centering
    }

    pub fn window(&self) -> usize {
        self.window
    }

    pub fn features(&self) -> usize {
        self.features
    }

    /// The values of window `id`, `[window, features]` row-major.
    pub fn window_values(&self, id: usize) -> &[f32] {
        let (segment, start) = self.starts[id];
        let width = self.features;
        &self.segments[segment].values[start * width..(start + self.window) * width]
    }

    /// Copies the given windows into `out` as `[ids.len(), window, features]`.
    pub fn gather(&self, ids: &[usize], out: &mut Vec<f32>) {
        out.clear();
        out.reserve(ids.len() * self.window * self.features);
        for &id in ids {
            let start = out.len();
            out.extend_from_slice(self.window_values(id));
            self.centering.apply(&mut out[start..], self.features);
        }
    }

    /// The given windows as a `[B, T, F]` tensor on `device`.
    pub fn batch(&self, ids: &[usize], device: &Device) -> Tensor<3> {
        let mut flat = Vec::new();
        self.gather(ids, &mut flat);
        to_tensor(flat, [ids.len(), self.window, self.features], device)
    }
}

/// Wraps row-major values as a `[B, T, F]` tensor.
pub fn to_tensor(values: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_centred_window_keeps_its_shape_less_each_features_mean() {
        // Two features, three rows: means 2 and 20.
        let mut window = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0];
        Centering::Mean.apply(&mut window, 2);
        assert_eq!(window, [-1.0, -10.0, 0.0, 0.0, 1.0, 10.0]);
        let segment = Segment {
            values: vec![5.0, 6.0, 7.0, 9.0],
        };
        let set = WindowSet::new(vec![segment], 2, 1, 1).centered(Centering::Mean);
        let mut gathered = Vec::new();
        set.gather(&[0, 2], &mut gathered);
        assert_eq!(gathered, [-0.5, 0.5, -1.0, 1.0]);
        assert_eq!(
            set.window_values(2),
            [7.0, 9.0],
            "stored values stay as they are"
        );
    }

    #[test]
    fn a_detrended_window_keeps_what_its_least_squares_line_does_not_explain() {
        // Feature 0 is a line (nothing left); feature 1 is 1, 3, 2: mean 2,
        // slope 0.5, so the line is 1.5, 2, 2.5.
        let mut window = [4.0, 1.0, 6.0, 3.0, 8.0, 2.0];
        Centering::Trend.apply(&mut window, 2);
        assert_eq!(window, [0.0, -0.5, 0.0, 1.0, 0.0, -0.5]);
        let mut unchanged = [4.0, 1.0];
        Centering::Off.apply(&mut unchanged, 1);
        assert_eq!(unchanged, [4.0, 1.0]);
        assert_eq!(Centering::new(true, true), Centering::Trend);
        assert_eq!(Centering::new(false, true), Centering::Off);
    }

    #[test]
    fn windows_respect_stride_and_never_cross_segments() {
        let seg = |n: usize, base: f32| Segment {
            values: (0..n).map(|i| base + i as f32).collect(),
        };
        let set = WindowSet::new(vec![seg(5, 0.0), seg(2, 100.0), seg(4, 10.0)], 3, 2, 1);
        let windows: Vec<Vec<f32>> = (0..set.len())
            .map(|i| set.window_values(i).to_vec())
            .collect();
        assert_eq!(
            windows,
            vec![
                vec![0.0, 1.0, 2.0],
                vec![2.0, 3.0, 4.0],
                vec![10.0, 11.0, 12.0]
            ]
        );
    }
}
