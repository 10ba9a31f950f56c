//! The time of day as model input (`--time-of-day`; which models take it
//! by default is [`crate::train::TimeOfDay::Auto`]'s rule).
//!
//! Much of what operators watch follows the clock: traffic that rises every
//! morning, a batch job at 02:00. A window of 32 points sees a few hours at
//! most, so a model of values alone cannot tell a quiet afternoon from a
//! quiet night, nor a daily jump that did not come from the flat stretch
//! before it. Two derived features, the sine and cosine of the UTC clock's
//! angle, give it the hour: it learns them with the values and reconstructs
//! them, and so learns what each hour looks like. They are derived from each
//! row's timestamp (never read from data), and the window error, the range
//! check and the stillness check count only the real features: the clock
//! itself cannot be anomalous.

use std::f64::consts::TAU;

use super::{Scaler, Series};
use crate::error::{Error, Result};

/// The derived features' names, appended after the real ones.
pub const TIME_OF_DAY_FEATURES: [&str; 2] = ["time_of_day_sin", "time_of_day_cos"];

pub const SECONDS_PER_DAY: f64 = 86_400.0;

/// The earliest time taken for a time of day, 1980-01-01 UTC. Timestamps
/// before it are row numbers or seconds counted from the data's own start,
/// which say nothing about the hour (and the daemon's samples, stamped in
/// epoch time, would disagree with them).
pub const WALL_CLOCK_FROM: f64 = 315_532_800.0;

/// The sine and cosine of the UTC time of day of `seconds` since the epoch.
pub fn time_of_day(seconds: f64) -> [f64; 2] {
    let angle = seconds.rem_euclid(SECONDS_PER_DAY) / SECONDS_PER_DAY * TAU;
    [angle.sin(), angle.cos()]
}

/// The typical spacing of `times`, in seconds: the median step between
/// rows (gaps and bursts do not move it). 0 for fewer than two rows.
pub fn typical_spacing(times: &[f64]) -> f64 {
    let mut steps: Vec<f64> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
    if steps.is_empty() {
        return 0.0;
    }
    let middle = steps.len() / 2;
    *steps.select_nth_unstable_by(middle, f64::total_cmp).1
}

/// `series` with the time-of-day features appended to every row. Refused for
/// a series that already has a column of one of their names, which would
/// be read as data by one path and derived by another.
pub fn with_time_of_day(series: &Series) -> Result<Series> {
    if let Some(clash) = series
        .feature_names
        .iter()
        .find(|name| TIME_OF_DAY_FEATURES.contains(&name.as_str()))
    {
        return Err(Error::config(
            "--time-of-day",
            format!(
                "{} has a column named {clash}, the name of a derived feature; rename it",
                series.source.display()
            ),
        ));
    }
    let features = series.n_features();
    let mut values = Vec::with_capacity(series.rows() * (features + TIME_OF_DAY_FEATURES.len()));
    for (row, &time) in series
        .values
        .chunks_exact(features.max(1))
        .zip(&series.times)
    {
        values.extend_from_slice(row);
        values.extend(time_of_day(time));
    }
    let mut feature_names = series.feature_names.clone();
    feature_names.extend(TIME_OF_DAY_FEATURES.iter().map(|&name| name.to_owned()));
    Ok(Series {
        feature_names,
        values,
        ..series.clone()
    })
}

/// `scaler` widened to `features` inputs: the derived inputs it lacks get a
/// fixed transform, offset 0 and scale 1/√2 (a sine over a whole day has
/// mean 0 and standard deviation 1/√2, so they come out on the data's unit
/// scale). Fitting them instead would stretch a clock the training data
/// saw only part of; fixing them lets a coarse model that takes the clock
/// share the main model's scaler for the data's columns.
pub fn with_clock_scaling(scaler: &Scaler, features: usize) -> Scaler {
    let mut widened = scaler.clone();
    widened
        .offset
        .resize(features.max(scaler.n_features()), 0.0);
    widened.scale.resize(
        features.max(scaler.n_features()),
        std::f64::consts::FRAC_1_SQRT_2,
    );
    widened
}

/// The first `scored` values of each `width`-wide row of `rows`: the real
/// features without the derived ones.
pub fn scored_columns(rows: &[f64], width: usize, scored: usize) -> Vec<f64> {
    rows.chunks_exact(width.max(1))
        .flat_map(|row| &row[..scored.min(row.len())])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ScalerKind;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn the_typical_spacing_is_the_median_step_so_a_gap_does_not_move_it() {
        let with_gap = [0.0, 300.0, 600.0, 900.0, 5_000.0, 5_300.0];
        assert!(close(typical_spacing(&with_gap), 300.0));
        assert!(close(typical_spacing(&[10.0]), 0.0));
        assert!(close(typical_spacing(&[]), 0.0));
    }

    #[test]
    fn the_clock_angle_is_utc_and_wraps_daily() {
        let midnight = 1_700_006_400.0; // 2023-11-15T00:00:00Z
        let [sin, cos] = time_of_day(midnight);
        assert!(close(sin, 0.0) && close(cos, 1.0));
        let [sin, cos] = time_of_day(midnight + 6.0 * 3600.0);
        assert!(
            close(sin, 1.0) && close(cos, 0.0),
            "06:00 is a quarter turn"
        );
        let [sin, cos] = time_of_day(midnight + 18.0 * 3600.0);
        assert!(close(sin, -1.0) && close(cos, 0.0));
        assert_eq!(
            time_of_day(midnight + 3600.0),
            time_of_day(midnight + 86_400.0 + 3600.0)
        );
        // Before the epoch the clock still runs forwards.
        let [sin, _] = time_of_day(-18.0 * 3600.0);
        assert!(close(sin, 1.0), "1969-12-31T06:00 is 06:00");
    }

    fn series(names: &[&str], times: Vec<f64>, values: Vec<f64>) -> Series {
        Series {
            source: "s.csv".into(),
            feature_names: names.iter().map(|&n| n.to_owned()).collect(),
            timestamps: times.iter().map(f64::to_string).collect(),
            times,
            values,
            sha256: String::new(),
            dropped_rows: 0,
            filled_cells: 0,
        }
    }

    #[test]
    fn appends_two_columns_per_row_from_its_own_time() {
        let noon = 43_200.0;
        let plain = series(&["a", "b"], vec![0.0, noon], vec![1.0, 2.0, 3.0, 4.0]);
        let timed = with_time_of_day(&plain).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            timed.feature_names,
            ["a", "b", "time_of_day_sin", "time_of_day_cos"]
        );
        assert_eq!(timed.times, plain.times);
        let rows: Vec<&[f64]> = timed.values.chunks_exact(4).collect();
        assert_eq!(&rows[0][..2], &[1.0, 2.0]);
        assert_eq!(&rows[1][..2], &[3.0, 4.0]);
        assert!(close(rows[0][3], 1.0) && close(rows[1][3], -1.0));
        assert_eq!(scored_columns(&timed.values, 4, 2), plain.values);
    }

    #[test]
    fn the_clock_gets_a_fixed_scale_and_the_data_keeps_its_own() {
        let fitted = Scaler::fit(ScalerKind::Zscore, 1, [&[1.0, 3.0][..]]);
        let widened = with_clock_scaling(&fitted, 3);
        assert_eq!(widened.offset, [2.0, 0.0, 0.0]);
        assert_eq!(
            widened.scale,
            [
                1.0,
                std::f64::consts::FRAC_1_SQRT_2,
                std::f64::consts::FRAC_1_SQRT_2
            ]
        );
        assert_eq!(with_clock_scaling(&widened, 3), widened);
        // A day of the clock comes out with unit variance, as z-scored data.
        let mut out = Vec::new();
        let day: Vec<f64> = (0..1440)
            .flat_map(|minute| {
                let [sin, cos] = time_of_day(f64::from(minute) * 60.0);
                [0.0, sin, cos]
            })
            .collect();
        widened.transform_into(&day, &mut out);
        let variance = out
            .iter()
            .skip(1)
            .step_by(3)
            .map(|&x| f64::from(x).powi(2))
            .sum::<f64>()
            / 1440.0;
        assert!((variance - 1.0).abs() < 1e-6, "{variance}");
    }

    #[test]
    fn a_column_with_a_derived_name_is_refused() {
        let clash = series(&["time_of_day_cos"], vec![0.0], vec![1.0]);
        let Err(error) = with_time_of_day(&clash) else {
            panic!("a clashing column was accepted");
        };
        let error = error.to_string();
        assert!(
            error.contains("time_of_day_cos") && error.contains("s.csv"),
            "{error}"
        );
    }
}
