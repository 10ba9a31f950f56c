//! Compiles proto/ with protox (pure Rust: no protoc needed) and generates
//! the message types with prost-build. With the `tch` feature, it also
//! records libtorch's directory in the binaries' rpath, so that nobody has
//! to set LD_LIBRARY_PATH to run them.

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

    // torch-sys (`links = "tch"`) publishes the directory it linked
    // against as DEP_TCH_LIBTORCH_LIB to the crates that depend on it. The
    // rpath names the directory libtorch_cpu.so really lives in: a staged
    // LIBTORCH (scripts/libtorch-cpu) holds links to it, and the wheel's own
    // $ORIGIN paths to its CUDA runtime only resolve from the real one.
    if let Ok(libtorch_lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let staged = std::path::Path::new(&libtorch_lib).join("libtorch_cpu.so");
        let real = std::fs::canonicalize(&staged)
            .ok()
            .and_then(|path| path.parent().map(std::path::Path::to_path_buf))
            .unwrap_or_else(|| libtorch_lib.clone().into());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", real.display());
        if std::path::Path::new(&libtorch_lib)
            .join("libtorch_cuda.so")
            .exists()
        {
            // Nothing in tch calls into libtorch_cuda.so directly: under
            // rustc's default --as-needed the linker would drop it, and
            // LibTorch would then report no CUDA at run time.
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
            // A GPU binary may be built where the CUDA runtime libraries that
            // libtorch_cuda.so needs are not installed; the loader still
            // checks every symbol when the binary starts on the GPU host.
            println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
        }
    }
    Ok(())
}
