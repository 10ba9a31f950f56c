//! Compiles proto/ with protox (pure Rust: no protoc needed) and generates
//! the message types with prost-build.

const PROTOS: [&str; 2] = [
    "proto/anomalyd/v1/sample.proto",
    "proto/anomalyd/v1/event.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
