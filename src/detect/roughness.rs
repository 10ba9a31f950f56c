//! A signal that moves faster than it ever did.
//!
//! An oscillation, a vibration or a sensor turning noisy keeps its level
//! and its range, and an autoencoder reconstructs a fast oscillation it
//! never saw nearly as well as the slow ones it did (on the NASA-like set
//! the error stayed near a tenth of the normal level jumps'). The guard
//! keeps the model's last window of points per feature and flags a window
//! whose median step (absolute difference between consecutive points) is
//! more than `ratio` times the largest of any training window, or of any
//! window it judged lately that no longer overlaps this one. The median
//! ignores the few large steps of a normal level change, which a mean or a
//! spread would count; leaving the overlapping windows out lets a window
//! that fills with a new motion point by point still be compared with what
//! came before it, and remembering the rest makes a lasting rougher regime
//! one event rather than one that never ends. A feature whose training
//! windows never moved (a median step of 0) is not judged.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::stillness::{MEMORY_WINDOWS, WindowJudgement, feature_column, hold_point};

/// The largest per-feature median step over every window of `window`
/// consecutive rows of row-major `[rows, features]` parts (windows do not
/// cross parts). `None` when no part holds a whole window or a feature has
/// a non-finite step.
pub fn roughest_windows<'a>(
    parts: impl IntoIterator<Item = &'a [f64]>,
    features: usize,
    window: usize,
) -> Option<Vec<f64>> {
    if features == 0 || window < 2 {
        return None;
    }
    let mut roughest = vec![f64::NEG_INFINITY; features];
    let mut steps = Vec::with_capacity(window);
    for part in parts {
        let rows = part.len() / features;
        if rows < window {
            continue;
        }
        for (feature, top) in roughest.iter_mut().enumerate() {
            let column = feature_column(part, features, feature);
            for values in column.windows(window) {
                *top = top.max(median_step(values.iter().copied(), &mut steps));
            }
        }
    }
    roughest.iter().all(|v| v.is_finite()).then_some(roughest)
}

/// Per feature, the smallest positive absolute difference between
/// consecutive values of row-major `[rows, features]` parts (never across
/// parts): the data's resolution, 1 for counts. 0 for a feature that never
/// moves or whose values are not finite.
pub fn finest_steps<'a>(parts: impl IntoIterator<Item = &'a [f64]>, features: usize) -> Vec<f64> {
    let mut finest = vec![f64::INFINITY; features];
    for part in parts {
        for (earlier, later) in part
            .chunks_exact(features)
            .zip(part.chunks_exact(features).skip(1))
        {
            for ((finest, &a), &b) in finest.iter_mut().zip(earlier).zip(later) {
                let step = (b - a).abs();
                if step > 0.0 && step.is_finite() {
                    *finest = finest.min(step);
                }
            }
        }
    }
    finest
        .into_iter()
        .map(|v| if v.is_finite() { v } else { 0.0 })
        .collect()
}

/// The median of the absolute differences between consecutive values (the
/// mean of the middle two for an even count); `steps` is scratch space.
fn median_step(values: impl Iterator<Item = f64>, steps: &mut Vec<f64>) -> f64 {
    let mut previous: Option<f64> = None;
    let differences = values.filter_map(|v| previous.replace(v).map(|p| v - p));
    median_abs(differences, steps)
}

/// The median of the absolute values (the mean of the middle two for an
/// even count; 0 for none); `scratch` is reused space.
pub(super) fn median_abs(values: impl Iterator<Item = f64>, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend(values.map(f64::abs));
    let count = scratch.len();
    if count == 0 {
        return 0.0;
    }
    let middle = count / 2;
    let (lower, &mut upper, _) = scratch.select_nth_unstable_by(middle, f64::total_cmp);
    if count % 2 == 1 {
        return upper;
    }
    let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (below + upper) / 2.0
}

/// How many of the data's resolution a window's statistic must exceed its
/// bound by: more than one quantum (see [`PeakMemory::judge_above`]).
const QUANTUM_MARGIN: f64 = 1.25;

/// Per feature, the largest statistic of the windows a guard judged
/// lately: the largest of each of the last [`MEMORY_WINDOWS`] + 1 blocks
/// of `window` judgements, oldest first. The newest block's windows may
/// overlap the one being judged, so it is remembered but not compared with
/// yet: a window that fills with a new motion point by point is compared
/// with what came before it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PeakMemory {
    remembered: Vec<VecDeque<f64>>,
    /// Per feature: the largest of the block being judged.
    block: Vec<f64>,
    /// Windows judged so far.
    judged: u64,
}

impl PeakMemory {
    /// The larger of `bound` and feature `feature`'s windows remembered
    /// that no longer overlap the one judged.
    fn allowed(&self, feature: usize, bound: f64) -> f64 {
        self.remembered.get(feature).map_or(bound, |remembered| {
            remembered
                .iter()
                .take(remembered.len().saturating_sub(1))
                .copied()
                .fold(bound, f64::max)
        })
    }

    /// How far the window judged exceeds its bound: the largest `now /
    /// allowed - 1` over the features whose `ceiling` (the training
    /// windows' largest statistic) is positive, where `allowed` is `ratio`
    /// times the larger of it and the windows remembered, and more than
    /// one of the feature's `resolution` over that larger one (nothing
    /// more where it has none); 0 when none exceeds. Then remembers `now`,
    /// one window's statistic per feature.
    ///
    /// The resolution is there for quantised data: a median of whole
    /// counts moves in whole steps, so a window whose median step is 2
    /// against a training window's 1 is one quantum rougher, not twice as
    /// rough, and the ratio alone would call it news. The next level up is
    /// half a quantum further (the median of an even count), and the
    /// quarter between keeps single-precision rounding of the values from
    /// deciding.
    fn judge_above(
        &mut self,
        now: &[f64],
        ceiling: &[f64],
        resolution: &[f64],
        ratio: f64,
        window: usize,
    ) -> f64 {
        let mut above: f64 = 0.0;
        for (feature, (&now, &ceiling)) in now.iter().zip(ceiling).enumerate() {
            let base = self.allowed(feature, ceiling);
            let quantum = resolution.get(feature).copied().unwrap_or(0.0);
            let allowed = (ratio * base).max(base + QUANTUM_MARGIN * quantum);
            if ceiling > 0.0 && now > allowed {
                above = above.max(now / allowed - 1.0);
            }
        }
        self.record(now, window);
        above
    }

    /// Remembers one judged window's statistic per feature.
    fn record(&mut self, statistics: &[f64], window: usize) {
        let features = statistics.len();
        self.remembered.resize_with(features, VecDeque::new);
        self.block.resize(features, 0.0);
        for (block, &now) in self.block.iter_mut().zip(statistics) {
            *block = block.max(now);
        }
        self.judged += 1;
        if self.judged.is_multiple_of(window as u64) {
            for (remembered, block) in self.remembered.iter_mut().zip(&mut self.block) {
                remembered.push_back(std::mem::take(block));
                if remembered.len() > MEMORY_WINDOWS + 1 {
                    remembered.pop_front();
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn blocks(&self, feature: usize) -> usize {
        self.remembered.get(feature).map_or(0, VecDeque::len)
    }
}

/// What a window statistic is judged against, for the roughness and
/// seasonal checks alike: per feature the largest of any training window,
/// the data's resolution and the windows judged lately, and the ratio.
/// Flattened into each guard, so their saved form keeps its fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PeakBound {
    /// Per feature: the largest training window's statistic.
    ceiling: Vec<f64>,
    /// Per feature: the training data's resolution (empty: none known).
    #[serde(default)]
    resolution: Vec<f64>,
    ratio: f64,
    /// The statistics judged lately.
    memory: PeakMemory,
}

impl PeakBound {
    pub(super) fn new(ceiling: Vec<f64>, resolution: Vec<f64>, ratio: f64) -> Self {
        Self {
            ceiling,
            resolution,
            ratio,
            memory: PeakMemory::default(),
        }
    }

    pub(super) fn features(&self) -> usize {
        self.ceiling.len()
    }

    /// Takes the data's resolution where the bound has none (one saved
    /// before it was kept) and `resolution` has one per feature. True when
    /// it took it.
    pub(super) fn adopt_resolution(&mut self, resolution: &[f64]) -> bool {
        let adopt = self.resolution.is_empty() && resolution.len() == self.ceiling.len();
        if adopt {
            self.resolution = resolution.to_vec();
        }
        adopt
    }

    /// Judges one window's statistic per feature (see
    /// [`PeakMemory::judge_above`]), then remembers it.
    pub(super) fn judge(&mut self, now: &[f64], window: usize) -> WindowJudgement {
        let above =
            self.memory
                .judge_above(now, &self.ceiling, &self.resolution, self.ratio, window);
        WindowJudgement::beyond(above)
    }
}

/// The last window of one series and the ceiling over its median step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoughnessGuard {
    /// The roughest training window's median step and the steps judged
    /// lately.
    #[serde(flatten)]
    bound: PeakBound,
    window: usize,
    /// The last `window` points, row-major.
    recent: VecDeque<f32>,
    #[serde(skip)]
    steps: Vec<f64>,
    #[serde(skip)]
    now: Vec<f64>,
}

impl RoughnessGuard {
    /// `ceiling` and `resolution` per feature in the units of the values
    /// to come (`resolution` may be empty); `window` in points.
    pub fn new(ceiling: Vec<f64>, resolution: Vec<f64>, ratio: f64, window: usize) -> Self {
        let features = ceiling.len();
        Self {
            recent: VecDeque::with_capacity(window * features),
            bound: PeakBound::new(ceiling, resolution, ratio),
            window: window.max(2),
            steps: Vec::new(),
            now: Vec::new(),
        }
    }

    /// Forgets the points held, as a gap in the values does: the next
    /// judgement waits for a whole window again.
    pub fn break_window(&mut self) {
        self.recent.clear();
    }

    /// See [`PeakBound::adopt_resolution`].
    pub fn adopt_resolution(&mut self, resolution: &[f64]) -> bool {
        self.bound.adopt_resolution(resolution)
    }

    /// Takes one point's values (one per feature); once a whole window is
    /// held, judges its median step against the ceiling and the windows
    /// remembered, then remembers it.
    pub fn judge(&mut self, values: &[f32]) -> WindowJudgement {
        let features = self.bound.features();
        if !hold_point(&mut self.recent, values, features, self.window) {
            return WindowJudgement::CALM;
        }
        self.now.clear();
        for feature in 0..features {
            let column = self
                .recent
                .iter()
                .skip(feature)
                .step_by(features)
                .map(|&v| f64::from(v));
            self.now.push(median_step(column, &mut self.steps));
        }
        self.bound.judge(&self.now, self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_step_ignores_a_level_change_and_averages_an_even_middle() {
        let mut steps = Vec::new();
        // Steps 1, 1, 9, 1: one jump among small moves.
        let jump = [0.0, 1.0, 2.0, 11.0, 12.0];
        assert_eq!(median_step(jump.into_iter(), &mut steps), 1.0);
        // Steps 1, 3: the middle two averaged.
        assert_eq!(median_step([0.0, 1.0, 4.0].into_iter(), &mut steps), 2.0);
        assert_eq!(median_step([5.0].into_iter(), &mut steps), 0.0);
    }

    #[test]
    fn the_roughest_window_is_found_per_feature_and_never_across_parts() {
        // Feature 0 steps by 1 everywhere; feature 1 steps by 4 over rows
        // 1..=3 of the first part only, and the seam between parts would
        // be a step of 100.
        let first = [0.0, 0.0, 1.0, 4.0, 2.0, 0.0, 3.0, 4.0];
        let second = [100.0, 100.0, 101.0, 100.0, 102.0, 100.0];
        let roughest = roughest_windows([&first[..], &second[..]], 2, 3);
        assert_eq!(roughest, Some(vec![1.0, 4.0]));
        assert_eq!(
            roughest_windows([&second[..]], 2, 4),
            None,
            "no whole window"
        );
    }

    /// A slow wave with a level jump every 40 points, then a fast
    /// oscillation of a third of the jump's height.
    fn normal(i: usize) -> f32 {
        let level = if (i / 40).is_multiple_of(2) { 0.0 } else { 3.0 };
        level + (i as f32 / 10.0).sin() * 0.5
    }

    #[test]
    fn a_fast_oscillation_is_flagged_once_where_level_jumps_are_not() {
        let window = 16;
        let training: Vec<f64> = (0..400).map(|i| f64::from(normal(i))).collect();
        let ceiling = roughest_windows([&training[..]], 1, window).unwrap_or_default();
        let mut guard = RoughnessGuard::new(ceiling, Vec::new(), 2.0, window);
        for i in 0..400 {
            assert!(!guard.judge(&[normal(i)]).flagged, "normal point {i}");
        }
        let oscillating = |i: usize| normal(i) + if i.is_multiple_of(2) { 1.0 } else { -1.0 };
        let verdicts: Vec<bool> = (400..1000)
            .map(|i| guard.judge(&[oscillating(i)]).flagged)
            .collect();
        let first = verdicts.iter().position(|&f| f);
        assert!(
            first.is_some_and(|f| f < window),
            "flagged within a window: {first:?}"
        );
        let last = verdicts.iter().rposition(|&f| f).unwrap_or_default();
        assert!(
            last < 3 * window,
            "a lasting oscillation is remembered, not flagged for ever (last flag at {last})"
        );
    }

    #[test]
    fn a_regime_is_forgotten_after_the_memory() {
        let window = 4;
        let calm = |i: usize| if i.is_multiple_of(2) { 0.0f32 } else { 0.1 };
        let rough = |i: usize| if i.is_multiple_of(2) { 0.0f32 } else { 1.0 };
        let flags_of_second_stretch = |calm_for: usize| {
            let mut guard = RoughnessGuard::new(vec![0.1], Vec::new(), 2.0, window);
            let mut values: Vec<f32> = (0..8).map(calm).collect();
            values.extend((0..8).map(rough));
            values.extend((0..calm_for).map(calm));
            let second = values.len();
            values.extend((0..8).map(rough));
            let flags: Vec<bool> = values.iter().map(|&v| guard.judge(&[v]).flagged).collect();
            assert!(flags[..second].iter().any(|&f| f), "the first stretch");
            flags[second..].iter().any(|&f| f)
        };
        assert!(flags_of_second_stretch((MEMORY_WINDOWS + 3) * window));
        assert!(!flags_of_second_stretch(MEMORY_WINDOWS / 2 * window));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut guard = RoughnessGuard::new(vec![1.0], Vec::new(), 2.0, 4);
        for i in 0..10 * 4 * MEMORY_WINDOWS {
            guard.judge(&[(i % 2) as f32 * i as f32]);
        }
        assert_eq!(guard.bound.memory.blocks(0), MEMORY_WINDOWS + 1);
    }

    #[test]
    fn the_score_is_one_half_at_the_allowed_step() {
        // Steps of 3 against an allowed 2 × 1.
        let mut guard = RoughnessGuard::new(vec![1.0], Vec::new(), 2.0, 2);
        guard.judge(&[0.0]);
        let judgement = guard.judge(&[3.0]);
        let r = 3.0 / 2.0 - 1.0;
        assert!(judgement.flagged);
        assert!((judgement.score - (1.0 - 1.0 / (2.0 + r))).abs() < 1e-9);
        let mut at = RoughnessGuard::new(vec![1.0], Vec::new(), 2.0, 2);
        at.judge(&[0.0]);
        let edge = at.judge(&[2.0]);
        assert!(!edge.flagged && edge.score == 0.0, "{edge:?}");
    }

    /// The bound is flattened into the guard, so a guard saved before it
    /// (and before the resolution) reads back and judges as it did.
    #[test]
    fn a_guard_saved_before_the_shared_bound_reads_back() -> Result<(), serde_json::Error> {
        let saved = r#"{"ceiling":[1.0],"ratio":2.0,"window":2,"recent":[0.0],
            "memory":{"remembered":[],"block":[],"judged":0}}"#;
        let mut guard: RoughnessGuard = serde_json::from_str(saved)?;
        assert!(guard.judge(&[3.0]).flagged, "a step of 3 against 2 × 1");
        let again: RoughnessGuard = serde_json::from_str(&serde_json::to_string(&guard)?)?;
        assert_eq!(again.bound.ceiling, vec![1.0]);
        Ok(())
    }

    #[test]
    fn the_finest_step_is_found_per_feature_and_never_across_parts() {
        // Feature 0 moves by 2, then 0.5; feature 1 never moves; the seam
        // between the parts would be a step of 0.25.
        let first = [0.0, 7.0, 2.0, 7.0, 2.5, 7.0];
        let second = [2.75, 7.0, 4.75, 7.0];
        assert_eq!(finest_steps([&first[..], &second[..]], 2), vec![0.5, 0.0]);
        assert_eq!(
            finest_steps([&[1.0, f64::NAN, 3.0, 5.5][..]], 1),
            vec![2.5],
            "no step to or from a missing value"
        );
    }

    /// Counts whose training windows' median step is 1 (whole steps): a
    /// window of steps of 2 is one quantum rougher, which the resolution
    /// allows at a ratio of 1.25, and a window of steps of 3 is not;
    /// without the resolution the steps of 2 are flagged.
    #[test]
    fn one_quantum_more_is_allowed_in_quantised_data() {
        let window = 8;
        let counts = |step: u32| (0..window as u32).map(move |i| (10 + (i % 2) * step) as f32);
        let flags = |resolution: Vec<f64>, step: u32| {
            let mut guard = RoughnessGuard::new(vec![1.0], resolution, 1.25, window);
            counts(step).any(|v| guard.judge(&[v]).flagged)
        };
        assert!(!flags(vec![1.0], 2));
        assert!(flags(vec![1.0], 3));
        assert!(flags(Vec::new(), 2));
    }

    #[test]
    fn a_missing_value_restarts_the_window_and_a_still_feature_is_not_judged() {
        let mut guard = RoughnessGuard::new(vec![0.0, 1.0], Vec::new(), 2.0, 2);
        assert!(!guard.judge(&[0.0, 0.0]).flagged);
        assert!(!guard.judge(&[9.0, f32::NAN]).flagged);
        assert!(!guard.judge(&[0.0, 5.0]).flagged, "one point is no window");
        assert!(guard.judge(&[9.0, 0.0]).flagged, "feature 1 stepped by 5");
        let mut still = RoughnessGuard::new(vec![0.0], Vec::new(), 2.0, 2);
        still.judge(&[0.0]);
        assert!(!still.judge(&[9.0]).flagged, "feature 0 never moved");
    }
}
