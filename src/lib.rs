//! tokenmint: a gRPC service that mints, stores, verifies and revokes API access tokens.
//!
//! A request travels proto → [`grpc`] handler → [`issuance`] core → [`store`] → database.
//! [`domain`] holds the validated value types all layers share; [`config`] and [`startup`] build
//! the running service; [`cli`] implements the operator commands. The load generator is a crate of
//! its own (`bench/`, `tokenmint-bench`) that uses this library; the server never depends on it.

pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod issuance;
pub mod proto;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
