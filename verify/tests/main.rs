//! Integration tests of tokenmint-verify: every test starts a real tokenmint server in-process
//! (port 0, a fresh SQLite database in a temp dir), mints tokens through its CLI functions and
//! gRPC API, and checks what this crate makes of them. `ip_agreement` needs no server: property
//! tests that this crate and the server read IP restrictions alike.

mod helpers;

mod ip_agreement;
mod keys;
mod layer;
mod offline;
mod online;
mod tls;
