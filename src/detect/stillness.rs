//! A signal that stops moving.
//!
//! A stuck sensor, a frozen counter or a process that stopped reporting
//! writes a flat line, and a flat line is the easiest thing an autoencoder
//! reconstructs: its error falls, so no threshold on the error can see it.
//! The guard keeps the model's last window of points per feature and flags
//! a window whose spread (standard deviation) falls below `ratio` of the
//! quietest window in the training data, or of the quietest of the windows
//! it judged lately ([`MEMORY_WINDOWS`] model windows of them): so a new
//! quieter regime raises one flag, not one per point, while a sensor that
//! sticks again once it has moved for a while is flagged again. A feature
//! that had perfectly flat windows in training is never judged.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How long the guard remembers the windows it judged, in model windows
/// (kept as the quietest of each block of one window's judgements, so 16
/// to 17 of them).
///
/// Remembered for ever (as before 2026-11-30), the first stuck stretch of a
/// series set the floor to 0 and no later one was ever flagged: the
/// NASA-like set found 30 of its 42 anomalies (seed 42), and 32 with a
/// memory of 16 windows, for no false event more on any set (see
/// docs/detection.md).
pub const MEMORY_WINDOWS: usize = 16;

/// Feature `feature`'s values in row-major `[rows, features]` values: what
/// the training-side scans of the window checks slide their windows over.
pub(super) fn feature_column(part: &[f64], features: usize, feature: usize) -> Vec<f64> {
    part.iter()
        .skip(feature)
        .step_by(features)
        .copied()
        .collect()
}

/// Adds one point's values (one per feature) to `recent`, the last points
/// of a window check, row-major, keeping at most `rows` of them; true once
/// it holds `rows`. A point with a missing or non-finite value, or the
/// wrong number of them, is a gap: it empties `recent`, so that no window
/// spans it. The stillness, roughness and seasonal checks all hold their
/// points so.
pub(super) fn hold_point(
    recent: &mut VecDeque<f32>,
    values: &[f32],
    features: usize,
    rows: usize,
) -> bool {
    if values.len() != features || values.iter().any(|v| !v.is_finite()) {
        recent.clear();
        return false;
    }
    // Room first, then the point: pushing past a full deque's capacity
    // would double it, and the guards are held per series for months.
    let held = rows * features;
    let excess = (recent.len() + features).saturating_sub(held);
    recent.drain(..excess.min(recent.len()));
    recent.extend(values.iter().copied());
    recent.len() == held
}

/// The smallest per-feature standard deviation over every window of
/// `window` consecutive rows of row-major `[rows, features]` parts (windows
/// do not cross parts). `None` when no part holds a whole window.
pub fn quietest_windows<'a>(
    parts: impl IntoIterator<Item = &'a [f64]>,
    features: usize,
    window: usize,
) -> Option<Vec<f64>> {
    if features == 0 || window < 2 {
        return None;
    }
    let mut quietest = vec![f64::INFINITY; features];
    let mut any = false;
    for part in parts {
        let rows = part.len() / features;
        if rows < window {
            continue;
        }
        any = true;
        for (feature, floor) in quietest.iter_mut().enumerate() {
            let column = feature_column(part, features, feature);
            for values in column.windows(window) {
                *floor = floor.min(spread(values.iter().copied()));
            }
        }
    }
    any.then_some(quietest)
        .filter(|q| q.iter().all(|v| v.is_finite()))
}

/// Population standard deviation, in two passes. A flat window is exactly
/// 0 whatever its level (its rounded mean would leave a residue of 1e-17),
/// so that a feature with flat training windows stays unjudged.
fn spread(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (sum, count, low, high) = values.clone().fold(
        (0.0, 0usize, f64::INFINITY, f64::NEG_INFINITY),
        |(s, n, lo, hi), v| (s + v, n + 1, lo.min(v), hi.max(v)),
    );
    if count == 0 || low == high {
        return 0.0;
    }
    let mean = sum / count as f64;
    (values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / count as f64).sqrt()
}

/// A window check's verdict on one point (the stillness, roughness and
/// seasonal checks').
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowJudgement {
    pub flagged: bool,
    /// `1 - 1 / (2 + r)` for a window `r` beyond its bound (stillness:
    /// `allowed / spread - 1`; roughness and seasonal: `statistic /
    /// allowed - 1`): 0.5 exactly at the bound, like the error's score at
    /// its threshold, towards 1 far beyond it; 0 within it.
    pub score: f64,
}

impl WindowJudgement {
    pub const CALM: Self = Self {
        flagged: false,
        score: 0.0,
    };

    /// The verdict on a window `beyond` its bound (see `score`); calm at 0.
    pub fn beyond(beyond: f64) -> Self {
        if beyond > 0.0 {
            Self {
                flagged: true,
                score: 1.0 - 1.0 / (2.0 + beyond),
            }
        } else {
            Self::CALM
        }
    }
}

/// The last window of one series and the floor under its spread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StillnessGuard {
    /// Per feature: the quietest training window's spread (in a state
    /// saved before the guard forgot, the quietest window ever judged).
    floor: Vec<f64>,
    ratio: f64,
    window: usize,
    /// The last `window` points, row-major.
    recent: VecDeque<f32>,
    /// Per feature: the quietest spread judged in each of the last
    /// [`MEMORY_WINDOWS`] blocks of `window` judgements, oldest first: a
    /// fixed few numbers per feature, whatever the series does.
    #[serde(default)]
    remembered: Vec<VecDeque<f64>>,
    /// Per feature: the quietest spread of the block being judged.
    #[serde(default)]
    block: Vec<f64>,
    /// Windows judged so far.
    #[serde(default)]
    judged: u64,
}

impl StillnessGuard {
    /// `floor` per feature in the units of the values to come; `window` in
    /// points.
    pub fn new(floor: Vec<f64>, ratio: f64, window: usize) -> Self {
        Self {
            recent: VecDeque::with_capacity(window * floor.len()),
            floor,
            ratio,
            window: window.max(2),
            remembered: Vec::new(),
            block: Vec::new(),
            judged: 0,
        }
    }

    /// Forgets the points held, as a gap in the values does: the next
    /// judgement waits for a whole window again.
    pub fn break_window(&mut self) {
        self.recent.clear();
    }

    /// Takes one point's values (one per feature); once a whole window is
    /// held, judges its spread against the floor and the windows
    /// remembered, then remembers it.
    pub fn judge(&mut self, values: &[f32]) -> WindowJudgement {
        let features = self.floor.len();
        if !hold_point(&mut self.recent, values, features, self.window) {
            return WindowJudgement::CALM;
        }
        self.remembered.resize_with(features, VecDeque::new);
        self.block.resize(features, f64::INFINITY);
        let mut below: f64 = 0.0;
        for (((feature, floor), remembered), block) in self
            .floor
            .iter()
            .enumerate()
            .zip(&self.remembered)
            .zip(&mut self.block)
        {
            let quietest = remembered.iter().copied().fold(floor.min(*block), f64::min);
            let column = self
                .recent
                .iter()
                .skip(feature)
                .step_by(features)
                .map(|&v| f64::from(v));
            let now = spread(column);
            let allowed = self.ratio * quietest;
            if allowed > 0.0 && now < allowed {
                below = below.max(allowed / now.max(allowed * 1e-9) - 1.0);
            }
            *block = block.min(now);
        }
        self.judged += 1;
        if self.judged.is_multiple_of(self.window as u64) {
            for (remembered, block) in self.remembered.iter_mut().zip(&mut self.block) {
                remembered.push_back(std::mem::replace(block, f64::INFINITY));
                if remembered.len() > MEMORY_WINDOWS {
                    remembered.pop_front();
                }
            }
        }
        WindowJudgement::beyond(below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full window makes room before each point: its buffer never grows
    /// past what it was given for the window (a guard is held per series).
    #[test]
    fn held_points_never_outgrow_their_window() {
        let (rows, features) = (40, 2);
        let mut recent = VecDeque::with_capacity(rows * features);
        let capacity = recent.capacity();
        for i in 0..10 * rows {
            let full = hold_point(&mut recent, &[i as f32, 1.0], features, rows);
            assert_eq!(full, i + 1 >= rows);
        }
        assert_eq!(recent.len(), rows * features);
        assert_eq!(recent.front(), Some(&(9.0 * rows as f32)));
        assert_eq!(recent.capacity(), capacity);
    }

    #[test]
    fn the_quietest_window_is_found_per_feature_and_never_across_parts() {
        // Feature 0 moves by one everywhere; feature 1 is flat over rows
        // 2..=4 of the first part only.
        let first = [0.0, 5.0, 1.0, 6.0, 0.0, 7.0, 1.0, 7.0, 0.0, 7.0];
        let second = [1.0, 1.0, 0.0, 1.0];
        let quietest = quietest_windows([&first[..], &second[..]], 2, 3);
        assert_eq!(quietest.as_ref().map(|q| q[1]), Some(0.0));
        let spread_of_0_1_0 = (2.0f64 / 9.0).sqrt();
        assert!(quietest.is_some_and(|q| (q[0] - spread_of_0_1_0).abs() < 1e-12));
        assert_eq!(
            quietest_windows([&second[..]], 2, 3),
            None,
            "no whole window"
        );
        // 0.1 summed 32 times and divided is not exactly 0.1.
        let flat = [0.1; 32];
        assert_eq!(quietest_windows([&flat[..]], 1, 32), Some(vec![0.0]));
    }

    #[test]
    fn a_flat_window_is_flagged_once_and_then_known() {
        let mut guard = StillnessGuard::new(vec![1.0], 0.3, 4);
        let moving = [0.0f32, 2.0, 0.0, 2.0];
        for v in moving {
            assert!(!guard.judge(&[v]).flagged);
        }
        // The window slides into a flat line: its spread falls to 0.
        let verdicts: Vec<WindowJudgement> = (0..6).map(|_| guard.judge(&[5.0])).collect();
        let first = verdicts.iter().position(|j| j.flagged);
        assert_eq!(
            first,
            Some(3),
            "when the window holds only 5s: {verdicts:?}"
        );
        assert!(verdicts[3].score > 0.99, "{verdicts:?}");
        assert!(
            verdicts[4..].iter().all(|j| !j.flagged),
            "the flat window is remembered"
        );
    }

    #[test]
    fn a_signal_that_sticks_again_after_moving_for_a_while_is_flagged_again() {
        let window = 4;
        let memory = window * MEMORY_WINDOWS;
        let moving = |i: usize| if i.is_multiple_of(2) { 0.0f32 } else { 2.0 };
        // Sticks, moves for `moving_for` points, sticks again: how many
        // flags the second stretch raises.
        let second_stretch_flags = |moving_for: usize| {
            let mut guard = StillnessGuard::new(vec![1.0], 0.3, window);
            let mut values: Vec<f32> = (0..8).map(moving).collect();
            values.extend([5.0; 8]);
            values.extend((0..moving_for).map(moving));
            let second = values.len();
            values.extend([5.0; 8]);
            let verdicts: Vec<bool> = values.iter().map(|&v| guard.judge(&[v]).flagged).collect();
            assert_eq!(
                verdicts[..second].iter().filter(|&&f| f).count(),
                1,
                "the first stretch raises one flag"
            );
            verdicts[second..].iter().filter(|&&f| f).count()
        };
        assert_eq!(second_stretch_flags(memory + 2 * window), 1);
        // Within the memory, the first stretch's flat window is still the
        // quietest remembered.
        assert_eq!(second_stretch_flags(memory / 2), 0);
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut guard = StillnessGuard::new(vec![1.0], 0.3, 4);
        // Ever louder windows: each block's quietest differs.
        for i in 0..10 * 4 * MEMORY_WINDOWS {
            guard.judge(&[(i % 2) as f32 * i as f32]);
        }
        assert_eq!(guard.remembered[0].len(), MEMORY_WINDOWS);
    }

    #[test]
    fn the_score_is_one_half_at_the_allowed_spread() {
        // A window of spread 0.5 against an allowed 0.3 × 2 = 0.6.
        let mut guard = StillnessGuard::new(vec![2.0], 0.3, 2);
        guard.judge(&[0.0]);
        let judgement = guard.judge(&[1.0]);
        let r = 0.6 / 0.5 - 1.0;
        assert!(judgement.flagged);
        assert!((judgement.score - (1.0 - 1.0 / (2.0 + r))).abs() < 1e-9);
        let mut at = StillnessGuard::new(vec![2.0], 0.25, 2);
        at.judge(&[0.0]);
        let edge = at.judge(&[1.0]);
        assert!(!edge.flagged && edge.score == 0.0, "{edge:?}");
    }

    #[test]
    fn a_missing_value_restarts_the_window_and_a_flat_feature_is_not_judged() {
        let mut guard = StillnessGuard::new(vec![0.0, 1.0], 0.3, 2);
        assert!(!guard.judge(&[1.0, 0.0]).flagged);
        assert!(!guard.judge(&[1.0, f32::NAN]).flagged);
        assert!(!guard.judge(&[1.0, 3.0]).flagged, "one point is no window");
        assert!(guard.judge(&[1.0, 3.0]).flagged, "feature 1 stopped");
    }
}
