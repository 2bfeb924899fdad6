//! Integration tests: every test spawns a real tokenmint server on port 0 with its own database
//! (a new SQLite file, or a new PostgreSQL database when `TOKENMINT_TEST_DATABASE_URL` names a
//! server) and talks to it through the generated gRPC client.

mod helpers;

mod auth;
mod bounded;
mod change_feed;
mod change_stream;
mod create;
mod key_rows;
mod keys;
mod lifecycle;
mod lineage;
mod list;
mod metrics;
mod mint_from_template;
mod offline_revocation;
mod process;
mod replicas;
mod server;
mod status_lists;
mod telemetry;
mod templates;
mod tls;
mod update;
mod verify;
