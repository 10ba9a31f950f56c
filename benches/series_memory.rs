//! What one series costs the daemon once its detector's history has
//! filled: live heap bytes (counted by dhat's allocator) and the bytes the
//! state file keeps for it (its detector as `serve` saves it, CBOR), for
//! the shape `train` gives by default: a main scale, a 4× coarse scale
//! beside it, and the range and stillness checks. The figures are counts,
//! not timings, so they do not vary between runs.
//! Five-minute points (a day for the seasonal check) and ten-minute ones
//! (a day and a week). `cargo bench --bench series_memory` prints one JSON
//! line for each.

use anomalyd::detect::{CycleBound, DEFAULT_MEANSTD_WINDOW, Detector, DetectorConfig, ValueRange};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const MODEL_WINDOW: usize = 32;
const COARSE_MULTIPLE: usize = 4;

fn live_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    // Five-minute points: a day of them; a week is more than a guard keeps.
    measure("5min", 288, None);
    // Ten-minute points: a day and a week of them, both guards.
    measure("10min", 144, Some(1008));
}

/// Fills one series' detector and prints what it holds, for points that
/// make a day of `day` and, where given, a week of `week`.
fn measure(points_of: &str, day: usize, week: Option<usize>) {
    let config = DetectorConfig::default();
    let window = DEFAULT_MEANSTD_WINDOW;
    let before = live_bytes();
    let cycle = |period| CycleBound {
        period,
        largest: vec![0.2],
    };
    let mut detector = Detector::with_coarse(&config, 1.0, MODEL_WINDOW, COARSE_MULTIPLE, 1.0)
        .with_range(
            &config,
            Some(ValueRange {
                min: vec![-1.0],
                max: vec![1.0],
                quietest: Some(vec![0.01]),
                roughest: Some(vec![0.2]),
                resolution: Some(vec![0.001]),
                daily: Some(cycle(day)),
                weekly: week.map(cycle),
            }),
        );
    // Both scales' windows span the same time (the coarse one a quarter as
    // many points): twice that fills them and slides them, and every
    // seasonal guard's cycle.
    let points = 2 * window;
    for i in 0..points {
        let noise = ((i * 7919) % 101) as f64 / 1000.0;
        detector.observe_values(&[(i as f32 / 20.0).sin()]);
        if i % COARSE_MULTIPLE == COARSE_MULTIPLE - 1 {
            detector.observe_coarse(0.1 + noise);
        }
        detector.update(0.1 + noise);
    }
    let held = live_bytes().saturating_sub(before);
    let mut state = Vec::new();
    ciborium::into_writer(&detector, &mut state).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{{\"bench\":\"series_memory\",\"points\":\"{points_of}\",\"threshold_window\":{window},\"coarse_multiple\":{COARSE_MULTIPLE},\"heap_bytes\":{held},\"state_bytes\":{}}}",
        state.len()
    );
}
