//! Integration tests of tokenmint-verify: every test starts a real tokenmint server in-process
//! (port 0, a fresh SQLite database in a temp dir), mints tokens through its CLI functions and
//! gRPC API, and checks what this crate makes of them. `ip_agreement` and `claims_agreement`
//! need no server: property tests that this crate and the server read IP restrictions, and
//! whole signed tokens, alike.

mod helpers;

mod claims_agreement;
mod ip_agreement;
mod keys;
mod layer;
mod offline;
mod online;
mod tls;
