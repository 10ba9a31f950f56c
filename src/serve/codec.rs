//! Decoding input messages. Every rejection has a reason with a bounded
//! label, so that it can be counted and logged without killing anything.

use serde::Deserialize;

use crate::data::csv::parse_timestamp;

/// One sample of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub series: String,
    /// Seconds since the epoch.
    pub time: f64,
    pub values: Vec<f64>,
}

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("no series: neither a message key nor a \"series\" field")]
    MissingSeries,
    #[error("no \"values\" or \"value\" field")]
    MissingValues,
    #[error("bad timestamp: {0}")]
    BadTimestamp(String),
    #[error("{got} values, the model takes {want}")]
    FeatureCount { got: usize, want: usize },
    #[error("value {0} is not finite")]
    NonFinite(f64),
    #[error("{bytes} bytes is over the {limit}-byte limit")]
    Oversized { bytes: usize, limit: usize },
}

impl Invalid {
    /// The `reason` label of `anomalyd_invalid_messages_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::MissingSeries => "missing_series",
            Self::MissingValues => "missing_values",
            Self::BadTimestamp(_) => "bad_timestamp",
            Self::FeatureCount { .. } => "feature_count",
            Self::NonFinite(_) => "non_finite",
            Self::Oversized { .. } => "oversized",
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    /// Epoch milliseconds.
    Millis(f64),
    Text(String),
}

#[derive(Deserialize)]
struct JsonSample {
    series: Option<String>,
    ts: Timestamp,
    values: Option<Vec<f64>>,
    value: Option<f64>,
}

/// Decodes a JSON sample. The Kafka message key, when present, names the
/// series; otherwise the `series` field does.
pub fn decode_json(
    key: Option<&[u8]>,
    payload: &[u8],
    features: usize,
    max_bytes: usize,
) -> Result<Sample, Invalid> {
    if payload.len() > max_bytes {
        return Err(Invalid::Oversized {
            bytes: payload.len(),
            limit: max_bytes,
        });
    }
    let raw: JsonSample =
        serde_json::from_slice(payload).map_err(|e| Invalid::MalformedJson(e.to_string()))?;
    let series = match key.filter(|k| !k.is_empty()) {
        Some(key) => String::from_utf8_lossy(key).into_owned(),
        None => raw
            .series
            .filter(|s| !s.is_empty())
            .ok_or(Invalid::MissingSeries)?,
    };
    let time = match raw.ts {
        Timestamp::Millis(ms) if ms.is_finite() => ms / 1000.0,
        Timestamp::Millis(ms) => return Err(Invalid::BadTimestamp(ms.to_string())),
        Timestamp::Text(text) => parse_timestamp(&text).ok_or(Invalid::BadTimestamp(text))?,
    };
    let values = match (raw.values, raw.value) {
        (Some(values), _) => values,
        (None, Some(value)) => vec![value],
        (None, None) => return Err(Invalid::MissingValues),
    };
    if values.len() != features {
        return Err(Invalid::FeatureCount {
            got: values.len(),
            want: features,
        });
    }
    if let Some(&bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(Invalid::NonFinite(bad));
    }
    Ok(Sample {
        series,
        time,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(key: Option<&str>, payload: &str) -> Result<Sample, Invalid> {
        decode_json(key.map(str::as_bytes), payload.as_bytes(), 1, 200)
    }

    #[test]
    fn accepts_both_timestamp_forms_and_prefers_the_key() {
        let sample = decode(None, r#"{"series":"h/cpu","ts":1700000000000,"value":0.5}"#);
        assert_eq!(
            sample,
            Ok(Sample {
                series: "h/cpu".into(),
                time: 1_700_000_000.0,
                values: vec![0.5]
            })
        );
        let sample = decode(
            Some("k"),
            r#"{"series":"x","ts":"2023-11-14T22:13:20Z","values":[2]}"#,
        );
        assert_eq!(
            sample.map(|s| (s.series, s.time)),
            Ok(("k".into(), 1_700_000_000.0))
        );
    }

    #[test]
    fn each_bad_input_has_its_own_reason() {
        let reasons: Vec<&str> = [
            (None, "{not json"),
            (None, r#"{"ts":1,"value":1}"#),
            (None, r#"{"series":"a","ts":1}"#),
            (None, r#"{"series":"a","ts":"noon","value":1}"#),
            (None, r#"{"series":"a","ts":1,"values":[1,2]}"#),
            (None, r#"{"series":"a","ts":1,"value":1e999}"#),
            (
                None,
                &format!(r#"{{"series":"{}","ts":1,"value":1}}"#, "a".repeat(300)),
            ),
        ]
        .iter()
        .map(|(key, payload)| {
            decode(*key, payload)
                .err()
                .map_or("accepted", |e| e.reason())
        })
        .collect();
        assert_eq!(
            reasons,
            vec![
                "malformed_json",
                "missing_series",
                "missing_values",
                "bad_timestamp",
                "feature_count",
                "malformed_json",
                "oversized"
            ]
        );
    }
}
