//! The `anomalyd` binary end to end: train on a real NAB series, score it,
//! inspect the artifact, and fail cleanly on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn anomalyd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(args)
        .env("ANOMALYD_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run anomalyd: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn nab_file(relative: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/nab/data")
        .join(relative);
    assert!(path.exists(), "NAB data missing at {}", path.display());
    path
}

/// `anomalyd score --model MODEL --data DATA --out OUT`, which must
/// succeed: the file it wrote.
fn scored(model: &str, data: &str, out: &str) -> String {
    let run = anomalyd(&["score", "--model", model, "--data", data, "--out", out]);
    assert!(run.status.success(), "score failed: {}", text(&run.stderr));
    std::fs::read_to_string(out).unwrap_or_default()
}

/// A model `anomalyd train --window 24 --epochs 3` and `extra` wrote from a
/// NAB series, in a temporary directory that lives as long as this.
struct Trained {
    _dir: tempfile::TempDir,
    data: String,
    model: PathBuf,
    model_arg: String,
    scores_arg: String,
}

fn trained_on_nab(relative: &str, extra: &[&str]) -> Trained {
    let data = nab_file(relative).to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model = dir.path().join("model");
    let model_arg = model.to_string_lossy().into_owned();
    let scores_arg = dir.path().join("scores.csv").to_string_lossy().into_owned();
    let args = [
        &["train", "--data", &data, "--window", "24", "--epochs", "3"],
        extra,
    ]
    .concat();
    let out = anomalyd(&[&args[..], &["--out", &model_arg]].concat());
    assert!(out.status.success(), "train failed: {}", text(&out.stderr));
    Trained {
        _dir: dir,
        data,
        model,
        model_arg,
        scores_arg,
    }
}

#[test]
fn train_score_inspect_on_a_nab_series() {
    let Trained {
        _dir,
        data,
        model_arg,
        scores_arg,
        ..
    } = trained_on_nab("artificialWithAnomaly/art_daily_jumpsup.csv", &[]);
    let written = scored(&model_arg, &data, &scores_arg);
    let input_rows =
        std::fs::read_to_string(nab_file("artificialWithAnomaly/art_daily_jumpsup.csv"))
            .map(|t| t.lines().count())
            .unwrap_or_default();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(
        lines.len(),
        input_rows,
        "one output row per input row, plus the header"
    );
    assert_eq!(lines[0], "timestamp,error,score,threshold,anomaly,cause");
    assert!(
        lines[1].starts_with("2014-04-01 00:00:00,,"),
        "{}",
        lines[1]
    );
    // 4032 rows train with `--aggregate auto` at two rows per point, so the
    // first full window of 24 points ends on row 47 (0-based), and only the
    // second row of each point is judged.
    for unscored in [46, 48] {
        assert!(
            lines[unscored + 1].ends_with(",,,,"),
            "row {unscored} has no full point window: {}",
            lines[unscored + 1]
        );
    }
    // Row 47 is the detector's first point: it has an error, but the
    // trailing threshold is still warming up, so no threshold and score 0.
    let first: Vec<&str> = lines[48].split(',').collect();
    assert!(
        first[1].parse::<f64>().is_ok_and(|e| e >= 0.0),
        "{}",
        lines[48]
    );
    assert_eq!(&first[2..], ["0.000000", "", "0", "error"], "{}", lines[48]);
    // 100 points (200 rows) later it is warm.
    let warm: Vec<&str> = lines[248].split(',').collect();
    let score = warm[2].parse::<f64>().unwrap_or(-1.0);
    assert!(
        (0.0..1.0).contains(&score),
        "score in [0, 1): {}",
        lines[248]
    );
    assert!(
        warm[3].parse::<f64>().is_ok_and(|t| t > 0.0),
        "{}",
        lines[248]
    );
    assert!(matches!(warm[4], "0" | "1"), "{}", lines[248]);
    assert!(
        [
            "error",
            "coarse",
            "range",
            "stillness",
            "roughness",
            "seasonal"
        ]
        .contains(&warm[5]),
        "{}",
        lines[248]
    );
    let in_event = |line: &&str| line.split(',').nth(4) == Some("1");
    assert!(
        !lines[2..248].iter().any(in_event),
        "flagged while warming up"
    );
    let flagged = lines[1..].iter().filter(|line| in_event(line)).count();
    assert!(
        flagged > 0,
        "the jump in art_daily_jumpsup was not flagged at all"
    );

    let out = anomalyd(&["inspect", &model_arg]);
    assert!(
        out.status.success(),
        "inspect failed: {}",
        text(&out.stderr)
    );
    let shown = text(&out.stdout);
    for expected in [
        "\"kind\":\"dense\"",
        "threshold",
        "art_daily_jumpsup.csv",
        "safetensors",
        "24 points of 2 row(s) each",
        "(range check)",
        "resolution [",
        // Ten-minute points: the file holds exactly two weeks of them (the
        // range is taken over every training row, validation included).
        "a day of 144 points",
        "a week of 1008 points",
        "coarse model    coarse/: window 24 points of 8 row(s) each",
    ] {
        assert!(
            shown.contains(expected),
            "inspect lacks {expected}: {shown}"
        );
    }
}

/// `train` records the factor on mean-std's k that keeps its own training
/// data quiet, for the default detector or the daemon's configured one,
/// `score` applies it (its thresholds are that much higher than with
/// `--calibrated-k false`) with its flags' detector or the daemon's file's,
/// and `--calibrate-k false` records none.
#[test]
fn train_calibrates_k_on_its_data_and_score_applies_it() {
    let data = nab_file("artificialNoAnomaly/art_daily_small_noise.csv");
    let data = data.to_string_lossy();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let k_factor = |model: &Path| -> Option<f64> {
        let manifest =
            std::fs::read_to_string(model.join("manifest.json")).unwrap_or_else(|e| panic!("{e}"));
        let manifest: serde_json::Value =
            serde_json::from_str(&manifest).unwrap_or_else(|e| panic!("{e}"));
        manifest["threshold"]["k_factor"].as_f64()
    };
    let train = |name: &str, extra: &[&str]| {
        let model = dir.path().join(name);
        let model_arg = model.to_string_lossy().into_owned();
        let args = [
            &[
                "train", "--data", &data, "--window", "24", "--kind", "dense", "--epochs", "3",
                "--out", &model_arg,
            ][..],
            extra,
        ]
        .concat();
        let out = anomalyd(&args);
        assert!(out.status.success(), "train failed: {}", text(&out.stderr));
        model
    };
    let calibrated = train("calibrated", &[]);
    let factor = k_factor(&calibrated).unwrap_or_else(|| panic!("no k_factor recorded"));
    assert!(
        (1.125..=2.0).contains(&factor),
        "one step of margin at least, twice k at most: {factor}"
    );
    assert_eq!(k_factor(&train("plain", &["--calibrate-k", "false"])), None);
    // The daemon's own detector, from its configuration file: calibrated
    // for when it is mean-std, no factor when it is not.
    let config = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path.to_string_lossy().into_owned()
    };
    let mean_std = config(
        "meanstd.toml",
        "[kafka]\ntopics = [\"m\"]\n[detector.threshold]\nkind = \"meanstd\"\nwindow = 500\nk = 3.0\n",
    );
    let factor = k_factor(&train("own", &["--detector-config", &mean_std]))
        .unwrap_or_else(|| panic!("no k_factor recorded for a mean-std detector"));
    assert!((1.125..=2.0).contains(&factor), "{factor}");
    let fixed = config("static.toml", "[detector.threshold]\nkind = \"static\"\n");
    assert_eq!(
        k_factor(&train("static", &["--detector-config", &fixed])),
        None
    );
    // A mistake in the file stops train before it trains, named.
    let wrong = config("wrong.toml", "[detector]\nmin_histroy = 10\n");
    let model = dir.path().join("never").to_string_lossy().into_owned();
    let out = anomalyd(&[
        "train",
        "--data",
        &data,
        "--detector-config",
        &wrong,
        "--out",
        &model,
    ]);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "a misspelt field was accepted");
    assert!(
        said.contains("wrong.toml") && said.contains("min_histroy"),
        "{said}"
    );
    assert!(!dir.path().join("never").exists());

    let model_arg = calibrated.to_string_lossy().into_owned();
    let out = anomalyd(&["inspect", &model_arg]);
    assert!(text(&out.stdout).contains(&format!("k factor        {factor}")));
    // A trailing threshold is mean + kσ: the calibrated one sits further
    // above the mean wherever both have one.
    let thresholds = |extra: &[&str]| -> Vec<f64> {
        let args = [
            &["score", "--model", &model_arg, "--data", &data][..],
            extra,
        ]
        .concat();
        let out = anomalyd(&args);
        assert!(out.status.success(), "score failed: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').nth(3)?.parse::<f64>().ok())
            .collect()
    };
    let (applied, configured) = (thresholds(&[]), thresholds(&["--calibrated-k", "false"]));
    assert_eq!(applied.len(), configured.len());
    assert!(!applied.is_empty(), "no threshold written");
    assert!(
        applied.iter().zip(&configured).all(|(a, c)| a > c),
        "k × {factor} should raise every threshold"
    );
    // `score` judges as the daemon's file says, exactly as with the same
    // settings given as flags, and refuses both at once.
    let from_file = thresholds(&["--detector-config", &mean_std]);
    let from_flags = thresholds(&["--threshold-window", "500", "--k", "3"]);
    assert!(!from_file.is_empty() && from_file != applied);
    assert_eq!(from_file, from_flags);
    let both = anomalyd(&[
        "score",
        "--model",
        &model_arg,
        "--data",
        &data,
        "--detector-config",
        &mean_std,
        "--k",
        "3",
    ]);
    assert!(!both.status.success(), "a file and flags were both taken");
}

/// A model calibrated for the daemon's configured detector records which
/// one, and `score` warns when it applies the factor with another detector
/// (here the defaults), not with the one it was measured for, nor when the
/// factor is turned off.
#[test]
fn score_warns_when_the_k_factor_was_measured_for_another_detector() {
    let data = nab_file("artificialNoAnomaly/art_daily_small_noise.csv");
    let data = data.to_string_lossy();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("anomalyd.toml");
    std::fs::write(
        &file,
        "[detector.threshold]\nkind = \"meanstd\"\nwindow = 500\nk = 3.0\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = file.to_string_lossy().into_owned();
    let train = |name: &str, extra: &[&str]| {
        let model = dir.path().join(name).to_string_lossy().into_owned();
        let args = [
            &[
                "train", "--data", &data, "--window", "24", "--epochs", "3", "--out", &model,
            ][..],
            extra,
        ]
        .concat();
        let out = anomalyd(&args);
        assert!(out.status.success(), "train failed: {}", text(&out.stderr));
        let manifest = std::fs::read_to_string(dir.path().join(name).join("manifest.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let manifest: serde_json::Value =
            serde_json::from_str(&manifest).unwrap_or_else(|e| panic!("{e}"));
        (
            model,
            manifest["threshold"]["calibrated_for"]["threshold"].clone(),
        )
    };
    let (own, measured_for) = train("own", &["--detector-config", &file]);
    assert_eq!(measured_for["k"], 3.0, "{measured_for}");
    assert_eq!(measured_for["window"], 500, "{measured_for}");
    let (default, measured_for) = train("default", &[]);
    assert_eq!(measured_for["k"], 4.0, "{measured_for}");
    let warned = |model: &str, extra: &[&str]| {
        let args = [&["score", "--model", model, "--data", &data][..], extra].concat();
        let out = anomalyd(&args);
        assert!(out.status.success(), "score failed: {}", text(&out.stderr));
        text(&out.stderr).contains("calibrated for another detector")
    };
    let shown = text(&anomalyd(&["inspect", &own]).stdout);
    assert!(
        shown.contains("for the detector of --detector-config"),
        "{shown}"
    );
    let shown = text(&anomalyd(&["inspect", &default]).stdout);
    assert!(shown.contains("for the default detector"), "{shown}");
    assert!(warned(&own, &[]));
    assert!(!warned(&own, &["--detector-config", &file]));
    assert!(!warned(&own, &["--calibrated-k", "false"]));
    assert!(!warned(&default, &[]));
}

/// The largest `score` column value `anomalyd score` writes for rows
/// `rows` of `data` with `extra` flags.
fn peak_score(model: &str, data: &Path, rows: std::ops::Range<usize>, extra: &[&str]) -> f64 {
    let data = data.to_string_lossy();
    let out = anomalyd(&[&["score", "--model", model, "--data", &data][..], extra].concat());
    assert!(out.status.success(), "score failed: {}", text(&out.stderr));
    let written = text(&out.stdout);
    let mut lines = written.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = header.iter().position(|h| *h == "score");
    let column = column.unwrap_or_else(|| panic!("no score column: {header:?}"));
    lines
        .skip(rows.start)
        .take(rows.len())
        .filter_map(|line| line.split(',').nth(column)?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// `score` judges each point's values against the artifact's training
/// range: days played louder than any the model was trained on score above
/// the threshold's 0.5 for it, higher than their error alone scores them.
#[test]
fn score_flags_values_beyond_the_training_range() {
    let source = nab_file("artificialNoAnomaly/art_daily_small_noise.csv");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model = dir.path().join("model");
    let model_arg = model.to_string_lossy();
    let out = anomalyd(&[
        "train",
        "--data",
        &source.to_string_lossy(),
        "--window",
        "24",
        "--epochs",
        "3",
        "--out",
        &model_arg,
    ]);
    assert!(out.status.success(), "train failed: {}", text(&out.stderr));
    let original = std::fs::read_to_string(&source).unwrap_or_default();
    let louder: Vec<String> = original
        .lines()
        .enumerate()
        .map(|(line, row)| match row.split_once(',') {
            // Lines 3001..=3050 are rows 3000..3050.
            Some((stamp, value)) if (3001..=3050).contains(&line) => {
                let value: f64 = value.parse().unwrap_or_default();
                format!("{stamp},{}", value * 1.3)
            }
            _ => row.to_owned(),
        })
        .collect();
    let data = dir.path().join("louder.csv");
    std::fs::write(&data, louder.join("\n")).ok();
    let guarded = peak_score(&model_arg, &data, 3000..3050, &[]);
    let unguarded = peak_score(&model_arg, &data, 3000..3050, &["--range-tolerance", "0"]);
    assert!(
        guarded > 0.5 && guarded > unguarded,
        "with the range check {guarded}, without {unguarded}"
    );
}

/// `train --time-of-day` (both models): the artifact records the two
/// derived inputs after the data's column (format 7), its range covers the
/// data's column only, `inspect` says so for both models, and `score`
/// derives them from a file that has only the data's column. An artifact
/// that claims the time of day without its inputs is refused, naming the
/// field.
#[test]
fn train_with_the_time_of_day_records_it_and_score_derives_it() {
    let Trained {
        _dir,
        data,
        model,
        model_arg,
        scores_arg,
    } = trained_on_nab(
        "artificialWithAnomaly/art_daily_jumpsdown.csv",
        &["--time-of-day"],
    );
    let manifest_path = model.join("manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap_or_default())
            .unwrap_or_else(|e| panic!("manifest: {e}"));
    assert_eq!(
        manifest["format_version"],
        anomalyd::model::artifact::FORMAT_VERSION
    );
    assert_eq!(manifest["windowing"]["time_of_day"], true);
    assert_eq!(
        manifest["windowing"]["feature_names"],
        serde_json::json!(["value", "time_of_day_sin", "time_of_day_cos"])
    );
    assert_eq!(
        manifest["scaler"]["offset"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        manifest["value_range"]["min"].as_array().map(Vec::len),
        Some(1)
    );

    let out = anomalyd(&["inspect", &model_arg]);
    assert!(
        text(&out.stdout).contains("features [value] with the time of day (UTC")
            && text(&out.stdout)
                .lines()
                .any(|l| l.starts_with("coarse model") && l.contains("with the time of day")),
        "{}",
        text(&out.stdout)
    );
    let written = scored(&model_arg, &data, &scores_arg);
    assert_eq!(
        written.lines().next(),
        Some("timestamp,error,score,threshold,anomaly,cause")
    );
    let rows_scored = written
        .lines()
        .skip(1)
        .filter(|l| {
            l.split(',')
                .nth(1)
                .is_some_and(|e| e.parse::<f64>().is_ok())
        })
        .count();
    // Two rows per point (`--aggregate auto`): every second row, after the
    // first window.
    assert_eq!(rows_scored, 4032 / 2 - 24 + 1, "rows scored");

    // The same rows stamped in epoch milliseconds, as exporters write them:
    // read as seconds, every row would fall at another time of day and the
    // clock inputs, hence the errors, would differ.
    let millis_csv = model.with_file_name("millis.csv");
    let millis_rows: Vec<String> = std::fs::read_to_string(&data)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (stamp, value) = line.split_once(',')?;
            let seconds = anomalyd::data::csv::parse_timestamp(stamp)?;
            Some(format!("{},{value}", seconds as i64 * 1000))
        })
        .collect();
    assert_eq!(millis_rows.len(), 4032);
    std::fs::write(
        &millis_csv,
        format!("timestamp,value\n{}\n", millis_rows.join("\n")),
    )
    .ok();
    let millis_scores = model.with_file_name("millis-scores.csv");
    let from_millis = scored(
        &model_arg,
        &millis_csv.to_string_lossy(),
        &millis_scores.to_string_lossy(),
    );
    let without_stamps = |written: &str| -> Vec<String> {
        written
            .lines()
            .skip(1)
            .map(|l| l.split_once(',').map_or("", |(_, rest)| rest).to_owned())
            .collect()
    };
    let (by_datetime, by_millis) = (without_stamps(&written), without_stamps(&from_millis));
    assert_eq!(by_millis.len(), by_datetime.len());
    let first_difference = by_millis.iter().zip(&by_datetime).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "scores from epoch milliseconds differ"
    );

    let claimed = std::fs::read_to_string(&manifest_path)
        .unwrap_or_default()
        .replace("\"time_of_day_sin\"", "\"sin\"");
    std::fs::write(&manifest_path, claimed).ok();
    let out = anomalyd(&["inspect", &model_arg]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a broken artifact was read");
    assert!(
        stderr.contains("manifest.json") && stderr.contains("windowing.time_of_day"),
        "{stderr}"
    );
}

#[test]
fn bad_input_exits_non_zero_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "timestamp,value\n1,1.0\n2,oops\n").ok();
    let out = anomalyd(&[
        "train",
        "--data",
        &csv.to_string_lossy(),
        "--out",
        &dir.path().join("m").to_string_lossy(),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.csv:3 column 'value': 'oops' is not a number"),
        "{stderr}"
    );

    let out = anomalyd(&[
        "score",
        "--model",
        &dir.path().join("nowhere").to_string_lossy(),
        "--data",
        "x.csv",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("manifest.json"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_shows_an_example_for_every_command_and_version_prints() {
    for command in ["demo", "train", "score", "eval", "serve", "inspect"] {
        let out = anomalyd(&[command, "--help"]);
        let help = text(&out.stdout);
        assert!(help.contains("Example"), "{command} --help has no example");
        assert!(
            help.contains(&format!("anomalyd {command}")),
            "{command}: {help}"
        );
    }
    let out = anomalyd(&["--version"]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("anomalyd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bench_prints_one_json_line_with_the_reference_keys() {
    for device in devices_this_build_runs_on() {
        let out = anomalyd(&[
            "bench",
            "--kind",
            "lstm",
            "--window",
            "8",
            "--hidden",
            "8",
            "--features",
            "2",
            "--infer-batch",
            "16",
            "--train-batch",
            "8",
            "--threads",
            "1",
            "--reps",
            "2",
            "--device",
            device,
        ]);
        assert!(out.status.success(), "{device}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let report: serde_json::Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        for key in ["infer_windows_per_s", "train_step_ms"] {
            let value = report[key].as_f64().unwrap_or_default();
            assert!(value > 0.0, "{device}: {key} = {value}");
        }
        for (key, value) in [
            ("window", 8),
            ("hidden", 8),
            ("features", 2),
            ("infer_batch", 16),
            ("train_batch", 8),
            ("threads", 1),
        ] {
            assert_eq!(report[key].as_u64(), Some(value), "{device}: {key}");
        }
        assert_eq!(report["kind"], "lstm");
        assert_eq!(report["device"], device);
    }
}

fn devices_this_build_runs_on() -> Vec<&'static str> {
    if cfg!(feature = "tch") {
        vec!["cpu", "libtorch"]
    } else {
        vec!["cpu"]
    }
}

#[test]
fn a_device_this_build_cannot_use_is_refused_by_name() {
    // Without the feature, LibTorch devices are missing altogether; with
    // CI's CPU-only libtorch, CUDA is; and no machine has 100 GPUs.
    let device = if cfg!(feature = "tch") {
        "cuda:99"
    } else {
        "libtorch"
    };
    let out = anomalyd(&["bench", "--device", device, "--reps", "1"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--device") && stderr.contains(device),
        "{stderr}"
    );
    let hint = if cfg!(feature = "tch") {
        "CUDA"
    } else {
        "--features tch"
    };
    assert!(stderr.contains(hint), "{stderr}");
}
