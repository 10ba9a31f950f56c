//! Everything between a CSV file and a batch of normalised windows.

pub mod calendar;
pub mod csv;
pub mod scaler;
pub mod window;

pub use self::csv::{CsvOptions, FillPolicy, OrderPolicy, Series};
pub use scaler::{Scaler, ScalerKind};
pub use window::WindowSet;
