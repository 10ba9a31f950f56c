//! One PNG per series: the signal with the labelled windows shaded and the
//! detections marked, and below it the smoothed error against the
//! threshold. People look at these before they trust a number.

use std::path::Path;

use plotters::prelude::*;

use super::SeriesOutcome;
use crate::error::{Error, Result};

const TRUTH: RGBColor = RGBColor(255, 205, 205);
const DETECTED: RGBColor = RGBColor(214, 39, 40);
const SIGNAL: RGBColor = RGBColor(31, 119, 180);
const THRESHOLD: RGBColor = RGBColor(255, 127, 14);

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() && hi > lo {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    }
}

/// Draws `outcome` to `path` (PNG).
pub fn draw(outcome: &SeriesOutcome, path: &Path) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::io(path, std::io::Error::other(e.to_string()));
    let root = BitMapBackend::new(path, (1400, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let (top, bottom) = root.split_vertically(420);
    let n = outcome.times.len();
    let x_range = 0f64..n.max(2) as f64;
    let row_of = |t: f64| outcome.times.partition_point(|&x| x < t) as f64;

    let (lo, hi) = bounds(outcome.signal.iter().copied());
    let mut signal = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(10)
        .y_label_area_size(10)
        .build_cartesian_2d(x_range.clone(), lo..hi)
        .map_err(|e| failed(&e))?;
    signal
        .draw_series(
            outcome
                .truth
                .iter()
                .map(|&(a, b)| Rectangle::new([(row_of(a), lo), (row_of(b), hi)], TRUTH.filled())),
        )
        .map_err(|e| failed(&e))?;
    signal
        .draw_series(LineSeries::new(
            outcome
                .signal
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64, v)),
            SIGNAL.stroke_width(1),
        ))
        .map_err(|e| failed(&e))?;
    let band = 0.04 * (hi - lo);
    signal
        .draw_series(outcome.detected.iter().map(|&(a, b)| {
            Rectangle::new(
                [(row_of(a), hi - band), (row_of(b) + 1.0, hi)],
                DETECTED.filled(),
            )
        }))
        .map_err(|e| failed(&e))?;

    let smoothed: Vec<(f64, f64, f64)> = outcome
        .decisions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.map(|d| (i as f64, d.smoothed, d.threshold.unwrap_or(f64::NAN))))
        .collect();
    // Clip the error axis so that one huge spike does not flatten the rest.
    let mut sorted: Vec<f64> = smoothed
        .iter()
        .map(|s| s.1)
        .filter(|v| v.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    let typical = sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(1.0);
    let ceiling = smoothed
        .iter()
        .map(|s| s.2)
        .filter(|v| v.is_finite())
        .fold(typical, f64::max)
        * 1.5;
    let mut errors = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(10)
        .y_label_area_size(10)
        .build_cartesian_2d(x_range, 0f64..ceiling.max(1e-9))
        .map_err(|e| failed(&e))?;
    errors
        .draw_series(LineSeries::new(
            smoothed.iter().map(|&(i, e, _)| (i, e.min(ceiling))),
            BLACK.stroke_width(1),
        ))
        .map_err(|e| failed(&e))?;
    errors
        .draw_series(LineSeries::new(
            smoothed
                .iter()
                .filter(|s| s.2.is_finite())
                .map(|&(i, _, t)| (i, t.min(ceiling))),
            THRESHOLD.stroke_width(2),
        ))
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}
