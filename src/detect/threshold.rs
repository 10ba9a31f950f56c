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
/// With an [`Exclusion`], values that crossed the threshold of their time
/// stay out of the mean and σ as well (see there); they count towards the
/// trimmed share, so that the two together do not cut into normal values.
///
/// The statistics are running sums over the counted values below the
/// trim ([`PrefixSums`]), rebuilt from the window in two passes every
/// [`REBUILD_EVERY`] points and whenever a value leaves them that dwarfed
/// what stays: over months, one burst orders of magnitude above the usual
/// errors would otherwise leave rounding residue in the sum of squares
/// larger than the variance itself.
///
/// The window keeps its values in single precision (summed in double): the
/// reconstruction errors come out of an f32 network, so doubles would hold
/// no more of them, and this window is most of what a series costs the
/// daemon (12 bytes a point instead of 24 in memory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeanStd {
    window: usize,
    k: f64,
    trim: f64,
    min_history: usize,
    exclusion: Exclusion,
    /// The window's values, each with whether it is kept out of the
    /// statistics.
    values: VecDeque<(f32, bool)>,
    /// The values that count, sorted: derived from `values`, so a saved
    /// threshold leaves it out and sorts it again on its first update.
    #[serde(skip)]
    counted: Vec<f32>,
    /// The statistics of a prefix of `counted`, `None` until they are next
    /// rebuilt. Saved with the window (a few numbers), so that a resumed
    /// threshold goes on exactly as the saved one would have, rounding
    /// included; a file from before them rebuilds them.
    #[serde(default)]
    prefix: Option<PrefixSums>,
    /// How many of the window's values are kept out.
    excluded: usize,
    /// Consecutive values above the threshold, up to the latest.
    run: usize,
}

/// Which flagged values a [`MeanStd`] keeps out of its statistics.
///
/// One anomalous sample spoils every window that contains it, so a point
/// outlier leaves a footprint of a model window's length of high errors.
/// Counted, that footprint inflates σ for the whole trailing window and
/// hides the next outlier of the same size; kept out, it does not. Two
/// limits keep the threshold learning: a run of flags longer than `run`
/// is more than one sample's footprint, a lasting change, and its later
/// values count; and at most `budget` values are out at once, so that
/// bursts which keep coming become the norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub budget: usize,
    pub run: usize,
}

impl Exclusion {
    /// Every value counts.
    pub const NONE: Self = Self { budget: 0, run: 0 };
}

impl MeanStd {
    pub fn new(window: usize, k: f64, trim: f64, min_history: usize, exclusion: Exclusion) -> Self {
        Self {
            window: window.max(2),
            k,
            trim: trim.clamp(0.0, 0.5),
            min_history: min_history.max(2),
            exclusion,
            values: VecDeque::new(),
            counted: Vec::new(),
            prefix: None,
            excluded: 0,
            run: 0,
        }
    }

    /// The threshold for `value` from the history before it (none while
    /// the history is shorter than `min_history`); then `value` joins the
    /// history.
    pub fn update(&mut self, value: f64) -> Option<f64> {
        if self.counted.len() + self.excluded != self.values.len() {
            self.counted = self.values.iter().filter(|v| !v.1).map(|v| v.0).collect();
            self.counted.sort_by(f32::total_cmp);
        }
        let threshold = (self.values.len() >= self.min_history).then(|| {
            // The trim is the share of the window kept out of the
            // statistics; flagged values already out count towards it.
            let trimmed = (self.values.len() as f64 * self.trim).floor() as usize;
            let dropped = trimmed.saturating_sub(self.excluded);
            let kept = self.counted.len() - dropped;
            let prefix = match self.prefix.take() {
                Some(mut prefix) if prefix.updates < REBUILD_EVERY => {
                    prefix.resize(&self.counted, kept);
                    prefix
                }
                _ => PrefixSums::build(&self.counted[..kept]),
            };
            let prefix = prefix.or_rebuilt(&self.counted[..kept]);
            let (mean, variance) = prefix.mean_and_variance();
            self.prefix = Some(prefix);
            mean + self.k * variance.sqrt()
        });
        let above = threshold.is_some_and(|t| value > t);
        self.run = if above { self.run + 1 } else { 0 };
        // The statistics always keep `min_history` values to stand on.
        let kept_out = above
            && self.run <= self.exclusion.run
            && self.excluded < self.exclusion.budget
            && self.counted.len() >= self.min_history;
        // A full window holds window + 1 values for a moment; growing by
        // doubling would leave up to half of that unused in every series.
        let bound = self.window + 1;
        let stored = single(value);
        self.values
            .reserve_exact(growth(self.values.len(), self.values.capacity(), bound));
        self.values.push_back((stored, kept_out));
        if kept_out {
            self.excluded += 1;
        } else {
            self.counted
                .reserve_exact(growth(self.counted.len(), self.counted.capacity(), bound));
            let at = self.counted.partition_point(|v| *v < stored);
            self.counted.insert(at, stored);
            if let Some(prefix) = &mut self.prefix {
                prefix.inserted(at, stored);
            }
        }
        if self.values.len() > self.window
            && let Some((old, was_kept_out)) = self.values.pop_front()
        {
            if was_kept_out {
                self.excluded -= 1;
            } else {
                let at = self.counted.partition_point(|v| *v < old);
                self.counted.remove(at);
                if let Some(prefix) = &mut self.prefix
                    && !prefix.removed(at, old)
                {
                    self.prefix = None;
                }
            }
        }
        threshold
    }
}

/// Running statistics are rebuilt from the window this often (in points),
/// so that rounding drift in them never outlives a few thousand updates.
const REBUILD_EVERY: usize = 1024;

/// A value whose squared deviation exceeds this many times the summed
/// squares that stay behind makes the sums be rebuilt when it leaves:
/// subtracting it would cancel all but a sliver of the sum, and leave its
/// rounding error in what remains.
const DWARFING: f64 = 1e3;

/// Sums over `counted[..len]` of each value's deviation from `origin` and
/// of its square: the mean and variance of the values below the trim, kept
/// as values enter and leave, in O(1) a point (plus the values that cross
/// the trim) rather than O(window). Deviations from a centre close to the
/// mean (the median at the last rebuild) keep the variance's subtraction
/// from cancelling.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct PrefixSums {
    origin: f64,
    len: usize,
    sum: f64,
    squares: f64,
    /// Updates since the last rebuild.
    updates: usize,
}

impl PrefixSums {
    fn build(kept: &[f32]) -> Self {
        let origin = kept.get(kept.len() / 2).map_or(0.0, |&v| f64::from(v));
        let (mean, variance) = mean_and_variance(&[kept]);
        let count = kept.len() as f64;
        let shift = mean - origin;
        Self {
            origin,
            len: kept.len(),
            sum: shift * count,
            squares: (variance + shift * shift) * count,
            updates: 0,
        }
    }

    /// Itself, or rebuilt from `kept` when its mean has drifted so far from
    /// its origin that the variance's subtraction would cancel most of it.
    fn or_rebuilt(self, kept: &[f32]) -> Self {
        let count = self.len.max(1) as f64;
        let shift = self.sum / count;
        if shift * shift > 0.5 * self.squares / count {
            Self::build(kept)
        } else {
            self
        }
    }

    fn deviation(&self, value: f32) -> f64 {
        f64::from(value) - self.origin
    }

    fn add(&mut self, value: f32) {
        let d = self.deviation(value);
        self.sum += d;
        self.squares += d * d;
        self.len += 1;
    }

    /// False where the value dwarfed what stays (see [`DWARFING`]).
    fn subtract(&mut self, value: f32) -> bool {
        let d = self.deviation(value);
        self.sum -= d;
        self.squares -= d * d;
        self.len -= 1;
        d * d <= DWARFING * self.squares.max(0.0)
    }

    /// Grows or shrinks the prefix to the first `kept` values of `counted`
    /// (rebuilt from them where a value that leaves dwarfed the rest).
    fn resize(&mut self, counted: &[f32], kept: usize) {
        self.updates += 1;
        let kept_values = &counted[..kept.min(counted.len())];
        while let Some(&value) = kept_values.get(self.len) {
            self.add(value);
        }
        while self.len > kept_values.len() {
            let leaving = counted.get(self.len - 1).copied();
            if !leaving.is_some_and(|value| self.subtract(value)) {
                *self = Self::build(kept_values);
                return;
            }
        }
    }

    /// `value` went into `counted` at `at`: inside the prefix, it joins it
    /// (the value that was last in the prefix is then its new last).
    fn inserted(&mut self, at: usize, value: f32) {
        if at < self.len {
            self.add(value);
        }
    }

    /// `value` left `counted` from `at`; false where the sums must be
    /// rebuilt.
    fn removed(&mut self, at: usize, value: f32) -> bool {
        at >= self.len || self.subtract(value)
    }

    fn mean_and_variance(&self) -> (f64, f64) {
        let count = self.len.max(1) as f64;
        let shift = self.sum / count;
        (
            self.origin + shift,
            (self.squares / count - shift * shift).max(0.0),
        )
    }
}

/// `value` as the window stores it: rounded to single precision, and an
/// error beyond its range held at its largest finite value rather than
/// made infinite (an infinite value would make the threshold infinite for a
/// whole window).
fn single(value: f64) -> f32 {
    (value as f32).clamp(-f32::MAX, f32::MAX)
}

/// How many more slots a full buffer of `len` values, never holding more
/// than `bound`, should reserve: it doubles (16 at first) but stops at
/// `bound`; 0 while it has room.
fn growth(len: usize, capacity: usize, bound: usize) -> usize {
    if len < capacity {
        return 0;
    }
    (2 * capacity).max(16).min(bound.max(len + 1)) - len
}

/// Population mean and variance of the values in `parts`, in two passes.
pub(super) fn mean_and_variance<T: Copy + Into<f64>>(parts: &[&[T]]) -> (f64, f64) {
    let count = parts.iter().map(|p| p.len()).sum::<usize>().max(1) as f64;
    let mean = parts.iter().map(|p| lane_sum(p, |v| v)).sum::<f64>() / count;
    let squares = parts
        .iter()
        .map(|p| lane_sum(p, |v| (v - mean) * (v - mean)))
        .sum::<f64>();
    (mean, squares / count)
}

/// Σ f(v) in eight interleaved partial sums: a single accumulator is a
/// serial chain the compiler may not reorder, eight of them vectorise (a
/// whole window is summed at each rebuild of mean-std's running sums, and
/// telemanom sums its buffer for every candidate threshold).
fn lane_sum<T: Copy + Into<f64>>(values: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v.into());
        }
    }
    lanes.iter().sum::<f64>() + rest.iter().map(|&v| f(v.into())).sum::<f64>()
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
        let mut t = MeanStd::new(4, 2.0, 0.0, 2, Exclusion::NONE);
        assert_eq!(t.update(1.0), None);
        assert_eq!(t.update(3.0), None);
        // history [1, 3]: mean 2, σ 1.
        assert_eq!(t.update(100.0), Some(4.0));
    }

    #[test]
    fn trimming_leaves_the_largest_values_out_and_slides() {
        // Window 10, trim 0.2: the two largest of ten values are left out.
        let mut t = MeanStd::new(10, 2.0, 0.2, 2, Exclusion::NONE);
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
        let mut plain = MeanStd::new(10, 2.0, 0.0, 2, Exclusion::NONE);
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
            let mut t = MeanStd::new(200, 4.0, trim, 10, Exclusion::NONE);
            let mut history = Vec::new();
            // The window stores single precision; the check is against
            // exactly the values it holds.
            let stored = |v: f64| f64::from(v as f32);
            for v in (0..300).map(noise).chain([1e9]) {
                history.push(stored(v));
                t.update(v);
            }
            let mut checked = 0;
            for i in 0..500 {
                history.push(stored(noise(i)));
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

    /// Low noise with three identical footprints of `length` high values,
    /// 60 points apart; returns how many values of each crossed the
    /// threshold.
    fn flags_per_footprint(exclusion: Exclusion, length: usize) -> [usize; 3] {
        let mut t = MeanStd::new(1000, 4.0, 0.0, 20, exclusion);
        let noise = |i: usize| 1.0 + 0.1 * ((i * 7919) % 11) as f64 / 10.0;
        let starts = [100, 160 + length, 220 + 2 * length];
        let mut flags = [0; 3];
        for i in 0..400 {
            let footprint = starts.iter().position(|&s| (s..s + length).contains(&i));
            let value = if footprint.is_some() { 5.0 } else { noise(i) };
            let flagged = t.update(value).is_some_and(|threshold| value > threshold);
            if let (Some(which), true) = (footprint, flagged) {
                flags[which] += 1;
            }
        }
        flags
    }

    #[test]
    fn kept_out_footprints_do_not_hide_the_next_one() {
        let keep_out = Exclusion { budget: 16, run: 8 };
        assert_eq!(flags_per_footprint(keep_out, 8), [8, 8, 8]);
        // Counted, each footprint raises σ over the next.
        let [first, second, third] = flags_per_footprint(Exclusion::NONE, 8);
        assert!(
            first >= 1 && second < first && third <= second,
            "{first} {second} {third}"
        );
    }

    #[test]
    fn runs_longer_than_a_footprint_and_bursts_beyond_the_budget_count() {
        // A run of 30 flags is a lasting change: past the 8th value it
        // counts, and the threshold learns the new level before it ends.
        let [first, ..] = flags_per_footprint(
            Exclusion {
                budget: 100,
                run: 8,
            },
            30,
        );
        assert!((8..30).contains(&first), "{first}");
        // The budget holds one footprint: the second counts, as every
        // footprint does without exclusion, and the third is judged
        // against it.
        let [first, second, third] = flags_per_footprint(Exclusion { budget: 8, run: 8 }, 8);
        assert!(
            first == 8 && second == 8 && third < 8,
            "{first} {second} {third}"
        );
    }

    /// A restored threshold sorts its window again and goes on exactly as
    /// the one that was saved; the sorted copy is not saved with it.
    #[test]
    fn a_restored_threshold_goes_on_as_the_saved_one() {
        let value = |i: usize| {
            if i.is_multiple_of(53) {
                3.0
            } else {
                (i % 7) as f64 / 10.0
            }
        };
        let mut saved = MeanStd::new(200, 4.0, 0.01, 20, Exclusion { budget: 8, run: 4 });
        for i in 0..300 {
            saved.update(value(i));
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&saved, &mut bytes).unwrap_or_else(|e| panic!("{e}"));
        let mut restored: MeanStd =
            ciborium::from_reader(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert!(restored.counted.is_empty());
        for i in 300..600 {
            assert_eq!(restored.update(value(i)), saved.update(value(i)), "{i}");
        }
    }

    /// The running sums give, at every point, what two passes over the
    /// counted values below the trim give: through noise at several
    /// scales, level shifts that move the mean away from the sums' origin,
    /// bursts a million times the noise entering and leaving, flagged
    /// values kept out, and rebuilds.
    #[test]
    fn running_statistics_match_a_recomputation_at_every_point() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut uniform = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        for (trim, exclusion) in [
            (
                0.01,
                Exclusion {
                    budget: 64,
                    run: 32,
                },
            ),
            (0.0, Exclusion::NONE),
            (0.05, Exclusion::NONE),
        ] {
            let mut t = MeanStd::new(500, 4.0, trim, 20, exclusion);
            let mut checked = 0;
            for i in 0..6000 {
                let level = [0.01, 3.0, 1e-4, 250.0][(i / 1500) % 4];
                let value = if i % 611 == 610 {
                    level * 1e6
                } else {
                    level * (1.0 + 0.2 * uniform())
                };
                let expected =
                    (t.values.len() >= t.min_history && !t.counted.is_empty()).then(|| {
                        let trimmed = (t.values.len() as f64 * t.trim).floor() as usize;
                        let kept = t.counted.len() - trimmed.saturating_sub(t.excluded);
                        let (mean, variance) = mean_and_variance(&[&t.counted[..kept]]);
                        mean + t.k * variance.sqrt()
                    });
                let got = t.update(value);
                if let (Some(got), Some(want)) = (got, expected) {
                    assert!(
                        (got - want).abs() <= 1e-9 * want.abs(),
                        "trim {trim}, point {i}: {got} vs {want}"
                    );
                    checked += 1;
                }
            }
            assert!(checked > 5900, "trim {trim}: {checked}");
        }
    }

    /// A state file written when the window held doubles resumes: each
    /// value is read back narrowed to what the window now stores, and the
    /// threshold goes on as one fed the same values.
    #[test]
    fn a_threshold_saved_in_double_precision_resumes() {
        /// `MeanStd`'s saved fields as they were before single precision.
        #[derive(Serialize)]
        struct DoublePrecision {
            window: usize,
            k: f64,
            trim: f64,
            min_history: usize,
            exclusion: Exclusion,
            values: VecDeque<(f64, bool)>,
            excluded: usize,
            run: usize,
        }
        let value = |i: usize| 0.1 + ((i * 7919) % 101) as f64 / 3000.0;
        let exclusion = Exclusion { budget: 8, run: 4 };
        let mut fed = MeanStd::new(200, 4.0, 0.01, 20, exclusion);
        for i in 0..300 {
            fed.update(value(i));
        }
        let old = DoublePrecision {
            window: 200,
            k: 4.0,
            trim: 0.01,
            min_history: 20,
            exclusion,
            values: (100..300).map(|i| (value(i), false)).collect(),
            excluded: 0,
            run: 0,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&old, &mut bytes).unwrap_or_else(|e| panic!("{e}"));
        let mut restored: MeanStd =
            ciborium::from_reader(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        // The same values, but the restored threshold's running sums start
        // afresh: equal to rounding.
        for i in 300..600 {
            let (got, want) = (restored.update(value(i)), fed.update(value(i)));
            let (got, want) = (got.unwrap_or(f64::NAN), want.unwrap_or(f64::NAN));
            assert!((got - want).abs() <= 1e-12 * want, "{i}: {got} vs {want}");
        }
    }

    /// A full window's buffers hold no more than the window needs, so a
    /// series' threshold costs window + 1 values, not the next power of two.
    #[test]
    fn a_full_window_keeps_no_spare_capacity() {
        let window = 5000;
        let mut t = MeanStd::new(window, 4.0, 0.01, 100, Exclusion::NONE);
        for i in 0..3 * window {
            t.update((i % 97) as f64);
        }
        assert_eq!(t.values.len(), window);
        assert!(t.values.capacity() <= window + 1, "{}", t.values.capacity());
        assert!(
            t.counted.capacity() <= window + 1,
            "{}",
            t.counted.capacity()
        );
    }

    #[test]
    fn kept_out_values_count_towards_the_trim() {
        let mut t = MeanStd::new(20, 2.0, 0.25, 10, Exclusion { budget: 2, run: 2 });
        for v in [
            1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 100.0, 100.0,
        ] {
            t.update(v);
        }
        // 12 values, a quarter (3) out: the two 100s and one 3.
        let kept = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0];
        let mean = kept.iter().sum::<f64>() / 9.0;
        let sigma = (kept.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 9.0).sqrt();
        let threshold = t.update(0.0).unwrap_or(f64::NAN);
        assert!(
            (threshold - (mean + 2.0 * sigma)).abs() < 1e-12,
            "{threshold} vs {}",
            mean + 2.0 * sigma
        );
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
