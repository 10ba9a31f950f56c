//! Causal smoothing of the reconstruction error: each output depends only on
//! the current and earlier inputs.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How the raw error is smoothed before thresholding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SmoothingConfig {
    /// The raw error.
    None,
    /// Exponentially weighted moving average, s_t = α·e_t + (1 − α)·s_{t−1}.
    Ewma { alpha: f64 },
    /// Mean of the last `window` errors.
    Mean { window: usize },
}

/// A running smoother.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Smoother {
    None,
    Ewma {
        alpha: f64,
        state: Option<f64>,
    },
    Mean {
        window: usize,
        values: VecDeque<f64>,
    },
}

impl Smoother {
    pub fn new(config: SmoothingConfig) -> Self {
        match config {
            SmoothingConfig::None => Self::None,
            SmoothingConfig::Ewma { alpha } => Self::Ewma { alpha, state: None },
            SmoothingConfig::Mean { window } => Self::Mean {
                window: window.max(1),
                values: VecDeque::with_capacity(window.max(1)),
            },
        }
    }

    pub fn update(&mut self, value: f64) -> f64 {
        match self {
            Self::None => value,
            Self::Ewma { alpha, state } => {
                let next = state.map_or(value, |s| *alpha * value + (1.0 - *alpha) * s);
                *state = Some(next);
                next
            }
            Self::Mean { window, values } => {
                values.push_back(value);
                if values.len() > *window {
                    values.pop_front();
                }
                // Summed afresh: a running sum keeps the rounding residue
                // of every burst that has left the window.
                values.iter().sum::<f64>() / values.len() as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothers_follow_their_definitions() {
        let mut ewma = Smoother::new(SmoothingConfig::Ewma { alpha: 0.5 });
        let out: Vec<f64> = [2.0, 4.0, 0.0].iter().map(|&v| ewma.update(v)).collect();
        assert_eq!(out, vec![2.0, 3.0, 1.5]);
        let mut mean = Smoother::new(SmoothingConfig::Mean { window: 2 });
        let out: Vec<f64> = [2.0, 4.0, 0.0].iter().map(|&v| mean.update(v)).collect();
        assert_eq!(out, vec![2.0, 3.0, 2.0]);
    }
}
