//! The Numenta Anomaly Benchmark scorer, reproduced from NAB's sweeper.
//!
//! Per row: inside a labelled window, a detection is worth
//! `tp·S(p)/S(−1)` with `p = −(right − i + 1)/width` and the scaled sigmoid
//! `S(x) = 2/(1 + e^{5x}) − 1` (−1 from x ≥ 3); outside, `fp·S(p)` with `p`
//! the distance past the previous window's right edge over its width − 1
//! (3, that is −fp, before any window). Each window scores the best of its
//! detections, or −fn without one (as does a window that holds no row: the
//! series could not be read, or the window lies outside its time span);
//! false positives add up. The first 15% of
//! each series (at most 750 rows) is probationary and not scored. Scores
//! are normalised as `100·(raw − null)/(perfect − null)`, where perfect is
//! `tp` times the number of labelled windows and null is the best a
//! constant detector can do. One threshold per profile is chosen for the
//! whole corpus; NAB's optimiser searches it locally, we take the exact
//! maximum over every distinct score.

use serde::{Deserialize, Serialize};

use super::orion::Interval;

/// NAB's application profile: the weights of its cost matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    #[serde(rename = "fn")]
    pub fn_: f64,
}

pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_fp",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_fn",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

pub const PROBATION_PERCENT: f64 = 0.15;

/// NAB's probationary length: `min(floor(p·n), p·5000)`.
pub fn probation_rows(rows: usize) -> usize {
    let by_share = (PROBATION_PERCENT * rows as f64).floor();
    by_share.min(PROBATION_PERCENT * 5000.0).ceil() as usize
}

fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Probationary,
    /// Inside window `index`; the value is S(p)/S(−1).
    Window {
        index: usize,
        value: f64,
    },
    /// Outside any window; the value is S(p) (negative).
    Outside {
        value: f64,
    },
}

/// One series laid out against its windows, ready to score at any threshold.
#[derive(Debug, Clone)]
pub struct NabSeries {
    places: Vec<Place>,
    /// Windows that hold at least one scored row.
    scored_windows: Vec<usize>,
    /// All labelled windows, probationary or not (NAB's perfect score counts
    /// them all).
    pub label_count: usize,
    /// Labelled windows that hold no row of the series (it could not be
    /// read, or they lie outside its time span): missed by any detector,
    /// as the orion counts miss them.
    unplaced: usize,
}

impl NabSeries {
    /// `times` strictly increasing; `windows` in the same units. A window
    /// limit that is not a row's timestamp snaps inwards to the nearest row.
    pub fn new(times: &[f64], windows: &[Interval]) -> Self {
        let rows = times.len();
        let probation = probation_rows(rows);
        let mut bounds: Vec<(usize, usize)> = windows
            .iter()
            .filter_map(|&(start, end)| {
                let left = times.partition_point(|&t| t < start);
                let right = times.partition_point(|&t| t <= end).checked_sub(1)?;
                (left <= right && left < rows).then_some((left, right))
            })
            .collect();
        bounds.sort_unstable();
        let max_tp = scaled_sigmoid(-1.0);
        let mut places = Vec::with_capacity(rows);
        let mut next = 0;
        let mut current: Option<(usize, usize, usize)> = None; // (index, left, right)
        let mut previous: Option<(usize, f64)> = None; // (right, width)
        let mut scored = vec![false; bounds.len()];
        for i in 0..rows {
            if current.is_none() && next < bounds.len() && bounds[next].0 == i {
                current = Some((next, bounds[next].0, bounds[next].1));
                next += 1;
            }
            let place = match current {
                Some((index, left, right)) => {
                    let width = (right - left + 1) as f64;
                    let position = -((right - i + 1) as f64) / width;
                    Place::Window {
                        index,
                        value: scaled_sigmoid(position) / max_tp,
                    }
                }
                None => {
                    let position = match previous {
                        None => 3.0,
                        Some((right, width)) => (i - right) as f64 / (width - 1.0),
                    };
                    Place::Outside {
                        value: scaled_sigmoid(position),
                    }
                }
            };
            if i < probation {
                places.push(Place::Probationary);
            } else {
                if let Place::Window { index, .. } = place {
                    scored[index] = true;
                }
                places.push(place);
            }
            if let Some((_, left, right)) = current
                && i == right
            {
                previous = Some((right, (right - left + 1) as f64));
                current = None;
            }
        }
        Self {
            places,
            scored_windows: (0..bounds.len()).filter(|&w| scored[w]).collect(),
            label_count: windows.len(),
            unplaced: windows.len() - bounds.len(),
        }
    }

    pub fn rows(&self) -> usize {
        self.places.len()
    }

    /// The raw score of detecting the rows in `detected` (same length as
    /// the series) under `profile`.
    pub fn score(&self, detected: &[bool], profile: &Profile) -> f64 {
        let mut best: Vec<f64> = Vec::new();
        let window_slot = |index: usize| self.scored_windows.binary_search(&index).ok();
        best.resize(self.scored_windows.len(), -profile.fn_);
        let mut false_positives = 0.0;
        for (place, &hit) in self.places.iter().zip(detected) {
            if !hit {
                continue;
            }
            match *place {
                Place::Probationary => {}
                Place::Window { index, value } => {
                    if let Some(slot) = window_slot(index) {
                        best[slot] = best[slot].max(profile.tp * value);
                    }
                }
                Place::Outside { value } => false_positives += profile.fp * value,
            }
        }
        best.iter().sum::<f64>() + false_positives - self.missed_unplaced(profile)
    }

    fn missed_unplaced(&self, profile: &Profile) -> f64 {
        profile.fn_ * self.unplaced as f64
    }

    /// The score as a function of the threshold on `scores` (a row is
    /// detected when its score is ≥ the threshold): pairs of distinct
    /// thresholds, descending, and the score there; the first pair is
    /// (+∞, nothing detected).
    fn curve(&self, scores: &[f64], profile: &Profile) -> Vec<(f64, f64)> {
        let mut order: Vec<usize> = (0..self.rows())
            .filter(|&i| self.places[i] != Place::Probationary)
            .collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut best = vec![-profile.fn_; self.scored_windows.len()];
        let mut window_sum: f64 = best.iter().sum::<f64>() - self.missed_unplaced(profile);
        let mut false_positives = 0.0;
        let mut curve = vec![(f64::INFINITY, window_sum)];
        for (k, &i) in order.iter().enumerate() {
            match self.places[i] {
                Place::Window { index, value } => {
                    if let Ok(slot) = self.scored_windows.binary_search(&index) {
                        let improved = best[slot].max(profile.tp * value);
                        window_sum += improved - best[slot];
                        best[slot] = improved;
                    }
                }
                Place::Outside { value } => false_positives += profile.fp * value,
                Place::Probationary => {}
            }
            let last_of_its_score = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
            if last_of_its_score {
                curve.push((scores[i], window_sum + false_positives));
            }
        }
        curve
    }
}

/// A profile's corpus-level result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProfileResult {
    pub threshold: f64,
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
    /// 100·(raw − null)/(perfect − null).
    pub normalized: f64,
}

/// Scores a corpus: each series with its per-row anomaly scores. One
/// threshold is optimised for the whole corpus.
pub fn score_corpus(series: &[(NabSeries, Vec<f64>)], profile: &Profile) -> ProfileResult {
    let curves: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(s, scores)| s.curve(scores, profile))
        .collect();
    let mut candidates: Vec<f64> = curves.iter().flat_map(|c| c.iter().map(|p| p.0)).collect();
    candidates.sort_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    // Every curve is walked once, as the candidate threshold falls.
    let mut cursor = vec![0usize; curves.len()];
    let mut best = (f64::INFINITY, f64::NEG_INFINITY);
    for &threshold in &candidates {
        let mut total = 0.0;
        for (curve, at) in curves.iter().zip(cursor.iter_mut()) {
            while *at + 1 < curve.len() && curve[*at + 1].0 >= threshold {
                *at += 1;
            }
            total += curve[*at].1;
        }
        if total > best.1 {
            best = (threshold, total);
        }
    }
    let nothing: f64 = series
        .iter()
        .map(|(s, _)| s.score(&vec![false; s.rows()], profile))
        .sum();
    let everything: f64 = series
        .iter()
        .map(|(s, _)| s.score(&vec![true; s.rows()], profile))
        .sum();
    let null = nothing.max(everything);
    let perfect = profile.tp * series.iter().map(|(s, _)| s.label_count).sum::<usize>() as f64;
    let span = perfect - null;
    ProfileResult {
        threshold: best.0,
        raw: best.1,
        null,
        perfect,
        normalized: if span > 0.0 {
            100.0 * (best.1 - null) / span
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Profile = PROFILES[0];

    fn series() -> NabSeries {
        let times: Vec<f64> = (0..20).map(f64::from).collect();
        NabSeries::new(&times, &[(10.0, 14.0)])
    }

    fn detect(rows: &[usize]) -> Vec<bool> {
        (0..20).map(|i| rows.contains(&i)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn probation_follows_nab() {
        assert_eq!(probation_rows(20), 3);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(22695), 750);
    }

    #[test]
    fn hand_computed_rows() {
        let s = series();
        // Nothing detected: one missed window.
        assert!(close(s.score(&detect(&[]), &STANDARD), -1.0));
        // At the window's left edge: the full reward.
        assert!(close(s.score(&detect(&[10]), &STANDARD), 1.0));
        // At the right edge, p = −1/5: S = 2σ(1) − 1 = 0.462117, / S(−1).
        assert!(close(
            s.score(&detect(&[14]), &STANDARD),
            0.462117 / 0.986614
        ));
        // Several detections in one window: only the best counts.
        assert!(close(s.score(&detect(&[10, 12, 14]), &STANDARD), 1.0));
        // A false positive 2 rows past a width-5 window: p = 2/4, S = −0.848284.
        let fp = -0.11 * 0.848284;
        assert!(close(s.score(&detect(&[16]), &STANDARD), -1.0 + fp));
        // Before any window: −fp.
        assert!(close(s.score(&detect(&[5]), &STANDARD), -1.0 - 0.11));
        // Inside the probationary period: ignored.
        assert!(close(s.score(&detect(&[1]), &STANDARD), -1.0));
        let low_fn = PROFILES[2];
        assert!(close(s.score(&detect(&[]), &low_fn), -2.0));
    }

    #[test]
    fn a_window_without_a_row_is_missed_by_every_detector() {
        let times: Vec<f64> = (0..20).map(f64::from).collect();
        // The second window lies after the series ends.
        let s = NabSeries::new(&times, &[(10.0, 14.0), (30.0, 34.0)]);
        assert!(close(s.score(&detect(&[]), &STANDARD), -2.0));
        assert!(close(s.score(&detect(&[10]), &STANDARD), 0.0));
        let result = score_corpus(
            &[(
                s,
                detect(&[10])
                    .iter()
                    .map(|&d| f64::from(u8::from(d)))
                    .collect(),
            )],
            &STANDARD,
        );
        assert!(close(result.raw, 0.0), "{result:?}");
        assert_eq!(result.perfect, 2.0);
        // A series that could not be read has no rows: its windows are
        // missed, for the null detector too.
        let unread = NabSeries::new(&[], &[(0.0, 1.0), (5.0, 6.0)]);
        assert!(close(unread.score(&[], &STANDARD), -2.0));
        let result = score_corpus(&[(unread, Vec::new())], &STANDARD);
        assert!(
            close(result.raw, -2.0) && close(result.null, -2.0),
            "{result:?}"
        );
        assert!(close(result.normalized, 0.0), "{result:?}");
    }

    #[test]
    fn a_window_inside_probation_is_not_scored_but_counts_as_perfect() {
        let times: Vec<f64> = (0..20).map(f64::from).collect();
        let s = NabSeries::new(&times, &[(0.0, 1.0), (10.0, 14.0)]);
        assert!(close(s.score(&detect(&[]), &STANDARD), -1.0));
        let result = score_corpus(&[(s, vec![0.0; 20])], &STANDARD);
        assert_eq!(result.perfect, 2.0);
    }

    #[test]
    fn the_corpus_threshold_is_the_best_one_and_normalisation_spans_null_to_perfect() {
        let s = series();
        let mut scores = vec![0.1; 20];
        scores[10] = 0.9; // a perfect detection above 0.8
        scores[5] = 0.8; // a false positive just below it
        let result = score_corpus(&[(s.clone(), scores)], &STANDARD);
        assert_eq!(result.threshold, 0.9);
        assert!(close(result.raw, 1.0));
        // Null is the better constant detector: here, flagging every row
        // (window found, 12 false positives) beats flagging none (−1).
        let everything = s.score(&[true; 20], &STANDARD);
        assert!(everything > -1.0);
        assert!(close(result.null, everything));
        assert!(close(result.normalized, 100.0));
        // A detector that only fires outside the window scores below null.
        let mut scores = vec![0.1; 20];
        scores[5] = 0.9;
        let result = score_corpus(&[(s, scores)], &STANDARD);
        assert!(close(result.normalized, 0.0), "{result:?}");
    }
}
