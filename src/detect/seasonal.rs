//! A day, or a week, unlike the ones before it.
//!
//! A daily cycle whose peak comes late, stays low or goes missing keeps
//! every value and every step within what training saw, and a model window
//! of a few hours cannot tell one day's afternoon from another's. The guard
//! keeps a cycle (a day, or a week) and a window of points per feature and
//! judges each window's differences from the same points one cycle
//! earlier: it flags a window whose median absolute difference is more
//! than `ratio` times the largest of any training window, or of any window
//! it judged lately that no longer overlaps this one (the memory of the
//! roughness check). The median ignores a spike or two that a cycle's
//! difference carries twice. A detector keeps one guard a day and one a
//! week: a weekday that looks like a Sunday (a holiday) differs from the
//! day before no more than every Monday does, but it differs from the same
//! day a week earlier. A guard runs only where the data's interval divides
//! its cycle into at most [`MAX_PERIOD`] points and the training data
//! follow the cycle ([`cycle_explains`]), and judges nothing until it
//! holds a cycle.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::roughness::{PeakBound, median_abs};
use super::stillness::{WindowJudgement, feature_column, hold_point};

/// The longest cycle a guard keeps, in points: a day of one-minute points,
/// a week of seven-minute ones (5.8 kB a feature). Finer data would cost
/// more per series than the rest of its detector; the check stays off
/// there.
pub const MAX_PERIOD: usize = 1440;

/// Cycles a training part must hold for its differences to bound a guard:
/// with one cycle and a window, NAB's hourly realAdExchange series (243–246
/// probationary rows) bounded the weekly guard with about two days of
/// differences, as did the hourly Yahoo-like and point-outlier sets under
/// the streaming protocol, and all of them raised false events by it (see
/// docs/detection.md, "A week unlike the weeks before it").
pub const MIN_CYCLES: usize = 2;

/// Whether a training part of `rows` points holds the cycles
/// ([`MIN_CYCLES`]) that a guard's bound and its verdict on whether the
/// data follow the cycle are taken from.
fn holds_cycles(rows: usize, period: usize) -> bool {
    rows >= MIN_CYCLES * period
}

/// The cycles a detector keeps a guard for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    Day,
    Week,
}

impl Cycle {
    pub const ALL: [Cycle; 2] = [Cycle::Day, Cycle::Week];

    /// Its length in seconds.
    pub fn seconds(self) -> f64 {
        match self {
            Cycle::Day => 86_400.0,
            Cycle::Week => 7.0 * 86_400.0,
        }
    }
}

/// The points in `cycle` at `spacing` seconds a point, where that is a
/// whole number from 2 to [`MAX_PERIOD`].
pub fn cycle_period(spacing: f64, cycle: Cycle) -> Option<usize> {
    if !(spacing > 0.0 && spacing.is_finite()) {
        return None;
    }
    let points = cycle.seconds() / spacing;
    let whole = points.round();
    ((points - whole).abs() < 1e-6 && (2.0..=MAX_PERIOD as f64).contains(&whole))
        .then_some(whole as usize)
}

/// The largest per-feature median absolute difference from `period` rows
/// earlier over every window of `window` consecutive differences of
/// row-major `[rows, features]` parts (neither crosses parts). Only parts
/// that hold two cycles (and no fewer than a cycle and a window) count: a
/// cycle's difference varies with where in the cycle it is taken (a Monday
/// from its Sunday, a Tuesday from its Monday), and a bound from a few of
/// its hours is no bound for the rest. `None` when no part holds that.
pub fn largest_cycle_differences<'a>(
    parts: impl IntoIterator<Item = &'a [f64]>,
    features: usize,
    window: usize,
    period: usize,
) -> Option<Vec<f64>> {
    if features == 0 || window == 0 || period == 0 {
        return None;
    }
    let mut largest = vec![f64::NEG_INFINITY; features];
    let mut scratch = Vec::with_capacity(window);
    for part in parts {
        let rows = part.len() / features;
        if rows < period + window || !holds_cycles(rows, period) {
            continue;
        }
        for (feature, top) in largest.iter_mut().enumerate() {
            let column = feature_column(part, features, feature);
            let differences: Vec<f64> = column
                .iter()
                .zip(&column[period..])
                .map(|(earlier, now)| now - earlier)
                .collect();
            for values in differences.windows(window) {
                *top = top.max(median_abs(values.iter().copied(), &mut scratch));
            }
        }
    }
    largest.iter().all(|v| v.is_finite()).then_some(largest)
}

/// How much closer the same time a cycle earlier must be than the opposite
/// time (half a cycle earlier), in mean absolute difference, for a cycle
/// to bound a guard. Where the data repeat with the cycle the ratio is
/// small (NAB's art_daily series ≤ 0.06, nyc_taxi 0.25 a day and 0.14 a
/// week, the hourly exchange-2 series 0.19–0.25, the synthetic Yahoo-like
/// daily shapes 0.13–0.26); noise, level steps and walks differ as much or
/// more a cycle apart (the NASA-like set 1.3–1.9): a guard there judges
/// how much the data move, not whether a cycle went astray, and raised
/// false events. Pure noise sits near 1, and over the few differences of
/// two short cycles its ratio wanders (a standard deviation of 0.19 over
/// two days of hourly points), hence the margin. The mean, not the
/// median: a peak of a few hours a day leaves most of the day's
/// half-cycle differences at the noise. See docs/detection.md, "A cycle
/// the data do not follow".
pub const EXPLAINED_SHARE: f64 = 0.75;

/// Whether the data follow `period`: in every feature, over the parts that
/// hold two cycles, the mean absolute difference from a cycle earlier is
/// below [`EXPLAINED_SHARE`] times the mean from half a cycle earlier.
pub fn cycle_explains<'a>(
    parts: impl IntoIterator<Item = &'a [f64]>,
    features: usize,
    period: usize,
) -> bool {
    let half = period / 2;
    if features == 0 || half == 0 {
        return false;
    }
    // Per feature: the sums of absolute differences a cycle and half a
    // cycle apart, taken at the same points (from a cycle on), and their count.
    let mut sums = vec![(0.0, 0.0, 0usize); features];
    for part in parts {
        if !holds_cycles(part.len() / features, period) {
            continue;
        }
        for (feature, (cycle_apart, half_apart, count)) in sums.iter_mut().enumerate() {
            let column = feature_column(part, features, feature);
            for (at, now) in column.iter().enumerate().skip(period) {
                *cycle_apart += (now - column[at - period]).abs();
                *half_apart += (now - column[at - half]).abs();
                *count += 1;
            }
        }
    }
    sums.iter().all(|&(cycle_apart, half_apart, count)| {
        count > 0 && cycle_apart < EXPLAINED_SHARE * half_apart
    })
}

/// A cycle and a window of one series and the bound on its differences.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeasonalGuard {
    /// The largest training window's median difference and the
    /// differences judged lately.
    #[serde(flatten)]
    bound: PeakBound,
    window: usize,
    /// The cycle (a day or a week), in points.
    period: usize,
    /// The last `period + window` points, row-major.
    recent: VecDeque<f32>,
    #[serde(skip)]
    scratch: Vec<f64>,
    #[serde(skip)]
    now: Vec<f64>,
}

impl SeasonalGuard {
    /// `ceiling` and `resolution` per feature in the units of the values
    /// to come (`resolution` may be empty); `window` and `period` in
    /// points.
    pub fn new(
        ceiling: Vec<f64>,
        resolution: Vec<f64>,
        ratio: f64,
        window: usize,
        period: usize,
    ) -> Self {
        let window = window.max(1);
        Self {
            recent: VecDeque::with_capacity((period + window) * ceiling.len()),
            bound: PeakBound::new(ceiling, resolution, ratio),
            window,
            period,
            scratch: Vec::new(),
            now: Vec::new(),
        }
    }

    /// Forgets the points held, as a gap in the values does: the next
    /// judgement waits for a whole window again.
    pub fn break_window(&mut self) {
        self.recent.clear();
    }

    /// See [`super::roughness::PeakBound::adopt_resolution`].
    pub fn adopt_resolution(&mut self, resolution: &[f64]) -> bool {
        self.bound.adopt_resolution(resolution)
    }

    /// Takes one point's values (one per feature); once a cycle and a window
    /// are held, judges the window's differences from a cycle earlier against
    /// the bound and the windows remembered, then remembers it.
    pub fn judge(&mut self, values: &[f32]) -> WindowJudgement {
        let features = self.bound.features();
        if !hold_point(
            &mut self.recent,
            values,
            features,
            self.period + self.window,
        ) {
            return WindowJudgement::CALM;
        }
        self.now.clear();
        for feature in 0..features {
            let recent = &self.recent;
            let period = self.period;
            let differences = (0..self.window).map(|row| {
                let earlier = recent[row * features + feature];
                let now = recent[(row + period) * features + feature];
                f64::from(now) - f64::from(earlier)
            });
            self.now.push(median_abs(differences, &mut self.scratch));
        }
        self.bound.judge(&self.now, self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_counted_only_where_the_interval_divides_it() {
        assert_eq!(cycle_period(300.0, Cycle::Day), Some(288));
        assert_eq!(cycle_period(3600.0, Cycle::Day), Some(24));
        assert_eq!(cycle_period(60.0, Cycle::Day), Some(1440));
        assert_eq!(
            cycle_period(7.0, Cycle::Day),
            None,
            "not a whole number of points"
        );
        assert_eq!(
            cycle_period(30.0, Cycle::Day),
            None,
            "more points than kept"
        );
        assert_eq!(cycle_period(86_400.0, Cycle::Day), None, "one point a day");
        assert_eq!(cycle_period(0.0, Cycle::Day), None);
        assert_eq!(cycle_period(f64::NAN, Cycle::Day), None);
        assert_eq!(cycle_period(3600.0, Cycle::Week), Some(168));
        assert_eq!(cycle_period(1800.0, Cycle::Week), Some(336));
        assert_eq!(
            cycle_period(300.0, Cycle::Week),
            None,
            "a week of 5-minute points is too long"
        );
    }

    #[test]
    fn the_largest_difference_is_found_per_feature_and_never_across_parts() {
        // Period 2, windows of 2 differences. Feature 0 repeats exactly;
        // feature 1 differs by 1, then 3, from two rows before.
        let first = [0.0, 0.0, 5.0, 1.0, 0.0, 1.0, 5.0, 4.0];
        let second = [9.0, 0.0, 9.0, 0.0, 9.0, 0.0];
        let largest = largest_cycle_differences([&first[..], &second[..]], 2, 2, 2);
        assert_eq!(largest, Some(vec![0.0, 2.0]));
        assert_eq!(
            largest_cycle_differences([&first[..]], 2, 3, 2),
            None,
            "no part holds a day and a window"
        );
        // Period 3, windows of 1: a cycle and a window (4 rows) are not
        // enough, two cycles (6) are.
        let rows = |n: usize| (0..n).map(|i| i as f64).collect::<Vec<f64>>();
        assert_eq!(largest_cycle_differences([&rows(5)[..]], 1, 1, 3), None);
        assert_eq!(
            largest_cycle_differences([&rows(6)[..]], 1, 1, 3),
            Some(vec![3.0])
        );
    }

    /// The guards' premise, asked of the training data: the same time a
    /// cycle earlier is closer than the opposite time. A daily peak over
    /// noise follows its day; noise, level steps and a trend do not, nor
    /// does a part shorter than two cycles, nor a series one of whose
    /// features does not.
    #[test]
    fn only_a_cycle_the_data_follow_bounds_a_guard() {
        use rand::{RngExt, SeedableRng};
        let period = 48;
        let rows = 4 * period;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let daily: Vec<f64> = (0..rows).map(|i| f64::from(day(i, period))).collect();
        let noise: Vec<f64> = (0..rows).map(|_| rng.random::<f64>()).collect();
        // A level held for 7 to 40 points, then another.
        let mut steps = Vec::with_capacity(rows);
        while steps.len() < rows {
            let (level, hold) = (rng.random::<f64>() * 4.0, rng.random_range(7..40));
            steps.extend(std::iter::repeat_n(level, hold));
        }
        steps.truncate(rows);
        let trend: Vec<f64> = (0..rows).map(|i| i as f64 * 0.01).collect();
        assert!(cycle_explains([&daily[..]], 1, period));
        for (values, what) in [(&noise, "noise"), (&steps, "steps"), (&trend, "a trend")] {
            assert!(!cycle_explains([&values[..]], 1, period), "{what}");
        }
        assert!(
            !cycle_explains([&daily[..2 * period - 1]], 1, period),
            "less than two cycles"
        );
        // Loud noise that would swamp the day's differences, were a part
        // shorter than two cycles counted.
        let loud: Vec<f64> = noise[..2 * period - 1].iter().map(|v| v * 100.0).collect();
        assert!(
            cycle_explains([&loud[..], &daily[..]], 1, period),
            "a short part is passed over, not held against the cycle"
        );
        let interleave = |other: &[f64]| -> Vec<f64> {
            daily
                .iter()
                .zip(other)
                .flat_map(|(&a, &b)| [a, b])
                .collect()
        };
        let shifted: Vec<f64> = daily.iter().map(|v| v * 2.0 + 1.0).collect();
        assert!(cycle_explains([&interleave(&shifted)[..]], 2, period));
        assert!(
            !cycle_explains([&interleave(&noise)[..]], 2, period),
            "one feature without the cycle"
        );
    }

    /// A daily shape with a peak at the same hour every day.
    fn day(i: usize, period: usize) -> f32 {
        let hour = i % period;
        let peak = if (period / 2..period / 2 + period / 8).contains(&hour) {
            3.0
        } else {
            0.0
        };
        peak + ((i * 7919) % 13) as f32 / 100.0
    }

    #[test]
    fn a_day_without_its_peak_is_flagged_once_its_window_sees_the_gap() {
        let (period, window) = (48, 8);
        let training: Vec<f64> = (0..4 * period).map(|i| f64::from(day(i, period))).collect();
        let ceiling =
            largest_cycle_differences([&training[..]], 1, window, period).unwrap_or_default();
        assert!(ceiling[0] > 0.0 && ceiling[0] < 0.2, "{ceiling:?}");
        let mut guard = SeasonalGuard::new(ceiling, Vec::new(), 2.0, window, period);
        for i in 0..4 * period {
            assert!(!guard.judge(&[day(i, period)]).flagged, "normal point {i}");
        }
        // The fifth day's peak does not come: the values stay within range
        // and move by the same small steps.
        let missing = |i: usize| {
            if i / period == 4 {
                ((i * 7919) % 13) as f32 / 100.0
            } else {
                day(i, period)
            }
        };
        let flags: Vec<usize> = (4 * period..6 * period)
            .filter(|&i| guard.judge(&[missing(i)]).flagged)
            .collect();
        let peak_from = 4 * period + period / 2;
        assert!(
            flags
                .first()
                .is_some_and(|&f| (peak_from..peak_from + window).contains(&f)),
            "flagged within a window of where the peak should be: {flags:?}"
        );
        // A day later the peak is back, and the day before lacked it: that
        // differs as much, and is flagged too (it is a day unlike the one
        // before), but nothing else is.
        assert!(
            flags.iter().all(
                |&f| (peak_from..peak_from + period / 8 + window).contains(&f)
                    || (peak_from + period..peak_from + period + period / 8 + window).contains(&f)
            ),
            "{flags:?}"
        );
    }

    /// A gap in time (the daemon's `series.max_gap_seconds`) breaks the
    /// window: across it, "a day earlier" would be a day and the gap.
    #[test]
    fn a_broken_window_waits_for_a_day_again() {
        let mut guard = SeasonalGuard::new(vec![0.1], Vec::new(), 2.0, 2, 3);
        for v in [0.0, 1.0, 2.0, 0.0, 1.0, 2.0] {
            assert!(!guard.judge(&[v]).flagged);
        }
        let mut unbroken = guard.clone();
        guard.break_window();
        // The day goes on a point later than the points held say.
        let later = [2.0, 0.0, 1.0, 2.0];
        assert!(
            later.iter().any(|&v| unbroken.judge(&[v]).flagged),
            "unbroken, the shifted day is flagged"
        );
        for v in later {
            assert!(!guard.judge(&[v]).flagged, "nothing judged before a day");
        }
    }

    /// Whole counts a day apart: a difference of 2 against a training
    /// window's 1 is one quantum more, allowed with the data's resolution
    /// and flagged without it; 3 is flagged either way.
    #[test]
    fn one_quantum_more_than_the_days_before_is_allowed_in_quantised_data() {
        let flags = |resolution: Vec<f64>, later: f32| {
            let mut guard = SeasonalGuard::new(vec![1.0], resolution, 1.25, 2, 3);
            [0.0, 0.0, 0.0, later, later]
                .iter()
                .any(|&v| guard.judge(&[v]).flagged)
        };
        assert!(!flags(vec![1.0], 2.0));
        assert!(flags(Vec::new(), 2.0));
        assert!(flags(vec![1.0], 3.0));
    }

    #[test]
    fn nothing_is_judged_before_a_day_and_a_gap_starts_the_day_again() {
        let mut guard = SeasonalGuard::new(vec![0.1], Vec::new(), 2.0, 2, 3);
        for v in [0.0, 0.0, 0.0, 5.0] {
            assert!(!guard.judge(&[v]).flagged, "fewer than a day and a window");
        }
        assert!(guard.judge(&[5.0]).flagged, "5 against 0 a day before");
        assert!(!guard.judge(&[f32::NAN]).flagged);
        for v in [0.0, 0.0, 0.0, 5.0] {
            assert!(!guard.judge(&[v]).flagged, "the day starts again");
        }
    }
}
