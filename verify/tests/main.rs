//! Integration tests of tokenmint-verify: every test starts a real tokenmint server in-process
//! (port 0, a fresh SQLite database in a temp dir), mints tokens through its CLI functions and
//! gRPC API, and checks what this crate makes of them.

mod helpers;

mod keys;
mod layer;
mod offline;
mod online;
mod tls;
