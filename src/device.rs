//! The one place where a tensor device is built from the `--device` flag.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::Error;

/// Which compute device to run on, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The pure-Rust CPU backend (burn `flex`), always compiled in.
    #[default]
    Cpu,
}

impl DeviceSpec {
    /// Builds the burn device. Backends behind cargo features add their arms
    /// here and nowhere else.
    pub fn build(self) -> Device {
        match self {
            Self::Cpu => Device::flex(),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "cpu" => Ok(Self::Cpu),
            other => Err(Error::config(
                "--device",
                format!("unknown device '{other}'; this build supports: cpu"),
            )),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_unknown_devices_by_flag_name() {
        assert_eq!("cpu".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cpu));
        let message = "cuda:7".parse::<DeviceSpec>().err().map(|e| e.to_string());
        assert!(message.is_some_and(|m| m.contains("--device") && m.contains("cuda:7")));
    }
}
