//! Per-feature normalisation, fitted on training rows only and stored in the
//! artifact so that scoring applies exactly the same transform.

use serde::{Deserialize, Serialize};

/// Which normalisation to fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScalerKind {
    /// (x - mean) / std.
    #[default]
    Zscore,
    /// (x - min) / (max - min), so training data lies in [0, 1].
    Minmax,
}

/// A fitted per-feature affine transform `(x - offset) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub kind: ScalerKind,
    pub offset: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Scaler {
    /// Fits on row-major `[rows, n_features]` slices. A constant feature gets
    /// scale 1 so that it maps to a constant instead of dividing by zero.
    pub fn fit<'a>(
        kind: ScalerKind,
        n_features: usize,
        parts: impl IntoIterator<Item = &'a [f64]>,
    ) -> Self {
        let mut count = 0usize;
        let mut sum = vec![0.0; n_features];
        let mut sum_sq = vec![0.0; n_features];
        let mut min = vec![f64::INFINITY; n_features];
        let mut max = vec![f64::NEG_INFINITY; n_features];
        for part in parts {
            for row in part.chunks_exact(n_features) {
                count += 1;
                for (f, &x) in row.iter().enumerate() {
                    sum[f] += x;
                    sum_sq[f] += x * x;
                    min[f] = min[f].min(x);
                    max[f] = max[f].max(x);
                }
            }
        }
        let n = count.max(1) as f64;
        let guard = |s: f64| if s > 1e-12 && s.is_finite() { s } else { 1.0 };
        let (offset, scale) = match kind {
            ScalerKind::Zscore => {
                let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
                let std = sum_sq
                    .iter()
                    .zip(&mean)
                    .map(|(sq, m)| guard((sq / n - m * m).max(0.0).sqrt()))
                    .collect();
                (mean, std)
            }
            ScalerKind::Minmax => {
                let range = min
                    .iter()
                    .zip(&max)
                    .map(|(lo, hi)| guard(hi - lo))
                    .collect();
                (min, range)
            }
        };
        Self {
            kind,
            offset,
            scale,
        }
    }

    pub fn n_features(&self) -> usize {
        self.offset.len()
    }

    /// Normalises row-major values into `out` (same length).
    pub fn transform_into(&self, values: &[f64], out: &mut Vec<f32>) {
        let f = self.n_features();
        out.clear();
        out.extend(
            values
                .iter()
                .enumerate()
                .map(|(i, &x)| self.normalised(i % f, x)),
        );
    }

    /// `x` of feature `feature`, normalised.
    pub fn normalised(&self, feature: usize, x: f64) -> f32 {
        ((x - self.offset[feature]) / self.scale[feature]) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscore_and_minmax_fit_their_definitions() {
        let rows = [1.0, 10.0, 3.0, 10.0, 5.0, 10.0];
        let z = Scaler::fit(ScalerKind::Zscore, 2, [&rows[..]]);
        assert_eq!(z.offset, vec![3.0, 10.0]);
        assert!((z.scale[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(z.scale[1], 1.0, "a constant feature keeps scale 1");
        let m = Scaler::fit(ScalerKind::Minmax, 2, [&rows[..]]);
        let mut out = Vec::new();
        m.transform_into(&rows, &mut out);
        assert_eq!(out, vec![0.0, 0.0, 0.5, 0.0, 1.0, 0.0]);
    }
}
