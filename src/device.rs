//! The one place where a tensor device is built from the `--device` flag.
//!
//! burn 0.22 dispatches every tensor op on the device it lives on, so the
//! backend is a run-time choice: the same model code trains and scores on
//! flex (pure Rust, always compiled in) or on LibTorch (the `tch` cargo
//! feature), CPU or CUDA.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// Which compute device to run on, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The pure-Rust CPU backend (burn `flex`), always compiled in.
    #[default]
    Cpu,
    /// LibTorch on the CPU (`tch` feature).
    LibTorch,
    /// LibTorch on CUDA device N (`tch` feature, linked against a CUDA libtorch).
    Cuda(usize),
}

/// What `--device` accepts, for error messages and `--help`.
pub const DEVICE_SYNTAX: &str = "cpu | libtorch | cuda[:N]";

impl DeviceSpec {
    /// Checks that this binary can run on the device, then builds it. The
    /// checks happen here, before any tensor exists, because LibTorch reports
    /// a missing CUDA device by aborting the process on the first op.
    pub fn build(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::flex()),
            Self::LibTorch | Self::Cuda(_) => libtorch::build(self),
        }
    }

    /// Whether the device is LibTorch's, whatever the processor.
    pub fn is_libtorch(self) -> bool {
        matches!(self, Self::LibTorch | Self::Cuda(_))
    }
}

#[cfg(feature = "tch")]
mod libtorch {
    use super::{Device, DeviceSpec, Error, Result};

    // burn marks burn-tch deprecated in favour of CubeCL; our users deploy
    // LibTorch, so we call its constructors on purpose.
    #[allow(deprecated)]
    pub(super) fn build(spec: DeviceSpec) -> Result<Device> {
        match spec {
            DeviceSpec::Cuda(index) => {
                if !tch::utils::has_cuda() {
                    return Err(Error::config(
                        "--device",
                        format!(
                            "{spec}: this binary's LibTorch has no CUDA support (it was linked \
                             against a CPU-only libtorch); rebuild against a CUDA libtorch, see \
                             the README's 'LibTorch backend' section"
                        ),
                    ));
                }
                let available = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
                if index >= available {
                    return Err(Error::config(
                        "--device",
                        format!("{spec}: LibTorch sees {available} CUDA device(s)"),
                    ));
                }
                Ok(Device::libtorch_cuda(index))
            }
            _ => Ok(Device::libtorch()),
        }
    }

    pub fn set_threads(threads: usize) {
        tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
    }

    /// The libtorch this binary runs against, for logs and benches.
    pub fn version() -> String {
        let cuda = if tch::utils::has_cuda() {
            format!(", CUDA, {} device(s)", tch::Cuda::device_count())
        } else {
            String::from(", no CUDA")
        };
        format!("libtorch{cuda}")
    }
}

#[cfg(not(feature = "tch"))]
mod libtorch {
    use super::{Device, DeviceSpec, Error, Result};

    pub(super) fn build(spec: DeviceSpec) -> Result<Device> {
        Err(Error::config(
            "--device",
            format!(
                "{spec} needs LibTorch, and this binary was built without it: rebuild with \
                 `cargo build --release --features tch` (see the README's 'LibTorch backend' \
                 section), or use --device cpu"
            ),
        ))
    }

    pub fn set_threads(_threads: usize) {}

    pub fn version() -> String {
        String::from("not compiled in")
    }
}

/// Sets LibTorch's intra-op thread count (nothing to do without LibTorch).
pub fn set_libtorch_threads(threads: usize) {
    libtorch::set_threads(threads);
}

/// A line describing the LibTorch this binary has, if any.
pub fn libtorch_description() -> String {
    libtorch::version()
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let text = text.trim();
        match text {
            "cpu" => return Ok(Self::Cpu),
            "libtorch" => return Ok(Self::LibTorch),
            "cuda" => return Ok(Self::Cuda(0)),
            _ => {}
        }
        if let Some(index) = text.strip_prefix("cuda:") {
            return index.parse().map(Self::Cuda).map_err(|_| {
                Error::config(
                    "--device",
                    format!("'{text}': the CUDA index must be a number, as in cuda:0"),
                )
            });
        }
        Err(Error::config(
            "--device",
            format!("unknown device '{text}'; expected {DEVICE_SYNTAX}"),
        ))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::LibTorch => f.write_str("libtorch"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_device_and_round_trips_through_display() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("libtorch", DeviceSpec::LibTorch),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            let parsed = text.parse::<DeviceSpec>().ok();
            assert_eq!(parsed, Some(spec), "{text}");
            if text != "cuda" {
                assert_eq!(spec.to_string(), text);
            }
        }
    }

    #[test]
    fn rejects_unknown_devices_by_flag_name() {
        for bad in ["gpu", "cuda:x", "cuda:-1", "tpu:0"] {
            let message = bad.parse::<DeviceSpec>().err().map(|e| e.to_string());
            assert!(
                message.is_some_and(|m| m.contains("--device") && m.contains(bad)),
                "{bad}"
            );
        }
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn a_build_without_libtorch_says_how_to_get_it() {
        for spec in [DeviceSpec::LibTorch, DeviceSpec::Cuda(0)] {
            let message = spec
                .build()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains("--features tch"), "{message}");
            assert!(message.contains(&spec.to_string()), "{message}");
        }
    }

    #[cfg(feature = "tch")]
    #[test]
    fn libtorch_cpu_builds_and_runs_an_op() {
        let device = DeviceSpec::LibTorch.build().ok();
        let device = device.as_ref();
        assert!(device.is_some());
        if let Some(device) = device {
            let sum = burn::tensor::Tensor::<1>::ones([4], device)
                .sum()
                .into_scalar::<f32>();
            assert_eq!(sum, 4.0);
        }
    }
}
