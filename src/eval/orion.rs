//! Orion's scores: the overlapping-segment confusion counts of
//! `orion.evaluation.contextual` with `weighted=False`, and point-wise
//! counts.
//!
//! A true interval that overlaps at least one detected interval is one TP,
//! otherwise one FN; a detected interval that overlaps no true interval is
//! one FP. Two intervals overlap when `(e.start − o.end)·(e.end − o.start)`
//! is negative, so intervals that only touch at an end do **not** overlap:
//! a detection exactly on a window's boundary is a miss plus a false
//! positive, as in Orion.

use serde::{Deserialize, Serialize};

/// An interval in timestamp units (seconds), inclusive.
pub type Interval = (f64, f64);

/// Confusion counts, summed over series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }

    /// tp / (tp + fp), or 0 with no detections.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn), or 0 with nothing to find.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn overlaps(expected: Interval, observed: Interval) -> bool {
    (expected.0 - observed.1) * (expected.1 - observed.0) < 0.0
}

/// Orion's overlapping-segment counts for one series.
pub fn overlap_segment(expected: &[Interval], observed: &[Interval]) -> Counts {
    let mut matched = vec![false; observed.len()];
    let mut counts = Counts::default();
    for &truth in expected {
        let mut found = false;
        for (index, &detection) in observed.iter().enumerate() {
            if overlaps(truth, detection) {
                found = true;
                matched[index] = true;
            }
        }
        if found {
            counts.tp += 1;
        } else {
            counts.fn_ += 1;
        }
    }
    counts.fp = matched.iter().filter(|&&m| !m).count() as u64;
    counts
}

/// Point-wise counts: each row is positive when it lies in a true interval
/// and detected when it lies in a detected interval (bounds inclusive).
pub fn point_counts(times: &[f64], expected: &[Interval], observed: &[Interval]) -> Counts {
    let inside = |t: f64, intervals: &[Interval]| intervals.iter().any(|&(a, b)| a <= t && t <= b);
    let mut counts = Counts::default();
    for &t in times {
        match (inside(t, expected), inside(t, observed)) {
            (true, true) => counts.tp += 1,
            (false, true) => counts.fp += 1,
            (true, false) => counts.fn_ += 1,
            (false, false) => {}
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_match_hand_computed_cases() {
        // Orion's own example: true [2, 5], detected [6, 8] → fp 1, fn 1.
        let c = overlap_segment(&[(2.0, 5.0)], &[(6.0, 8.0)]);
        assert_eq!(
            c,
            Counts {
                tp: 0,
                fp: 1,
                fn_: 1
            }
        );
        // Two detections in one window are one TP and no FP.
        let c = overlap_segment(&[(10.0, 20.0)], &[(11.0, 12.0), (15.0, 25.0)]);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        // One detection spanning two windows is two TPs.
        let c = overlap_segment(&[(0.0, 5.0), (8.0, 9.0)], &[(4.0, 8.5)]);
        assert_eq!(
            c,
            Counts {
                tp: 2,
                fp: 0,
                fn_: 0
            }
        );
        // Touching a boundary is not an overlap.
        let c = overlap_segment(&[(10.0, 20.0)], &[(20.0, 22.0), (5.0, 10.0)]);
        assert_eq!(
            c,
            Counts {
                tp: 0,
                fp: 2,
                fn_: 1
            }
        );
        // A point detection strictly inside counts; one on the edge does not.
        let c = overlap_segment(&[(10.0, 20.0)], &[(15.0, 15.0)]);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        let c = overlap_segment(&[(10.0, 20.0)], &[(10.0, 10.0)]);
        assert_eq!(
            c,
            Counts {
                tp: 0,
                fp: 1,
                fn_: 1
            }
        );
    }

    #[test]
    fn scores_follow_from_counts() {
        let c = Counts {
            tp: 3,
            fp: 1,
            fn_: 2,
        };
        assert_eq!(c.precision(), 0.75);
        assert_eq!(c.recall(), 0.6);
        assert!((c.f1() - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-12);
        assert_eq!(Counts::default().f1(), 0.0);
    }

    #[test]
    fn point_counts_use_inclusive_bounds() {
        let times = [0.0, 1.0, 2.0, 3.0, 4.0];
        let c = point_counts(&times, &[(1.0, 2.0)], &[(2.0, 3.0)]);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 1,
                fn_: 1
            }
        );
    }
}
