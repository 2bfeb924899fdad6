//! The generated gRPC client of `tokenmint.v1.TokenService` (see `build.rs`); only `GetJwks` and
//! `VerifyToken` are called.

/// The `tokenmint.v1` package.
pub(crate) mod v1 {
    tonic::include_proto!("tokenmint.v1");
}
