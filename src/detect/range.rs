//! Values beyond what the model was trained on.
//!
//! A reconstruction error only measures how far a window lies from what the
//! model can reproduce, and an autoencoder reproduces more than it was
//! shown: a linear one reconstructs twice a normal pattern as well as the
//! pattern, and ReLU networks extrapolate along the same directions. So a
//! cycle played at twice its amplitude, or a level far beyond anything in
//! the training data, can keep a small error. The guard flags a point whose
//! value lies beyond the training data's range, widened by everything seen
//! since, by more than `tolerance` of that range (Numenta's HTM detector
//! adds the same check, with the same 5%, next to its model's anomaly
//! score). Each point then widens the range, so one new level raises one
//! flag, not one per point.

use serde::{Deserialize, Serialize};

/// Per-feature bounds of the values a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueRange {
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    /// Per feature, the smallest standard deviation of any training window
    /// of the model's length (see [`crate::detect::stillness`]); absent in
    /// artifacts before format 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quietest: Option<Vec<f64>>,
    /// Per feature, the largest median step of any training window of the
    /// model's length (see [`crate::detect::roughness`]); absent in
    /// artifacts trained before 2026-12-01 (an older anomalyd ignores it,
    /// so it needs no new format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roughest: Option<Vec<f64>>,
    /// Per feature, the smallest positive step between consecutive
    /// training points: the data's resolution, which the roughness and
    /// seasonal checks allow on top of their ratio (see
    /// [`crate::detect::roughness::finest_steps`]); absent in artifacts
    /// trained before it (an older anomalyd ignores it), where the checks
    /// allow none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Vec<f64>>,
    /// Where the data's interval divides a day and training held two: the
    /// day in points and, per feature, the largest median difference from
    /// a day earlier of any training window (see [`crate::detect::seasonal`]);
    /// absent otherwise and in artifacts trained before 2026-12-01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<CycleBound>,
    /// The same for a week, where the data's interval divides one into at
    /// most [`crate::detect::seasonal::MAX_PERIOD`] points and the training
    /// data hold two weeks; absent otherwise and in artifacts
    /// trained before 2026-12-01's weekly check (an older anomalyd ignores
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<CycleBound>,
}

/// What one of the seasonal check's guards starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleBound {
    /// The cycle (a day or a week), in the model's points.
    pub period: usize,
    /// Per feature, the largest median absolute difference from a cycle
    /// earlier of any training window.
    pub largest: Vec<f64>,
}

impl ValueRange {
    /// The bounds of row-major `[rows, features]` values, over all parts;
    /// non-finite values are ignored. `None` when some feature has no
    /// finite value at all.
    pub fn of_rows<'a>(
        parts: impl IntoIterator<Item = &'a [f64]>,
        features: usize,
    ) -> Option<Self> {
        if features == 0 {
            return None;
        }
        let mut min = vec![f64::INFINITY; features];
        let mut max = vec![f64::NEG_INFINITY; features];
        for row in parts
            .into_iter()
            .flat_map(|part| part.chunks_exact(features))
        {
            for (f, &x) in row.iter().enumerate() {
                if x.is_finite() {
                    min[f] = min[f].min(x);
                    max[f] = max[f].max(x);
                }
            }
        }
        min.iter().all(|m| m.is_finite()).then_some(Self {
            min,
            max,
            quietest: None,
            roughest: None,
            resolution: None,
            daily: None,
            weekly: None,
        })
    }

    /// The same range after the per-feature affine map `(x - offset) /
    /// scale` (a scaler with positive scales keeps the order).
    pub fn mapped(&self, offset: &[f64], scale: &[f64]) -> Self {
        let map = |bounds: &[f64]| {
            bounds
                .iter()
                .enumerate()
                .map(|(f, &x)| (x - offset[f]) / scale[f])
                .collect()
        };
        let scaled = |per_feature: &Option<Vec<f64>>| {
            per_feature.as_ref().map(|values| {
                values
                    .iter()
                    .zip(scale)
                    .map(|(&v, &scale)| v / scale)
                    .collect()
            })
        };
        Self {
            min: map(&self.min),
            max: map(&self.max),
            quietest: scaled(&self.quietest),
            roughest: scaled(&self.roughest),
            resolution: scaled(&self.resolution),
            daily: self.daily.as_ref().map(|cycle| cycle.scaled(scale)),
            weekly: self.weekly.as_ref().map(|cycle| cycle.scaled(scale)),
        }
    }

    pub fn features(&self) -> usize {
        self.min.len()
    }
}

impl CycleBound {
    /// In the units of values divided by `scale` (per feature): differences
    /// are scaled, never shifted.
    fn scaled(&self, scale: &[f64]) -> Self {
        Self {
            period: self.period,
            largest: self
                .largest
                .iter()
                .zip(scale)
                .map(|(&v, &scale)| v / scale)
                .collect(),
        }
    }
}

/// The guard's verdict on one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RangeJudgement {
    pub flagged: bool,
    /// `r / (1 + r)` for the excess `r` in units of `tolerance × range`:
    /// 0.5 exactly at the tolerance, like the error's score at its
    /// threshold; 0 within the range.
    pub score: f64,
}

/// The running range of one series and the tolerance beyond it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangeGuard {
    range: ValueRange,
    /// Features constant in the training data have no scale to judge an
    /// excursion by, and are left unguarded.
    guarded: Vec<bool>,
    tolerance: f64,
}

impl RangeGuard {
    pub fn new(range: ValueRange, tolerance: f64) -> Self {
        let guarded = range
            .min
            .iter()
            .zip(&range.max)
            .map(|(lo, hi)| hi > lo)
            .collect();
        Self {
            range,
            guarded,
            tolerance,
        }
    }

    /// Judges one point's values (one per feature, the units the range is
    /// in), then widens the range to hold them.
    pub fn judge(&mut self, values: &[f32]) -> RangeJudgement {
        let mut excess: f64 = 0.0;
        let bounds = self.range.min.iter_mut().zip(self.range.max.iter_mut());
        for ((&value, (lo, hi)), &guarded) in values.iter().zip(bounds).zip(&self.guarded) {
            let x = f64::from(value);
            if !x.is_finite() {
                continue;
            }
            let allowed = self.tolerance * (*hi - *lo);
            if guarded && allowed > 0.0 {
                let beyond = (*lo - x).max(x - *hi).max(0.0);
                excess = excess.max(beyond / allowed);
            }
            *lo = lo.min(x);
            *hi = hi.max(x);
        }
        RangeJudgement {
            flagged: excess > 1.0,
            score: excess / (1.0 + excess),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> RangeGuard {
        RangeGuard::new(
            ValueRange {
                min: vec![0.0, 5.0],
                max: vec![10.0, 5.0],
                quietest: None,
                roughest: None,
                resolution: None,
                daily: None,
                weekly: None,
            },
            0.05,
        )
    }

    #[test]
    fn a_value_beyond_the_tolerance_is_flagged_once_then_widens_the_range() {
        let mut guard = guard();
        assert!(!guard.judge(&[10.4, 5.0]).flagged, "within 5% of the range");
        let jump = guard.judge(&[12.0, 5.0]);
        assert!(jump.flagged);
        // 12 is 1.6 beyond 10.4, against 5% of 10.4.
        let r = 1.6 / (0.05 * 10.4);
        assert!((jump.score - r / (1.0 + r)).abs() < 1e-6, "{jump:?}");
        assert!(!guard.judge(&[12.0, 5.0]).flagged, "the new level is known");
        assert!(guard.judge(&[-1.0, 5.0]).flagged, "below the range too");
    }

    #[test]
    fn the_score_is_one_half_at_the_tolerance_and_zero_inside() {
        let mut inside = guard();
        assert_eq!(inside.judge(&[3.0, 5.0]).score, 0.0);
        let mut at = guard();
        let judgement = at.judge(&[10.5, 5.0]);
        assert!((judgement.score - 0.5).abs() < 1e-6, "{judgement:?}");
        assert!(!judgement.flagged);
    }

    #[test]
    fn a_feature_constant_in_training_and_missing_values_are_not_judged() {
        let mut guard = guard();
        assert!(!guard.judge(&[5.0, 500.0]).flagged);
        assert!(!guard.judge(&[f32::NAN, 5.0]).flagged);
        assert!(
            guard.judge(&[20.0, 5.0]).flagged,
            "NaN left the range as it was"
        );
    }

    #[test]
    fn the_range_of_rows_ignores_non_finite_values_and_maps_through_a_scaler() {
        let parts: [&[f64]; 2] = [&[1.0, 10.0, f64::NAN, 30.0], &[3.0, 20.0]];
        let range = ValueRange::of_rows(parts, 2)
            .unwrap_or_else(|| panic!("finite values in every feature"));
        assert_eq!(range.min, vec![1.0, 10.0]);
        assert_eq!(range.max, vec![3.0, 30.0]);
        let mapped = range.mapped(&[1.0, 10.0], &[2.0, 10.0]);
        assert_eq!(mapped.min, vec![0.0, 0.0]);
        assert_eq!(mapped.max, vec![1.0, 2.0]);
        // Spreads and steps are differences: scaled, never shifted.
        let windows = ValueRange {
            quietest: Some(vec![4.0, 5.0]),
            roughest: Some(vec![8.0, 50.0]),
            resolution: None,
            daily: Some(CycleBound {
                period: 288,
                largest: vec![2.0, 20.0],
            }),
            weekly: Some(CycleBound {
                period: 2016,
                largest: vec![4.0, 30.0],
            }),
            ..range
        }
        .mapped(&[1.0, 10.0], &[2.0, 10.0]);
        assert_eq!(windows.quietest, Some(vec![2.0, 0.5]));
        assert_eq!(windows.roughest, Some(vec![4.0, 5.0]));
        assert_eq!(
            windows.daily,
            Some(CycleBound {
                period: 288,
                largest: vec![1.0, 2.0]
            })
        );
        assert_eq!(
            windows.weekly,
            Some(CycleBound {
                period: 2016,
                largest: vec![2.0, 3.0]
            })
        );
        assert!(ValueRange::of_rows([&[f64::NAN, f64::NAN][..]], 1).is_none());
    }
}
