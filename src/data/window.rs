//! Sliding windows over normalised segments. A segment is a contiguous run of
//! rows from one file; windows never cross segments, so they never span two
//! files nor the train/validation cut.

use burn::tensor::{Device, Tensor, TensorData};

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
    centered: bool,
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
            centered: false,
        }
    }

    /// The same windows, each with its own per-feature mean subtracted as
    /// it is gathered (see [`center_window`]).
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn is_centered(&self) -> bool {
        self.centered
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
            if self.centered {
                center_window(&mut out[start..], self.features);
            }
        }
    }

    /// The given windows as a `[B, T, F]` tensor on `device`.
    pub fn batch(&self, ids: &[usize], device: &Device) -> Tensor<3> {
        let mut flat = Vec::new();
        self.gather(ids, &mut flat);
        to_tensor(flat, [ids.len(), self.window, self.features], device)
    }
}

/// Subtracts each feature's mean over the window from its values, in
/// place (`window` row-major `[T, F]`).
pub fn center_window(window: &mut [f32], features: usize) {
    let rows = (window.len() / features.max(1)).max(1) as f32;
    for feature in 0..features {
        let mean = window.iter().skip(feature).step_by(features).sum::<f32>() / rows;
        for value in window.iter_mut().skip(feature).step_by(features) {
            *value -= mean;
        }
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
        center_window(&mut window, 2);
        assert_eq!(window, [-1.0, -10.0, 0.0, 0.0, 1.0, 10.0]);
        let segment = Segment {
            values: vec![5.0, 6.0, 7.0, 9.0],
        };
        let set = WindowSet::new(vec![segment], 2, 1, 1).centered(true);
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
