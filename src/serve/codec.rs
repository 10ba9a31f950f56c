//! Decoding input messages. Every rejection has a reason with a bounded
//! label, so that it can be counted and logged without killing anything.

use prost::Message as _;
use serde::Deserialize;

use crate::config::PayloadFormat;
use crate::data::csv::parse_timestamp;
use crate::proto;

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
    #[error("malformed protobuf: {0}")]
    MalformedProtobuf(String),
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
    #[error("no model is routed to series '{0}'")]
    NoModel(String),
    #[error("{bytes} bytes is over the {limit}-byte limit")]
    Oversized { bytes: usize, limit: usize },
}

impl Invalid {
    /// The `reason` label of `anomalyd_invalid_messages_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::MalformedProtobuf(_) => "malformed_protobuf",
            Self::MissingSeries => "missing_series",
            Self::MissingValues => "missing_values",
            Self::BadTimestamp(_) => "bad_timestamp",
            Self::FeatureCount { .. } => "feature_count",
            Self::NonFinite(_) => "non_finite",
            Self::NoModel(_) => "no_model",
            Self::Oversized { .. } => "oversized",
        }
    }
}

/// The format a message is in: its `content-type` header when it has one
/// that names a known format, else the topic's configured format.
pub fn format_of(content_type: Option<&str>, configured: PayloadFormat) -> PayloadFormat {
    let Some(content_type) = content_type else {
        return configured;
    };
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("application/json") {
        PayloadFormat::Json
    } else if lower.contains("protobuf") {
        if lower.contains("samplebatch") {
            PayloadFormat::ProtobufBatch
        } else {
            PayloadFormat::Protobuf
        }
    } else {
        configured
    }
}

/// Decodes a message in `format` into its samples. A message-level failure
/// is the outer error; a batch can carry good and bad samples side by side.
pub fn decode(
    format: PayloadFormat,
    key: Option<&[u8]>,
    payload: &[u8],
    max_bytes: usize,
) -> Result<Vec<Result<Sample, Invalid>>, Invalid> {
    if payload.len() > max_bytes {
        return Err(Invalid::Oversized {
            bytes: payload.len(),
            limit: max_bytes,
        });
    }
    let key = key
        .filter(|k| !k.is_empty())
        .map(|k| String::from_utf8_lossy(k).into_owned());
    match format {
        PayloadFormat::Json => Ok(vec![decode_json(
            key.as_deref().map(str::as_bytes),
            payload,
            max_bytes,
        )]),
        PayloadFormat::Protobuf => {
            let sample = proto::Sample::decode(payload)
                .map_err(|e| Invalid::MalformedProtobuf(e.to_string()))?;
            // A single sample's message key names its series.
            Ok(vec![from_proto(sample, key.as_deref(), true)])
        }
        PayloadFormat::ProtobufBatch => {
            let batch = proto::SampleBatch::decode(payload)
                .map_err(|e| Invalid::MalformedProtobuf(e.to_string()))?;
            Ok(batch
                .samples
                .into_iter()
                .map(|s| from_proto(s, key.as_deref(), false))
                .collect())
        }
    }
}

fn from_proto(sample: proto::Sample, key: Option<&str>, key_wins: bool) -> Result<Sample, Invalid> {
    let series = match (key, sample.series.is_empty()) {
        (Some(key), true) => key.to_owned(),
        (Some(key), false) if key_wins => key.to_owned(),
        (_, false) => sample.series,
        (None, true) => return Err(Invalid::MissingSeries),
    };
    checked(series, sample.timestamp_ms as f64 / 1000.0, sample.values)
}

fn checked(series: String, time: f64, values: Vec<f64>) -> Result<Sample, Invalid> {
    if values.is_empty() {
        return Err(Invalid::MissingValues);
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
    checked(series, time, values)
}

/// Checks a sample against the feature count of the model it is routed to.
pub fn check_features(sample: &Sample, features: usize) -> Result<(), Invalid> {
    if sample.values.len() == features {
        Ok(())
    } else {
        Err(Invalid::FeatureCount {
            got: sample.values.len(),
            want: features,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(key: Option<&str>, payload: &str) -> Result<Sample, Invalid> {
        let sample = decode_json(key.map(str::as_bytes), payload.as_bytes(), 200)?;
        check_features(&sample, 1)?;
        Ok(sample)
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
        // Epoch milliseconds quoted as a string are still milliseconds.
        let sample = decode(None, r#"{"series":"x","ts":"1700000000000","value":1}"#);
        assert_eq!(sample.map(|s| s.time), Ok(1_700_000_000.0));
    }

    #[test]
    fn protobuf_samples_and_batches_decode_with_their_key_rules() {
        let sample = proto::Sample {
            series: "inner".into(),
            timestamp_ms: 1_700_000_000_000,
            values: vec![1.5],
        };
        let one = super::decode(
            PayloadFormat::Protobuf,
            Some(b"key"),
            &sample.encode_to_vec(),
            100,
        );
        let series: Vec<String> = one
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.ok().map(|s| s.series))
            .collect();
        assert_eq!(series, vec!["key".to_string()]);
        let batch = proto::SampleBatch {
            samples: vec![
                sample.clone(),
                proto::Sample {
                    series: String::new(),
                    ..sample.clone()
                },
                proto::Sample {
                    values: vec![f64::NAN],
                    ..sample
                },
            ],
        };
        let decoded = super::decode(
            PayloadFormat::ProtobufBatch,
            Some(b"key"),
            &batch.encode_to_vec(),
            100,
        )
        .unwrap_or_default();
        let outcome: Vec<Result<String, &str>> = decoded
            .into_iter()
            .map(|s| s.map(|s| s.series).map_err(|e| e.reason()))
            .collect();
        assert_eq!(
            outcome,
            vec![
                Ok("inner".to_string()),
                Ok("key".to_string()),
                Err("non_finite")
            ]
        );
        let garbage = super::decode(PayloadFormat::Protobuf, None, &[0xff, 0xff, 0xff], 100);
        assert_eq!(
            garbage.err().map(|e| e.reason()),
            Some("malformed_protobuf")
        );
    }

    #[test]
    fn a_content_type_header_overrides_the_topic_format() {
        assert_eq!(format_of(None, PayloadFormat::Json), PayloadFormat::Json);
        assert_eq!(
            format_of(Some("application/x-protobuf"), PayloadFormat::Json),
            PayloadFormat::Protobuf
        );
        assert_eq!(
            format_of(
                Some("application/x-protobuf; proto=anomalyd.v1.SampleBatch"),
                PayloadFormat::Json
            ),
            PayloadFormat::ProtobufBatch
        );
        assert_eq!(
            format_of(Some("application/json"), PayloadFormat::Protobuf),
            PayloadFormat::Json
        );
        assert_eq!(
            format_of(Some("text/plain"), PayloadFormat::Protobuf),
            PayloadFormat::Protobuf
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
