//! Consecutive flagged points become anomaly events.
//!
//! A run of flags becomes an event once it is `min_length` points long
//! and its score has reached `min_peak` (a run that only grazes a learnt
//! threshold is within that threshold's own noise: on NAB no such event
//! touched a labelled window; docs/detection.md, "A run must clear its threshold");
//! flags at most `merge_gap` points after the last flag extend it; after an
//! event ends, flags within `cooldown` points are ignored unless they score
//! higher than that event's peak. The cool-down is there for aftershocks,
//! which are no larger than the event they follow; a flag that outscores
//! it is news (a cool-down that ignored it missed a labelled window at 250×
//! the threshold on NAB; docs/detection.md, "A flag that outscores the last event").
//!
//! For the same reason an open event is **escalated** when a flag's error,
//! as a multiple of its threshold, reaches [`ESCALATION`] times the most
//! the event had reached: merged into a marginal event, a far larger one
//! would otherwise say nothing new (NAB's scorer saw such an event as a
//! false positive before a missed window; docs/detection.md, "An event that grows").

use serde::{Deserialize, Serialize};

/// Event rules, in points, and the score a run must reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// Flags needed before a run counts as an event.
    pub min_length: usize,
    /// Unflagged points allowed inside one event.
    pub merge_gap: usize,
    /// Points after an event's end during which new flags are ignored,
    /// unless they score higher than the event did.
    pub cooldown: usize,
    /// The score a run of flags must reach before it counts as an event
    /// (0.5 is the threshold itself, which every flag passes): a run that
    /// only grazes its threshold stays a run. Where a configuration, state
    /// file or artifact leaves it out, the default, as for the detector's
    /// other settings.
    #[serde(default = "EventConfig::default_min_peak")]
    pub min_peak: f64,
}

impl EventConfig {
    /// `min_peak` that asks nothing beyond a flag.
    pub const fn at_the_threshold() -> f64 {
        0.5
    }

    fn default_min_peak() -> f64 {
        super::DEFAULT_MIN_PEAK
    }

    /// The most points by which an event's first flag can precede the
    /// point that confirms it: a run of `min_length` whose flags lie up to
    /// `merge_gap` apart. None at `min_length` 1, which confirms an event
    /// at its first flag.
    pub fn confirmation_lag(&self) -> usize {
        if self.min_length <= 1 {
            0
        } else {
            self.min_length - 1 + self.merge_gap
        }
    }
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            min_length: 1,
            merge_gap: 0,
            cooldown: 0,
            min_peak: Self::at_the_threshold(),
        }
    }
}

/// A confirmed event, by point index (inclusive bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub start: usize,
    pub end: usize,
}

/// How many times its peak (error over threshold) a flag inside an open
/// event must reach to escalate it (see the module doc).
pub const ESCALATION: f64 = 3.0;

/// The error over the threshold that a score stands for: the score is
/// `r / (1 + r)` (see `detect`), so this is `r`.
fn over_threshold(score: f64) -> f64 {
    score / (1.0 - score).max(f64::EPSILON)
}

/// What one point did to the event state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventChange {
    /// An event was confirmed at this point; it began at `start`.
    Started { start: usize },
    /// The open event that began at `start` grew: this point's error over
    /// its threshold is at least [`ESCALATION`] times the event's peak.
    Escalated { start: usize },
    /// The event ended; `end` is its last flagged point.
    Ended(Event),
}

/// The event state machine of one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventTracker {
    config: EventConfig,
    /// First and last flagged index of the current run.
    run: Option<(usize, usize)>,
    confirmed: bool,
    quiet_until: Option<usize>,
    /// The highest score of the current run.
    #[serde(default)]
    peak: f64,
    /// The peak score of the event whose cool-down runs.
    #[serde(default)]
    quiet_peak: f64,
    /// Whether the current run holds a flag that needs no margin (see
    /// [`EventTracker::update_with`]).
    #[serde(default)]
    run_certain: bool,
}

impl EventTracker {
    pub fn new(config: EventConfig) -> Self {
        Self {
            config,
            run: None,
            confirmed: false,
            quiet_until: None,
            peak: 0.0,
            quiet_peak: 0.0,
            run_certain: false,
        }
    }

    /// Feeds point `index` (strictly increasing), whether it was flagged
    /// and its score. Returns whether the point belongs to a confirmed event, and any
    /// change. An event that ends is reported at the first point past the
    /// merge gap.
    pub fn update(
        &mut self,
        index: usize,
        flagged: bool,
        score: f64,
    ) -> (bool, Option<EventChange>) {
        self.update_with(index, flagged, score, false)
    }

    /// [`EventTracker::update`] for a point whose flag may be `certain`:
    /// raised against a fixed bound (the range or stillness check, whose
    /// tolerance is its margin) rather than a threshold learnt from noisy
    /// errors, so its run needs no `min_peak` to count.
    pub fn update_with(
        &mut self,
        index: usize,
        flagged: bool,
        score: f64,
        certain: bool,
    ) -> (bool, Option<EventChange>) {
        let mut change = None;
        if let Some((start, last)) = self.run {
            if flagged {
                self.run = Some((start, index));
                if self.confirmed && over_threshold(score) >= ESCALATION * over_threshold(self.peak)
                {
                    change = Some(EventChange::Escalated { start });
                }
                self.peak = self.peak.max(score);
                self.run_certain |= certain;
            } else if index - last > self.config.merge_gap {
                self.run = None;
                if self.confirmed {
                    self.confirmed = false;
                    self.quiet_until = Some(last + self.config.cooldown);
                    self.quiet_peak = self.peak;
                    change = Some(EventChange::Ended(Event { start, end: last }));
                }
                return (false, change);
            }
        } else if flagged
            && (self.quiet_until.is_none_or(|until| index > until) || score > self.quiet_peak)
        {
            self.run = Some((index, index));
            self.peak = score;
            self.run_certain = certain;
        }
        if let Some((start, last)) = self.run
            && flagged
            && !self.confirmed
            && last + 1 - start >= self.config.min_length.max(1)
            && (self.peak >= self.config.min_peak || self.run_certain)
        {
            self.confirmed = true;
            change = Some(EventChange::Started { start });
        }
        (self.confirmed && self.run.is_some(), change)
    }

    /// Closes an open event at the end of the data.
    pub fn finish(&mut self) -> Option<Event> {
        let run = self.run.take();
        let confirmed = std::mem::replace(&mut self.confirmed, false);
        run.filter(|_| confirmed)
            .map(|(start, end)| Event { start, end })
    }
}

/// Runs the tracker over a whole sequence of flags, each point's score 1
/// where flagged (so no flag outscores an event); returns the events.
pub fn events_from_flags(config: EventConfig, flags: &[bool]) -> Vec<Event> {
    let mut tracker = EventTracker::new(config);
    let mut events: Vec<Event> = flags
        .iter()
        .enumerate()
        .filter_map(
            |(i, &f)| match tracker.update(i, f, f64::from(u8::from(f))).1 {
                Some(EventChange::Ended(event)) => Some(event),
                _ => None,
            },
        )
        .collect();
    events.extend(tracker.finish());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pattern: &str) -> Vec<bool> {
        pattern.chars().map(|c| c == '#').collect()
    }

    fn spans(config: EventConfig, pattern: &str) -> Vec<(usize, usize)> {
        events_from_flags(config, &flags(pattern))
            .into_iter()
            .map(|e| (e.start, e.end))
            .collect()
    }

    /// What each of `points` (flagged, score) did to a fresh tracker.
    fn changes(config: EventConfig, points: &[(bool, f64)]) -> Vec<Option<EventChange>> {
        let mut tracker = EventTracker::new(config);
        points
            .iter()
            .enumerate()
            .map(|(i, &(flagged, score))| tracker.update(i, flagged, score).1)
            .collect()
    }

    #[test]
    fn an_event_is_confirmed_at_most_its_confirmation_lag_after_its_first_flag() {
        let config = EventConfig {
            min_length: 3,
            merge_gap: 2,
            ..EventConfig::default()
        };
        // Two flags, then the third as late as the merge gap allows.
        let flags = [true, true, false, false, true];
        let points: Vec<(bool, f64)> = flags.iter().map(|&f| (f, 0.6)).collect();
        let confirmed = changes(config, &points);
        assert_eq!(confirmed[4], Some(EventChange::Started { start: 0 }));
        assert_eq!(config.confirmation_lag(), 4);
        assert_eq!(EventConfig::default().confirmation_lag(), 0);
    }

    #[test]
    fn runs_become_events_by_length_gap_and_cooldown() {
        let plain = EventConfig::default();
        assert_eq!(spans(plain, "..##..#."), vec![(2, 3), (6, 6)]);
        let long = EventConfig {
            min_length: 2,
            ..plain
        };
        assert_eq!(spans(long, "..##..#.###"), vec![(2, 3), (8, 10)]);
        let merged = EventConfig {
            merge_gap: 2,
            ..plain
        };
        assert_eq!(spans(merged, "##..#...#"), vec![(0, 4), (8, 8)]);
        let quiet = EventConfig {
            cooldown: 3,
            ..plain
        };
        assert_eq!(spans(quiet, "#..#.#"), vec![(0, 0), (5, 5)]);
    }

    #[test]
    fn an_event_is_confirmed_causally_and_reported_when_it_ends() {
        let mut tracker = EventTracker::new(EventConfig {
            min_length: 2,
            ..EventConfig::default()
        });
        assert_eq!(tracker.update(0, true, 0.6), (false, None));
        assert_eq!(
            tracker.update(1, true, 0.6),
            (true, Some(EventChange::Started { start: 0 }))
        );
        assert_eq!(
            tracker.update(2, false, 0.1),
            (false, Some(EventChange::Ended(Event { start: 0, end: 1 })))
        );
    }

    /// An open event escalates when a flag's error over its threshold
    /// (score r/(1+r): r) reaches three times the event's peak r; a rise
    /// that gets there gradually, or that comes before the event is
    /// confirmed, does not.
    #[test]
    fn an_event_escalates_when_its_error_jumps_to_three_times_its_peak() {
        let config = EventConfig {
            min_length: 2,
            merge_gap: 5,
            ..EventConfig::default()
        };
        // r: 1.5, then 9 as the event is confirmed (no escalation before),
        // 4, 12 and 30 (a rise in steps under three times), a gap, 95.
        let points = [
            (true, 0.6),
            (true, 0.9),
            (true, 0.8),
            (true, 12.0 / 13.0),
            (true, 30.0 / 31.0),
            (false, 0.2),
            (true, 95.0 / 96.0),
            (true, 100.0 / 101.0),
        ];
        let changes = changes(config, &points);
        assert_eq!(
            changes,
            [
                None,
                Some(EventChange::Started { start: 0 }),
                None,
                None,
                None,
                None,
                Some(EventChange::Escalated { start: 0 }),
                None,
            ]
        );
    }

    /// A run whose score stays under `min_peak` is no event, nor does it
    /// start a cool-down; one that reaches it is confirmed there and starts
    /// at its first flag; a certain flag needs no margin.
    #[test]
    fn a_run_becomes_an_event_once_it_clears_min_peak() {
        let config = EventConfig {
            merge_gap: 1,
            cooldown: 10,
            min_peak: 0.52,
            ..EventConfig::default()
        };
        let points = [
            (true, 0.51),
            (false, 0.4),
            (false, 0.4),
            (true, 0.505),
            (true, 0.53),
            (true, 0.51),
            (false, 0.4),
            (false, 0.4),
        ];
        assert_eq!(
            changes(config, &points),
            [
                None,
                None,
                None,
                None,
                Some(EventChange::Started { start: 3 }),
                None,
                None,
                Some(EventChange::Ended(Event { start: 3, end: 5 })),
            ]
        );
        let mut tracker = EventTracker::new(config);
        assert_eq!(
            tracker.update_with(0, true, 0.51, true),
            (true, Some(EventChange::Started { start: 0 }))
        );
        let at_the_threshold = EventConfig {
            min_peak: EventConfig::at_the_threshold(),
            ..config
        };
        assert_eq!(
            changes(at_the_threshold, &points[..1]),
            [Some(EventChange::Started { start: 0 })]
        );
    }

    /// In the cool-down after an event, flags that score no higher than
    /// its peak are aftershocks and ignored; one that outscores it opens
    /// a new event.
    #[test]
    fn a_flag_that_outscores_the_last_event_opens_one_in_its_cooldown() {
        let config = EventConfig {
            cooldown: 10,
            ..EventConfig::default()
        };
        let points = [
            (true, 0.6),
            (true, 0.8),
            (false, 0.2),
            (true, 0.8),
            (false, 0.2),
            (true, 0.95),
        ];
        let changes = changes(config, &points);
        assert_eq!(
            changes,
            [
                Some(EventChange::Started { start: 0 }),
                None,
                Some(EventChange::Ended(Event { start: 0, end: 1 })),
                None,
                None,
                Some(EventChange::Started { start: 5 }),
            ]
        );
    }
}
