//! Generates the Rust types for Herald's `.proto` schemas.
//!
//! `protoc` comes from `protoc-bin-vendored` unless `PROTOC` is set, so a
//! fresh machine needs nothing installed. The gRPC client and server stubs
//! are generated only with the `grpc` feature, which keeps tonic out of the
//! edge and the SDK.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the
        // environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let schemas =
        ["schemas/herald/client/v1/client.proto", "schemas/herald/bus/v1/bus.proto", "schemas/herald/api/v1/api.proto"];
    for schema in schemas {
        println!("cargo:rerun-if-changed={schema}");
    }
    let mut config = prost_build::Config::new();
    // `prost::Name` for every message: full names for errors and tests.
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .bytes(".herald")
        .file_descriptor_set_path(out_dir.join("herald_descriptor.bin"))
        .compile_with_config(config, &schemas, &["schemas"])?;
    Ok(())
}
