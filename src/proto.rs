//! The protobuf messages of `proto/anomalyd/v1/` (generated at build time).

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/anomalyd.v1.rs"));
