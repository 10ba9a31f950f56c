//! One PNG per series: the signal with the labelled windows shaded and the
//! detections marked, and below it the smoothed error against the
//! threshold. People look at these before they trust a number, so each
//! names its series and its counts, has time and value axes, and a legend.

use std::path::Path;
use std::sync::OnceLock;

use chrono::DateTime;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::SeriesOutcome;
use crate::error::{Error, Result};

const TRUTH: RGBColor = RGBColor(255, 205, 205);
const DETECTED: RGBColor = RGBColor(214, 39, 40);
const SIGNAL: RGBColor = RGBColor(31, 119, 180);
const THRESHOLD: RGBColor = RGBColor(255, 127, 14);

/// The family every text element asks for; [`register_font`] maps it to
/// the embedded DejaVu Sans.
const FONT: &str = "sans-serif";

/// Top left, below the band where detections are marked.
const LEGEND: SeriesLabelPosition = SeriesLabelPosition::Coordinate(8, 24);

pub const WIDTH: u32 = 1400;
pub const HEIGHT: u32 = 760;

/// Numbers in this range are taken for Unix seconds and written as UTC
/// dates (1973 to 2286); other timestamps (row numbers, milliseconds) are
/// written as they are.
const EPOCH_SECONDS: std::ops::Range<f64> = 1e8..1e10;

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

/// ab_glyph draws only the fonts registered with it; registering twice
/// would be harmless, but once is enough for every plot of a run.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the embedded DejaVu Sans font does not parse".to_owned())
        })
        .clone()
        .map_err(Error::Backend)
}

/// The x-axis label of a (fractional) row: its timestamp.
pub fn time_label(times: &[f64], row: f64) -> String {
    let Some(last) = times.len().checked_sub(1) else {
        return String::new();
    };
    let time = times[(row.round().max(0.0) as usize).min(last)];
    if EPOCH_SECONDS.contains(&time)
        && let Some(date) = DateTime::from_timestamp(time as i64, 0)
    {
        return date.format("%Y-%m-%d %H:%M").to_string();
    }
    format!("{time}")
}

fn caption(outcome: &SeriesOutcome) -> String {
    let counts = &outcome.segment;
    match &outcome.skipped {
        Some(reason) => format!("{}: not evaluated ({reason})", outcome.key),
        None => format!(
            "{}: {} TP, {} FP, {} FN (overlapping segments)",
            outcome.key, counts.tp, counts.fp, counts.fn_
        ),
    }
}

/// Draws `outcome` to `path` (PNG).
pub fn draw(outcome: &SeriesOutcome, path: &Path) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::io(path, std::io::Error::other(e.to_string()));
    register_font()?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    render(outcome, &root).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

/// Draws `outcome` into an RGB buffer of [`WIDTH`] × [`HEIGHT`] pixels.
pub fn draw_to_buffer(outcome: &SeriesOutcome, buffer: &mut [u8]) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::Backend(format!("drawing a plot: {e}"));
    register_font()?;
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    render(outcome, &root).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .position(LEGEND)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn render<DB: DrawingBackend>(
    outcome: &SeriesOutcome,
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let root = root.titled(&caption(outcome), (FONT, 20))?;
    let (top, bottom) = root.split_vertically(420);
    let n = outcome.times.len();
    let x_range = 0f64..n.max(2) as f64;
    let row_of = |t: f64| outcome.times.partition_point(|&x| x < t) as f64;
    // A window [t, t] (a point label) or a one-row event still shows: at
    // least one row, and at least about three pixels wide.
    let min_width = (n as f64 / 400.0).max(1.0);
    let span = |(a, b): (f64, f64)| {
        let start = row_of(a);
        (start, (row_of(b) + 1.0).max(start + min_width))
    };
    let x_label = |row: &f64| time_label(&outcome.times, *row);
    let label_style = (FONT, 13);

    let (lo, hi) = bounds(outcome.signal.iter().copied());
    let mut signal = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), lo..hi)?;
    signal
        .configure_mesh()
        .disable_mesh()
        .x_labels(8)
        .x_label_formatter(&x_label)
        .y_desc(outcome.signal_name.as_str())
        .label_style(label_style)
        .axis_desc_style(label_style)
        .draw()?;
    signal
        .draw_series(outcome.truth.iter().map(|&window| {
            let (start, end) = span(window);
            Rectangle::new([(start, lo), (end, hi)], TRUTH.filled())
        }))?
        .label("labelled window")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], TRUTH.filled()));
    signal
        .draw_series(LineSeries::new(
            outcome
                .signal
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64, v)),
            SIGNAL.stroke_width(1),
        ))?
        .label("signal")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SIGNAL.stroke_width(2)));
    let band = 0.04 * (hi - lo);
    signal
        .draw_series(outcome.detected.iter().map(|&event| {
            let (start, end) = span(event);
            Rectangle::new([(start, hi - band), (end, hi)], DETECTED.filled())
        }))?
        .label("detected event")
        .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 20, y + 4)], DETECTED.filled()));
    legend(&mut signal)?;

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
    let clipped = sorted.last().is_some_and(|&max| max > ceiling);
    let mut errors = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, 0f64..ceiling.max(1e-9))?;
    let time_desc = if outcome
        .times
        .first()
        .is_some_and(|t| EPOCH_SECONDS.contains(t))
    {
        "time (UTC)"
    } else {
        "timestamp"
    };
    errors
        .configure_mesh()
        .disable_mesh()
        .x_labels(8)
        .x_label_formatter(&x_label)
        .x_desc(time_desc)
        .y_desc("window error")
        .label_style(label_style)
        .axis_desc_style(label_style)
        .draw()?;
    errors
        .draw_series(LineSeries::new(
            smoothed.iter().map(|&(i, e, _)| (i, e.min(ceiling))),
            BLACK.stroke_width(1),
        ))?
        .label(if clipped {
            "smoothed error (clipped at the top of the axis)"
        } else {
            "smoothed error"
        })
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    errors
        .draw_series(LineSeries::new(
            smoothed
                .iter()
                .filter(|s| s.2.is_finite())
                .map(|&(i, _, t)| (i, t.min(ceiling))),
            THRESHOLD.stroke_width(2),
        ))?
        .label("threshold")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], THRESHOLD.stroke_width(2)));
    legend(&mut errors)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Decision;
    use crate::eval::orion::Counts;

    /// 200 five-minute rows from 2024-01-01 00:00 UTC with a spike at row
    /// 120, labelled [110, 130] and detected [118, 126].
    fn outcome() -> SeriesOutcome {
        let start = 1_704_067_200.0;
        let times: Vec<f64> = (0..200).map(|r| start + 300.0 * f64::from(r)).collect();
        let signal: Vec<f64> = (0..200)
            .map(|r| {
                if r == 120 {
                    5.0
                } else {
                    (f64::from(r) / 9.0).sin()
                }
            })
            .collect();
        let decisions = (0..200)
            .map(|r| {
                (r >= 32).then(|| Decision {
                    smoothed: if (120..126).contains(&r) { 3.0 } else { 0.1 },
                    threshold: Some(1.0),
                    score: 0.0,
                    flagged: (120..126).contains(&r),
                    out_of_range: false,
                    flatline: false,
                    rough: false,
                    seasonal: false,
                    anomalous: (118..=126).contains(&r),
                    event: None,
                    cause: crate::detect::Cause::Error,
                })
            })
            .collect();
        SeriesOutcome {
            group: "g".into(),
            key: "g/spike.csv".into(),
            signal,
            signal_name: "value".into(),
            errors: vec![None; 200],
            decisions,
            truth: vec![(times[110], times[130])],
            detected: vec![(times[118], times[126])],
            segment: Counts {
                tp: 1,
                fp: 0,
                fn_: 0,
            },
            point: Counts::default(),
            times,
            skipped: None,
            calibration: None,
            centering: None,
            coarse_centering: None,
            input: crate::eval::InputNotes::default(),
        }
    }

    fn pixels(buffer: &[u8], rows: std::ops::Range<u32>) -> impl Iterator<Item = [u8; 3]> + '_ {
        let width = WIDTH as usize;
        buffer[rows.start as usize * width * 3..rows.end as usize * width * 3]
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
    }

    #[test]
    fn a_plot_has_its_title_and_axis_labels_and_marks_truth_and_detections() {
        let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        draw_to_buffer(&outcome(), &mut buffer).unwrap_or_else(|e| panic!("{e}"));
        let dark = |rows| {
            pixels(&buffer, rows)
                .filter(|p| p.iter().all(|&c| c < 110))
                .count()
        };
        // The caption is the only thing drawn in the top 28 rows, and the
        // time axis's labels and title the only ones in the bottom 40.
        assert!(dark(0..28) > 200, "no title: {} dark pixels", dark(0..28));
        assert!(dark(HEIGHT - 40..HEIGHT) > 200, "no time axis labels");
        let colour = |c: RGBColor| {
            pixels(&buffer, 0..HEIGHT)
                .filter(|p| *p == [c.0, c.1, c.2])
                .count()
        };
        assert!(colour(TRUTH) > 1000, "labelled window not shaded");
        assert!(colour(DETECTED) > 100, "detection not marked");
        assert!(colour(THRESHOLD) > 100, "threshold not drawn");
    }

    #[test]
    fn a_label_on_one_row_is_still_shaded() {
        let mut point = outcome();
        point.truth = vec![(point.times[150], point.times[150])];
        point.detected.clear();
        let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        draw_to_buffer(&point, &mut buffer).unwrap_or_else(|e| panic!("{e}"));
        let shaded = pixels(&buffer, 0..HEIGHT)
            .filter(|p| *p == [TRUTH.0, TRUTH.1, TRUTH.2])
            .count();
        // At least three pixels wide down the signal chart's height.
        assert!(shaded > 3 * 300, "{shaded} shaded pixels");
    }

    #[test]
    fn a_skipped_series_still_plots_with_its_reason() {
        let mut skipped = outcome();
        skipped.decisions = vec![None; 200];
        skipped.detected.clear();
        skipped.skipped = Some("too short".into());
        assert!(caption(&skipped).contains("not evaluated (too short)"));
        let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        draw_to_buffer(&skipped, &mut buffer).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn epoch_seconds_read_as_utc_dates_and_other_stamps_as_numbers() {
        let epoch = [1_704_067_200.0, 1_704_067_500.0];
        assert_eq!(time_label(&epoch, 1.2), "2024-01-01 00:05");
        assert_eq!(
            time_label(&epoch, 7.0),
            "2024-01-01 00:05",
            "clamped to the last row"
        );
        assert_eq!(time_label(&[0.0, 1.0, 2.0], 1.0), "1");
        assert_eq!(time_label(&[1.7e12], 0.0), "1700000000000");
        assert_eq!(time_label(&[], 0.0), "");
    }
}
