//! Generates the Spark Connect messages and client from the vendored `.proto` files, with the
//! `protoc` binary that `protoc-bin-vendored` carries (nothing to install).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let files = [
        "base",
        "catalog",
        "commands",
        "common",
        "expressions",
        "ml",
        "ml_common",
        "pipelines",
        "relations",
        "types",
    ]
    .map(|name| root.join("spark/connect").join(format!("{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // runner makes its own channel (rustls, timeouts): no `connect` helper needed.
        .build_transport(false)
        .compile_with_config(config, &files, &[root, include])?;
    Ok(())
}
