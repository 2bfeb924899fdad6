//! Compiles `proto/` into Rust with protox (a pure-Rust protobuf compiler), so building tokenmint
//! needs no system `protoc`. The encoded descriptor set is also written to `OUT_DIR` for the gRPC
//! server reflection service (grpcurl's `list` and `describe`).
//!
//! Three outputs, so that the server can answer VerifyToken with pre-encoded metadata while every
//! client still decodes the public message:
//! - `tokenmint.v1.rs`: the public messages and the clients;
//! - `tokenmint.wire.rs`: the server's wire-identical twin of `VerifyTokenResponse`
//!   (`src/proto/wire/`), its metadata as `bytes`;
//! - `server/tokenmint.v1.rs`: the service traits, which use the public messages except for
//!   VerifyToken's response, the twin.

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

/// The server's own messages (not part of the public contract).
const WIRE_PROTOS: &[&str] = &["src/proto/wire/verify_token_response.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS.iter().chain(WIRE_PROTOS) {
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
        .build_server(false)
        .compile_fds(fds.clone())?;

    let wire = protox::compile(WIRE_PROTOS, ["src/proto/wire"])?;
    // For the unit test that compares the twin's fields with the public message's.
    fs::write(out_dir.join("wire_descriptor.bin"), wire.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .bytes(".tokenmint.wire")
        .compile_fds(wire)?;

    let server_dir = out_dir.join("server");
    fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&server_dir)
        .extern_path(".tokenmint.v1", "crate::proto::v1")
        .extern_path(
            ".tokenmint.v1.VerifyTokenResponse",
            "crate::proto::wire::VerifyTokenResponse",
        )
        .compile_fds(fds)?;
    Ok(())
}
