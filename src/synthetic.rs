//! Synthetic seasonal series with injected anomalies whose positions are
//! known: the demo's default input and the tests' fixtures.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

/// Rows per seasonal cycle.
pub const PERIOD: f64 = 20.0;

/// An anomaly to inject into a seasonal series, over `rows`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Injection {
    /// One point `size` standard deviations of the season away.
    Spike { at: usize, size: f64 },
    /// A level shift of `size` over the rows.
    Shift { from: usize, to: usize, size: f64 },
    /// The season runs at `factor` times its frequency over the rows.
    Frequency { from: usize, to: usize, factor: f64 },
}

impl Injection {
    /// Rows the anomaly covers, as a half-open range.
    pub fn span(self) -> std::ops::Range<usize> {
        match self {
            Self::Spike { at, .. } => at..at + 1,
            Self::Shift { from, to, .. } | Self::Frequency { from, to, .. } => from..to,
        }
    }
}

/// A noisy sine (period 20 rows) with `features` phase-shifted channels.
pub fn seasonal(rows: usize, features: usize, seed: u64, injections: &[Injection]) -> Vec<f64> {
    seasonal_with_period(rows, features, seed, PERIOD, injections)
}

/// [`seasonal`] with a season of `period` rows.
pub fn seasonal_with_period(
    rows: usize,
    features: usize,
    seed: u64,
    period: f64,
    injections: &[Injection],
) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(rows * features);
    let mut phase = 0.0f64;
    for t in 0..rows {
        let mut step = 2.0 * std::f64::consts::PI / period;
        let mut level = 0.0;
        let mut spike = 0.0;
        for injection in injections {
            match *injection {
                Injection::Frequency { from, to, factor } if (from..to).contains(&t) => {
                    step *= factor
                }
                Injection::Shift { from, to, size } if (from..to).contains(&t) => level += size,
                Injection::Spike { at, size } if at == t => spike += size,
                _ => {}
            }
        }
        phase += step;
        for f in 0..features {
            let noise: f64 = rng.sample(StandardNormal);
            values.push(phase.sin() + 0.5 * (phase + f as f64).cos() + 0.1 * noise + level + spike);
        }
    }
    values
}
