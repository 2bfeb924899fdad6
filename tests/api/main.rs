mod helpers;
mod create;
mod server;
