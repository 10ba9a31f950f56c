//! Reading a time series from CSV.
//!
//! The timestamp column is the one named like a time (`timestamp`, `time`,
//! `date`, …; see [`TIME_COLUMN_NAMES`]), or else the first. Its cells are an
//! RFC 3339 / ISO-8601 datetime (with or without a zone, `T` or space between
//! date and time; `/` between date parts, year first or month first as
//! pandas reads them), or a number (epoch time in seconds, or in milliseconds,
//! microseconds or nanoseconds told apart by magnitude, [`epoch_seconds`];
//! or a plain row index). The
//! other columns are numeric features, except a row index written without a
//! name (pandas' `Unnamed: 0`, R's empty header).
//! Timestamps must strictly increase. Every rejected cell is reported with the
//! file, the 1-based line (the header is line 1) and the column name.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What to do with a missing cell (see `is_missing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FillPolicy {
    /// An empty cell is an error.
    #[default]
    None,
    /// Carry the last seen value forward; a gap at the very start takes the
    /// first value that follows it.
    Previous,
    /// Linear interpolation in time between the neighbouring values; gaps at
    /// either end take the nearest value.
    Interpolate,
}

/// What to do with a row whose timestamp does not come after the previous
/// row's (NAB itself has a few such rows around daylight-saving changes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OrderPolicy {
    /// Reject the file, naming the line.
    #[default]
    Error,
    /// Skip the row, as the daemon does with late samples; the count is kept.
    Drop,
    /// Keep the row in file order.
    Keep,
}

/// How to read a CSV file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CsvOptions {
    /// Feature columns to keep, by header name, in this order. `None` keeps
    /// every value column ([`HeaderLayout`]).
    pub columns: Option<Vec<String>>,
    /// Policy for empty cells.
    pub fill: FillPolicy,
    /// Policy for timestamps that repeat or go backwards.
    pub unordered: OrderPolicy,
}

/// One series read from one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub source: PathBuf,
    pub feature_names: Vec<String>,
    /// The timestamp cells as written, so that output can echo them.
    pub timestamps: Vec<String>,
    /// Seconds since the epoch (or the number as written, for numeric
    /// timestamps); used for ordering and interpolation.
    pub times: Vec<f64>,
    /// Row-major `[rows, features]`.
    pub values: Vec<f64>,
    /// SHA-256 of the file's bytes, for the artifact's data fingerprint.
    pub sha256: String,
    /// Rows skipped under [`OrderPolicy::Drop`].
    pub dropped_rows: usize,
    /// Missing cells filled under the [`FillPolicy`].
    pub filled_cells: usize,
}

impl Series {
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }

    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn row(&self, index: usize) -> &[f64] {
        let f = self.n_features();
        &self.values[index * f..(index + 1) * f]
    }

    /// Averages every `rows_per_point` consecutive rows into one. A point
    /// carries its last row's timestamp, the moment its mean is known; a
    /// trailing incomplete group is left out, as a stream would not have
    /// completed it yet.
    pub fn aggregate(&self, rows_per_point: usize) -> Series {
        let n = rows_per_point.max(1);
        if n == 1 {
            return self.clone();
        }
        let f = self.n_features();
        let points = self.rows() / n;
        let mut values = Vec::with_capacity(points * f);
        for point in 0..points {
            let rows = &self.values[point * n * f..(point + 1) * n * f];
            values.extend(
                (0..f).map(|feature| rows.iter().skip(feature).step_by(f).sum::<f64>() / n as f64),
            );
        }
        let last_rows = (0..points).map(|point| (point + 1) * n - 1);
        Series {
            source: self.source.clone(),
            feature_names: self.feature_names.clone(),
            timestamps: last_rows
                .clone()
                .map(|r| self.timestamps[r].clone())
                .collect(),
            times: last_rows.map(|r| self.times[r]).collect(),
            values,
            sha256: self.sha256.clone(),
            dropped_rows: self.dropped_rows,
            filled_cells: self.filled_cells,
        }
    }

    /// The header's value columns (see [`HeaderLayout`]), without reading
    /// the rows.
    pub fn value_columns(path: &Path) -> Result<Vec<String>> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = csv_reader(std::io::BufReader::new(file));
        let headers = reader.headers().map_err(|e| Error::Data {
            path: path.to_path_buf(),
            line: 1,
            column: None,
            reason: format!("cannot read the header: {e}"),
        })?;
        let layout = HeaderLayout::of(headers);
        Ok(layout
            .values
            .iter()
            .map(|&i| headers[i].to_owned())
            .collect())
    }

    /// The value columns of `path` that hold no number on any row (every
    /// cell empty, written as missing, or text such as a status or a
    /// category). Reads only until every column has shown one number, so a
    /// file without such a column costs a row or two.
    pub fn columns_without_numbers(path: &Path) -> Result<Vec<String>> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = csv_reader(std::io::BufReader::new(file));
        let unreadable = |line: u64, e: ::csv::Error| Error::Data {
            path: path.to_path_buf(),
            line,
            column: None,
            reason: format!("cannot read: {e}"),
        };
        let headers = reader.headers().map_err(|e| unreadable(1, e))?.clone();
        let layout = HeaderLayout::of(&headers);
        let names: Vec<String> = layout
            .values
            .iter()
            .map(|&i| headers[i].to_owned())
            .collect();
        let mut seen = vec![false; names.len()];
        for (line, record) in (2..).zip(reader.records()) {
            let record = record.map_err(|e| unreadable(line, e))?;
            for (seen, &column) in seen.iter_mut().zip(&layout.values) {
                *seen |= record
                    .get(column)
                    .is_some_and(|cell| cell.parse::<f64>().is_ok_and(f64::is_finite));
            }
            if seen.iter().all(|&s| s) {
                break;
            }
        }
        Ok(names
            .into_iter()
            .zip(seen)
            .filter(|(_, seen)| !seen)
            .map(|(name, _)| name)
            .collect())
    }

    /// Reads and validates `path`.
    pub fn from_path(path: &Path, options: &CsvOptions) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes, options)
    }

    /// Parses CSV bytes; `path` is only used to name the source in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8], options: &CsvOptions) -> Result<Self> {
        let data_error = |line: u64, column: Option<&str>, reason: String| Error::Data {
            path: path.to_path_buf(),
            line,
            column: column.map(str::to_owned),
            reason,
        };
        let mut reader = csv_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| data_error(1, None, format!("cannot read the header: {e}")))?
            .clone();
        if headers.len() < 2 {
            return Err(data_error(
                1,
                None,
                "the header needs a timestamp column and at least one value column".into(),
            ));
        }
        let layout = HeaderLayout::of(&headers);
        let time_column = layout.time;
        let selected = select_columns(&headers, &layout, options.columns.as_deref())
            .map_err(|reason| data_error(1, None, reason))?;
        let feature_names: Vec<String> = selected.iter().map(|&i| headers[i].to_owned()).collect();
        let n_features = feature_names.len();

        let mut timestamps = Vec::new();
        let mut times = Vec::new();
        // NaN marks a missing cell until the fill policy has run.
        let mut values = Vec::new();
        let mut missing = 0usize;
        let mut dropped_rows = 0usize;
        let mut latest_time: Option<f64> = None;
        let mut record = ::csv::StringRecord::new();
        loop {
            let more = reader.read_record(&mut record).map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                data_error(line, None, format!("malformed CSV: {e}"))
            })?;
            if !more {
                break;
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            if record.len() == 1 && record[0].is_empty() {
                continue; // a blank line
            }
            let stamp_text = record.get(time_column).unwrap_or_default();
            let time = parse_timestamp(stamp_text).ok_or_else(|| {
                data_error(
                    line,
                    Some(&headers[time_column]),
                    format!("'{stamp_text}' is not a datetime or a number"),
                )
            })?;
            if let Some(latest) = latest_time
                && time <= latest
            {
                match options.unordered {
                    OrderPolicy::Error => {
                        let what = if time == latest {
                            "repeats"
                        } else {
                            "goes backwards"
                        };
                        return Err(data_error(
                            line,
                            Some(&headers[time_column]),
                            format!(
                                "timestamp '{stamp_text}' {what}; timestamps must strictly increase (or pass --unordered drop|keep)"
                            ),
                        ));
                    }
                    OrderPolicy::Drop => {
                        dropped_rows += 1;
                        continue;
                    }
                    OrderPolicy::Keep => {}
                }
            }
            latest_time = Some(latest_time.map_or(time, |t: f64| t.max(time)));
            for &column in &selected {
                let name = &headers[column];
                let cell = record.get(column).unwrap_or_default();
                if is_missing(cell) {
                    if options.fill == FillPolicy::None {
                        return Err(data_error(
                            line,
                            Some(name),
                            "missing value (use --fill previous|interpolate to fill gaps)".into(),
                        ));
                    }
                    missing += 1;
                    values.push(f64::NAN);
                    continue;
                }
                let value: f64 = cell.parse().map_err(|_| {
                    data_error(line, Some(name), format!("'{cell}' is not a number"))
                })?;
                if !value.is_finite() {
                    return Err(data_error(
                        line,
                        Some(name),
                        format!("'{cell}' is not a finite number"),
                    ));
                }
                values.push(value);
            }
            timestamps.push(stamp_text.to_owned());
            times.push(time);
        }
        if timestamps.is_empty() {
            return Err(data_error(1, None, "no data rows".into()));
        }
        if missing > 0 {
            fill_gaps(&mut values, &times, n_features, options.fill).map_err(|feature| {
                data_error(
                    1,
                    Some(&feature_names[feature]),
                    "every value is missing; nothing to fill from".into(),
                )
            })?;
        }
        Ok(Self {
            source: path.to_path_buf(),
            feature_names,
            timestamps,
            times,
            values,
            sha256: hex::encode(Sha256::digest(bytes)),
            dropped_rows,
            filled_cells: missing,
        })
    }
}

/// Header names that mark the timestamp column, compared without case.
pub const TIME_COLUMN_NAMES: [&str; 8] = [
    "timestamp",
    "timestamps",
    "time",
    "datetime",
    "date",
    "ts",
    "time_stamp",
    "date_time",
];

/// Which column of a header holds the time and which hold values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLayout {
    /// The first column named like a time, or else the first column.
    pub time: usize,
    /// Every other column except unnamed row indices (a header cell that is
    /// empty or pandas' `Unnamed: N`): an index written by `to_csv` or
    /// `write.csv` numbers the rows, and as a feature it would leave the
    /// training range on every row.
    pub values: Vec<usize>,
}

impl HeaderLayout {
    pub fn of(headers: &::csv::StringRecord) -> Self {
        let time = headers
            .iter()
            .position(|name| {
                TIME_COLUMN_NAMES
                    .iter()
                    .any(|t| name.eq_ignore_ascii_case(t))
            })
            .unwrap_or(0);
        let values = headers
            .iter()
            .enumerate()
            .filter(|&(i, name)| i != time && !is_unnamed_index(name))
            .map(|(i, _)| i)
            .collect();
        Self { time, values }
    }
}

fn is_unnamed_index(name: &str) -> bool {
    name.is_empty()
        || name
            .strip_prefix("Unnamed: ")
            .is_some_and(|n| n.parse::<usize>().is_ok())
}

fn select_columns(
    headers: &::csv::StringRecord,
    layout: &HeaderLayout,
    wanted: Option<&[String]>,
) -> std::result::Result<Vec<usize>, String> {
    let Some(wanted) = wanted else {
        if layout.values.is_empty() {
            return Err(format!(
                "the header has no value column beside the timestamp column '{}'",
                &headers[layout.time]
            ));
        }
        return Ok(layout.values.clone());
    };
    if wanted.is_empty() {
        return Err("--columns is empty".into());
    }
    wanted
        .iter()
        .map(|name| {
            headers
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != layout.time)
                .find(|(_, header)| header == name)
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    let available: Vec<&str> = layout.values.iter().map(|&i| &headers[i]).collect();
                    format!(
                        "column '{name}' is not in the header (value columns: {})",
                        available.join(", ")
                    )
                })
        })
        .collect()
}

/// The one reader configuration, so that a header read on its own
/// ([`Series::value_columns`]) names the columns as the full read does.
fn csv_reader<R: std::io::Read>(source: R) -> ::csv::Reader<R> {
    ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(source)
}

/// Whether a cell (already trimmed by the reader) stands for a missing
/// value: empty, or one of the spellings that pandas, R and databases write
/// for one (pandas' default `na_values`, less the ones that could be data).
fn is_missing(cell: &str) -> bool {
    const MISSING: [&str; 9] = [
        "", "nan", "-nan", "na", "n/a", "#n/a", "null", "none", "<na>",
    ];
    MISSING.iter().any(|m| cell.eq_ignore_ascii_case(m))
}

/// Parses a timestamp cell into seconds (or the plain number).
pub fn parse_timestamp(text: &str) -> Option<f64> {
    if let Ok(number) = text.parse::<f64>() {
        return number.is_finite().then(|| epoch_seconds(number));
    }
    if let Ok(zoned) = DateTime::parse_from_rfc3339(text) {
        return Some(seconds(zoned.naive_utc()));
    }
    // `/`-separated dates are read year first or month first, as pandas'
    // `to_datetime` reads them by default.
    const NAIVE_FORMATS: [&str; 8] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M",
        "%m/%d/%Y %H:%M:%S%.f",
        "%m/%d/%Y %H:%M",
    ];
    for format in NAIVE_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(seconds(naive));
        }
    }
    // A zone written with a space before it, or without a colon, is common
    // in exported data even though RFC 3339 forbids it.
    for format in ["%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f %z"] {
        if let Ok(zoned) = DateTime::parse_from_str(text, format) {
            return Some(seconds(zoned.naive_utc()));
        }
    }
    ["%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y"]
        .iter()
        .find_map(|format| NaiveDate::parse_from_str(text, format).ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(seconds)
}

/// A number read as a timestamp, in seconds. Exporters write epoch time in
/// seconds, milliseconds (JavaScript, Kafka, Prometheus' API), microseconds
/// or nanoseconds (pandas' `int64` datetimes), and the unit shows in the
/// magnitude: every instant since 1973 is at least 1e11 in milliseconds,
/// 1e14 in microseconds and 1e17 in nanoseconds, while in seconds 1e11 is
/// the year 5138. Read as seconds, milliseconds would put every row at the
/// same time of day as far as the clock inputs can tell, and labels written
/// beside them would still match, so nothing else would catch it. Numbers
/// below 1e11 (epoch seconds, row numbers) are kept as they are.
pub fn epoch_seconds(number: f64) -> f64 {
    const UNITS: [(f64, f64); 3] = [(1e17, 1e9), (1e14, 1e6), (1e11, 1e3)];
    UNITS
        .iter()
        .find(|(from, _)| number.abs() >= *from)
        .map_or(number, |(_, per_second)| number / per_second)
}

fn seconds(naive: NaiveDateTime) -> f64 {
    let utc = naive.and_utc();
    utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_nanos()) * 1e-9
}

/// Replaces the NaN placeholders; on failure returns the feature index that
/// has no value at all.
fn fill_gaps(
    values: &mut [f64],
    times: &[f64],
    n_features: usize,
    policy: FillPolicy,
) -> std::result::Result<(), usize> {
    let rows = times.len();
    for feature in 0..n_features {
        let at = |row: usize| row * n_features + feature;
        let known: Vec<usize> = (0..rows).filter(|&r| !values[at(r)].is_nan()).collect();
        let (Some(&first), Some(&last)) = (known.first(), known.last()) else {
            return Err(feature);
        };
        for row in 0..first {
            values[at(row)] = values[at(first)];
        }
        for row in last + 1..rows {
            values[at(row)] = values[at(last)];
        }
        for pair in known.windows(2) {
            let (left, right) = (pair[0], pair[1]);
            for row in left + 1..right {
                values[at(row)] = match policy {
                    FillPolicy::Interpolate => {
                        // Rows kept out of order have no usable time span;
                        // their position in the file stands in for time.
                        let span = times[right] - times[left];
                        let share = if span > 0.0 {
                            (times[row] - times[left]) / span
                        } else {
                            (row - left) as f64 / (right - left) as f64
                        };
                        values[at(left)] + share * (values[at(right)] - values[at(left)])
                    }
                    FillPolicy::Previous | FillPolicy::None => values[at(left)],
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, options: &CsvOptions) -> Result<Series> {
        Series::from_bytes(Path::new("t.csv"), text.as_bytes(), options)
    }

    fn error_text(text: &str, options: &CsvOptions) -> String {
        match read(text, options) {
            Ok(_) => String::from("no error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn aggregation_averages_whole_groups_and_stamps_each_with_its_last_row() {
        let text = "t,a,b\n1,1,10\n2,2,20\n3,3,30\n4,5,50\n5,7,70\n6,9,90\n7,100,100\n";
        let series = read(text, &CsvOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let points = series.aggregate(3);
        assert_eq!(points.rows(), 2, "the incomplete last group is left out");
        assert_eq!(points.values, [2.0, 20.0, 7.0, 70.0]);
        assert_eq!(points.timestamps, ["3", "6"]);
        assert_eq!(points.times, [3.0, 6.0]);
        assert_eq!(points.feature_names, series.feature_names);
        assert_eq!(series.aggregate(1), series);
    }

    #[test]
    fn reads_every_timestamp_form() {
        for stamp in [
            "2014-07-01 00:00:00",
            "2014-07-01T00:00:00",
            "2014-07-01T00:00:00Z",
            "2014-07-01T02:00:00+02:00",
            "1404172800",
            "1404172800.0",
            "1404172800000",
            "1404172800000000",
            "1404172800000000000",
            "1.4041728e12",
            "2014/07/01 00:00:00",
            "2014/07/01 00:00",
            "07/01/2014 00:00:00",
            "07/01/2014 00:00",
            "07/01/2014",
            "2014/07/01",
        ] {
            let t = parse_timestamp(stamp);
            assert_eq!(t, Some(1_404_172_800.0), "{stamp}");
        }
        assert_eq!(parse_timestamp("3"), Some(3.0));
        assert_eq!(parse_timestamp("-4"), Some(-4.0));
        // The largest seconds we keep as seconds: the year 5138.
        assert_eq!(parse_timestamp("99999999999"), Some(99_999_999_999.0));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn univariate_nab_style_file_loads() {
        let s = read(
            "timestamp,value\n2014-07-01 00:00:00,1.5\n2014-07-01 00:05:00,2\n",
            &CsvOptions::default(),
        )
        .map_err(|e| e.to_string());
        let s = s.as_ref().map_err(String::as_str);
        assert_eq!(
            s.map(|s| s.feature_names.clone()),
            Ok(vec!["value".to_string()])
        );
        assert_eq!(s.map(|s| s.values.clone()), Ok(vec![1.5, 2.0]));
        assert_eq!(s.map(|s| s.times[1] - s.times[0]), Ok(300.0));
    }

    #[test]
    fn the_timestamp_column_is_found_by_name_and_unnamed_row_indices_are_no_features() {
        let expected = Ok((vec!["value".to_string()], vec![1.5, 2.0], 300.0));
        for text in [
            // pandas' to_csv with its default index=True, then R's write.csv
            ",timestamp,value\n0,2014-07-01 00:00:00,1.5\n1,2014-07-01 00:05:00,2\n",
            "Unnamed: 0,timestamp,value\n0,2014-07-01 00:00:00,1.5\n1,2014-07-01 00:05:00,2\n",
            "value,Time\n1.5,2014-07-01 00:00:00\n2,2014-07-01 00:05:00\n",
        ] {
            let read = read(text, &CsvOptions::default())
                .map(|s| (s.feature_names, s.values, s.times[1] - s.times[0]))
                .map_err(|e| e.to_string());
            assert_eq!(read, expected, "{text}");
        }
        // Without a column named like a time the first one is the time, an
        // unnamed index included.
        let s = read(",value\n0,1.5\n1,2\n", &CsvOptions::default()).map_err(|e| e.to_string());
        assert_eq!(
            s.map(|s| (s.feature_names, s.times)),
            Ok((vec!["value".to_string()], vec![0.0, 1.0]))
        );
        let message = error_text("Unnamed: 0,timestamp\n0,1\n", &CsvOptions::default());
        assert!(
            message.contains("no value column beside the timestamp column 'timestamp'"),
            "{message}"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("indexed.csv");
        std::fs::write(&path, ",value,timestamp,empty\n0,1,5,\n1,2,6,\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            Series::value_columns(&path).map_err(|e| e.to_string()),
            Ok(vec!["value".into(), "empty".into()])
        );
        assert_eq!(
            Series::columns_without_numbers(&path).map_err(|e| e.to_string()),
            Ok(vec!["empty".into()])
        );
    }

    #[test]
    fn column_selection_keeps_the_requested_order_and_names_unknown_columns() {
        let text = "t,a,b,c\n0,1,2,3\n1,4,5,6\n";
        let options = CsvOptions {
            columns: Some(vec!["c".into(), "a".into()]),
            ..CsvOptions::default()
        };
        let s = read(text, &options).map_err(|e| e.to_string());
        assert_eq!(s.map(|s| s.values), Ok(vec![3.0, 1.0, 6.0, 4.0]));
        let options = CsvOptions {
            columns: Some(vec!["zz".into()]),
            ..CsvOptions::default()
        };
        let message = error_text(text, &options);
        assert!(
            message.contains("'zz'") && message.contains("a, b, c"),
            "{message}"
        );
    }

    #[test]
    fn bad_cells_are_named_by_file_line_and_column() {
        let options = CsvOptions::default();
        let cases = [
            ("t,v\n0,1\n1,\n", "t.csv:3 column 'v': missing value"),
            (
                "t,v\n0,1\n1,abc\n",
                "t.csv:3 column 'v': 'abc' is not a number",
            ),
            ("t,v\n0,1\n1,NaN\n", "t.csv:3 column 'v': missing value"),
            (
                "t,v\n0,1\n1,inf\n",
                "t.csv:3 column 'v': 'inf' is not a finite number",
            ),
            (
                "t,v\n0,1\n1,2\n0.5,3\n",
                "t.csv:4 column 't': timestamp '0.5' goes backwards",
            ),
            (
                "t,v\n0,1\n0,2\n",
                "t.csv:3 column 't': timestamp '0' repeats",
            ),
            (
                "t,v\n0,1\nnoon,2\n",
                "t.csv:3 column 't': 'noon' is not a datetime",
            ),
            ("t,a,b\n0,1,2\n1,3\n", "t.csv:3 column 'b': missing value"),
            ("t\n0\n", "t.csv:1: the header needs"),
            ("t,v\n", "t.csv:1: no data rows"),
        ];
        for (text, expected) in cases {
            let message = error_text(text, &options);
            assert!(message.starts_with(expected), "{text:?}: got '{message}'");
        }
    }

    #[test]
    fn unordered_rows_can_be_dropped_or_kept() {
        let text = "t,v\n0,1\n2,2\n1,3\n2,4\n3,5\n";
        let with = |unordered| CsvOptions {
            unordered,
            ..CsvOptions::default()
        };
        let dropped = read(text, &with(OrderPolicy::Drop)).map_err(|e| e.to_string());
        assert_eq!(
            dropped.as_ref().map(|s| (s.values.clone(), s.dropped_rows)),
            Ok((vec![1.0, 2.0, 5.0], 2))
        );
        let kept = read(text, &with(OrderPolicy::Keep)).map(|s| s.values);
        assert_eq!(
            kept.map_err(|e| e.to_string()),
            Ok(vec![1.0, 2.0, 3.0, 4.0, 5.0])
        );
    }

    #[test]
    fn columns_without_numbers_are_found_whatever_missing_spelling_or_text() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("s.csv");
        let text = "t,a,b,c,d,status,e\n0,1,,NaN,,ok,x\n1,2,,NA,,ok,\n2,3,,null,4,down,5\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let empty = Series::columns_without_numbers(&path).map_err(|e| e.to_string());
        let expected = ["b", "c", "status"].map(String::from).to_vec();
        assert_eq!(empty, Ok(expected));
    }

    #[test]
    fn fill_policies_close_gaps() {
        let text = "t,v\n0,\n1,1\n2,\n3,\n4,4\n5,\n";
        let previous = CsvOptions {
            fill: FillPolicy::Previous,
            ..CsvOptions::default()
        };
        let interpolate = CsvOptions {
            fill: FillPolicy::Interpolate,
            ..CsvOptions::default()
        };
        let values = |o: &CsvOptions| read(text, o).map(|s| s.values).map_err(|e| e.to_string());
        assert_eq!(values(&previous), Ok(vec![1.0, 1.0, 1.0, 1.0, 4.0, 4.0]));
        assert_eq!(values(&interpolate), Ok(vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0]));
        let message = error_text("t,v\n0,\n1,\n", &previous);
        assert!(message.contains("every value is missing"), "{message}");
    }

    #[test]
    fn the_usual_spellings_of_missing_are_missing_cells() {
        let text = "t,v\n0,1\n1,NaN\n2, NA \n3,null\n4,5\n";
        let interpolate = CsvOptions {
            fill: FillPolicy::Interpolate,
            ..CsvOptions::default()
        };
        let filled = read(text, &interpolate).map(|s| (s.values, s.filled_cells));
        assert_eq!(
            filled.map_err(|e| e.to_string()),
            Ok((vec![1.0, 2.0, 3.0, 4.0, 5.0], 3))
        );
        let message = error_text(text, &CsvOptions::default());
        assert!(
            message.contains(":3 column 'v': missing value"),
            "{message}"
        );
    }
}
