//! anomalyd: streaming time-series anomaly detection with autoencoders.
//!
//! How data flows, and where each stage lives:
//! 1. [`data::csv`] reads a series (timestamp + numeric features) and rejects
//!    bad rows with the file, line and column.
//! 2. [`data::scaler`] normalises with statistics fitted on the training part
//!    only; [`data::window`] cuts sliding windows that never cross a file.
//! 3. [`model`] holds the autoencoder zoo (one file per kind) and
//!    [`model::artifact`] the versioned on-disk artifact.
//! 4. [`train`] fits a model (Adam, early stopping) and calibrates a threshold
//!    on the validation reconstruction errors.
//! 5. [`score`] turns a series into per-window reconstruction errors and flags.
//!
//! The tensor device is built in one place, [`device`].

pub mod bench;
pub mod config;
pub mod data;
pub mod demo;
pub mod detect;
pub mod device;
pub mod error;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod proto;
pub mod score;
pub mod serve;
pub mod synthetic;
pub mod train;

pub use error::{Error, Result};
