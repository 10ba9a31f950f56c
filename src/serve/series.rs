//! Per-series state: the normalised window buffer, the causal detector and
//! the open event. The table is bounded: beyond `max_series`, the series
//! seen least recently are evicted.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::data::Scaler;
use crate::detect::{Cause, Detector, DetectorConfig, ValueRange};

/// What a new sample did to its series.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// A full window to score, `[T, F]` row-major, normalised; for a
    /// multi-scale model the coarse window this sample completed, if any;
    /// the time of the window's first sample (an event's `window_start`);
    /// and how many of its newest points no scored window held before
    /// (the stride's skipped points and this one, at most the window): the
    /// points the range and stillness checks judge with this score.
    Window(Vec<f32>, Option<Vec<f32>>, f64, usize),
    /// Not enough samples yet for a window.
    Warming,
    /// Added to the point being averaged, which is not complete yet.
    Averaging,
    /// Between strides.
    Skipped,
    /// Older than (or as old as) the series' last sample: dropped.
    OutOfOrder,
}

/// An anomaly event that has started and not ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenEvent {
    pub start_time: f64,
    /// First sample of the window whose error opened the event. `None` in
    /// state files written before it was kept: then the start.
    #[serde(default)]
    pub window_start: Option<f64>,
    /// The latest flagged sample: where the event ends, as `eval` has it
    /// (the unflagged samples of the merge gap after it are not the event).
    /// `None` in older state files: then the start.
    #[serde(default)]
    pub last_flagged: Option<f64>,
    pub peak_score: f64,
    pub peak_threshold: f64,
    /// Per-feature errors at the peak.
    pub peak_contributions: Vec<f64>,
    /// Which check scored the peak (the error, in older state files).
    #[serde(default)]
    pub peak_cause: Cause,
}

/// What the table needs to know about the model a series is routed to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelShape<'a> {
    /// Index of the model in the daemon's model list.
    pub model: usize,
    pub window: usize,
    pub features: usize,
    /// Samples averaged into one point (the artifact's `aggregate`).
    pub rows_per_point: usize,
    /// The artifact's static threshold (the `static` method's).
    pub threshold: f64,
    /// The artifact's calibrated factor on mean-std's k.
    pub k_factor: Option<f64>,
    /// The coarse model of a multi-scale artifact.
    pub coarse: Option<CoarseShape>,
    /// The artifact's training range, normalised: where a new series'
    /// range check starts.
    pub range: Option<&'a ValueRange>,
}

/// The coarse scale of a multi-scale model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoarseShape {
    /// Main-model points averaged into one coarse point.
    pub multiple: usize,
    pub window: usize,
    /// The coarse artifact's static threshold.
    pub threshold: f64,
}

/// The coarse window of one series: main-model points averaged again.
#[derive(Debug, Serialize, Deserialize)]
struct CoarseBuffer {
    multiple: usize,
    window_values: usize,
    buffer: VecDeque<f32>,
    pending: Vec<f64>,
    pending_points: usize,
    /// A full coarse window not handed out yet (the stride skipped its
    /// sample's main window); it goes with the next main window.
    ready: Option<Vec<f32>>,
}

impl CoarseBuffer {
    fn new(shape: CoarseShape, features: usize) -> Self {
        Self {
            multiple: shape.multiple.max(1),
            window_values: shape.window * features,
            buffer: VecDeque::with_capacity(shape.window * features),
            pending: vec![0.0; features],
            pending_points: 0,
            ready: None,
        }
    }

    /// Adds one completed main-model point.
    fn push<'a>(&mut self, point: impl Iterator<Item = &'a f32>) {
        for (sum, &value) in self.pending.iter_mut().zip(point) {
            *sum += f64::from(value);
        }
        self.pending_points += 1;
        if self.pending_points < self.multiple {
            return;
        }
        let points = self.pending_points as f64;
        self.buffer
            .extend(self.pending.iter().map(|&sum| (sum / points) as f32));
        self.pending.fill(0.0);
        self.pending_points = 0;
        while self.buffer.len() > self.window_values {
            self.buffer.pop_front();
        }
        if self.buffer.len() == self.window_values {
            self.ready = Some(self.buffer.iter().copied().collect());
        }
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.pending.fill(0.0);
        self.pending_points = 0;
        self.ready = None;
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SeriesState {
    /// The model that scores this series.
    pub model: usize,
    /// T·F values of a full window.
    window_values: usize,
    buffer: VecDeque<f32>,
    rows_per_point: usize,
    /// Per-feature sums of the samples of the point being averaged.
    pending: Vec<f64>,
    pending_rows: usize,
    /// Time of the first sample of each point in `buffer`, oldest first;
    /// the front is where the current window starts.
    #[serde(default)]
    point_starts: VecDeque<f64>,
    /// Time of the first sample of the point being averaged.
    #[serde(default)]
    pending_start: Option<f64>,
    last_time: Option<f64>,
    /// Full windows to skip before the next one is scored.
    until_next: usize,
    /// Points with a full window since the last window was handed out.
    #[serde(default)]
    unjudged: usize,
    coarse: Option<CoarseBuffer>,
    pub detector: Detector,
    pub open_event: Option<OpenEvent>,
    /// Time and window start of the latest decisions, newest last, as far
    /// back as an event's first flag can precede its confirmation
    /// (`EventConfig::confirmation_lag`; empty at the default `min_length`
    /// 1): where an event confirmed late starts.
    #[serde(default)]
    recent_decisions: VecDeque<(f64, f64)>,
    /// The partition the series last arrived on, to drop state on revoke.
    pub partition: (String, i32),
    last_seen: u64,
}

impl SeriesState {
    /// Records the decision just made on the window ending at `time` and
    /// starting at `window_start`, keeping `lag` before it; returns the
    /// time and window start of the decision `back` decisions ago (this
    /// one at 0), or this one's when it is no longer kept (a state file
    /// written before it was).
    pub fn judged(&mut self, time: f64, window_start: f64, lag: usize, back: usize) -> (f64, f64) {
        if lag == 0 {
            self.recent_decisions.clear();
            return (time, window_start);
        }
        self.recent_decisions.push_back((time, window_start));
        while self.recent_decisions.len() > lag + 1 {
            self.recent_decisions.pop_front();
        }
        self.recent_decisions
            .len()
            .checked_sub(back + 1)
            .and_then(|i| self.recent_decisions.get(i))
            .copied()
            .unwrap_or((time, window_start))
    }
}

/// What a saved series needs of its model to be resumed: the same
/// artifact, cutting windows the same way (what a hot reload also
/// requires of a new version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelKey {
    pub path: String,
    pub window: usize,
    pub feature_names: Vec<String>,
    pub rows_per_point: usize,
    /// The coarse model's multiple and window.
    pub coarse: Option<(usize, usize)>,
    /// Whether the main and the coarse network see centred windows: their
    /// errors, and so the detectors' histories, are on another scale.
    #[serde(default)]
    pub centered: (bool, bool),
    /// Whether their centring takes out each window's slope as well.
    #[serde(default)]
    pub detrended: (bool, bool),
    /// Whether the buffers' points carry the time of day.
    #[serde(default)]
    pub clock: bool,
}

impl ModelKey {
    /// Whether a series' buffers fit `other` as they fit this: everything
    /// but the centring, which only the networks' input and the errors'
    /// scale depend on. A field added to the key counts here unless it is
    /// taken from `other` below.
    pub fn same_buffers(&self, other: &ModelKey) -> bool {
        let with_other_centring = ModelKey {
            centered: other.centered,
            detrended: other.detrended,
            ..self.clone()
        };
        with_other_centring == *other
    }
}

/// The whole table as saved on a graceful stop.
#[derive(Debug, Serialize, Deserialize)]
pub struct TableSnapshot {
    detector: DetectorConfig,
    stride: usize,
    /// By model index, as the series refer to them.
    models: Vec<ModelKey>,
    series: Vec<(String, SeriesState)>,
}

/// What [`SeriesTable::restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub series: usize,
    /// Saved series whose model no longer cuts windows the same way.
    pub skipped: usize,
    /// Models, by index, whose series were resumed with windows that fit
    /// but detectors that judged another centring's errors: they must be
    /// restarted ([`SeriesTable::restart_detectors`]).
    pub rescaled: Vec<usize>,
}

/// Counters the table reports back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableEvents {
    pub gap_resets: u64,
    pub evicted: u64,
}

pub struct SeriesTable {
    series: HashMap<String, SeriesState>,
    stride: usize,
    max_series: usize,
    max_gap_seconds: f64,
    detector: DetectorConfig,
    clock: u64,
    pub events: TableEvents,
}

impl SeriesTable {
    pub fn new(
        stride: usize,
        max_series: usize,
        max_gap_seconds: f64,
        detector: DetectorConfig,
    ) -> Self {
        Self {
            series: HashMap::new(),
            stride: stride.max(1),
            max_series: max_series.max(1),
            max_gap_seconds,
            detector,
            clock: 0,
            events: TableEvents::default(),
        }
    }

    /// The model a tracked series is scored by.
    pub fn model_of(&self, series: &str) -> Option<usize> {
        self.series.get(series).map(|s| s.model)
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn get_mut(&mut self, series: &str) -> Option<&mut SeriesState> {
        self.series.get_mut(series)
    }

    /// Adds a normalised sample; `shape` describes the series' model, used
    /// when the series is new. Returns what the sample did.
    pub fn admit(
        &mut self,
        series: &str,
        time: f64,
        normalised: &[f32],
        partition: (&str, i32),
        shape: ModelShape<'_>,
    ) -> Admission {
        self.clock += 1;
        if !self.series.contains_key(series) {
            if self.series.len() >= self.max_series {
                self.evict();
            }
            let detector = self.fresh_detector(&shape);
            self.series.insert(
                series.to_owned(),
                SeriesState {
                    model: shape.model,
                    window_values: shape.window * shape.features,
                    buffer: VecDeque::with_capacity(shape.window * shape.features),
                    rows_per_point: shape.rows_per_point.max(1),
                    pending: vec![0.0; shape.features],
                    pending_rows: 0,
                    point_starts: VecDeque::with_capacity(shape.window + 1),
                    pending_start: None,
                    last_time: None,
                    until_next: 0,
                    unjudged: 0,
                    coarse: shape
                        .coarse
                        .map(|coarse| CoarseBuffer::new(coarse, shape.features)),
                    detector,
                    open_event: None,
                    recent_decisions: VecDeque::new(),
                    partition: (partition.0.to_owned(), partition.1),
                    last_seen: self.clock,
                },
            );
        }
        let (stride, max_gap) = (self.stride, self.max_gap_seconds);
        let Some(state) = self.series.get_mut(series) else {
            return Admission::Warming;
        };
        state.last_seen = self.clock;
        if state.partition.1 != partition.1 || state.partition.0 != partition.0 {
            state.partition = (partition.0.to_owned(), partition.1);
        }
        if let Some(last) = state.last_time {
            if time <= last {
                return Admission::OutOfOrder;
            }
            if time - last > max_gap {
                state.buffer.clear();
                state.pending.fill(0.0);
                state.pending_rows = 0;
                state.point_starts.clear();
                state.pending_start = None;
                state.until_next = 0;
                state.unjudged = 0;
                if let Some(coarse) = &mut state.coarse {
                    coarse.reset();
                }
                state.detector.break_windows();
                self.events.gap_resets += 1;
            }
        }
        state.last_time = Some(time);
        let point_start = *state.pending_start.get_or_insert(time);
        if state.rows_per_point > 1 {
            // The scaler is affine, so averaging normalised samples gives
            // the normalised average that training saw.
            for (sum, &value) in state.pending.iter_mut().zip(normalised) {
                *sum += f64::from(value);
            }
            state.pending_rows += 1;
            if state.pending_rows < state.rows_per_point {
                return Admission::Averaging;
            }
            let rows = state.pending_rows as f64;
            state
                .buffer
                .extend(state.pending.iter().map(|&sum| (sum / rows) as f32));
            state.pending.fill(0.0);
            state.pending_rows = 0;
        } else {
            state.buffer.extend(normalised.iter().copied());
        }
        state.pending_start = None;
        state.point_starts.push_back(point_start);
        let window_points = state.window_values / normalised.len().max(1);
        while state.point_starts.len() > window_points {
            state.point_starts.pop_front();
        }
        if let Some(coarse) = &mut state.coarse {
            let point_start = state.buffer.len().saturating_sub(normalised.len());
            coarse.push(state.buffer.range(point_start..));
        }
        while state.buffer.len() > state.window_values {
            state.buffer.pop_front();
        }
        if state.buffer.len() < state.window_values {
            return Admission::Warming;
        }
        state.unjudged += 1;
        if state.until_next > 0 {
            state.until_next -= 1;
            return Admission::Skipped;
        }
        state.until_next = stride - 1;
        let fresh = state.unjudged.min(window_points);
        state.unjudged = 0;
        let coarse = state.coarse.as_mut().and_then(|c| c.ready.take());
        let start = state.point_starts.front().copied().unwrap_or(time);
        Admission::Window(state.buffer.iter().copied().collect(), coarse, start, fresh)
    }

    /// A detector for a series of `shape`'s model, as it starts: warming up.
    fn fresh_detector(&self, shape: &ModelShape<'_>) -> Detector {
        let config = self.detector.for_model(shape.k_factor);
        match shape.coarse {
            Some(coarse) => Detector::with_coarse(
                &config,
                shape.threshold,
                shape.window,
                coarse.multiple,
                coarse.threshold,
            ),
            None => Detector::new(&config, shape.threshold, shape.window),
        }
        .with_range(&config, shape.range.cloned())
    }

    /// Starts the detector of every series of `shape.model` afresh, keeping
    /// their windows: for a reloaded model whose errors are on another
    /// scale, which the detectors' histories would misjudge. Returns how
    /// many series restarted, and the events that were open, which end
    /// here, by series.
    pub fn restart_detectors(
        &mut self,
        shape: &ModelShape<'_>,
    ) -> (usize, Vec<(String, OpenEvent)>) {
        let fresh = self.fresh_detector(shape);
        let (mut restarted, mut ended) = (0, Vec::new());
        for (series, state) in &mut self.series {
            if state.model != shape.model {
                continue;
            }
            restarted += 1;
            state.detector = fresh.clone();
            state.recent_decisions.clear();
            if let Some(open) = state.open_event.take() {
                ended.push((series.clone(), open));
            }
        }
        ended.sort_by(|a, b| a.0.cmp(&b.0));
        (restarted, ended)
    }

    /// Drops the least recently seen tenth of the table (at least one).
    fn evict(&mut self) {
        let mut ages: Vec<u64> = self.series.values().map(|s| s.last_seen).collect();
        let count = (self.series.len() / 10).max(1);
        let (_, cutoff, _) = ages.select_nth_unstable(count - 1);
        let cutoff = *cutoff;
        let before = self.series.len();
        self.series.retain(|_, s| s.last_seen > cutoff);
        self.events.evicted += (before - self.series.len()) as u64;
    }

    /// The table as it stands, for a process that resumes it; `models` are
    /// the served models, by index.
    pub fn into_snapshot(self, models: Vec<ModelKey>) -> TableSnapshot {
        TableSnapshot {
            detector: self.detector,
            stride: self.stride,
            models,
            series: self.series.into_iter().collect(),
        }
    }

    /// Takes over the series of `snapshot` whose model cuts windows the
    /// same way now (`models`, by index), and says which of those models
    /// centre them otherwise; refused whole when the detector or the
    /// stride changed, as every saved detector would then be the wrong one.
    pub fn restore(
        &mut self,
        snapshot: TableSnapshot,
        models: &[ModelKey],
    ) -> Result<Restored, String> {
        if snapshot.detector != self.detector {
            return Err("the detector configuration changed".into());
        }
        if snapshot.stride != self.stride {
            return Err(format!(
                "scoring.stride changed from {} to {}",
                snapshot.stride, self.stride
            ));
        }
        let total = snapshot.series.len();
        let fits = |model: usize| match (snapshot.models.get(model), models.get(model)) {
            (Some(saved), Some(now)) => saved.same_buffers(now),
            _ => false,
        };
        let rescaled: Vec<usize> = (0..models.len())
            .filter(|&model| fits(model) && snapshot.models.get(model) != models.get(model))
            .collect();
        let mut kept: Vec<(String, SeriesState)> = snapshot
            .series
            .into_iter()
            .filter(|(_, state)| fits(state.model))
            .collect();
        let matching = kept.len();
        // The most recently seen first, should the table be smaller now.
        kept.sort_by_key(|(_, state)| std::cmp::Reverse(state.last_seen));
        kept.truncate(self.max_series);
        self.clock = kept.iter().map(|(_, s)| s.last_seen).max().unwrap_or(0);
        let series = kept.len();
        self.series.extend(kept);
        self.events.evicted += (matching - series) as u64;
        Ok(Restored {
            series,
            skipped: total - matching,
            rescaled,
        })
    }

    /// Starts the stillness, roughness and seasonal checks on resumed
    /// series that lack them (see
    /// [`Detector::resume_window_checks`]); `models` are the served models'
    /// windows and training ranges, by index. How many series it started on.
    pub fn resume_window_checks(&mut self, models: &[(usize, Option<&ValueRange>)]) -> usize {
        let config = self.detector;
        let mut started = 0;
        for state in self.series.values_mut() {
            if let Some(&(window, range)) = models.get(state.model)
                && state.detector.resume_window_checks(&config, range, window)
            {
                started += 1;
            }
        }
        started
    }

    /// Forgets the series that last arrived on none of `partitions`.
    pub fn keep_partitions(&mut self, partitions: &[(String, i32)]) -> usize {
        let before = self.series.len();
        self.series.retain(|_, s| partitions.contains(&s.partition));
        before - self.series.len()
    }

    /// Forgets the series that last arrived on any of `partitions`.
    pub fn drop_partitions(&mut self, partitions: &[(String, i32)]) -> usize {
        let before = self.series.len();
        self.series
            .retain(|_, s| !partitions.contains(&s.partition));
        before - self.series.len()
    }
}

/// Normalises one sample's values (and what is derived from it) with the
/// artifact's scaler; at most as many as it has features.
pub fn normalise(scaler: &Scaler, values: impl IntoIterator<Item = f64>) -> Vec<f32> {
    values
        .into_iter()
        .take(scaler.n_features())
        .enumerate()
        .map(|(feature, x)| scaler.normalised(feature, x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(stride: usize, max_series: usize) -> SeriesTable {
        SeriesTable::new(stride, max_series, 10.0, DetectorConfig::default())
    }

    fn admit(t: &mut SeriesTable, series: &str, time: f64, value: f32) -> Admission {
        admit_averaged(t, series, time, value, 1)
    }

    fn admit_averaged(
        t: &mut SeriesTable,
        series: &str,
        time: f64,
        value: f32,
        rows_per_point: usize,
    ) -> Admission {
        t.admit(
            series,
            time,
            &[value],
            ("topic", 0),
            one_scale(rows_per_point, None),
        )
    }

    /// A single-scale model of window 3 over one feature.
    fn one_scale(rows_per_point: usize, range: Option<&ValueRange>) -> ModelShape<'_> {
        ModelShape {
            model: 0,
            window: 3,
            features: 1,
            rows_per_point,
            threshold: 1.0,
            k_factor: None,
            coarse: None,
            range,
        }
    }

    /// A window starts at the first sample of its oldest point, as `eval`
    /// counts it (window × rows per point back, inclusive).
    #[test]
    fn a_window_starts_at_the_first_sample_of_its_oldest_point() {
        let mut t = table(1, 10);
        let mut start_at = |time: f64| match admit_averaged(&mut t, "a", time, 0.0, 2) {
            Admission::Window(_, _, start, _) => Some(start),
            _ => None,
        };
        let starts: Vec<Option<f64>> = (1..=8).map(|i| start_at(f64::from(i))).collect();
        // Points of two samples; three of them fill the first window.
        assert_eq!(
            starts,
            [None, None, None, None, None, Some(1.0), None, Some(3.0)]
        );
        // A gap starts the window afresh after it.
        let after: Vec<Option<f64>> = (30..=35).map(|i| start_at(f64::from(i))).collect();
        assert_eq!(after, [None, None, None, None, None, Some(30.0)]);
    }

    #[test]
    fn averaged_points_fill_the_window_and_a_gap_drops_the_partial_point() {
        let mut t = table(1, 10);
        let mut admit2 = |time: f64, value: f32| admit_averaged(&mut t, "a", time, value, 2);
        let outcomes: Vec<Admission> = (1..=6).map(|i| admit2(f64::from(i), i as f32)).collect();
        assert_eq!(
            outcomes,
            [
                Admission::Averaging,
                Admission::Warming,
                Admission::Averaging,
                Admission::Warming,
                Admission::Averaging,
                Admission::Window(vec![1.5, 3.5, 5.5], None, 1.0, 1),
            ]
        );
        assert_eq!(admit2(7.0, 7.0), Admission::Averaging);
        // The gap discards the half-filled point with the window: the next
        // point averages only samples after the gap.
        assert_eq!(admit2(30.0, 100.0), Admission::Averaging);
        assert_eq!(admit2(31.0, 102.0), Admission::Warming);
        assert_eq!(admit2(32.0, 0.0), Admission::Averaging);
        assert_eq!(admit2(33.0, 0.0), Admission::Warming);
        assert_eq!(admit2(34.0, 4.0), Admission::Averaging);
        assert_eq!(
            admit2(35.0, 6.0),
            Admission::Window(vec![101.0, 0.0, 5.0], None, 30.0, 1)
        );
    }

    fn admit_multiscale(t: &mut SeriesTable, time: f64, value: f32) -> Admission {
        let shape = ModelShape {
            model: 0,
            window: 3,
            features: 1,
            rows_per_point: 1,
            threshold: 1.0,
            k_factor: None,
            coarse: Some(CoarseShape {
                multiple: 2,
                window: 2,
                threshold: 1.0,
            }),
            range: None,
        };
        t.admit("a", time, &[value], ("topic", 0), shape)
    }

    #[test]
    fn a_coarse_window_rides_with_the_main_window_of_its_sample_or_the_next() {
        let mut t = table(1, 10);
        let outcomes: Vec<Admission> = (1..=6)
            .map(|i| admit_multiscale(&mut t, f64::from(i), i as f32))
            .collect();
        assert_eq!(
            outcomes,
            [
                Admission::Warming,
                Admission::Warming,
                Admission::Window(vec![1.0, 2.0, 3.0], None, 1.0, 1),
                // Coarse points (1+2)/2 and (3+4)/2 fill the coarse window.
                Admission::Window(vec![2.0, 3.0, 4.0], Some(vec![1.5, 3.5]), 2.0, 1),
                Admission::Window(vec![3.0, 4.0, 5.0], None, 3.0, 1),
                Admission::Window(vec![4.0, 5.0, 6.0], Some(vec![3.5, 5.5]), 4.0, 1),
            ]
        );
        // With stride 2 the fourth sample's main window is skipped, so its
        // coarse window waits for the next main window.
        let mut t = table(2, 10);
        let outcomes: Vec<Admission> = (1..=5)
            .map(|i| admit_multiscale(&mut t, f64::from(i), i as f32))
            .collect();
        assert_eq!(outcomes[3], Admission::Skipped);
        assert_eq!(
            outcomes[4],
            Admission::Window(vec![3.0, 4.0, 5.0], Some(vec![1.5, 3.5]), 3.0, 2)
        );
        // A gap drops the coarse window and its half-filled point too.
        assert_eq!(admit_multiscale(&mut t, 30.0, 7.0), Admission::Warming);
        let after: Vec<Admission> = (31..=36)
            .map(|i| admit_multiscale(&mut t, f64::from(i), 0.0))
            .collect();
        let coarse: Vec<Option<Vec<f32>>> = after
            .into_iter()
            .map(|a| match a {
                Admission::Window(_, coarse, _, _) => coarse,
                _ => None,
            })
            .collect();
        // Points after the gap: (7+0)/2 at 31, 0 at 33 and 35.
        assert_eq!(
            coarse,
            [
                None,
                None,
                None,
                Some(vec![3.5, 0.0]),
                None,
                Some(vec![0.0, 0.0])
            ]
        );
    }

    #[test]
    fn windows_fill_slide_and_respect_stride_order_and_gaps() {
        let mut t = table(2, 10);
        assert_eq!(admit(&mut t, "a", 1.0, 1.0), Admission::Warming);
        assert_eq!(admit(&mut t, "a", 2.0, 2.0), Admission::Warming);
        assert_eq!(
            admit(&mut t, "a", 3.0, 3.0),
            Admission::Window(vec![1.0, 2.0, 3.0], None, 1.0, 1)
        );
        assert_eq!(admit(&mut t, "a", 4.0, 4.0), Admission::Skipped);
        // The skipped point rides with the next window, to be judged.
        assert_eq!(
            admit(&mut t, "a", 5.0, 5.0),
            Admission::Window(vec![3.0, 4.0, 5.0], None, 3.0, 2)
        );
        assert_eq!(admit(&mut t, "a", 5.0, 9.0), Admission::OutOfOrder);
        assert_eq!(admit(&mut t, "a", 4.5, 9.0), Admission::OutOfOrder);
        // A gap over 10 s restarts the window.
        assert_eq!(admit(&mut t, "a", 30.0, 6.0), Admission::Warming);
        assert_eq!(t.events.gap_resets, 1);
    }

    #[test]
    fn the_table_stays_bounded_and_evicts_the_stalest() {
        let mut t = table(1, 100);
        for i in 0..1000 {
            admit(&mut t, &format!("s{i}"), 1.0, 0.0);
            admit(&mut t, "hot", f64::from(i) + 1.0, 0.0);
        }
        assert!(t.len() <= 100, "{}", t.len());
        assert!(t.get_mut("hot").is_some(), "the busiest series was evicted");
        assert!(t.events.evicted >= 900);
    }

    fn key(path: &str) -> ModelKey {
        ModelKey {
            path: path.into(),
            window: 3,
            feature_names: vec!["v".into()],
            rows_per_point: 1,
            coarse: None,
            centered: (false, false),
            detrended: (false, false),
            clock: false,
        }
    }

    #[test]
    fn a_restored_table_goes_on_where_the_saved_one_stopped() {
        let mut saved = table(1, 10);
        for time in 0..5 {
            admit(&mut saved, "a", f64::from(time), time as f32);
        }
        admit(&mut saved, "b", 0.0, 1.0);
        let mut resumed = table(1, 10);
        let restored = resumed.restore(saved.into_snapshot(vec![key("m")]), &[key("m")]);
        assert_eq!(
            restored,
            Ok(Restored {
                series: 2,
                skipped: 0,
                rescaled: Vec::new(),
            })
        );
        // "a" has its window, and the time it had reached.
        assert_eq!(
            admit(&mut resumed, "a", 5.0, 5.0),
            Admission::Window(vec![3.0, 4.0, 5.0], None, 3.0, 1)
        );
        assert_eq!(admit(&mut resumed, "a", 5.0, 6.0), Admission::OutOfOrder);
        assert_eq!(admit(&mut resumed, "b", 1.0, 2.0), Admission::Warming);
    }

    /// A state saved before the stillness and roughness checks holds
    /// detectors without them; resuming starts them, once per series, and
    /// they then judge as a new series' checks would: a flat line is
    /// flagged.
    #[test]
    fn series_resumed_without_the_window_checks_get_them() {
        let range = ValueRange {
            min: vec![-10.0],
            max: vec![10.0],
            quietest: Some(vec![1.0]),
            roughest: Some(vec![1.0]),
            resolution: None,
            daily: None,
            weekly: None,
        };
        let before = ValueRange {
            quietest: None,
            roughest: None,
            ..range.clone()
        };
        let mut saved = table(1, 10);
        for time in 0..5 {
            let shape = one_scale(1, Some(&before));
            saved.admit("a", f64::from(time), &[time as f32], ("topic", 0), shape);
        }
        let mut resumed = table(1, 10);
        let snapshot = saved.into_snapshot(vec![key("m")]);
        assert!(resumed.restore(snapshot, &[key("m")]).is_ok());
        assert_eq!(resumed.resume_window_checks(&[(3, Some(&before))]), 0);
        assert_eq!(resumed.resume_window_checks(&[(3, Some(&range))]), 1);
        assert_eq!(resumed.resume_window_checks(&[(3, Some(&range))]), 0);
        let Some(state) = resumed.series.get_mut("a") else {
            panic!("series a was not resumed");
        };
        let flatline = (0..3)
            .map(|_| {
                state.detector.observe_values(&[0.0]);
                state.detector.update(0.1).flatline
            })
            .collect::<Vec<bool>>();
        assert_eq!(
            flatline,
            [false, false, true],
            "judged once its window is full"
        );
    }

    #[test]
    fn a_restore_skips_series_whose_windows_changed_and_refuses_another_detector() {
        let saved = || {
            let mut t = table(1, 10);
            admit(&mut t, "a", 0.0, 1.0);
            t.into_snapshot(vec![key("m")])
        };
        let mut moved = table(1, 10);
        let wider = ModelKey {
            window: 4,
            ..key("m")
        };
        let centred = ModelKey {
            centered: (true, false),
            ..key("m")
        };
        for models in [vec![key("elsewhere")], vec![wider], vec![]] {
            assert_eq!(
                moved.restore(saved(), &models),
                Ok(Restored {
                    series: 0,
                    skipped: 1,
                    rescaled: Vec::new(),
                })
            );
        }
        assert!(moved.is_empty());
        // Centred otherwise, the windows still fit: the series is kept, and
        // its model named for a restart of its detectors.
        assert_eq!(
            moved.restore(saved(), &[centred]),
            Ok(Restored {
                series: 1,
                skipped: 0,
                rescaled: vec![0],
            })
        );
        assert_eq!(moved.model_of("a"), Some(0));
        let other_detector = DetectorConfig {
            min_history: 7,
            ..DetectorConfig::default()
        };
        let mut other = SeriesTable::new(1, 10, 10.0, other_detector);
        assert!(other.restore(saved(), &[key("m")]).is_err());
        assert!(table(2, 10).restore(saved(), &[key("m")]).is_err());
    }
}
