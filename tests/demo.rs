//! `anomalyd demo`, the README's first command, finds what it injects.

use std::process::Command;

#[test]
fn the_demo_finds_every_injected_anomaly_and_none_in_the_clean_series() {
    let output = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args([
            "demo",
            "--rows",
            "1500",
            "--rate",
            "5000",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ])
        .env("ANOMALYD_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run anomalyd: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary in: {stdout}"));
    assert_eq!(
        summary["windows_scored"].as_u64(),
        // Per series: the main windows, and the coarse windows of the
        // multi-scale default (points of 4 rows).
        Some(4 * ((1500 - 31) + (1500 / 4 - 31))),
        "{summary}"
    );
    let series = summary["series"].as_array().cloned().unwrap_or_default();
    assert_eq!(series.len(), 4);
    for s in &series {
        let labelled = s["labelled"].as_array().map_or(0, Vec::len);
        assert_eq!(s["found"].as_u64(), Some(labelled as u64), "{s}");
        if labelled == 0 {
            assert_eq!(s["events"].as_array().map(Vec::len), Some(0), "{s}");
        }
    }
}
