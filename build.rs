//! Compiles `proto/` into Rust with protox (a pure-Rust protobuf compiler), so building tokenmint
//! needs no system `protoc`. The encoded descriptor set is also written to `OUT_DIR` for the gRPC
//! server reflection service (grpcurl's `list` and `describe`).

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Every public `.proto` file of the `tokenmint.v1` package.
const PROTOS: &[&str] = &[
    "proto/tokenmint/v1/limits.proto",
    "proto/tokenmint/v1/token.proto",
    "proto/tokenmint/v1/token_service.proto",
    "proto/tokenmint/v1/template.proto",
    "proto/tokenmint/v1/template_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("tokenmint_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Hand-written, wire-identical, so the server can send pre-encoded token metadata
        // (src/proto/verify_response.rs).
        .extern_path(
            ".tokenmint.v1.VerifyTokenResponse",
            "crate::proto::verify_response::VerifyTokenResponse",
        )
        .compile_fds(fds)?;
    Ok(())
}
