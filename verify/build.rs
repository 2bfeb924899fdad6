//! Compiles tokenmint's public contract (`../proto/tokenmint/v1/`) into a gRPC *client* with
//! protox (a pure-Rust protobuf compiler), so building this crate needs no system `protoc`.
//! Only `token_service.proto` and what it imports are compiled: the crate calls `GetJwks` and
//! `VerifyToken`, nothing else.

use std::path::Path;

/// The service this crate calls; protox follows its imports (token.proto, limits.proto).
const SERVICE: &str = "../proto/tokenmint/v1/token_service.proto";

/// Include root of the proto tree.
const INCLUDE: &str = "../proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Rerun when any file of the package changes, not only the service: imports matter too.
    for entry in std::fs::read_dir(Path::new(INCLUDE).join("tokenmint/v1"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let fds = protox::compile([SERVICE], [INCLUDE])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
